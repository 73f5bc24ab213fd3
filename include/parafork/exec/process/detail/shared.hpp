#pragma once
// shared_array<T> as an argument of process<Actor> calls: the array's memory descriptor goes to
// the backend beside the call (a passed_fd) with its shape, and the backend maps the same
// memory. This is valkka's "shared memory made on demand": an array made after start reaches
// the running backend. An array made before start needs nothing: fork already shares it.
// (The codec itself is in wire/descriptors.hpp, shared with pool, forked and map results.)

#include <parafork/exec/process/detail/base.hpp>
#include <parafork/ipc/shared_array.hpp>
#include <parafork/wire/descriptors.hpp>

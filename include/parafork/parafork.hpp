#pragma once
// parafork: process-based parallelism for C++20 on Linux. The umbrella header.

#include <parafork/error.hpp>
#include <parafork/options.hpp>

// sys: descriptors, processes, signals, shared memory
#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>

// wire: codec and framing
#include <parafork/wire/codec.hpp>
#include <parafork/wire/frames.hpp>

// ipc: shared-memory channels and arrays
#include <parafork/ipc/channel.hpp>
#include <parafork/ipc/shared_array.hpp>
#include <parafork/ipc/timestamp.hpp>

// exec: the ways to run work in processes
#include <parafork/exec/fork_join.hpp>
#include <parafork/exec/proc_pool.hpp>
#include <parafork/exec/process.hpp>
#include <parafork/exec/selector.hpp>
#include <parafork/exec/thread.hpp>
#include <parafork/exec/zygote.hpp>

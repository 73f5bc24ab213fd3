#pragma once
// parafork: process-based parallelism for C++20 on Linux. The umbrella header.

#include <parafork/error.hpp>
#include <parafork/options.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>
#include <parafork/wire/codec.hpp>
#include <parafork/wire/frames.hpp>
#include <parafork/exec/fork_join.hpp>
#include <parafork/exec/proc_pool.hpp>

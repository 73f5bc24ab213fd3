#pragma once
// parafork: process-based parallelism for C++20 on Linux. The umbrella header.

#include <parafork/error.hpp>
#include <parafork/exec/core/options.hpp>
#include <parafork/dashboard/dashboard.hpp>

// sys: descriptors, processes, signals, shared memory
#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>

// wire: codec and framing
#include <parafork/wire/codec.hpp>
#include <parafork/wire/frames.hpp>
#include <parafork/wire/large.hpp>

// ipc: shared-memory channels and arrays
#include <parafork/ipc/channel.hpp>
#include <parafork/ipc/shared_array.hpp>
#include <parafork/ipc/timestamp.hpp>

// exec: the ways to run work in processes
#include <parafork/exec/coproc/fork_join.hpp>
#include <parafork/exec/forked/forked.hpp>
#include <parafork/exec/core/future.hpp>
#include <parafork/exec/thread/generator.hpp>
#include <parafork/exec/forked/map.hpp>
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pool/pool.hpp>
#include <parafork/exec/coproc/proc_pool.hpp>
#include <parafork/exec/process/process.hpp>
#include <parafork/exec/process/selector.hpp>
#include <parafork/exec/pipeline/stages.hpp>
#include <parafork/exec/thread/thread.hpp>
#include <parafork/exec/core/zygote.hpp>

#pragma once
// Where the engines meet the dashboard: one region and one server process per program.

#include <parafork/dashboard/region.hpp>
#include <parafork/exec/core/options.hpp>

#include <cstdint>
#include <exception>
#include <span>
#include <string_view>

namespace parafork::detail::dash {

// The slot an engine made with `o` writes to, or null when the dashboard is off (neither
// o.dashboard nor PARAFORK_DASHBOARD names an address), could not start, or this process is a
// child of the one that serves it. The first call that turns it on starts the server and
// prints its URL on stderr.
pool_slot* attach(const options& o, std::string_view kind, std::uint64_t jobs, std::uint64_t total);
// Notes a failure in the region's ring (p is an attached slot).
void note(pool_slot& p, const error_note& e) noexcept;

// A pipeline's graph slot beside its call's slot `p` (attached, kind "pipeline"); null when all
// are in use.
pipe_slot* attach_pipe(pool_slot& p) noexcept;
// One queue of a pipeline's graph: the stages that write and read it (a bit per stage index),
// whether the program reads it, the index of its counters, and the type of its items.
struct graph_queue {
    std::uint64_t writers = 0, readers = 0;
    bool parent_reads = false;
    std::uint32_t counter = 0;
    std::string_view type;
};
// Attaches pipeline call `p`'s graph (stage names, queues), whose counters take `counter_bytes`
// of the slot: null when it does not fit (too many stages or queues, counters too big) or every
// slot is in use; the call is then shown without its graph.
pipe_slot* attach_graph(pool_slot& p, std::span<const std::string_view> stages, std::span<const graph_queue> queues,
                        std::size_t counter_bytes) noexcept;
// Processes forked between open_to_children() and as many close_to_children() map the region:
// a pipeline's stages write into it (their counters live there); everything else forked does
// not. Counted, for pipelines started by several threads at once.
void open_to_children() noexcept;
void close_to_children() noexcept;
// In a child that has the region (a stage, at its start): its own children do not.
void keep_from_children() noexcept;
// A runtime that forks its stages through parafork::thread (Python's ez) shows them as its
// pipeline's: while this thread does so (counted), those threads are not calls of their own.
void quiet_threads(bool on) noexcept;

} // namespace parafork::detail::dash

namespace parafork::detail::dash {

// Notes the exception an engine is about to hand its caller (worker_died, remote_error,
// timeout_error or any other) as a failure of `task`, by `pid`. Never throws.
void note_exception(pool_slot& p, const std::exception_ptr& e, int pid, std::uint64_t task) noexcept;

} // namespace parafork::detail::dash

#include "modes.hpp"
#include "engine.hpp"
#include "sources.hpp"

#include <cstdio>

namespace parafork::cli {

int run_pipe(const settings& s) {
    if (!s.pipe.part_file.empty()) {
        part_source src(s);
        return run_jobs(src, s, {.spawn_failure_is_fatal = true});
    }
    block_source src(s);
    return run_jobs(src, s, {.spawn_failure_is_fatal = true});
}

int run_each(const settings& s) {
    // A command that cannot start (not found, not executable) would fail for every record.
    arg_source src(s);
    return run_jobs(src, s, {.spawn_failure_is_fatal = true});
}

} // namespace parafork::cli

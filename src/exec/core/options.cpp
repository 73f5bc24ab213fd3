#include <parafork/exec/core/options.hpp>
#include <parafork/error.hpp>

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <sched.h>
#include <stdexcept>
#include <string>
#include <unistd.h>

namespace parafork {
namespace {

unsigned from_env(const char* var) {
    const char* v = std::getenv(var);
    if (!v) return 0;
    unsigned n = 0;
    const char* end = v + std::strlen(v);
    auto [p, ec] = std::from_chars(v, end, n);
    if (ec != std::errc() || p != end || n == 0 || n > 65536)
        throw error(std::string("parafork: ") + var + "='" + v +
                    "' is not a job count (a whole number from 1 to 65536)");
    return n;
}

unsigned cpus_allowed() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return static_cast<unsigned>(n);
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<unsigned>(n) : 1;
}

} // namespace

unsigned default_jobs() {
    if (unsigned n = from_env("PARAFORK_JOBS")) return n;
    if (unsigned n = from_env("PP_JOBS")) return n;
    return cpus_allowed();
}

unsigned resolve_jobs(unsigned explicit_jobs) { return explicit_jobs ? explicit_jobs : default_jobs(); }

const char* option_name(option f) noexcept {
    switch (f) {
    case option::jobs: return "jobs";
    case option::chunksize: return "chunksize";
    case option::ordered: return "ordered";
    case option::task_timeout: return "task_timeout";
    case option::retries: return "retries";
    case option::max_tasks_per_worker: return "max_tasks_per_worker";
    case option::progress: return "progress";
    case option::name: return "name";
    case option::worker_init: return "worker_init";
    case option::worker_exit: return "worker_exit";
    case option::grace: return "grace";
    case option::spin: return "spin";
    case option::zygote: return "zygote";
    case option::dashboard: return "dashboard";
    }
    return "?";
}

namespace detail {

void reject_options(const options& o, const char* executor, std::initializer_list<option> unsupported) {
    static const options d{};
    for (option f : unsupported) {
        bool set = false;
        switch (f) {
        case option::jobs: set = o.jobs != d.jobs; break;
        case option::chunksize: set = o.chunksize != d.chunksize; break;
        case option::ordered: set = o.ordered != d.ordered; break;
        case option::task_timeout: set = o.task_timeout != d.task_timeout; break;
        case option::retries: set = o.retries != d.retries; break;
        case option::max_tasks_per_worker: set = o.max_tasks_per_worker != d.max_tasks_per_worker; break;
        case option::progress: set = o.progress != d.progress; break;
        case option::name: set = o.name != d.name; break;
        case option::worker_init: set = static_cast<bool>(o.worker_init); break;
        case option::worker_exit: set = static_cast<bool>(o.worker_exit); break;
        case option::grace: set = o.grace != d.grace; break;
        case option::spin: set = o.spin != d.spin; break;
        case option::zygote: set = o.zygote != d.zygote; break;
        case option::dashboard: set = o.dashboard != d.dashboard; break;
        }
        if (set)
            throw std::invalid_argument(std::string(executor) + ": options." + option_name(f) +
                                        " is not supported here (it would be ignored)");
    }
}

} // namespace detail

} // namespace parafork

#include <parafork/exec/core/options.hpp>
#include <parafork/error.hpp>

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <sched.h>
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

} // namespace parafork

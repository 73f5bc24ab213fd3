#include "joblog.hpp"

#include <parafork/sys/fd.hpp>

#include <cerrno>

namespace parafork::cli {

joblog::joblog(const std::string& path) {
    f_ = std::fopen(path.c_str(), "we");  // "e": O_CLOEXEC, jobs must not inherit it
    if (!f_) sys::throw_errno(("open joblog " + path).c_str());
    std::fputs("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n", f_);
}

joblog::~joblog() {
    if (f_) std::fclose(f_);
}

void joblog::write(const joblog_row& r) {
    if (!f_) return;
    std::fprintf(f_, "%zu\t:\t%.3f\t%.3f\t%zu\t%zu\t%d\t%d\t%s\n", r.seq, r.start_epoch, r.runtime, r.sent,
                 r.received, r.exit_value, r.signal, r.command.c_str());
}

void joblog::flush() {
    if (f_ && std::fflush(f_) != 0) sys::throw_errno("write joblog");
}

} // namespace parafork::cli

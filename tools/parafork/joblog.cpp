#include "joblog.hpp"

#include <parafork/sys/fd.hpp>

#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>

namespace parafork::cli {

joblog::joblog(const std::string& path, bool append) {
    f_ = std::fopen(path.c_str(), append ? "ae" : "we");  // "e": O_CLOEXEC, jobs must not inherit it
    if (!f_) sys::throw_errno(("open joblog " + path).c_str());
    if (append && std::fseek(f_, 0, SEEK_END) == 0 && std::ftell(f_) > 0) return;
    std::fputs("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n", f_);
}

joblog::~joblog() {
    if (f_) std::fclose(f_);
}

void joblog::write(const joblog_row& r) {
    if (!f_) return;
    const std::string_view host = r.host.empty() ? std::string_view(":") : r.host;
    std::fprintf(f_, "%zu\t%.*s\t%.3f\t%.3f\t%zu\t%zu\t%d\t%d\t%s\n", r.seq, int(host.size()), host.data(), r.start_epoch, r.runtime, r.sent,
                 r.received, r.exit_value, r.signal, r.command.c_str());
}

void joblog::flush() {
    if (f_ && std::fflush(f_) != 0) sys::throw_errno("write joblog");
}

std::set<std::size_t> jobs_done(const std::string& path, bool succeeded_only) {
    std::set<std::size_t> done;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        std::string_view cols[8];
        std::string_view rest = line;
        std::size_t n = 0;
        for (; n < 8; ++n) {
            auto tab = rest.find('\t');
            if (tab == std::string_view::npos) break;
            cols[n] = rest.substr(0, tab);
            rest.remove_prefix(tab + 1);
        }
        if (n < 8) continue;  // the header has the columns but no numbers
        std::size_t seq = 0;
        long exitval = -1, signal = -1;
        auto number = [](std::string_view t, auto& v) {
            auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
            return ec == std::errc() && p == t.data() + t.size();
        };
        if (!number(cols[0], seq) || !number(cols[6], exitval) || !number(cols[7], signal)) continue;
        if (!succeeded_only || (exitval == 0 && signal == 0)) done.insert(seq);
    }
    return done;
}

} // namespace parafork::cli

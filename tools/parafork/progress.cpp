#include "progress.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace parafork::cli {
namespace {

void put(const std::string& text) {
    for (std::size_t done = 0; done < text.size();) {
        long n = ::write(2, text.data() + done, text.size() - done);
        if (n <= 0) return;  // progress is best effort
        done += static_cast<std::size_t>(n);
    }
}

// The terminal's width, as GNU parallel reads it (from /dev/tty); 80 without one.
int terminal_columns() {
    int fd = ::open("/dev/tty", O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return 80;
    winsize ws{};
    int cols = ::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
    ::close(fd);
    return cols;
}

template <class... A>
std::string format(const char* f, A... a) {
    char buf[256];
    int n = std::snprintf(buf, sizeof buf, f, a...);
    return std::string(buf, static_cast<std::size_t>(std::clamp(n, 0, int(sizeof buf) - 1)));
}

// GNU parallel's seconds_to_time_units: 5s, 3m07s, 2h03m07s, 1d02h03m07s.
std::string time_units(long s) {
    long d = s / 86400, h = s % 86400 / 3600, m = s % 3600 / 60;
    s %= 60;
    if (d) return format("%ldd%02ldh%02ldm%02lds", d, h, m, s);
    if (h) return format("%ldh%02ldm%02lds", h, m, s);
    if (m) return format("%ldm%02lds", m, s);
    return format("%lds", s);
}

long now_seconds() { return static_cast<long>(std::time(nullptr)); }

// Perl's default number format (what "$x" prints): 15 significant digits.
std::string perl_number(double v) { return format("%.15g", v); }

// A string cut or padded with blanks to `width` characters.
std::string fit(std::string s, std::size_t width) {
    s.resize(width, ' ');
    return s;
}

} // namespace

progress_bar::progress_bar(const settings& s)
    : enabled_(s.progress || s.eta || s.bar), eta_(s.eta), bar_(s.bar), jobs_(s.jobs), start_(now_seconds()) {
    if (!enabled_) return;
    columns_ = terminal_columns();
    if (!bar_) {
        long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
        put("\nComputers / CPU cores / Max jobs to run\n" + format("1:local / %ld / %u\n", cpus, jobs_));
    }
}

progress_bar::eta_figures progress_bar::compute_eta(const progress_state& s) {
    std::size_t completed = s.completed;
    std::size_t total = std::max(s.total.value_or(s.started), completed);
    std::size_t left = total - completed;
    if (!completed) return {total, 0, left, 0, 0, 0};
    double done = std::min(double(completed) / double(total), 100.0);
    if (!first_completed_) first_completed_ = now_seconds();
    double average = double(now_seconds() - first_completed_) / double(completed);
    if (smoothed_ == 0) smoothed_ = average;
    smoothed_ = (1 - done) * smoothed_ + done * average;  // so the ETA does not jump around
    long eta = static_cast<long>(double(left) * smoothed_);
    if (eta * 0.90 < double(last_eta_) && last_eta_ < eta) eta = last_eta_;  // up by less than 10%
    else last_eta_ = eta;
    return {total, completed, left, done, average, eta};
}

// --bar: GNU parallel's, a zenity line and the percentage (for `zenity --progress`) overwritten
// by the bar itself, in reverse video up to the part done.
std::string progress_bar::bar(const progress_state& s) {
    auto e = compute_eta(s);
    const auto width = static_cast<std::size_t>(columns_);
    std::string text = fit(format("%d%% %zu:%zu=%s ", int(e.done * 100), e.completed, e.left, time_units(e.eta).c_str()) +
                               s.newest,
                           width);
    text.insert(static_cast<std::size_t>(double(width) * e.done), "\033[0m");
    std::string zenity = fit(format("#   %ld sec ", e.eta) + s.newest, width);
    return "\r" + zenity + "\r" + perl_number(e.done * 100) + "\r\033[7m" + text + "\033[0m";
}

// --progress, --eta: the status of the one computer, "local", in the longest of GNU
// parallel's formats that fits the terminal.
std::string progress_bar::status(const progress_state& s) {
    std::string eta;
    if (eta_) {
        auto e = compute_eta(s);
        eta = format("ETA: %lds Left: %zu AVG: %.2fs  ", e.eta, e.left, e.average);
    }
    const std::size_t r = s.running, c = s.completed;
    const int pct = s.started ? int(double(r + c) * 100 / double(s.started)) : 0;
    const double per_job = c ? double(now_seconds() - start_) / double(c) : 0;
    // Before any job started GNU parallel shows a 0 for the computer.
    auto started = [&](std::string line) { return s.started ? line : std::string("0"); };
    const std::string full = "Computer:jobs running/jobs completed/%of started jobs";
    const std::pair<std::string, std::string> formats[] = {
        {full + "/Average seconds to complete", started(format("local:%zu/%zu/%d%%/%.1fs ", r, c, pct, per_job))},
        {full, started(format("1:%zu/%zu/%d%%/%.1fs ", r, c, pct, per_job))},
        {full, started(format("local:%zu/%zu/%d%%", r, c, pct))},
        {full, started(format("1:%zu/%zu/%d%%", r, c, pct))},
        {"Computer:jobs running/jobs completed", format("local:%zu/%zu", r, c)},
        {"Computer:jobs running/jobs completed", format("1:%zu/%zu", r, c)},
        {"Computer:jobs completed", format("local:%zu", c)},
        {"Computer:jobs completed", format("1:%zu", c)},
    };
    for (auto& [header, line] : formats) {
        std::string full_line = eta + line;
        if (full_line.size() <= std::size_t(columns_) || &line == &formats[std::size(formats) - 1].second) {
            if (header != last_header_) {
                put("\n" + header + "\n");
                last_header_ = header;
            }
            return full_line;
        }
    }
    return {};
}

void progress_bar::update(const progress_state& s, bool force) {
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && shown_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    shown_ = true;
    std::string line(1, '\r');  // not "\r" + a temporary: GCC 12 warns wrongly (-Wrestrict) at -O2
    line += bar_ ? bar(s) : status(s);
    put(line);
}

void progress_bar::finish(const progress_state& s) {
    if (!enabled_) return;
    update(s, true);
    put("\n");
}

} // namespace parafork::cli

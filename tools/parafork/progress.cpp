#include "progress.hpp"

#include <cstdio>
#include <unistd.h>

namespace parafork::cli {

void progress_bar::update(const progress_state& s, bool force) {
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && shown_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    shown_ = true;
    char line[200];
    int n;
    double mib = double(s.bytes_in) / (1 << 20);
    if (s.bytes_total && *s.bytes_total > 0) {
        double frac = double(s.bytes_in) / double(*s.bytes_total);
        if (frac > 1) frac = 1;
        constexpr int width = 30;
        int filled = int(frac * width);
        char bar[width + 1];
        for (int i = 0; i < width; ++i) bar[i] = i < filled ? '#' : '.';
        bar[width] = 0;
        n = std::snprintf(line, sizeof line, "\r[%s] %3d%% %.1f MiB, %zu done, %zu running, %zu failed ", bar,
                          int(frac * 100), mib, s.done, s.running, s.failed);
    } else {
        n = std::snprintf(line, sizeof line, "\r%zu done, %zu running, %zu failed, %.1f MiB in ", s.done, s.running,
                          s.failed, mib);
    }
    if (n > 0) [[maybe_unused]] auto w = ::write(2, line, static_cast<std::size_t>(n < int(sizeof line) ? n : int(sizeof line) - 1));
}

void progress_bar::finish(const progress_state& s) {
    if (!enabled_) return;
    update(s, true);
    [[maybe_unused]] auto w = ::write(2, "\n", 1);
}

} // namespace parafork::cli

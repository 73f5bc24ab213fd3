// Copies stdin to stdout until end of file.
#include <unistd.h>

int main() {
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(0, buf, sizeof buf);
        if (n <= 0) return n == 0 ? 0 : 1;
        for (ssize_t at = 0; at < n;) {
            ssize_t w = ::write(1, buf + at, static_cast<size_t>(n - at));
            if (w <= 0) return 1;
            at += w;
        }
    }
}

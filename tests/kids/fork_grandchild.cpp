// Forks a grandchild that keeps every inherited descriptor (stdin, stdout) and sleeps the
// seconds given as argv[1] (bounded, so a failed test leaves nothing for long); writes the
// grandchild's pid and a newline to stdout; then dies of SIGKILL. A supervisor must see this
// death at once, not when the grandchild closes the pipe ends it holds.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

int main(int argc, char** argv) {
    unsigned secs = static_cast<unsigned>(argc > 1 ? std::atoi(argv[1]) : 30);
    pid_t pid = ::fork();
    if (pid < 0) return 2;
    if (pid == 0) {
        ::sleep(secs);
        ::_exit(0);
    }
    char line[32];
    int n = std::snprintf(line, sizeof line, "%d\n", static_cast<int>(pid));
    if (::write(1, line, static_cast<size_t>(n)) != n) return 3;
    std::raise(SIGKILL);
    return 4;
}

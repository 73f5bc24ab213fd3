#include "support/leak_check.hpp"

#include <cstdio>
#include <dirent.h>
#include <fcntl.h>
#include <exception>
#include <fstream>
#include <signal.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <chrono>
#include <unistd.h>

namespace parafork::testing {

std::chrono::milliseconds cpu_time(int pid) {
    // Fields 14 and 15 (utime, stime, in clock ticks), counted after the ")" that ends comm.
    std::string stat = read_proc("/proc/" + std::to_string(pid) + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos || close + 2 > stat.size()) return {};
    std::istringstream rest(stat.substr(close + 2));
    std::string field;
    long long utime = 0, stime = 0;
    for (int k = 3; k <= 15 && rest >> field; ++k) {
        if (k == 14) utime = std::stoll(field);
        if (k == 15) stime = std::stoll(field);
    }
    return std::chrono::milliseconds((utime + stime) * 1000 / ::sysconf(_SC_CLK_TCK));
}

std::string read_proc(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    std::string text;
    char buf[4096];
    for (long n; (n = ::read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    return text;
}

namespace {

std::set<std::string> list_dir(const char* path) {
    std::set<std::string> out;
    if (DIR* d = ::opendir(path)) {
        while (dirent* e = ::readdir(d)) {
            std::string n = e->d_name;
            if (n != "." && n != "..") out.insert(n);
        }
        ::closedir(d);
    }
    return out;
}

// Children of `self` from /proc/<pid>/stat: (pid, state).
std::set<std::pair<int, char>> children(int self = ::getpid()) {
    std::set<std::pair<int, char>> out;
    for (auto& name : list_dir("/proc")) {
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::ifstream f("/proc/" + name + "/stat");
        std::string line;
        if (!std::getline(f, line)) continue;
        auto close = line.rfind(')');
        if (close == std::string::npos) continue;
        std::istringstream rest(line.substr(close + 2));
        char state;
        int ppid;
        rest >> state >> ppid;
        if (ppid == self) out.insert({std::stoi(name), state});
    }
    return out;
}

} // namespace

std::set<int> open_fds() {
    std::set<int> out;
    for (auto& n : list_dir("/proc/self/fd")) out.insert(std::stoi(n));
    return out;
}

std::set<std::string> shm_entries() { return list_dir("/dev/shm"); }

std::set<int> zombie_children() {
    std::set<int> out;
    for (auto [pid, st] : children())
        if (st == 'Z') out.insert(pid);
    return out;
}

std::set<int> child_pids() {
    std::set<int> out;
    for (auto [pid, st] : children()) out.insert(pid);
    return out;
}

std::set<int> child_pids_of(int pid) {
    std::set<int> out;
    for (auto [p, st] : children(pid))
        if (st != 'Z') out.insert(p);
    return out;
}

maps_count map_count() {
    std::ifstream f("/proc/self/maps");
    std::string line;
    maps_count n;
    while (std::getline(f, line)) {
        ++n.all;
        // "start-end perms ...": perms is rwxp or rwxs.
        auto sp = line.find(' ');
        if (sp != std::string::npos && sp + 4 < line.size() && line[sp + 4] == 's') ++n.shared;
        if (line.find("/memfd:") != std::string::npos) ++n.memfd;
    }
    return n;
}
void expect_same_maps(maps_count before, maps_count after) {
    EXPECT_EQ(after.memfd, before.memfd);
    if (!sanitized) {
        EXPECT_EQ(after.shared, before.shared);
    }
}

leak_guard::leak_guard() : fds_(open_fds()), shm_(shm_entries()) {}

leak_guard::~leak_guard() {
    // Children are reaped synchronously by the library; give the kernel a moment to finish
    // tearing down processes that were just killed.
    std::set<int> kids;
    for (int i = 0; i < 200; ++i) {
        kids = child_pids();
        if (kids.empty()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (int pid : kids) ADD_FAILURE() << "child " << pid << " still exists after the test";
    auto now = open_fds();
    for (int fd : now)
        if (!fds_.count(fd)) {
            char target[256] = {};
            auto link = "/proc/self/fd/" + std::to_string(fd);
            [[maybe_unused]] auto n = ::readlink(link.c_str(), target, sizeof target - 1);
            ADD_FAILURE() << "fd " << fd << " (" << target << ") leaked";
        }
    // Names starting "parafork-test-" are made on purpose by a test that checks and removes
    // them itself (a named shared array outliving a killed creator); one may run alongside.
    for (auto& e : shm_entries())
        if (!shm_.count(e) && !e.starts_with("parafork-test-")) ADD_FAILURE() << "/dev/shm/" << e << " left behind";
}

void run_bounded(const char* what, int seconds, void (*body)()) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::alarm(static_cast<unsigned>(seconds));  // a hang dies of SIGALRM
        // An exception must end this child too: escaping into gtest would run the rest of the
        // suite a second time in here.
        try {
            body();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "%s: uncaught exception: %s\n", what, e.what());
            ::_exit(1);
        } catch (...) {
            std::fprintf(stderr, "%s: uncaught exception\n", what);
            ::_exit(1);
        }
        ::_exit(::testing::Test::HasFailure() ? 1 : 0);
    }
    int ws = 0;
    ASSERT_EQ(::waitpid(pid, &ws, 0), pid);
    if (WIFSIGNALED(ws))
        ADD_FAILURE() << what << ": child died of signal " << WTERMSIG(ws)
                      << (WTERMSIG(ws) == SIGALRM ? " (time limit)" : "");
    else
        EXPECT_EQ(WEXITSTATUS(ws), 0) << what << " failed in its bounded child";
}

} // namespace parafork::testing

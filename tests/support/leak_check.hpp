#pragma once
// Every test that forks ends with no zombie child, no fd beyond those open before it, and
// nothing new in /dev/shm. Use PARAFORK_LEAK_CHECK() at the top of a test body, or derive
// the fixture from parafork::testing::leak_checked.

#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>

namespace parafork::testing {

// Built with AddressSanitizer: every fork and exit costs many times more (shadow memory).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool sanitized = true;
#else
inline constexpr bool sanitized = false;
#endif
#else
inline constexpr bool sanitized = false;
#endif

// The text of a file under /proc, or "" if it cannot be read. The process may exit between the
// open and the read; std::ifstream's stream-buffer iterators throw then, this does not.
std::string read_proc(const std::string& path);

// CPU time (user + system) a process has used so far, from /proc/<pid>/stat; zero once it is
// gone.
std::chrono::milliseconds cpu_time(int pid);

std::set<int> open_fds();
std::set<std::string> shm_entries();
// Children of this process that are zombies (exited, not reaped).
std::set<int> zombie_children();
// Any child of this process, alive or not.
std::set<int> child_pids();
std::set<int> child_pids_of(int pid);

// Mappings of this process (/proc/self/maps): all, shared (every ring, memfd and region the
// library maps is MAP_SHARED) and memfd-backed. A leaked mapping of ours shows in `shared`.
struct maps_count {
    std::size_t all = 0, shared = 0, memfd = 0;
};
maps_count map_count();
// memfd and shared mappings must match exactly. Private ones are the allocator's: malloc keeps
// a large block it handed out and got back as a mapping of its own, whenever timing made the
// block large, so their number is no measure of ours.
void expect_same_maps(maps_count before, maps_count after);

class leak_guard {
public:
    leak_guard();
    ~leak_guard();  // adds gtest failures for what leaked

private:
    std::set<int> fds_;
    std::set<std::string> shm_;
};

class leak_checked : public ::testing::Test {
protected:
    leak_guard guard_;
};

// Runs `body` in a forked child with a time limit: a hang or crash fails the test instead of
// stalling the suite. The child's gtest failures make it exit non-zero.
void run_bounded(const char* what, int seconds, void (*body)());

} // namespace parafork::testing

#define PARAFORK_LEAK_CHECK() ::parafork::testing::leak_guard parafork_leak_guard_

#pragma once
// A worker that forks a grandchild and then dies. The grandchild keeps every descriptor the
// worker had (its result pipes included) and sleeps on, bounded; a supervisor must report the
// worker's death at once, not when the grandchild closes those pipes. The grandchild is not
// the library's child: this object kills it when it goes out of scope.

#include <atomic>
#include <csignal>
#include <new>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>

namespace parafork::testing {

// A page shared with every worker forked after its first call: where a task notes the
// grandchild it leaves behind, so the test can kill it (call it once before the workers fork).
inline std::atomic<int>* grandchild_page() {
    static auto* p = [] {
        void* m = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        return new (m) std::atomic<int>(0);
    }();
    return p;
}

class lingering_grandchild {
public:
    lingering_grandchild() { ok_ = ::pipe2(fds_, O_CLOEXEC) == 0; }
    lingering_grandchild(const lingering_grandchild&) = delete;
    lingering_grandchild& operator=(const lingering_grandchild&) = delete;
    ~lingering_grandchild() {
        if (pid_ > 0) ::kill(pid_, SIGKILL);
        if (ok_) {
            ::close(fds_[0]);
            ::close(fds_[1]);
        }
    }

    // In the worker: fork the grandchild (sleeping `secs`), tell the test its pid, die of SIGKILL.
    [[noreturn]] void leave_and_die(unsigned secs = 30) const {
        pid_t pid = ::fork();
        if (pid == 0) {
            ::sleep(secs);
            ::_exit(0);
        }
        if (pid > 0 && ::write(fds_[1], &pid, sizeof pid) != sizeof pid) ::kill(pid, SIGKILL);
        ::raise(SIGKILL);
        ::_exit(99);
    }

    // In the test: the grandchild's pid (waits until the worker has written it), -1 on failure.
    pid_t pid() {
        if (pid_ <= 0 && ok_ && ::read(fds_[0], &pid_, sizeof pid_) != sizeof pid_) pid_ = -1;
        return pid_;
    }
    bool alive() { return pid() > 0 && ::kill(pid_, 0) == 0; }

private:
    int fds_[2] = {-1, -1};
    bool ok_ = false;
    pid_t pid_ = -1;
};

} // namespace parafork::testing

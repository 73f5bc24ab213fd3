#include "launch.hpp"

#include <parafork/sys/process.hpp>

#include <cerrno>
#include <csignal>
#include <system_error>

namespace parafork::cli {

// execvp's search, done once per command name instead of once per job (a job per block
// otherwise pays a stat of every PATH entry before the right one).
const std::string& launcher::resolve(const std::string& name) {
    auto it = paths_.find(name);
    if (it != paths_.end()) return it->second;
    return paths_.emplace(name, sys::find_executable(name)).first->second;
}

pid_t launcher::start(const std::vector<std::string>& argv, const launch_fds& fds) {
    if (argv.empty() || argv[0].empty()) throw std::system_error(ENOENT, std::generic_category(), "exec ''");
    const std::string& path = resolve(argv[0]);
    if (path.empty()) throw std::system_error(ENOENT, std::generic_category(), "exec " + argv[0]);
    sys::spawn_options so;
    so.stdin_fd = fds.in;
    so.stdout_fd = fds.out;
    so.stderr_fd = fds.err;
    so.child.death_signal = SIGKILL;
    so.child.ignore_sigint = false;  // Ctrl-C is ours, but the job keeps the default
    so.new_process_group = true;
    so.path = path;
    return sys::spawn(argv, so);
}

void signal_job(pid_t pid, int sig) noexcept {
    // The group outlives a reaped leader while any member lives, and its id is not reused
    // meanwhile; the pid alone could be.
    if (pid > 0) ::kill(-pid, sig);
}

} // namespace parafork::cli

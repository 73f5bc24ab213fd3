#pragma once
// Starting a job: sys::spawn (the library's vfork + execve) of a command resolved on PATH once,
// the job in a process group of its own (so a timeout or Ctrl-C reaches `sh -c 'a | b'`'s
// grandchildren too), SIGINT at its default (Ctrl-C is ours: we stop the jobs), SIGKILL when
// we die.

#include <map>
#include <string>
#include <sys/types.h>
#include <vector>

namespace parafork::cli {

struct launch_fds {
    int in = -1, out = -1, err = -1;
};

class launcher {
public:
    // Starts argv with the given stdin/stdout/stderr; returns the pid, which is also the
    // job's process group id. A command that cannot be executed throws std::system_error
    // ("exec CMD: ...") here, not as a child exiting 127 later.
    pid_t start(const std::vector<std::string>& argv, const launch_fds& fds);

private:
    const std::string& resolve(const std::string& name);

    std::map<std::string, std::string> paths_;  // command name -> path execve takes
};

// Sends sig to the job's whole process group (the job made it before exec).
void signal_job(pid_t pid, int sig) noexcept;

} // namespace parafork::cli

#pragma once
// The exceptions every layer throws. All derive from parafork::error, a std::runtime_error.

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace parafork {

namespace detail {
// A type's readable name (abi::__cxa_demangle), for error messages; the raw name if that fails.
std::string demangle(const char* mangled);

// The type name (demangled) and what() of the exception being handled; call from a catch block.
// An exception not derived from std::exception has what() "(not a std::exception)".
struct exception_info {
    std::string type, what;
};
exception_info describe_current_exception() noexcept;
} // namespace detail

class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Bytes that do not decode: truncated, corrupt, or over a configured limit. When a child broke
// the protocol (proc_pool: more replies than requests), pid() names it and tasks() lists the
// requests whose replies may be wrong; otherwise pid() is -1 and tasks() is empty.
class protocol_error : public error {
public:
    using error::error;
    protocol_error(const std::string& what, pid_t pid, std::vector<std::size_t> tasks)
        : error(what), pid_(pid), tasks_(std::move(tasks)) {}

    pid_t pid() const noexcept { return pid_; }
    const std::vector<std::size_t>& tasks() const noexcept { return tasks_; }

private:
    pid_t pid_ = -1;
    std::vector<std::size_t> tasks_;
};

// Where a task ran, for calls spread over hosts (parafork::mpi): the MPI rank and its host's
// name. rank() is -1 and host() empty for work that ran on this host. Set by the executor that
// threw; what() already names both.
class ran_at {
public:
    int rank() const noexcept { return rank_; }
    const std::string& host() const noexcept { return host_; }
    void set_ran_at(int rank, std::string host) {
        rank_ = rank;
        host_ = std::move(host);
    }

private:
    int rank_ = -1;
    std::string host_;
};

// A call did not finish in time (task_timeout, receive_for, ...). For a task killed past
// task_timeout, pid() is the worker that ran it and task() the task; otherwise -1 and empty.
class timeout_error : public error, public ran_at {
public:
    using error::error;
    timeout_error(const std::string& what, pid_t pid, std::optional<std::size_t> task)
        : error(what), pid_(pid), task_(task) {}

    pid_t pid() const noexcept { return pid_; }
    std::optional<std::size_t> task() const noexcept { return task_; }

private:
    pid_t pid_ = -1;
    std::optional<std::size_t> task_;
};

// The caller's process got SIGINT (Ctrl-C) during a call; the call stopped its children.
class interrupted : public error {
public:
    interrupted() : error("parafork: interrupted by SIGINT") {}
    using error::error;
};

// An exception thrown by user code in a child, re-thrown in the parent.
class remote_error : public error, public ran_at {
public:
    remote_error(std::string type_name, std::string message, pid_t pid,
                 std::optional<std::size_t> task = std::nullopt);

    const std::string& type_name() const noexcept { return type_name_; }
    const std::string& message() const noexcept { return message_; }
    pid_t pid() const noexcept { return pid_; }
    std::optional<std::size_t> task() const noexcept { return task_; }

private:
    std::string type_name_, message_;
    pid_t pid_;
    std::optional<std::size_t> task_;
};

// A child that died: killed by a signal, or exited without finishing its work.
class worker_died : public error, public ran_at {
public:
    // signal > 0: killed by that signal; otherwise exit_code is what it exited with.
    worker_died(pid_t pid, int signal, int exit_code, std::optional<std::size_t> task = std::nullopt,
                std::string detail = {});
    // A worker that held several tasks (proc_pool: every request it had been sent and not
    // answered, oldest first); task() is the first of them.
    worker_died(pid_t pid, int signal, int exit_code, std::vector<std::size_t> tasks,
                std::string detail);

    pid_t pid() const noexcept { return pid_; }
    int signal() const noexcept { return signal_; }
    int exit_code() const noexcept { return exit_code_; }
    std::optional<std::size_t> task() const noexcept { return task_; }
    const std::vector<std::size_t>& tasks() const noexcept { return tasks_; }

private:
    pid_t pid_;
    int signal_, exit_code_;
    std::optional<std::size_t> task_;
    std::vector<std::size_t> tasks_;
};

} // namespace parafork

#include <parafork/error.hpp>

#include <cstring>
#include <string>

#include <cstdlib>
#include <cxxabi.h>

namespace parafork {

std::string detail::demangle(const char* mangled) {
    int status = 0;
    char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
    std::string out = status == 0 && d ? d : mangled;
    std::free(d);
    return out;
}

detail::exception_info detail::describe_current_exception() noexcept {
    exception_info info;
    try {
        const std::type_info* t = abi::__cxa_current_exception_type();
        info.type = t ? demangle(t->name()) : "unknown exception";
        try {
            throw;
        } catch (const std::exception& e) {
            info.what = e.what();
        } catch (...) {
            info.what = "(not a std::exception)";
        }
    } catch (...) {
    }
    return info;
}

namespace {

std::string signal_name(int sig) {
    const char* abbrev = sigabbrev_np(sig);
    return abbrev ? std::string("SIG") + abbrev : std::string("unknown");
}

std::string task_suffix(std::optional<std::size_t> task) {
    return task ? " (task " + std::to_string(*task) + ")" : std::string();
}

} // namespace

remote_error::remote_error(std::string type_name, std::string message, pid_t pid,
                           std::optional<std::size_t> task)
    : error(type_name + " in child " + std::to_string(pid) + task_suffix(task) + ": " + message),
      type_name_(std::move(type_name)), message_(std::move(message)), pid_(pid), task_(task) {}

worker_died::worker_died(pid_t pid, int signal, int exit_code, std::optional<std::size_t> task,
                         std::string detail)
    : error("child " + std::to_string(pid) +
            (signal > 0 ? " killed by signal " + std::to_string(signal) + " (" +
                              signal_name(signal) + ")"
                        : " exited with code " + std::to_string(exit_code)) +
            task_suffix(task) + (detail.empty() ? std::string() : ": " + detail)),
      pid_(pid), signal_(signal), exit_code_(exit_code), task_(task) {
    if (task) tasks_.push_back(*task);
}

worker_died::worker_died(pid_t pid, int signal, int exit_code, std::vector<std::size_t> tasks,
                         std::string detail)
    : worker_died(pid, signal, exit_code,
                  tasks.empty() ? std::nullopt : std::optional<std::size_t>(tasks.front()),
                  std::move(detail)) {
    tasks_ = std::move(tasks);
}

} // namespace parafork

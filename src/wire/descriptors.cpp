#include <parafork/wire/descriptors.hpp>

#include <stdexcept>
#include <string>

namespace parafork::detail {

std::vector<int>& outgoing_fds() noexcept {
    thread_local std::vector<int> fds;
    return fds;
}

namespace {
thread_local incoming_fds_scope* t_innermost = nullptr;
}

incoming_fds_scope::incoming_fds_scope(std::vector<sys::unique_fd>& fds) noexcept
    : fds_(&fds), outer_(t_innermost) {
    t_innermost = this;
}

incoming_fds_scope::~incoming_fds_scope() { t_innermost = outer_; }

sys::unique_fd incoming_fds_scope::take() {
    if (next_ >= fds_->size())
        throw protocol_error("parafork: a value that carries a descriptor arrived without it");
    return std::move((*fds_)[next_++]);
}

std::vector<sys::unique_fd> incoming_fds_scope::rest() {
    std::vector<sys::unique_fd> out;
    for (; next_ < fds_->size(); ++next_) out.push_back(std::move((*fds_)[next_]));
    return out;
}

incoming_fds_scope* current_incoming_fds() noexcept { return t_innermost; }

sys::unique_fd take_incoming_fd() {
    if (t_innermost) return t_innermost->take();
    throw protocol_error("parafork: a value that carries a descriptor arrived without it");
}

void refuse_descriptors(const char* where) {
    auto& fds = outgoing_fds();
    if (fds.empty()) return;
    fds.clear();
    throw std::invalid_argument(std::string("parafork: ") + where +
                                " cannot carry descriptors (a shared_array or passed_fd); make the "
                                "shared memory before the workers fork, where they see it anyway");
}

} // namespace parafork::detail

#include "sources.hpp"

#include <parafork/sys/fd.hpp>

#include <cerrno>
#include <sys/stat.h>
#include <unistd.h>

namespace parafork::cli {
namespace {

constexpr std::string_view placeholders[] = {"{}", "{.}", "{/}", "{//}", "{/.}", "{#}"};

std::string_view basename_of(std::string_view p) {
    auto slash = p.rfind('/');
    return slash == std::string_view::npos ? p : p.substr(slash + 1);
}
std::string_view dirname_of(std::string_view p) {
    auto slash = p.rfind('/');
    if (slash == std::string_view::npos) return ".";
    return slash == 0 ? std::string_view("/") : p.substr(0, slash);
}
// Drops the extension of the last path component ("a/b.tar.gz" -> "a/b.tar"), by GNU
// parallel's rule s:\.[^/.]*$:: (so a dot file loses all of its name: "d/.h" -> "d/").
std::string_view without_ext(std::string_view p) {
    auto dot = p.rfind('.');
    if (dot == std::string_view::npos || p.find('/', dot) != std::string_view::npos) return p;
    return p.substr(0, dot);
}

} // namespace

bool has_placeholder(const std::string& arg) {
    for (auto ph : placeholders)
        if (arg.find(ph) != std::string::npos) return true;
    return false;
}

std::string expand_placeholders(const std::string& arg, const std::string& record, std::size_t seq) {
    std::string out;
    out.reserve(arg.size() + record.size());
    for (std::size_t i = 0; i < arg.size();) {
        bool matched = false;
        if (arg[i] == '{') {
            std::string_view rest(arg.data() + i, arg.size() - i);
            // Longest first so "{//}" is not read as "{/" + ...
            for (auto ph : {"{//}", "{/.}", "{}", "{.}", "{/}", "{#}"}) {
                std::string_view p(ph);
                if (!rest.starts_with(p)) continue;
                if (p == "{}") out += record;
                else if (p == "{.}") out += without_ext(record);
                else if (p == "{/}") out += basename_of(record);
                else if (p == "{//}") out += dirname_of(record);
                else if (p == "{/.}") out += without_ext(basename_of(record));
                else out += std::to_string(seq);
                i += p.size();
                matched = true;
                break;
            }
        }
        if (!matched) out += arg[i++];
    }
    return out;
}

record_source::record_source(const settings& s) : s_(s) {
    if (s_.arguments) {  // "::: a b c": the records are given, stdin is not read
        records_.assign(s_.arguments->begin(), s_.arguments->end());
        eof_ = true;
    }
    for (auto& a : s_.command)
        if (has_placeholder(a)) has_placeholder_ = true;
    struct stat st {};
    if (::fstat(0, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t at = ::lseek(0, 0, SEEK_CUR);
        if (at >= 0 && at <= st.st_size) total_ = static_cast<std::size_t>(st.st_size - at);
    }
}

void record_source::read_input() {
    char buf[64 * 1024];
    long n;
    do {
        n = ::read(0, buf, sizeof buf);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN) return;
        sys::throw_errno("read stdin");
    }
    if (n == 0) {
        eof_ = true;
        if (!pending_.empty()) records_.push_back(std::move(pending_));
        pending_.clear();
        return;
    }
    total_read_ += static_cast<std::size_t>(n);
    std::string_view chunk(buf, static_cast<std::size_t>(n));
    for (;;) {
        auto sep = chunk.find(s_.record_sep);
        if (sep == std::string_view::npos) break;
        pending_.append(chunk.substr(0, sep));
        records_.push_back(std::move(pending_));
        pending_.clear();
        chunk.remove_prefix(sep + 1);
    }
    pending_.append(chunk);
}

std::optional<job_spec> record_source::take() {
    if (records_.empty()) return std::nullopt;
    std::string record = std::move(records_.front());
    records_.pop_front();
    std::size_t seq = ++taken_;
    job_spec spec;
    spec.argv.reserve(s_.command.size() + 1);
    for (auto& a : s_.command) spec.argv.push_back(has_placeholder_ ? expand_placeholders(a, record, seq) : a);
    if (!has_placeholder_) spec.argv.push_back(record);
    const char* noun = s_.record_sep == '\n' && !s_.arguments ? "line " : "record ";
    std::string shown = record.size() > 60 ? record.substr(0, 57) + "..." : record;
    spec.what = noun + std::to_string(seq) + " '" + shown + "'";
    return spec;
}

} // namespace parafork::cli

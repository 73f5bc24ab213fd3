#include "splitter.hpp"

#include <stdexcept>

namespace parafork::cli {

splitter::splitter(const std::string& recend, const std::string& recstart, bool regexp)
    : pattern_(recend + recstart), end_len_(recend.size()), anywhere_(recend.empty() && recstart.empty()) {
    if (!regexp || anywhere_) return;
    std::string re = "(?:" + (recend.empty() ? std::string() : recend) + ")";
    if (!recstart.empty()) re += "(?=" + recstart + ")";
    try {
        re_.emplace(re, std::regex::ECMAScript | std::regex::optimize);
    } catch (const std::regex_error& e) {
        throw std::invalid_argument("bad --recend/--recstart regexp '" + re + "': " + e.what());
    }
}

std::size_t splitter::last(std::string_view buf, std::size_t from) const {
    if (anywhere_) return buf.size() > from ? buf.size() : none;
    if (!re_) {
        // A match ending the split at p starts at p - end_len_; p > from.
        std::size_t begin = from + 1 >= end_len_ ? from + 1 - end_len_ : 0;
        if (buf.size() < begin + pattern_.size()) return none;
        std::size_t at = buf.rfind(pattern_);
        if (at == std::string_view::npos || at < begin) return none;
        return at + end_len_ > 0 ? at + end_len_ : none;
    }
    std::size_t found = none;
    for (std::size_t p = from + 1; p <= buf.size();) {
        std::size_t split = first(buf, p);
        if (split == none) break;
        found = split;
        p = split + 1;
    }
    return found;
}

std::size_t splitter::first(std::string_view buf, std::size_t from) const {
    if (from == 0) from = 1;
    if (anywhere_) return from <= buf.size() ? from : none;
    if (!re_) {
        std::size_t at = buf.find(pattern_, from >= end_len_ ? from - end_len_ : 0);
        while (at != std::string_view::npos && at + end_len_ < from) at = buf.find(pattern_, at + 1);
        return at == std::string_view::npos ? none : at + end_len_;
    }
    // The regexp is tried at every place a match may start; a match ending the split at p.
    std::cmatch m;
    auto flags = std::regex_constants::match_default;
    for (std::size_t start = 0; start <= buf.size();) {
        if (start > 0) flags |= std::regex_constants::match_prev_avail;
        if (!std::regex_search(buf.data() + start, buf.data() + buf.size(), m, *re_, flags)) return none;
        std::size_t split = start + static_cast<std::size_t>(m.position(0) + m.length(0));
        if (split >= from) return split;
        start += static_cast<std::size_t>(m.position(0)) + 1;
    }
    return none;
}

std::size_t splitter::next_from(std::string_view buf, std::size_t from) const {
    if (anywhere_) return from;
    if (!re_) {
        std::size_t at = buf.find(pattern_, from);
        return at == std::string_view::npos ? none : at + end_len_;
    }
    std::cmatch m;
    auto flags = from > 0 ? std::regex_constants::match_prev_avail : std::regex_constants::match_default;
    if (from > buf.size() || !std::regex_search(buf.data() + from, buf.data() + buf.size(), m, *re_, flags)) return none;
    return from + static_cast<std::size_t>(m.position(0) + m.length(0));
}

} // namespace parafork::cli

#pragma once
// Where pipe mode may end a block: between a record's end (--recend, default "\n") and the
// next record's start (--recstart, default nothing), as strings or, with --regexp, regexps.

#include <algorithm>
#include <cstddef>
#include <optional>
#include <regex>
#include <string>
#include <string_view>

namespace parafork::cli {

class splitter {
public:
    // Throws std::invalid_argument for a bad regexp.
    splitter(const std::string& recend, const std::string& recstart, bool regexp);
    static constexpr std::size_t none = std::string_view::npos;
    // The last place in `buf` a block may end, after `from` (a place that is > 0); none.
    std::size_t last(std::string_view buf, std::size_t from) const;
    // The first place at or after `from` (> 0) a block may end; none. For a literal split the
    // match is looked for at `from - (end's length)` on, so `from` itself counts.
    std::size_t first(std::string_view buf, std::size_t from) const;
    // GNU parallel's --pipepart search: the first recend+recstart starting at or after `from`,
    // the place after its recend; none.
    std::size_t next_from(std::string_view buf, std::size_t from) const;
    bool anywhere() const { return anywhere_; }  // no separator: a block ends anywhere
    // Bytes at the end of a buffer that a later read may still make a place to cut: after a
    // search failed in `len` bytes, the next search may start at len - lookback(len).
    std::size_t lookback(std::size_t len) const { return re_ ? len : std::min(len, pattern_.size()); }

private:
    std::string pattern_;  // recend + recstart
    std::size_t end_len_ = 0;
    std::optional<std::regex> re_;  // (recend)(?=recstart)
    bool anywhere_ = false;
};

} // namespace parafork::cli

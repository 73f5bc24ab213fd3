#include "settings.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

namespace parafork::cli {
namespace {

// A non-negative decimal number at the front of `text`; the rest is left in `text`.
double take_number(std::string_view& text, const char* what) {
    double v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || !(v >= 0) || !std::isfinite(v))
        throw std::invalid_argument(std::string("not a ") + what + ": '" + std::string(text) + "'");
    text.remove_prefix(static_cast<std::size_t>(p - text.data()));
    return v;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
    return true;
}

} // namespace

std::vector<input_source> take_input_sources(std::vector<std::string>& command, const std::string& arg_sep,
                                             const std::string& arg_file_sep) {
    const std::string linked_arg_sep = arg_sep + "+", linked_file_sep = arg_file_sep + "+";
    auto first = std::find_if(command.begin(), command.end(), [&](const std::string& t) {
        return t == arg_sep || t == linked_arg_sep || t == arg_file_sep || t == linked_file_sep;
    });
    std::vector<input_source> sources;
    bool files = false, link_next = false;
    for (auto it = first; it != command.end(); ++it) {
        if (*it == arg_sep || *it == linked_arg_sep) {
            files = false;
            sources.push_back({{}, std::nullopt, *it == linked_arg_sep});
        } else if (*it == arg_file_sep || *it == linked_file_sep) {
            files = true;
            link_next = *it == linked_file_sep;  // "::::+ f g": f is linked, g is not
        } else if (files) {
            sources.push_back(input_source::file(*it, std::exchange(link_next, false)));
        } else {
            sources.back().values.push_back(*it);
        }
    }
    command.erase(first, command.end());
    return sources;
}

std::chrono::milliseconds parse_duration(std::string_view text) {
    std::string_view rest = text;
    double v = take_number(rest, "duration");
    double scale = 1000;  // seconds by default, as GNU parallel --timeout
    if (rest.empty() || rest == "s") scale = 1000;
    else if (rest == "ms") scale = 1;
    else if (rest == "m") scale = 60'000;
    else if (rest == "h") scale = 3'600'000;
    else if (rest == "d") scale = 86'400'000;
    else throw std::invalid_argument("not a duration: '" + std::string(text) + "' (use 10, 1.5s, 250ms, 2m, 1h)");
    double ms = std::ceil(v * scale);
    if (ms > 1e15) throw std::invalid_argument("duration too long: '" + std::string(text) + "'");
    return std::chrono::milliseconds(static_cast<long long>(ms));
}

double parse_percent(std::string_view text, const char* option) {
    std::string_view rest = text;
    double v = 0;
    try {
        v = take_number(rest, "percentage");
    } catch (const std::invalid_argument&) {
        rest = "?";
    }
    if (rest != "%" || v <= 0 || v > 1e9)
        throw std::invalid_argument(std::string("bad ") + option + " '" + std::string(text) + "' (use a percentage like 200%)");
    return v;
}

std::size_t parse_size(std::string_view text) {
    std::string_view rest = text;
    double v = take_number(rest, "size");
    double scale = 1;
    if (!rest.empty()) {
        static constexpr std::string_view units = "kmgt";
        auto unit = units.find(char(rest.front() | 0x20));
        if (unit != std::string_view::npos) {
            bool binary = rest.front() >= 'A' && rest.front() <= 'Z';  // GNU parallel: K is 1024, k 1000
            scale = std::pow(binary ? 1024.0 : 1000.0, double(unit + 1));
            rest.remove_prefix(1);
        }
        if (!rest.empty() && !iequals(rest, "ib") && !iequals(rest, "b"))
            throw std::invalid_argument("not a size: '" + std::string(text) + "' (use 4096, 64K, 1M, 1G)");
    }
    double bytes = std::floor(v * scale);
    if (bytes < 1 || bytes > 0x1p44) throw std::invalid_argument("size out of range: '" + std::string(text) + "'");
    return static_cast<std::size_t>(bytes);
}

std::string decode_escapes(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '\\' || i + 1 == text.size()) {
            out += text[i];
            continue;
        }
        char c = text[++i];
        switch (c) {
            case 'n': out += '\n'; continue;
            case 't': out += '\t'; continue;
            case 'r': out += '\r'; continue;
            case 'a': out += '\a'; continue;
            case 'f': out += '\f'; continue;
            case 'v': out += '\v'; continue;
            case '\\': out += '\\'; continue;
            default: break;
        }
        // \xHH (hex) or \NNN (octal, so \0 is NUL): at most 2 or 3 digits.
        int base = c == 'x' ? 16 : 8;
        std::size_t from = c == 'x' ? i + 1 : i, max = base == 16 ? 2 : 3;
        unsigned v = 0;
        auto [p, ec] = std::from_chars(text.data() + from, text.data() + std::min(text.size(), from + max), v, base);
        if (ec != std::errc() || v > 255)
            throw std::invalid_argument("bad escape in '" + std::string(text) + "' (use \\n, \\t, \\0, \\x1e, \\036)");
        out += static_cast<char>(v);
        i = static_cast<std::size_t>(p - text.data()) - 1;
    }
    return out;
}

char parse_separator(std::string_view text) {
    if (text.size() == 1) return text[0];
    if (text == "\\n") return '\n';
    if (text == "\\t") return '\t';
    if (text == "\\0") return '\0';
    if (text == "\\\\") return '\\';
    if (text == "\\r") return '\r';
    int base = 10;
    std::string_view digits = text;
    if (digits.size() > 2 && digits[0] == '0' && (digits[1] | 0x20) == 'x') {
        base = 16;
        digits.remove_prefix(2);
    }
    unsigned v = 0;
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, base);
    if (ec != std::errc() || p != digits.data() + digits.size() || digits.empty() || v > 255)
        throw std::invalid_argument("not a record separator: '" + std::string(text) +
                                    "' (one character, \\n, \\t, \\0, or a byte value like 0x1e)");
    return static_cast<char>(v);
}

halt_settings parse_halt(std::string_view text) {
    const std::string bad = "bad --halt '" + std::string(text) +
                            "' (use never, now, soon, or now|soon,fail|success|done=N or =N%)";
    halt_settings h;
    // GNU parallel's older spellings first.
    if (text == "0" || text == "never") return h;
    if (text == "now" || text == "soon" || text == "1" || text == "2" || text == "-1" || text == "-2") {
        h.when = text == "now" || text == "2" || text == "-2" ? halt_policy::now : halt_policy::soon;
        if (text.starts_with('-')) h.why = halt_settings::on::success;
        h.job_status = text == "1" || text == "2";
        return h;
    }
    std::string_view number = text;  // "1-99%" alone is soon,fail=N%
    h.when = halt_policy::soon;
    if (auto comma = text.find(','); comma != std::string_view::npos) {
        std::string_view when = text.substr(0, comma), why = text.substr(comma + 1);
        if (when == "now") h.when = halt_policy::now;
        else if (when != "soon") throw std::invalid_argument(bad);
        auto eq = why.find('=');
        if (eq == std::string_view::npos) throw std::invalid_argument(bad);
        std::string_view kind = why.substr(0, eq);
        if (kind == "success") h.why = halt_settings::on::success;
        else if (kind == "done") h.why = halt_settings::on::done;
        else if (kind != "fail") throw std::invalid_argument(bad);
        number = why.substr(eq + 1);
    } else if (text.empty() || text.back() != '%') {
        throw std::invalid_argument(bad);
    }
    if (!number.empty() && number.back() == '%') {
        h.percent = true;
        number.remove_suffix(1);
    }
    std::string_view rest = number;
    try {
        h.threshold = take_number(rest, "number");
    } catch (const std::invalid_argument&) {
        throw std::invalid_argument(bad);
    }
    if (!rest.empty() || h.threshold <= 0 || (h.percent && h.threshold > 100) ||
        (!h.percent && h.threshold != std::floor(h.threshold)))
        throw std::invalid_argument(bad);
    h.job_status = h.why == halt_settings::on::fail && !h.percent && h.threshold == 1;
    return h;
}

unsigned parse_jobs(std::string_view text, unsigned default_jobs) {
    const std::string bad = "bad -j '" + std::string(text) + "' (use N, +N, -N or N%)";
    std::string_view rest = text;
    char sign = 0;
    if (!rest.empty() && (rest[0] == '+' || rest[0] == '-')) {
        sign = rest[0];
        rest.remove_prefix(1);
    }
    unsigned long v = 0;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), v);
    if (ec != std::errc() || rest.empty()) throw std::invalid_argument(bad);
    rest.remove_prefix(static_cast<std::size_t>(p - rest.data()));
    bool percent = rest == "%";
    if (!rest.empty() && !percent) throw std::invalid_argument(bad);
    if (v > 65536 || (percent && sign)) throw std::invalid_argument(bad);
    long jobs = percent      ? static_cast<long>(default_jobs * v / 100)
                : sign == '+' ? static_cast<long>(default_jobs + v)
                : sign == '-' ? static_cast<long>(default_jobs) - static_cast<long>(v)
                              : static_cast<long>(v);
    if (percent && jobs < 1 && v > 0) jobs = 1;
    if (jobs < 1)
        throw std::invalid_argument("-j " + std::string(text) + " leaves no job slot (the default is " +
                                    std::to_string(default_jobs) + ")");
    return static_cast<unsigned>(std::min(jobs, 65536L));
}

} // namespace parafork::cli

#include "template.hpp"
#include "settings.hpp"

#include <algorithm>
#include <charconv>
#include <string_view>

namespace parafork::cli {
namespace {

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

std::string_view transformed(replacement r, std::string_view v) {
    switch (r) {
        case replacement::no_ext: return without_ext(v);
        case replacement::basename: return basename_of(v);
        case replacement::dirname: return dirname_of(v);
        case replacement::basename_no_ext: return without_ext(basename_of(v));
        default: return v;
    }
}

// The suffixes of {n.} {n/} {n//} {n/.}, longest first so "//" is not read as "/".
constexpr std::pair<std::string_view, replacement> positional_suffixes[] = {
    {"//", replacement::dirname}, {"/.", replacement::basename_no_ext}, {"/", replacement::basename},
    {".", replacement::no_ext},   {"", replacement::all},
};

// "{n}" "{-n}" "{n.}" ... at the front of `text`: its length, or 0.
std::size_t match_positional(std::string_view text, long& position, replacement& what) {
    if (text.size() < 3 || text[0] != '{') return 0;
    const char* end = text.data() + text.size();
    auto [p, ec] = std::from_chars(text.data() + 1, end, position);
    if (ec != std::errc()) return 0;
    std::string_view rest(p, static_cast<std::size_t>(end - p));
    for (auto [suffix, r] : positional_suffixes)
        if (rest.starts_with(suffix) && rest.substr(suffix.size()).starts_with('}')) {
            what = r;
            return static_cast<std::size_t>(p - text.data()) + suffix.size() + 1;
        }
    return 0;
}

constexpr std::string_view shell_safe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.+/";

// A value as one shell word, quoted as GNU parallel quotes it: as it is when it holds only
// letters, digits and _-.+/ (so "3" stays 3 in $(( {} * 2 ))), else in single quotes.
std::string shell_word(std::string_view v) {
    if (!v.empty() && v.find_first_not_of(shell_safe) == std::string_view::npos) return std::string(v);
    std::string out = "'";
    for (char c : v) out += c == '\'' ? std::string("'\"'\"'") : std::string(1, c);
    return out + "'";
}

// Shell builtins and keywords no program on PATH stands for: only a shell can run them.
bool shell_builtin(std::string_view word) {
    constexpr std::string_view builtins[] = {
        ".",     "alias", "break", "case",  "cd",       "command", "continue", "eval",   "exec",  "exit",
        "export", "for",  "getopts", "hash", "if",      "local",   "read",     "readonly", "return", "set",
        "shift", "source", "times", "trap",  "type",    "ulimit",  "umask",    "unalias", "unset",  "until",
        "wait",  "while", "{",     "!",     "function",
    };
    return std::find(std::begin(builtins), std::end(builtins), word) != std::end(builtins);
}

bool needs_shell(const std::vector<std::string>& command, bool words_are_args) {
    constexpr std::string_view operators[] = {"|", "||", "&&", ";", "&", "<", ">", ">>", "2>", "2>>", "&>", "2>&1", "|&", ";;"};
    if (command.empty()) return false;
    if (command[0].find_first_of(" \t\n'\"$;|&<>()`\\*?[#=") != std::string::npos || shell_builtin(command[0]))
        return true;
    for (std::size_t i = 1; i < command.size(); ++i) {
        const std::string& w = command[i];
        if (std::find(std::begin(operators), std::end(operators), w) != std::end(operators)) return true;
        // GNU parallel joins the words into one shell string, so "{}\;" or "\$VAR" is shell syntax.
        if (!words_are_args && (w.find_first_of(" \t\n'\"$;|&<>()`\\*?[") != std::string::npos ||
                                w.starts_with('#') || w.starts_with('~')))
            return true;
    }
    return false;
}

} // namespace

std::size_t shell_word_size(std::string_view v) {
    if (!v.empty() && v.find_first_not_of(shell_safe) == std::string_view::npos) return v.size();
    return v.size() + 2 + 4 * static_cast<std::size_t>(std::count(v.begin(), v.end(), '\''));
}

command_template::command_template(const std::vector<std::string>& command, const replacement_names& names,
                                   const std::map<std::string, std::size_t>& columns, template_options o)
    : o_(o), shell_(o.values_are_commands || (!o.no_shell && needs_shell(command, o.words_are_args))) {
    // Context replace repeats a shell word, "x{}y" of "echo x{}y", not the whole string: the
    // words are cut at blanks, as GNU parallel does.
    // GNU parallel reads its command as one string, so {= may open in one word and =} close in
    // a later one ("{= '$_++' =}").
    std::string line;
    for (auto& arg : command) line += (line.empty() ? "" : " ") + arg;
    if (auto open = line.find("{="); open != std::string::npos && line.find("=}", open + 2) != std::string::npos)
        throw usage_error("{= perl expression =} replacement strings are not supported: '" + line + "'");
    std::vector<std::string> words;
    for (auto& arg : command) {
        if (!shell_ || !o.context_replace) {
            words.push_back(arg);
            continue;
        }
        for (std::size_t at = 0; (at = arg.find_first_not_of(" \t", at)) != std::string::npos;) {
            auto end = std::min(arg.size(), arg.find_first_of(" \t", at));
            words.push_back(arg.substr(at, end - at));
            at = end;
        }
    }
    for (auto& arg : words) {
        std::vector<piece> pieces;
        auto literal = [&](char c) {
            if (pieces.empty() || pieces.back().what != replacement::count) pieces.emplace_back();
            pieces.back().literal += c;
        };
        std::string_view text = arg;
        while (!text.empty()) {
            piece p;
            std::size_t len = 0;
            // The named replacement strings, longest first: "{//}" before "{/}".
            for (std::size_t r = 0; r < static_cast<std::size_t>(replacement::count); ++r) {
                const std::string& name = names.text[r];
                if (!name.empty() && name.size() > len && text.starts_with(name)) {
                    len = name.size();
                    p.what = static_cast<replacement>(r);
                }
            }
            if (len == 0 && (len = match_positional(text, p.position, p.what)) && p.position == 0)
                throw usage_error("unknown replacement string '" + std::string(text.substr(0, len)) + "' in '" + arg +
                                  "' (positions start at {1})");
            if (len == 0 && text[0] == '{') {
                auto close = text.find('}');
                if (close != std::string_view::npos) {
                    auto it = columns.find(std::string(text.substr(1, close - 1)));
                    if (it != columns.end()) {
                        len = close + 1;
                        p.what = replacement::all;
                        p.position = static_cast<long>(it->second);
                    }
                }
            }
            if (len == 0) {
                literal(text[0]);
                text.remove_prefix(1);
                continue;
            }
            has_replacements_ = true;
            pieces.push_back(std::move(p));
            text.remove_prefix(len);
        }
        args_.push_back(std::move(pieces));
    }
}

// One argument of the command filled in, appended to argv: several words when {} (or {.} ...)
// stands for several arguments, the first joined to the text before it and the last to the
// text after, as the words GNU parallel's shell sees. `only` (context replace, -N and -X)
// stands for all of them. A word that is nothing but a missing {n} is left out.
void command_template::expand_word(const std::vector<piece>& pieces, const job_args& args, const std::string* only,
                                   std::size_t seq, std::size_t slot, bool quote, std::vector<std::string>& argv) const {
    std::size_t first = argv.size();
    argv.emplace_back();
    auto put = [&](std::string_view v) { argv.back() += quote ? shell_word(v) : std::string(v); };
    bool missing_only = pieces.size() == 1;
    auto n = static_cast<long>(args.size());
    for (auto& p : pieces) {
        if (p.what == replacement::count) {
            argv.back() += p.literal;
        } else if (p.what == replacement::seq || p.what == replacement::slot) {
            argv.back() += std::to_string(p.what == replacement::seq ? seq : slot);
        } else if (p.position == 0) {
            if (only) put(transformed(p.what, *only));
            for (std::size_t i = 0; !only && i < args.size(); ++i) {
                if (i) argv.emplace_back();
                put(transformed(p.what, args[i]));
            }
        } else {
            long i = p.position > 0 ? p.position - 1 : n + p.position;
            if (i < 0 || i >= n) continue;
            put(transformed(p.what, args[static_cast<std::size_t>(i)]));
        }
        missing_only = false;
    }
    if (missing_only) argv.resize(first);
}

std::string command_template::shown(const std::vector<std::string>& argv) const {
    if (shell_ && argv.size() == 3) return argv[2];
    std::string line;
    for (auto& word : argv) line += (line.empty() ? "" : " ") + shell_word(word);
    return line;
}

std::vector<std::string> command_template::expand(const job_args& args, std::size_t seq, std::size_t slot) const {
    auto argv = words(args, seq, slot, shell_ && !o_.values_are_commands);
    if (!shell_) return argv;
    std::string line;
    for (auto& word : argv) line += (line.empty() ? "" : " ") + word;
    return {"/bin/sh", "-c", std::move(line)};
}

std::string command_template::shown(const job_args& args, std::size_t seq, std::size_t slot) const {
    if (o_.no_shell || o_.words_are_args) return shown(expand(args, seq, slot));
    std::string line;  // GNU parallel's string: the words joined, only the values quoted
    for (auto& word : words(args, seq, slot, !o_.values_are_commands)) line += (line.empty() ? "" : " ") + word;
    return line;
}

std::vector<std::string> command_template::words(const job_args& args, std::size_t seq, std::size_t slot, bool quote) const {
    std::vector<std::string> argv;
    argv.reserve(args_.size() + args.size());
    for (auto& pieces : args_) {
        bool repeat = o_.context_replace && std::any_of(pieces.begin(), pieces.end(), [](const piece& p) {
            return p.position == 0 && p.what < replacement::seq;
        });
        if (!repeat) expand_word(pieces, args, nullptr, seq, slot, quote, argv);
        else
            for (auto& a : args) expand_word(pieces, args, &a, seq, slot, quote, argv);
    }
    if (!has_replacements_)
        for (auto& a : args) argv.push_back(quote ? shell_word(a) : a);
    return argv;
}

} // namespace parafork::cli

#pragma once
// The command of `run` as a template: its arguments cut once into literal text and GNU
// parallel's replacement strings, then filled in per job from the job's arguments.

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace parafork::cli {

// What a replacement string stands for. The order is the table's in template.cpp.
enum class replacement { all, no_ext, basename, dirname, basename_no_ext, seq, slot, count };

// The spelling of each replacement string: GNU parallel's defaults, renamed by -I, --er,
// --bnr, --dnr, --bner, --seqreplace, --slotreplace.
struct replacement_names {
    std::string text[static_cast<std::size_t>(replacement::count)] = {"{}", "{.}", "{/}", "{//}", "{/.}", "{#}", "{%}"};
    std::string& operator[](replacement r) { return text[static_cast<std::size_t>(r)]; }
    const std::string& operator[](replacement r) const { return text[static_cast<std::size_t>(r)]; }
};

struct template_options {
    bool context_replace = false;  // -N, -X: an argument holding {} (or {.} ...) is repeated per value
    bool no_shell = false;         // -q: never run the command through a shell
    bool words_are_args = false;   // given after "--": only the first word can make a shell command
    bool values_are_commands = false;  // no command given: each job's values are a shell command
};

// The length of `v` as one shell word, quoted as a shell command quotes a value.
std::size_t shell_word_size(std::string_view v);

// The values one job gets: one per input source (several per source with --colsep).
using job_args = std::vector<std::string>;

class command_template {
public:
    // Throws usage_error for what GNU parallel would read as a replacement string but parafork
    // cannot fill in: {0}, {= perl expression =}. `columns` names positions (--header :),
    // 1-based.
    command_template(const std::vector<std::string>& command, const replacement_names& names,
                     const std::map<std::string, std::size_t>& columns, template_options o = {});

    // The job's argv: each argument with its replacement strings filled in; the arguments
    // appended when the command has no replacement string. A shell command (see uses_shell)
    // is one string for /bin/sh -c, the values in it quoted.
    std::vector<std::string> expand(const job_args& args, std::size_t seq, std::size_t slot) const;
    bool has_replacements() const { return has_replacements_; }
    // An expanded argv as one line a shell would run the same way.
    std::string shown(const std::vector<std::string>& argv) const;
    // The job's command as GNU parallel shows it (--dry-run, -v): its words joined, the values
    // in them quoted for a shell; each word quoted whole after "--" or with -q.
    std::string shown(const job_args& args, std::size_t seq, std::size_t slot) const;
    // As GNU parallel's shell would: the first word is not a plain program name (it holds a
    // blank, a quote, $, ;, |, &, <, >, (, ), `, \, *, ?, [, # or =, or is a shell builtin such as
    // exit or eval), or another word holds shell syntax (a blank, a quote, $, ;, |, &, <, >, (,
    // ), `, \, *, ?, [, or a leading # or ~); after "--" only a shell operator on its own (|,
    // ||, &&, ;, &, <, >, >>, 2>, 2>&1 ...) counts among the other words. Never with -q.
    bool uses_shell() const { return shell_; }

private:
    struct piece {
        std::string literal;         // when what == count
        replacement what = replacement::count;
        long position = 0;           // {n...}: 1-based, negative from the end; 0: every argument
    };
    // The command's words filled in, the values quoted for a shell when `quote`.
    std::vector<std::string> words(const job_args& args, std::size_t seq, std::size_t slot, bool quote) const;
    void expand_word(const std::vector<piece>& pieces, const job_args& args, const std::string* only,
                     std::size_t seq, std::size_t slot, bool quote, std::vector<std::string>& argv) const;

    std::vector<std::vector<piece>> args_;
    bool has_replacements_ = false;
    template_options o_;
    bool shell_ = false;
};

} // namespace parafork::cli

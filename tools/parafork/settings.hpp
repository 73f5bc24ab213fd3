#pragma once
// What the command line asks for, shared by the pipe, run and coproc modes.

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace parafork::cli {

enum class halt_policy { never, now, soon };

struct settings {
    unsigned jobs = 0;                           // resolved (>= 1) before a mode runs
    bool ordered = true;                         // outputs in input order
    std::chrono::milliseconds timeout{};         // per job; 0 = none
    std::chrono::milliseconds grace{200};        // SIGTERM to SIGKILL
    halt_policy halt = halt_policy::never;
    bool bar = false;                            // progress on stderr
    std::string joblog;                          // path, empty = none
    char record_sep = '\n';
    std::size_t block_size = std::size_t{1} << 20;  // pipe mode
    std::vector<std::string> command;            // CMD ARGS...
    std::optional<std::vector<std::string>> arguments;  // run: CMD ... ::: A B C (instead of stdin)
};

// "10" (seconds), "1.5s", "250ms", "2m", "1h". Throws std::invalid_argument.
std::chrono::milliseconds parse_duration(std::string_view text);
// "1048576", "64K", "1M", "1.5M", "1G" (binary multiples, case-insensitive, optional "iB"/"B").
std::size_t parse_size(std::string_view text);
// One character: a literal, or "\n", "\t", "\0", "\\", or a number like "0x1e".
char parse_separator(std::string_view text);

// Exit statuses (GNU parallel's convention for job failures).
inline constexpr int exit_usage = 2;
inline constexpr int exit_cannot_start = 127;  // as a shell's "command not found"
inline constexpr int exit_interrupted = 130;
inline constexpr int exit_output_closed = 141;  // like a filter killed by SIGPIPE
inline constexpr int exit_internal = 255;
inline int exit_for_failures(std::size_t failed) { return failed == 0 ? 0 : failed > 100 ? 101 : int(failed); }

} // namespace parafork::cli

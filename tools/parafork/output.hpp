#pragma once
// Writing captured job output to our stdout/stderr.

#include <cstddef>
#include <stdexcept>
#include <string_view>

namespace parafork::cli {

// Our stdout's reader went away (EPIPE): stop quietly, as a filter killed by SIGPIPE would.
struct output_closed : std::runtime_error {
    output_closed() : std::runtime_error("parafork: output closed") {}
};

// Copies bytes [0, len) of the file `from` (a memfd) to `to`, in the kernel where it can
// (sendfile), with read/write where it cannot. Throws output_closed on EPIPE.
void copy_file_to(int to, int from, std::size_t len);
// write(2) all of it, waiting on a non-blocking fd; output_closed on EPIPE.
void write_out(int to, const char* data, std::size_t len);
// `data` with `tag` before each line (--tag); `at_line_start` carries over between calls, so a
// line written in pieces is tagged once.
void write_tagged(int to, std::string_view data, std::string_view tag, bool& at_line_start);
// copy_file_to with `tag` before each line; the last line is tagged even without a newline.
void copy_file_tagged(int to, int from, std::size_t len, std::string_view tag);

} // namespace parafork::cli

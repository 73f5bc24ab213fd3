#pragma once
// Private to src/mpi: rank 0's journal of one call's answered values (call_options::journal).
// The file is a sequence of records, each [u8 kind][u32 body length][body][u64 FNV-1a of the
// body]: 'C' opens a call (seq, total, the call's code by build-id and offset), 'V' keeps a run
// of values (seq, first, count, the values' bytes as a rank sends them). A record cut short at
// the end (the program died while writing it) is dropped; a whole record that does not check
// out is a protocol_error.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include <parafork/mpi/world.hpp>
#include <parafork/sys/fd.hpp>

namespace parafork::mpi::detail {

class journal {
public:
    using keep_fn = std::function<void(std::uint64_t first, std::uint32_t count, std::string_view bytes)>;
    // Opens or creates `path` and hands each run kept there for call `seq` to `keep`. Throws
    // parafork::error when the file cannot be read or written, bad_launch when it holds call
    // `seq` of another program or input, protocol_error when a record is corrupt.
    journal(const std::string& path, std::uint64_t seq, const code_ref& ref, std::uint64_t total, const keep_fn& keep);
    // Appends one answered run; throws parafork::error when it cannot be written.
    void record(std::uint64_t first, std::uint32_t count, std::string_view bytes);
    // The ranges an earlier run kept (read when the call began), first -> count.
    const std::map<std::uint64_t, std::uint64_t>& kept() const noexcept { return kept_; }

private:
    void append(char kind, std::string_view body);

    std::string path_;
    sys::unique_fd fd_;
    std::uint64_t seq_;
    std::string rec_;
    std::map<std::uint64_t, std::uint64_t> kept_;
};

} // namespace parafork::mpi::detail

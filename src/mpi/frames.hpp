#pragma once
// Private to parafork::mpi (src/mpi, and the command's MPI part): the frames between a program
// and its rank's MPI process, the tags of the messages between ranks, and a byte cursor that
// trusts nothing it reads.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include <parafork/error.hpp>

namespace parafork::mpi::detail {

// Program <-> its MPI process: [u32 body length][i32 peer rank][i32 tag][body]. To the MPI
// process `peer` is the destination; from it, the source.
struct frame_header {
    std::uint32_t length;
    std::int32_t peer, tag;
};
inline constexpr std::uint32_t max_frame = 1u << 30;

enum tag : int {
    tag_hello = 1,    // MPI process -> its program, peer -1: rank, size, every rank's pid and host
    tag_gone = 2,     // a rank's program ended: i32 signal, i32 code (sent by its MPI process)
    tag_ready = 10,   // rank -> root: a call begins here (seq, total, jobs, code)
    tag_work = 11,    // root -> rank: seq, then (u64 first, u32 count) per chunk
    tag_answers = 12, // rank -> root: seq, then value runs and failures
    tag_end = 13,     // root -> rank: seq, u8 ok, message
    // mpi::pool (src/mpi/pool.cpp); every body starts with the seq of the pool call it is in
    tag_pool_ready = 20,   // rank -> root: seq, kind, total, jobs, the call's function by name
    tag_pool_work = 21,    // root -> rank: seq, then 'R' (id, first, count) or 'C' (id, fn, args)
    tag_pool_answers = 22, // rank -> root: seq, then answers as tag_answers
    tag_pool_end = 23,     // root -> rank: seq, u8 ok, message
    // `parafork run` over ranks (tools/parafork/mpi_run.cpp); 44-49 are kept for it too
    tag_cli_ready = 40,    // rank -> 0: u32 jobs at once there, u64 hash of its command line
    tag_cli_job = 41,      // 0 -> rank: u64 id, u32 argc, the arguments
    tag_cli_result = 42,   // rank -> 0: u64 id, i32 code, i32 signal, u8 timed out, f64 start,
                           //            f64 runtime, spawn error, stdout, stderr
    tag_cli_end = 43,      // 0 -> rank: u8 stop (1: stop the jobs running; 0: all is done)
};

template <class T>
void put(std::string& s, T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    s.append(reinterpret_cast<const char*>(&v), sizeof v);
}
inline void put_str(std::string& s, std::string_view v) {
    put(s, static_cast<std::uint32_t>(v.size()));
    s.append(v);
}

class cursor {
public:
    explicit cursor(std::string_view b) : b_(b) {}
    template <class T>
    T get() {
        T v;
        std::memcpy(&v, take(sizeof v).data(), sizeof v);
        return v;
    }
    std::string_view take(std::size_t n) {
        if (n > b_.size() - at_) throw protocol_error("parafork::mpi: truncated message");
        auto v = b_.substr(at_, n);
        at_ += n;
        return v;
    }
    std::string_view str() { return take(get<std::uint32_t>()); }
    bool done() const noexcept { return at_ == b_.size(); }

private:
    std::string_view b_;
    std::size_t at_ = 0;
};

} // namespace parafork::mpi::detail

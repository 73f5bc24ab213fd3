// Rank 0's journal (journal.hpp): read once when a call begins, then appended to, one write per
// answered run, so a program killed at any point leaves every run it recorded whole but the last.
#include "journal.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>

#include <parafork/error.hpp>

#include "frames.hpp"

namespace parafork::mpi::detail {
namespace {

constexpr std::string_view magic = "parafork journal 1\n";
constexpr std::size_t head = 1 + sizeof(std::uint32_t), tail = sizeof(std::uint64_t);

std::uint64_t fnv1a(std::string_view s) noexcept {
    std::uint64_t h = 14695981039346656037ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

[[noreturn]] void fail_io(const std::string& path, const char* what) {
    throw error("parafork::mpi: journal " + path + ": " + what + ": " + std::strerror(errno));
}

} // namespace

journal::journal(const std::string& path, std::uint64_t seq, const code_ref& ref, std::uint64_t total,
                 const keep_fn& keep)
    : path_(path), seq_(seq) {
    fd_ = sys::open_file(path.c_str(), O_RDWR | O_CREAT | O_APPEND, 0644);
    if (!fd_) fail_io(path, "cannot open");
    std::string all;
    char buf[1 << 16];
    for (;;) {
        long n = sys::read_some(fd_.get(), buf, sizeof buf);
        if (n < 0) fail_io(path, "cannot read");
        if (n == 0) break;
        all.append(buf, static_cast<std::size_t>(n));
    }
    auto corrupt = [&](std::size_t at, const std::string& why) {
        throw protocol_error("parafork::mpi: journal " + path + " at byte " + std::to_string(at) + ": " + why);
    };
    if (all.empty()) {
        sys::write_all(fd_.get(), magic);
    } else if (all.size() < magic.size() || all.compare(0, magic.size(), magic) != 0) {
        if (magic.compare(0, all.size(), all) != 0 || all.size() >= magic.size())
            corrupt(0, "not a parafork journal");
        // The program died writing the first line: start the file again.
        if (!sys::truncate_file(fd_.get(), 0)) fail_io(path, "cannot truncate");
        sys::write_all(fd_.get(), magic);
        all.clear();
    }
    bool found = false;
    std::size_t at = magic.size();
    while (at < all.size()) {
        if (all.size() - at < head) break;  // cut short
        const char kind = all[at];
        std::uint32_t len;
        std::memcpy(&len, all.data() + at + 1, sizeof len);
        if (all.size() - at - head < std::uint64_t{len} + tail) break;  // cut short
        const std::string_view body(all.data() + at + head, len);
        std::uint64_t sum;
        std::memcpy(&sum, all.data() + at + head + len, sizeof sum);
        if (sum != fnv1a(body) || (kind != 'C' && kind != 'V')) corrupt(at, "a record does not check out");
        try {
            cursor c(body);
            if (c.get<std::uint64_t>() == seq) {
                if (kind == 'C') {
                    const auto their_total = c.get<std::uint64_t>();
                    const auto build = c.str();
                    const auto offset = c.get<std::uint64_t>();
                    if (found) corrupt(at, "call " + std::to_string(seq) + " opens twice");
                    if (build != ref.build_id || offset != ref.offset || their_total != total)
                        throw bad_launch("parafork::mpi: journal " + path + " holds call " + std::to_string(seq) +
                                         " of another program or input (" + std::to_string(their_total) +
                                         " items, this call has " + std::to_string(total) +
                                         "); remove it to start again");
                    found = true;
                } else {
                    if (!found) corrupt(at, "values before their call");
                    const auto first = c.get<std::uint64_t>();
                    const auto count = c.get<std::uint32_t>();
                    if (count == 0 || first > total || count > total - first) corrupt(at, "values outside the range");
                    // No overlap with a run kept already: each item is answered once.
                    auto next = kept_.lower_bound(first);
                    if (next != kept_.end() && next->first < first + count) corrupt(at, "values kept twice");
                    if (next != kept_.begin() && std::prev(next)->first + std::prev(next)->second > first)
                        corrupt(at, "values kept twice");
                    const auto bytes = c.take(body.size() - sizeof(std::uint64_t) * 2 - sizeof(std::uint32_t));
                    kept_.emplace(first, count);
                    keep(first, count, bytes);
                }
            }
        } catch (const protocol_error& e) {
            if (std::string_view(e.what()).starts_with("parafork::mpi: journal ")) throw;
            corrupt(at, e.what());  // the cursor's: a field runs past its record
        }
        at += head + len + tail;
    }
    if (at < all.size() && !sys::truncate_file(fd_.get(), at)) fail_io(path, "cannot truncate");
    if (!found) {
        std::string b;
        put(b, seq);
        put(b, total);
        put_str(b, ref.build_id);
        put(b, ref.offset);
        append('C', b);
    }
}

void journal::record(std::uint64_t first, std::uint32_t count, std::string_view bytes) {
    std::string b;
    put(b, seq_);
    put(b, first);
    put(b, count);
    b.append(bytes);
    append('V', b);
}

void journal::append(char kind, std::string_view body) {
    if (body.size() > UINT32_MAX) throw error("parafork::mpi: journal " + path_ + ": a run too large to keep");
    rec_.clear();
    rec_.push_back(kind);
    put(rec_, static_cast<std::uint32_t>(body.size()));
    rec_.append(body);
    put(rec_, fnv1a(body));
    try {
        sys::write_all(fd_.get(), rec_);
    } catch (const std::exception& e) {
        throw error("parafork::mpi: journal " + path_ + ": cannot write: " + e.what());
    }
}

} // namespace parafork::mpi::detail

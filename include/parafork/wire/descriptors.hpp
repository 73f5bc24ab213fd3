#pragma once
// Values that carry descriptors: a passed_fd, or a shared_array (its memfd). The encoding marks
// the descriptor's place; the descriptor itself goes beside the bytes over a UNIX socket
// (SCM_RIGHTS), and the receiver gets its own copy, open and O_CLOEXEC. process<Actor> calls,
// and pool / forked / map results, carry them this way.

#include <string>
#include <utility>
#include <vector>

#include <parafork/error.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/wire/codec.hpp>

namespace parafork {

template <class T>
class shared_array;

// A descriptor as a value: the sender lends one of its descriptors, the receiver gets its own
// copy of it. This is how memory made after a fork (a memfd) reaches a running process.
//   void attach(pf::passed_fd fd);                     // a member of a process's actor
//   w.call(&worker::attach, pf::passed_fd(memfd.get()));
class passed_fd {
public:
    passed_fd() = default;
    explicit passed_fd(int borrowed) noexcept : borrowed_(borrowed) {}
    explicit passed_fd(sys::unique_fd owned) noexcept : owned_(std::move(owned)) {}

    int get() const noexcept { return owned_ ? owned_.get() : borrowed_; }
    // Ownership of a received descriptor; empty for a borrowed one.
    sys::unique_fd take() noexcept { return std::move(owned_); }

private:
    int borrowed_ = -1;
    sys::unique_fd owned_;
};

namespace detail {

// Descriptors the value being encoded (in this thread) wants passed with its bytes. Whoever
// encodes clears it first and sends what it holds afterwards, or refuses the value.
std::vector<int>& outgoing_fds() noexcept;

// The next descriptor that came with the bytes being decoded: from the innermost
// incoming_fds_scope of this thread (whoever decodes received bytes opens one over the
// descriptors that came with them); protocol_error when there is none.
sys::unique_fd take_incoming_fd();

// While alive, take_incoming_fd() in this thread draws from `fds`, first to last.
class incoming_fds_scope {
public:
    explicit incoming_fds_scope(std::vector<sys::unique_fd>& fds) noexcept;
    ~incoming_fds_scope();
    incoming_fds_scope(const incoming_fds_scope&) = delete;
    incoming_fds_scope& operator=(const incoming_fds_scope&) = delete;

    // The next descriptor; protocol_error when there is none left.
    sys::unique_fd take();
    // Moves out the descriptors not taken yet (for bytes kept to be decoded later).
    std::vector<sys::unique_fd> rest();

private:
    std::vector<sys::unique_fd>* fds_;
    std::size_t next_ = 0;
    incoming_fds_scope* outer_;
};
// The innermost scope of this thread, or nullptr.
incoming_fds_scope* current_incoming_fds() noexcept;

// Throws std::invalid_argument naming `where` if the value just encoded wants descriptors
// passed and the channel it goes by cannot carry them.
void refuse_descriptors(const char* where);

} // namespace detail

namespace wire {

template <>
struct codec<passed_fd> {
    static constexpr bool is_custom = true;
    static void encode(writer& w, const passed_fd& p) {
        if (p.get() < 0) throw error("parafork: passed_fd holds no descriptor");
        parafork::detail::outgoing_fds().push_back(p.get());
        w.write_bytes("F", 1);
    }
    static void decode(reader& r, passed_fd& p) {
        char mark;
        r.read_bytes(&mark, 1);
        if (mark != 'F') reader::fail("bad passed_fd marker");
        p = passed_fd(parafork::detail::take_incoming_fd());
    }
};

// A shared_array travels as its memory's descriptor and its shape: the receiver maps the same
// memory (no copy). The memory is a memfd, never named in /dev/shm: it is gone when the last
// side lets go, whichever side dies first and however.
template <class T>
struct codec<shared_array<T>> {
    static constexpr bool is_custom = true;
    static void encode(writer& w, const shared_array<T>& a) {
        if (a.fd() < 0) throw error("parafork: an empty shared_array cannot be passed to another process");
        w.write(passed_fd(a.fd()));
        w.write(a.shape());
    }
    static void decode(reader& r, shared_array<T>& a) {
        passed_fd fd;
        typename shared_array<T>::shape_type shape;
        r(fd, shape);
        // from_fd keeps its own duplicate; the received descriptor closes with `fd`.
        a = shared_array<T>::from_fd(fd.get(), std::move(shape));
    }
};

} // namespace wire
} // namespace parafork

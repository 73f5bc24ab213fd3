#pragma once
// shared_array<T>: a typed block of shared memory with a shape (N-d extents, row-major).
//
//  - anonymous by default (a memfd): every child forked after it sees the same memory, and
//    fd() can go to a running child over a UNIX socket (sys::send_fds), which maps it with
//    shared_array<T>::from_fd. Nothing is ever named in /dev/shm, so nothing is left there
//    whatever happens to the processes.
//  - named on request (shared_array<T>::create_named, POSIX shm_open): for unrelated processes.
//    The name is unlinked by the creator's destructor (in the creating process only); a
//    creator killed by SIGKILL cannot do that and the name stays until someone unlinks it
//    (shared_array<T>::unlink_named) or the machine reboots. Prefer anonymous arrays.
//
// Copies of a shared_array (in this process or in forked children) refer to the same memory;
// the memory lives until the last mapping and descriptor of it are gone. T must be trivially
// copyable (the memory is shared byte for byte, no constructors run across processes).

#include <array>
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>

namespace parafork {

namespace detail {

struct shared_block {
    sys::unique_fd fd;
    sys::mapping map;
    std::string name;  // named blocks: the shm name this process created (unlinked at the end)
    int creator = 0;   // pid that created the name

    shared_block() = default;
    shared_block(const shared_block&) = delete;
    shared_block& operator=(const shared_block&) = delete;
    ~shared_block();
};

// Bytes for `count` elements of `elem` bytes; throws std::length_error on overflow.
std::size_t shared_bytes(const std::vector<std::size_t>& shape, std::size_t elem, std::size_t* count);
std::shared_ptr<shared_block> make_anonymous_block(std::size_t bytes);
std::shared_ptr<shared_block> make_named_block(const std::string& name, std::size_t bytes);
std::shared_ptr<shared_block> open_named_block(const std::string& name, std::size_t bytes);
std::shared_ptr<shared_block> adopt_block(int fd, std::size_t bytes);
void unlink_shared_name(const std::string& name);

} // namespace detail

template <class T>
class shared_array {
    static_assert(std::is_trivially_copyable_v<T>, "shared_array<T>: T must be trivially copyable");

public:
    using value_type = T;
    using shape_type = std::vector<std::size_t>;

    shared_array() = default;
    // Anonymous, zero-filled.
    explicit shared_array(shape_type shape) : shape_(std::move(shape)) {
        block_ = detail::make_anonymous_block(detail::shared_bytes(shape_, sizeof(T), &size_));
        init();
    }
    shared_array(std::initializer_list<std::size_t> shape) : shared_array(shape_type(shape)) {}

    // A new POSIX shared-memory object `name` ("/something"); fails if it exists.
    static shared_array create_named(const std::string& name, shape_type shape) {
        shared_array a;
        a.shape_ = std::move(shape);
        a.block_ = detail::make_named_block(name, detail::shared_bytes(a.shape_, sizeof(T), &a.size_));
        a.init();
        return a;
    }
    // Maps an existing named object; its size must match the shape. Never unlinks it.
    static shared_array open_named(const std::string& name, shape_type shape) {
        shared_array a;
        a.shape_ = std::move(shape);
        a.block_ = detail::open_named_block(name, detail::shared_bytes(a.shape_, sizeof(T), &a.size_));
        a.init();
        return a;
    }
    static void unlink_named(const std::string& name) { detail::unlink_shared_name(name); }

    // Maps the memory behind `fd` (e.g. received with sys::recv_fds); the fd is duplicated, the
    // caller keeps its own. Its size must match the shape.
    static shared_array from_fd(int fd, shape_type shape) {
        shared_array a;
        a.shape_ = std::move(shape);
        a.block_ = detail::adopt_block(fd, detail::shared_bytes(a.shape_, sizeof(T), &a.size_));
        a.init();
        return a;
    }

    // The descriptor of the memory (O_CLOEXEC), to pass to a running process.
    int fd() const noexcept { return block_ ? block_->fd.get() : -1; }

    T* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    std::size_t size_bytes() const noexcept { return size_ * sizeof(T); }
    bool empty() const noexcept { return size_ == 0; }
    const shape_type& shape() const noexcept { return shape_; }
    std::size_t rank() const noexcept { return shape_.size(); }
    std::size_t extent(std::size_t dim) const { return shape_.at(dim); }

    std::span<T> span() const noexcept { return {data_, size_}; }
    operator std::span<T>() const noexcept { return span(); }
    T* begin() const noexcept { return data_; }
    T* end() const noexcept { return data_ + size_; }

    // Flat, row-major index.
    T& operator[](std::size_t i) const noexcept { return data_[i]; }
    // a(i, j, k): one index per dimension, row-major, unchecked.
    template <class... I>
    T& operator()(I... idx) const noexcept {
        static_assert(sizeof...(I) > 0);
        std::size_t i = 0, d = 0;
        ((i += static_cast<std::size_t>(idx) * strides_[d++]), ...);
        return data_[i];
    }
    // Checked element access: throws std::out_of_range for a wrong rank or index.
    template <class... I>
    T& at(I... idx) const {
        std::array<std::size_t, sizeof...(I)> ix{static_cast<std::size_t>(idx)...};
        if (ix.size() != shape_.size()) throw std::out_of_range("shared_array::at: wrong number of indices");
        std::size_t i = 0;
        for (std::size_t d = 0; d < ix.size(); ++d) {
            if (ix[d] >= shape_[d]) throw std::out_of_range("shared_array::at: index out of range");
            i += ix[d] * strides_[d];
        }
        return data_[i];
    }

private:
    void init() {
        data_ = static_cast<T*>(block_->map.data());
        strides_.assign(shape_.size(), 1);
        for (std::size_t d = shape_.size(); d-- > 1;) strides_[d - 1] = strides_[d] * shape_[d];
    }

    std::shared_ptr<detail::shared_block> block_;
    shape_type shape_;
    std::vector<std::size_t> strides_;
    std::size_t size_ = 0;
    T* data_ = nullptr;
};

} // namespace parafork

#pragma once
// shared_array<T> as an argument of process<Actor> calls: the array's memory descriptor goes to
// the backend beside the call (a passed_fd) with its shape, and the backend maps the same
// memory. This is valkka's "shared memory made on demand": an array made after start reaches
// the running backend. An array made before start needs nothing: fork already shares it.
// The memory is a memfd, never named in /dev/shm: it is gone when the last side lets go,
// whichever side dies first and however.

#include <parafork/exec/process_base.hpp>
#include <parafork/ipc/shared_array.hpp>

namespace parafork::wire {

template <class T>
struct codec<shared_array<T>> {
    static constexpr bool is_custom = true;
    static void encode(writer& w, const shared_array<T>& a) {
        if (a.fd() < 0) throw error("parafork: an empty shared_array cannot be passed to a process");
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

} // namespace parafork::wire

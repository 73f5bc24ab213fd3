// Failures as the engines other than pool/forked/map have them: an exception about to reach
// the caller. Built with or without the server (attach() gives no slot when there is none).
#include "hub.hpp"

#include <parafork/error.hpp>
#include <parafork/sys/process.hpp>

#include <string>
#include <typeinfo>

namespace parafork::detail::dash {

void note_exception(pool_slot& p, const std::exception_ptr& e, int pid, std::uint64_t task) noexcept try {
    if (!e) return;
    error_note n;
    n.pid = pid;
    n.task = task;
    std::string said;
    try {
        std::rethrow_exception(e);
    } catch (const worker_died& d) {
        n.kind = error_kind::died;
        n.type = "parafork::worker_died";
        n.pid = d.pid();
        n.signal = d.signal();
        n.code = d.exit_code();
        if (d.task()) n.task = *d.task();
        said = d.what();
    } catch (const remote_error& r) {
        n.type = r.type_name();
        said = r.message();
        if (r.pid() > 0) n.pid = r.pid();
        if (r.task()) n.task = *r.task();
    } catch (const timeout_error& t) {
        n.kind = error_kind::timeout;
        n.type = "parafork::timeout_error";
        if (t.pid() > 0) n.pid = t.pid();
        if (t.task()) n.task = *t.task();
        said = t.what();
    } catch (const interrupted&) {
        return;  // Ctrl-C: the program's, not a task's failure
    } catch (const std::exception& x) {
        n.type = typeid(x).name();
        said = x.what();
    } catch (...) {
        n.type = "unknown";
    }
    n.message = said;
    note(p, n);
} catch (...) {
    // Shown or not, the failure reaches the caller.
}

} // namespace parafork::detail::dash

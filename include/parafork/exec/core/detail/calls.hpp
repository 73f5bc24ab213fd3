#pragma once
// The pool's router (internal): many calls (futures, maps, lazy iterators) share one executor.
// Each call owns a span of item ids; answers are routed to the call whose span holds them.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>
#include <vector>

#include <parafork/exec/core/detail/future.hpp>
#include <parafork/exec/core/detail/results.hpp>
#include <parafork/exec/core/executor.hpp>

namespace parafork::detail {

class call_state {
public:
    virtual ~call_state() = default;
    virtual void values(std::uint64_t local, std::uint32_t count, std::string_view bytes) = 0;
    virtual void failed(std::uint64_t local, const failure_info& f) = 0;
    // A lent large value (see executor_sink::on_lent): true once it is stored.
    virtual bool lent(std::uint64_t local, const lent_ref& r) {
        (void)local;
        (void)r;
        return false;
    }

    std::uint64_t base = 0;
    std::uint64_t pushed = 0, answered = 0;  // items
    bool sealed = false;                     // no more items will be pushed
    bool abandoned = false;                  // the owner is gone: answers are dropped
    // Lazy readers (imap) count what the caller has taken: the feeder stays a bounded
    // distance ahead of the reader, not of the workers, so a slow reader bounds memory too.
    bool lazy = false;
    std::uint64_t taken = 0;
    bool finished() const noexcept { return sealed && answered == pushed; }
};

// The answer to one pool::submit: a call of one item, whose slot a future<R> holds.
template <class R>
struct submit_state final : call_state, future_state<R> {
    void values(std::uint64_t, std::uint32_t count, std::string_view bytes) override {
        if (count != 1) throw protocol_error("parafork: a task answered more than one value");
        put_value(bytes);
    }
    void put_value(std::string_view bytes) override {
        if constexpr (!std::is_void_v<R>) this->value = decode_one<R>(bytes);
        this->done = true;
    }
    void failed(std::uint64_t, const failure_info& f) override { this->put_error(make_failure(f, this->task)); }
    bool lent(std::uint64_t, const lent_ref& r) override {
        if constexpr (lendable<R>) {
            this->value = fetch_lent<R>(r);
            this->done = this->value.has_value();
        }
        return this->done;
    }
};

// Routes the executor's answers to calls, and drives the pool for the futures it gave out.
class pool_core final : public executor_sink, public future_driver {
public:
    static constexpr std::uint64_t span = std::uint64_t{1} << 40;  // ids per call

    explicit pool_core(const options& o) : eng(make_local_executor(o)) {}

    // Registers a call and gives it its id span.
    void open(std::shared_ptr<call_state> c);
    // Queues a job whose `first` is the call's own item index.
    void push(call_state& c, job j);
    // Runs the executor once (see executor::pump).
    bool pump(std::optional<executor::clock::time_point> deadline = std::nullopt) {
        return eng->pump(*this, deadline);
    }
    void seal(call_state& c);
    // Cancels what the call has queued; answers still in flight are dropped when they come.
    void abandon(call_state& c);

    // future_driver: a wait pumps the executor; once it was stopped (terminate, the pool's
    // destructor, Ctrl-C) a future still unanswered throws at once.
    bool wait(const answer_slot& slot, std::optional<clock::time_point> deadline) override;
    std::optional<clock::time_point> watch(std::vector<pollfd>& fds) override { return eng->watch(fds); }
    bool poll() override;
    void interrupt() noexcept override { eng->terminate(); }

    void on_values(std::uint64_t first, std::uint32_t count, std::string_view bytes) override;
    void on_failure(std::uint64_t index, const failure_info& f) override;
    bool on_lent(std::uint64_t index, const lent_ref& r) override;

    std::unique_ptr<executor> eng;  // never null
    std::size_t submitted = 0;

private:
    call_state* route(std::uint64_t id, std::uint32_t count);
    void settle(call_state& c);
    std::map<std::uint64_t, std::shared_ptr<call_state>> calls_;
    std::uint64_t next_base_ = 0;
};

} // namespace parafork::detail

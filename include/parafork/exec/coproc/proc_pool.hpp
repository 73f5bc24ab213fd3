#pragma once
// proc_pool: a pool of coprocess "kids", each a filter that reads framed requests on its stdin
// side and writes exactly one framed reply per request on its stdout side (procpool's model).
// Kids are functions `void(int in, int out)` run in forked children, or external commands.
//
// The parent stripes requests over the kids, batching writes, and sleeps in poll() until some
// kid is writable or readable; it never spins. Replies are handed to the caller in the parent
// (so output needs no locking), in completion order or, with options.ordered, in request order.
// A kid that dies is an error naming its pid, its status and the requests it held - or, with
// options.retries, it is replaced and its requests run again elsewhere. Nothing hangs: a kid
// that stops answering is caught by options.task_timeout.

#include <cstddef>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <type_traits>
#include <utility>
#include <vector>

#include <parafork/exec/core/options.hpp>
#include <parafork/wire/frames.hpp>

namespace parafork {

// A kid that runs a function in a forked child. `in` carries requests, `out` takes replies;
// both are blocking descriptors the function may use as it likes (see serve()).
// A kid named by a plain function pointer (or a captureless lambda) can also be forked through
// a zygote (options.zygote), which is how a program that runs threads makes pools safely.
struct kid_fn {
    std::function<void(int in, int out)> fn;
    void (*ptr)(int in, int out) = nullptr;
    template <class F>
        requires std::is_invocable_v<F&, int, int>
    explicit kid_fn(F f) {
        if constexpr (std::is_convertible_v<F, void (*)(int, int)>) ptr = f;
        fn = std::move(f);
    }
};

// A kid that is an external command (searched in PATH); its stdin and stdout are the pipes.
struct kid_cmd {
    std::vector<std::string> argv;
    kid_cmd(std::initializer_list<std::string> args) : argv(args) {}
    explicit kid_cmd(std::vector<std::string> args) : argv(std::move(args)) {}
};

struct reply {
    std::size_t index;      // the request's number, in send order from 0
    std::string_view data;  // valid until the next call on the pool
};

class proc_pool {
public:
    proc_pool(kid_fn kid, frames::framing framing, const options& opts = {});
    proc_pool(kid_cmd kid, frames::framing framing, const options& opts = {});
    ~proc_pool();  // closes the kids' input, gives them options.grace to exit, then kills; reaps
    proc_pool(proc_pool&&) noexcept;
    proc_pool& operator=(proc_pool&&) noexcept;

    // Every member below throws std::logic_error on a pool that was moved from.
    unsigned size() const;
    std::vector<pid_t> pids() const;
    std::size_t in_flight() const;  // sent, not yet answered

    // Queues one request (framed, written in batches); returns its index. Starts the kids if
    // they are not running. Never blocks.
    std::size_t send(std::string_view request);
    // The next reply: with wait, blocks until one comes (nullopt when nothing is in flight);
    // without, returns only what is ready now.
    std::optional<reply> next_reply(bool wait = true);
    // Closes the kids' input (so filters that buffer their output flush it), waits for every
    // reply in flight and DISCARDS it (take replies first with next_reply or final_replies to
    // keep them); a kid that dies meanwhile is thrown. The kids exit and are reaped. A later
    // send() starts fresh kids.
    void finish();
    // Stops every kid now (SIGTERM, grace, SIGKILL), reaps them; in-flight requests are dropped.
    void terminate();

    // Calls on_reply(data) or on_reply(index, data) for every reply that is ready now.
    template <class F>
    std::size_t ready_replies(F&& on_reply) {
        std::size_t n = 0;
        while (auto r = next_reply(false)) {
            deliver(on_reply, *r);
            ++n;
        }
        return n;
    }

    // Sends nothing more; closes the kids' input and delivers every outstanding reply.
    template <class F>
    void final_replies(F&& on_reply) {
        guarded([&] {
            close_input();
            while (auto r = next_reply(true)) deliver(on_reply, *r);
            finish();
        });
    }

    // The whole loop: pulls requests lazily from any input range (elements convertible to
    // std::string_view), keeps a bounded number in flight, and calls on_reply for each reply.
    // If on_reply (or anything) throws, the kids are stopped and reaped before it propagates.
    template <std::ranges::input_range R, class F>
    void eval(R&& requests, F&& on_reply) {
        guarded([&] {
            for (auto&& req : requests) {
                send(std::string_view(req));
                while (over_window())
                    if (auto r = next_reply(true)) deliver(on_reply, *r);
            }
            final_replies(on_reply);
        });
    }

private:
    struct impl;
    template <class F>
    static void deliver(F& on_reply, const reply& r) {
        if constexpr (std::is_invocable_v<F&, std::size_t, std::string_view>) on_reply(r.index, r.data);
        else on_reply(r.data);
    }
    template <class Body>
    void guarded(Body&& body) {
        hold_sigint(true);  // one SIGINT guard for the whole call, not one per poll
        try {
            body();
            hold_sigint(false);
        } catch (...) {
            hold_sigint(false);
            terminate();
            throw;
        }
    }
    void hold_sigint(bool on);
    bool over_window() const;
    impl& live() const;  // throws std::logic_error once moved from
    void close_input();
    std::unique_ptr<impl> impl_;
};

// For function kids: reads request frames from `in`, calls fn(request) for each, and writes its
// return value (anything convertible to std::string_view) as the reply frame. Replies are
// batched and flushed whenever no further request is buffered, so a waiting parent always gets
// them. Returns at end of input.
void serve(int in, int out, frames::framing framing,
           const std::function<void(std::string_view request, std::string& reply)>& fn);

template <class F>
    requires std::is_invocable_v<F&, std::string_view>
void serve(int in, int out, frames::framing framing, F&& fn) {
    serve(in, out, framing, [&fn](std::string_view req, std::string& rep) {
        auto&& r = fn(req);
        rep.assign(std::string_view(r));
    });
}

} // namespace parafork

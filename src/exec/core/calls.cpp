#include <parafork/exec/core/detail/calls.hpp>
#include <parafork/sys/signals.hpp>

#include <string>

namespace parafork::detail {

namespace {
[[noreturn]] void stopped_before(const answer_slot& s) {
    throw error("parafork: the pool was stopped (terminate, its destructor or Ctrl-C) before task " +
                std::to_string(s.task) + " answered");
}
} // namespace

bool pool_core::wait(const answer_slot& s, std::optional<clock::time_point> deadline) {
    if (s.done) return true;
    if (eng->stopped()) stopped_before(s);
    if (deadline && clock::now() >= *deadline) {
        pump(clock::now());  // what has arrived, without sleeping
        return s.done;
    }
    sys::sigint_guard ctrl_c;  // held across the whole wait, not just each poll
    while (!s.done) {
        if (deadline && clock::now() >= *deadline) break;
        if (!pump(deadline)) throw error("parafork: the pool lost task " + std::to_string(s.task));
    }
    return s.done;
}

bool pool_core::poll() {
    if (eng->stopped()) throw error("parafork: the pool was stopped (terminate, its destructor or Ctrl-C) with tasks unanswered");
    return pump(clock::now());
}

void pool_core::open(std::shared_ptr<call_state> c) {
    c->base = next_base_;
    next_base_ += span;
    calls_.emplace(c->base, std::move(c));
}

void pool_core::push(call_state& c, job j) {
    eng->rethrow_fatal();  // a worker_init that threw is every later call's error too
    if (eng->stopped()) throw error("parafork: the pool was terminated");
    c.pushed += j.count;
    j.first += c.base;
    eng->push(std::move(j));
}

void pool_core::seal(call_state& c) {
    c.sealed = true;
    settle(c);
}

void pool_core::abandon(call_state& c) {
    c.pushed -= eng->drop_queued(c.base, c.base + span);
    c.abandoned = true;
    c.sealed = true;
    settle(c);
}

void pool_core::settle(call_state& c) {
    if (c.finished()) calls_.erase(c.base);
}

call_state* pool_core::route(std::uint64_t id, std::uint32_t count) {
    auto it = calls_.upper_bound(id);
    if (it == calls_.begin()) throw protocol_error("parafork: an answer for no known call");
    --it;
    auto& c = *it->second;
    if (id + count > c.base + span) throw protocol_error("parafork: an answer past its call");
    return &c;
}

void pool_core::on_values(std::uint64_t first, std::uint32_t count, std::string_view bytes) {
    call_state* c = route(first, count);
    auto keep = calls_.at(c->base);  // the call may settle (and leave the map) below
    c->answered += count;
    if (!c->abandoned) c->values(first - c->base, count, bytes);
    settle(*c);
}

bool pool_core::on_lent(std::uint64_t index, const lent_ref& r) {
    call_state* c = route(index, 1);
    auto keep = calls_.at(c->base);
    if (!c->abandoned && !c->lent(index - c->base, r)) return false;  // an abandoned call's
    c->answered += 1;                                                 // value is not read at all
    settle(*c);
    return true;
}

void pool_core::on_failure(std::uint64_t index, const failure_info& f) {
    call_state* c = route(index, 1);
    auto keep = calls_.at(c->base);
    c->answered += 1;
    if (!c->abandoned) c->failed(index - c->base, f);
    settle(*c);
}

} // namespace parafork::detail

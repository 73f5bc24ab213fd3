#include <parafork/ipc/channel.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>

#include "channel_layout.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <mutex>
#include <new>
#include <stdexcept>
#include <vector>

#include <poll.h>
#include <sched.h>
#include <unistd.h>

namespace parafork {
namespace detail {
namespace {

// ---------------------------------------------------------------------------------------------
// Robust, process-shared mutexes: the kernel marks one held by a dying thread so the next
// locker gets EOWNERDEAD instead of waiting forever.

void init_robust_mutex(pthread_mutex_t* m) {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    int rc = pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0) sys::throw_errno("pthread_mutex_init", rc);
}

enum class locked { yes, owner_died, no };

locked lock_robust(pthread_mutex_t* m, channel_wait w) {
    int rc;
    if (w.kind == channel_wait::never) {
        rc = pthread_mutex_trylock(m);
    } else if (w.kind == channel_wait::forever) {
        rc = pthread_mutex_lock(m);
    } else {
        // steady_clock is CLOCK_MONOTONIC on Linux.
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(w.deadline.time_since_epoch()).count();
        timespec abs{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
        rc = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &abs);
    }
    switch (rc) {
    case 0: return locked::yes;
    case EOWNERDEAD: pthread_mutex_consistent(m); return locked::owner_died;
    case EBUSY:
    case ETIMEDOUT: return locked::no;
    case ENOTRECOVERABLE: throw protocol_error("parafork: channel lock is unrecoverable");
    default: sys::throw_errno("pthread_mutex_lock", rc);
    }
}

struct unlock_on_exit {
    pthread_mutex_t* m;
    ~unlock_on_exit() { pthread_mutex_unlock(m); }
};

// A zombie counts as dead: its pidfd is readable, so a sleeper watching it would not sleep.
bool pid_alive(pid_t pid) { return pid > 0 && !sys::process_exited(pid); }

void notify_both(channel_core& c);

std::uint64_t now_ns() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(channel_clock::now().time_since_epoch()).count());
}

// A child takes its reserved end within microseconds of the fork. One killed before it could
// (or a fork whose failure we missed) would hold the reservation as long as its parent lives;
// after this grace the reservation no longer counts. A child scheduled even later than that
// takes a fresh end when it finally runs.
constexpr std::uint64_t pending_grace_ns = 3'000'000'000;

// ---------------------------------------------------------------------------------------------
// Ends (slots).

void raise_hwm(end_table& t, std::uint32_t used) {
    auto cur = t.slot_hwm.load();
    while (cur < used && !t.slot_hwm.compare_exchange_weak(cur, used)) {
    }
}

std::uint64_t next_token() {
    static std::atomic<std::uint32_t> counter{0};
    return (static_cast<std::uint64_t>(::getpid()) << 32) | (counter.fetch_add(1) + 1);
}

// Reserves a free slot as pending for a child `parent` is about to fork. -1 if none is free.
int claim_pending(end_table& t, pid_t parent, std::uint64_t token) {
    for (std::size_t i = 0; i < channel_slots; ++i) {
        auto& s = t.slots[i];
        std::uint32_t expected = slot_free;
        if (s.state.load(std::memory_order_relaxed) == slot_free &&
            s.state.compare_exchange_strong(expected, slot_reserving)) {
            s.pid.store(parent);  // filled in before anyone may judge the reservation
            s.since.store(now_ns());
            s.token.store(token);
            s.state.store(slot_pending);
            raise_hwm(t, static_cast<std::uint32_t>(i + 1));
            return static_cast<int>(i);
        }
    }
    return -1;
}

// Makes `slot`, reserved for us under `token`, a live end owned by the calling thread. Never
// blocks: a reservation that expired and went to someone else is theirs.
bool take_slot(end_table& t, int slot, std::uint64_t token) {
    auto& s = t.slots[slot];
    locked l = locked::no;
    for (int i = 0; i < 1000 && l == locked::no; ++i) {
        l = lock_robust(&s.mu, channel_wait::none());  // a liveness scan may hold it an instant
        if (l == locked::no) ::sched_yield();
    }
    if (l == locked::no) return false;
    std::uint32_t expected = slot_pending;
    if (s.token.load() != token || !s.state.compare_exchange_strong(expected, slot_live)) {
        pthread_mutex_unlock(&s.mu);
        return false;
    }
    s.pid.store(::getpid());
    return true;
}

int claim_live(end_table& t) {
    for (int tries = 0; tries < 4; ++tries) {
        std::uint64_t token = next_token();
        int slot = claim_pending(t, ::getpid(), token);
        if (slot < 0) return -1;
        if (take_slot(t, slot, token)) return slot;
    }
    return -1;
}

void release_end(channel_core& c, end_role role) {
    int slot = c.my_slot[role].exchange(-1);
    if (slot < 0) return;
    auto& s = c.ends[role].slots[slot];
    // Unlocking from another thread than the one that locked fails (EPERM); the end then stays
    // open until that thread or the process ends, which the kernel reports.
    if (pthread_mutex_unlock(&s.mu) == 0) {
        s.state.store(slot_free);
        return;
    }
    // Not ours to unlock: taken by another thread. If that thread is gone, the kernel marked it.
    int rc = pthread_mutex_trylock(&s.mu);
    if (rc == EOWNERDEAD) pthread_mutex_consistent(&s.mu);
    if (rc == EOWNERDEAD || rc == 0) {
        pthread_mutex_unlock(&s.mu);
        s.state.store(slot_free);
    } else {
        c.keep_mapped = true;
    }
}

// Ends that are open: live slots whose owner still holds the mutex, pending slots whose
// forking parent lives, plus forks that found no free slot (counted forever, to stay safe).
std::size_t count_open_ends(end_table& t) {
    std::size_t n = t.unregistered_ends.load();
    std::uint32_t hwm = std::min<std::uint32_t>(t.slot_hwm.load(), channel_slots);
    for (std::uint32_t i = 0; i < hwm; ++i) {
        auto& s = t.slots[i];
        switch (s.state.load()) {
        case slot_live: {
            int rc = pthread_mutex_trylock(&s.mu);
            if (rc == EBUSY || rc == EDEADLK) {
                ++n;  // held: the owner lives (possibly us)
            } else if (rc == EOWNERDEAD) {
                pthread_mutex_consistent(&s.mu);  // the owner died: free its end
                pthread_mutex_unlock(&s.mu);
                std::uint32_t expected = slot_live;
                s.state.compare_exchange_strong(expected, slot_free);
            } else if (rc == 0) {
                pthread_mutex_unlock(&s.mu);  // the owner is releasing it right now
            }
            break;
        }
        case slot_pending:
            if (pid_alive(s.pid.load()) && now_ns() - s.since.load() < pending_grace_ns) {
                ++n;
            } else {
                std::uint32_t expected = slot_pending;
                s.state.compare_exchange_strong(expected, slot_free);
            }
            break;
        case slot_reserving: ++n; break;  // its parent is forking right now
        default: break;
        }
    }
    return n;
}

// ---------------------------------------------------------------------------------------------
// The registry of channels this process holds, so a fork gives the child its own end of each.

std::mutex g_registry_mu;
std::vector<channel_core*>& registry() {
    static auto* r = new std::vector<channel_core*>;  // never destroyed: used by atfork handlers
    return *r;
}

void atfork_prepare() noexcept {
    g_registry_mu.lock();
    pid_t self = ::getpid();
    for (auto* c : registry()) {
        // Held across the fork: a child must not inherit it locked by a thread it does not have.
        c->role_mu.lock();
        for (end_role r : {send_end, recv_end}) {
            auto& t = c->ends[r];
            c->pending_token[r] = next_token();
            c->pending_slot[r] = claim_pending(t, self, c->pending_token[r]);
            if (c->pending_slot[r] < 0) t.unregistered_ends.fetch_add(1);
        }
    }
    errno = 0;  // read back in atfork_parent: fork() sets it only when it fails
}

void atfork_parent() noexcept {
    bool failed = errno != 0;
    for (auto* c : registry()) {
        for (end_role r : {send_end, recv_end}) {
            auto& t = c->ends[r];
            if (failed) {
                if (c->pending_slot[r] >= 0) {
                    auto& slot = t.slots[c->pending_slot[r]];
                    std::uint32_t expected = slot_pending;
                    if (slot.token.load() == c->pending_token[r])
                        slot.state.compare_exchange_strong(expected, slot_free);
                } else {
                    t.unregistered_ends.fetch_sub(1);
                }
                notify_both(*c);
            }
            c->pending_slot[r] = -1;
        }
        c->role_mu.unlock();
    }
    g_registry_mu.unlock();
}

void atfork_child() noexcept {
    for (auto* c : registry()) {
        c->closed = false;
        c->ever_sent = false;
        c->received = false;
        for (end_role r : {send_end, recv_end}) {
            auto& t = c->ends[r];
            int slot = c->pending_slot[r];
            c->pending_slot[r] = -1;
            c->my_slot[r] = -1;
            try {
                if (slot >= 0) c->my_slot[r] = take_slot(t, slot, c->pending_token[r]) ? slot : claim_live(t);
            } catch (...) {
            }
            notify_both(*c);  // a sleeper watching our parent's pidfd for this end watches us now
        }
        c->role_mu.unlock();
    }
    g_registry_mu.unlock();
}

void register_core(channel_core* c) {
    static std::once_flag once;
    std::call_once(once, [] { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); });
    std::lock_guard lock(g_registry_mu);
    registry().push_back(c);
}

} // namespace

void channel_leave_all() noexcept {
    std::lock_guard lock(g_registry_mu);
    for (auto* c : registry()) {
        release_end(*c, send_end);
        release_end(*c, recv_end);
        notify_both(*c);  // receivers re-check for closure, senders for no receiver
    }
    registry().clear();  // no later fork hands them on, and no destructor runs here
}

namespace {

void unregister_core(channel_core* c) {
    std::lock_guard lock(g_registry_mu);
    auto& r = registry();
    r.erase(std::remove(r.begin(), r.end(), c), r.end());
}

// ---------------------------------------------------------------------------------------------
// Waiting: spin briefly, then sleep in poll(2) on the side's eventfd and on a pidfd per peer
// end, so the sleep ends on the event itself (data, space, an end closed, a peer's death, the
// deadline) and never on a timer. The eventfd is written only when a waiter registered, so
// the busy path makes no system call. One sleeper per side: a waiter holds send_mu or recv_mu.

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// Spin briefly, then yield the CPU for a while, then sleep. The yielding phase matters both
// ways: on a busy machine it hands the core to the peer we wait for; on an idle one it keeps
// this vCPU awake, since waking a halted vCPU costs tens of microseconds.
// Bounded by time, not iterations: a pause instruction takes 1 to 40 ns depending on the CPU.
constexpr auto spin_budget = std::chrono::microseconds(10);
constexpr auto yield_budget = std::chrono::microseconds(100);

// The spinning half of a wait: true as soon as ready() holds, false once both budgets ran out.
template <class Ready>
bool spin_until(Ready ready) {
    if (ready()) return true;
    auto start = channel_clock::now();
    for (unsigned i = 1;; ++i) {
        cpu_relax();
        if (ready()) return true;
        if (i % 16 == 0 && channel_clock::now() >= start + spin_budget) break;
    }
    while (channel_clock::now() < start + yield_budget) {
        ::sched_yield();
        if (ready()) return true;
    }
    return false;
}

// The side a waiter sleeps on: data (receivers) or space (senders).
enum wake_side : int { wake_data = 0, wake_space = 1 };

std::atomic<std::uint32_t>& waiters_of(channel_core& c, wake_side s) {
    return s == wake_data ? c.sh->data_waiters : c.sh->space_waiters;
}

void notify(channel_core& c, wake_side s) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (waiters_of(c, s).load(std::memory_order_relaxed) != 0) sys::eventfd_signal(c.wake[s].get());
}
void notify_both(channel_core& c) {
    notify(c, wake_data);
    notify(c, wake_space);
}

// What a sleeper polls: its eventfd, one pidfd per peer end (the ends of `peers`) held by
// another process, and the time at which a pending reservation expires. A peer we cannot
// watch (gone already) makes the sleep end at once, so idle() re-counts the ends.
struct sleep_set {
    std::vector<pollfd> fds;
    std::vector<sys::unique_fd> pidfds;
    std::uint64_t wake_ns = ~std::uint64_t{0};

    void collect(channel_core& c, wake_side side, end_table* table) {
        fds.assign(1, pollfd{c.wake[side].get(), POLLIN, 0});
        pidfds.clear();
        wake_ns = ~std::uint64_t{0};
        if (!table) return;  // the owner accounts for the ends: it wakes us
        end_table& peers = *table;
        pid_t self = ::getpid();
        std::uint32_t hwm = std::min<std::uint32_t>(peers.slot_hwm.load(), channel_slots);
        for (std::uint32_t i = 0; i < hwm; ++i) {
            auto& s = peers.slots[i];
            std::uint32_t st = s.state.load();
            if (st == slot_reserving) {
                wake_ns = std::min(wake_ns, now_ns() + 1'000'000);  // a fork in progress: microseconds
                continue;
            }
            if (st != slot_live && st != slot_pending) continue;
            pid_t pid = s.pid.load();
            if (st == slot_pending) wake_ns = std::min(wake_ns, s.since.load() + pending_grace_ns);
            if (pid == self) continue;  // our own end: closing it notifies
            sys::unique_fd fd = sys::open_pidfd(pid);
            if (!fd) {
                wake_ns = 0;
                continue;
            }
            fds.push_back({fd.get(), POLLIN, 0});
            pidfds.push_back(std::move(fd));
        }
    }
};

// Waits until ready() holds; false if the wait ran out. idle() runs before each sleep and
// after each wake: it re-counts the peer ends and throws when the wait can never end.
template <class Ready, class Idle>
bool wait_until(channel_core& c, wake_side side, channel_wait w, Ready ready, Idle idle) {
    if (ready()) return true;
    if (w.kind == channel_wait::never) return false;
    if (spin_until(ready)) return true;
    auto& waiters = waiters_of(c, side);
    end_table* peers = c.ends ? &c.ends[side == wake_data ? send_end : recv_end] : nullptr;
    sleep_set set;
    struct registered {  // counted among the sleepers, so that notifiers write the eventfd
        std::atomic<std::uint32_t>& n;
        explicit registered(std::atomic<std::uint32_t>& w) : n(w) {
            n.fetch_add(1);
            std::atomic_thread_fence(std::memory_order_seq_cst);
        }
        ~registered() { n.fetch_sub(1); }
    };
    for (;;) {
        int r;
        {
            // Register first, then look: a peer that changes what ready() or idle() see after
            // we looked finds us registered and writes the eventfd; one that changed it before
            // is seen. (Counting the ends before registering lost the wake of a last end closed
            // in between: the sleep then lasted until the deadline.)
            registered reg(waiters);
            if (ready()) return true;
            idle();
            if (ready()) return true;
            std::uint64_t limit_ns = ~std::uint64_t{0};
            if (w.kind == channel_wait::until) {
                if (channel_clock::now() >= w.deadline) return false;
                limit_ns = static_cast<std::uint64_t>(
                    std::chrono::duration_cast<std::chrono::nanoseconds>(w.deadline.time_since_epoch()).count());
            }
            set.collect(c, side, peers);
            limit_ns = std::min(limit_ns, set.wake_ns);
            int timeout = -1;
            if (limit_ns != ~std::uint64_t{0}) {
                std::uint64_t now = now_ns();
                std::uint64_t left = limit_ns > now ? limit_ns - now : 0;
                timeout = static_cast<int>(std::min<std::uint64_t>((left + 999'999) / 1'000'000, 1u << 30));
            }
            r = sys::poll_spin(set.fds.data(), set.fds.size(), timeout, std::chrono::microseconds(0));
        }
        if (r < 0 && errno != EINTR) sys::throw_errno("poll");
        if (r < 0) sys::check_interruption();  // may throw: the callers leave the ring sound
        sys::eventfd_drain(c.wake[side].get());  // before the re-check: a later notice stays
        if (ready()) return true;
    }
}

// ---------------------------------------------------------------------------------------------
// The ring.

constexpr std::uint64_t align_up(std::uint64_t n) { return (n + chunk_align - 1) & ~std::uint64_t{chunk_align - 1}; }

void copy_in(channel_core& c, std::uint64_t pos, const char* src, std::size_t n) {
    std::size_t off = pos % c.cap;
    std::size_t first = std::min<std::size_t>(n, c.cap - off);
    if (first) std::memcpy(c.data + off, src, first);
    if (n > first) std::memcpy(c.data, src + first, n - first);
}

void copy_out(channel_core& c, std::uint64_t pos, char* dst, std::size_t n) {
    std::size_t off = pos % c.cap;
    std::size_t first = std::min<std::size_t>(n, c.cap - off);
    std::memcpy(dst, c.data + off, first);
    if (n > first) std::memcpy(dst + first, c.data, n - first);
}

std::uint64_t free_space(channel_core& c) {
    return c.cap - (c.sh->head.load(std::memory_order_relaxed) - c.sh->tail.load(std::memory_order_acquire));
}

// Publishes one chunk; the caller holds send_mu and made sure it fits.
void put_chunk(channel_core& c, std::uint32_t flags, std::uint64_t total, const char* src, std::size_t len) {
    auto* sh = c.sh;
    std::uint64_t pos = sh->head.load(std::memory_order_relaxed);
    chunk_header h{static_cast<std::uint32_t>(len), flags, total};
    copy_in(c, pos + chunk_align, src, len);
    std::memcpy(c.data + pos % c.cap, &h, sizeof h);
    sh->head.store(pos + chunk_align + align_up(len), std::memory_order_release);
    notify(c, wake_data);
}

// The caller holds send_mu: writes the abort chunk a dead or departed sender owed, if room.
template <class Idle>
bool settle_abort(channel_core& c, channel_wait w, Idle idle) {
    auto* sh = c.sh;
    if (!sh->need_abort) return true;
    bool room = wait_until(c, wake_space, w, [&] { return free_space(c) >= chunk_align; }, idle);
    if (!room) return false;
    put_chunk(c, chunk_abort, 0, nullptr, 0);
    sh->need_abort = 0;
    return true;
}

// A receiver waiting for data checks whether the sender it waits for died mid-message.
void recover_dead_sender(channel_core& c) {
    auto* sh = c.sh;
    locked l = lock_robust(&sh->send_mu, channel_wait::none());
    if (l == locked::no) return;  // a live sender holds it
    unlock_on_exit guard{&sh->send_mu};
    if (l == locked::owner_died) sh->need_abort = 1;
    settle_abort(c, channel_wait::none(), [] {});
}

void check_capacity(std::size_t cap) {
    if (cap > channel::max_capacity) throw std::invalid_argument("parafork::channel: capacity above 1 GiB");
}

} // namespace

channel_core::channel_core(std::size_t capacity) {
    check_capacity(capacity);
    cap = std::max<std::uint64_t>(64, align_up(capacity));
    std::size_t total = channel_data_offset() + cap;
    {
        sys::unique_fd fd = sys::make_memfd("parafork-channel", total);
        map = sys::mapping(fd.get(), total);
    }  // the mapping keeps the memory; no descriptor stays open
    sh = new (map.data()) channel_shared{};
    sh->magic = channel_magic;
    sh->capacity = cap;
    init_robust_mutex(&sh->send_mu);
    init_robust_mutex(&sh->recv_mu);
    ends = (new (map.bytes() + sizeof(channel_shared)) channel_ends{})->t;
    for (int r : {send_end, recv_end})
        for (auto& s : ends[r].slots) init_robust_mutex(&s.mu);
    data = map.bytes() + channel_data_offset();
    wake[wake_data] = sys::make_eventfd();
    wake[wake_space] = sys::make_eventfd();
    my_slot[send_end] = claim_live(ends[send_end]);
    my_slot[recv_end] = claim_live(ends[recv_end]);
    register_core(this);
}

channel_core::channel_core(std::shared_ptr<void> owner, std::byte* at, std::size_t capacity)
    : region(std::move(owner)) {
    check_capacity(capacity);
    cap = std::max<std::uint64_t>(64, align_up(capacity));
    sh = new (at) channel_shared{};
    sh->magic = channel_magic;
    sh->capacity = cap;
    init_robust_mutex(&sh->send_mu);
    init_robust_mutex(&sh->recv_mu);
    data = at + region_channel_data_offset;
    wake[wake_data] = sys::make_eventfd();
    wake[wake_space] = sys::make_eventfd();
}

channel_core::~channel_core() {
    if (!ends) return;  // in an owner's region: no ends, no registration
    unregister_core(this);
    bool had_send = my_slot[send_end] >= 0, had_recv = my_slot[recv_end] >= 0;
    release_end(*this, send_end);
    release_end(*this, recv_end);
    if (had_send) notify(*this, wake_data);   // receivers re-check for closure
    if (had_recv) notify(*this, wake_space);  // and senders for no receiver
    if (keep_mapped) new sys::mapping(std::move(map));     // deliberately never unmapped
}

std::string& channel_encode_buffer() {
    thread_local std::string buf;
    if (buf.capacity() > (std::size_t{16} << 20)) std::string().swap(buf);
    return buf;
}

} // namespace detail

using namespace detail;

channel::channel(std::size_t capacity) : core_(std::make_shared<channel_core>(capacity)) {}

std::size_t detail::channel_region_bytes(std::size_t capacity) {
    check_capacity(capacity);
    std::uint64_t n = region_channel_data_offset + std::max<std::uint64_t>(64, align_up(capacity));
    return static_cast<std::size_t>((n + 63) & ~std::uint64_t{63});
}

channel detail::make_region_channel(std::shared_ptr<void> region, void* at, std::size_t capacity) {
    if (reinterpret_cast<std::uintptr_t>(at) % 64 != 0) throw std::invalid_argument("parafork: channel not 64-byte aligned");
    return channel(std::make_shared<channel_core>(std::move(region), static_cast<std::byte*>(at), capacity));
}

std::size_t channel::capacity() const noexcept { return core_->cap; }

std::size_t channel::size_bytes() const noexcept {
    return core_->sh->head.load() - core_->sh->tail.load();
}

std::uint64_t channel::dropped_messages() const noexcept { return core_->sh->dropped.load(); }

std::size_t channel::open_ends() const {
    if (!core_->ends) throw std::logic_error("parafork: this channel's owner counts its ends");
    return count_open_ends(core_->ends[send_end]);
}

std::size_t channel::open_receivers() const {
    if (!core_->ends) throw std::logic_error("parafork: this channel's owner counts its ends");
    return count_open_ends(core_->ends[recv_end]);
}

void channel::close() {
    auto& c = *core_;
    c.closed = true;
    if (c.my_slot[send_end] >= 0) {
        release_end(c, send_end);
        notify(c, wake_data);
    }
}

std::string& channel::receive_buffer() {
    thread_local std::string buf;
    if (buf.capacity() > (std::size_t{16} << 20)) std::string().swap(buf);
    return buf;
}

namespace detail {
namespace {

// A process's first send makes it a sender: it takes a send end if it has none (it received
// first) and, if it never received, gives its receive end up, so that a sender whose receivers
// all died does not wait for itself. A first receive is the mirror image.
void become(channel_core& c, end_role role) {
    std::atomic<bool>& done = role == send_end ? c.ever_sent : c.received;
    std::atomic<bool>& other = role == send_end ? c.received : c.ever_sent;
    if (!c.ends || done.load(std::memory_order_acquire)) return;
    std::lock_guard lock(c.role_mu);
    if (done.load()) return;
    if (c.my_slot[role] < 0) c.my_slot[role] = claim_live(c.ends[role]);
    end_role gone = role == send_end ? recv_end : send_end;
    if (!other.load() && c.my_slot[gone] >= 0) {
        release_end(c, gone);
        notify(c, gone == send_end ? wake_data : wake_space);
    }
    done.store(true, std::memory_order_release);
}

// False if the message did not go through within the wait: it did not start, or (a wait
// with a deadline) it was voided part way, which receivers count as dropped.
bool send_message(channel_core& c, std::string_view bytes, channel_wait w,
                  const std::atomic<std::uint32_t>* abandoned = nullptr) {
    auto* sh = c.sh;
    if (c.closed) throw channel_closed("parafork: channel closed for sending in this process");
    become(c, send_end);

    locked l = lock_robust(&sh->send_mu, w);
    if (l == locked::no) return false;
    unlock_on_exit guard{&sh->send_mu};
    if (l == locked::owner_died) sh->need_abort = 1;  // its message (if any) is void
    // Waiting for room is pointless once no process can ever receive: give up instead (a
    // message that fits needs no receiver yet; one forked later may take it).
    bool started = false;
    auto idle = [&] {
        bool gone = abandoned && abandoned->load(std::memory_order_acquire) != 0;
        if (!gone && (!c.ends || count_open_ends(c.ends[recv_end]) != 0)) return;
        if (started) sh->need_abort = 1;  // the next sender, or a receiver, voids the rest
        throw channel_closed("parafork: channel has no receiver left");
    };
    if (!settle_abort(c, w, idle)) return false;

    const std::uint64_t n = bytes.size();
    const std::uint64_t stream_min = std::max<std::uint64_t>(2 * chunk_align, align_up(c.cap / 4));
    // A message that fits goes in one chunk (so it is never split); a larger one streams.
    std::uint64_t whole = chunk_align + align_up(n);
    std::uint64_t need = whole <= c.cap ? whole : stream_min;
    if (!wait_until(c, wake_space, w, [&] { return free_space(c) >= need; }, idle))
        return false;

    // A deadline bounds the whole message; try_send's "no wait" only its start (a streamed
    // message, once begun, is finished).
    const channel_wait rest_wait = w.kind == channel_wait::never ? channel_wait::infinite() : w;
    started = true;
    // Part way, a message that cannot be finished is void: the abort chunk now if it fits, else
    // the next sender (or a receiver) writes it.
    auto void_rest = [&] {
        sh->need_abort = 1;
        settle_abort(c, channel_wait::none(), [] {});
    };
    std::uint64_t off = 0;
    for (bool first = true;; first = false) {
        std::uint64_t free = free_space(c);
        std::uint64_t len = std::min<std::uint64_t>(n - off, free - chunk_align);
        // Streamed pieces stay a quarter of the ring, so the receiver frees room while we fill
        // it: both copies run at once instead of taking turns.
        if (whole > c.cap) len = std::min<std::uint64_t>(len, stream_min - chunk_align);
        if (len < n - off) len &= ~std::uint64_t{chunk_align - 1};  // keep pieces aligned
        std::uint32_t flags = (first ? chunk_first : 0) | (off + len == n ? chunk_last : 0);
        put_chunk(c, flags, n, bytes.data() + off, static_cast<std::size_t>(len));
        off += len;
        if (off == n) return true;
        std::uint64_t rest = std::min<std::uint64_t>(chunk_align + align_up(n - off), stream_min);
        bool room;
        try {
            room = wait_until(c, wake_space, rest_wait, [&] { return free_space(c) >= rest; }, idle);
        } catch (const channel_closed&) {
            throw;  // idle() already voided the message
        } catch (...) {
            void_rest();  // interrupted
            throw;
        }
        if (!room) {
            void_rest();  // timed out
            return false;
        }
    }
}

// False if no message began within the wait.
bool receive_message(channel_core& c, std::string& out, channel_wait w) {
    auto* sh = c.sh;
    become(c, recv_end);

    locked l = lock_robust(&sh->recv_mu, w);
    if (l == locked::no) return false;
    unlock_on_exit guard{&sh->recv_mu};
    // A receiver that died mid-message left chunks without a first flag: skipped below.

    bool mid = false;
    std::uint64_t got = 0, total = 0;
    auto has_data = [&] {
        return sh->head.load(std::memory_order_acquire) != sh->tail.load(std::memory_order_relaxed);
    };
    auto idle = [&] {
        recover_dead_sender(c);
        if (!has_data() && c.ends && count_open_ends(c.ends[send_end]) == 0 && !has_data()) {
            if (mid) sh->dropped.fetch_add(1);
            throw channel_closed();
        }
    };
    for (;;) {
        // The timeout bounds the wait for a message to begin; one that began is finished
        // (unless an interruption check throws: the rest is then skipped, as after a death).
        bool ready;
        try {
            ready = wait_until(c, wake_data, mid ? channel_wait::infinite() : w, has_data, idle);
        } catch (const channel_closed&) {
            throw;  // counted by idle()
        } catch (...) {
            if (mid) sh->dropped.fetch_add(1);
            throw;
        }
        if (!ready) {
            // Nothing ready for a call that does not wait: a poller must still learn that the
            // channel closed (or that a dead sender's message is void), or it would poll forever.
            if (w.kind != channel_wait::never) return false;
            idle();
            if (!has_data()) return false;
        }
        std::uint64_t pos = sh->tail.load(std::memory_order_relaxed);
        std::uint64_t avail = sh->head.load(std::memory_order_acquire) - pos;
        chunk_header h;
        std::memcpy(&h, c.data + pos % c.cap, sizeof h);
        std::uint64_t size = chunk_align + align_up(h.len);
        if (size > avail || h.flags > (chunk_first | chunk_last | chunk_abort))
            throw protocol_error("parafork: corrupt channel ring");
        auto advance = [&] {
            sh->tail.store(pos + size, std::memory_order_release);
            notify(c, wake_space);
        };
        if (h.flags & chunk_abort) {
            if (mid) sh->dropped.fetch_add(1);
            mid = false;
            advance();
            continue;
        }
        if (h.flags & chunk_first) {
            if (mid) sh->dropped.fetch_add(1);
            mid = true;
            // The length is the sender's word (a dead or hostile one may have written it), so
            // memory follows what arrived: a message that fits in the ring comes whole in this
            // chunk; a longer one streams, and the buffer grows as its pieces come.
            total = h.total;
            bool whole = total <= c.cap && chunk_align + align_up(total) <= c.cap;
            if (whole ? (h.len != total || !(h.flags & chunk_last)) : (h.len >= total || total > out.max_size()))
                throw protocol_error("parafork: corrupt channel ring");
            // A reused buffer of the right size is not even cleared.
            if (whole || out.size() > total) out.resize(static_cast<std::size_t>(total));
            got = 0;
        } else if (!mid) {
            advance();  // the rest of a message whose receiver died: nobody gets it
            continue;
        }
        if (got + h.len > total || ((h.flags & chunk_last) && got + h.len != total))
            throw protocol_error("parafork: corrupt channel ring");
        if (got + h.len > out.size())
            out.resize(static_cast<std::size_t>(std::min<std::uint64_t>(total, std::max<std::uint64_t>(got + h.len, 2 * out.size()))));
        copy_out(c, pos + chunk_align, out.data() + got, h.len);
        got += h.len;
        advance();
        if (h.flags & chunk_last) return true;
    }
}

} // namespace
} // namespace detail

namespace detail {

namespace {
// What channel_arm and channel_spin wait for: data (`bytes` == 0) or room for `bytes`.
auto ready_for(channel_core& c, std::size_t bytes) {
    return [&c, bytes] {
        if (bytes == 0) return c.sh->head.load(std::memory_order_acquire) != c.sh->tail.load(std::memory_order_acquire);
        return free_space(c) >= chunk_align + align_up(bytes) + chunk_align;  // and an abort owed
    };
}
} // namespace

bool channel_spin(channel& ch, std::size_t bytes) { return spin_until(ready_for(*ch.core_, bytes)); }

int channel_arm(channel& ch, std::size_t bytes) {
    auto& c = *ch.core_;
    wake_side side = bytes == 0 ? wake_data : wake_space;
    auto ready = ready_for(c, bytes);
    if (ready()) return -1;
    waiters_of(c, side).fetch_add(1);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (ready()) {
        waiters_of(c, side).fetch_sub(1);
        return -1;
    }
    return c.wake[side].get();
}

void channel_send_unless(channel& ch, std::string_view bytes, const std::atomic<std::uint32_t>& abandoned) {
    send_message(*ch.core_, bytes, channel_wait::infinite(), &abandoned);
}

void channel_wake_senders(channel& ch) noexcept { notify(*ch.core_, wake_space); }

void channel_disarm(channel& ch, std::size_t bytes) noexcept {
    auto& c = *ch.core_;
    wake_side side = bytes == 0 ? wake_data : wake_space;
    waiters_of(c, side).fetch_sub(1);
    sys::eventfd_drain(c.wake[side].get());
}

} // namespace detail

void channel::send_bytes(std::string_view bytes) { send_message(*core_, bytes, channel_wait::infinite()); }

bool channel::try_send_bytes(std::string_view bytes) { return send_message(*core_, bytes, channel_wait::none()); }

void channel::send_bytes_until(std::string_view bytes, channel_wait w) {
    if (!send_message(*core_, bytes, w)) throw timeout_error("parafork: channel send timed out");
}

void channel::receive_bytes(std::string& out) { receive_message(*core_, out, channel_wait::infinite()); }

bool channel::try_receive_bytes(std::string& out) { return receive_message(*core_, out, channel_wait::none()); }

void channel::receive_bytes_until(std::string& out, channel_wait w) {
    if (!receive_message(*core_, out, w)) throw timeout_error("parafork: channel receive timed out");
}

} // namespace parafork

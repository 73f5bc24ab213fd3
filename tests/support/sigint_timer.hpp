#pragma once
// Sends SIGINT to this process after `ms`, as a Ctrl-C would; the timer goes with the object.

#include <gtest/gtest.h>

#include <csignal>
#include <ctime>

namespace parafork::testing {

struct sigint_timer {
    timer_t id{};
    explicit sigint_timer(long ms) {
        sigevent ev{};
        ev.sigev_notify = SIGEV_SIGNAL;
        ev.sigev_signo = SIGINT;
        EXPECT_EQ(::timer_create(CLOCK_MONOTONIC, &ev, &id), 0);
        itimerspec its{};
        its.it_value.tv_sec = ms / 1000;
        its.it_value.tv_nsec = (ms % 1000) * 1000000;
        EXPECT_EQ(::timer_settime(id, 0, &its, nullptr), 0);
    }
    ~sigint_timer() { ::timer_delete(id); }
    sigint_timer(const sigint_timer&) = delete;
    sigint_timer& operator=(const sigint_timer&) = delete;
};

} // namespace parafork::testing

// Options an executor cannot honour are rejected with std::invalid_argument naming the option,
// never silently ignored (docs/architecture.md, "One behaviour across executors").
#include <parafork/exec/coproc/proc_pool.hpp>
#include <parafork/exec/core/options.hpp>
#include <parafork/exec/process/process.hpp>

#include "support/leak_check.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace pf = parafork;
using namespace std::chrono_literals;
using pf::testing::run_bounded;

namespace {

// The message of the invalid_argument that f throws ("" if it throws none).
template <class F> std::string rejection(F&& f) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}

struct counter : pf::actor {
    int n = 0;
    int bump() { return ++n; }
};

void echo_kid(int in, int out) {
    char buf[256];
    long n;
    while ((n = pf::sys::read_some(in, buf, sizeof buf)) > 0)
        pf::sys::write_all(out, buf, static_cast<std::size_t>(n));
}

} // namespace

TEST(options, each_option_that_is_set_is_named) {
    pf::options o;
    EXPECT_EQ(rejection([&] {
                  pf::detail::reject_options(o, "x", {pf::option::jobs, pf::option::zygote});
              }),
              "");
    o.retries = 2;
    EXPECT_EQ(rejection([&] { pf::detail::reject_options(o, "x", {pf::option::jobs}); }), "");
    auto why = rejection([&] {
        pf::detail::reject_options(o, "exec", {pf::option::jobs, pf::option::retries});
    });
    EXPECT_NE(why.find("exec"), std::string::npos) << why;
    EXPECT_NE(why.find("options.retries"), std::string::npos) << why;
    pf::options f;
    f.worker_init = [] {};
    EXPECT_NE(rejection([&] {
                  pf::detail::reject_options(f, "x", {pf::option::worker_init});
              }).find("worker_init"),
              std::string::npos);
    pf::options g;
    g.grace = 1s;
    EXPECT_NE(
        rejection([&] { pf::detail::reject_options(g, "x", {pf::option::grace}); }).find("grace"),
        std::string::npos);
}

TEST(options, a_process_rejects_the_pool_options) {
    run_bounded(
        "process options", 60, +[] {
            PARAFORK_LEAK_CHECK();
            pf::options o;
            o.task_timeout = 100ms;
            auto why = rejection([&] { pf::process<counter> p(counter{}, o); });
            EXPECT_NE(why.find("task_timeout"), std::string::npos) << why;
            pf::options j;
            j.jobs = 4;
            EXPECT_NE(rejection([&] { pf::process<counter> p(counter{}, j); }).find("jobs"),
                      std::string::npos);
            // What it does honour still works.
            pf::options ok;
            ok.name = "counter";
            ok.grace = 300ms;
            pf::process<counter> p(counter{}, ok);
            p.start();
            EXPECT_EQ(p.ask(&counter::bump).get(), 1);
            p.join();
        });
}

TEST(options, a_proc_pool_rejects_chunks_recycling_and_progress) {
    run_bounded(
        "proc_pool options", 60, +[] {
            PARAFORK_LEAK_CHECK();
            for (auto set : {+[](pf::options& o) { o.chunksize = 8; },
                             +[](pf::options& o) { o.max_tasks_per_worker = 3; },
                             +[](pf::options& o) { o.progress = true; }}) {
                pf::options o;
                o.jobs = 1;
                set(o);
                auto why = rejection(
                    [&] { pf::proc_pool pp(pf::kid_fn(&echo_kid), pf::frames::lines, o); });
                EXPECT_NE(why.find("parafork::proc_pool: options."), std::string::npos) << why;
            }
        });
}

// End-to-end tests of the `parafork` command: the built binary runs real commands (awk, tr,
// sort, wc, sh) and its output is compared with what the serial run gives.

#include <support/leak_check.hpp>

#include <parafork/exec/core/options.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/process.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <poll.h>
#include <sstream>
#include <string>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace sys = parafork::sys;
using namespace std::chrono_literals;

namespace {

#ifdef PARAFORK_CLI_PATH
const std::string cli = PARAFORK_CLI_PATH;
#else
const std::string cli = std::string(PARAFORK_KID_DIR) + "/../tools/parafork";
#endif

struct result {
    int status = -1;  // exit code, or 128 + signal
    std::string out, err;
};

sys::unique_fd memfd_with(std::string_view data) {
    auto fd = sys::make_memfd("test-input", 0);
    if (!data.empty()) sys::write_all(fd.get(), data);
    ::lseek(fd.get(), 0, SEEK_SET);
    return fd;
}

std::string read_all(int fd) {
    std::string s(sys::fd_size(fd), '\0');
    std::size_t got = 0;
    while (got < s.size()) {
        long n = ::pread(fd, s.data() + got, s.size() - got, static_cast<off_t>(got));
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    s.resize(got);
    return s;
}

int as_status(const sys::exit_status& st) { return st.signal ? 128 + st.signal : st.code; }

// Runs `program args...` with `input` on stdin; a run over `seconds` is killed and fails.
result run_program(std::vector<std::string> args, std::string_view input, int seconds) {
    auto in = memfd_with(input);
    auto out = sys::make_memfd("test-out", 0);
    auto err = sys::make_memfd("test-err", 0);
    sys::spawn_options so;
    so.stdin_fd = in.get();
    so.stdout_fd = out.get();
    so.stderr_fd = err.get();
    sys::child c(sys::spawn(args, so));
    result r;
    auto st = c.wait_for(std::chrono::seconds(seconds));
    if (!st) {
        ADD_FAILURE() << "parafork did not finish in " << seconds << " s";
        c.kill_and_reap();
        st = c.status();
    }
    r.status = as_status(*st);
    r.out = read_all(out.get());
    r.err = read_all(err.get());
    return r;
}

result run_cli(std::vector<std::string> args, std::string_view input, int seconds = 60) {
    args.insert(args.begin(), cli);
    return run_program(std::move(args), input, seconds);
}

// GNU parallel itself (installed by scripts/install-deps), to compare outputs with.
result run_gnu_parallel(std::vector<std::string> args, std::string_view input, int seconds = 60) {
    args.insert(args.begin(), {"/usr/bin/parallel", "--will-cite"});
    return run_program(std::move(args), input, seconds);
}

// Deterministic "random" lines of 0..62 printable characters.
std::string make_lines(std::size_t n, unsigned seed = 1) {
    std::string s;
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (std::size_t i = 0; i < n; ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        std::size_t len = x % 63;
        for (std::size_t k = 0; k < len; ++k) s += char('!' + ((x >> (k % 48)) + k * 7) % 90);
        s += '\n';
    }
    return s;
}

std::string lengths_of(const std::string& text, char sep = '\n') {
    std::string out;
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find(sep, start);
        if (end == std::string::npos) end = text.size();
        out += std::to_string(end - start) + "\n";
        start = end + 1;
    }
    return out;
}

std::vector<std::string> split_lines(const std::string& s) {
    std::vector<std::string> v;
    std::istringstream in(s);
    for (std::string line; std::getline(in, line);) v.push_back(line);
    return v;
}

std::string upper(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
}

std::string temp_path(const char* name) {
    return "/tmp/parafork-test-cli-" + std::to_string(::getpid()) + "-" + name;
}

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

const std::string awk_len = "{print length($0)}";

} // namespace

// ---- pipe ------------------------------------------------------------------------------------

TEST(cli_pipe, awk_output_identical_to_serial_run) {
    PARAFORK_LEAK_CHECK();
    std::string input = make_lines(50'000);
    std::string expected = lengths_of(input);
    for (std::string block : {"1K", "64K", "1M"}) {
        auto r = run_cli({"pipe", "-j3", "--block", block, "--", "awk", awk_len}, input);
        EXPECT_EQ(r.status, 0) << r.err;
        EXPECT_EQ(r.out, expected) << "block " << block;
        EXPECT_EQ(r.err, "");
    }
}

TEST(cli_pipe, tr_and_cat_keep_every_byte_in_order) {
    PARAFORK_LEAK_CHECK();
    std::string input = make_lines(20'000, 7);
    auto r = run_cli({"pipe", "-j2", "--block", "4K", "--", "tr", "a-z", "A-Z"}, input);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, upper(input));
    // No trailing newline: the last record is still a record.
    std::string ragged = input + "no newline at the end";
    r = run_cli({"pipe", "--block", "3K", "cat"}, ragged);  // no "--": cat is the first positional
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, ragged);
}

TEST(cli_pipe, blocks_end_at_records_and_wc_adds_up) {
    PARAFORK_LEAK_CHECK();
    std::string input = make_lines(30'000, 3);
    auto r = run_cli({"pipe", "-j2", "--block", "2K", "--", "wc", "-l"}, input);
    ASSERT_EQ(r.status, 0) << r.err;
    std::size_t total = 0, blocks = 0;
    for (auto& l : split_lines(r.out)) total += std::stoul(l), ++blocks;
    EXPECT_EQ(total, 30'000u);
    EXPECT_GT(blocks, 100u);  // many blocks, each ending at a line end
    // Every block's last byte is a newline: the record separator. A third of the input still
    // makes over 300 blocks; three processes each take 40 s on a loaded 2-core machine.
    r = run_cli({"pipe", "--block", "1K", "--", "sh", "-c", "tail -c 1 | od -An -tx1"}, make_lines(10'000, 3));
    ASSERT_EQ(r.status, 0) << r.err;
    auto lines = split_lines(r.out);
    EXPECT_GT(lines.size(), 100u);
    for (auto& l : lines) EXPECT_EQ(l, " 0a");
}

TEST(cli_pipe, null_separated_records) {
    PARAFORK_LEAK_CHECK();
    std::string input;
    for (int i = 0; i < 5000; ++i) input += "rec\n" + std::to_string(i) + std::string(1, '\0');
    auto r = run_cli({"pipe", "--null", "--block", "1K", "--", "sh", "-c", "tail -c 1 | od -An -tx1"}, input);
    ASSERT_EQ(r.status, 0) << r.err;
    for (auto& l : split_lines(r.out)) EXPECT_EQ(l, " 00");
    r = run_cli({"pipe", "-0", "-j2", "--block", "1K", "--", "tr", "a-z", "A-Z"}, input);
    EXPECT_EQ(r.out, upper(input));
    r = run_cli({"pipe", "--record-sep", "\\0", "--block", "1K", "--", "cat"}, input);
    EXPECT_EQ(r.out, input);
}

TEST(cli_pipe, unordered_gives_the_same_lines) {
    PARAFORK_LEAK_CHECK();
    std::string input = make_lines(20'000, 5);
    auto r = run_cli({"pipe", "--unordered", "-j3", "--block", "2K", "--", "awk", awk_len}, input);
    ASSERT_EQ(r.status, 0) << r.err;
    auto got = split_lines(r.out), want = split_lines(lengths_of(input));
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(got, want);
}

TEST(cli_pipe, empty_input_runs_nothing) {
    PARAFORK_LEAK_CHECK();
    auto r = run_cli({"pipe", "--", "sh", "-c", "echo ran"}, "");
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out, "");
}

TEST(cli_pipe, failing_jobs_are_reported_and_set_the_exit_status) {
    PARAFORK_LEAK_CHECK();
    std::string input = make_lines(2'000);
    auto r = run_cli({"pipe", "--block", "4K", "--", "sh", "-c", "cat >/dev/null; echo oops >&2; exit 3"}, input);
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("exit code 3"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("oops"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("block 1 (input bytes 0-"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("job(s) failed"), std::string::npos) << r.err;
}

TEST(cli_pipe, timeout_and_bar) {
    PARAFORK_LEAK_CHECK();
    auto r = run_cli({"pipe", "--bar", "--timeout", "0.3", "--block", "1K", "--", "sh", "-c",
                      "cat >/dev/null; exec sleep 30"},
                     make_lines(100), 30);
    EXPECT_EQ(r.status, 4) << r.err;  // 4 blocks, every one over its time
    EXPECT_NE(r.err.find("timed out (signal 15 (SIGTERM))"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("100% 4:0=0s"), std::string::npos) << r.err;
}

TEST(cli_pipe, missing_command_is_a_clear_error) {
    PARAFORK_LEAK_CHECK();
    auto r = run_cli({"pipe", "--", "parafork-no-such-command", "x"}, make_lines(1000));
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("parafork-no-such-command"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("No such file"), std::string::npos) << r.err;
}

TEST(cli_pipe, halt_now_stops_at_the_first_failure) {
    PARAFORK_LEAK_CHECK();
    std::string log = temp_path("halt.log");
    // Every block fails; with --halt now only the first few (those already started) run.
    auto r = run_cli({"pipe", "-j1", "--halt", "now", "--joblog", log, "--block", "1K", "--", "sh", "-c",
                      "cat >/dev/null; exit 4"},
                     make_lines(20'000));
    EXPECT_EQ(r.status, 1) << r.err;
    auto rows = split_lines(slurp(log));
    ::unlink(log.c_str());
    EXPECT_EQ(rows.size(), 2u);  // the header and the one failed job
}

TEST(cli_pipe, halt_now_kills_the_running_job_and_soon_lets_it_finish) {
    PARAFORK_LEAK_CHECK();
    // -j2, one block per record: "f" fails once "s" is running (s leaves a marker file); "n"
    // could start only after one of them finished, and the failure stops that in both modes.
    std::string marker = temp_path("halt.started");
    auto job = [&](const char* late) {
        return std::vector<std::string>{
            "sh", "-c",
            "read l; [ $l = f ] && { while [ ! -e " + marker + " ]; do sleep 0.01; done; exit 1; }; [ $l = s ] && { touch " +
                marker + "; " + late + "; }; echo never"};
    };
    std::vector<std::string> args = {"pipe", "-j2", "--block", "1", "--halt", "now", "--"};
    for (auto& a : job("sleep 30; echo late")) args.push_back(a);
    auto t0 = std::chrono::steady_clock::now();
    auto r = run_cli(args, "f\ns\nn\n", 40);
    ::unlink(marker.c_str());
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s) << "--halt now waited for the running job";
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_EQ(r.out, "");
    args = {"pipe", "-j2", "--block", "1", "--halt", "soon", "--"};
    for (auto& a : job("sleep 1; echo late; exit 0")) args.push_back(a);
    r = run_cli(args, "f\ns\nn\n", 40);
    ::unlink(marker.c_str());
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_EQ(r.out, "late\n");  // the running job finished and was written; "n" never ran
}

TEST(cli_pipe, unordered_writes_in_completion_order) {
    PARAFORK_LEAK_CHECK();
    const std::vector<std::string> cmd = {"--", "sh", "-c", "read l; [ $l = slow ] && sleep 1; echo $l"};
    std::vector<std::string> args = {"pipe", "-j2", "--block", "1", "--unordered"};
    args.insert(args.end(), cmd.begin(), cmd.end());
    auto r = run_cli(args, "slow\nfast\n");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "fast\nslow\n");
    args = {"pipe", "-j2", "--block", "1"};
    args.insert(args.end(), cmd.begin(), cmd.end());
    EXPECT_EQ(run_cli(args, "slow\nfast\n").out, "slow\nfast\n");
}

TEST(cli_pipe, record_longer_than_a_block_stays_whole) {
    PARAFORK_LEAK_CHECK();
    std::string input = "short\n" + std::string(10'000, 'x') + "\nend\n";
    auto r = run_cli({"pipe", "--block", "1K", "--", "awk", awk_len}, input);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "5\n10000\n3\n");
}

TEST(cli_pipe, comma_separated_records) {
    PARAFORK_LEAK_CHECK();
    std::string input;
    for (int i = 0; i < 3000; ++i) input += "r" + std::to_string(i) + ",";
    // Each block must end at a comma and hold whole records only: a job counts its records.
    auto r = run_cli({"pipe", "--record-sep", ",", "-j2", "--block", "1K", "--", "sh", "-c",
                      R"(d=$(cat); case "$d" in *,) ;; *) echo BAD;; esac; printf %s "$d" | tr , '\n' | grep -c '^r[0-9]*$')"},
                     input);
    ASSERT_EQ(r.status, 0) << r.err;
    auto counts = split_lines(r.out);
    EXPECT_GT(counts.size(), 10u);
    long sum = 0;
    for (auto& c : counts) sum += std::stol(c);  // "BAD" throws: the test fails
    EXPECT_EQ(sum, 3000);
}

// Job environment: its own process group, SIGINT not ignored (Ctrl-C is ours; we stop jobs).
TEST(cli_pipe, job_has_its_own_process_group_and_default_sigint) {
    PARAFORK_LEAK_CHECK();
    auto r = run_cli({"pipe", "--", "sh", "-c",
                      "cat >/dev/null; echo $$ $(cut -d' ' -f5 /proc/$$/stat); grep SigIgn /proc/self/status"},
                     "x\n");
    ASSERT_EQ(r.status, 0) << r.err;
    auto lines = split_lines(r.out);
    ASSERT_EQ(lines.size(), 2u) << r.out;
    std::istringstream ids(lines[0]);
    long pid = 0, pgrp = -1;
    ids >> pid >> pgrp;
    EXPECT_EQ(pid, pgrp) << lines[0];
    ASSERT_TRUE(lines[1].starts_with("SigIgn:")) << lines[1];
    unsigned long long ignored = std::stoull(lines[1].substr(7), nullptr, 16);
    EXPECT_EQ(ignored & (1ull << (SIGINT - 1)), 0u) << lines[1];
}

namespace {

// A process that is gone or a zombie (an orphan stays one until its new parent reaps it).
bool process_alive(pid_t pid) {
    std::string stat = parafork::testing::read_proc("/proc/" + std::to_string(pid) + "/stat");
    auto close = stat.rfind(')');
    return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z' && stat[close + 2] != 'X';
}

bool dies_within(pid_t pid, std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (process_alive(pid) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    return !process_alive(pid);
}

// How many of pid's open fds are memory files whose name starts with `name`.
std::size_t open_memfds(pid_t pid, std::string_view name) {
    std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    std::size_t n = 0;
    if (auto* d = ::opendir(dir.c_str())) {
        while (auto* e = ::readdir(d)) {
            char target[256];
            long len = ::readlink((dir + "/" + e->d_name).c_str(), target, sizeof target - 1);
            if (len > 0 && std::string_view(target, static_cast<std::size_t>(len)).starts_with("/memfd:" + std::string(name)))
                ++n;
        }
        ::closedir(d);
    }
    return n;
}

} // namespace

// While every slot is busy, two blocks wait cut and ready (and no more are read).
TEST(cli_pipe, two_blocks_are_cut_ahead_of_the_jobs) {
    PARAFORK_LEAK_CHECK();
    std::string pidfile = temp_path("ahead.pids");
    auto in = memfd_with(make_lines(2'000));
    auto out = sys::make_memfd("test-out", 0);
    sys::spawn_options so;
    so.stdin_fd = in.get();
    so.stdout_fd = out.get();
    so.stderr_fd = out.get();
    sys::child c(sys::spawn({cli, "pipe", "-j1", "--block", "1K", "--", "sh", "-c", "echo $$ >> " + pidfile + "; exec sleep 30"}, so));
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (split_lines(slurp(pidfile)).empty() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    auto pids = split_lines(slurp(pidfile));
    ASSERT_EQ(pids.size(), 1u) << read_all(out.get());
    // The parent cuts right after it starts the job; give it a moment on a busy machine.
    std::size_t ready = 0;
    deadline = std::chrono::steady_clock::now() + 5s;
    while ((ready = open_memfds(c.pid(), "parafork-block")) < 2 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    std::this_thread::sleep_for(100ms);  // had it read on, a third would show by now
    ready = open_memfds(c.pid(), "parafork-block");
    c.kill_and_reap();
    ::unlink(pidfile.c_str());
    EXPECT_EQ(ready, 2u);
    EXPECT_TRUE(dies_within(std::stoi(pids[0]), 5s));
}

// A timeout stops the whole job, `sleep` in `sh -c 'sleep 60 | cat'` included.
TEST(cli_pipe, timeout_stops_the_jobs_grandchildren) {
    PARAFORK_LEAK_CHECK();
    std::string pidfile = temp_path("grandchild.pids");
    auto r = run_cli({"pipe", "--timeout", "300ms", "--", "sh", "-c",
                      "cat >/dev/null; sh -c 'echo $$ >> " + pidfile + "; exec sleep 60' | cat"},
                     "x\n", 30);
    auto pids = split_lines(slurp(pidfile));
    ::unlink(pidfile.c_str());
    EXPECT_EQ(r.status, 1) << r.err;
    ASSERT_EQ(pids.size(), 1u);
    pid_t sleeper = std::stoi(pids[0]);
    bool alive = !dies_within(sleeper, 5s);
    if (alive) ::kill(sleeper, SIGKILL);
    EXPECT_FALSE(alive) << "the job's grandchild outlived its timeout";
}

// A job dies with parafork even when parafork gets no chance to stop it (SIGKILL).
TEST(cli_pipe, job_dies_when_parafork_is_killed) {
    PARAFORK_LEAK_CHECK();
    std::string pidfile = temp_path("orphan.pids");
    auto in = memfd_with("x\n");
    auto out = sys::make_memfd("test-out", 0);
    sys::spawn_options so;
    so.stdin_fd = in.get();
    so.stdout_fd = out.get();
    so.stderr_fd = out.get();
    sys::child c(sys::spawn({cli, "pipe", "--", "sh", "-c", "echo $$ >> " + pidfile + "; exec sleep 60"}, so));
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (split_lines(slurp(pidfile)).empty() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    auto pids = split_lines(slurp(pidfile));
    ::unlink(pidfile.c_str());
    ASSERT_EQ(pids.size(), 1u) << read_all(out.get());
    c.kill_and_reap();
    pid_t job = std::stoi(pids[0]);
    bool gone = dies_within(job, 5s);
    if (!gone) ::kill(job, SIGKILL);
    EXPECT_TRUE(gone) << "the job outlived parafork";
}

// The command is looked up on PATH (once) the way execvp does: a directory whose file is not
// executable is passed over, and an executable without a #! line runs under /bin/sh.
TEST(cli_run, command_found_on_path_like_execvp) {
    PARAFORK_LEAK_CHECK();
    std::string dir1 = temp_path("path1"), dir2 = temp_path("path2");
    ASSERT_EQ(::mkdir(dir1.c_str(), 0700), 0);
    ASSERT_EQ(::mkdir(dir2.c_str(), 0700), 0);
    const std::string name = "parafork-test-script";
    std::ofstream(dir1 + "/" + name) << "echo not executable\n";
    std::ofstream(dir2 + "/" + name) << "echo script ran \"$1\"\n";
    ::chmod((dir2 + "/" + name).c_str(), 0700);
    std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin";
    ::setenv("PATH", (dir1 + ":" + dir2 + ":" + old_path).c_str(), 1);
    auto r = run_cli({"run", "-k", "-j2", "--", name, ":::", "a", "b", "c"}, "");
    ::setenv("PATH", old_path.c_str(), 1);
    for (auto& d : {dir1, dir2}) {
        ::unlink((d + "/" + name).c_str());
        ::rmdir(d.c_str());
    }
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "script ran a\nscript ran b\nscript ran c\n");
}

// ---- run -------------------------------------------------------------------------------------

TEST(cli_run, placeholder_is_replaced_or_the_line_appended) {
    PARAFORK_LEAK_CHECK();
    auto r = run_cli({"run", "-k", "--", "echo", "<{}>", "{.}", "{/}", "{#}"}, "a/b.txt\nc\n");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "<a/b.txt> a/b b.txt 1\n<c> c c 2\n");
    r = run_cli({"run", "-k", "-j3", "--", "echo", "pre"}, "x y\nz\n\n");
    EXPECT_EQ(r.out, "pre x y\npre z\npre \n");  // one argument per line, spaces kept
}

TEST(cli_run, records_from_the_command_line) {
    PARAFORK_LEAK_CHECK();
    auto r = run_cli({"run", "-k", "--", "echo", "x{}", ":::", "a", "b c", "d"}, "ignored\n");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "xa\nxb c\nxd\n");
    EXPECT_EQ(run_cli({"pipe", "--", "cat", ":::", "a"}, "").status, 2);
}

TEST(cli_run, keep_order_or_completion_order) {
    PARAFORK_LEAK_CHECK();
    const std::string input = "3\n1\n2\n";
    const std::vector<std::string> cmd = {"--", "sh", "-c", "sleep 0.$1; echo $1", "sh", "{}"};
    std::vector<std::string> args = {"run", "-j3", "-k"};
    args.insert(args.end(), cmd.begin(), cmd.end());
    auto r = run_cli(args, input);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, input);
    // Without -k, completion order: the long sleep (1.5 s) finishes well after the short one.
    const std::vector<std::string> slow_first = {"--", "sh", "-c", "sleep $1; echo $1", "sh", "{}"};
    args = {"run", "-j2"};
    args.insert(args.end(), slow_first.begin(), slow_first.end());
    r = run_cli(args, "1.5\n0\n");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "0\n1.5\n");
}

TEST(cli_run, sort_each_file_like_the_serial_loop) {
    PARAFORK_LEAK_CHECK();
    std::vector<std::string> files;
    std::string list, expected;
    for (int i = 0; i < 6; ++i) {
        files.push_back(temp_path(("sort" + std::to_string(i)).c_str()));
        std::string text = make_lines(300, 10 + i);
        std::ofstream(files.back()) << text;
        auto lines = split_lines(text);
        std::sort(lines.begin(), lines.end());
        for (auto& l : lines) expected += l + "\n";
        list += files.back() + "\n";
    }
    auto r = run_cli({"run", "-k", "-j2", "--", "env", "LC_ALL=C", "sort", "{}"}, list);
    for (auto& f : files) ::unlink(f.c_str());
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, expected);
}

TEST(cli_run, failures_name_the_line_and_count_in_the_status) {
    PARAFORK_LEAK_CHECK();
    auto r = run_cli({"run", "-k", "--", "sh", "-c", "echo out$1; exit $1", "sh", "{}"}, "0\n3\n0\n5\n");
    EXPECT_EQ(r.status, 2);  // GNU parallel's rule: the number of failed jobs
    EXPECT_EQ(r.out, "out0\nout3\nout0\nout5\n");
    EXPECT_NE(r.err.find("line 2 '3' failed: exit code 3"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("2 of 4 job(s) failed"), std::string::npos) << r.err;
    r = run_cli({"run", "--", "parafork-no-such-command"}, "a\n");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("parafork-no-such-command"), std::string::npos) << r.err;
}

// The same command line gives GNU parallel's output: records from ::: or stdin, each
// replacement string, the record appended when no argument has one.
TEST(cli_run, output_matches_gnu_parallel_for_records_and_replacement_strings) {
    PARAFORK_LEAK_CHECK();
    struct line {
        std::vector<std::string> args;
        std::string input;
    };
    std::vector<line> lines = {
        {{"-k", "echo", "{}", "{.}", "{/}", "{//}", "{/.}", "{#}", ":::", "a/b.c", "d.e", "f", "/x/y.tar.gz", "./.h"}, ""},
        {{"-k", "echo", ":::", "a", "b c", "d"}, ""},
        {{"-k", "echo", "X", "{}"}, "a b\nc\n\nlast"},
        {{"-k", "-j1", "echo", "x{}y"}, "1\n2\n3\n"},
        {{"-k", "-0", "echo", "[{}]"}, std::string("a\nb\0c\0", 6)},
    };
    for (auto& l : lines) {
        std::vector<std::string> args = {"run"};
        args.insert(args.end(), l.args.begin(), l.args.end());
        auto ours = run_cli(args, l.input, 30);
        auto gnu = run_gnu_parallel(l.args, l.input, 30);
        ASSERT_EQ(gnu.status, 0) << "GNU parallel: " << gnu.err;
        EXPECT_EQ(ours.status, 0) << ours.err;
        EXPECT_EQ(ours.out, gnu.out) << l.args[1];
    }
}

namespace {

struct gnu_case {
    std::vector<std::string> args;  // after "run" / "parallel"
    std::string input;              // stdin
};

// Each line through GNU parallel and through `parafork run`: the same output and status.
void expect_same_as_gnu_parallel(const std::vector<gnu_case>& cases) {
    for (auto& c : cases) {
        std::string shown;
        for (auto& a : c.args) shown += " " + a;
        std::vector<std::string> args = {"run"};
        args.insert(args.end(), c.args.begin(), c.args.end());
        auto ours = run_cli(args, c.input, 30);
        auto gnu = run_gnu_parallel(c.args, c.input, 30);
        ASSERT_EQ(gnu.status, 0) << "GNU parallel" << shown << ": " << gnu.err;
        EXPECT_EQ(ours.status, 0) << shown << ": " << ours.err;
        EXPECT_EQ(ours.out, gnu.out) << shown;
    }
}

struct bad_case {
    std::vector<std::string> args;
    int status;
    std::string message;  // a part of what stderr must say
};

// Each line fails before any job runs: its exit status, a message saying why, no output.
void expect_errors(const std::vector<bad_case>& cases) {
    for (auto& b : cases) {
        std::string shown;
        for (auto& a : b.args) shown += " " + a;
        auto r = run_cli(b.args, "", 20);
        EXPECT_EQ(r.status, b.status) << shown << ": " << r.err;
        EXPECT_NE(r.err.find(b.message), std::string::npos) << shown << ": " << r.err;
        EXPECT_EQ(r.out, "") << shown;
    }
}

// Small files for :::: and -a, removed with the fixture.
struct input_files {
    std::string f = temp_path("in-f"), g = temp_path("in-g"), csv = temp_path("in-csv"), nul = temp_path("in-nul");
    input_files() {
        std::ofstream(f) << "f1\nf2\n";
        std::ofstream(g) << "g1\ng2\ng3\n";
        std::ofstream(csv) << "x,y\n1,2\n 3 , 4 \n";
        std::ofstream(nul) << std::string("a b\0c\nd\0", 8);
    }
    ~input_files() {
        for (auto* p : {&f, &g, &csv, &nul}) ::unlink(p->c_str());
    }
};

} // namespace

// Several input sources, as GNU parallel combines them: every combination, the first source
// varying slowest; linked sources pairing up; files, stdin among them; splitting and trimming.
TEST(cli_run, input_sources_match_gnu_parallel) {
    PARAFORK_LEAK_CHECK();
    input_files in;
    expect_same_as_gnu_parallel({
        {{"-k", "echo", ":::", "a", "b", ":::", "1", "2", ":::", "x", "y"}, ""},
        {{"-k", "echo", "[{}]", ":::", "a", "b", "::::", in.f}, ""},
        {{"-k", "-a", in.f, "-a", in.g, "echo", ":::", "z"}, ""},
        {{"-k", "--arg-file", in.g, "echo"}, ""},
        {{"-k", "echo", ":::", "a", "b", "c", ":::+", "1", "2", ":::", "x", "y"}, ""},
        {{"-k", "echo", "::::", in.f, "::::+", in.g, ":::", "x"}, ""},
        {{"-k", "--link", "echo", ":::", "a", "b", "c", ":::", "1", "2"}, ""},
        {{"-k", "--link", "-a", "-", "echo", ":::", "x", "y", "z"}, "s1\ns2\n"},
        {{"-k", "echo", ":::", "a", "b", "::::", "-"}, "s1\ns2\n"},
        {{"-k", "--arg-sep", ",,", "--arg-file-sep", "//", "echo", ",,", "a", "b", ",,+", "1", "2", "//", in.f}, ""},
        {{"-k", "echo", "{2}", "{1}", "{-1}", "x{3}y", "{3}", ":::", "a", "b", ":::", "1", "2"}, ""},
        {{"-k", "-E", "STOP", "echo"}, "a\nb\nSTOP\nc\n"},
        {{"-k", "-E", "b", "echo", ":::", "a", "b", "c", ":::", "x", "y"}, ""},
        {{"-k", "-d", ",", "printf", "[%s]"}, "a,b,c\n"},
        {{"-k", "-d", "XY", "printf", "[%s]"}, "aXYbXYXYc"},
        {{"-k", "-0", "printf", "[%s]", "::::", in.nul, ":::", "1"}, ""},
        {{"-k", "--colsep", "\\t", "echo", "{2}", "{1}"}, "a\tb c\nd\te f\n"},
        {{"-k", "--colsep", ",", "printf", "[%s]", "::::", in.csv}, ""},
        {{"-k", "--colsep", "[0-9]+", "printf", "[%s]"}, "a1b22c,,\n"},
        {{"-k", "--colsep", ",", "--trim", "n", "printf", "[%s]", "::::", in.csv}, ""},
        {{"-k", "--trim", "lr", "printf", "[%s]"}, " a , b \n"},
        {{"-k", "--trim", "r", "printf", "[%s]"}, " a , b \n"},
        {{"-k", "--header", ":", "--colsep", ",", "echo", "{y}", "{x}", "::::", in.csv}, ""},
        {{"-k", "--header", ":", "echo", "{a}-{b}", ":::", "a", "1", "2", ":::", "b", "x"}, ""},
        {{"-k", "--header", ":", "echo", "{name}"}, "name\nv1\nv2\n"},
    });
}

// The first source is read as jobs go (a job runs before its input has ended) even when it
// is combined with others, which are read whole first.
TEST(cli_run, first_input_source_streams) {
    PARAFORK_LEAK_CHECK();
    for (std::vector<std::string> args : {std::vector<std::string>{"run", "-j2", "echo"},
                                          {"run", "-j2", "-a", "-", "echo", ":::", "x"},
                                          {"run", "-j2", "echo", "::::", "-", ":::", "x"}}) {
        args.insert(args.begin(), cli);
        auto in = sys::make_pipe();
        auto out = sys::make_memfd("test-out", 0);
        sys::spawn_options so;
        so.stdin_fd = in.read.get();
        so.stdout_fd = out.get();
        so.stderr_fd = out.get();
        sys::child c(sys::spawn(args, so));
        in.read.reset();
        sys::write_all(in.write.get(), "first\n");
        auto deadline = std::chrono::steady_clock::now() + 30s;
        while (read_all(out.get()).empty() && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(10ms);
        EXPECT_NE(read_all(out.get()).find("first"), std::string::npos) << args[3] << ": no job before the input ended";
        sys::write_all(in.write.get(), "second\n");
        in.write.reset();
        auto st = c.wait_for(30s);
        if (!st) c.kill_and_reap();
        ASSERT_TRUE(st) << "parafork did not finish";
        EXPECT_EQ(as_status(*st), 0) << read_all(out.get());
        auto lines = split_lines(read_all(out.get()));
        EXPECT_EQ(lines.size(), 2u) << read_all(out.get());
    }
}

// Bad input sources and input options: a clear message, and exit status 2 (or 255 for a file
// that cannot be read, as GNU parallel), never a job.
TEST(cli_run, bad_input_sources_are_clear_errors) {
    PARAFORK_LEAK_CHECK();
    const std::string missing = temp_path("no-such-file");
    expect_errors({
        {{"run", "echo", "::::", missing}, 255, "cannot open input file '" + missing + "'"},
        {{"run", "-a", missing, "echo"}, 255, "cannot open input file"},
        {{"run", "--colsep", "(", "echo", ":::", "a"}, 2, "bad --colsep regexp '('"},
        {{"run", "--trim", "x", "echo", ":::", "a"}, 2, "--trim takes"},
        {{"run", "--header", "foo", "echo", ":::", "a"}, 2, "--header takes ':'"},
        {{"run", "-d", "\\q", "echo", ":::", "a"}, 2, "bad escape"},
        {{"run", "-0", "-d", ",", "echo", ":::", "a"}, 2, "one of -0, -d"},
        {{"run", "--pipe"}, 2, "no command given"},
        {{"pipe", "cat", "::::", "x"}, 2, "for run only"},
    });
}

// Every replacement string, of all the arguments and of the n-th one, and each renamed.
TEST(cli_run, replacement_strings_match_gnu_parallel) {
    PARAFORK_LEAK_CHECK();
    const std::vector<std::string> paths = {":::", "a/b.c", "d.e", "/x/y.tar.gz", "./.h", "f", ":::", "g/h.i", "j"};
    auto with_paths = [&](std::vector<std::string> args) {
        args.insert(args.end(), paths.begin(), paths.end());
        return args;
    };
    expect_same_as_gnu_parallel({
        {with_paths({"-k", "echo", "{}", "{.}", "{/}", "{//}", "{/.}", "{#}"}), ""},
        {with_paths({"-k", "echo", "{1.}", "{1/}", "{1//}", "{1/.}", "{2.}", "{2/}", "{2//}", "{2/.}", "{-1/.}"}), ""},
        {with_paths({"-k", "echo", "_{1}-{2}_", "{}{}", "{2}{1}"}), ""},
        {{"-k", "-j1", "echo", "{%}", "{#}", ":::", "a", "b", "c"}, ""},
        {{"-k", "-I", ",,", "echo", ",,", "{}", "x,,y", ":::", "a", "b"}, ""},
        {{"-k", "-I", "{}", "echo", "{}", ":::", "a"}, ""},
        {with_paths({"-k", "--er", "E", "--bnr", "B", "--dnr", "D", "--bner", "BE", "echo", "E", "B", "D", "BE", "{.}"}),
         ""},
        {{"-k", "-j1", "--seqreplace", "SEQ", "--slotreplace", "SLOT", "echo", "SEQ", "SLOT", "{#}", ":::", "a", "b"}, ""},
        {{"-k", "echo", "{#}", "{foo}", "{", "}", "{1", ":::", "a", "b"}, "" },
    });
}

// {%} is the job's slot: the jobs running at once hold different slots, 1 to -j.
TEST(cli_run, slot_numbers_are_distinct_among_running_jobs) {
    PARAFORK_LEAK_CHECK();
    auto r = run_cli({"run", "-k", "-j3", "echo", "{%}", ":::", "1", "2", "3", "4", "5", "6", "7"}, "", 30);
    ASSERT_EQ(r.status, 0) << r.err;
    auto slots = split_lines(r.out);
    ASSERT_EQ(slots.size(), 7u) << r.out;
    // The first three start together, before any is reaped.
    EXPECT_EQ(std::vector<std::string>(slots.begin(), slots.begin() + 3), (std::vector<std::string>{"1", "2", "3"}));
    for (auto& s : slots) EXPECT_TRUE(s == "1" || s == "2" || s == "3") << s;
}

// What parafork cannot fill in is a usage error before any job runs, never a literal.
TEST(cli_run, bad_replacement_strings_are_usage_errors) {
    PARAFORK_LEAK_CHECK();
    expect_errors({
        {{"run", "echo", "{0}", ":::", "a"}, 2, "unknown replacement string '{0}'"},
        {{"run", "echo", "x{0.}", ":::", "a"}, 2, "unknown replacement string '{0.}'"},
        {{"run", "echo", "{= s/a/b/ =}", ":::", "a"}, 2, "{= perl expression =} replacement strings are not supported"},
        {{"run", "echo", "x{=$_=}", ":::", "a"}, 2, "not supported"},
        {{"run", "-I", "", "echo", ":::", "a"}, 2, "cannot be empty"},
    });
    auto h = run_cli({"run", "--help"}, "");
    EXPECT_NE(h.out.find("{= perl expression =} is not\n  supported"), std::string::npos) << h.out;
}

// Several values per job: -N (and -X) repeat an argument holding {} for each value, -n (and
// -m) put them all in its place; -m and -X divide the values evenly among the job slots.
TEST(cli_run, several_values_per_job_match_gnu_parallel) {
    PARAFORK_LEAK_CHECK();
    input_files in;
    const std::vector<std::string> five = {":::", "a.1", "b/c.2", "d", "e", "f"};
    auto with_five = [&](std::vector<std::string> args) {
        args.insert(args.end(), five.begin(), five.end());
        return args;
    };
    expect_same_as_gnu_parallel({
        {with_five({"-k", "-N2", "echo"}), ""},
        {with_five({"-k", "-N2", "printf", "_%s_", "{1}-{2}", "x{}y", "{.}", "{#}"}), ""},
        {with_five({"-k", "-n2", "printf", "_%s_", "{1}-{2}", "x{}y", "{/}", "{#}"}), ""},
        {with_five({"-k", "--max-args", "3", "echo"}), ""},
        {with_five({"-k", "-j2", "-m", "printf", "_%s_", "x{}y"}), ""},
        {with_five({"-k", "-j2", "-X", "printf", "_%s_", "x{}y", "{2}"}), ""},
        {with_five({"-k", "-j3", "-m", "echo"}), ""},
        {with_five({"-k", "--xargs", "printf", "_%s_", "x{}y"}), ""},
        {{"-k", "-N2", "echo", ":::", "a", "b", "c", ":::", "1", "2"}, ""},
        {{"-k", "-N3", "echo"}, "1\n2\n3\n4\n5\n6\n7\n"},
        {{"-k", "-j2", "-m", "echo", "::::", in.g, "-"}, "s1\ns2\n"},
        // -N, -n with -m, -X or --xargs: at most that many values per job.
        {{"-k", "-j2", "-n", "3", "-m", "echo"}, "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n"},
        {{"-k", "-j2", "-m", "-N", "3", "echo", "{1}-{2}"}, "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n"},
        {with_five({"-k", "-j3", "-n", "1000", "-m", "echo"}), ""},
        {with_five({"-k", "-n", "2", "--xargs", "echo"}), ""},
        // Full jobs while more values are left than one job takes, then the rest divided.
        {{"-k", "-j4", "-n4", "-m", "echo"}, "1\n2\n3\n4\n5\n6\n7\n8\n"},
        {{"-k", "-j4", "-n4", "-X", "echo", "x{}"}, "1\n2\n3\n4\n5\n6\n7\n8\n9\n"},
    });
}

// --xargs fills a command line (62 KiB of values) and starts another when it is full; the
// values stream through, whatever their number.
TEST(cli_run, xargs_splits_long_lines) {
    PARAFORK_LEAK_CHECK();
    std::string input;
    for (int i = 1; i <= 40'000; ++i) input += std::to_string(i) + "\n";
    auto r = run_cli({"run", "-k", "--xargs", "--", "sh", "-c", "echo $#", "sh"}, input, 60);
    ASSERT_EQ(r.status, 0) << r.err;
    auto counts = split_lines(r.out);
    ASSERT_GE(counts.size(), 2u) << r.out;
    std::size_t total = 0;
    for (auto& c : counts) total += std::stoul(c);
    EXPECT_EQ(total, 40'000u);
    // As many command lines as GNU parallel makes (its tutorial's "--xargs echo | wc -l"),
    // and a shell command's single string stays under the kernel's limit for one argument.
    input.clear();
    for (int i = 1; i <= 30'000; ++i) input += std::to_string(i) + "\n";
    for (std::vector<std::string> args : {std::vector<std::string>{"--xargs", "echo"}, {"--xargs", "echo {} | wc -w"},
                                          {"-j4", "-m", "echo"}}) {
        auto gnu = run_gnu_parallel(args, input, 60);
        args.insert(args.begin(), "run");
        r = run_cli(args, input, 60);
        ASSERT_EQ(r.status, 0) << r.err;
        EXPECT_EQ(split_lines(r.out).size(), split_lines(gnu.out).size()) << args.back();
    }
}

TEST(cli_run, bad_values_per_job_are_usage_errors) {
    PARAFORK_LEAK_CHECK();
    expect_errors({
        {{"run", "-N", "0", "echo", ":::", "a"}, 2, "-N 0: a job takes at least one value"},
        {{"run", "-n", "0", "echo", ":::", "a"}, 2, "-n 0"},
        {{"run", "-N", "x", "echo", ":::", "a"}, 2, "--max-replace-args = x"},
        {{"run", "-N", "2", "-n", "2", "echo", ":::", "a"}, 2, "give one of -N, -n and -L, and one of -m, -X and --xargs"},
        {{"run", "-X", "--xargs", "echo", ":::", "a"}, 2, "give one of"},
    });
}

// A command that is shell syntax runs through /bin/sh -c, the values quoted in it, as GNU
// parallel runs every command; -q, and a command that is plain words, run without a shell.
TEST(cli_run, shell_commands_match_gnu_parallel) {
    PARAFORK_LEAK_CHECK();
    expect_same_as_gnu_parallel({
        {{"-k", "echo {} | tr a-z A-Z", ":::", "ab", "c d"}, ""},
        {{"-k", "echo", "{}", "|", "tr", "a-z", "A-Z", ":::", "ab"}, ""},
        {{"-k", "echo \"{}\"; echo {#}", ":::", "a  b", "x"}, ""},
        {{"-k", "X={}; echo \"[$X]\"", ":::", "a b", "$HOME", "`true`"}, ""},
        {{"-k", "echo $(( {} * 2 ))", ":::", "3", "21"}, ""},
        {{"-k", "echo {1} {2} | cat", ":::", "a b", ":::", "c'd"}, ""},
        {{"-k", "-N2", "echo x{}y {#}", ":::", "a", "b", "c"}, ""},
        {{"-k", "printf '_%s_'", ":::", "a;b", "*", ""}, ""},
        {{"-k", "-q", "printf", "_%s_", "|", "$HOME", ":::", "a"}, ""},
        // Any word with shell syntax makes a shell command, the words joined as GNU parallel
        // joins them (its documented "echo {}\; exit {}" and "echo {} \\\$VAR").
        {{"-k", "echo", "{}\\;", "echo", "x{}", ":::", "a", "b"}, ""},
        {{"-k", "echo", "{}", "\\$HOME", "'$HOME'", "\"\"", ":::", "a"}, ""},
        {{"-k", "printf", "_%s_", "x y", "'a;b'", "~nobody-here", ":::", "c"}, ""},
        {{"-k", "perl", "-e", "print \"@ARGV\\n\"", ":::", "a"}, ""},
        // A shell builtin is run by a shell.
        {{"-k", "eval", "echo", "{}", ":::", "a", "b"}, ""},
        {{"-k", "exit", ":::", "0", "0"}, ""},
        // No command: each job's values are the command, for a shell, as they are.
        {{"-k"}, "echo a  b\necho $((1+2)) | tr 3 x\n"},
        {{"-k", ":::", "echo", "printf '<%s>'", ":::", "a", "'b c'"}, ""},
        {{"-k", "--dry-run", ":::", "echo {}", "true"}, ""},
    });
    // After "--", words are arguments: each one reaches the program, shell characters and all
    // (GNU parallel would run "a;b" as two commands here).
    auto r = run_cli({"run", "-k", "--", "printf", "_%s_", "a;b", "$HOME", "*", ":::", "c"}, "", 20);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "_a;b__$HOME__*__c_");
    // exit is a builtin, so a job per value, its status counted as GNU parallel counts it.
    std::vector<std::string> exits = {"exit", ":::", "1", "0", "2"};
    EXPECT_EQ(run_gnu_parallel(exits, "", 30).status, 2);
    exits.insert(exits.begin(), "run");
    EXPECT_EQ(run_cli(exits, "", 20).status, 2);
    // {= ... =} spread over several words is refused too, not taken for text.
    expect_errors({{{"run", "echo", "{=", "$_++", "=}", ":::", "1"}, 2, "not supported"}});
    // -q: never a shell, so a command that is not a program name cannot start.
    r = run_cli({"run", "-q", "echo {} | cat", ":::", "a"}, "", 20);
    EXPECT_EQ(r.status, 127) << r.err;
}

// --tag and --tagstring put the job's values (or the string, filled in) and a tab before each
// line of its stdout and stderr; --dry-run prints the commands, quoted as GNU parallel quotes
// them; --line-buffer with -k writes whole lines, the jobs in order.
TEST(cli_run, output_options_match_gnu_parallel) {
    PARAFORK_LEAK_CHECK();
    expect_same_as_gnu_parallel({
        {{"-k", "--tagstring", "<{1}-{2/}>", "echo", "x", ":::", "a", "b", ":::", "d/1", "2"}, ""},
        {{"-k", "--tag", "printf 'a\\n\\nb'; true", ":::", "x", "y"}, ""},
        {{"-k", "--dry-run", "echo", ":::", "a'b", "$x", "a=b", "x,y", "_-.+/", ""}, ""},
        {{"-k", "--dry-run", "--tag", "-N2", "echo {1}-{2} | cat", ":::", "a b", "c", "d"}, ""},
        {{"-k", "--line-buffer", "--tag", "echo a; echo b", ":::", "1", "2", "3"}, ""},
        // GNU parallel shows its command string: the words joined, only the values quoted.
        {{"-k", "--dryrun", "echo", "x{}y", "{#}", ":::", "a b", "c'd", "$x"}, ""},
        // -v: each job's command on stdout before its output, tagged with it.
        {{"-k", "-v", "echo", "a{}b", ":::", "1", "x y"}, ""},
        {{"-k", "-vv", "--tag", "echo {}; echo b", ":::", "A", "B"}, ""},
        {{"-k", "-v", "--lb", "echo", ":::", "A", "B"}, ""},
        {{"-k", "-v", "--dry-run", "echo", ":::", "A"}, ""},
        {{"-vkd,", "echo", "{}"}, "1,2,3"},
    });
    // --verbose (-t): the command on stderr as the job starts, the output alone on stdout.
    for (std::vector<std::string> v : {std::vector<std::string>{"-j1", "--verbose", "echo", ":::", "A", "B"},
                                       {"-j1", "-t", "echo {} | cat", ":::", "A", "B"}}) {
        auto gnu = run_gnu_parallel(v, "", 30);
        v.insert(v.begin(), "run");
        auto ours = run_cli(v, "", 30);
        EXPECT_EQ(ours.status, 0) << ours.err;
        EXPECT_EQ(ours.out, gnu.out) << v[3];
        EXPECT_EQ(ours.err, gnu.err) << v[3];
    }
    // stderr is tagged too, the values of several sources joined by a space.
    std::vector<std::string> args = {"-k", "--tag", "echo out; echo err >&2", ":::", "a", "b", ":::", "1"};
    auto gnu = run_gnu_parallel(args, "", 30);
    EXPECT_EQ(gnu.out, "a 1\tout\nb 1\tout\n");
    EXPECT_EQ(gnu.err, "a 1\terr a 1\nb 1\terr b 1\n");
    for (auto* opt : {"--group", "--line-buffer"}) {
        args = {"run", "-k", opt, "--tag", "echo out; echo err >&2", ":::", "a", "b", ":::", "1"};
        auto ours = run_cli(args, "", 30);
        EXPECT_EQ(ours.status, 0) << ours.err;
        EXPECT_EQ(ours.out, gnu.out) << opt;
        EXPECT_EQ(ours.err, gnu.err) << opt;
    }
    // Plain words are quoted one by one, the command too; nothing is started.
    auto r = run_cli({"run", "-k", "--dry-run", "-q", "no-such-command", "%s\\n", "{}", ":::", "a b", "c"}, "", 20);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "no-such-command '%s\\n' 'a b'\nno-such-command '%s\\n' c\n");
    expect_errors({
        {{"run", "--line-buffer", "--group", "echo", ":::", "a"}, 2, "--line-buffer and --group contradict"},
        {{"run", "--tagstring", "{= 1 =}", "echo", ":::", "a"}, 2, "not supported"},
        {{"run", "--tagstring", "{0}", "echo", ":::", "a"}, 2, "unknown replacement string '{0}'"},
        {{"run", "--tagstring"}, 2, "--tagstring"},
    });
}

// --line-buffer writes a job's complete lines while it runs, not only when it is done; a
// partial line waits for its end.
TEST(cli_run, line_buffer_writes_lines_as_they_come) {
    PARAFORK_LEAK_CHECK();
    std::string stop = temp_path("lb-stop");
    for (bool ordered : {false, true}) {
        ::unlink(stop.c_str());
        std::vector<std::string> args = {cli, "run", "--line-buffer", "--tag", "-j2"};
        if (ordered) args.push_back("-k");
        args.insert(args.end(), {": {}; echo early; printf part; while [ ! -e " + stop + " ]; do sleep 0.02; done; echo ial",
                                 ":::", "a"});
        auto out = sys::make_memfd("test-out", 0);
        auto devnull = sys::open_file("/dev/null", O_RDONLY);
        sys::spawn_options so;
        so.stdin_fd = devnull.get();
        so.stdout_fd = out.get();
        sys::child c(sys::spawn(args, so));
        auto deadline = std::chrono::steady_clock::now() + 20s;
        while (read_all(out.get()).empty() && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(10ms);
        EXPECT_EQ(read_all(out.get()), "a\tearly\n") << "ordered " << ordered;
        std::ofstream(stop) << "";
        auto st = c.wait_for(20s);
        if (!st) c.kill_and_reap();
        ASSERT_TRUE(st) << "parafork did not finish";
        EXPECT_EQ(as_status(*st), 0);
        EXPECT_EQ(read_all(out.get()), "a\tearly\na\tpartial\n");
    }
    ::unlink(stop.c_str());
}

// --halt's GNU parallel syntax: what ends the run, and the exit status GNU parallel gives for
// it (the failing job's with fail=1, the count with fail=N, the percentage with fail=N%, 0 with
// success).
TEST(cli_run, halt_matches_gnu_parallel) {
    PARAFORK_LEAK_CHECK();
    const std::string job = "echo {}; exit {}";
    struct halt_case {
        std::vector<std::string> args;
        int status;
        std::string out;  // empty: GNU parallel's, found by running it
    };
    const std::vector<halt_case> cases = {
        {{"-k", "-j1", "--halt", "now,fail=1", job, ":::", "0", "7", "0"}, 7, ""},
        {{"-k", "-j1", "--halt", "soon,fail=2", job, ":::", "0", "7", "5", "0", "3"}, 2, "0\n7\n5\n"},
        {{"-k", "-j1", "--halt", "now,success=1", job, ":::", "1", "0", "1"}, 0, ""},
        {{"-k", "-j1", "--halt", "soon,fail=30%", job, ":::", "0", "0", "0", "0", "0", "0", "0", "0", "0", "1", "1",
          "1", "1", "1"},
         36, ""},
        {{"-k", "-j1", "--halt", "soon,done=2", job, ":::", "3", "0", "0"}, 1, "3\n0\n"},
    };
    for (auto& c : cases) {
        std::string shown;
        for (auto& a : c.args) shown += " " + a;
        std::string expected = c.out;
        if (expected.empty()) {
            auto gnu = run_gnu_parallel(c.args, "", 30);
            EXPECT_EQ(gnu.status, c.status) << "GNU parallel" << shown;
            expected = gnu.out;
        }
        std::vector<std::string> args = {"run"};
        args.insert(args.end(), c.args.begin(), c.args.end());
        auto ours = run_cli(args, "", 30);
        EXPECT_EQ(ours.status, c.status) << shown << ": " << ours.err;
        EXPECT_EQ(ours.out, expected) << shown;
    }
}

// --retries N: a failed job runs up to N times in all, in its place; only the last run's output
// is written, and the joblog has one row for it.
TEST(cli_run, retries_run_a_failed_job_again) {
    PARAFORK_LEAK_CHECK();
    std::string dir = temp_path("retries");
    ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
    std::string log = dir + "/log", count = dir + "/count";
    auto r = run_cli({"run", "-k", "--retries", "3", "--joblog", log,
                      "echo x >> " + count + "; echo out {}; echo err >&2; exit 1", ":::", "a"}, "", 30);
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_EQ(r.out, "out a\n");
    EXPECT_EQ(r.err.find("err\nerr"), std::string::npos) << r.err;
    EXPECT_EQ(slurp(count), "x\nx\nx\n");
    EXPECT_EQ(split_lines(slurp(log)).size(), 2u) << slurp(log);
    // Failing once, then succeeding: one output, success.
    r = run_cli({"run", "-k", "--retries", "2", "echo try {}; [ -e " + dir + "/{} ] || { touch " + dir + "/{}; exit 1; }",
                 ":::", "a", "b"}, "", 30);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "try a\ntry b\n");
    // pipe: the block is read again from its start.
    r = run_cli({"pipe", "--retries", "2", "--", "sh", "-c", "cat; [ -e " + dir + "/p ] || { touch " + dir + "/p; exit 1; }"},
                "l1\nl2\n", 30);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "l1\nl2\n");
    for (auto* f : {"log", "count", "a", "b", "p"}) ::unlink((dir + "/" + f).c_str());
    ::rmdir(dir.c_str());
}

// --resume skips the jobs the joblog has, --resume-failed those it shows succeeded; both add
// to the joblog; the jobs keep their numbers. Step by step as GNU parallel, which reads the
// joblog parafork wrote.
TEST(cli_run, resume_from_the_joblog_as_gnu_parallel) {
    PARAFORK_LEAK_CHECK();
    std::string ours_log = temp_path("resume-ours"), gnu_log = temp_path("resume-gnu");
    const std::vector<std::vector<std::string>> steps = {
        {"-k", "--joblog", "LOG", "echo {}; exit {}", ":::", "0", "1", "0", "2"},
        {"-k", "--resume", "--joblog", "LOG", "echo {}; exit {}", ":::", "0", "1", "0", "2", "0", "3"},
        {"-k", "--resume-failed", "--joblog", "LOG", "echo {}; exit 0", ":::", "0", "1", "0", "2", "0", "3", "9"},
        {"-k", "--resume-failed", "--joblog", "LOG", "echo {}; exit 0", ":::", "0", "1", "0", "2", "0", "3", "9"},
    };
    // The Seq and Exitval columns, sorted (rows are in finishing order).
    auto seq_exit = [](const std::string& path) {
        std::vector<std::string> rows;
        for (auto& line : split_lines(slurp(path))) {
            std::vector<std::string> cols;
            std::istringstream in(line);
            for (std::string c; cols.size() < 7 && std::getline(in, c, '\t');) cols.push_back(c);
            if (cols.size() == 7) rows.push_back(cols[0] + " " + cols[6]);
        }
        std::sort(rows.begin(), rows.end());
        return rows;
    };
    const int statuses[] = {2, 1, 0, 0};
    for (std::size_t i = 0; i < steps.size(); ++i) {
        auto with_log = [&](const std::string& log) {
            auto args = steps[i];
            std::replace(args.begin(), args.end(), std::string("LOG"), log);
            return args;
        };
        auto args = with_log(ours_log);
        args.insert(args.begin(), "run");
        if (i == 0) {
            auto r = run_cli(args, "", 30);
            EXPECT_EQ(r.status, statuses[i]) << r.err;
            std::ofstream(gnu_log) << slurp(ours_log);
            continue;
        }
        std::string gnu_out;  // the last step's is known: nothing is left to run
        if (i + 1 < steps.size()) {
            auto gnu = run_gnu_parallel(with_log(gnu_log), "", 30);
            EXPECT_EQ(gnu.status, statuses[i]) << "step " << i;
            gnu_out = gnu.out;
        }
        auto ours = run_cli(args, "", 30);
        EXPECT_EQ(ours.status, statuses[i]) << "step " << i << ": " << ours.err;
        EXPECT_EQ(ours.out, gnu_out) << "step " << i;
        if (i + 1 < steps.size()) {
            EXPECT_EQ(seq_exit(ours_log), seq_exit(gnu_log)) << "step " << i;
        }
    }
    EXPECT_EQ(seq_exit(ours_log).size(), 11u);  // the header and 10 rows: 4, 2, 4 jobs
    ::unlink(ours_log.c_str());
    ::unlink(gnu_log.c_str());
}

// -j +N, -N and N% are taken from the default (the CPUs); --delay spaces the starts.
TEST(cli_run, jobs_relative_to_the_cpus_and_delay) {
    PARAFORK_LEAK_CHECK();
    const unsigned d = parafork::default_jobs();
    // One job more than the slots: the first ones start together, before any ends.
    auto max_slot = [&](const std::string& j, unsigned slots) {
        std::vector<std::string> args = {"run", "-j", j, "echo {%}; sleep 0.3", ":::"};
        for (unsigned i = 0; i < slots + 1; ++i) args.push_back(std::to_string(i));
        auto r = run_cli(args, "", 30);
        EXPECT_EQ(r.status, 0) << r.err;
        unsigned most = 0;
        for (auto& l : split_lines(r.out)) most = std::max(most, unsigned(std::stoul(l)));
        return most;
    };
    EXPECT_EQ(max_slot("+1", d + 1), d + 1);
    EXPECT_EQ(max_slot("50%", std::max(1u, d / 2)), std::max(1u, d / 2));
    if (d > 1) {
        EXPECT_EQ(max_slot("-1", d - 1), d - 1);
    }
    std::string log = temp_path("delay.log");
    auto r = run_cli({"run", "-j3", "--delay", "0.3", "--joblog", log, "true", ":::", "1", "2", "3"}, "", 30);
    EXPECT_EQ(r.status, 0) << r.err;
    std::vector<double> starts;
    for (auto& line : split_lines(slurp(log))) {
        std::istringstream in(line);
        std::string c;
        for (int i = 0; i < 3; ++i) std::getline(in, c, '\t');
        if (std::isdigit(static_cast<unsigned char>(c[0]))) starts.push_back(std::stod(c));
    }
    ::unlink(log.c_str());
    ASSERT_EQ(starts.size(), 3u);
    std::sort(starts.begin(), starts.end());
    EXPECT_GE(starts[1] - starts[0], 0.29);
    EXPECT_GE(starts[2] - starts[1], 0.29);
}

TEST(cli_run, bad_job_control_options_are_clear_errors) {
    PARAFORK_LEAK_CHECK();
    expect_errors({
        {{"run", "--halt", "bogus", "echo", ":::", "a"}, 2, "bad --halt 'bogus'"},
        {{"run", "--halt", "now,fail=0", "echo", ":::", "a"}, 2, "bad --halt"},
        {{"run", "--halt", "now,fail", "echo", ":::", "a"}, 2, "bad --halt"},
        {{"run", "--halt", "later,fail=1", "echo", ":::", "a"}, 2, "bad --halt"},
        {{"run", "--halt", "soon,fail=101%", "echo", ":::", "a"}, 2, "bad --halt"},
        {{"run", "--halt", "soon,fail=1.5", "echo", ":::", "a"}, 2, "bad --halt"},
        {{"run", "--halt", "soon,fail=10%", "--xargs", "echo", ":::", "a"}, 2, "needs the number of jobs"},
        {{"pipe", "--halt", "soon,fail=10%", "cat"}, 2, "needs the number of jobs"},
        {{"run", "--resume", "echo", ":::", "a"}, 255, "--resume and --resume-failed need --joblog"},
        {{"run", "--resume-failed", "echo", ":::", "a"}, 255, "need --joblog"},
        {{"run", "--retries", "x", "echo", ":::", "a"}, 2, "--retries"},
        {{"run", "--delay", "soon", "echo", ":::", "a"}, 2, "not a duration"},
        {{"run", "-j", "0", "echo", ":::", "a"}, 2, "-j 0 leaves no job slot"},
        {{"run", "-j", "-100000", "echo", ":::", "a"}, 2, "bad -j"},
        {{"run", "-j", "-1000", "echo", ":::", "a"}, 2, "leaves no job slot"},
        {{"run", "-j", "x", "echo", ":::", "a"}, 2, "bad -j 'x'"},
        {{"run", "-j", "+5%", "echo", ":::", "a"}, 2, "bad -j"},
    });
}

// Pipe mode as GNU parallel's --pipe: blocks cut where --recend meets --recstart (strings or
// regexps), -N records per job, a --header put before every block; `run --pipe` and `pipe`
// alike. A record longer than the block grows the block, as GNU parallel's.
TEST(cli_pipe, pipe_options_match_gnu_parallel) {
    PARAFORK_LEAK_CHECK();
    const std::string fasta = ">a\nAC\nGT\n>b\nTT\n>c\nGG\nCC\nAA\n>d\nA\n", tsv = "h1\th2\n1\t2\n3\t4\n5\t6\n7\t8\n";
    std::string numbers;
    for (int i = 1; i <= 3000; ++i) numbers += std::to_string(i) + "\n";
    const std::string job = "cat; echo ==";
    expect_same_as_gnu_parallel({
        {{"--pipe", "-k", "--recstart", ">", "-N1", job}, fasta},
        {{"--pipe", "-k", "--recstart", ">", "-N2", "wc", "-c"}, fasta},
        {{"--pipe", "-k", "--recstart", ">", "--block", "8", job}, fasta},
        {{"--pipe", "-k", "--recend", "\\n", "--recstart", ">", "--block", "8", job}, fasta},
        {{"--pipe", "-k", "--recend", "T\\n", "--block", "3", job}, fasta},
        {{"--pipe", "-k", "--regexp", "--recstart", ">[bd]", "--block", "3", job}, fasta},
        {{"--pipe", "-k", "--regexp", "--recend", "[CT]\\n", "-N2", job}, fasta},
        {{"--pipe", "-k", "--recend", "", "--block", "7", job}, fasta},
        {{"--pipe", "-k", "--header", ":", "-N2", job}, tsv},
        {{"--pipe", "-k", "--header", "2", "-N2", job}, tsv},
        {{"--pipe", "-k", "--header", "h1.*\\n", "--block", "4", job}, tsv},
        {{"--pipe", "-k", "-N3", job}, tsv},
        {{"--pipe", "-k", "--block", "1k", "wc", "-l"}, numbers},  // k is 1000, K 1024
        {{"--pipe", "-k", "--block", "1K", "echo {#}; wc -l"}, numbers},
    });
    // The pipe command is the same mode.
    auto gnu = run_gnu_parallel({"--pipe", "-k", "--recstart", ">", "-N2", job}, fasta, 30);
    auto ours = run_cli({"pipe", "--recstart", ">", "-N2", job}, fasta, 30);
    EXPECT_EQ(ours.status, 0) << ours.err;
    EXPECT_EQ(ours.out, gnu.out);
}

// --pipepart -a FILE: parts of the file found by offset (GNU parallel's positions), the header
// before each; `pipe -a FILE` is the same. The jobs' output is the serial run's.
TEST(cli_pipe, pipepart_matches_gnu_parallel) {
    PARAFORK_LEAK_CHECK();
    std::string numbers = temp_path("part-numbers"), tsv = temp_path("part-tsv"), fasta = temp_path("part-fasta");
    std::string text;
    for (int i = 1; i <= 30000; ++i) text += std::to_string(i) + "\n";
    std::ofstream(numbers) << text;
    std::ofstream(tsv) << "h1\th2\n1\t2\n3\t4\n5\t6\n7\t8\n";
    std::ofstream(fasta) << ">a\nAC\nGT\n>b\nTT\n>c\nGG\nCC\nAA\n>d\nA\n";
    const std::string job = "cat; echo ==";
    expect_same_as_gnu_parallel({
        {{"--pipepart", "-a", numbers, "-k", "--block", "10k", "wc", "-l"}, ""},
        {{"--pipepart", "-a", numbers, "-k", "-j2", "--block", "-3", "wc", "-l"}, ""},
        {{"--pipepart", "-a", tsv, "-k", "--header", ":", "--block", "5", job}, ""},
        {{"--pipepart", "-a", fasta, "-k", "--recstart", ">", "--block", "5", job}, ""},
        {{"--pipepart", "-a", fasta, "-k", "--recend", "", "--block", "7", job}, ""},
    });
    auto r = run_cli({"pipe", "-a", numbers, "--block", "4K", "--", "cat"}, "", 30);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, text);
    // A job that stops reading early (its part over a pipe's 1 MiB) ends its feeding, not the run.
    std::string big;
    for (int i = 1; i <= 400000; ++i) big += std::to_string(i) + "\n";
    std::ofstream(numbers) << big;
    r = run_cli({"pipe", "-a", numbers, "--block", "4M", "--", "head", "-c", "1"}, "", 30);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "1");
    for (auto* f : {&numbers, &tsv, &fasta}) ::unlink(f->c_str());
}

TEST(cli_pipe, bad_pipe_options_are_clear_errors) {
    PARAFORK_LEAK_CHECK();
    expect_errors({
        {{"pipe", "--regexp", "--recstart", "(", "cat"}, 2, "bad --recend/--recstart regexp"},
        {{"run", "--pipe", "--header", "(", "cat"}, 2, "bad --header regexp"},
        {{"pipe", "-N", "0", "cat"}, 2, "-N 0"},
        {{"pipe", "--block", "-3", "cat"}, 2, "for --pipepart only"},
        {{"pipe", "--block", "0", "cat"}, 2, "size out of range"},
        {{"run", "--pipepart", "cat"}, 2, "--pipepart takes one seekable file"},
        {{"run", "--pipepart", "-a", "/dev/null", "-N2", "cat"}, 2, "-N does not work with --pipepart"},
        {{"run", "--pipe", "-a", "/dev/null", "cat"}, 2, "use --pipepart"},
        {{"run", "--pipe", "cat", ":::", "a"}, 2, "not with --pipe"},
        {{"pipe", "-0", "--recend", "x", "cat"}, 2, "not both"},
        {{"run", "--pipepart", "-a", "/nonexistent/parafork-file", "cat"}, 255, "cannot open"},
        // run's ways of batching values mean nothing for blocks: refused, never ignored.
        {{"run", "--pipe", "-L75", "wc"}, 2, "-L (records of N lines) is not supported with --pipe"},
        {{"run", "--pipe", "--xargs", "wc"}, 2, "--xargs is not supported with --pipe"},
    });
}

// Invoked through a symlink named `parallel` (the install makes it on request), parafork is
// `parafork run`: a GNU parallel command line works as it is.
TEST(cli, invoked_as_parallel_it_is_run) {
    PARAFORK_LEAK_CHECK();
    std::string dir = temp_path("as-parallel");
    ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
    std::string link = dir + "/parallel";
    ASSERT_EQ(::symlink(cli.c_str(), link.c_str()), 0);
    const std::vector<std::string> args = {"-k", "echo", "{2}{1}", ":::", "a", "b", ":::", "1", "2"};
    auto gnu = run_gnu_parallel(args, "", 30);
    std::vector<std::string> ours_args = {link, "--will-cite"};
    ours_args.insert(ours_args.end(), args.begin(), args.end());
    auto ours = run_program(ours_args, "", 30);
    EXPECT_EQ(ours.status, 0) << ours.err;
    EXPECT_EQ(ours.out, gnu.out);
    EXPECT_EQ(ours.out, "1a\n2a\n1b\n2b\n");
    auto piped = run_program({link, "--pipe", "-k", "-N2", "wc", "-l"}, "a\nb\nc\n", 30);
    EXPECT_EQ(piped.status, 0) << piped.err;
    EXPECT_EQ(piped.out, "2\n1\n");
    ::unlink(link.c_str());
    ::rmdir(dir.c_str());
}

// --timeout N%: a job is stopped once it runs N% of the median runtime of the jobs that
// succeeded so far; before the first success there is no limit. GNU parallel gives the same.
TEST(cli_run, timeout_percent_of_the_median_runtime) {
    PARAFORK_LEAK_CHECK();
    // The first job (2 s) has no limit; after the second the median is about 0.1 s, so the
    // 30 s job is stopped after about a second (the whole run is bounded at 20 s).
    // exec: GNU parallel signals the shell only, and a `sleep` left behind would outlive the test.
    const std::vector<std::string> args = {"-k", "-j1", "--timeout", "1000%", "echo {}; exec sleep {}",
                                           ":::", "2", "0.1", "0.1", "0.1", "30"};
    auto gnu = run_gnu_parallel(args, "", 30);
    EXPECT_EQ(gnu.status, 1) << gnu.err;
    EXPECT_EQ(gnu.out, "2\n0.1\n0.1\n0.1\n30\n");
    std::vector<std::string> ours_args = {"run"};
    ours_args.insert(ours_args.end(), args.begin(), args.end());
    auto ours = run_cli(ours_args, "", 20);
    EXPECT_EQ(ours.status, 1) << ours.err;
    EXPECT_EQ(ours.out, gnu.out);
    EXPECT_NE(ours.err.find("timed out"), std::string::npos) << ours.err;
    // pipe too: the third block's job outlives 1000% of the first two.
    auto r = run_cli({"pipe", "-j1", "--block", "2", "--timeout", "1000%", "--", "sh", "-c",
                      "read x; [ \"$x\" = s ] && sleep 30; echo $x"}, "a\nb\ns\n", 20);
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_EQ(r.out, "a\nb\n");
    expect_errors({
        {{"run", "--timeout", "0%", "echo", ":::", "a"}, 2, "bad --timeout '0%'"},
        {{"run", "--timeout", "x%", "echo", ":::", "a"}, 2, "bad --timeout 'x%'"},
        {{"run", "--timeout", "%", "echo", ":::", "a"}, 2, "bad --timeout"},
        {{"coproc", "--timeout", "200%", "cat"}, 2, "--timeout N% is for run and pipe"},
    });
}

// --shuf makes every job, then runs them in a random order: the job numbers follow the new
// order, every combination runs once, as GNU parallel.
TEST(cli_run, shuf_runs_every_job_once_in_random_order) {
    PARAFORK_LEAK_CHECK();
    std::vector<std::string> args = {"run", "--shuf", "-k", "echo", "{#}", "{}", ":::"};
    std::vector<std::string> in_order;
    for (int i = 1; i <= 100; ++i) {
        args.push_back(std::to_string(i));
        in_order.push_back(std::to_string(i));
    }
    std::vector<std::string> orders[2];
    for (auto& order : orders) {
        auto r = run_cli(args, "", 30);
        ASSERT_EQ(r.status, 0) << r.err;
        auto lines = split_lines(r.out);
        ASSERT_EQ(lines.size(), 100u);
        for (std::size_t i = 0; i < lines.size(); ++i) {
            auto space = lines[i].find(' ');
            EXPECT_EQ(lines[i].substr(0, space), std::to_string(i + 1));  // {#}: the order run
            order.push_back(lines[i].substr(space + 1));
        }
        EXPECT_NE(order, in_order);  // 1 chance in 100! to fail
        auto sorted = order;
        std::sort(sorted.begin(), sorted.end());
        auto expected = in_order;
        std::sort(expected.begin(), expected.end());
        EXPECT_EQ(sorted, expected);
    }
    EXPECT_NE(orders[0], orders[1]);
    // Several sources and stdin: the same jobs as GNU parallel --shuf, in some order.
    for (auto& c : std::vector<gnu_case>{{{"--shuf", "echo", ":::", "a", "b", "c", ":::", "1", "2"}, ""},
                                         {{"--shuf", "echo"}, "l1\nl2\nl3\nl4\nl5\n"}}) {
        std::vector<std::string> ours_args = {"run"};
        ours_args.insert(ours_args.end(), c.args.begin(), c.args.end());
        auto ours = run_cli(ours_args, c.input, 30);
        auto gnu = run_gnu_parallel(c.args, c.input, 30);
        EXPECT_EQ(ours.status, 0) << ours.err;
        auto a = split_lines(ours.out), b = split_lines(gnu.out);
        std::sort(a.begin(), a.end());
        std::sort(b.begin(), b.end());
        EXPECT_EQ(a, b) << c.args[1];
    }
}

// -L N: N input lines per job, as -N; a line ending in a blank goes on with the next.
TEST(cli_run, lines_per_job_match_gnu_parallel) {
    PARAFORK_LEAK_CHECK();
    expect_same_as_gnu_parallel({
        {{"-k", "-L1", "echo", "{#}", "[{}]"}, "a \nb \nc\n\nd\n"},
        {{"-k", "-L2", "echo", "{1}-{2}", "x{}y"}, "a b\nc d\ne\n"},
    });
    auto r = run_cli({"run", "-k", "--max-lines", "2", "echo", ":::", "a ", "b", "c", "d"}, "", 20);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "a b c\nd\n");
    expect_errors({
        {{"run", "-L", "0", "echo", ":::", "a"}, 2, "-L 0"},
        {{"run", "-L", "x", "echo", ":::", "a"}, 2, "--max-lines"},
        {{"run", "-L", "2", "-N", "2", "echo", ":::", "a"}, 2, "give one of"},
    });
}

namespace {

// Every file under `dir`, by its path relative to `dir`, with its contents.
std::map<std::string, std::string> tree_of(const std::string& dir) {
    std::map<std::string, std::string> files;
    for (auto& e : std::filesystem::recursive_directory_iterator(dir))
        if (e.is_regular_file()) files[std::filesystem::relative(e.path(), dir).string()] = slurp(e.path().string());
    return files;
}

} // namespace

// --results DIR: GNU parallel's directory tree, a directory per source and value, each job's
// stdout, stderr and number in files there, nothing on our stdout.
TEST(cli_run, results_directory_matches_gnu_parallel) {
    PARAFORK_LEAK_CHECK();
    std::string ours = temp_path("results-ours"), gnu = temp_path("results-gnu");
    std::vector<std::string> args = {"-k", "--header", ":", "--results", "DIR", "echo {1}-{2}; echo e{#} >&2",
                                     ":::", "f", "a", "b/c", "x\\y", ":::", "g", "1", "2"};
    auto with_dir = [&](std::string dir) {
        auto a = args;
        std::replace(a.begin(), a.end(), std::string("DIR"), dir + "/");
        return a;
    };
    auto g = run_gnu_parallel(with_dir(gnu), "", 30);
    ASSERT_EQ(g.status, 0) << g.err;
    auto a = with_dir(ours);
    a.insert(a.begin(), "run");
    auto r = run_cli(a, "", 30);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, g.out);
    auto tree = tree_of(ours);
    EXPECT_EQ(tree, tree_of(gnu));
    EXPECT_EQ(tree.size(), 18u);
    EXPECT_EQ(tree["f/b\\_c/g/2/stdout"], "b/c-2\n");
    EXPECT_EQ(tree["f/b\\_c/g/2/seq"], "4");
    std::filesystem::remove_all(ours);
    std::filesystem::remove_all(gnu);
    // A directory that cannot be made is an error naming it.
    std::string file = temp_path("results-file");
    std::ofstream(file) << "";
    expect_errors({
        {{"run", "--results", file, "echo", ":::", "a"}, 255, "--results: cannot make " + file + "/1"},
        {{"run", "--results", ours, "--line-buffer", "echo", ":::", "a"}, 2, "--results and --line-buffer contradict"},
    });
    ::unlink(file.c_str());
}

// A command that cannot start ends the run at once with 127, whatever the number of inputs
// or jobs (an odd count once left the engine polling with nothing to wait for).
TEST(cli_run, command_that_cannot_start_ends_the_run_with_127) {
    PARAFORK_LEAK_CHECK();
    const std::string bad = "parafork-no-such-command";
    std::vector<std::vector<std::string>> runs = {
        {"run", "-j", "2", bad, ":::", "1", "2", "3", "4", "5"},
        {"run", "-j", "1", bad, ":::", "1", "2", "3"},
        {"run", "-j", "2", bad, ":::", "1", "2", "3", "4"},
        {"run", "-k", "-j", "3", "--", bad, ":::", "1", "2", "3", "4", "5", "6", "7"},
        {"run", "-j", "2", bad},
    };
    for (auto& args : runs) {
        bool from_stdin = std::find(args.begin(), args.end(), ":::") == args.end();
        auto r = run_cli(args, from_stdin ? "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n" : "", 20);
        EXPECT_EQ(r.status, 127) << args.size() << " args: " << r.err;
        EXPECT_NE(r.err.find("cannot start"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find(bad), std::string::npos) << r.err;
        EXPECT_EQ(r.out, "");
    }
    auto p = run_cli({"pipe", "--", bad}, make_lines(100), 20);
    EXPECT_EQ(p.status, 127) << p.err;
    EXPECT_NE(p.err.find(bad), std::string::npos) << p.err;
}

// An option parafork does not know is a usage error naming it, not a program to run.
TEST(cli, unknown_option_before_the_command_is_a_usage_error) {
    PARAFORK_LEAK_CHECK();
    for (const char* opt : {"--semaphore", "--no-such-option", "-Z"}) {
        auto r = run_cli({"run", opt, "echo", ":::", "A"}, "", 20);
        EXPECT_EQ(r.status, 2) << opt << ": " << r.err;
        EXPECT_NE(r.err.find(std::string("unknown option ") + opt), std::string::npos) << r.err;
        EXPECT_EQ(r.out, "");
    }
    auto r = run_cli({"run", "-j", "2", "--frob", "echo", ":::", "A"}, "", 20);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find("--frob"), std::string::npos) << r.err;
    r = run_cli({"pipe", "--frob", "cat"}, "x\n", 20);
    EXPECT_EQ(r.status, 2) << r.err;
    r = run_cli({"coproc", "--frob", "cat"}, "x\n", 20);
    EXPECT_EQ(r.status, 2) << r.err;
    // After "--" the command may be anything, and its own options are its own.
    r = run_cli({"run", "--", "echo", "--link", ":::", "A"}, "", 20);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "--link A\n");
    r = run_cli({"run", "echo", "-n", ":::", "A"}, "", 20);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "A");
    // "-" alone is not an option.
    r = run_cli({"run", "-k", "--", "-", ":::", "A"}, "", 20);
    EXPECT_EQ(r.status, 127) << r.err;
}

TEST(cli_run, timeout_kills_the_job) {
    PARAFORK_LEAK_CHECK();
    auto r = run_cli({"run", "--timeout", "300ms", "--", "sleep", "{}"}, "30\n0\n", 30);
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_NE(r.err.find("timed out"), std::string::npos) << r.err;
}

TEST(cli_run, joblog_has_gnu_parallel_columns) {
    PARAFORK_LEAK_CHECK();
    std::string log = temp_path("joblog");
    auto r = run_cli({"run", "-j1", "--halt", "soon", "--joblog", log, "--", "sh", "-c", "echo hi; exit $1", "sh"},
                     "0\n7\n0\n");
    EXPECT_EQ(r.status, 1);
    auto rows = split_lines(slurp(log));
    ::unlink(log.c_str());
    ASSERT_EQ(rows.size(), 3u);  // header, then 2 jobs: --halt soon starts no third
    EXPECT_EQ(rows[0], "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand");
    std::vector<std::string> cols;
    std::istringstream row(rows[2]);
    for (std::string c; std::getline(row, c, '\t');) cols.push_back(c);
    ASSERT_EQ(cols.size(), 9u) << rows[2];
    EXPECT_EQ(cols[0], "2");
    EXPECT_EQ(cols[5], "3");  // "hi\n"
    EXPECT_EQ(cols[6], "7");
    EXPECT_EQ(cols[7], "0");
    EXPECT_EQ(cols[8], "sh -c echo hi; exit $1 sh 7");
}

TEST(cli_run, bar_reports_progress_on_stderr) {
    PARAFORK_LEAK_CHECK();
    auto r = run_cli({"run", "--bar", "--", "true"}, "a\nb\nc\n");
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.err.find("100% 3:0=0s"), std::string::npos) << r.err;
}

namespace {

// stderr without GNU parallel's complaints about a missing terminal.
std::string without_tty_noise(const std::string& err) {
    std::string out;
    for (std::size_t at = 0; at < err.size();) {
        auto end = err.find('\n', at);
        end = end == std::string::npos ? err.size() : end + 1;
        std::string_view line(err.data() + at, end - at);
        if (line.find("cannot open /dev/tty") == std::string_view::npos) out += line;
        at = end;
    }
    return out;
}

// Seconds shown with a fraction ("0.3s", "AVG: 0.33s") made "T": they depend on the machine.
std::string without_times(std::string s) {
    static const std::regex seconds("[0-9]+\\.[0-9]+s");
    return std::regex_replace(s, seconds, "T");
}

} // namespace

// --progress, --eta and --bar write GNU parallel's status on stderr: its header, a line
// overwritten as jobs start and finish, and the same last line.
TEST(cli_run, progress_eta_and_bar_match_gnu_parallel) {
    PARAFORK_LEAK_CHECK();
    struct progress_case {
        const char* option;
        std::vector<std::string> midway;  // what ours shows while job 2 of 3 runs
    };
    for (auto& c : std::vector<progress_case>{
             {"--progress", {"\rlocal:1/1/100%/"}},
             {"--eta", {"\rETA: ", "Left: 2 AVG: ", "  local:1/1/100%/"}},
             {"--bar", {"\033[7m33% 1:2="}},
         }) {
        std::vector<std::string> args = {"-j1", "-k", c.option, ": {}; sleep 0.3", ":::", "a", "b", "c"};
        auto gnu = run_gnu_parallel(args, "", 30);
        args.insert(args.begin(), "run");
        auto ours = run_cli(args, "", 30);
        ASSERT_EQ(gnu.status, 0) << gnu.err;
        EXPECT_EQ(ours.status, 0) << ours.err;
        std::string gnu_err = without_tty_noise(gnu.err), our_err = ours.err;
        // The last status: after the last "\r" (the bar, which holds single ones, after "\r\r").
        const char* last = std::string(c.option) == "--bar" ? "\r\r" : "\r";
        ASSERT_NE(gnu_err.rfind(last), std::string::npos) << gnu_err;
        ASSERT_NE(our_err.rfind(last), std::string::npos) << our_err;
        EXPECT_EQ(without_times(our_err.substr(our_err.rfind(last))), without_times(gnu_err.substr(gnu_err.rfind(last))))
            << c.option;
        if (std::string(c.option) != "--bar") {
            std::string header = "\nComputers / CPU cores / Max jobs to run\n1:local / ";
            auto at = gnu_err.find(header);
            ASSERT_NE(at, std::string::npos) << gnu_err;
            header = gnu_err.substr(at, gnu_err.find('\n', at + header.size()) + 1 - at);  // with its CPUs and -j
            EXPECT_EQ(our_err.substr(0, header.size()), header) << c.option;
            EXPECT_NE(our_err.find("\nComputer:jobs running/jobs completed/%of started jobs/Average seconds to complete\n"),
                      std::string::npos)
                << our_err;
        } else {
            EXPECT_EQ(our_err.find("Computers"), std::string::npos) << our_err;
        }
        for (auto& m : c.midway) EXPECT_NE(our_err.find(m), std::string::npos) << c.option << ": " << our_err;
        EXPECT_EQ(ours.out, gnu.out);
    }
    // pipe counts blocks, coproc records.
    auto r = run_cli({"pipe", "--progress", "--block", "2", "cat"}, "a\nb\n", 30);
    EXPECT_EQ(r.out, "a\nb\n");
    EXPECT_NE(r.err.find("\rlocal:0/2/100%/"), std::string::npos) << r.err;
    r = run_cli({"coproc", "-j1", "--eta", "cat"}, "a\nb\nc\n", 30);
    EXPECT_EQ(r.out, "a\nb\nc\n");
    EXPECT_NE(r.err.find("Left: 0 AVG: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("local:0/3/100%/"), std::string::npos) << r.err;
}

TEST(cli, usage_errors_and_help) {
    PARAFORK_LEAK_CHECK();
    EXPECT_EQ(run_cli({"pipe"}, "").status, 2);
    EXPECT_EQ(run_cli({"pipe", "--block", "lots", "--", "cat"}, "").status, 2);
    EXPECT_EQ(run_cli({"run", "--timeout", "soon", "--", "true"}, "").status, 2);
    EXPECT_EQ(run_cli({"frobnicate"}, "").status, 2);
    auto h = run_cli({"pipe", "--help"}, "");
    EXPECT_EQ(h.status, 0);
    EXPECT_NE(h.out.find("Examples:"), std::string::npos);
    h = run_cli({"run", "--help"}, "");
    EXPECT_EQ(h.status, 0);
    EXPECT_NE(h.out.find("{}"), std::string::npos) << h.out;
    h = run_cli({"--help"}, "");
    EXPECT_EQ(h.status, 0);
    for (const char* mode : {"pipe", "coproc", "run"}) EXPECT_NE(h.out.find(mode), std::string::npos) << h.out;
    auto both = run_cli({"pipe", "-k", "-u", "--", "cat"}, "x\n");
    EXPECT_EQ(both.status, 2);
    EXPECT_NE(both.err.find("contradict"), std::string::npos) << both.err;
    EXPECT_EQ(both.out, "");
}

// ---- coproc ----------------------------------------------------------------------------------

TEST(cli_coproc, answers_in_input_order_like_the_serial_filter) {
    PARAFORK_LEAK_CHECK();
    std::string input = make_lines(100'000, 9);
    auto r = run_cli({"coproc", "-j3", "--", "awk", awk_len}, input);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, lengths_of(input));
    r = run_cli({"coproc", "-j2", "--", "tr", "a-z", "A-Z"}, input);
    EXPECT_EQ(r.out, upper(input));
}

TEST(cli_coproc, a_copy_that_dies_names_the_record) {
    PARAFORK_LEAK_CHECK();
    std::string input;
    for (int i = 1; i <= 50; ++i) input += std::to_string(i) + "\n";
    auto r = run_cli({"coproc", "-j2", "--", "sh", "-c", "while read x; do [ $x = 17 ] && exit 3; echo $x; done"},
                     input);
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("record 17 '17'"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("exited with code 3"), std::string::npos) << r.err;
}

TEST(cli_coproc, a_copy_over_the_timeout_names_the_record) {
    PARAFORK_LEAK_CHECK();
    auto r = run_cli({"coproc", "-j2", "--timeout", "300ms", "--", "sh", "-c",
                      "while read x; do [ $x = 3 ] && exec sleep 30; echo $x; done"},
                     "1\n2\n3\n4\n5\n", 30);
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("record 3 '3'"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("300 ms"), std::string::npos) << r.err;
}

TEST(cli_coproc, two_answers_for_one_record_is_a_protocol_error) {
    PARAFORK_LEAK_CHECK();
    auto r = run_cli({"coproc", "-j2", "--", "sh", "-c", "while read x; do echo $x; echo extra; done"}, "1\n2\n3\n");
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("exactly one record"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("more answers than it got"), std::string::npos) << r.err;
    // The records not answered yet are named (which depends on how far the copies got).
    EXPECT_TRUE(r.err.find("records still unanswered: ") != std::string::npos ||
                r.err.find("the copy held record") != std::string::npos)
        << r.err;
    // "extra" was credited to a later record: answers not yet verified are not printed.
    EXPECT_EQ(r.out.find("extra"), std::string::npos) << r.out;
    r = run_cli({"coproc", "--", "parafork-no-such-command"}, "1\n");
    EXPECT_EQ(r.status, 127);
    EXPECT_NE(r.err.find("parafork-no-such-command"), std::string::npos) << r.err;
}

TEST(cli_coproc, fewer_answers_than_records_is_a_protocol_error_at_eof) {
    PARAFORK_LEAK_CHECK();
    // grep answers only the matching records: x1 and x2 would be credited to records 1 and 2.
    auto r = run_cli({"coproc", "-j1", "--", "grep", "x"}, "a\nx1\nb\nx2\nc\n");
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.out, "");
    EXPECT_NE(r.err.find("fewer records than it got"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("record 5 'c'"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("no answer was written"), std::string::npos) << r.err;
}

// --record-sep other than newline or NUL: the copies get and answer records ended by it.
TEST(cli_coproc, comma_separated_records_are_framed_by_the_comma) {
    PARAFORK_LEAK_CHECK();
    // awk with RS="," and ORS=",": one answer per record, each ended by a comma; a newline
    // inside a record is part of it.
    const std::string awk = "BEGIN{RS=\",\";ORS=\",\"} {print toupper($0); fflush()}";
    auto r = run_cli({"coproc", "-j2", "--record-sep", ",", "--", "awk", awk}, "a,b b,c\nd,e", 20);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "A,B B,C\nD,E,");
    // A copy that answers with newlines (its own framing) gives one record too few per
    // comma: at EOF that is a record without an answer, named, and nothing is printed.
    r = run_cli({"coproc", "-j1", "--record-sep", ",", "--", "awk", "BEGIN{RS=\",\"} {print; fflush()}"},
                "x,y,z,", 20);
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_NE(r.err.find("out of protocol"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("record "), std::string::npos) << r.err;
}

TEST(cli_coproc, null_separated_records) {
    PARAFORK_LEAK_CHECK();
    // A newline inside a record, an empty record, an unterminated last one.
    constexpr char in[] = "a b\0line\ntwo\0\0last", want[] = "A B\0LINE\nTWO\0\0LAST\0";
    auto r = run_cli({"coproc", "-j2", "--null", "--", "tr", "a-z", "A-Z"}, std::string_view(in, sizeof in - 1));
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, std::string(want, sizeof want - 1));
}

// ---- Ctrl-C ----------------------------------------------------------------------------------

namespace {

// Starts parafork with jobs that sleep, waits until `expect` of them are running, sends SIGINT,
// and checks that parafork exits 130 having reaped every child: we are the subreaper, so any
// child it left behind would become ours.
void interrupt_and_check(std::vector<std::string> args, std::string_view input, std::size_t expect,
                         const std::string& pidfile) {
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    args.insert(args.begin(), cli);
    auto in = memfd_with(input);
    auto out = sys::make_memfd("test-out", 0);
    sys::spawn_options so;
    so.stdin_fd = in.get();
    so.stdout_fd = out.get();
    so.stderr_fd = out.get();
    sys::child c(sys::spawn(args, so));
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (split_lines(slurp(pidfile)).size() < expect && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    auto pids = split_lines(slurp(pidfile));
    ::unlink(pidfile.c_str());
    ASSERT_EQ(pids.size(), expect) << read_all(out.get());
    c.signal(SIGINT);
    auto st = c.wait_for(30s);
    ASSERT_TRUE(st) << "parafork did not stop on SIGINT";
    EXPECT_EQ(as_status(*st), 130) << read_all(out.get());
    EXPECT_NE(read_all(out.get()).find("interrupted"), std::string::npos);
    int ws;
    errno = 0;
    pid_t left = ::waitpid(-1, &ws, WNOHANG);
    EXPECT_EQ(left, -1) << "a child of parafork was left behind: " << left;
    EXPECT_EQ(errno, ECHILD);
    for (auto& p : pids) EXPECT_NE(::kill(std::stoi(p), 0), 0) << "job " << p << " still alive";
}

} // namespace

TEST(cli_sigint, run_stops_every_job) {
    PARAFORK_LEAK_CHECK();
    std::string pidfile = temp_path("run.pids");
    interrupt_and_check({"run", "-j2", "--", "sh", "-c", "echo $$ >> " + pidfile + "; exec sleep 60"}, "a\nb\nc\n", 2,
                        pidfile);
}

TEST(cli_sigint, pipe_stops_every_job) {
    PARAFORK_LEAK_CHECK();
    std::string pidfile = temp_path("pipe.pids");
    interrupt_and_check({"pipe", "-j2", "--block", "1K", "--", "sh", "-c", "echo $$ >> " + pidfile + "; exec sleep 60"},
                        make_lines(1000), 2, pidfile);
}

TEST(cli_sigint, coproc_stops_every_copy) {
    PARAFORK_LEAK_CHECK();
    std::string pidfile = temp_path("coproc.pids");
    interrupt_and_check({"coproc", "-j2", "--", "sh", "-c", "echo $$ >> " + pidfile + "; exec sleep 60"}, "a\nb\n", 2,
                        pidfile);
}

// ---- a large input, streamed ------------------------------------------------------------------

namespace {

// Line i of the big input: its length is i % 61, so the expected answer is easy to recompute.
void append_big_line(std::string& buf, std::size_t i) {
    std::size_t len = i % 61;
    buf.append(len, char('a' + i % 26));
    buf += '\n';
}

long vm_hwm_kib(pid_t pid) {
    std::istringstream f(parafork::testing::read_proc("/proc/" + std::to_string(pid) + "/status"));
    for (std::string line; std::getline(f, line);)
        if (line.starts_with("VmHWM:")) return std::stol(line.substr(6));
    return -1;
}

// Bytes in parafork's memory files (blocks, captured output), which RSS does not count: the
// memfds open in parafork or in its jobs, each counted once.
std::size_t memfd_bytes(pid_t parafork) {
    std::vector<pid_t> pids{parafork};
    if (auto* proc = ::opendir("/proc")) {
        while (auto* e = ::readdir(proc)) {
            if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
            std::string stat = parafork::testing::read_proc(std::string("/proc/") + e->d_name + "/stat");
            auto close = stat.rfind(')');
            if (close == std::string::npos) continue;
            std::istringstream rest(stat.substr(close + 2));
            char state;
            long ppid = 0;
            rest >> state >> ppid;
            if (ppid == parafork) pids.push_back(std::atoi(e->d_name));
        }
        ::closedir(proc);
    }
    std::vector<ino_t> seen;
    std::size_t total = 0;
    for (pid_t pid : pids) {
        std::string dir = "/proc/" + std::to_string(pid) + "/fd";
        auto* d = ::opendir(dir.c_str());
        if (!d) continue;
        while (auto* e = ::readdir(d)) {
            std::string link = dir + "/" + e->d_name;
            char target[256];
            long n = ::readlink(link.c_str(), target, sizeof target - 1);
            if (n <= 0) continue;
            if (!std::string_view(target, static_cast<std::size_t>(n)).starts_with("/memfd:parafork-")) continue;
            struct stat st {};
            if (::stat(link.c_str(), &st) != 0 || std::find(seen.begin(), seen.end(), st.st_ino) != seen.end()) continue;
            seen.push_back(st.st_ino);
            total += static_cast<std::size_t>(st.st_size);
        }
        ::closedir(d);
    }
    return total;
}

} // namespace

// 100 MB through `pipe` with 1 MiB blocks: output checked line by line, memory bounded.
TEST(cli_pipe, large_input_streams_in_bounded_memory) {
    PARAFORK_LEAK_CHECK();
    constexpr std::size_t target_bytes = 100u << 20;
    std::size_t lines = 0;
    {
        std::size_t bytes = 0;
        while (bytes < target_bytes) bytes += lines % 61 + 1, ++lines;
    }
    auto to_cli = sys::make_pipe();
    auto from_cli = sys::make_pipe();
    pid_t gen = sys::fork_call([&] {
        from_cli.read.reset();
        std::string buf;
        for (std::size_t i = 0; i < lines; ++i) {
            append_big_line(buf, i);
            if (buf.size() > (1 << 20)) sys::write_all(to_cli.write.get(), buf), buf.clear();
        }
        sys::write_all(to_cli.write.get(), buf);
    });
    sys::child generator(gen);
    to_cli.write.reset();
    sys::spawn_options so;
    so.stdin_fd = to_cli.read.get();
    so.stdout_fd = from_cli.write.get();
    sys::child c(sys::spawn({cli, "pipe", "-j2", "--block", "1M", "--", "awk", awk_len}, so));
    to_cli.read.reset();
    from_cli.write.reset();

    long hwm = 0;
    std::size_t buffered = 0;  // the most bytes seen in memory files at once
    std::size_t line = 0, bad = 0;
    std::string partial;
    char buf[1 << 16];
    auto deadline = std::chrono::steady_clock::now() + 100s;
    for (std::size_t reads = 0;; ++reads) {
        pollfd p{from_cli.read.get(), POLLIN, 0};
        ASSERT_GT(::poll(&p, 1, 5000), -1);
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "too slow or hung at line " << line;
        if (!p.revents) continue;
        long n = sys::read_some(from_cli.read.get(), buf, sizeof buf);
        if (n == 0) break;
        if (reads % 16 == 0) hwm = std::max(hwm, vm_hwm_kib(c.pid()));
        if (reads % 8 == 0) buffered = std::max(buffered, memfd_bytes(c.pid()));
        partial.append(buf, static_cast<std::size_t>(n));
        std::size_t start = 0;
        for (std::size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1) {
            if (std::string_view(partial).substr(start, nl - start) != std::to_string(line % 61)) ++bad;
            ++line;
        }
        partial.erase(0, start);
    }
    hwm = std::max(hwm, vm_hwm_kib(c.pid()));
    // RUSAGE_CHILDREN covers every child we waited for and the jobs they reaped: the peak RSS
    // of the largest of them (parafork, an awk job, the generator).
    auto st = c.wait();
    EXPECT_TRUE(st.ok()) << st.describe();
    rusage ru{};
    ASSERT_EQ(::getrusage(RUSAGE_CHILDREN, &ru), 0);
    EXPECT_TRUE(generator.wait().ok());
    EXPECT_EQ(line, lines);
    EXPECT_EQ(bad, 0u);
    EXPECT_EQ(partial, "");
    EXPECT_GT(hwm, 0);
    EXPECT_LT(hwm, 64 * 1024) << "parafork's peak RSS (KiB) for a 100 MB input";
    EXPECT_LT(ru.ru_maxrss, 64 * 1024) << "peak RSS (KiB) of parafork or one of its jobs";
    // 2N jobs in flight (a 1 MiB block and its output each) and two blocks cut ahead.
    EXPECT_GT(buffered, 0u);
    EXPECT_LT(buffered, std::size_t{12} << 20) << "bytes held in memory files";
}

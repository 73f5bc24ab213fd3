// `mpirun -np 3 parafork run ...`: the jobs spread over the ranks of this host, rank 0 writes the
// output (the same as the run on one machine), the joblog names the rank each job ran on, and
// --halt, --timeout, a failing job and a killed rank behave as docs/scale-out.md says. Every run
// is bounded by `timeout`; no process of it may be left afterwards.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>

namespace {

struct result {
    int status = -1;  // exit code (timeout's 124 for a hang)
    std::string out, err;
    double seconds = 0;
};

std::string temp_dir() {
    static const std::string dir = [] {
        char tmpl[] = "/tmp/parafork-mpi-cli-XXXXXX";
        const char* d = ::mkdtemp(tmpl);
        return std::string(d ? d : "/tmp");
    }();
    return dir;
}

// A word unique to this test process: in every run's command line (the joblog path), and in
// the jobs' sleeps, so what is left of a run can be found.
std::string tag() { return "pfcli" + std::to_string(::getpid()); }
std::string sleep_word() { return "30." + std::to_string(::getpid()); }

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

result sh(const std::string& cmd) {
    result r;
    const std::string err = temp_dir() + "/stderr";
    // Open MPI's shared-memory segments in a folder of ours, not /dev/shm.
    const std::string env = "OMPI_MCA_btl_vader_backing_directory=" + temp_dir() + " ";
    const auto t0 = std::chrono::steady_clock::now();
    FILE* p = ::popen((env + cmd + " 2>" + err).c_str(), "re");
    if (!p) return r;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    const int st = ::pclose(p);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.err = slurp(err);
    return r;
}

std::string joblog() { return temp_dir() + "/" + tag() + ".log"; }

// parafork run ARGS on one machine, and under mpirun on 3 ranks with --joblog.
result local(const std::string& args) { return sh("timeout -k 5 60 " PARAFORK_CLI_PATH " run " + args); }
result ranks(const std::string& args) {
    return sh("timeout -k 5 60 mpirun --oversubscribe --allow-run-as-root -np 3 " PARAFORK_CLI_PATH
              " run --joblog " + joblog() + " " + args);
}

struct row {
    std::string host;
    int exitval = 0, signal = 0;
};
std::vector<row> rows() {
    std::vector<row> out;
    std::ifstream in(joblog());
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
        std::vector<std::string> cols;
        std::stringstream s(line);
        for (std::string c; std::getline(s, c, '\t');) cols.push_back(c);
        if (cols.size() < 9) continue;
        out.push_back({cols[1], std::stoi(cols[6]), std::stoi(cols[7])});
    }
    return out;
}
// The ranks the joblog's Host column names (HOST:RANK).
std::set<std::string> ranks_in_log() {
    std::set<std::string> out;
    for (auto& r : rows()) out.insert(r.host.substr(r.host.rfind(':') + 1));
    return out;
}

// Processes of the run (its ranks, by the tag in their command line) and its jobs (their sleep),
// waited for a few seconds: a process killed by its parent's death needs a moment to go.
std::string leftovers() {
    std::string out;
    for (int k = 0; k < 50; ++k) {
        out = sh("pgrep -a -f -- '" + tag() + "|sleep " + sleep_word() + "' | grep -v pgrep || true").out;
        if (out.empty()) return out;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return out;
}

std::string values(int n) {
    std::string s = ":::";
    for (int k = 1; k <= n; ++k) s += " " + std::to_string(k);
    return s;
}

class MPICLI : public ::testing::Test {
protected:
    void TearDown() override {
        EXPECT_EQ(leftovers(), "");
        sh("rm -rf '" + temp_dir() + "'/*");
    }
    static void TearDownTestSuite() { sh("rmdir '" + temp_dir() + "'"); }
};

} // namespace

TEST_F(MPICLI, KeepOrderGivesTheLocalOutputAndEveryRankRuns) {
    // Jobs of 0 to 0.2 s, so they finish out of order and every rank gets some.
    const std::string args = "-k -j2 'sleep 0.$(( {} * 7 % 3 )); echo job {} $(( {} * {} ))' " + values(30);
    auto want = local(args);
    ASSERT_EQ(want.status, 0) << want.err;
    auto got = ranks(args);
    EXPECT_EQ(got.status, 0) << got.err;
    EXPECT_EQ(got.out, want.out);
    auto log = rows();
    EXPECT_EQ(log.size(), 30u);
    EXPECT_EQ(ranks_in_log(), (std::set<std::string>{"0", "1", "2"})) << slurp(joblog());
}

TEST_F(MPICLI, TagAndVerboseAreWrittenByRank0AsLocally) {
    const std::string args = "-k -j1 --tag -v 'sleep 0.$(( {} % 2 )); echo out {}' " + values(12);
    auto want = local(args);
    ASSERT_EQ(want.status, 0) << want.err;
    auto got = ranks(args);
    EXPECT_EQ(got.status, 0) << got.err;
    EXPECT_EQ(got.out, want.out);
    EXPECT_EQ(ranks_in_log(), (std::set<std::string>{"0", "1", "2"})) << slurp(joblog());
}

TEST_F(MPICLI, UnorderedOutputHasEveryJobOnce) {
    auto got = ranks("-j2 'echo {}; echo err {} >&2' " + values(40));
    EXPECT_EQ(got.status, 0) << got.err;
    std::multiset<std::string> lines, want;
    std::stringstream s(got.out);
    for (std::string l; std::getline(s, l);) lines.insert(l);
    for (int k = 1; k <= 40; ++k) want.insert(std::to_string(k));
    EXPECT_EQ(lines, want);
    for (int k = 1; k <= 40; ++k)
        EXPECT_NE(got.err.find("err " + std::to_string(k) + "\n"), std::string::npos) << k;
}

TEST_F(MPICLI, FailingJobsGiveTheLocalExitStatus) {
    const std::string args = "-k 'echo {}; exit {}' ::: 0 3 0 4 0 5 0";
    auto want = local(args);
    auto got = ranks(args);
    EXPECT_EQ(want.status, 3);
    EXPECT_EQ(got.status, want.status) << got.err;
    EXPECT_EQ(got.out, want.out);
    EXPECT_NE(got.err.find("3 of 7 job(s) failed"), std::string::npos) << got.err;
}

TEST_F(MPICLI, HaltNowStopsEveryRank) {
    // 9 jobs of 30 s on 3 ranks of -j3; job 6 (on another rank than 0) fails after 1 s.
    auto got = ranks("-j3 --halt now,fail=1 'if [ {} = 6 ]; then sleep 1; exit 7; fi; exec sleep " + sleep_word() +
                     "' " + values(9));
    EXPECT_EQ(got.status, 7) << got.err;
    EXPECT_LT(got.seconds, 25) << got.err;
    bool seen = false;
    for (auto& r : rows())
        if (r.exitval == 7) {
            seen = true;
            EXPECT_NE(r.host.substr(r.host.rfind(':')), ":0");
        }
    EXPECT_TRUE(seen) << slurp(joblog());
}

TEST_F(MPICLI, TimeoutKillsTheJobOnItsRank) {
    auto got = ranks("-j1 --timeout 1 'exec sleep " + sleep_word() + "' " + values(6));
    EXPECT_EQ(got.status, 6) << got.err;
    EXPECT_LT(got.seconds, 25) << got.err;
    auto log = rows();
    EXPECT_EQ(log.size(), 6u);
    for (auto& r : log) EXPECT_EQ(r.signal, 15) << slurp(joblog());
    auto seen = ranks_in_log();
    EXPECT_TRUE(seen.count("1") && seen.count("2")) << slurp(joblog());
}

TEST_F(MPICLI, AKilledRankEndsTheRunNamingIt) {
    auto got = ranks("-j1 'if [ \"$PARAFORK_RANK\" = 2 ]; then kill -9 $PPID; fi; exec sleep " + sleep_word() + "' " +
                     values(6));
    EXPECT_NE(got.status, 0);
    EXPECT_NE(got.status, 124) << got.err;  // no hang
    EXPECT_NE(got.err.find("rank 2 on"), std::string::npos) << got.err;
    EXPECT_NE(got.err.find("signal 9"), std::string::npos) << got.err;
    EXPECT_LT(got.seconds, 25) << got.err;
}

TEST_F(MPICLI, PipeModeIsRefusedOverRanks) {
    auto got = sh("timeout -k 5 60 mpirun --oversubscribe --allow-run-as-root -np 3 " PARAFORK_CLI_PATH
                  " pipe --joblog " + joblog() + " cat </dev/null");
    EXPECT_NE(got.status, 0);
    EXPECT_NE(got.status, 124);
    EXPECT_NE(got.err.find("only `parafork run`"), std::string::npos) << got.err;
}

TEST_F(MPICLI, RanksWithAnotherCommandLineAreABadLaunch) {
    // mpirun's MPMD form: rank 2 runs other jobs than ranks 0 and 1.
    auto got = sh("timeout -k 5 60 mpirun --oversubscribe --allow-run-as-root -np 2 " PARAFORK_CLI_PATH
                  " run --joblog " + joblog() + " echo {} ::: 1 2 : -np 1 " PARAFORK_CLI_PATH " run --joblog " + joblog() +
                  " echo {} ::: 3 4");
    EXPECT_NE(got.status, 0);
    EXPECT_NE(got.status, 124);
    EXPECT_NE(got.err.find("rank 2 on"), std::string::npos) << got.err;
    EXPECT_NE(got.err.find("another command line"), std::string::npos) << got.err;
    EXPECT_EQ(got.err.find("ended during the run"), std::string::npos) << got.err;  // said once, by rank 0
    EXPECT_EQ(got.out, "");
}

// A job is not a rank: the launcher's variables are not passed on, so a `parafork run` inside a
// job runs on its machine, as it would outside mpirun (it used to take itself for a rank), and
// an MPI program started by a job is a world of its own (a singleton), not one of our ranks.
TEST_F(MPICLI, AnMpiProgramInAJobIsASingleton) {
    auto got = ranks("-k -j1 '/usr/bin/python3 -c \"from mpi4py import MPI; w = MPI.COMM_WORLD; "
                     "print({}, w.Get_rank(), w.Get_size())\"' " + values(3));
    ASSERT_EQ(got.status, 0) << got.err;
    EXPECT_EQ(got.out, "1 0 1\n2 0 1\n3 0 1\n") << got.err;
}

TEST_F(MPICLI, AJobIsNotARankAndItsOwnParaforkRunsLocally) {
    const std::string args = "-k -j1 'env | grep -c -E \"^(OMPI_COMM_WORLD|PMIX_RANK|PMI_RANK)\" || true; " PARAFORK_CLI_PATH
                             " run -k echo {}. ::: a b' " + values(6);
    auto got = ranks(args);
    ASSERT_EQ(got.status, 0) << got.err;
    std::string want;
    for (int k = 1; k <= 6; ++k) want += "0\n" + std::to_string(k) + ". a\n" + std::to_string(k) + ". b\n";
    EXPECT_EQ(got.out, want) << got.err;
    EXPECT_EQ(ranks_in_log(), (std::set<std::string>{"0", "1", "2"})) << slurp(joblog());
}

// A job's output that is over what a rank may send back fails that job, with the reason on
// stderr, and not the run; the jobs under the limit are written as locally.
TEST_F(MPICLI, OutputOverTheLimitFailsTheJobNotTheRun) {
    auto got = sh("PARAFORK_RANK_OUTPUT_MAX=100 timeout -k 5 60 mpirun --oversubscribe --allow-run-as-root -np 3 "
                  PARAFORK_CLI_PATH " run -k -j1 --joblog " + joblog() +
                  " 'if [ $PARAFORK_RANK = 0 ]; then echo small {}; else head -c 200 /dev/zero | tr \"\\\\0\" x; echo; fi' " +
                  values(6));
    std::size_t big = 0;
    for (auto& r : rows())
        if (r.host.substr(r.host.rfind(':') + 1) != "0") {
            ++big;
            EXPECT_EQ(r.exitval, 1);
        }
    ASSERT_GT(big, 0u) << slurp(joblog());
    EXPECT_EQ(got.status, static_cast<int>(big)) << got.err;  // the failed count, as locally
    EXPECT_NE(got.err.find("bytes a job may send back from another rank; it ended with exit code 0"), std::string::npos)
        << got.err;
    EXPECT_EQ(got.out.find('x'), std::string::npos) << got.out;
    EXPECT_NE(got.out.find("small"), std::string::npos) << got.out;
}

// --bar is drawn by rank 0 alone and counts the jobs of every rank: one bar, ending at 100%
// with all 12 done, and the others print nothing of it.
TEST_F(MPICLI, BarIsRank0sAndCountsEveryRanksJobs) {
    auto got = ranks("--bar -j1 'sleep 0.0$(( {} % 3 ))' " + values(12));
    ASSERT_EQ(got.status, 0) << got.err;
    EXPECT_NE(got.err.find("100% 12:0=0s"), std::string::npos) << got.err;
    // Every finished bar is the run's: a rank's own would end at its share of the jobs.
    for (std::size_t at = 0; (at = got.err.find("100% ", at)) != std::string::npos; ++at)
        EXPECT_EQ(got.err.compare(at, 10, "100% 12:0="), 0) << got.err.substr(at, 20);
    EXPECT_EQ(ranks_in_log(), (std::set<std::string>{"0", "1", "2"})) << slurp(joblog());
}

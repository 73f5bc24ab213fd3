// parafork::mpi under mpirun: each test runs tests/mpi/mpi_prog.cpp on 3 ranks of this host,
// bounded by `timeout`, and checks what rank 0 printed, mpirun's status, and that no process
// of the run is left afterwards (each run's processes carry a tag of their own in argv).
#include <chrono>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <gtest/gtest.h>

namespace {

struct run_result {
    int status = -1;  // exit code of the command (timeout's 124 for a hang)
    std::string out;
    std::string tag;
};

std::string tag_for(const std::string& scenario) {
    return "pftag-" + scenario + "-" + std::to_string(::getpid());
}

// Open MPI's shared-memory segments go to a folder of this test's own, not /dev/shm: a rank
// killed on purpose cannot remove its segment, and other tests' leak checks watch /dev/shm.
std::string segments_dir() {
    static const std::string dir = [] {
        char tmpl[] = "/tmp/parafork-mpi-test-XXXXXX";
        const char* d = ::mkdtemp(tmpl);
        return std::string(d ? d : "/tmp");
    }();
    return dir;
}

run_result run(const std::string& cmd, const std::string& tag) {
    run_result r;
    r.tag = tag;
    const std::string env = "OMPI_MCA_btl_vader_backing_directory=" + segments_dir() + " ";
    FILE* p = ::popen((env + cmd + " 2>&1").c_str(), "re");
    if (!p) return r;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    const int st = ::pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}

run_result mpirun(const std::string& scenario, int ranks = 3, const std::string& args = "") {
    const auto tag = tag_for(scenario);
    return run("timeout -k 5 60 mpirun --oversubscribe --allow-run-as-root -np " + std::to_string(ranks) + " " +
                   PARAFORK_MPI_PROG + " " + scenario + " " + tag + (args.empty() ? "" : " " + args),
               tag);
}

// Processes whose command line carries the tag, waited for a few seconds: a child killed by its
// parent's death needs a moment to go.
std::string leftovers(const std::string& tag) {
    std::string out;
    for (int k = 0; k < 50; ++k) {
        out = run("pgrep -a -f -- '" + tag + "' | grep -v pgrep || true", tag).out;
        if (out.empty()) return out;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return out;
}

class MPI : public ::testing::Test {
protected:
    void TearDown() override {
        EXPECT_EQ(run("ls /dev/shm | grep vader_segment || true", "").out, "");
        if (segments_dir() != "/tmp") run("rm -rf '" + segments_dir() + "'/*", "");
    }
    static void TearDownTestSuite() {
        if (segments_dir() != "/tmp") ::rmdir(segments_dir().c_str());
    }
};

} // namespace

TEST_F(MPI, SameResultsAsLocal) {
    auto r = mpirun("equal");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("OK equal"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

TEST_F(MPI, MillionTasksExact) {
    auto r = mpirun("million");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("OK million"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

TEST_F(MPI, ExceptionOnRank2NamesRankAndHost) {
    auto r = mpirun("throw");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("OK throw"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("OK next call"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

TEST_F(MPI, RetriesRerunAWorkersTaskOnItsRank) {
    auto r = mpirun("retry");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("OK retry"), std::string::npos) << r.out;
    // Rank 2's workers were killed at least once, so the results came through the retries.
    const auto at = r.out.find("rank 2 KILLS ");
    ASSERT_NE(at, std::string::npos) << r.out;
    EXPECT_GT(std::stoi(r.out.substr(at + 13)), 0) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

TEST_F(MPI, WorkerDeathOnRank2NamesRankAndHost) {
    auto r = mpirun("die");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("OK die"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("signal 9"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("OK next call"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

TEST_F(MPI, KilledRankEndsTheCallWithAnError) {
    auto r = mpirun("killrank");
    // mpirun reports rank 2's death in its status; what matters is that the call ended with
    // an error naming rank 2 (no hang: timeout would give 124) and nothing is left over.
    EXPECT_NE(r.status, 124) << r.out;
    EXPECT_NE(r.out.find("OK killrank"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

// The indices one run computed (tests/mpi/mpi_prog.cpp's journal scenario writes them).
std::set<int> computed(const std::string& dir, const std::string& phase) {
    std::set<int> out;
    std::ifstream in(dir + "/computed." + phase);
    for (int x; in >> x;) out.insert(x);
    return out;
}

// A call that failed when rank 2 was killed kept its answered values in the journal: the rerun
// computes only what is missing, a third run nothing, and both give every value. A journal that
// does not check out, or holds another input, is an error at rank 0, not a wrong result.
TEST_F(MPI, TheJournalResumesAFailedCallWithWhatIsMissing) {
    char tmpl[] = "/tmp/parafork-journal-test-XXXXXX";
    const std::string dir = ::mkdtemp(tmpl);
    auto r1 = mpirun("journal", 3, dir + " 1");
    EXPECT_NE(r1.status, 124) << r1.out;
    ASSERT_NE(r1.out.find("OK journal 1: "), std::string::npos) << r1.out;
    EXPECT_EQ(leftovers(r1.tag), "");
    const auto one = computed(dir, "1");

    auto r2 = mpirun("journal", 3, dir + " 2");
    ASSERT_EQ(r2.status, 0) << r2.out;
    EXPECT_NE(r2.out.find("OK journal 2"), std::string::npos) << r2.out;
    const auto two = computed(dir, "2");
    EXPECT_GT(two.size(), 0u);     // rank 2's unanswered chunks, at least
    EXPECT_LT(two.size(), 3000u);  // the values kept by the first run were not computed again
    for (int x = 0; x < 3000; ++x)
        if (!two.count(x)) {
            EXPECT_TRUE(one.count(x)) << x << " was kept but never computed";
        }

    auto r3 = mpirun("journal", 3, dir + " 3");
    ASSERT_EQ(r3.status, 0) << r3.out;
    EXPECT_NE(r3.out.find("OK journal 3"), std::string::npos) << r3.out;
    EXPECT_EQ(computed(dir, "3").size(), 0u);  // all of it kept: nothing to compute

    // The program died while writing its last record: that record is dropped, its values
    // computed again, and the journal whole again afterwards.
    ASSERT_EQ(::truncate((dir + "/journal").c_str(), std::filesystem::file_size(dir + "/journal") - 5), 0);
    auto r4 = mpirun("journal", 3, dir + " 4");
    ASSERT_EQ(r4.status, 0) << r4.out;
    EXPECT_NE(r4.out.find("OK journal 4"), std::string::npos) << r4.out;
    const auto four = computed(dir, "4");
    EXPECT_GT(four.size(), 0u);
    EXPECT_LT(four.size(), 3000u);

    // One byte changed inside a record: the record does not check out.
    {
        std::fstream j(dir + "/journal", std::ios::in | std::ios::out | std::ios::binary);
        j.seekg(0, std::ios::end);
        const auto size = static_cast<long>(j.tellg());
        ASSERT_GT(size, 200);
        j.seekg(size / 2);
        char c = 0;
        j.read(&c, 1);
        c = static_cast<char>(c ^ 0x5a);
        j.seekp(size / 2);
        j.write(&c, 1);
    }
    auto r5 = mpirun("journal", 3, dir + " bad");
    EXPECT_NE(r5.status, 124) << r5.out;
    EXPECT_NE(r5.out.find("OK journal bad: "), std::string::npos) << r5.out;
    EXPECT_NE(r5.out.find("does not check out"), std::string::npos) << r5.out;
    EXPECT_EQ(computed(dir, "bad").size(), 0u);
    EXPECT_EQ(leftovers(r5.tag), "");

    // A journal of another program: not a journal at all.
    {
        std::ofstream j(dir + "/journal", std::ios::trunc);
        j << "something else entirely\n";
    }
    auto r6 = mpirun("journal", 3, dir + " bad");
    EXPECT_NE(r6.out.find("not a parafork journal"), std::string::npos) << r6.out;
    run("rm -rf '" + dir + "'", "");
}

// The items a journal keeps, read by its format alone (src/mpi/journal.hpp): after the first
// line, records [u8 kind][u32 length][body][u64 FNV-1a]; a 'V' body starts with the call, the
// first item and the count.
std::set<int> kept_in(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string magic = "parafork journal 1\n";
    std::set<int> out;
    if (all.compare(0, magic.size(), magic) != 0) return {-1};
    std::size_t at = magic.size();
    while (at + 5 <= all.size()) {
        std::uint32_t len;
        std::memcpy(&len, all.data() + at + 1, 4);
        if (len > all.size() - at - 5 || all.size() - at - 5 - len < 8) break;  // cut short: not whole
        if (all[at] == 'V') {
            if (len < 20) return {-3};  // a values record too short for its run: the test fails
            std::uint64_t first;
            std::uint32_t count;
            std::memcpy(&first, all.data() + at + 5 + 8, 8);
            std::memcpy(&count, all.data() + at + 5 + 16, 4);
            for (std::uint32_t k = 0; k < count; ++k) out.insert(static_cast<int>(first + k));
        }
        at += 5 + len + 8;
    }
    if (at != all.size()) out.insert(-2);  // not whole: the test fails
    return out;
}

// mpi::pool::map with a journal: a first run that fails at item 2000 keeps what was answered;
// the rerun computes exactly the items not kept, a third nothing; a journal of the same call
// over another number of items is a bad_launch at rank 0, and the pool goes on each time.
TEST_F(MPI, PoolMapJournalResumesWithWhatIsMissing) {
    char tmpl[] = "/tmp/parafork-pool-journal-test-XXXXXX";
    const std::string dir = ::mkdtemp(tmpl);
    auto r1 = mpirun("pool_journal", 3, dir + " 1");
    ASSERT_EQ(r1.status, 0) << r1.out;
    ASSERT_NE(r1.out.find("OK pool_journal 1: "), std::string::npos) << r1.out;
    EXPECT_NE(r1.out.find("OK pool_journal next call"), std::string::npos) << r1.out;
    EXPECT_EQ(leftovers(r1.tag), "");
    const auto kept = kept_in(dir + "/journal");
    const auto one = computed(dir, "1");
    EXPECT_GT(kept.size(), 0u);
    EXPECT_LT(kept.size(), 3000u);
    EXPECT_FALSE(kept.count(2000));
    for (int x : kept) EXPECT_TRUE(one.count(x)) << x << " was kept but never computed";

    auto r2 = mpirun("pool_journal", 3, dir + " 2");
    ASSERT_EQ(r2.status, 0) << r2.out;
    EXPECT_NE(r2.out.find("OK pool_journal 2"), std::string::npos) << r2.out;
    std::set<int> missing;
    for (int x = 0; x < 3000; ++x)
        if (!kept.count(x)) missing.insert(x);
    EXPECT_EQ(computed(dir, "2"), missing);  // exactly what the first run did not keep
    {
        std::ifstream in(dir + "/computed.2");  // and each of them once
        std::size_t lines = 0;
        for (int x; in >> x;) ++lines;
        EXPECT_EQ(lines, missing.size());
    }

    auto r3 = mpirun("pool_journal", 3, dir + " 3");
    ASSERT_EQ(r3.status, 0) << r3.out;
    EXPECT_NE(r3.out.find("OK pool_journal 3"), std::string::npos) << r3.out;
    EXPECT_EQ(computed(dir, "3").size(), 0u);

    const auto size = std::filesystem::file_size(dir + "/journal");
    auto r4 = mpirun("pool_journal", 3, dir + " other");
    ASSERT_EQ(r4.status, 0) << r4.out;
    EXPECT_NE(r4.out.find("OK pool_journal other: "), std::string::npos) << r4.out;
    EXPECT_NE(r4.out.find("of another program or input (3000 items, this call has 2999)"), std::string::npos) << r4.out;
    EXPECT_NE(r4.out.find("OK pool_journal next call"), std::string::npos) << r4.out;
    EXPECT_EQ(computed(dir, "other").size(), 0u);
    EXPECT_EQ(std::filesystem::file_size(dir + "/journal"), size);
    EXPECT_EQ(leftovers(r4.tag), "");
    run("rm -rf '" + dir + "'", "");
}

TEST_F(MPI, PoolImapOverAnInputRangeRank0AloneReads) {
    auto r = mpirun("pool_stream");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("OK pool_stream"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

TEST_F(MPI, KilledRootEndsTheOtherRanksCalls) {
    auto r = mpirun("killroot");
    EXPECT_NE(r.status, 124) << r.out;
    EXPECT_NE(r.out.find("OK rank 1"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("OK rank 2"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

TEST_F(MPI, KilledMpiProcessEndsTheJobWithoutOrphans) {
    auto r = mpirun("killmpi");
    EXPECT_NE(r.status, 124) << r.out;  // no hang
    EXPECT_NE(r.status, 0) << r.out;
    EXPECT_EQ(r.out.find("outlived"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

TEST_F(MPI, CtrlCAtMpirunLeavesNoProcess) {
    const auto tag = tag_for("long");
    auto r = run("timeout -k 5 60 sh -c 'mpirun --oversubscribe --allow-run-as-root -np 3 " +
                     std::string(PARAFORK_MPI_PROG) + " long " + tag + " & m=$!; sleep 2; kill -INT $m; wait $m'",
                 tag);
    EXPECT_NE(r.status, 124) << r.out;
    EXPECT_NE(r.status, 0) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(tag), "");
}

TEST_F(MPI, NotUnderMpirunIsABadLaunch) {
    const auto tag = tag_for("direct");
    auto r = run(std::string("timeout -k 5 30 env -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK ") + PARAFORK_MPI_PROG +
                     " equal " + tag, tag);
    EXPECT_EQ(r.status, 3) << r.out;
    EXPECT_NE(r.out.find("BAD_LAUNCH parafork::mpi: not started by an MPI launcher"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

TEST_F(MPI, OneRankIsABadLaunch) {
    auto r = mpirun("equal", 1);
    EXPECT_NE(r.out.find("BAD_LAUNCH parafork::mpi: the job has one rank"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

// ---- mpi::pool ----

TEST_F(MPI, PoolSameResultsAsLocalPool) {
    auto r = mpirun("pool");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("OK pool equal ranks_used="), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

TEST_F(MPI, PoolRefusesAFunctionItCannotName) {
    auto r = mpirun("pool_unnamed");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("OK unnamed parafork::mpi: the code of this call is in no loaded object"), std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("OK next call"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

TEST_F(MPI, PoolExceptionOnRank2NamesRankAndHost) {
    auto r = mpirun("pool_throw");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("OK pool throw map: std::runtime_error"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("OK pool throw\n"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

TEST_F(MPI, PoolWorkerDeathOnRank2NamesRankAndHost) {
    auto r = mpirun("pool_die");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("OK pool die map:"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("signal 9"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("OK pool die\n"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

TEST_F(MPI, PoolKilledRankEndsTheCallWithAnError) {
    auto r = mpirun("pool_killrank");
    EXPECT_NE(r.status, 124) << r.out;  // no hang
    EXPECT_NE(r.out.find("OK pool killrank"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("OK pool after death"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

TEST_F(MPI, PoolCtrlCAtMpirunLeavesNoProcess) {
    const auto tag = tag_for("pool_long");
    auto r = run("timeout -k 5 60 sh -c 'mpirun --oversubscribe --allow-run-as-root -np 3 " +
                     std::string(PARAFORK_MPI_PROG) + " pool_long " + tag + " & m=$!; sleep 2; kill -INT $m; wait $m'",
                 tag);
    EXPECT_NE(r.status, 124) << r.out;
    EXPECT_NE(r.status, 0) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(tag), "");
}

TEST_F(MPI, PoolCallsThatDifferAcrossRanksAreABadLaunch) {
    auto r = mpirun("pool_mismatch");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("OK mismatch parafork::mpi: rank 1 on"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("OK next call"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
    EXPECT_EQ(leftovers(r.tag), "");
}

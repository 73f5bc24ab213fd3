// A user program: encodes and decodes a nested value, frames it, asks for the job count. It
// exits non-zero (with a message) if anything is off, so building and running it is the test.
#include <parafork/parafork.hpp>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <unistd.h>
#include <variant>
#include <vector>

namespace {

struct point {
    int x = 0;
    std::string label;
    std::optional<std::variant<int, std::string>> note;

    template <class Archive> void serialize(Archive& ar) { ar(x, label, note); }
    bool operator==(const point&) const = default;
};

int failures = 0;

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "parafork consumer: FAILED: %s\n", what);
        ++failures;
    }
}

} // namespace

int main() {
    namespace pf = parafork;
    using value = std::map<std::string, std::vector<point>>;
    const value v{{"a", {{1, "one", 7}, {2, "two", std::nullopt}}}, {"b", {{3, "three", "x"}}}};

    const std::string bytes = pf::wire::encode(v);
    check(pf::wire::decode<value>(bytes) == v, "encode/decode round trip");

    bool threw = false;
    try {
        (void)pf::wire::decode<value>(std::string_view(bytes).substr(0, bytes.size() - 1));
    } catch (const pf::protocol_error&) {
        threw = true;
    }
    check(threw, "a truncated buffer throws protocol_error");

    pf::frames::frame_reader reader(pf::frames::len_prefix);
    reader.feed(pf::frames::len_prefix.frame(bytes));
    auto frame = reader.next();
    check(frame && *frame == bytes, "a len_prefix frame comes back whole");

    // default_jobs() lives in the compiled library, so this proves it is linked.
    const unsigned jobs = pf::default_jobs();
    if (const char* env = std::getenv("PARAFORK_JOBS")) {
        check(jobs == static_cast<unsigned>(std::atoi(env)),
              "default_jobs() follows PARAFORK_JOBS");
    }
    check(jobs >= 1, "default_jobs() >= 1");

#ifdef PARAFORK_CONSUMER_NO_DASHBOARD
    // Built without the dashboard: asking for one says so once and the calls run as usual.
    {
        std::FILE* err = std::tmpfile();
        const int saved = ::dup(2);
        std::fflush(stderr);
        ::dup2(::fileno(err), 2);
        pf::options o;
        o.jobs = 2;
        o.dashboard = "127.0.0.1:0";
        const std::vector<int> in{1, 2, 3};
        const auto a = pf::map([](int x) { return x * 10; }, in, o);
        const auto b = pf::map([](int x) { return x + 1; }, in, o);
        std::fflush(stderr);
        ::dup2(saved, 2);
        ::close(saved);
        std::string said(4096, '\0');
        std::rewind(err);
        said.resize(std::fread(said.data(), 1, said.size(), err));
        std::fclose(err);
        check(a == std::vector<int>{10, 20, 30} && b == std::vector<int>{2, 3, 4},
              "map runs with a dashboard asked for but not built");
        const std::string line =
            "parafork: dashboard on 127.0.0.1:0 not started: this parafork was built without it "
            "(PARAFORK_DASHBOARD=OFF)\n";
        check(said == line, "one line on stderr says the dashboard was not built");
        check(pf::dashboard::url().empty(), "no dashboard URL");
        if (said != line) std::fprintf(stderr, "stderr was: %s", said.c_str());
    }
#endif

    if (failures) return 1;
    std::printf("parafork consumer ok: %zu bytes round-tripped, %u jobs\n", bytes.size(), jobs);
    return 0;
}

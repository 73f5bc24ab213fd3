// xcut: one database writer shared by every stage. Each stage puts statements into the side
// pipeline through xcut<T>("db"); the writer commits at teardown, after every stage is done.
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pipeline/stages.hpp>

#include <cstdio>
#include <map>
#include <stdexcept>

namespace pf = parafork;

using query = std::pair<std::string, int>;  // (statement, item id)

struct DBWriter : pf::stage<> {
    std::map<std::string, int> table;  // the "transaction"
    void setup() { std::printf("db: transaction opened\n"); }
    void process(const query& q) { table[q.first] += 1; }
    void teardown() {
        for (auto& [stmt, n] : table) std::printf("db: %-28s x%d\n", stmt.c_str(), n);
        // Every stage's statements arrived: 30 items seen, every third one valid.
        if (table["UPDATE stats SET seen += 1"] != 30 || table["UPDATE stats SET valid = 1"] != 10)
            throw std::runtime_error("db: statements missing");
        std::printf("db: committed\n");
    }
};

struct Task1 : pf::stage<int> {
    void process(int item) {
        xcut<query>("db").put({"UPDATE stats SET seen += 1", item});
        put(item);
    }
};

struct Task2 : pf::stage<int> {
    void process(int item) {
        if (item % 3 == 0) xcut<query>("db").put({"UPDATE stats SET valid = 1", item});
        put(item);
    }
};

struct Logger : pf::stage<> {
    void process(const std::string& line) { std::printf("log: %s\n", line.c_str()); }
};

struct Noisy : pf::stage<int> {
    void process(int item) {
        if (item % 10 == 0) xcut<std::string>("log").put("milestone " + std::to_string(item));
        put(item);
    }
};

int main() {
    auto writer = pf::ez(DBWriter{});
    auto logger = pf::ez(Logger{});
    pf::ez(pf::iter(0, 30), Task1{}, Task2{}, Noisy{})
        .xcut("db", writer)
        .xcut("log", logger)
        .join();
}

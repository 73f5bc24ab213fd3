// Sleeps the number of seconds given as its argument (1 without one), then exits 0.
#include <cstdlib>
#include <unistd.h>

int main(int argc, char** argv) {
    ::sleep(static_cast<unsigned>(argc > 1 ? std::atoi(argv[1]) : 1));
    return 0;
}

// Dies of SIGSEGV, as a crashing child would.
#include <csignal>

int main() {
    std::raise(SIGSEGV);
    return 0;
}

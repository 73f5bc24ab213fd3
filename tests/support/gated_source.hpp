#pragma once
// A pipeline source that waits (in read) for the test to let bytes through its gate: it puts
// each byte as it comes (flushed at once) and stops at EOF. Every stage after it waits on an
// empty queue meanwhile, which is what the idle tests measure. The test keeps the gate's write
// end private (sys::private_fd), or a stage process would hold it and the source never see EOF.

#include <parafork/exec/pipeline/pipeline.hpp>

#include <unistd.h>

namespace parafork::testing {

struct gated_source : parafork::stage<int> {
    int fd;
    explicit gated_source(int gate_read_fd) : fd(gate_read_fd) {}
    void setup() {
        char c;
        while (::read(fd, &c, 1) == 1) {
            put(c);
            flush();  // sent now, not when the next byte comes
        }
        stop();
    }
};

} // namespace parafork::testing

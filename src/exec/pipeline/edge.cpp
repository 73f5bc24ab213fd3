#include <parafork/exec/pipeline/detail/edge.hpp>

namespace parafork::detail {

bool edge_writer::send(std::string_view msg) {
    if (!open_) return false;
    try {
        // Sleeps while the ring is full; the parent wakes it when it flags the queue abandoned.
        if (stats_) channel_send_unless(*ch_, msg, stats_->abandoned);
        else ch_->send_bytes(msg);
        return true;
    } catch (const channel_closed&) {
        close();  // no process can receive any more, or the queue was abandoned
        return false;
    }
}

int edge_reader::classify(std::string_view& msg) {
    if (buf_ == edge_end_marker) {
        close();
        return -1;
    }
    msg = buf_;
    return 1;
}

// channel_closed means every process that could send is gone and the ring is drained: that is
// the end of the stream too, whether or not our end marker got there first.
bool edge_reader::receive(std::string_view& msg) {
    if (!open_) return false;
    try {
        ch_->receive_bytes(buf_);
    } catch (const channel_closed&) {
        close();
        return false;
    }
    return classify(msg) > 0;
}

int edge_reader::try_receive(std::string_view& msg) {
    if (!open_) return -1;
    try {
        if (!ch_->try_receive_bytes(buf_)) return 0;
    } catch (const channel_closed&) {
        close();
        return -1;
    }
    return classify(msg);
}

} // namespace parafork::detail

#include <parafork/exec/pipeline_edge.hpp>

namespace parafork::detail {

bool edge_writer::send(std::string_view msg) {
    if (!open_) return false;
    for (;;) {
        try {
            ch_->send_bytes_for(msg, std::chrono::milliseconds(100));
            return true;
        } catch (const timeout_error&) {
            // Still full: fine while somebody reads; give up once nobody ever will.
            if (stats_ && stats_->abandoned.load(std::memory_order_acquire)) {
                close();
                return false;
            }
        } catch (const channel_closed&) {
            close();  // no process can receive any more: every reader is gone
            return false;
        }
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

int edge_reader::receive_for(std::string_view& msg, std::chrono::milliseconds timeout) {
    if (!open_) return -1;
    try {
        ch_->receive_bytes_for(buf_, timeout);
    } catch (const timeout_error&) {
        return 0;
    } catch (const channel_closed&) {
        close();
        return -1;
    }
    return classify(msg);
}

} // namespace parafork::detail

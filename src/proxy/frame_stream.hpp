// Frames out of a byte stream as it arrives: which must be read whole before pgrail acts on
// them, which stream through (in pieces, as they come), and the bytes to write on.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/buffer.hpp>

#include "buffer.hpp"
#include "pgrail/protocol/frame.hpp"

namespace pgrail::proxy {

// Bytes to write in order: ranges of the read buffer (forwarded without copying) and
// messages pgrail wrote itself.
class Outbound {
public:
    void forward(std::string_view bytes);
    void inject(std::string bytes);
    // A message of pgrail's own, written by a protocol encoder: inject(protocol::encode_query, sql).
    template <class Encode, class... Args>
    void inject(Encode encode, const Args&... args) {
        std::string bytes;
        encode(bytes, args...);
        inject(std::move(bytes));
    }
    [[nodiscard]] bool empty() const { return pieces_.empty(); }
    [[nodiscard]] const std::vector<boost::asio::const_buffer>& pieces() const { return pieces_; }
    // The first `written` bytes went: only the rest is left to write.
    void drop_front(std::size_t written);
    void clear();

private:
    std::vector<boost::asio::const_buffer> pieces_;
    std::deque<std::string> owned_;  // deque: appending keeps earlier strings in place
    bool last_is_forward_ = false;
};

// One direction's decoding state: the buffer and where the frame at its front stands.
struct FrameReader {
    explicit FrameReader(BufferBudget* budget) : buffer(budget) {}
    Buffer buffer;
    std::size_t passthrough_remaining = 0;  // bytes of a forwarded frame still to come
    std::size_t needed = 0;                 // bytes an inspected frame needs in the buffer
    bool header_seen = false;               // the incomplete frame at the front was announced

    void consume_frame(std::size_t size) {
        buffer.consume(size);
        header_seen = false;
    }
};

// What next_frame() found at the front of a FrameReader's buffer.
struct NextFrame {
    enum class Kind { need_more, invalid, frame, held };
    Kind kind = Kind::need_more;
    protocol::HeaderResult header;
    std::string_view frame;  // Kind::frame: the whole frame, tag included
};

// The next frame pgrail must read whole. Frames before it that need no inspection are
// forwarded as they stream in, even partially; `on_header` sees each frame's tag once. Between
// two frames, `hold()` true stops it (Kind::held) before the next frame's header is read.
template <class Inspect, class OnHeader, class Hold = bool (*)()>
NextFrame next_frame(FrameReader& in, Outbound& out, std::uint32_t max_size, Inspect inspect, OnHeader on_header,
                     Hold hold = [] { return false; }) {
    in.needed = 0;
    while (true) {
        const auto pending = in.buffer.pending();
        if (in.passthrough_remaining > 0) {
            const auto take = std::min(in.passthrough_remaining, pending.size());
            if (take == 0) return {};
            out.forward(pending.substr(0, take));
            in.passthrough_remaining -= take;
            in.buffer.consume(take);
            continue;
        }
        NextFrame next;
        if (!in.header_seen && hold()) {
            next.kind = NextFrame::Kind::held;
            return next;
        }
        next.header = protocol::read_header(pending, max_size);
        if (next.header.status == protocol::FrameStatus::need_more) return next;
        if (next.header.status == protocol::FrameStatus::invalid) {
            next.kind = NextFrame::Kind::invalid;
            return next;
        }
        const char tag = next.header.header.tag;
        if (!in.header_seen) on_header(tag);
        const auto total = next.header.header.total_size();
        if (!inspect(tag, total)) {
            in.passthrough_remaining = total;
            continue;
        }
        if (pending.size() < total) {
            in.header_seen = true;  // read again once the whole frame is here
            in.needed = total;
            return next;
        }
        next.kind = NextFrame::Kind::frame;
        next.frame = pending.substr(0, total);
        return next;
    }
}

}  // namespace pgrail::proxy

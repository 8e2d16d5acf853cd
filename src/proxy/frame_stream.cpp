// The bytes a pump writes on: views into its read buffer, and pgrail's own messages.
#include "frame_stream.hpp"

namespace pgrail::proxy {

void Outbound::forward(std::string_view bytes) {
    if (bytes.empty()) return;
    if (last_is_forward_) {
        auto& last = pieces_.back();
        if (static_cast<const char*>(last.data()) + last.size() == bytes.data()) {
            last = boost::asio::const_buffer(last.data(), last.size() + bytes.size());
            return;
        }
    }
    pieces_.emplace_back(bytes.data(), bytes.size());
    last_is_forward_ = true;
}

void Outbound::inject(std::string bytes) {
    owned_.push_back(std::move(bytes));
    pieces_.emplace_back(owned_.back().data(), owned_.back().size());
    last_is_forward_ = false;
}

std::vector<boost::asio::const_buffer> Outbound::pieces_after(std::size_t written) const {
    std::vector<boost::asio::const_buffer> rest;
    for (const auto& piece : pieces_) {
        if (written >= piece.size()) {
            written -= piece.size();
            continue;
        }
        rest.push_back(piece + written);
        written = 0;
    }
    return rest;
}

void Outbound::clear() {
    pieces_.clear();
    owned_.clear();
    last_is_forward_ = false;
}

}  // namespace pgrail::proxy

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

void Outbound::drop_front(std::size_t written) {
    auto first = pieces_.begin();
    while (first != pieces_.end() && written >= first->size()) {
        written -= first->size();
        ++first;
    }
    pieces_.erase(pieces_.begin(), first);
    if (pieces_.empty()) last_is_forward_ = false;
    else pieces_.front() += written;
    // (owned_ keeps the strings of dropped pieces until clear(): the rest may point into them.)
}

void Outbound::clear() {
    pieces_.clear();
    owned_.clear();
    last_is_forward_ = false;
}

}  // namespace pgrail::proxy

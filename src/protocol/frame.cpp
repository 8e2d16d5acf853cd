// Frame boundaries: never believe a length field.
#include "pgrail/protocol/frame.hpp"

#include "pgrail/protocol/bytes.hpp"

namespace pgrail::protocol {

HeaderResult read_header(std::string_view buffered, std::uint32_t max_message_size) {
    HeaderResult result;
    if (buffered.size() < header_size) return result;
    result.header.tag = buffered[0];
    result.header.length = read_u32(buffered.data() + 1);
    if (result.header.length < 4) {
        result.status = FrameStatus::invalid;
        result.reason = "message length is less than 4";
    } else if (result.header.length > max_message_size) {
        result.status = FrameStatus::invalid;
        result.reason = "message length exceeds max_message_size";
    } else {
        result.status = FrameStatus::complete;
    }
    return result;
}

StartupHeaderResult read_startup_header(std::string_view buffered) {
    StartupHeaderResult result;
    if (buffered.size() < 4) return result;
    result.length = read_u32(buffered.data());
    // Length, then at least the 4-byte protocol code.
    if (result.length < 8) {
        result.status = FrameStatus::invalid;
        result.reason = "startup packet length is less than 8";
    } else if (result.length - 4 > max_startup_packet_length) {
        // PostgreSQL bounds the packet after its length word (len -= 4 first): 10004 passes.
        result.status = FrameStatus::invalid;
        result.reason = "startup packet length exceeds 10004";
    } else {
        result.status = FrameStatus::complete;
    }
    return result;
}

std::string hex_dump(std::string_view bytes, std::size_t max_bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    const auto count = bytes.size() < max_bytes ? bytes.size() : max_bytes;
    for (std::size_t i = 0; i < count; ++i) {
        const auto byte = static_cast<unsigned char>(bytes[i]);
        if (i > 0) out.push_back(' ');
        out.push_back(digits[byte >> 4]);
        out.push_back(digits[byte & 0xf]);
    }
    if (bytes.size() > count) out += " ...";
    return out;
}

}  // namespace pgrail::protocol

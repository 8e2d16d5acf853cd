// Frame boundaries of the PostgreSQL protocol, with every length field bounded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pgrail::protocol {

// PostgreSQL's own limit for a startup packet (MAX_STARTUP_PACKET_LENGTH), not counting its
// 4-byte length word.
inline constexpr std::uint32_t max_startup_packet_length = 10000;
inline constexpr std::size_t header_size = 5;  // tag + int32 length

enum class FrameStatus { complete, need_more, invalid };

struct FrameHeader {
    char tag = 0;
    std::uint32_t length = 0;  // as on the wire: counts itself, not the tag
    [[nodiscard]] std::size_t total_size() const { return std::size_t{length} + 1; }
    [[nodiscard]] std::size_t body_size() const { return std::size_t{length} - 4; }
};

struct HeaderResult {
    FrameStatus status = FrameStatus::need_more;
    FrameHeader header;
    const char* reason = "";  // why the header is invalid
};

// Reads the header of a tagged message at the start of `buffered`. `complete` means
// the header is valid (the body may not have arrived yet).
[[nodiscard]] HeaderResult read_header(std::string_view buffered, std::uint32_t max_message_size);

struct StartupHeaderResult {
    FrameStatus status = FrameStatus::need_more;
    std::uint32_t length = 0;  // whole packet, counting the length field
    const char* reason = "";
};

// Reads the length of an untagged startup-phase packet (StartupMessage, SSLRequest, ...).
[[nodiscard]] StartupHeaderResult read_startup_header(std::string_view buffered);

// "48 00 00 00 03" style hex dump of the first bytes, for logs of refused frames.
[[nodiscard]] std::string hex_dump(std::string_view bytes, std::size_t max_bytes = 16);

}  // namespace pgrail::protocol

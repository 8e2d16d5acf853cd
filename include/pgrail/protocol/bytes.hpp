// Big-endian integers and C strings as the PostgreSQL protocol lays them out, read with bounds checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pgrail::protocol {

inline std::uint32_t read_u32(const char* p) {
    const auto* b = reinterpret_cast<const unsigned char*>(p);
    return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | std::uint32_t{b[3]};
}

inline std::uint16_t read_u16(const char* p) {
    const auto* b = reinterpret_cast<const unsigned char*>(p);
    return static_cast<std::uint16_t>((b[0] << 8) | b[1]);
}

// Reads fields from a message body; every read is bounds-checked and a failed read
// makes the reader fail for good, so a parser checks `ok()` once at the end.
class ByteReader {
public:
    explicit ByteReader(std::string_view data) : data_(data) {}

    [[nodiscard]] std::optional<std::uint8_t> u8();
    [[nodiscard]] std::optional<std::uint16_t> u16();
    [[nodiscard]] std::optional<std::uint32_t> u32();
    [[nodiscard]] std::optional<std::int32_t> i32();
    // A NUL-terminated string (the view excludes the NUL).
    [[nodiscard]] std::optional<std::string_view> cstring();
    [[nodiscard]] std::optional<std::string_view> bytes(std::size_t count);

    [[nodiscard]] std::size_t remaining() const { return data_.size() - pos_; }
    // True when every read succeeded and nothing is left over: trailing bytes are a failure.
    [[nodiscard]] bool complete() const { return !failed_ && pos_ == data_.size(); }
    [[nodiscard]] bool failed() const { return failed_; }

private:
    std::nullopt_t fail_all() {
        failed_ = true;
        pos_ = data_.size();
        return std::nullopt;
    }
    std::string_view data_;
    std::size_t pos_ = 0;
    bool failed_ = false;
};

// Builds one backend or frontend message: tag, length placeholder, fields, then finish().
class MessageWriter {
public:
    explicit MessageWriter(std::string& out, char tag);
    MessageWriter& u8(std::uint8_t value);
    MessageWriter& i16(std::int16_t value);
    MessageWriter& i32(std::int32_t value);
    MessageWriter& cstring(std::string_view value);
    MessageWriter& raw(std::string_view value);
    // Patches the length field; the message is complete in `out` afterwards.
    void finish();

private:
    std::string& out_;
    std::size_t start_;
};

}  // namespace pgrail::protocol

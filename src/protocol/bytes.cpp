// Bounds-checked readers and the message writer.
#include "pgrail/protocol/bytes.hpp"

#include <cstring>

namespace pgrail::protocol {

std::optional<std::uint8_t> ByteReader::u8() {
    if (remaining() < 1) return fail_all();
    return static_cast<std::uint8_t>(data_[pos_++]);
}

std::optional<std::uint16_t> ByteReader::u16() {
    if (remaining() < 2) return fail_all();
    auto value = read_u16(data_.data() + pos_);
    pos_ += 2;
    return value;
}

std::optional<std::uint32_t> ByteReader::u32() {
    if (remaining() < 4) return fail_all();
    auto value = read_u32(data_.data() + pos_);
    pos_ += 4;
    return value;
}

std::optional<std::int32_t> ByteReader::i32() {
    auto value = u32();
    if (!value) return std::nullopt;
    return static_cast<std::int32_t>(*value);
}

std::optional<std::string_view> ByteReader::cstring() {
    const auto rest = data_.substr(pos_);
    const auto nul = rest.find('\0');
    if (nul == std::string_view::npos) return fail_all();
    pos_ += nul + 1;
    return rest.substr(0, nul);
}

std::optional<std::string_view> ByteReader::bytes(std::size_t count) {
    if (remaining() < count) return fail_all();
    auto value = data_.substr(pos_, count);
    pos_ += count;
    return value;
}

MessageWriter::MessageWriter(std::string& out, char tag) : out_(out) {
    if (tag != '\0') out_.push_back(tag);
    start_ = out_.size();
    out_.append(4, '\0');
}

MessageWriter& MessageWriter::u8(std::uint8_t value) {
    out_.push_back(static_cast<char>(value));
    return *this;
}

MessageWriter& MessageWriter::i16(std::int16_t value) {
    const auto v = static_cast<std::uint16_t>(value);
    out_.push_back(static_cast<char>(v >> 8));
    out_.push_back(static_cast<char>(v & 0xff));
    return *this;
}

MessageWriter& MessageWriter::i32(std::int32_t value) {
    const auto v = static_cast<std::uint32_t>(value);
    for (int shift = 24; shift >= 0; shift -= 8) out_.push_back(static_cast<char>((v >> shift) & 0xff));
    return *this;
}

MessageWriter& MessageWriter::cstring(std::string_view value) {
    out_.append(value);
    out_.push_back('\0');
    return *this;
}

MessageWriter& MessageWriter::raw(std::string_view value) {
    out_.append(value);
    return *this;
}

void MessageWriter::finish() {
    const auto length = static_cast<std::uint32_t>(out_.size() - start_);
    for (int byte = 0; byte < 4; ++byte)
        out_[start_ + static_cast<std::size_t>(byte)] = static_cast<char>((length >> (24 - 8 * byte)) & 0xff);
}

}  // namespace pgrail::protocol

// Frame headers: every length bounded, partial input asks for more.
#include <catch2/catch.hpp>

#include <string>

#include "pgrail/protocol/frame.hpp"

using namespace pgrail::protocol;

namespace {
std::string header(char tag, std::uint32_t length) {
    std::string out(1, tag);
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((length >> shift) & 0xff));
    return out;
}
}  // namespace

TEST_CASE("a tagged header needs five bytes") {
    const auto full = header('Q', 9);
    for (std::size_t n = 0; n < 5; ++n) CHECK(read_header(full.substr(0, n), 1024).status == FrameStatus::need_more);
    const auto result = read_header(full, 1024);
    REQUIRE(result.status == FrameStatus::complete);
    CHECK(result.header.tag == 'Q');
    CHECK(result.header.total_size() == 10);
    CHECK(result.header.body_size() == 5);
}

TEST_CASE("lengths below 4 are invalid") {
    for (std::uint32_t length : {0u, 1u, 3u}) CHECK(read_header(header('Q', length), 1024).status == FrameStatus::invalid);
    CHECK(read_header(header('S', 4), 1024).status == FrameStatus::complete);
}

TEST_CASE("lengths above max_message_size are invalid, including 'negative' ones") {
    CHECK(read_header(header('Q', 1024), 1024).status == FrameStatus::complete);
    CHECK(read_header(header('Q', 1025), 1024).status == FrameStatus::invalid);
    CHECK(read_header(header('Q', 0x7fffffff), 64u << 20).status == FrameStatus::invalid);
    CHECK(read_header(header('Q', 0xffffffff), 64u << 20).status == FrameStatus::invalid);  // -1 as int32
}

TEST_CASE("two frames in one read are read one after the other") {
    const auto bytes = header('S', 4) + header('Q', 6) + "x";  // second frame incomplete
    const auto first = read_header(bytes, 1024);
    REQUIRE(first.status == FrameStatus::complete);
    const auto second = read_header(std::string_view(bytes).substr(first.header.total_size()), 1024);
    REQUIRE(second.status == FrameStatus::complete);
    CHECK(second.header.tag == 'Q');
    CHECK(bytes.size() - first.header.total_size() < second.header.total_size());
}

TEST_CASE("startup packet lengths are bounded like PostgreSQL's") {
    auto length = [](std::uint32_t n) { return header('\0', n).substr(1); };
    CHECK(read_startup_header(length(8).substr(0, 3)).status == FrameStatus::need_more);
    CHECK(read_startup_header(length(0)).status == FrameStatus::invalid);
    CHECK(read_startup_header(length(7)).status == FrameStatus::invalid);
    CHECK(read_startup_header(length(8)).status == FrameStatus::complete);
    // MAX_STARTUP_PACKET_LENGTH (10000) counts the packet after its length word.
    CHECK(read_startup_header(length(10004)).status == FrameStatus::complete);
    CHECK(read_startup_header(length(10005)).status == FrameStatus::invalid);
    CHECK(read_startup_header(length(0x7fffffff)).status == FrameStatus::invalid);
}

TEST_CASE("hex dumps are short") {
    CHECK(hex_dump(std::string("\x51\x00\x00\x00\x03", 5)) == "51 00 00 00 03");
    CHECK(hex_dump(std::string(40, 'A'), 4) == "41 41 41 41 ...");
}

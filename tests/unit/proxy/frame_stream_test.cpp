// The pumps' frame decoder over a stream that arrives in arbitrary pieces: frames pgrail must
// read whole come out whole, the others stream through as they arrive, bad lengths stop it.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "../../../src/proxy/frame_stream.hpp"

using namespace pgrail::proxy;

namespace {

constexpr std::uint32_t max_size = 1024;

std::string be32(std::uint32_t value) {
    return {static_cast<char>(value >> 24), static_cast<char>(value >> 16), static_cast<char>(value >> 8),
            static_cast<char>(value)};
}

std::string frame(char tag, const std::string& body) {
    return tag + be32(static_cast<std::uint32_t>(body.size() + 4)) + body;
}

// Appends bytes as a read from the socket would.
void arrive(FrameReader& reader, std::string_view bytes) {
    REQUIRE(reader.buffer.prepare(reader.buffer.pending().size() + bytes.size()));
    std::memcpy(reader.buffer.write_position(), bytes.data(), bytes.size());
    reader.buffer.commit(bytes.size());
}

// What the outbound holds, as one string (its pieces are views into the reader's buffer).
std::string written(const Outbound& out) {
    std::string bytes;
    for (const auto& piece : out.pieces()) bytes.append(static_cast<const char*>(piece.data()), piece.size());
    return bytes;
}

// Reads whole only 'Q' frames and records every tag the decoder announces.
struct Decoder {
    FrameReader reader{nullptr};
    Outbound out;
    std::vector<char> announced;

    NextFrame next() {
        return next_frame(reader, out, max_size, [](char tag, std::size_t) { return tag == 'Q'; },
                          [this](char tag) { announced.push_back(tag); });
    }
};

}  // namespace

TEST_CASE("two inspected frames in one read come out one after the other", "[proxy][frames]") {
    Decoder decoder;
    const auto first = frame('Q', std::string("SELECT 1", 9));
    const auto second = frame('Q', std::string("SELECT 2", 9));
    arrive(decoder.reader, first + second);
    auto next = decoder.next();
    REQUIRE(next.kind == NextFrame::Kind::frame);
    CHECK(next.frame == first);
    decoder.reader.consume_frame(next.frame.size());
    next = decoder.next();
    REQUIRE(next.kind == NextFrame::Kind::frame);
    CHECK(next.frame == second);
    decoder.reader.consume_frame(next.frame.size());
    CHECK(decoder.next().kind == NextFrame::Kind::need_more);
    CHECK(decoder.out.empty());  // inspected frames are the caller's to forward
    CHECK(decoder.announced == std::vector<char>{'Q', 'Q'});
}

TEST_CASE("an inspected frame waits until it is whole, announced once", "[proxy][frames]") {
    Decoder decoder;
    const auto query = frame('Q', std::string(100, 'x') + '\0');
    arrive(decoder.reader, query.substr(0, 3));  // not even a whole header
    CHECK(decoder.next().kind == NextFrame::Kind::need_more);
    CHECK(decoder.announced.empty());
    arrive(decoder.reader, query.substr(3, 40));
    auto next = decoder.next();
    CHECK(next.kind == NextFrame::Kind::need_more);
    CHECK(decoder.reader.needed == query.size());  // the reader knows how much to make room for
    arrive(decoder.reader, query.substr(43));
    next = decoder.next();
    REQUIRE(next.kind == NextFrame::Kind::frame);
    CHECK(next.frame == query);
    CHECK(decoder.announced == std::vector<char>{'Q'});
    CHECK(decoder.out.empty());
}

TEST_CASE("other frames stream through in the pieces they arrive in", "[proxy][frames]") {
    Decoder decoder;
    const auto row = frame('D', std::string(200, 'r'));
    const auto query = frame('Q', std::string("x", 2));
    std::string forwarded;
    for (std::size_t at = 0; at < row.size(); at += 70) {
        arrive(decoder.reader, row.substr(at, 70));
        CHECK(decoder.next().kind == NextFrame::Kind::need_more);
        forwarded += written(decoder.out);
        decoder.out.clear();
    }
    CHECK(forwarded == row);  // every byte, in order, as it came
    CHECK(decoder.reader.passthrough_remaining == 0);
    arrive(decoder.reader, query);
    const auto next = decoder.next();
    REQUIRE(next.kind == NextFrame::Kind::frame);
    CHECK(next.frame == query);
    CHECK(decoder.announced == std::vector<char>{'D', 'Q'});
}

TEST_CASE("streamed frames that arrive together are written as one piece", "[proxy][frames]") {
    Decoder decoder;
    const auto rows = frame('D', "a") + frame('D', "bb") + frame('C', std::string("SELECT 2", 9));
    arrive(decoder.reader, rows);
    CHECK(decoder.next().kind == NextFrame::Kind::need_more);
    REQUIRE(decoder.out.pieces().size() == 1);
    CHECK(written(decoder.out) == rows);
}

TEST_CASE("a bad length stops the decoder after the frames before it", "[proxy][frames]") {
    const std::pair<const char*, std::string> cases[] = {
        {"length 3", "D" + be32(3)},
        {"length 0", "D" + be32(0)},
        {"length max + 1", "D" + be32(max_size + 1)},
        {"length 2^31-1", "Q" + be32(0x7fffffff)},
        {"negative length", "Q" + be32(0xffffffff)},
    };
    for (const auto& [name, bad] : cases) {
        INFO(name);
        Decoder decoder;
        const auto before = frame('D', "ok");
        arrive(decoder.reader, before + bad + "trailing bytes");
        const auto next = decoder.next();
        CHECK(next.kind == NextFrame::Kind::invalid);
        CHECK(written(decoder.out) == before);  // nothing of the bad frame or after it
        CHECK(decoder.reader.buffer.pending().substr(0, 5) == bad.substr(0, 5));
    }
}

TEST_CASE("pgrail's own messages are encoded in place, and a write resumes where it stopped", "[proxy][frames]") {
    const std::string stream = frame('D', "row");
    Outbound out;
    out.forward(stream);
    out.inject([](std::string& bytes, char tag, const std::string& body) { bytes += frame(tag, body); }, 'C', "SELECT");
    CHECK(written(out) == stream + frame('C', "SELECT"));
    out.drop_front(0);
    CHECK(out.pieces().size() == 2);
    out.drop_front(stream.size() + 2);
    REQUIRE(out.pieces().size() == 1);
    CHECK(written(out) == frame('C', "SELECT").substr(2));
    out.drop_front(frame('C', "SELECT").size() - 2);
    CHECK(out.empty());
    out.forward(stream);  // usable again
    CHECK(written(out) == stream);
}

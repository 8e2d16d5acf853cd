// Fuzzes the pumps' frame decoder (read_header and next_frame over a FrameReader, fed in pieces
// as reads would deliver them) and the parsers of the messages pgrail reads whole.
//
// Input: byte 0 chooses the direction (bit 0: from the server) and max_message_size (bit 1:
// 1 MiB, else 8 KiB); byte 1 how the stream is cut into reads; the rest is the stream.
// Properties: nothing of the stream is lost, duplicated or reordered (the bytes written on are
// a prefix of the stream, and with what is still buffered they are all that arrived); every
// frame's tag is announced once, in stream order, exactly as a plain walk with read_header finds
// them; a frame read whole is whole; a parsed message re-encodes to the same bytes; the buffer
// budget is all given back.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "../../src/proxy/frame_stream.hpp"
#include "fuzz_support.hpp"
#include "pgrail/protocol/backend.hpp"
#include "pgrail/protocol/frame.hpp"
#include "pgrail/protocol/frontend.hpp"

using namespace pgrail;
using pgrail::fuzz::as_text;

namespace {

// The frames the session reads whole (session.cpp inspect_from_client / inspect_from_server).
bool inspected(bool from_server, char tag) {
    static constexpr std::string_view client_tags = "QPF";
    static constexpr std::string_view server_tags = "RKZENSv";
    return (from_server ? server_tags : client_tags).find(tag) != std::string_view::npos;
}

void decode_client(char tag, std::string_view frame) {
    const auto body = frame.substr(protocol::header_size);
    std::string encoded;
    if (tag == protocol::frontend_tag::query) {
        if (const auto sql = protocol::parse_query(body)) {
            protocol::encode_query(encoded, *sql);
            PGRAIL_FUZZ_CHECK(encoded == frame);
        }
    } else if (tag == protocol::frontend_tag::parse) {
        if (const auto parse = protocol::parse_parse(body)) {
            protocol::encode_parse(encoded, parse->statement_name, parse->query, parse->parameter_types);
            // A statement name is read as the server keys it, by its first 63 bytes
            // (server_object_name): a longer one re-encodes cut, the rest alike; any other, byte
            // for byte.
            if (body.find('\0') <= 63) {
                PGRAIL_FUZZ_CHECK(encoded == frame);
            } else {
                const auto again = protocol::parse_parse(std::string_view(encoded).substr(protocol::header_size));
                PGRAIL_FUZZ_CHECK(again && again->statement_name == parse->statement_name &&
                                  again->query == parse->query && again->parameter_types == parse->parameter_types);
            }
        }
    }
}

void decode_server(char tag, std::string_view frame) {
    const auto body = frame.substr(protocol::header_size);
    std::string encoded;
    switch (tag) {
    case protocol::backend_tag::authentication:
        if (const auto auth = protocol::parse_authentication(body); auth && auth->code == protocol::auth_sasl) {
            protocol::encode_authentication_sasl(encoded, auth->sasl_mechanisms);
            PGRAIL_FUZZ_CHECK(encoded == frame);
        }
        break;
    case protocol::backend_tag::backend_key_data:
        if (const auto key = protocol::parse_backend_key_data(body)) {
            protocol::encode_backend_key_data(encoded, *key);
            PGRAIL_FUZZ_CHECK(encoded == frame);
        }
        break;
    case protocol::backend_tag::ready_for_query:
        if (const auto status = protocol::parse_ready_for_query(body)) {
            protocol::encode_ready_for_query(encoded, *status);
            PGRAIL_FUZZ_CHECK(encoded == frame);
        }
        break;
    case protocol::backend_tag::parameter_status:
        if (const auto status = protocol::parse_parameter_status(body)) {
            protocol::encode_parameter_status(encoded, status->name, status->value);
            PGRAIL_FUZZ_CHECK(encoded == frame);
        }
        break;
    case protocol::backend_tag::error_response:
    case protocol::backend_tag::notice_response:
        if (const auto fields = protocol::parse_error_fields(body)) {
            // The first field of a code is the one error_field finds (a view into the body).
            for (const auto& field : *fields) {
                const auto found = protocol::error_field(*fields, field.first);
                PGRAIL_FUZZ_CHECK(found.data() >= body.data() && found.data() + found.size() <= body.data() + body.size());
            }
        }
        break;
    default:
        break;
    }
}

void flush(proxy::Outbound& out, std::string& written) {
    for (const auto& piece : out.pieces()) written.append(static_cast<const char*>(piece.data()), piece.size());
    out.clear();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const bool from_server = (data[0] & 1) != 0;
    const std::uint32_t max_size = (data[0] & 2) != 0 ? 1U << 20 : 8192;
    const unsigned cut = data[1];
    const std::string_view stream = as_text(data + 2, size - 2);

    // The startup-phase length and the log dump see any bytes too.
    (void)protocol::read_startup_header(stream);
    PGRAIL_FUZZ_CHECK(protocol::hex_dump(stream).size() <= 16 * 3 - 1 + 4);

    // The reference: frame after frame with read_header alone.
    std::vector<char> expected_tags;
    for (std::size_t position = 0; position < stream.size();) {
        const auto header = protocol::read_header(stream.substr(position), max_size);
        if (header.status != protocol::FrameStatus::complete) break;
        PGRAIL_FUZZ_CHECK(header.header.length >= 4 && header.header.length <= max_size);
        expected_tags.push_back(header.header.tag);
        position += header.header.total_size();
    }

    proxy::BufferBudget budget(2 * (std::size_t{max_size} + 1) + proxy::standard_buffer_size);
    std::string written;
    std::vector<char> announced;
    std::size_t arrived = 0;
    bool invalid = false;
    {
        proxy::FrameReader reader(from_server ? nullptr : &budget);  // as Session: only the client's is budgeted
        proxy::Outbound out;
        const auto inspect = [from_server](char tag, std::size_t) { return inspected(from_server, tag); };
        const auto on_header = [&announced](char tag) { announced.push_back(tag); };
        for (std::size_t read = 0; arrived < stream.size() && !invalid; ++read) {
            // As Session::read_more: an empty buffer goes back to the pool, then room for the
            // frame being waited for (or a standard buffer), then one read.
            if (reader.buffer.empty()) reader.buffer.release();
            PGRAIL_FUZZ_CHECK(reader.buffer.prepare(reader.needed));
            PGRAIL_FUZZ_CHECK(reader.buffer.write_space() > 0);  // a pump always has room to read into
            const std::size_t piece = cut == 255 ? stream.size() : 1 + (read * 7919 + cut) % (cut + 1);
            const std::size_t n = std::min({piece, reader.buffer.write_space(), stream.size() - arrived});
            std::memcpy(reader.buffer.write_position(), stream.data() + arrived, n);
            reader.buffer.commit(n);
            arrived += n;
            PGRAIL_FUZZ_CHECK(budget.used() <= budget.limit());

            while (true) {
                const auto next = proxy::next_frame(reader, out, max_size, inspect, on_header);
                if (next.kind == proxy::NextFrame::Kind::need_more) {
                    PGRAIL_FUZZ_CHECK(reader.needed == 0 || reader.needed > reader.buffer.pending().size());
                    break;
                }
                if (next.kind == proxy::NextFrame::Kind::invalid) {
                    PGRAIL_FUZZ_CHECK(protocol::read_header(reader.buffer.pending(), max_size).status ==
                                      protocol::FrameStatus::invalid);
                    invalid = true;
                    break;
                }
                const char tag = next.header.header.tag;
                PGRAIL_FUZZ_CHECK(inspected(from_server, tag));
                PGRAIL_FUZZ_CHECK(next.frame.size() == next.header.header.total_size());
                PGRAIL_FUZZ_CHECK(next.frame.data() == reader.buffer.pending().data());
                PGRAIL_FUZZ_CHECK(next.frame[0] == tag);
                if (from_server) {
                    decode_server(tag, next.frame);
                } else {
                    decode_client(tag, next.frame);
                }
                out.forward(next.frame);  // as the session forwards an allowed frame
                reader.consume_frame(next.frame.size());
            }
            flush(out, written);  // written before the next read, as Session::write_out
        }
        PGRAIL_FUZZ_CHECK(written.size() + reader.buffer.pending().size() == arrived);
        PGRAIL_FUZZ_CHECK(std::string_view(written) == stream.substr(0, written.size()));
        PGRAIL_FUZZ_CHECK(reader.buffer.pending() == stream.substr(written.size(), arrived - written.size()));
    }
    PGRAIL_FUZZ_CHECK(announced == expected_tags);
    PGRAIL_FUZZ_CHECK(budget.used() == 0);
    return 0;
}

// Fuzzes the startup packet: parse_startup_packet on the input as it is and with its length field
// put in front (so the fuzzer need not guess lengths), then the startup guards of the shipped
// policy on what parsed (replication, options, settings as startup parameters).
// Properties: a packet parses only when its length field is its size; a parsed StartupMessage of
// protocol 3 without `_pq_.` options re-encodes to the same bytes, and any parses again to the
// same parameters, duplicate keys kept in order; parameter() answers the first value of a key;
// the policy decides without throwing, and a refusal carries a message and a rule.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "pgrail/policy/evaluator.hpp"
#include "pgrail/protocol/bytes.hpp"
#include "pgrail/protocol/frame.hpp"
#include "pgrail/protocol/frontend.hpp"

using namespace pgrail;
using pgrail::fuzz::as_text;

namespace {

void check_packet(std::string_view packet) {
    const auto header = protocol::read_startup_header(packet);
    const auto parsed = protocol::parse_startup_packet(packet);
    if (!parsed) return;
    PGRAIL_FUZZ_CHECK(packet.size() >= 8 && protocol::read_u32(packet.data()) == packet.size());
    if (packet.size() <= protocol::max_startup_packet_length)
        PGRAIL_FUZZ_CHECK(header.status == protocol::FrameStatus::complete && header.length == packet.size());
    if (parsed->kind != protocol::StartupKind::startup) {
        PGRAIL_FUZZ_CHECK(parsed->parameters.empty());
        return;
    }
    for (const auto& [key, value] : parsed->parameters) {
        PGRAIL_FUZZ_CHECK(!key.empty());
        PGRAIL_FUZZ_CHECK(key.find('\0') == std::string::npos && value.find('\0') == std::string::npos);
        for (const auto& [first_key, first_value] : parsed->parameters) {
            if (first_key != key) continue;
            PGRAIL_FUZZ_CHECK(parsed->parameter(key) == first_value);
            break;
        }
    }
    if ((parsed->code >> 16) == 3) {
        std::string encoded;
        protocol::encode_startup_message(encoded, parsed->code, parsed->parameters);
        // `_pq_.` options are kept apart (by name, for NegotiateProtocolVersion), not re-encoded.
        if (parsed->protocol_options.empty()) PGRAIL_FUZZ_CHECK(encoded == packet);
        for (const auto& option : parsed->protocol_options) PGRAIL_FUZZ_CHECK(option.starts_with("_pq_."));
        const auto again = protocol::parse_startup_packet(encoded);
        PGRAIL_FUZZ_CHECK(again && again->parameters == parsed->parameters);
    } else {
        PGRAIL_FUZZ_CHECK(parsed->parameters.empty());  // another major version: left to the caller
    }

    policy::SessionInfo session;
    session.user = parsed->parameter("user");
    session.database = parsed->parameter("database");
    session.application_name = parsed->parameter("application_name");
    session.client_address = "127.0.0.1";
    const auto decision = policy::evaluate_startup(fuzz::default_policy(), session, parsed->parameters);
    PGRAIL_FUZZ_CHECK(!decision.rule.empty());
    if (!decision.allowed()) PGRAIL_FUZZ_CHECK(decision.message.starts_with("pgrail: ") && !decision.guard.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input = as_text(data, size);
    check_packet(input);
    // The same bytes as the body of a packet of the right length.
    if (size + 4 > protocol::max_startup_packet_length) return 0;
    const auto length = static_cast<std::uint32_t>(size + 4);
    std::string packet{static_cast<char>(length >> 24), static_cast<char>(length >> 16), static_cast<char>(length >> 8),
                       static_cast<char>(length)};
    packet.append(input);
    check_packet(packet);
    return 0;
}

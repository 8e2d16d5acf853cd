// Message codecs: round trips, truncated strings and trailing bytes.
#include <catch2/catch.hpp>

#include <string>

#include "pgrail/protocol/backend.hpp"
#include "pgrail/protocol/bytes.hpp"
#include "pgrail/protocol/frontend.hpp"

using namespace pgrail::protocol;
using namespace std::string_literals;

namespace {
std::string startup(std::uint32_t code, const std::string& params) {
    std::string out;
    MessageWriter(out, '\0').i32(static_cast<std::int32_t>(code)).raw(params).finish();
    return out;
}
std::string body(const std::string& message) { return message.substr(5); }
}  // namespace

TEST_CASE("a StartupMessage's parameters are read") {
    const auto packet = startup(protocol_version_3, "user\0agent\0database\0app\0\0"s);
    const auto parsed = parse_startup_packet(packet);
    REQUIRE(parsed);
    CHECK(parsed->kind == StartupKind::startup);
    CHECK(parsed->parameter("user") == "agent");
    CHECK(parsed->parameter("database") == "app");
    CHECK(parsed->parameter("options").empty());
    CHECK(parsed->protocol_options.empty());
}

TEST_CASE("a StartupMessage's `_pq_.` names are protocol options, not parameters") {
    const auto parsed = parse_startup_packet(startup(protocol_version_3, "user\0agent\0_pq_.x\0on\0\0"s));
    REQUIRE(parsed);
    CHECK(parsed->parameters == std::vector<std::pair<std::string, std::string>>{{"user", "agent"}});
    CHECK(parsed->protocol_options == std::vector<std::string>{"_pq_.x"});
}

TEST_CASE("Terminate and a pre-3.0 error are written as their protocols spell them") {
    std::string terminate;
    MessageWriter(terminate, frontend_tag::terminate).finish();
    CHECK(terminate == terminate_message);
    std::string old_error;
    encode_protocol2_error(old_error, "FATAL:  no\n");
    CHECK(old_error == "EFATAL:  no\n\0"s);
}

TEST_CASE("a StartupMessage without its terminator or with trailing bytes is malformed") {
    CHECK_FALSE(parse_startup_packet(startup(protocol_version_3, "user\0agent\0"s)));
    CHECK_FALSE(parse_startup_packet(startup(protocol_version_3, "user\0agent"s)));
    CHECK_FALSE(parse_startup_packet(startup(protocol_version_3, "user\0agent\0\0junk"s)));
}

TEST_CASE("SSLRequest, GSSENCRequest and CancelRequest are recognised") {
    CHECK(parse_startup_packet(startup(ssl_request_code, ""))->kind == StartupKind::ssl_request);
    CHECK(parse_startup_packet(startup(gssenc_request_code, ""))->kind == StartupKind::gssenc_request);
    std::string cancel;
    encode_cancel_request(cancel, 1234, -5);
    const auto parsed = parse_startup_packet(cancel);
    REQUIRE(parsed);
    CHECK(parsed->kind == StartupKind::cancel_request);
    CHECK(parsed->cancel_pid == 1234);
    CHECK(parsed->cancel_secret == -5);
    CHECK_FALSE(parse_startup_packet(cancel.substr(0, 12)));  // length field no longer matches
}

TEST_CASE("a protocol 2.0 startup parses with its version for the caller to refuse") {
    const auto parsed = parse_startup_packet(startup(0x00020000, "user\0x\0\0"s));
    REQUIRE(parsed);
    CHECK((parsed->code >> 16) == 2);
}

TEST_CASE("Query and Parse round trip") {
    std::string query;
    encode_query(query, "SELECT 1");
    CHECK(parse_query(body(query)) == "SELECT 1");
    CHECK_FALSE(parse_query("SELECT 1"));          // missing NUL
    CHECK_FALSE(parse_query("SELECT 1\0x"s));      // trailing bytes

    std::string parse;
    const auto types = "\0\x01\0\0\0\x17"s;  // one parameter, int4
    encode_parse(parse, "s1", "SELECT $1", types);
    const auto parse_body = body(parse);  // parsed views point into it
    const auto parsed = parse_parse(parse_body);
    REQUIRE(parsed);
    CHECK(parsed->statement_name == "s1");
    CHECK(parsed->query == "SELECT $1");
    CHECK(parsed->parameter_types == types);
    CHECK_FALSE(parse_parse(parse_body.substr(0, parse_body.size() - 1)));  // truncated OID
}

TEST_CASE("ErrorResponse encodes and parses its fields") {
    std::string error;
    encode_error_response(error, {"ERROR", "42501", "pgrail: refused", "rule x", "do y"});
    CHECK(error[0] == 'E');
    const auto error_body = body(error);
    const auto fields = parse_error_fields(error_body);
    REQUIRE(fields);
    CHECK(error_field(*fields, 'S') == "ERROR");
    CHECK(error_field(*fields, 'C') == "42501");
    CHECK(error_field(*fields, 'M') == "pgrail: refused");
    CHECK(error_field(*fields, 'D') == "rule x");
    CHECK(error_field(*fields, 'H') == "do y");
    CHECK_FALSE(parse_error_fields("SERROR"s));             // unterminated value
    CHECK_FALSE(parse_error_fields("SERROR\0\0extra"s));    // trailing bytes
}

TEST_CASE("AuthenticationSASL mechanisms can be rewritten") {
    std::string sasl;
    encode_authentication_sasl(sasl, {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"});
    const auto sasl_body = body(sasl);
    const auto parsed = parse_authentication(sasl_body);
    REQUIRE(parsed);
    CHECK(parsed->code == auth_sasl);
    REQUIRE(parsed->sasl_mechanisms.size() == 2);
    CHECK(parsed->sasl_mechanisms[1] == "SCRAM-SHA-256");
    std::string md5;
    MessageWriter(md5, 'R').i32(5).raw("salt").finish();
    CHECK(parse_authentication(body(md5))->code == 5);
}

TEST_CASE("ReadyForQuery and BackendKeyData") {
    std::string ready;
    encode_ready_for_query(ready, 'T');
    CHECK(parse_ready_for_query(body(ready)) == 'T');
    CHECK_FALSE(parse_ready_for_query("TT"));
    std::string key;
    encode_backend_key_data(key, {42, -7});
    const auto parsed = parse_backend_key_data(body(key));
    REQUIRE(parsed);
    CHECK(parsed->pid == 42);
    CHECK(parsed->secret == -7);
    CHECK_FALSE(parse_backend_key_data(body(key).substr(0, 7)));
}

TEST_CASE("ByteReader fails for good after a bad read") {
    ByteReader reader("ab"s);
    CHECK_FALSE(reader.u32());
    CHECK(reader.failed());
    CHECK_FALSE(reader.complete());
    CHECK_FALSE(reader.u8());
}

TEST_CASE("a StartupMessage and a NegotiateProtocolVersion are encoded as PostgreSQL expects") {
    std::string packet;
    encode_startup_message(packet, protocol_version_3, {{"user", "agent"}, {"database", "app"}});
    CHECK(packet == startup(protocol_version_3, "user\0agent\0database\0app\0\0"s));
    const auto parsed = parse_startup_packet(packet);
    REQUIRE(parsed);
    CHECK(parsed->parameter("database") == "app");

    std::string negotiate;
    encode_negotiate_protocol_version(negotiate, protocol_version_3, {"_pq_.a", "_pq_.b"});
    CHECK(negotiate == "v\0\0\0\x1a\0\x03\0\0\0\0\0\x02_pq_.a\0_pq_.b\0"s);
}

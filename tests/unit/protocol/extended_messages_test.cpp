// The extended-protocol messages pgrail rewrites for statements that read pgrail commands.
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "pgrail/protocol/backend.hpp"
#include "pgrail/protocol/frame.hpp"
#include "pgrail/protocol/frontend.hpp"

using namespace pgrail::protocol;

TEST_CASE("Bind parses and encodes back byte for byte", "[protocol][bind]") {
    BindMessage bind;
    bind.portal = "p";
    bind.statement = "s";
    bind.parameter_formats = {1};
    const std::string binary("\x00\x00\x00\x0e", 4);
    bind.parameters = {std::string_view(binary), std::nullopt, std::string_view("")};
    const std::string result_formats("\x00\x01\x00\x00", 4);
    bind.result_formats = result_formats;
    std::string frame;
    encode_bind(frame, bind);
    REQUIRE(frame[0] == 'B');
    const auto parsed = parse_bind(std::string_view(frame).substr(5));
    REQUIRE(parsed.has_value());
    CHECK(parsed->portal == "p");
    CHECK(parsed->statement == "s");
    CHECK(parsed->parameter_formats == std::vector<std::int16_t>{1});
    REQUIRE(parsed->parameters.size() == 3);
    CHECK(parsed->parameters[0] == std::string_view(binary));
    CHECK_FALSE(parsed->parameters[1].has_value());
    CHECK(parsed->parameters[2] == std::string_view(""));
    CHECK(parsed->result_formats == result_formats);
    std::string again;
    encode_bind(again, *parsed);
    CHECK(again == frame);
    // Truncated or trailing bytes: not a Bind.
    CHECK_FALSE(parse_bind(std::string_view(frame).substr(5, frame.size() - 6)).has_value());
    CHECK_FALSE(parse_bind(std::string(frame.substr(5)) + "x").has_value());
}

TEST_CASE("statement and portal names as PostgreSQL keys them: their first 63 bytes", "[protocol][bind]") {
    // (helper 69: 64 names of 30 MB each held 3.8 GB of pgrail's memory; the server keeps 63 bytes.)
    const std::string long_name = std::string(63, 'n') + std::string(30000, 'x');
    std::string frame;
    encode_parse(frame, long_name, "SELECT 1", std::string("\0\0", 2));
    const auto parse = parse_parse(std::string_view(frame).substr(5));
    REQUIRE(parse.has_value());
    CHECK(parse->statement_name == std::string(63, 'n'));
    CHECK(parse->query == "SELECT 1");
    BindMessage bind;
    bind.portal = long_name;
    const std::string other_tail = std::string(63, 'n') + "y";
    bind.statement = other_tail;
    const std::string no_result_formats("\0\0", 2);
    bind.result_formats = no_result_formats;
    frame.clear();
    encode_bind(frame, bind);
    const auto bound = parse_bind(std::string_view(frame).substr(5));
    REQUIRE(bound.has_value());
    CHECK(bound->portal == std::string(63, 'n'));
    CHECK(bound->statement == parse->statement_name);  // one statement to the server
    const std::string target = "P" + long_name + '\0';
    CHECK(parse_describe_target(target)->name == std::string(63, 'n'));
    CHECK(server_object_name("short") == "short");
}

TEST_CASE("Describe and Close targets, parameter types and descriptions", "[protocol][bind]") {
    const auto statement = parse_describe_target(std::string_view("Sname\0", 6));
    REQUIRE(statement.has_value());
    CHECK(statement->kind == 'S');
    CHECK(statement->name == "name");
    CHECK(parse_describe_target(std::string_view("P\0", 2))->kind == 'P');
    CHECK_FALSE(parse_describe_target(std::string_view("X\0", 2)).has_value());
    CHECK_FALSE(parse_describe_target(std::string_view("S", 1)).has_value());

    const std::vector<std::uint32_t> types = {23, 0, 114};
    const std::string raw = encode_parameter_types(types);
    CHECK(raw == std::string("\x00\x03\x00\x00\x00\x17\x00\x00\x00\x00\x00\x00\x00\x72", 14));
    CHECK(parse_parameter_types(raw) == types);
    CHECK(parse_parameter_types(std::string("\x00\x00", 2))->empty());
    CHECK_FALSE(parse_parameter_types(raw.substr(0, 5)).has_value());

    std::string description;
    encode_parameter_description(description, types);
    CHECK(description[0] == 't');
    CHECK(parse_parameter_description(std::string_view(description).substr(5)) == types);
}

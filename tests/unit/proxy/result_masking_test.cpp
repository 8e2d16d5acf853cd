// Masking DataRows under a RowDescription's plan, per type and format, and bounded on bad input.
#include <catch2/catch.hpp>

#include <cstring>

#include "../../../src/proxy/result_masking.hpp"
#include "pgrail/protocol/bytes.hpp"

using namespace pgrail::proxy;
using pgrail::policy::ColumnKey;
using pgrail::policy::MaskMethod;

namespace {

struct Field {
    std::string name;
    std::uint32_t table = 0;
    std::int16_t column = 0;
    std::uint32_t type = type_oid::text;
    std::int16_t format = 0;
};

std::string row_description_body(const std::vector<Field>& fields) {
    std::string frame;
    pgrail::protocol::MessageWriter writer(frame, 'T');
    writer.i16(static_cast<std::int16_t>(fields.size()));
    for (const auto& field : fields) {
        writer.cstring(field.name).i32(static_cast<std::int32_t>(field.table)).i16(field.column);
        writer.i32(static_cast<std::int32_t>(field.type)).i16(-1).i32(-1).i16(field.format);
    }
    writer.finish();
    return frame.substr(5);
}

std::string data_row(const std::vector<std::optional<std::string>>& values) {
    std::string frame;
    pgrail::protocol::MessageWriter writer(frame, 'D');
    writer.i16(static_cast<std::int16_t>(values.size()));
    for (const auto& value : values) {
        if (!value) {
            writer.i32(-1);
        } else {
            writer.i32(static_cast<std::int32_t>(value->size())).raw(*value);
        }
    }
    writer.finish();
    return frame;
}

// The values of a DataRow frame (nullopt: NULL).
std::vector<std::optional<std::string>> values_of(std::string_view frame) {
    pgrail::protocol::ByteReader reader(frame.substr(5));
    const auto count = reader.u16();
    std::vector<std::optional<std::string>> values;
    for (std::uint16_t i = 0; i < *count; ++i) {
        const auto length = reader.i32();
        if (*length < 0) {
            values.emplace_back(std::nullopt);
        } else {
            values.emplace_back(std::string(*reader.bytes(static_cast<std::size_t>(*length))));
        }
    }
    REQUIRE(reader.complete());
    REQUIRE(pgrail::protocol::read_u32(frame.data() + 1) == frame.size() - 1);
    return values;
}

ResultGuard guard_with(MaskMethod method, std::string constant = "********") {
    ResultGuard guard;
    guard.rule = "agents";
    guard.hash_key = "secret key";
    guard.columns[ColumnKey{1000, 2}] = MaskedColumn{method, std::move(constant), "public.users.secret", false};
    return guard;
}

// One masked value of `type` in `format` (the guard masks table 1000's column 2).
std::optional<std::string> masked(const ResultGuard& guard, std::uint32_t type, std::int16_t format,
                                  const std::string& value) {
    const auto plan = plan_result(row_description_body({{"id", 1000, 1, type_oid::int4, 0}, {"s", 1000, 2, type, format}}),
                                  guard);
    REQUIRE(plan);
    REQUIRE(plan->fields.size() == 1);
    std::string out;
    const auto frame = data_row({std::string("7"), value});
    REQUIRE(mask_data_row(frame, *plan, out) == RowRewrite::rewritten);
    const auto values = values_of(out);
    REQUIRE(values.size() == 2);
    CHECK(values[0] == std::optional<std::string>("7"));
    return values[1];
}

std::string be(std::uint64_t value, std::size_t width) {
    std::string bytes;
    for (std::size_t i = 0; i < width; ++i) bytes.push_back(static_cast<char>(value >> (8 * (width - 1 - i))));
    return bytes;
}

std::string hex(std::string_view bytes) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (const unsigned char c : bytes) {
        out.push_back(digits[c >> 4]);
        out.push_back(digits[c & 0xf]);
    }
    return out;
}

}  // namespace

TEST_CASE("HMAC-SHA-256 matches RFC 4231", "[proxy][masking]") {
    unsigned char mac[32];
    REQUIRE(Hmac("Jefe").mac("what do ya want for nothing?", mac));
    CHECK(hex(std::string_view(reinterpret_cast<const char*>(mac), 32)) ==
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    // A key longer than the block is hashed first (RFC 4231 test case 6).
    REQUIRE(Hmac(std::string(131, '\xaa')).mac("Test Using Larger Than Block-Size Key - Hash Key First", mac));
    CHECK(hex(std::string_view(reinterpret_cast<const char*>(mac), 32)) ==
          "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST_CASE("a plan masks the guarded columns only", "[proxy][masking]") {
    auto guard = guard_with(MaskMethod::null);
    guard.columns[ColumnKey{1000, 3}] = MaskedColumn{MaskMethod::hash, "", "public.users.token", true};
    const auto body = row_description_body({{"id", 1000, 1, type_oid::int4, 0},
                                            {"secret", 1000, 2, type_oid::text, 0},
                                            {"token", 1000, 3, type_oid::text, 1},
                                            {"other", 2000, 2, type_oid::text, 0},
                                            {"expr", 0, 0, type_oid::text, 0}});
    const auto plan = plan_result(body, guard);
    REQUIRE(plan);
    CHECK(plan->field_count == 5);
    REQUIRE(plan->fields.size() == 2);
    CHECK(plan->fields[0].index == 1);
    CHECK(plan->fields[1].index == 2);
    CHECK(plan->fields[1].format == 1);
    // A backstop column is nulled whatever its method, and named for the log and audit.
    CHECK(plan->fields[1].method == MaskMethod::null);
    CHECK(plan->backstop_columns == std::vector<std::string>{"public.users.token"});
    CHECK_FALSE(plan->hmac);

    const auto row = data_row({std::string("1"), std::string("pw"), std::string("tok"), std::string("x"), std::nullopt});
    std::string out;
    REQUIRE(mask_data_row(row, *plan, out) == RowRewrite::rewritten);
    const auto values = values_of(out);
    CHECK(values == std::vector<std::optional<std::string>>{std::string("1"), std::nullopt, std::nullopt,
                                                             std::string("x"), std::nullopt});

    // Nothing masked is non-NULL: the frame goes on as it came.
    const auto nulls = data_row({std::string("1"), std::nullopt, std::nullopt, std::string("x"), std::string("y")});
    CHECK(mask_data_row(nulls, *plan, out) == RowRewrite::untouched);

    // A result with no guarded column has an empty plan.
    const auto other = plan_result(row_description_body({{"a", 2000, 1, type_oid::text, 0}}), guard);
    REQUIRE(other);
    CHECK_FALSE(other->masks());
}

TEST_CASE("null and constant per type", "[proxy][masking]") {
    const auto nulling = guard_with(MaskMethod::null);
    CHECK(masked(nulling, type_oid::text, 0, "pw") == std::nullopt);
    CHECK(masked(nulling, type_oid::int8, 1, be(5, 8)) == std::nullopt);

    const auto constant = guard_with(MaskMethod::constant, "***");
    for (const auto type : {type_oid::text, type_oid::varchar, type_oid::bpchar, type_oid::name}) {
        CHECK(masked(constant, type, 0, "pw") == std::optional<std::string>("***"));
        CHECK(masked(constant, type, 1, "pw") == std::optional<std::string>("***"));
    }
    CHECK(masked(constant, type_oid::json, 0, "{\"a\":1}") == std::optional<std::string>("\"***\""));
    CHECK(masked(constant, type_oid::jsonb, 0, "{\"a\": 1}") == std::optional<std::string>("\"***\""));
    CHECK(masked(constant, type_oid::jsonb, 1, "\1{\"a\": 1}") == std::optional<std::string>("\1\"***\""));
    CHECK(masked(guard_with(MaskMethod::constant, "a\"b\\c"), type_oid::json, 0, "1") ==
          std::optional<std::string>(R"("a\"b\\c")"));
    // Types with no text form of the constant become NULL.
    CHECK(masked(constant, type_oid::int4, 0, "42") == std::nullopt);
    CHECK(masked(constant, type_oid::uuid, 0, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11") == std::nullopt);
    CHECK(masked(constant, type_oid::bytea, 0, "\\x00") == std::nullopt);
}

TEST_CASE("hash is the same in text and binary format, and typed", "[proxy][masking]") {
    const auto guard = guard_with(MaskMethod::hash);

    SECTION("text-like") {
        const auto text = masked(guard, type_oid::text, 0, "hunter2");
        REQUIRE(text);
        CHECK(text->size() == 34);
        CHECK(text->starts_with("h:"));
        CHECK(masked(guard, type_oid::text, 1, "hunter2") == text);
        CHECK(masked(guard, type_oid::varchar, 0, "hunter2") == text);
        CHECK(masked(guard, type_oid::text, 0, "hunter3") != text);
        // Another key, another hash.
        auto other_key = guard;
        other_key.hash_key = "another";
        CHECK(masked(other_key, type_oid::text, 0, "hunter2") != text);
        // json: the same hash as a JSON string; jsonb's binary leads with its version byte.
        CHECK(masked(guard, type_oid::json, 0, "hunter2") == "\"" + *text + "\"");
        CHECK(masked(guard, type_oid::jsonb, 0, "{\"a\": 1}") == masked(guard, type_oid::jsonb, 1, "\1{\"a\": 1}").value().substr(1));
    }
    SECTION("integers") {
        for (const auto& [type, width] : {std::pair{type_oid::int2, 2}, std::pair{type_oid::int4, 4}, std::pair{type_oid::int8, 8}}) {
            const auto text = masked(guard, type, 0, "-12345");
            const auto binary = masked(guard, type, 1, be(static_cast<std::uint64_t>(-12345), static_cast<std::size_t>(width)));
            REQUIRE(text);
            REQUIRE(binary);
            REQUIRE(binary->size() == static_cast<std::size_t>(width));
            std::uint64_t bits = 0;
            for (const unsigned char c : *binary) bits = (bits << 8) | c;
            std::int64_t number = width == 2   ? static_cast<std::int16_t>(bits)
                                  : width == 4 ? static_cast<std::int32_t>(bits)
                                               : static_cast<std::int64_t>(bits);
            CHECK(*text == std::to_string(number));
            CHECK(masked(guard, type, 0, "12345") != text);
        }
        // A binary value of the wrong width cannot be read: NULL.
        CHECK(masked(guard, type_oid::int4, 1, be(1, 8)) == std::nullopt);
    }
    SECTION("uuid") {
        const std::string id = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        std::string raw;
        for (std::size_t i = 0; i < id.size(); ++i) {
            if (id[i] == '-') continue;
            raw.push_back(static_cast<char>(std::stoi(id.substr(i, 2), nullptr, 16)));
            ++i;
        }
        REQUIRE(raw.size() == 16);
        const auto text = masked(guard, type_oid::uuid, 0, id);
        const auto binary = masked(guard, type_oid::uuid, 1, raw);
        REQUIRE(text);
        REQUIRE(binary);
        CHECK(text->size() == 36);
        CHECK((*text)[8] == '-');
        CHECK((*text)[23] == '-');
        std::string text_hex = *text;
        std::erase(text_hex, '-');
        CHECK(text_hex == hex(*binary));
        CHECK(masked(guard, type_oid::uuid, 0, "not a uuid") == std::nullopt);
    }
    SECTION("bytea") {
        const std::string raw("\x00\x01\\\xff", 4);
        const auto binary = masked(guard, type_oid::bytea, 1, raw);
        REQUIRE(binary);
        CHECK(binary->size() == 32);
        CHECK(masked(guard, type_oid::bytea, 0, "\\x0001" + hex("\\") + "ff") == "\\x" + hex(*binary));
        CHECK(masked(guard, type_oid::bytea, 0, "\\000\\001\\\\\\377") == "\\x" + hex(*binary));
        CHECK(masked(guard, type_oid::bytea, 0, "\\x0") == std::nullopt);
        CHECK(masked(guard, type_oid::bytea, 0, "\\9") == std::nullopt);
    }
    SECTION("other types become NULL") {
        CHECK(masked(guard, 1700, 0, "3.14") == std::nullopt);  // numeric
        CHECK(masked(guard, 1184, 1, be(1, 8)) == std::nullopt);  // timestamptz
    }
}

TEST_CASE("malformed messages are errors, never crashes", "[proxy][masking]") {
    const auto guard = guard_with(MaskMethod::hash);
    const auto body = row_description_body({{"id", 1000, 1, type_oid::int4, 0}, {"s", 1000, 2, type_oid::text, 0}});
    CHECK(plan_result("", guard) == std::nullopt);
    for (std::size_t cut = 0; cut < body.size(); ++cut) CHECK(plan_result(body.substr(0, cut), guard) == std::nullopt);
    CHECK(plan_result(body + "x", guard) == std::nullopt);
    auto bad_format = row_description_body({{"s", 1000, 2, type_oid::text, 2}});
    CHECK(plan_result(bad_format, guard) == std::nullopt);

    const auto plan = plan_result(body, guard);
    REQUIRE(plan);
    std::string out;
    const auto row = data_row({std::string("1"), std::string("pw")});
    REQUIRE(mask_data_row(row, *plan, out) == RowRewrite::rewritten);
    // Every truncation of a row (its length word kept consistent) is refused.
    for (std::size_t cut = 5; cut < row.size(); ++cut) {
        std::string shorter = row.substr(0, cut);
        const auto length = static_cast<std::uint32_t>(shorter.size() - 1);
        for (int i = 0; i < 4; ++i) shorter[1 + i] = static_cast<char>(length >> (8 * (3 - i)));
        CHECK(mask_data_row(shorter, *plan, out) == RowRewrite::malformed);
    }
    CHECK(mask_data_row(data_row({std::string("1")}), *plan, out) == RowRewrite::malformed);  // field count
    CHECK(mask_data_row(data_row({std::string("1"), std::string("pw"), std::string("x")}), *plan, out) ==
          RowRewrite::malformed);
    // A negative length other than -1, and one past the end.
    std::string negative = row;
    std::memcpy(negative.data() + 7 + 5, "\xff\xff\xff\xfe", 4);
    CHECK(mask_data_row(negative, *plan, out) == RowRewrite::malformed);
    std::string huge = row;
    std::memcpy(huge.data() + 7 + 5, "\x7f\xff\xff\xff", 4);
    CHECK(mask_data_row(huge, *plan, out) == RowRewrite::malformed);
    CHECK(mask_data_row("D", *plan, out) == RowRewrite::malformed);
}

TEST_CASE("max_rows messages and small parsers", "[proxy][masking]") {
    std::string notice;
    encode_notice(notice, truncated_notice("agents", 1000, 5));
    REQUIRE(notice.front() == 'N');
    CHECK(error_sqlstate(std::string_view(notice).substr(5)) == "01000");
    CHECK(notice.find("pgrail: result cut at 1000 rows by max_rows of rule agents") != std::string::npos);
    CHECK(notice.find("5 more rows") != std::string::npos);
    const auto error = refused_error("agents", 10);
    CHECK(error.sqlstate == "54000");
    CHECK(error.message == "pgrail: the result has more than 10 rows, the limit of max_rows in rule agents; fetch "
                           "fewer rows (LIMIT 10, FETCH 10 or a narrower WHERE; after ROLLBACK inside a transaction "
                           "block)");

    CHECK(execute_portal(std::string("p1\0\0\0\0\0", 7)) == std::optional<std::string_view>("p1"));
    CHECK(execute_portal(std::string("\0\0\0\0\x0a", 5)) == std::optional<std::string_view>(""));
    CHECK(execute_portal("p1") == std::nullopt);
    CHECK(error_sqlstate("garbage") == "");
}

TEST_CASE("rewritten rows append to what the batch holds; a malformed one leaves it as it was", "[proxy][masking]") {
    const auto guard = guard_with(MaskMethod::constant, "x");
    const auto plan = plan_result(row_description_body({{"id", 1000, 1, type_oid::int4, 0}, {"s", 1000, 2, type_oid::text, 0}}),
                                  guard);
    REQUIRE(plan);
    std::string batch = "earlier";
    REQUIRE(mask_data_row(data_row({std::string("1"), std::string("pw")}), *plan, batch) == RowRewrite::rewritten);
    REQUIRE(mask_data_row(data_row({std::string("2"), std::string("pw2")}), *plan, batch) == RowRewrite::rewritten);
    REQUIRE(batch.starts_with("earlier"));
    const std::string_view rows = std::string_view(batch).substr(7);
    const auto first_size = 1 + pgrail::protocol::read_u32(rows.data() + 1);
    CHECK(values_of(rows.substr(0, first_size)) ==
          std::vector<std::optional<std::string>>{std::string("1"), std::string("x")});
    CHECK(values_of(rows.substr(first_size)) ==
          std::vector<std::optional<std::string>>{std::string("2"), std::string("x")});
    const auto before = batch;
    CHECK(mask_data_row(data_row({std::string("1")}), *plan, batch) == RowRewrite::malformed);
    CHECK(batch == before);
}

// pgrail's direct call of PostgreSQL's scanner (raw_scanner.c, nesting.cpp's scan()) reads every
// text as libpg_query's pg_query_scan() does: the same tokens, where each starts and ends, the
// same keyword categories, the same errors at the same place, under either setting of
// standard_conforming_strings.
#include <catch2/catch.hpp>

#include <pg_query.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../../../src/sql/nesting.hpp"
#include "../../../src/sql/raw_scanner.h"
#include "../../../src/sql/scanner_settings.hpp"
#include "every_corpus_text.hpp"

using namespace pgrail::sql;
using pgrail::sql::detail::ScanOutcome;
using pgrail::sql::detail::Token;

namespace {

// The reference: pg_query_scan's protobuf ScanResult { repeated ScanToken tokens = 2; }, ScanToken
// { start = 1; end = 2; token = 4; keyword_kind = 5; }, read with a protobuf reader of its own.
class ProtoReader {
public:
    ProtoReader(const std::uint8_t* data, std::size_t size) : pos_(data), end_(data + size) {}
    [[nodiscard]] bool done() const { return pos_ >= end_; }
    bool varint(std::uint64_t& value) {
        value = 0;
        for (int shift = 0; shift < 64 && pos_ < end_; shift += 7) {
            const std::uint8_t byte = *pos_++;
            value |= static_cast<std::uint64_t>(byte & 0x7fU) << shift;
            if ((byte & 0x80U) == 0) return true;
        }
        return false;
    }
    bool field(std::uint32_t& number, std::uint64_t& value, ProtoReader& payload) {
        std::uint64_t key = 0;
        if (!varint(key)) return false;
        number = static_cast<std::uint32_t>(key >> 3);
        if ((key & 7U) == 0) return varint(value);
        if ((key & 7U) != 2) return false;
        std::uint64_t length = 0;
        if (!varint(length) || length > static_cast<std::uint64_t>(end_ - pos_)) return false;
        payload = ProtoReader(pos_, static_cast<std::size_t>(length));
        pos_ += length;
        return true;
    }

private:
    const std::uint8_t* pos_;
    const std::uint8_t* end_;
};

struct Reference {
    ScanOutcome outcome;
    std::vector<int> keyword_kinds;
};

Reference libpg_query_scan(const std::string& text) {
    Reference reference;
    PgQueryScanResult result = pg_query_scan(text.c_str());
    if (result.error != nullptr) {
        reference.outcome.error = result.error->message;
        reference.outcome.cursor = static_cast<std::size_t>(std::max(result.error->cursorpos, 0));
        pg_query_free_scan_result(result);
        return reference;
    }
    ProtoReader reader(reinterpret_cast<const std::uint8_t*>(result.pbuf.data), result.pbuf.len);
    while (!reader.done()) {
        std::uint32_t number = 0;
        std::uint64_t value = 0;
        ProtoReader payload(nullptr, 0);
        REQUIRE(reader.field(number, value, payload));
        if (number != 2) continue;
        Token token;
        int keyword_kind = 0;
        while (!payload.done()) {
            ProtoReader unused(nullptr, 0);
            REQUIRE(payload.field(number, value, unused));
            if (number == 1) token.start = static_cast<std::uint32_t>(value);
            if (number == 2) token.end = static_cast<std::uint32_t>(value);
            if (number == 4) token.kind = static_cast<std::int32_t>(value);
            if (number == 5) keyword_kind = static_cast<int>(value);
        }
        reference.outcome.tokens.push_back(token);
        reference.keyword_kinds.push_back(keyword_kind);
    }
    pg_query_free_scan_result(result);
    // pg_query_scan gives U&'...' no length and U&"..." one byte: such a token runs to the next
    // one (only whitespace can lie between, and a quote-ended token does not end in it).
    auto& tokens = reference.outcome.tokens;
    for (std::size_t index = 0; index < tokens.size(); ++index) {
        if (tokens[index].kind != detail::tok_usconst && tokens[index].kind != detail::tok_uident) continue;
        std::size_t end = index + 1 < tokens.size() ? tokens[index + 1].start : text.size();
        while (end > tokens[index].start && std::string_view(" \t\n\r\f").find(text[end - 1]) != std::string_view::npos)
            --end;
        tokens[index].end = static_cast<std::uint32_t>(std::max<std::size_t>(end, tokens[index].end));
    }
    return reference;
}

// Where pgrail's scan first differs from the reference ("" when it does not).
std::string difference(const std::string& text) {
    const Reference expected = libpg_query_scan(text);
    const ScanOutcome actual = detail::scan(text.c_str());
    if (expected.outcome.error || actual.error) {
        if (expected.outcome.error != actual.error || expected.outcome.cursor != actual.cursor)
            return "error '" + actual.error.value_or("none") + "' at " + std::to_string(actual.cursor) +
                   ", expected '" + expected.outcome.error.value_or("none") + "' at " +
                   std::to_string(expected.outcome.cursor);
        return {};
    }
    if (expected.outcome.tokens.size() != actual.tokens.size())
        return std::to_string(actual.tokens.size()) + " tokens, expected " +
               std::to_string(expected.outcome.tokens.size());
    for (std::size_t index = 0; index < actual.tokens.size(); ++index) {
        const Token& want = expected.outcome.tokens[index];
        const Token& got = actual.tokens[index];
        if (want.start != got.start || want.end != got.end || want.kind != got.kind)
            return "token " + std::to_string(index) + ": " + std::to_string(got.kind) + " at " +
                   std::to_string(got.start) + "-" + std::to_string(got.end) + ", expected " +
                   std::to_string(want.kind) + " at " + std::to_string(want.start) + "-" + std::to_string(want.end);
        if (pgrail_keyword_kind(got.kind) != expected.keyword_kinds[index])
            return "token " + std::to_string(index) + ": keyword kind " + std::to_string(pgrail_keyword_kind(got.kind)) +
                   ", expected " + std::to_string(expected.keyword_kinds[index]);
    }
    return {};
}

void check_all(const std::vector<std::string>& texts, std::size_t& errors) {
    std::vector<std::string> differences;
    for (const std::string& text : texts) {
        if (text.find('\0') != std::string::npos) continue;
        if (std::string found = difference(text); !found.empty()) differences.push_back(text + "\n    " + found);
        if (detail::scan(text.c_str()).error) ++errors;
    }
    for (const std::string& found : differences) UNSCOPED_INFO(found);
    CHECK(differences.empty());
}

}  // namespace

TEST_CASE("pgrail's scan is libpg_query's pg_query_scan, token for token, over every corpus", "[sql][raw_scanner]") {
    const std::vector<std::string> texts = test::every_corpus_text();
    for (const bool conforming : {true, false}) {
        INFO("standard_conforming_strings " << (conforming ? "on" : "off"));
        const detail::ScopedScannerSettings settings({conforming, 2});
        std::size_t errors = 0;
        check_all(texts, errors);
        INFO(texts.size() << " texts, " << errors << " lexing errors");
        CHECK(errors < texts.size() / 10);
    }
}

TEST_CASE("the scanner's nooks: where tokens end, comments, continued strings, errors", "[sql][raw_scanner]") {
    const std::vector<std::string> texts = {
        "",
        "   \n\t",
        "SELECT 1 -- trailing comment with spaces   \r\n;  ",
        "SELECT 1 -- no newline at the end",
        "SELECT 1 --",
        "/* a /* nested */ comment */ SELECT /**/ 2 /* unterminated",
        "SELECT 'one'\n'continued' , 'no' 'continuation'",
        "SELECT 'one'  -- a comment between\n  'continued', 'x'\n-- and not\n, 'y'\n-",
        "SELECT U&'d\\0061t' UESCAPE '!', U&\"d!0061t\" UESCAPE '!' FROM t",
        "SELECT U&'tail'",
        "SELECT $$dollar$$, $tag$ $$ inner $tag$, $1, $12 FROM t",
        "SELECT E'back\\'slash', B'101', X'1F', N'national', 1.5e3, .5, 5., 0x1F, 1_000",
        "SELECT a+-b, a*/b, c-->d, e<=>f, 1\v",
        "SELECT \"quoted \"\" ident\", \"\"",
        "SELECT 'unterminated",
        "SELECT \"unterminated",
        "SELECT $$unterminated",
        "SELECT E'\\xZZ'",
        "SELECT 'a\\'b' -- standard strings: the quote ends the string",
        "SELECT U&'\\d800'",
        "SELECT 1 /* ; */ ; SELECT 2; -- ;\n SELECT 3",
        "ÄÖÜ 'é' \"ß\" -- ü\n€",
    };
    for (const bool conforming : {true, false}) {
        INFO("standard_conforming_strings " << (conforming ? "on" : "off"));
        const detail::ScopedScannerSettings settings({conforming, 2});
        std::size_t errors = 0;
        check_all(texts, errors);
        CHECK(errors >= 5);
    }
}

TEST_CASE("keyword categories by the scanner's own lists", "[sql][raw_scanner]") {
    CHECK(detail::keyword_category("select") == 4);
    CHECK(detail::keyword_category("SELECT") == 4);
    CHECK(detail::keyword_category("abort") == 1);
    CHECK(detail::keyword_category("between") == 2);
    CHECK(detail::keyword_category("left") == 3);
    CHECK(detail::keyword_category("users") == 0);
    CHECK(detail::keyword_category("\"select\"") == 0);
    CHECK(detail::keyword_category("select 1") == 0);
    CHECK(detail::keyword_category("'x") == 0);
}

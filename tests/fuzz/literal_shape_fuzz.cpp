// Fuzzes the literal-shape scanner (sql::literals_of / literal_shape), with PostgreSQL's own
// scanner (libpg_query's, through the sql module's detail::scan) as the oracle.
// Properties: wherever the scanner answers, PostgreSQL's scanner finds exactly the same literals
// and none of the token kinds it must give up on; the shape is the text with each literal
// replaced, and a shape with a literal never has a shape itself; an analysis that reads no literal
// (literal_independent) is the same, positions aside, for the text with other literal values,
// which has the same shape: the analysis cache may share it across the shape.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../../src/sql/nesting.hpp"
#include "fuzz_support.hpp"
#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/literal_shape.hpp"

using namespace pgrail::sql;
using pgrail::fuzz::as_text;

namespace {

std::optional<std::vector<Literal>> oracle_literals(const std::string& text) {
    using namespace detail;
    const ScanOutcome scanned = scan(text.c_str());
    if (scanned.error) return std::nullopt;
    std::vector<Literal> literals;
    for (const Token& token : scanned.tokens) {
        switch (token.kind) {
        case tok_iconst: literals.push_back({token.start, token.end - token.start, LiteralKind::integer}); break;
        case tok_fconst: literals.push_back({token.start, token.end - token.start, LiteralKind::numeric}); break;
        case tok_sconst: literals.push_back({token.start, token.end - token.start, LiteralKind::string}); break;
        case tok_usconst: case tok_bconst: case tok_xconst: case tok_param: case tok_uident:
        case tok_sql_comment: case tok_c_comment:
            return std::nullopt;
        default: break;
        }
    }
    return literals;
}

// The text with every literal replaced by another value of its kind (as the unit test does).
std::string with_other_values(std::string_view text, const std::vector<Literal>& literals) {
    std::string out;
    std::size_t copied = 0;
    for (const Literal& literal : literals) {
        out.append(text.substr(copied, literal.offset - copied));
        out += literal.kind == LiteralKind::integer ? "7" : literal.kind == LiteralKind::numeric ? "3.25" : "'other ''value'''";
        copied = literal.offset + literal.length;
    }
    out.append(text.substr(copied));
    return out;
}

void strip_positions(Statement& statement) {
    statement.offset = statement.length = 0;
    statement.structural_form.clear();
    for (Statement& inner : statement.inner) strip_positions(inner);
}

Analysis decision_view(Analysis analysis) {
    for (Statement& statement : analysis.statements) strip_positions(statement);
    return analysis;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text = as_text(data, size);
    const auto literals = literals_of(text);
    const auto shape = literal_shape(text);
    PGRAIL_FUZZ_CHECK(literals.has_value() == shape.has_value());
    if (!literals) return 0;

    // The scanner gives up on control characters, so a text it answers holds no NUL and the
    // oracle (which reads a C string) sees all of it.
    PGRAIL_FUZZ_CHECK(text.find('\0') == std::string_view::npos);
    std::size_t end = 0;
    for (const Literal& literal : *literals) {
        PGRAIL_FUZZ_CHECK(literal.offset >= end && literal.length > 0 && literal.offset + literal.length <= size);
        end = literal.offset + literal.length;
    }
    const std::string owned(text);
    const auto theirs = oracle_literals(owned);
    PGRAIL_FUZZ_CHECK(theirs.has_value());
    PGRAIL_FUZZ_CHECK(*theirs == *literals);
    if (literals->empty()) {
        PGRAIL_FUZZ_CHECK(*shape == text);
        return 0;
    }
    PGRAIL_FUZZ_CHECK(!literal_shape(*shape).has_value());  // its markers are bytes no text has
    const std::string variant = with_other_values(text, *literals);
    PGRAIL_FUZZ_CHECK(literal_shape(variant) == shape);
    const Analysis original = analyze(text);
    if (!literal_independent(original)) return 0;
    const Analysis other = analyze(variant);
    PGRAIL_FUZZ_CHECK(literal_independent(other));
    PGRAIL_FUZZ_CHECK(decision_view(other) == decision_view(original));
    return 0;
}

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
#include "../unit/sql/literal_oracle.hpp"

using namespace pgrail::sql;
using pgrail::sql::testing::oracle_literals;
using pgrail::sql::testing::with_other_values;
using pgrail::fuzz::as_text;

namespace {

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

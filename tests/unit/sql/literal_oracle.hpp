// PostgreSQL's own scanner as the oracle of literal_shape, shared by its unit test and its fuzz
// target (tests/fuzz/literal_shape_fuzz.cpp).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../../../src/sql/nesting.hpp"
#include "pgrail/sql/literal_shape.hpp"

namespace pgrail::sql::testing {

// The literals PostgreSQL's own scanner sees, or nullopt if the text holds a token kind that
// literal_shape must never accept (comments, parameters, prefixed strings, ...).
inline std::optional<std::vector<Literal>> oracle_literals(const std::string& text) {
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

// The same text with every literal replaced by another value of the same kind.
inline std::string with_other_values(std::string_view text, const std::vector<Literal>& literals) {
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

}  // namespace pgrail::sql::testing

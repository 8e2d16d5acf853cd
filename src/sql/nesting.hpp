// Bounds how deeply a statement can nest before it reaches the (recursive) parser.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pgrail::sql::detail {

// Token kinds pgrail looks at (libpg_query's pg_query.proto Token enum).
enum : std::int32_t {
    tok_paren_open = 40, tok_paren_close = 41, tok_comma = 44, tok_dot = 46, tok_semicolon = 59,
    tok_bracket_open = 91, tok_bracket_close = 93,
    tok_ident = 258, tok_uident = 259, tok_fconst = 260, tok_sconst = 261, tok_usconst = 262,
    tok_bconst = 263, tok_xconst = 264, tok_iconst = 266, tok_param = 267,
    tok_sql_comment = 275, tok_c_comment = 276,
    tok_atomic = 300, tok_begin = 307, tok_case = 321, tok_end = 401, tok_if = 447,
};

[[nodiscard]] constexpr bool is_literal(std::int32_t kind) {
    return kind == tok_fconst || kind == tok_sconst || kind == tok_usconst || kind == tok_bconst ||
           kind == tok_xconst || kind == tok_iconst;
}

// What PostgreSQL 15's scanner skips between tokens (scan.l's {space}, its scanner_isspace():
// not \v, which it reads as a character of its own).
[[nodiscard]] constexpr bool is_scanner_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

struct Token {
    std::uint32_t start = 0;  // byte offsets in the scanned text
    std::uint32_t end = 0;
    std::int32_t kind = 0;    // libpg_query's Token enum value
};

struct ScanOutcome {
    std::vector<Token> tokens;
    std::optional<std::string> error;
    std::size_t cursor = 0;
};

// Tokens of `text` (NUL-terminated) from PostgreSQL's scanner (libpg_query's copy, raw_scanner.h),
// which is not recursive.
[[nodiscard]] ScanOutcome scan(const char* text);

// The keyword category of `word` as PostgreSQL's scanner reads it (pg_query.proto KeywordKind):
// 0 not a keyword, 1 unreserved, 2 column name, 3 type or function name, 4 reserved.
[[nodiscard]] int keyword_category(std::string_view word);

// One statement of a query: tokens [first, last) and the bytes they cover.
struct Piece {
    std::size_t first = 0;
    std::size_t last = 0;
    std::size_t offset = 0;
    std::size_t length = 0;
};

// Splits at `;` outside parentheses and outside BEGIN ATOMIC ... END bodies, with
// PostgreSQL's own scanner, so quotes, dollar quotes and comments never split.
// Comments alone make no statement; every other token belongs to exactly one
// piece, so no text escapes analysis.
[[nodiscard]] std::vector<Piece> split(std::span<const Token> tokens);

// An upper bound on the depth of the parse tree of the statement made of `tokens`.
// Every parenthesis, bracket and CASE (plus BEGIN/IF/LOOP in PL/pgSQL) opens a
// level; inside a level, every token other than a name, a constant or a comma
// may add one (operator chains like 1+1+1 build left-deep trees). Commas separate
// siblings, which do not add up.
[[nodiscard]] std::size_t nesting_bound(std::string_view text, std::span<const Token> tokens, bool plpgsql);

}  // namespace pgrail::sql::detail

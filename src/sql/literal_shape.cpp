// A conservative literal scanner: where it answers, its tokens agree with PostgreSQL 15's
// scanner (scan.l); where it is unsure, it gives up.
#include "pgrail/sql/literal_shape.hpp"

#include <algorithm>
#include <array>
#include <cstdint>

namespace pgrail::sql {
namespace {

enum CharClass : std::uint8_t { other = 0, space, digit, ident_start, dollar, punctuation };

constexpr std::array<CharClass, 256> char_classes = [] {
    std::array<CharClass, 256> classes{};
    for (const char c : std::string_view(" \t\n\r\f")) classes[static_cast<unsigned char>(c)] = space;
    for (char c = '0'; c <= '9'; ++c) classes[static_cast<unsigned char>(c)] = digit;
    for (char c = 'a'; c <= 'z'; ++c) classes[static_cast<unsigned char>(c)] = ident_start;
    for (char c = 'A'; c <= 'Z'; ++c) classes[static_cast<unsigned char>(c)] = ident_start;
    classes['_'] = ident_start;
    classes['$'] = dollar;
    for (const char c : std::string_view("()[],;:.+-*/<>=~!@#%^&|`?")) classes[static_cast<unsigned char>(c)] = punctuation;
    return classes;
}();

CharClass class_of(char c) { return char_classes[static_cast<unsigned char>(c)]; }
bool is_space(char c) { return class_of(c) == space; }
bool is_digit(char c) { return class_of(c) == digit; }
bool is_ident_start(char c) { return class_of(c) == ident_start; }
bool is_ident_char(char c) { return class_of(c) == ident_start || class_of(c) == digit || class_of(c) == dollar; }
bool is_punctuation(char c) { return class_of(c) == punctuation; }

// PostgreSQL makes an integer literal an ICONST when it fits in int32, else a numeric FCONST.
LiteralKind integer_kind(std::string_view digits) {
    std::uint64_t value = 0;
    for (const char c : digits) {
        value = value * 10 + static_cast<std::uint64_t>(c - '0');
        if (value > 2147483647U) return LiteralKind::numeric;
    }
    return LiteralKind::integer;
}

// Where the quoted text opening at q[open] ends (its closing quote; a doubled quote is one
// character of it), or npos when unterminated or holding a byte the scanner does not trust:
// NUL, non-ASCII (possibly part of a multibyte character in the client's encoding), and
// backslashes unless allowed.
std::size_t closing_quote(std::string_view q, std::size_t open, bool backslash_allowed) {
    const char quote = q[open];
    for (std::size_t j = open + 1; j < q.size(); ++j) {
        const char inside = q[j];
        if (inside == '\0' || static_cast<unsigned char>(inside) >= 0x80) return std::string_view::npos;
        if (inside == '\\' && !backslash_allowed) return std::string_view::npos;
        if (inside != quote) continue;
        if (j + 1 < q.size() && q[j + 1] == quote) {
            ++j;
            continue;
        }
        return j;
    }
    return std::string_view::npos;
}

// Calls on_literal(Literal) for each literal; false when the text is outside what it knows.
template <typename OnLiteral>
bool scan_literals(std::string_view q, OnLiteral&& on_literal) {
    const std::size_t n = q.size();
    const auto at = [&](std::size_t index) { return index < n ? q[index] : '\0'; };
    std::size_t i = 0;
    while (i < n) {
        const char c = q[i];
        if (is_space(c)) {
            ++i;
        } else if (is_ident_start(c)) {
            std::size_t j = i + 1;
            while (j < n && is_ident_char(q[j])) ++j;
            if (at(j) == '\'') return false;  // E'', B'', X'', N'' and friends
            i = j;
        } else if (is_digit(c)) {
            std::size_t j = i;
            while (j < n && is_digit(q[j])) ++j;
            LiteralKind kind = integer_kind(q.substr(i, j - i));
            if (at(j) == '.') {
                if (!is_digit(at(j + 1))) return false;  // "1.", "1..2", "1.e5"
                j += 1;
                while (j < n && is_digit(q[j])) ++j;
                kind = LiteralKind::numeric;
            }
            // Exponents, "123abc", "1.2.3", and quotes glued to a number.
            if (is_ident_char(at(j)) || at(j) == '.' || at(j) == '\'' || at(j) == '"') return false;
            on_literal(Literal{i, j - i, kind});
            i = j;
        } else if (c == '\'') {
            if (i > 0 && (is_ident_char(q[i - 1]) || q[i - 1] == '&')) return false;
            // Backslashes mean something when standard_conforming_strings is off.
            const std::size_t j = closing_quote(q, i, /*backslash_allowed=*/false);
            if (j == std::string_view::npos) return false;
            const std::size_t end = j + 1;
            // PostgreSQL joins 'a' <newline> 'b' into one literal: not worth knowing.
            std::size_t next = end;
            while (next < n && is_space(q[next])) ++next;
            if (next > end && at(next) == '\'') return false;
            on_literal(Literal{i, end - i, LiteralKind::string});
            i = end;
        } else if (c == '"') {
            if (i > 0 && q[i - 1] == '&') return false;  // U&"..."
            const std::size_t j = closing_quote(q, i, /*backslash_allowed=*/true);
            if (j == std::string_view::npos) return false;
            if (j == i + 1) return false;  // "" is an error, not a name
            i = j + 1;
        } else if (is_punctuation(c)) {
            if (c == '.' && is_digit(at(i + 1))) return false;               // ".5"
            // PostgreSQL refuses an operator of NAMEDATALEN (64) characters or more: such a run
            // makes the text an error, which no shape may stand for.
            constexpr std::string_view operator_chars = "+-*/<>=~!@#%^&|`?";
            if (operator_chars.find(c) != std::string_view::npos && (i == 0 || operator_chars.find(q[i - 1]) == std::string_view::npos)) {
                std::size_t run = i;
                while (run < q.size() && operator_chars.find(q[run]) != std::string_view::npos) ++run;
                if (run - i >= 64) return false;
            }
            if ((c == '-' && at(i + 1) == '-') || (c == '/' && at(i + 1) == '*')) return false;  // comments
            ++i;
        } else {
            return false;  // '$', '\\', '{', non-ASCII, control characters
        }
    }
    return true;
}

char marker_of(LiteralKind kind) {
    switch (kind) {
    case LiteralKind::integer: return '\x01';
    case LiteralKind::numeric: return '\x02';
    case LiteralKind::string: return '\x03';
    }
    return '\x03';
}

// What the analyzer reads from a literal's value lands in settings, pgrail calls, inner statements
// (a query in a string), advisory lock keys, positional column reads (ORDER BY 1) and the flags
// below; a statement with none of them decides the same for every value. (A query in a string
// that holds no statement, query_to_xml(''), leaves no inner statement: runs_query_text says
// that the string was read all the same.)
bool reads_no_literal(const Statement& statement) {
    const auto& flags = statement.flags;
    const bool reads_by_position = std::any_of(statement.column_reads.begin(), statement.column_reads.end(),
                                               [](const ColumnRead& read) {
                                                   // (A plain DISTINCT's "*" is no literal.)
                                                   return read.kind == ColumnRead::Kind::position && read.name != "*";
                                               });
    return (statement.statement_class == StatementClass::read || statement.statement_class == StatementClass::write) &&
           !statement.error && statement.inner.empty() && statement.settings.empty() &&
           statement.pgrail_calls.empty() && statement.advisory_lock_keys.empty() && !reads_by_position &&
           !flags.select_into && !flags.create_table_as && !flags.explain_analyze && !flags.ddl_capable_dynamic &&
           !flags.alter_system && !flags.runs_query_text && !flags.writes_sequence && !flags.copy_program &&
           !flags.copy_file && flags.copy_direction == CopyDirection::none;
}

}  // namespace

std::optional<std::vector<Literal>> literals_of(std::string_view query) {
    std::vector<Literal> literals;
    if (!scan_literals(query, [&](const Literal& literal) { literals.push_back(literal); })) return std::nullopt;
    return literals;
}

std::optional<std::string> literal_shape(std::string_view query) {
    std::string shape;
    shape.reserve(query.size());
    std::size_t copied = 0;
    const bool known = scan_literals(query, [&](const Literal& literal) {
        shape.append(query.substr(copied, literal.offset - copied));
        shape += marker_of(literal.kind);
        copied = literal.offset + literal.length;
    });
    if (!known) return std::nullopt;
    shape.append(query.substr(copied));
    return shape;
}

bool literal_independent(const Analysis& analysis) {
    if (analysis.error || analysis.statements.empty()) return false;
    for (const Statement& statement : analysis.statements) {
        if (!reads_no_literal(statement)) return false;
    }
    return true;
}

}  // namespace pgrail::sql

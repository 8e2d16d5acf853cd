// The shape of a query text: the text with the values of its literals masked out.
//
// Clients that inline values (simple protocol, ORMs, agents) send a new text for every
// value, so a cache keyed on the exact text misses every time. Two texts with the same
// shape consist of the same tokens except for the values of their literals (same kinds:
// integer, numeric, string), so PostgreSQL's grammar builds the same tree for both up to
// those values, and an analysis that reads no literal value (see literal_independent) holds
// for every text of the shape.
//
// The scanner behind it is deliberately small and conservative: it accepts only text whose
// tokenisation it knows to agree with PostgreSQL's (checked against libpg_query's scanner in
// the unit tests) and gives up on everything else: comments, backslashes, dollar signs
// (parameters, dollar quoting), prefixed strings (E'', B'', X'', N'', U&''), exponents,
// non-ASCII bytes and control characters. Giving up only means the exact-text path is taken.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pgrail/sql/statement.hpp"

namespace pgrail::sql {

enum class LiteralKind { integer, numeric, string };  // PostgreSQL's ICONST, FCONST, SCONST

struct Literal {
    std::size_t offset = 0;
    std::size_t length = 0;
    LiteralKind kind = LiteralKind::integer;
    bool operator==(const Literal&) const = default;
};

// The literals of `query`, in order; nullopt when the conservative scanner gives up.
[[nodiscard]] std::optional<std::vector<Literal>> literals_of(std::string_view query);

// `query` with each literal replaced by a marker byte of its kind (bytes that the scanner never
// accepts in a text, so a shape cannot be confused with a text); nullopt when it gives up.
[[nodiscard]] std::optional<std::string> literal_shape(std::string_view query);

// True when nothing in `analysis` that a policy decides on came from a literal's value, so it
// holds for every text of the same shape. Conservative: only reads and writes without wrapped
// statements, setting changes (set_config names its setting in a literal), pgrail commands,
// COPY, dynamic code or schema changes qualify. Byte offsets and structural keys still belong
// to the analysed text: use such an analysis to allow, and analyse the exact text otherwise.
[[nodiscard]] bool literal_independent(const Analysis& analysis);

}  // namespace pgrail::sql

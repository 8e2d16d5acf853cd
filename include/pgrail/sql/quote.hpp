// Names and strings written as PostgreSQL reads them back, for the SQL pgrail suggests (the
// advice of a refusal).
#pragma once

#include <string>
#include <optional>
#include <string_view>
#include <vector>

namespace pgrail::sql {

// As PostgreSQL's quote_ident(): unchanged when it is a lower-case name that is no keyword (an
// unreserved keyword is fine), else in double quotes with quotes doubled.
[[nodiscard]] std::string quote_identifier(std::string_view name);

// `schema.name` with each part quoted as needed; the name alone when `schema` is empty.
[[nodiscard]] std::string quote_qualified(std::string_view schema, std::string_view name);

// As PostgreSQL's quote_literal(): '...' with quotes doubled; E'...' with backslashes doubled
// when the text holds one (so it reads the same whatever standard_conforming_strings says).
[[nodiscard]] std::string quote_literal(std::string_view text);

// PostgreSQL's NAMEDATALEN - 1: the server cuts a longer identifier to this many bytes.
inline constexpr std::size_t max_identifier_length = 63;

// Names as PostgreSQL's SplitIdentifierString reads them: `separator` (',' in a search_path, '.'
// in a regclass name such as nextval's) separates, double quotes keep case (and "" is a quote),
// unquoted names are down-cased, space around a name is skipped. nullopt for text it refuses, and
// for a name longer than max_identifier_length (the server would cut it: pgrail does not guess).
[[nodiscard]] std::optional<std::vector<std::string>> split_identifiers(std::string_view text, char separator);

}  // namespace pgrail::sql

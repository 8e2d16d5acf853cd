// Names and strings written as PostgreSQL reads them back, for the SQL pgrail suggests (the
// advice of a refusal).
#pragma once

#include <string>
#include <string_view>

namespace pgrail::sql {

// As PostgreSQL's quote_ident(): unchanged when it is a lower-case name that is no keyword (an
// unreserved keyword is fine), else in double quotes with quotes doubled.
[[nodiscard]] std::string quote_identifier(std::string_view name);

// `schema.name` with each part quoted as needed; the name alone when `schema` is empty.
[[nodiscard]] std::string quote_qualified(std::string_view schema, std::string_view name);

// As PostgreSQL's quote_literal(): '...' with quotes doubled; E'...' with backslashes doubled
// when the text holds one (so it reads the same whatever standard_conforming_strings says).
[[nodiscard]] std::string quote_literal(std::string_view text);

}  // namespace pgrail::sql

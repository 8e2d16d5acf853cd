// Statement text that is safe to log: literal values replaced, comments dropped.
#pragma once

#include <string>
#include <string_view>

#include "pgrail/sql/analyzer.hpp"

namespace pgrail::sql {

// `statement_text` (one statement, e.g. query.substr(statement.offset, statement.length))
// with every literal replaced by $n, numbered after the highest parameter it already
// has, and comments dropped. Empty when the text cannot be scanned (unterminated
// quote or comment, NUL byte): a caller must then log nothing of it. Computed on
// demand (the audit log needs it only for refusals), so the analysis does not pay
// for it on every statement. Lexed as the session lexes it (`lexing`): under another reading
// a literal's content could show as text.
[[nodiscard]] std::string normalize(std::string_view statement_text, Lexing lexing = {});

}  // namespace pgrail::sql

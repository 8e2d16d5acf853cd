// Analyse query text with libpg_query: split, parse, classify.
#pragma once

#include <memory>
#include <string_view>

#include "pgrail/sql/statement.hpp"

namespace pgrail::sql {

// Analyses `query` (one simple-Query string or one Parse message's text).
// Never throws for bad SQL and never crashes on hostile input: text nested too
// deeply to parse safely is refused as a ParseError. Thread-safe. Deeply nested
// statements run on internal 64 MB-stack worker threads; others on the caller's
// stack when it has room (about 0.5 MB plus 3 KB per nesting level). Fast path:
// comment-free text is parsed whole, without scanning it first, when the caller's
// stack has 0.5 MB plus 3 KB per byte of it (a short statement: well under 1 MB).
[[nodiscard]] Analysis analyze(std::string_view query);

// What stands for the analysis of a text longer than pgrail analyses (its memory grows with
// the text: about 75 times its size for a long IN list): one unknown statement over all of
// it, with a limit error.
[[nodiscard]] Analysis too_long_to_analyse(std::size_t size, std::size_t max_size);

}  // namespace pgrail::sql

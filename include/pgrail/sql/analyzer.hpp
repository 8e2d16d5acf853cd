// Analyse query text with libpg_query: split, parse, classify, normalise.
#pragma once

#include <memory>
#include <string_view>

#include "pgrail/sql/statement.hpp"

namespace pgrail::sql {

// Analyses `query` (one simple-Query string or one Parse message's text).
// Never throws for bad SQL and never crashes on hostile input: text nested too
// deeply to parse safely is refused as a ParseError.
[[nodiscard]] Analysis analyze(std::string_view query);

}  // namespace pgrail::sql

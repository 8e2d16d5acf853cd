// Line diff of two schema dumps, printed unified-style (the rollback proof's evidence).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace pgrail::migrations {

// Drops what differs between identical schemas dumped at different times (comment and
// blank lines of pg_dump output).
[[nodiscard]] std::string normalize_dump(std::string_view dump);

// Empty when `before` and `after` have the same lines; otherwise `--- a`, `+++ b` and
// hunks of ` `, `-`, `+` lines with `context` lines around each change.
[[nodiscard]] std::string unified_diff(std::string_view before, std::string_view after, std::string_view before_name,
                                       std::string_view after_name, std::size_t context = 3);

}  // namespace pgrail::migrations

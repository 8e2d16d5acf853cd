// libpq connection strings as pgrail rewrites them (another database, bounded timeouts).
#pragma once

#include <string>
#include <string_view>

namespace pgrail::migrations {

// A value of libpq's key=value syntax: single-quoted, with backslash and quote escaped.
[[nodiscard]] std::string quote_conninfo_value(std::string_view value);

}  // namespace pgrail::migrations

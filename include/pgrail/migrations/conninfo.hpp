// libpq connection strings as pgrail rewrites them (another database, bounded timeouts).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pgrail::migrations {

struct ConninfoOption {
    std::string keyword;
    std::string value;
    std::string envvar;  // libpq's environment variable for it (PGHOST ...), empty when none
};

// The options `conninfo` (key=value or URI) sets, as libpq reads them. Throws MigrationError
// (22023) naming what is wrong with it.
[[nodiscard]] std::vector<ConninfoOption> parse_conninfo(const std::string& conninfo);

// Options as a key=value connection string.
[[nodiscard]] std::string conninfo_text(const std::vector<ConninfoOption>& options);

// Whether `options` sets `keyword`.
[[nodiscard]] bool sets(const std::vector<ConninfoOption>& options, std::string_view keyword);

// A value of libpq's key=value syntax: single-quoted, with backslash and quote escaped.
[[nodiscard]] std::string quote_conninfo_value(std::string_view value);

}  // namespace pgrail::migrations

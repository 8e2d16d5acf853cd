// libpq connection strings as pgrail rewrites them.
#include "pgrail/migrations/conninfo.hpp"

namespace pgrail::migrations {

std::string quote_conninfo_value(std::string_view value) {
    std::string out = "'";
    for (const char c : value) {
        if (c == '\\' || c == '\'') out.push_back('\\');
        out.push_back(c);
    }
    return out + "'";
}

}  // namespace pgrail::migrations

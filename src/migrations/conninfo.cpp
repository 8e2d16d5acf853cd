// libpq connection strings as pgrail rewrites them.
#include "pgrail/migrations/conninfo.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <libpq-fe.h>

#include "pgrail/migrations/error.hpp"
#include "pgrail/protocol/sqlstate.hpp"

namespace pgrail::migrations {

std::vector<ConninfoOption> parse_conninfo(const std::string& conninfo) {
    char* error = nullptr;
    PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
    if (options == nullptr) {
        std::string message = error != nullptr ? error : "out of memory";
        PQfreemem(error);
        while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
        throw MigrationError(sqlstate::invalid_parameter_value, fmt::format("invalid connection string: {}", message));
    }
    std::vector<ConninfoOption> out;
    for (const PQconninfoOption* option = options; option->keyword != nullptr; ++option)
        if (option->val != nullptr)
            out.push_back({option->keyword, option->val, option->envvar != nullptr ? option->envvar : ""});
    PQconninfoFree(options);
    return out;
}

std::string conninfo_text(const std::vector<ConninfoOption>& options) {
    std::string out;
    for (const auto& option : options) {
        if (!out.empty()) out += ' ';
        out += option.keyword + "=" + quote_conninfo_value(option.value);
    }
    return out;
}

bool sets(const std::vector<ConninfoOption>& options, std::string_view keyword) {
    return std::any_of(options.begin(), options.end(), [&](const auto& option) { return option.keyword == keyword; });
}

std::string quote_conninfo_value(std::string_view value) {
    std::string out = "'";
    for (const char c : value) {
        if (c == '\\' || c == '\'') out.push_back('\\');
        out.push_back(c);
    }
    return out + "'";
}

}  // namespace pgrail::migrations

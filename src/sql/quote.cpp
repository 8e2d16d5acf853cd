// Quoting names and strings as PostgreSQL's quote_ident() and quote_literal() do.
#include "pgrail/sql/quote.hpp"

#include <cctype>

#include "nesting.hpp"

namespace pgrail::sql {

std::string quote_identifier(std::string_view name) {
    bool safe = !name.empty() && ((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_');
    for (const char c : name)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) safe = false;
    // Keywords other than unreserved ones must be quoted to be read as names.
    if (safe && detail::keyword_category(name) > 1) safe = false;
    if (safe) return std::string(name);
    std::string out = "\"";
    for (const char c : name) {
        if (c == '"') out.push_back('"');
        out.push_back(c);
    }
    out.push_back('"');
    return out;
}

std::string quote_qualified(std::string_view schema, std::string_view name) {
    if (schema.empty()) return quote_identifier(name);
    return quote_identifier(schema) + "." + quote_identifier(name);
}

std::string quote_literal(std::string_view text) {
    const bool backslash = text.find('\\') != std::string_view::npos;
    std::string out = backslash ? "E'" : "'";
    for (const char c : text) {
        if (c == '\'' || c == '\\') out.push_back(c);
        out.push_back(c);
    }
    out.push_back('\'');
    return out;
}

std::optional<std::vector<std::string>> split_identifiers(std::string_view text, char separator) {
    std::vector<std::string> names;
    std::size_t at = 0;
    const auto skip_space = [&] {
        while (at < text.size() && std::isspace(static_cast<unsigned char>(text[at]))) ++at;
    };
    skip_space();
    if (at == text.size()) return names;
    while (true) {
        std::string name;
        if (at < text.size() && text[at] == '"') {
            for (++at;; ++at) {
                if (at >= text.size()) return std::nullopt;
                if (text[at] == '"') {
                    if (at + 1 < text.size() && text[at + 1] == '"') {
                        name += '"';
                        ++at;
                        continue;
                    }
                    ++at;
                    break;
                }
                name += text[at];
            }
        } else {
            while (at < text.size() && text[at] != separator && !std::isspace(static_cast<unsigned char>(text[at])))
                name += static_cast<char>(std::tolower(static_cast<unsigned char>(text[at++])));
            if (name.empty()) return std::nullopt;
        }
        if (name.size() > max_identifier_length) return std::nullopt;
        names.push_back(std::move(name));
        skip_space();
        if (at == text.size()) return names;
        if (text[at] != separator) return std::nullopt;
        ++at;
        skip_space();
    }
}

}  // namespace pgrail::sql

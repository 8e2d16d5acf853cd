// Reading SCRAM attribute lists ("a=value,b=value"), as PostgreSQL's read_attr_value does.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace pgrail::auth::detail {

// A cursor over one SCRAM message; every read that fails leaves a detail sentence in error.
struct AttributeReader {
    std::string_view rest;
    std::string error;

    // "<attr>=<value>" up to the next ',' (consumed) or the end.
    std::optional<std::string_view> read(char attr) {
        if (rest.empty() || rest.front() != attr) {
            error = rest.empty() ? "Expected attribute \"" + std::string(1, attr) + "\" but found end of string."
                                 : "Expected attribute \"" + std::string(1, attr) + "\" but found \"" +
                                       printable(rest.front()) + "\".";
            return std::nullopt;
        }
        return value_after_name(attr);
    }
    // Any "<letter>=<value>"; `attr` receives the letter.
    std::optional<std::string_view> read_any(char& attr) {
        if (rest.empty() || !is_letter(rest.front())) {
            error = rest.empty() ? "Attribute expected, but found end of string."
                                 : "Attribute expected, but found invalid character \"" + printable(rest.front()) + "\".";
            return std::nullopt;
        }
        attr = rest.front();
        return value_after_name(attr);
    }

    static bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
    // RFC 5802's printable: %x21-2B / %x2D-7E (no ',').
    static bool is_printable(std::string_view text) {
        for (char c : text)
            if (c < 0x21 || c > 0x7e || c == ',') return false;
        return true;
    }
    static std::string printable(char c) {
        if (c >= 0x21 && c <= 0x7e) return std::string(1, c);
        static constexpr char hex[] = "0123456789abcdef";
        const auto u = static_cast<unsigned char>(c);
        return std::string("0x") + hex[u >> 4] + hex[u & 15];
    }

private:
    std::optional<std::string_view> value_after_name(char attr) {
        if (rest.size() < 2 || rest[1] != '=') {
            error = "Expected character \"=\" for attribute \"" + std::string(1, attr) + "\".";
            return std::nullopt;
        }
        rest.remove_prefix(2);
        const auto comma = rest.find(',');
        const auto value = rest.substr(0, comma);
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
        return value;
    }
};

}  // namespace pgrail::auth::detail

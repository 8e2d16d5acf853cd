#include "pgrail/audit/redact_message.hpp"

#include <cctype>

namespace pgrail::audit {
namespace {

bool word_character(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; }

// A ' opens a quote unless it is an apostrophe inside a word ("the proposal's script"); a
// string constant's prefix (E'..', B'..', X'..', N'..') still opens one.
bool opens_single_quote(std::string_view text, std::size_t at) {
    if (at == 0 || !word_character(text[at - 1])) return true;
    const char prefix = static_cast<char>(std::toupper(static_cast<unsigned char>(text[at - 1])));
    const bool constant_prefix = prefix == 'E' || prefix == 'B' || prefix == 'X' || prefix == 'N';
    return constant_prefix && (at == 1 || !word_character(text[at - 2]));
}

}  // namespace

std::string redact_message(std::string_view message) {
    message = message.substr(0, message.find('\n'));
    std::string out;
    out.reserve(message.size());
    for (std::size_t at = 0; at < message.size();) {
        const char c = message[at];
        out.push_back(c);
        ++at;
        if (c != '"' && (c != '\'' || !opens_single_quote(message, at - 1))) continue;
        // PostgreSQL does not escape a quote inside the value it quotes ("a" x "b" may be one
        // value): everything up to the line's last quote of this kind is hidden.
        const std::size_t end = message.rfind(c);
        out.push_back('?');
        if (end < at) break;  // a quote left open hides the rest of the line
        out.push_back(c);
        at = end + 1;
    }
    return out;
}

}  // namespace pgrail::audit

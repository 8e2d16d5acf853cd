// Literal-free statement text from libpg_query's scanner: no second parse, as
// pg_query_normalize would need.
#include "pgrail/sql/normalize.hpp"

#include <algorithm>

#include "nesting.hpp"
#include "scanner_settings.hpp"

namespace pgrail::sql {

std::string normalize(std::string_view statement_text, Lexing lexing) {
    using namespace detail;
    if (statement_text.find('\0') != std::string_view::npos || statement_text.size() > 0x7fffffffU) return {};
    const std::string text(statement_text);
    const ScopedScannerSettings scanner({lexing.standard_conforming_strings, lexing.client_only_encoding ? 0 : 2});
    const ScanOutcome scanned = scan(text.c_str());
    if (scanned.error) return {};

    std::size_t next_parameter = 1;
    for (const Token& token : scanned.tokens) {
        if (token.kind != tok_param || token.end <= token.start + 1) continue;
        std::size_t number = 0;
        for (std::size_t index = token.start + 1; index < token.end && number < 1000000; ++index) {
            number = number * 10 + static_cast<std::size_t>(text[index] - '0');
        }
        next_parameter = std::max(next_parameter, number + 1);
    }
    std::string out;
    out.reserve(text.size() + 8);
    std::size_t copied = 0;
    for (const Token& token : scanned.tokens) {
        const bool literal = is_literal(token.kind);
        const bool comment = token.kind == tok_sql_comment || token.kind == tok_c_comment;
        if (!literal && !comment) continue;
        out.append(text, copied, token.start - copied);
        if (literal) {
            out += '$';
            out += std::to_string(next_parameter++);
        } else if (!out.empty() && out.back() != ' ' && out.back() != '\n') {
            out += ' ';
        }
        copied = token.end;
    }
    if (copied < text.size()) out.append(text, copied, text.size() - copied);
    while (!out.empty() && (out.back() == ' ' || out.back() == '\n')) out.pop_back();
    // Leading comments and the space they leave are not part of the statement either.
    out.erase(0, std::min(out.find_first_not_of(" \n"), out.size()));
    return out;
}

}  // namespace pgrail::sql

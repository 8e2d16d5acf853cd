// Scanner-based nesting bound: computed without recursion, before any parse.
#include "nesting.hpp"

#include <algorithm>
#include <utility>

#include "raw_scanner.h"

namespace pgrail::sql::detail {
namespace {

// A scan's result, freed with it.
class RawScan {
public:
    explicit RawScan(const char* text) { pgrail_raw_scan(text, &scan_); }
    ~RawScan() { pgrail_raw_scan_free(&scan_); }
    RawScan(const RawScan&) = delete;
    RawScan& operator=(const RawScan&) = delete;
    const PgrailRawScan* operator->() const { return &scan_; }

private:
    PgrailRawScan scan_{};
};

bool is_leaf(std::int32_t kind) {
    switch (kind) {
    case tok_ident: case tok_uident: case tok_fconst: case tok_sconst: case tok_usconst:
    case tok_bconst: case tok_xconst: case tok_iconst: case tok_param:
    case tok_dot: case tok_semicolon: case tok_sql_comment: case tok_c_comment:
        return true;
    default:
        return false;
    }
}

// LOOP is a PL/pgSQL keyword only: the core scanner returns it as an identifier.
bool is_loop(std::string_view text, const Token& token) {
    if (token.kind != tok_ident || token.end > text.size() || token.end - token.start != 4) return false;
    std::string word(text.substr(token.start, 4));
    std::transform(word.begin(), word.end(), word.begin(), [](char c) { return static_cast<char>(c | 0x20); });
    return word == "loop";
}

struct Frame {
    bool keyword = false;        // opened by CASE/BEGIN/IF/LOOP rather than a bracket
    std::size_t chain = 0;       // tokens that may nest, in the current comma-separated segment
    std::size_t child = 0;       // deepest closed sub-level in the current segment
    std::size_t depth = 0;       // deepest finished segment
    void end_segment() {
        depth = std::max(depth, chain + child + 1);
        chain = 0;
        child = 0;
    }
};

}  // namespace

int keyword_category(std::string_view word) {
    const std::string text(word);
    const RawScan scanned(text.c_str());
    return !scanned->failed && scanned->count == 1 ? pgrail_keyword_kind(scanned->tokens[0].kind) : 0;
}

ScanOutcome scan(const char* text) {
    ScanOutcome outcome;
    const RawScan scanned(text);
    if (scanned->failed) {
        outcome.error = scanned->error != nullptr ? scanned->error : "out of memory";
        outcome.cursor = static_cast<std::size_t>(std::max(scanned->cursor, 0));
        return outcome;
    }
    // The scanner gives where a token starts. Between two tokens lies only what it skips, its
    // whitespace (comments are tokens), so a token ends where that run before the next token (or
    // the text's end) begins; a -- comment, which may end in spaces of its own, at its line's end.
    const std::string_view all(text);
    const auto count = static_cast<std::size_t>(scanned->count);
    outcome.tokens.resize(count);
    for (std::size_t index = 0; index < count; ++index) {
        Token& token = outcome.tokens[index];
        token.start = static_cast<std::uint32_t>(scanned->tokens[index].start);
        token.kind = scanned->tokens[index].kind;
        std::size_t end = index + 1 < count ? static_cast<std::size_t>(scanned->tokens[index + 1].start) : all.size();
        if (token.kind == tok_sql_comment) {
            end = std::min(end, all.find_first_of("\n\r", token.start));
        } else {
            while (end > token.start && is_scanner_space(all[end - 1])) --end;
        }
        token.end = static_cast<std::uint32_t>(end);
    }
    return outcome;
}

std::vector<Piece> split(std::span<const Token> tokens) {
    std::vector<Piece> pieces;
    std::size_t parentheses = 0;
    bool atomic = false;          // inside BEGIN ATOMIC ... END (SQL-standard function body)
    std::size_t case_depth = 0;   // CASE ... END inside such a body
    std::optional<std::size_t> first;
    std::size_t last_meaningful = 0;
    const auto finish = [&](std::size_t end) {
        if (first) {
            const Token& head = tokens[*first];
            const Token& tail = tokens[last_meaningful];
            pieces.push_back(Piece{*first, end, head.start, tail.end - head.start});
        }
        first.reset();
    };
    std::int32_t previous = 0;  // the kind of the token before, comments not counted
    for (std::size_t index = 0; index < tokens.size(); ++index) {
        const std::int32_t kind = tokens[index].kind;
        if (kind == tok_sql_comment || kind == tok_c_comment) continue;
        const std::int32_t before = std::exchange(previous, kind);
        if (kind == tok_semicolon && parentheses == 0 && !atomic) {
            finish(index);
            continue;
        }
        if (!first) first = index;
        last_meaningful = index;
        if (kind == tok_paren_open) ++parentheses;
        if (kind == tok_paren_close && parentheses > 0) --parentheses;
        if (kind == tok_atomic && before == tok_begin) atomic = true;  // BEGIN /* ... */ ATOMIC too
        if (atomic && kind == tok_case) ++case_depth;
        if (atomic && kind == tok_end) {
            if (case_depth > 0) --case_depth;
            else atomic = false;
        }
    }
    finish(tokens.size());
    return pieces;
}

std::size_t nesting_bound(std::string_view text, std::span<const Token> tokens, bool plpgsql) {
    std::vector<Frame> frames(1);
    const auto close_top = [&frames] {
        Frame& top = frames.back();
        top.end_segment();
        const std::size_t closed = top.depth + 1;
        frames.pop_back();
        frames.back().child = std::max(frames.back().child, closed);
    };
    std::int32_t previous = 0;
    for (const Token& token : tokens) {
        const std::int32_t kind = token.kind;
        const bool keyword_opener = kind == tok_case ||
            (plpgsql && previous != tok_end && (kind == tok_begin || kind == tok_if || is_loop(text, token)));
        if (kind == tok_paren_open || kind == tok_bracket_open || keyword_opener) {
            frames.back().chain += 1;
            frames.push_back(Frame{keyword_opener, 0, 0, 0});
        } else if (kind == tok_paren_close || kind == tok_bracket_close) {
            // Closes keyword levels left open inside the brackets too (bad syntax).
            while (frames.size() > 1 && frames.back().keyword) close_top();
            if (frames.size() > 1) close_top();
        } else if (kind == tok_end) {
            if (frames.size() > 1 && frames.back().keyword) close_top();
            else frames.back().chain += 1;
        } else if (kind == tok_comma) {
            frames.back().end_segment();
        } else if (!is_leaf(kind)) {
            frames.back().chain += 1;
        }
        previous = kind;
    }
    while (frames.size() > 1) close_top();
    frames.back().end_segment();
    return frames.back().depth;
}

}  // namespace pgrail::sql::detail

// Scanner-based nesting bound: computed without recursion, before any parse.
#include "nesting.hpp"

#include <algorithm>

#include "pg_query_handle.hpp"

namespace pgrail::sql::detail {
namespace {

// Minimal protobuf reader for ScanResult { repeated ScanToken tokens = 2; }:
// libpg_query ships no protobuf-c headers, and these two messages are tiny.
class ProtoReader {
public:
    ProtoReader(const std::uint8_t* data, std::size_t size) : pos_(data), end_(data + size) {}
    bool done() const { return pos_ >= end_; }
    bool varint(std::uint64_t& value) {
        value = 0;
        for (int shift = 0; shift < 64 && pos_ < end_; shift += 7) {
            const std::uint8_t byte = *pos_++;
            value |= static_cast<std::uint64_t>(byte & 0x7fU) << shift;
            if ((byte & 0x80U) == 0) return true;
        }
        return false;
    }
    // Reads a field header; on success `payload` spans a length-delimited field.
    bool field(std::uint32_t& number, std::uint64_t& value, ProtoReader& payload) {
        std::uint64_t key = 0;
        if (!varint(key)) return false;
        number = static_cast<std::uint32_t>(key >> 3);
        switch (key & 7U) {
        case 0: return varint(value);
        case 1: return skip(8);
        case 5: return skip(4);
        case 2: {
            std::uint64_t length = 0;
            if (!varint(length) || length > static_cast<std::uint64_t>(end_ - pos_)) return false;
            payload = ProtoReader(pos_, static_cast<std::size_t>(length));
            pos_ += length;
            return true;
        }
        default: return false;
        }
    }

private:
    bool skip(std::size_t bytes) {
        if (static_cast<std::size_t>(end_ - pos_) < bytes) return false;
        pos_ += bytes;
        return true;
    }
    const std::uint8_t* pos_;
    const std::uint8_t* end_;
};

bool decode_token(ProtoReader reader, Token& token) {
    while (!reader.done()) {
        std::uint32_t number = 0;
        std::uint64_t value = 0;
        ProtoReader unused(nullptr, 0);
        if (!reader.field(number, value, unused)) return false;
        if (number == 1) token.start = static_cast<std::uint32_t>(value);
        if (number == 2) token.end = static_cast<std::uint32_t>(value);
        if (number == 4) token.kind = static_cast<std::int32_t>(value);
    }
    return true;
}

// ScanToken's keyword_kind (field 5).
int keyword_kind_of(ProtoReader reader) {
    int kind = 0;
    while (!reader.done()) {
        std::uint32_t number = 0;
        std::uint64_t value = 0;
        ProtoReader unused(nullptr, 0);
        if (!reader.field(number, value, unused)) return 0;
        if (number == 5) kind = static_cast<int>(value);
    }
    return kind;
}

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
    const ScanHandle result(pg_query_scan(text.c_str()));
    if (result->error != nullptr) return 0;
    ProtoReader reader(reinterpret_cast<const std::uint8_t*>(result->pbuf.data), result->pbuf.len);
    int kind = 0;
    int tokens = 0;
    while (!reader.done()) {
        std::uint32_t number = 0;
        std::uint64_t value = 0;
        ProtoReader payload(nullptr, 0);
        if (!reader.field(number, value, payload)) return 0;
        if (number != 2) continue;
        ++tokens;
        kind = keyword_kind_of(payload);
    }
    return tokens == 1 ? kind : 0;
}

ScanOutcome scan(const char* text) {
    ScanOutcome outcome;
    const ScanHandle result(pg_query_scan(text));
    if (result->error != nullptr) {
        outcome.error = result->error->message != nullptr ? result->error->message : "scan error";
        outcome.cursor = static_cast<std::size_t>(std::max(result->error->cursorpos, 0));
        return outcome;
    }
    ProtoReader reader(reinterpret_cast<const std::uint8_t*>(result->pbuf.data), result->pbuf.len);
    while (!reader.done()) {
        std::uint32_t number = 0;
        std::uint64_t value = 0;
        ProtoReader payload(nullptr, 0);
        if (!reader.field(number, value, payload)) {
            outcome.error = "unreadable scanner output";
            return outcome;
        }
        if (number != 2) continue;
        Token token;
        if (!decode_token(payload, token)) {
            outcome.error = "unreadable scanner output";
            return outcome;
        }
        outcome.tokens.push_back(token);
    }
    // libpg_query reports U&'...' with no length and U&"..." with one byte: such a
    // token runs to the next one (comments are tokens too, so only whitespace,
    // which the quote-ended token cannot end with, lies between). Otherwise a
    // statement ending in one would be cut short and the literal never normalised.
    const std::string_view all(text);
    for (std::size_t index = 0; index < outcome.tokens.size(); ++index) {
        Token& token = outcome.tokens[index];
        if (token.kind != tok_usconst && token.kind != tok_uident) continue;
        std::size_t end = index + 1 < outcome.tokens.size() ? outcome.tokens[index + 1].start : all.size();
        while (end > token.start && std::string_view(" \t\n\r\f\v").find(all[end - 1]) != std::string_view::npos) --end;
        token.end = static_cast<std::uint32_t>(std::max<std::size_t>(end, token.end));
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
    for (std::size_t index = 0; index < tokens.size(); ++index) {
        const std::int32_t kind = tokens[index].kind;
        if (kind == tok_sql_comment || kind == tok_c_comment) continue;
        if (kind == tok_semicolon && parentheses == 0 && !atomic) {
            finish(index);
            continue;
        }
        if (!first) first = index;
        last_meaningful = index;
        if (kind == tok_paren_open) ++parentheses;
        if (kind == tok_paren_close && parentheses > 0) --parentheses;
        if (kind == tok_atomic && index > 0 && tokens[index - 1].kind == tok_begin) atomic = true;
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

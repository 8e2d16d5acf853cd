// Iterative JSON parsing into a flat, read-only tree.
#include "json_tree.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <stdexcept>

namespace pgrail::sql::detail {
namespace {

constexpr std::size_t text_chunk = 16 * 1024;

void append_utf8(std::string& out, std::uint32_t code) {
    if (code < 0x80) {
        out += static_cast<char>(code);
    } else if (code < 0x800) {
        out += static_cast<char>(0xC0 | (code >> 6));
        out += static_cast<char>(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
        out += static_cast<char>(0xE0 | (code >> 12));
        out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (code & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (code >> 18));
        out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (code & 0x3F));
    }
}

bool read_hex4(std::string_view text, std::size_t position, std::uint32_t& value) {
    if (position + 4 > text.size()) return false;
    const auto result = std::from_chars(text.data() + position, text.data() + position + 4, value, 16);
    return result.ec == std::errc() && result.ptr == text.data() + position + 4;
}

}  // namespace

long long JsonNode::integer() const {
    if (type() != Type::number) return 0;
    const std::string_view digits = text();
    long long value = 0;
    const auto result = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    return result.ec == std::errc() && result.ptr == digits.data() + digits.size() ? value : 0;
}

bool JsonTree::read_string(std::string_view text, std::size_t& position, std::string_view& out) {
    // `position` is just past the opening quote.
    // A plain loop, not memchr: most strings here are a few bytes (keys, node names), shorter
    // than a library call's set-up.
    const std::size_t start = position;
    bool escaped = false;
    const char* const data = text.data();
    const std::size_t size = text.size();
    for (;;) {
        if (position >= size) return false;
        const char c = data[position];
        if (c == '"') break;
        if (c == '\\') {
            escaped = true;
            position += 2;  // skip the escaped character, which may be a quote
            continue;
        }
        ++position;
    }
    const std::string_view raw = text.substr(start, position - start);
    ++position;
    if (!escaped) {
        out = raw;
        return true;
    }
    std::string& value = unescaped_.emplace_back();
    value.reserve(raw.size());
    for (std::size_t index = 0; index < raw.size(); ++index) {
        if (raw[index] != '\\') {
            value += raw[index];
            continue;
        }
        if (++index >= raw.size()) return false;
        switch (raw[index]) {
        case '"': value += '"'; break;
        case '\\': value += '\\'; break;
        case '/': value += '/'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'n': value += '\n'; break;
        case 'r': value += '\r'; break;
        case 't': value += '\t'; break;
        case 'u': {
            std::uint32_t code = 0;
            if (!read_hex4(raw, index + 1, code)) return false;
            index += 4;
            if (code >= 0xD800 && code < 0xDC00 && index + 6 < raw.size() && raw[index + 1] == '\\' &&
                raw[index + 2] == 'u') {
                std::uint32_t low = 0;
                if (read_hex4(raw, index + 3, low) && low >= 0xDC00 && low < 0xE000) {
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                    index += 6;
                }
            }
            append_utf8(value, code);
            break;
        }
        default: return false;
        }
    }
    out = value;
    return true;
}

void JsonTree::clear() {
    nodes_.clear();
    open_.clear();
    unescaped_.clear();
    if (chunks_.size() > 1) chunks_.resize(1);  // the first chunk is reused
    chunk_left_ = chunks_.empty() ? 0 : text_chunk;
    chunk_next_ = chunks_.empty() ? nullptr : chunks_.front().get();
}

std::uint32_t JsonTree::append(std::string_view key, JsonNode::Type type) {
    if (nodes_.size() >= none - 1) throw std::length_error("parse tree too large");
    const auto index = static_cast<std::uint32_t>(nodes_.size());
    Node& node = nodes_.emplace_back();
    node.key = key;
    node.type = type;
    if (!open_.empty()) {
        Open& parent = open_.back();
        if (parent.last_child == none) nodes_[parent.node].first_child = index;
        else nodes_[parent.last_child].next_sibling = index;
        parent.last_child = index;
        ++nodes_[parent.node].size;
    }
    return index;
}

void JsonTree::open(std::string_view key, JsonNode::Type type) {
    const std::uint32_t index = append(key, type);
    open_.push_back(Open{index, none});
}

void JsonTree::add(std::string_view key, JsonNode::Type type, std::string_view text, bool kept) {
    const std::uint32_t index = append(key, type);
    nodes_[index].text = kept ? text : keep(text);
}

std::string_view JsonTree::keep(std::string_view text) {
    if (text.empty()) return {};
    if (text.size() > chunk_left_) {
        const std::size_t size = std::max(text.size(), text_chunk);
        chunks_.push_back(std::make_unique<char[]>(size));
        chunk_next_ = chunks_.back().get();
        chunk_left_ = size;
    }
    char* const copy = chunk_next_;
    std::memcpy(copy, text.data(), text.size());
    chunk_next_ += text.size();
    chunk_left_ -= text.size();
    return {copy, text.size()};
}

bool JsonTree::parse(std::string_view text) {
    nodes_.clear();
    unescaped_.clear();
    if (text.empty()) return false;
    nodes_.reserve(text.size() / 24 + 4);
    open_.clear();  // reused: no allocation per parse
    std::size_t position = 0;
    const auto skip_space = [&] {
        while (position < text.size() &&
               (text[position] == ' ' || text[position] == '\n' || text[position] == '\r' || text[position] == '\t')) {
            ++position;
        }
    };
    bool done = false;
    while (!done) {
        skip_space();
        if (position >= text.size()) return false;
        std::string_view key;
        if (!open_.empty()) {
            const Node& parent = nodes_[open_.back().node];
            const char closing = parent.type == JsonNode::Type::object ? '}' : ']';
            if (text[position] == closing) {
                ++position;
                open_.pop_back();
                done = open_.empty();
                continue;
            }
            if (parent.size > 0) {
                if (text[position] != ',') return false;
                ++position;
                skip_space();
            }
            if (parent.type == JsonNode::Type::object) {
                if (position >= text.size() || text[position] != '"') return false;
                ++position;
                if (!read_string(text, position, key)) return false;
                skip_space();
                if (position >= text.size() || text[position] != ':') return false;
                ++position;
                skip_space();
                if (position >= text.size()) return false;
            }
        }
        if (nodes_.size() >= none - 1) return false;
        const char c = text[position];
        if (c == '{' || c == '[') {
            ++position;
            open(key, c == '{' ? JsonNode::Type::object : JsonNode::Type::array);
            continue;
        }
        // Built in place: a node is copied into the array not at all (every value of a 10 KB
        // query's tree is one of about 10,000 nodes).
        Node& node = nodes_[append(key, JsonNode::Type::null)];
        if (c == '"') {
            ++position;
            node.type = JsonNode::Type::string;
            if (!read_string(text, position, node.text)) return false;
        } else if ((c == 't' && text.substr(position, 4) == "true") ||
                   (c == 'f' && text.substr(position, 5) == "false")) {
            node.type = JsonNode::Type::boolean;
            node.text = text.substr(position, c == 't' ? 4 : 5);
            position += node.text.size();
        } else if (c == 'n' && text.substr(position, 4) == "null") {
            position += 4;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            const std::size_t start = position;
            while (position < text.size() && (text[position] == '-' || text[position] == '+' || text[position] == '.' ||
                                              text[position] == 'e' || text[position] == 'E' ||
                                              (text[position] >= '0' && text[position] <= '9'))) {
                ++position;
            }
            node.type = JsonNode::Type::number;
            node.text = text.substr(start, position - start);
        } else {
            return false;
        }
        done = open_.empty();
    }
    skip_space();
    return position == text.size();
}

}  // namespace pgrail::sql::detail

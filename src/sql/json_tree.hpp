// A read-only JSON tree over libpg_query's parse output: parsed without
// recursion into one flat node array, strings viewed in place (unescaped only
// when they contain escapes). About 10x faster than a general JSON DOM here,
// which matters: the parse tree of a 5 KB query is ~50 KB of JSON.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pgrail::sql::detail {

class JsonTree;

// Whether `text` is the literal `name`: inline, the literal's length known at compile time, with
// no call of the library's comparison (the analyzer asks this of every node and field it walks).
template <std::size_t N>
[[gnu::always_inline]] inline bool is(std::string_view text, const char (&name)[N]) {
    return text.size() == N - 1 && __builtin_memcmp(text.data(), name, N - 1) == 0;
}

// A handle to one value; a default (or missing) handle behaves as an empty null.
class JsonNode {
public:
    enum class Type : std::uint8_t { null, boolean, number, string, array, object };

    JsonNode() = default;

    [[nodiscard]] Type type() const;
    [[nodiscard]] bool valid() const { return tree_ != nullptr; }
    [[nodiscard]] bool is_object() const { return type() == Type::object; }
    [[nodiscard]] bool is_array() const { return type() == Type::array; }
    [[nodiscard]] bool is_string() const { return type() == Type::string; }
    [[nodiscard]] bool is_boolean() const { return type() == Type::boolean; }
    [[nodiscard]] bool is_structured() const { return is_object() || is_array(); }

    [[nodiscard]] std::string_view key() const;   // member name inside an object
    [[nodiscard]] std::string_view text() const;  // strings (unescaped), numbers, "true"/"false"
    [[nodiscard]] bool boolean() const { return is_boolean() && text() == "true"; }
    [[nodiscard]] long long integer() const;      // 0 unless an integral number

    [[nodiscard]] std::size_t size() const;       // children of an array or object
    [[nodiscard]] bool empty() const { return size() == 0; }
    [[nodiscard]] JsonNode find(std::string_view key) const;  // invalid when absent
    [[nodiscard]] bool contains(std::string_view key) const { return find(key).valid(); }
    // The same for a literal key (most callers'): compared inline.
    template <std::size_t N>
    [[nodiscard]] JsonNode find(const char (&key)[N]) const {
        if (!is_object()) return {};
        for (JsonNode member : *this)
            if (is(member.key(), key)) return member;
        return {};
    }
    template <std::size_t N>
    [[nodiscard]] bool contains(const char (&key)[N]) const {
        return find(key).valid();
    }
    [[nodiscard]] JsonNode front() const;         // first child, invalid when none

    class Iterator {
    public:
        Iterator(const JsonTree* tree, std::uint32_t index) : tree_(tree), index_(index) {}
        JsonNode operator*() const { return JsonNode(tree_, index_); }
        Iterator& operator++();
        bool operator!=(const Iterator& other) const { return index_ != other.index_; }

    private:
        const JsonTree* tree_;
        std::uint32_t index_;
    };
    [[nodiscard]] Iterator begin() const;
    [[nodiscard]] Iterator end() const;

private:
    friend class JsonTree;
    JsonNode(const JsonTree* tree, std::uint32_t index) : tree_(tree), index_(index) {}
    const JsonTree* tree_ = nullptr;
    std::uint32_t index_ = 0;
};

class JsonTree {
public:
    // Parses `text`, which must outlive the tree (strings are views into it).
    // Returns false on malformed input.
    [[nodiscard]] bool parse(std::string_view text);
    [[nodiscard]] JsonNode root() const { return nodes_.empty() ? JsonNode() : JsonNode(this, 0); }
    [[nodiscard]] std::size_t capacity() const { return nodes_.capacity(); }

    // Building a tree in document order instead of parsing one (parse_tree_reader.cpp writes
    // libpg_query's node tree straight into it): clear(), then open and close arrays and objects
    // and add leaves. Keys must outlive the tree (string literals); texts are copied into it
    // unless `kept` says they outlive it too.
    void clear();
    void open(std::string_view key, JsonNode::Type type);
    void close() { open_.pop_back(); }
    void add(std::string_view key, JsonNode::Type type, std::string_view text, bool kept = false);

private:
    friend class JsonNode;
    static constexpr std::uint32_t none = 0xffffffffU;
    struct Node {
        std::string_view key;
        std::string_view text;
        std::uint32_t first_child = none;
        std::uint32_t next_sibling = none;
        std::uint32_t size = 0;
        JsonNode::Type type = JsonNode::Type::null;
    };
    bool read_string(std::string_view text, std::size_t& position, std::string_view& out);
    std::uint32_t append(std::string_view key, JsonNode::Type type);  // attached to the open container
    std::string_view keep(std::string_view text);

    struct Open {  // an array or object being read
        std::uint32_t node;
        std::uint32_t last_child;
    };

    std::vector<Node> nodes_;
    std::vector<Open> open_;
    std::deque<std::string> unescaped_;  // stable storage for strings that had escapes
    // Stable storage for the texts of a built tree: chunks that are never moved.
    std::vector<std::unique_ptr<char[]>> chunks_;
    std::size_t chunk_left_ = 0;
    char* chunk_next_ = nullptr;
};

// The accessors are inline: the analyzer's tree walks call them for every node.
inline JsonNode::Type JsonNode::type() const { return tree_ == nullptr ? Type::null : tree_->nodes_[index_].type; }

inline std::string_view JsonNode::key() const {
    return tree_ == nullptr ? std::string_view() : tree_->nodes_[index_].key;
}

inline std::string_view JsonNode::text() const {
    return tree_ == nullptr ? std::string_view() : tree_->nodes_[index_].text;
}

inline std::size_t JsonNode::size() const { return tree_ == nullptr ? 0 : tree_->nodes_[index_].size; }

inline JsonNode JsonNode::find(std::string_view key) const {
    if (!is_object()) return {};
    // The first byte is compared before the library's memcmp: most keys differ there or in length.
    const char first = key.empty() ? '\0' : key.front();
    for (JsonNode member : *this) {
        const std::string_view name = member.key();
        if (name.size() == key.size() && (key.empty() || name.front() == first) && name == key) return member;
    }
    return {};
}

inline JsonNode JsonNode::front() const {
    if (tree_ == nullptr || tree_->nodes_[index_].first_child == JsonTree::none) return {};
    return JsonNode(tree_, tree_->nodes_[index_].first_child);
}

inline JsonNode::Iterator& JsonNode::Iterator::operator++() {
    index_ = tree_->nodes_[index_].next_sibling;
    return *this;
}

inline JsonNode::Iterator JsonNode::begin() const {
    if (tree_ == nullptr) return Iterator(nullptr, JsonTree::none);
    return Iterator(tree_, tree_->nodes_[index_].first_child);
}

inline JsonNode::Iterator JsonNode::end() const { return Iterator(tree_, JsonTree::none); }

}  // namespace pgrail::sql::detail

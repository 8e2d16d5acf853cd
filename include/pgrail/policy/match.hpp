// Matching primitives of the policy: globs, name sets and client CIDRs.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace pgrail::policy {

// `*` matches any run of characters, `?` one character; everything else matches itself.
[[nodiscard]] bool glob_match(std::string_view pattern, std::string_view text);
// The same with ASCII letters compared in any case.
[[nodiscard]] bool glob_match_any_case(std::string_view pattern, std::string_view text);

[[nodiscard]] inline bool has_glob(std::string_view pattern) {
    return pattern.find_first_of("*?") != std::string_view::npos;
}

// A set of names, some of them globs: exact names are hashed, globs are tried in order.
class NameSet {
public:
    void insert(std::string name);
    void erase(std::string_view name);
    [[nodiscard]] bool contains(std::string_view name) const;
    // The member (exact name or glob) that matches `name`, or nullptr.
    [[nodiscard]] const std::string* find(std::string_view name) const;
    // A qualified member ("schema.fn", globs allowed; not a whole schema, "schema.*") whose name
    // part matches the unqualified `name` and whose schema `reachable(schema)` says a search_path
    // may lead to: the server may reach that object by the bare name. nullptr: none.
    template <class Reachable>
    [[nodiscard]] const std::string* find_qualified(std::string_view name, Reachable reachable) const {
        for (const auto& member : qualified_) {
            const auto dot = member.rfind('.');
            const std::string_view part = std::string_view(member).substr(dot + 1);
            if (part == "*" || !(has_glob(part) ? glob_match(part, name) : part == name)) continue;
            if (reachable(std::string_view(member).substr(0, dot))) return &member;
        }
        return nullptr;
    }
    [[nodiscard]] std::vector<std::string> sorted() const;
    [[nodiscard]] bool empty() const { return exact_.empty() && globs_.empty(); }
    bool operator==(const NameSet&) const = default;

private:
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
    };
    std::unordered_set<std::string, Hash, std::equal_to<>> exact_;
    std::vector<std::string> globs_;
    std::vector<std::string> qualified_;  // the members with a schema, exact or globs
};

// An IPv4 or IPv6 network. IPv4 is held as IPv4-mapped IPv6 so that `::ffff:10.1.2.3` matches 10.0.0.0/8.
struct Cidr {
    std::array<std::uint8_t, 16> address{};
    unsigned prefix_length = 0;  // over the 128-bit form

    // "10.0.0.0/8", "2001:db8::/32", "192.168.1.7" (a host). nullopt if malformed or host bits are set.
    [[nodiscard]] static std::optional<Cidr> parse(std::string_view text);
    [[nodiscard]] bool contains(const std::array<std::uint8_t, 16>& other) const;
    [[nodiscard]] bool matches_everything() const { return prefix_length == 0; }
    [[nodiscard]] std::string to_string() const;
};

// A textual client address as 128 bits (IPv4 mapped); nullopt for anything else (a Unix socket path).
[[nodiscard]] std::optional<std::array<std::uint8_t, 16>> parse_address(std::string_view text);

}  // namespace pgrail::policy

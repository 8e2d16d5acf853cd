// Globs, name sets and CIDRs for matching sessions and names.
#include "pgrail/policy/match.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace pgrail::policy {

namespace {

char fold(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// Iterative matcher with one backtrack point: linear for the patterns policies use.
template <bool any_case>
bool glob(std::string_view pattern, std::string_view text) {
    std::size_t p = 0, t = 0, star = std::string_view::npos, star_text = 0;
    while (t < text.size()) {
        if (p < pattern.size() &&
            (pattern[p] == '?' || (any_case ? fold(pattern[p]) == fold(text[t]) : pattern[p] == text[t]))) {
            ++p;
            ++t;
        } else if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            star_text = t;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            t = ++star_text;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view text) { return glob<false>(pattern, text); }

bool glob_match_any_case(std::string_view pattern, std::string_view text) { return glob<true>(pattern, text); }

void NameSet::insert(std::string name) {
    if (name.find('.') != std::string::npos && std::find(qualified_.begin(), qualified_.end(), name) == qualified_.end())
        qualified_.push_back(name);
    if (has_glob(name)) {
        if (std::find(globs_.begin(), globs_.end(), name) == globs_.end()) globs_.push_back(std::move(name));
    } else {
        exact_.insert(std::move(name));
    }
}

void NameSet::erase(std::string_view name) {
    if (auto it = exact_.find(name); it != exact_.end()) exact_.erase(it);
    std::erase(globs_, name);
    std::erase(qualified_, name);
}

const std::string* NameSet::find(std::string_view name) const {
    if (auto it = exact_.find(name); it != exact_.end()) return &*it;
    for (const auto& glob : globs_)
        if (glob_match(glob, name)) return &glob;
    return nullptr;
}

bool NameSet::contains(std::string_view name) const { return find(name) != nullptr; }

std::vector<std::string> NameSet::sorted() const {
    std::vector<std::string> out(exact_.begin(), exact_.end());
    out.insert(out.end(), globs_.begin(), globs_.end());
    std::sort(out.begin(), out.end());
    return out;
}

std::optional<std::array<std::uint8_t, 16>> parse_address(std::string_view text) {
    char buffer[INET6_ADDRSTRLEN + 1];
    if (text.empty() || text.size() >= sizeof buffer) return std::nullopt;
    std::memcpy(buffer, text.data(), text.size());
    buffer[text.size()] = '\0';
    std::array<std::uint8_t, 16> out{};
    if (text.find(':') != std::string_view::npos) {
        if (inet_pton(AF_INET6, buffer, out.data()) != 1) return std::nullopt;
        return out;
    }
    out[10] = 0xff;
    out[11] = 0xff;
    if (inet_pton(AF_INET, buffer, out.data() + 12) != 1) return std::nullopt;
    return out;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
    const auto slash = text.find('/');
    const auto host = text.substr(0, slash);
    const bool v6 = host.find(':') != std::string_view::npos;
    auto address = parse_address(host);
    if (!address) return std::nullopt;
    unsigned bits = v6 ? 128U : 32U;
    if (slash != std::string_view::npos) {
        const auto digits = text.substr(slash + 1);
        if (digits.empty() || digits.size() > 3) return std::nullopt;
        unsigned value = 0;
        for (char c : digits) {
            if (c < '0' || c > '9') return std::nullopt;
            value = value * 10 + static_cast<unsigned>(c - '0');
        }
        if (value > bits) return std::nullopt;
        bits = value;
    }
    Cidr cidr{*address, v6 ? bits : bits + 96};
    // Host bits set (10.0.0.1/8) is almost always a typo: refuse rather than guess.
    for (unsigned bit = cidr.prefix_length; bit < 128; ++bit)
        if ((cidr.address[bit / 8] >> (7 - bit % 8)) & 1U) return std::nullopt;
    return cidr;
}

bool Cidr::contains(const std::array<std::uint8_t, 16>& other) const {
    const unsigned full = prefix_length / 8;
    if (std::memcmp(address.data(), other.data(), full) != 0) return false;
    const unsigned rest = prefix_length % 8;
    if (rest == 0) return true;
    const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
    return (address[full] & mask) == (other[full] & mask);
}

std::string Cidr::to_string() const {
    char buffer[INET6_ADDRSTRLEN];
    const bool v4 = prefix_length >= 96 && std::all_of(address.begin(), address.begin() + 10, [](auto b) { return b == 0; }) &&
                    address[10] == 0xff && address[11] == 0xff;
    if (v4) {
        inet_ntop(AF_INET, address.data() + 12, buffer, sizeof buffer);
        return fmt::format("{}/{}", buffer, prefix_length - 96);
    }
    inet_ntop(AF_INET6, address.data(), buffer, sizeof buffer);
    return fmt::format("{}/{}", buffer, prefix_length);
}

}  // namespace pgrail::policy

// Line diff for schema dumps: common prefix/suffix trimmed, LCS on the rest.
#include "pgrail/migrations/schema_diff.hpp"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

namespace pgrail::migrations {

namespace {

std::vector<std::string_view> lines_of(std::string_view text) {
    std::vector<std::string_view> lines;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const auto eol = text.find('\n', pos);
        if (eol == std::string_view::npos) {
            lines.push_back(text.substr(pos));
            break;
        }
        lines.push_back(text.substr(pos, eol - pos));
        pos = eol + 1;
    }
    return lines;
}

struct Edit {
    char op;  // ' ', '-', '+'
    std::string_view line;
};

// Edit script between a and b; the LCS table is bounded, beyond it the middle is shown as
// all removed then all added (still a correct, if longer, diff).
std::vector<Edit> edits(const std::vector<std::string_view>& a, const std::vector<std::string_view>& b) {
    std::size_t prefix = 0;
    while (prefix < a.size() && prefix < b.size() && a[prefix] == b[prefix]) ++prefix;
    std::size_t suffix = 0;
    while (suffix < a.size() - prefix && suffix < b.size() - prefix &&
           a[a.size() - 1 - suffix] == b[b.size() - 1 - suffix])
        ++suffix;
    std::vector<Edit> out;
    for (std::size_t i = 0; i < prefix; ++i) out.push_back({' ', a[i]});
    const std::size_t n = a.size() - prefix - suffix;
    const std::size_t m = b.size() - prefix - suffix;
    if (n * m <= 4'000'000) {
        std::vector<std::vector<std::uint32_t>> lcs(n + 1, std::vector<std::uint32_t>(m + 1, 0));
        for (std::size_t i = n; i-- > 0;)
            for (std::size_t j = m; j-- > 0;)
                lcs[i][j] = a[prefix + i] == b[prefix + j] ? lcs[i + 1][j + 1] + 1
                                                           : std::max(lcs[i + 1][j], lcs[i][j + 1]);
        std::size_t i = 0, j = 0;
        while (i < n || j < m) {
            if (i < n && j < m && a[prefix + i] == b[prefix + j]) {
                out.push_back({' ', a[prefix + i]});
                ++i;
                ++j;
            } else if (i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1])) {
                out.push_back({'-', a[prefix + i++]});
            } else {
                out.push_back({'+', b[prefix + j++]});
            }
        }
    } else {
        for (std::size_t i = 0; i < n; ++i) out.push_back({'-', a[prefix + i]});
        for (std::size_t j = 0; j < m; ++j) out.push_back({'+', b[prefix + j]});
    }
    for (std::size_t i = a.size() - suffix; i < a.size(); ++i) out.push_back({' ', a[i]});
    return out;
}

}  // namespace

std::string normalize_dump(std::string_view dump) {
    // pg_dump's \restrict line (its first but comments and blank lines) and \unrestrict line (its
    // last such) carry a random key per dump: the only lines that differ between two dumps of one
    // unchanged database. Every other line stays, comments and blank ones too, and a line of a
    // string constant (a function's body, a comment, a default) that merely starts like them.
    const auto lines = lines_of(dump);
    const auto is_filler = [](std::string_view line) { return line.empty() || line.starts_with("--"); };
    std::size_t first = 0;
    while (first < lines.size() && is_filler(lines[first])) ++first;
    std::size_t last = lines.size();
    while (last > 0 && is_filler(lines[last - 1])) --last;
    std::string out;
    for (std::size_t index = 0; index < lines.size(); ++index) {
        const auto line = lines[index];
        if (index == first && line.starts_with("\\restrict ")) continue;
        if (last > 0 && index == last - 1 && line.starts_with("\\unrestrict ")) continue;
        out.append(line);
        out.push_back('\n');
    }
    return out;
}

std::string unified_diff(std::string_view before, std::string_view after, std::string_view before_name,
                         std::string_view after_name, std::size_t context) {
    const auto a = lines_of(before);
    const auto b = lines_of(after);
    const auto script = edits(a, b);
    if (std::all_of(script.begin(), script.end(), [](const Edit& e) { return e.op == ' '; })) return {};
    std::string out = fmt::format("--- {}\n+++ {}\n", before_name, after_name);
    // Mark the edits to print: every change and `context` lines around it.
    std::vector<bool> shown(script.size(), false);
    for (std::size_t k = 0; k < script.size(); ++k) {
        if (script[k].op == ' ') continue;
        const std::size_t from = k >= context ? k - context : 0;
        const std::size_t to = std::min(script.size(), k + context + 1);
        for (std::size_t s = from; s < to; ++s) shown[s] = true;
    }
    std::size_t line_a = 1;
    std::size_t line_b = 1;
    bool in_hunk = false;
    for (std::size_t k = 0; k < script.size(); ++k) {
        if (shown[k]) {
            if (!in_hunk) out += fmt::format("@@ -{} +{} @@\n", line_a, line_b);
            in_hunk = true;
            out += script[k].op;
            out.append(script[k].line);
            out.push_back('\n');
        } else {
            in_hunk = false;
        }
        if (script[k].op != '+') ++line_a;
        if (script[k].op != '-') ++line_b;
    }
    return out;
}

}  // namespace pgrail::migrations

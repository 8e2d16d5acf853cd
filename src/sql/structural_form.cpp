// Location-free canonical serialisation of libpg_query JSON parse trees.
#include "structural_form.hpp"

#include <stdexcept>
#include <string_view>

namespace pgrail::sql::detail {
namespace {

bool is_location(std::string_view key) {
    return key == "location" || key == "stmt_location" || key == "stmt_len";
}

// Every variable-length piece carries its length and every value a tag, so no two different
// trees serialise to the same bytes.
void append_text(std::string& out, std::string_view value) {
    out += std::to_string(value.size());
    out += ':';
    out += value;
}

void serialise(const JsonNode& value, std::string& out, std::size_t depth, std::size_t max_depth) {
    if (depth > max_depth) throw std::length_error("parse tree too deep to compare");
    switch (value.type()) {
    case JsonNode::Type::object:
        out += '{';
        for (const JsonNode member : value) {
            if (is_location(member.key())) continue;
            append_text(out, member.key());
            serialise(member, out, depth + 1, max_depth);
        }
        out += '}';
        break;
    case JsonNode::Type::array:
        out += '[';
        for (const JsonNode item : value) serialise(item, out, depth + 1, max_depth);
        out += ']';
        break;
    case JsonNode::Type::string:
        out += 's';
        append_text(out, value.text());
        break;
    case JsonNode::Type::number:
        out += 'd';
        append_text(out, value.text());  // libpg_query prints numbers canonically
        break;
    case JsonNode::Type::boolean:
        out += value.boolean() ? 't' : 'f';
        break;
    case JsonNode::Type::null:
        out += 'n';
        break;
    }
}

}  // namespace

std::string structural_form(const JsonNode& tree, std::size_t max_depth) {
    std::string out;
    serialise(tree, out, 0, max_depth);
    return out;
}

}  // namespace pgrail::sql::detail

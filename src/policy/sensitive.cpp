// The lookups of a rule's resolved sensitive set (by relation name, by function name) and the
// rendering of its column patterns. What the patterns resolve to comes from the catalog
// (proxy/sensitive_catalog.cpp).
#include "pgrail/policy/sensitive.hpp"

namespace pgrail::policy {

std::string ColumnPattern::to_string() const {
    std::string out;
    if (!schema.empty()) out += schema + ".";
    out += table;
    out += ".";
    out += column;
    return out;
}

// A linear scan: a rule guards a handful of relations, and the set may be built by hand (tests)
// in any order, so no order is assumed.
std::vector<const SensitiveRelation*> SensitiveSet::find(std::string_view schema, std::string_view name) const {
    std::vector<const SensitiveRelation*> out;
    for (const auto& relation : relations)
        if (relation.name == name && (schema.empty() || relation.schema == schema)) out.push_back(&relation);
    return out;
}

const SensitiveRowFunction* SensitiveSet::find_function(std::string_view schema, std::string_view name) const {
    for (const auto& function : row_functions)
        if (function.name == name && (schema.empty() || function.schema == schema)) return &function;
    return nullptr;
}

}  // namespace pgrail::policy

// A parse tree's canonical form without locations: equal for statements that differ only in
// whitespace, comments and keyword case; constants and names count.
#pragma once

#include <cstddef>
#include <string>

#include "json_tree.hpp"

namespace pgrail::sql::detail {

// An injective, length-prefixed serialisation of the tree with every location field left out:
// two trees have the same form exactly when they are equal (no hash: a crafted statement cannot
// share the form of another). Throws std::length_error beyond `max_depth` levels of JSON.
[[nodiscard]] std::string structural_form(const JsonNode& tree, std::size_t max_depth);

}  // namespace pgrail::sql::detail

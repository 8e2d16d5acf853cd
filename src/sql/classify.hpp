// Statement class and PostgreSQL command tag of a top-level parse-tree node.
#pragma once

#include <string>
#include <string_view>

#include "json_tree.hpp"

#include "pgrail/sql/statement.hpp"

namespace pgrail::sql::detail {

struct Classification {
    StatementClass statement_class = StatementClass::unknown;
    std::string tag;
};

// `type` is the node's name in libpg_query's JSON ("CreateStmt"), `body` its fields.
// Unknown node types classify as unknown with an empty tag: fail closed.
[[nodiscard]] Classification classify(std::string_view type, const JsonNode& body);

// "OBJECT_MATVIEW" -> "MATERIALIZED VIEW" (as in command tags); empty when unknown.
[[nodiscard]] std::string_view object_noun(std::string_view object_type);

}  // namespace pgrail::sql::detail

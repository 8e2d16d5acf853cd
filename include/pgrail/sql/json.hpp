// JSON rendering of analysed statements (for `pgrail classify` and the audit log).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/statement.hpp"

namespace pgrail::sql {

// Names of the flags that are set, in declaration order: "update_or_delete_without_where",
// "data_modifying_cte", "select_into", "create_table_as", "copy_from" / "copy_to",
// "copy_program", "copy_file", "explain_analyze", "locking_clause", "temporary_object",
// "ddl_capable_dynamic", "alter_system", "runs_query_text",
// "writes_sequence", "sequence_unnamed".
[[nodiscard]] std::vector<std::string> flag_names(const StatementFlags& flags);

// {"class", "tag", "offset", "length", "objects": [{"schema","name","kind","role"}],
//  "functions", "settings": [{"name","via_function"}], "flags": [...],
//  "structural_form_bytes"?: N, "advisory_lock_keys"?: [..], "error"?: {"message","cursor"}, "pgrail_calls"?,
//  "inner"?: [...]}. With a non-empty `query` (the text the statement came from),
// also "text": the statement's own text, and "normalized": that text without
// literals (sql::normalize; empty when it did not parse). Without `query`, no
// literal value is rendered.
[[nodiscard]] nlohmann::json to_json(const Statement& statement, std::string_view query = {}, Lexing lexing = {});

// {"statements": [...], "error"?: {...}}
[[nodiscard]] nlohmann::json to_json(const Analysis& analysis, std::string_view query = {}, Lexing lexing = {});

}  // namespace pgrail::sql

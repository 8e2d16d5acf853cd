// pgrail's in-band commands read as relations: the text the server runs in place of the client's.
//
// A statement that reads pgrail commands (pgrail.status() ...) in FROM reaches the server with
// each call replaced by a relation holding the command's answer, so that the rest of the
// statement (columns, WHERE, joins, ORDER BY) is PostgreSQL's own, in the session's transaction.
// Simple protocol: pgrail runs the commands first and writes their answers into the text (VALUES).
// Extended protocol: the Parse gets a text whose relations read one added parameter each (JSON
// rows, json_to_recordset), so it describes and prepares without running anything; pgrail runs
// the commands when the client binds the statement, and passes their answers as those parameters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pgrail/migrations/commands.hpp"
#include "pgrail/protocol/frontend.hpp"
#include "pgrail/proxy/statement_gate.hpp"

namespace pgrail::proxy {

// The type OID of the parameters pgrail adds (json).
inline constexpr std::uint32_t oid_json = 114;

// A query whose result set is `table`: SELECT * FROM (VALUES ...) with typed, quoted literals.
[[nodiscard]] std::string result_set_sql(const migrations::ResultTable& table);

// `sql` with each call (InbandCall::offset/length, in text order) replaced by its answer
// (`answers[i]` for `calls[i]`): `(SELECT * FROM (VALUES ...) AS pgrail_result(columns))`, followed
// by ` AS "<command>"` when the client gave no alias (PostgreSQL needs one for a subquery in FROM;
// the command's name is the one it gives a function there). A whole-statement call becomes the
// bare query.
[[nodiscard]] std::string text_with_answers(std::string_view sql, const std::vector<InbandCall>& calls,
                                            const std::vector<migrations::ResultTable>& answers);

// `sql` with the i-th call replaced by `(SELECT * FROM json_to_recordset($<first_parameter + i>::json)
// AS pgrail_result(<column definitions>))` (and the alias as above): the columns are the command's
// (inband_command_columns: admin_commands.hpp), its rows come with the Bind.
[[nodiscard]] std::string text_with_parameters(std::string_view sql, const std::vector<InbandCall>& calls,
                                               std::size_t first_parameter);

// A command's answer as the JSON text that json_to_recordset reads as its rows: an array of
// objects, each column a string (PostgreSQL's text form, which the column's type reads) or null.
[[nodiscard]] std::string answer_json(const migrations::ResultTable& table);

// The client's Bind of a text_with_parameters statement with each command's answer (answer_json)
// as the parameter pgrail added for it: the whole Bind message, for the server.
[[nodiscard]] std::string bind_with_answers(const protocol::BindMessage& bind,
                                            const std::vector<migrations::ResultTable>& answers);

}  // namespace pgrail::proxy

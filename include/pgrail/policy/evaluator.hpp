// The pure decision: a policy, a session and a statement in; allow, deny or intercept out.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "pgrail/policy/policy.hpp"
#include "pgrail/sql/statement.hpp"

namespace pgrail::policy {

// Tells whether a DDL statement is structurally equal to a statement of a registered migration in
// the matching state (pending for up, applied for down). Provided by the migrations module.
using MigrationMatcher = std::function<bool(const sql::Statement&)>;

// Startup guards: replication connections, `options` and settings passed as startup parameters.
// `startup_params` are the startup packet's key/value pairs.
[[nodiscard]] Decision evaluate_startup(const Policy& policy, const SessionInfo& session,
                                        const std::vector<std::pair<std::string, std::string>>& startup_params);

// A fast-path FunctionCall message (libpq's PQfn and its client-side large-object calls). It names
// its function by OID only, so no guard can judge it: refused under every rule.
[[nodiscard]] Decision evaluate_function_call(const Policy& policy, const SessionInfo& session,
                                              std::uint32_t function_oid);

// One statement, including the statements it wraps (Statement::inner: PREPARE, EXPLAIN, CREATE
// TABLE AS): the caller need not recurse. A pgrail.* command gives intercept when the rule allows it.
[[nodiscard]] Decision evaluate(const Policy& policy, const SessionInfo& session, const sql::Statement& statement,
                                const MigrationMatcher* is_registered_migration_statement = nullptr);

// The first non-allow decision over the statements of an analysis (statement_index says which),
// else allow. A whole text that did not parse is decided by on_parse_error. A pgrail.* command
// is intercepted only when it is the query's only statement; alongside others it is refused.
[[nodiscard]] Decision evaluate_all(const Policy& policy, const SessionInfo& session, const sql::Analysis& analysis,
                                    const MigrationMatcher* is_registered_migration_statement = nullptr);

// Whether a statement that passed changes the schema (DDL, SELECT INTO, dynamic EXECUTE ...) beyond
// the session's own temporary relations: such statements are audited when they are allowed too.
[[nodiscard]] bool changes_schema(const sql::Statement& statement);
// The DDL hint for the policy's migrations directory.
[[nodiscard]] std::string migrations_hint(const Policy& policy);

}  // namespace pgrail::policy

// The pure decision: a policy, a session and a statement in; allow, deny or intercept out.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pgrail/policy/policy.hpp"
#include "pgrail/sql/statement.hpp"

namespace pgrail::policy {

// A registered migration that holds a statement: one of its up script while it is pending, or of
// its down script while it is applied (either, while it is partial).
struct RegisteredStatement {
    std::string version;
    std::string name;
    bool rollback = false;  // the statement is one of the down script's
};

// Finds the registered migration, in the matching state, holding a statement structurally equal
// to a DDL statement (nullopt: none). Provided by the migrations module. A migrator's statement
// that has one passes; anyone else's refusal names the migration to run instead.
using MigrationMatcher = std::function<std::optional<RegisteredStatement>(const sql::Statement&)>;

// Startup guards: replication connections, `options` and settings passed as startup parameters.
// `startup_params` are the startup packet's key/value pairs.
[[nodiscard]] Decision evaluate_startup(const Policy& policy, const SessionInfo& session,
                                        const std::vector<std::pair<std::string, std::string>>& startup_params);

// The session's rule has max_connections sessions already (the proxy counts them): the refusal,
// SQLSTATE 53300 as PostgreSQL's "too many connections".
[[nodiscard]] Decision evaluate_connection_limit(const Policy& policy, const SessionInfo& session);

// A Bind's value of an advisory lock's key that is a parameter (sql::Statement::advisory_lock_keys
// "$n"), read as the server reads it ("*" when it cannot be): refused when it is one of pgrail's
// own keys, as a constant key is.
[[nodiscard]] Decision evaluate_bound_lock_key(const Policy& policy, const SessionInfo& session, std::string_view key);

// A fast-path FunctionCall message (libpq's PQfn and its client-side large-object calls). It names
// its function by OID only, so no guard can judge it: refused under every rule.
[[nodiscard]] Decision evaluate_function_call(const Policy& policy, const SessionInfo& session,
                                              std::uint32_t function_oid);

// What the session's rule guards in the session's database (sensitive_columns resolved against its
// catalog). For a rule with sensitive_columns and no set (the catalog could not be read: `error`
// says why), every statement that reads a relation or calls a function is refused.
struct SensitiveContext {
    const SensitiveSet* set = nullptr;
    std::string error;
    std::shared_ptr<const SensitiveSet> keep;  // holds `set` while it is in use
};

// One statement, including the statements it wraps (Statement::inner: PREPARE, EXPLAIN, CREATE
// TABLE AS): the caller need not recurse. A pgrail.* command gives intercept when the rule allows it.
[[nodiscard]] Decision evaluate(const Policy& policy, const SessionInfo& session, const sql::Statement& statement,
                                const MigrationMatcher* is_registered_migration_statement = nullptr,
                                const SensitiveContext* sensitive = nullptr);

// The first non-allow decision over the statements of an analysis (statement_index says which),
// else allow. A whole text that did not parse is decided by on_parse_error. A statement that reads
// pgrail commands (Statement::pgrail_calls) is intercepted when each command is allowed for the rule
// and the rest of the statement passes like any statement; only when it is the query's only
// statement (alongside others it is refused), a plain read (no data-modifying WITH), and with at
// most one command that changes something.
[[nodiscard]] Decision evaluate_all(const Policy& policy, const SessionInfo& session, const sql::Analysis& analysis,
                                    const MigrationMatcher* is_registered_migration_statement = nullptr,
                                    const SensitiveContext* sensitive = nullptr);

// Whether a statement that passed changes the schema (DDL, SELECT INTO, dynamic EXECUTE ...) beyond
// the session's own temporary relations: such statements are audited when they are allowed too.
[[nodiscard]] bool changes_schema(const sql::Statement& statement);
// The DDL hint: how a schema change becomes a migration (propose, approve, apply), and the
// policy's migrations directory for operators.
[[nodiscard]] std::string migrations_hint(const Policy& policy);

}  // namespace pgrail::policy

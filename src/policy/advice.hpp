// The advice of a refusal: a MESSAGE that names what was refused and the next step in one
// sentence (many agent tools show a model nothing else), and a HINT with the longer story.
// Built from the statement's parse (sql::Statement::change), identifiers only: a refusal's
// message is written to the audit log, and no constant of the client's statement may reach it.
#pragma once

#include <optional>
#include <string>

#include "pgrail/policy/evaluator.hpp"
#include "pgrail/policy/policy.hpp"
#include "pgrail/sql/statement.hpp"

namespace pgrail::policy::advice {

struct Text {
    std::string message;
    std::string hint;
};

// A schema change refused by `ddl` (migrations_only or deny). `registered`: the registered
// migration that holds this very statement, if any (the next step is then to run that migration).
[[nodiscard]] Text schema_change(const Policy& policy, const Rule& rule, const sql::Statement& statement,
                                 const std::optional<RegisteredStatement>& registered);

// UPDATE / DELETE (or MERGE, INSERT ... ON CONFLICT DO UPDATE) that would change every row.
[[nodiscard]] Text without_where(const sql::Statement& statement);

// TRUNCATE.
[[nodiscard]] Text truncate(const sql::Statement& statement);

// The call that proposes a migration, with each argument quoted as a string constant.
[[nodiscard]] std::string propose_call(const std::string& name, const std::string& up_sql, const std::string& down_sql);

// A migration name for the change (letters, digits and '_'), e.g. add_profiles_timezone.
[[nodiscard]] std::string migration_name(const sql::Statement& statement);

// The rollback script of the change where it is mechanical (ADD COLUMN x: DROP COLUMN x, CREATE
// TABLE t: DROP TABLE t, CREATE INDEX i: DROP INDEX i, CREATE EXTENSION e: DROP EXTENSION e), a
// placeholder in angle brackets otherwise. Names quoted as PostgreSQL needs them.
[[nodiscard]] std::string down_script(const sql::Statement& statement);

}  // namespace pgrail::policy::advice

// What pgrail runs in a scratch database on an agent's word. Verifying a proposal runs its up and
// down scripts as the migrator (a role that may create databases and owns the schema) before any
// person has read them; a scratch database contains only what stays in it, so pgrail verifies a
// proposal only when every statement of both scripts acts inside the database it runs in.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "pgrail/migrations/registry.hpp"

namespace pgrail::migrations {

struct ScratchConfinement {
    // Why the scripts may not run in a scratch copy ("ALTER DATABASE (down script, line 2): ..."):
    // the first statement that could reach beyond it. Empty: they may, once the scratch copy has
    // passed scratch_escape() with `call_names`.
    std::optional<std::string> refusal;
    // The names the scripts' calls resolve by (unqualified calls, qualified ones whole, fields and
    // qualified columns, which attribute notation may make calls): each must name nothing but
    // pg_catalog's functions in the scratch copy (what a name resolves to depends on the catalog
    // and search_path, so it is checked there).
    std::vector<std::string> call_names;
};

// A positive list, read from the analyzer's reading of each statement: data reads and writes,
// ANALYZE, and DDL of relations, types, schemas, policies, statistics, comments and privileges on
// them; SET of lock_timeout and client_min_messages; functions of pg_catalog (and a few contrib
// extensions) only, never one that reaches beyond the database (sql/outside_functions.hpp) or
// reads a setting or a relation named in a string (table_to_xml and its family), and of the
// administrative pg_ functions a positive list (sizes, definitions, types, this session's pid and
// transaction, this database's advisory locks, pg_sleep). Not: shared
// objects (databases, roles, tablespaces, parameters, subscriptions), code that runs later or
// elsewhere (functions, procedures, DO, CALL, triggers, rules, event triggers, extensions,
// foreign servers and tables), COPY, ALTER SYSTEM, dynamic SQL, the system catalogs, pgrail's
// in-band commands.
[[nodiscard]] ScratchConfinement scratch_confinement(const Migration& migration);

}  // namespace pgrail::migrations

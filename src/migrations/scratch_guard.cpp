// Which proposals pgrail verifies in a scratch copy before a person has read them
// (scratch_guard.hpp): a positive list over the analyzer's reading, never over the spelling.
#include "pgrail/migrations/scratch_guard.hpp"

#include <algorithm>
#include <array>
#include <string_view>

#include <fmt/format.h>

#include "internal.hpp"
#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/outside_functions.hpp"

namespace pgrail::migrations {

namespace {

// clang-format off
// Statements whose effects stay in the database they run in (their objects checked below).
constexpr std::array<std::string_view, 50> local_tags = {
    "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE TABLE", "LOCK TABLE", "ANALYZE",
    "REFRESH MATERIALIZED VIEW", "SET", "RESET", "COMMENT", "GRANT", "REVOKE",
    "CREATE TABLE", "CREATE TABLE AS", "CREATE VIEW", "CREATE MATERIALIZED VIEW", "CREATE INDEX",
    "CREATE SEQUENCE", "CREATE SCHEMA", "CREATE DOMAIN", "CREATE TYPE", "CREATE POLICY", "CREATE STATISTICS",
    "ALTER TABLE", "ALTER INDEX", "ALTER VIEW", "ALTER MATERIALIZED VIEW", "ALTER SEQUENCE", "ALTER SCHEMA",
    "ALTER DOMAIN", "ALTER TYPE", "ALTER POLICY", "ALTER STATISTICS",
    "DROP TABLE", "DROP INDEX", "DROP VIEW", "DROP MATERIALIZED VIEW", "DROP SEQUENCE", "DROP SCHEMA",
    "DROP DOMAIN", "DROP TYPE", "DROP POLICY", "DROP STATISTICS", "DROP TRIGGER", "DROP RULE", "DROP FUNCTION",
    "DROP PROCEDURE", "DROP ROUTINE"};

// Kinds of object that live in one database (the analyzer's ObjectRef::kind).
constexpr std::array<std::string_view, 17> local_kinds = {
    "relation", "table", "view", "materialized view", "sequence", "index", "schema", "type", "domain",
    "policy", "statistics", "trigger", "rule", "function", "procedure", "routine", "aggregate"};

// Settings a migration sets for itself; any other changes what names resolve to (search_path),
// who runs the rest (role), or lifts the runner's bounds (statement_timeout = 0, work_mem).
// lock_timeout: the runner's statement_timeout still bounds every statement.
constexpr std::array<std::string_view, 2> local_settings = {"lock_timeout", "client_min_messages"};

// PostgreSQL's pg_ functions are its administration: other sessions' activity and locks,
// statistics, replication, WAL, the server's settings, files and control data. A scratch copy
// runs only these of them, which read the copy's own objects or nothing: sizes, definitions,
// types, the session's own pid and transaction, this database's advisory locks, a bounded sleep.
constexpr std::array<std::string_view, 20> scratch_pg_functions = {
    "pg_typeof", "pg_column_size", "pg_column_compression", "pg_size_pretty", "pg_size_bytes",
    "pg_relation_size", "pg_total_relation_size", "pg_table_size", "pg_indexes_size", "pg_get_serial_sequence",
    "pg_get_indexdef", "pg_get_constraintdef", "pg_get_viewdef", "pg_get_expr", "pg_backend_pid",
    "pg_current_xact_id", "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared", "pg_try_advisory_xact_lock",
    "pg_sleep"};

// Other built-ins that a scratch copy must not run, since the migrator may read what the agent
// may not and a failure's message is the agent's answer: a setting's value, and the XML dumps that
// read a relation, a schema or the database named in a string (table_to_xml('pg_stat_activity',
// ...), tablefunc's connectby), which no object of the statement shows.
constexpr std::array<std::string_view, 6> scratch_denied_functions = {
    "current_setting", "table_to_xml*", "schema_to_xml*", "database_to_xml*", "cursor_to_xml*", "connectby"};

// Extensions whose functions count as built-ins (contrib modules that reach nothing outside the
// database): their members may share a name with a call (citext's max) or back an operator.
constexpr std::array<std::string_view, 17> plain_extensions = {
    "citext", "pgcrypto", "uuid-ossp", "hstore", "pg_trgm", "btree_gin", "btree_gist", "intarray", "ltree",
    "cube", "earthdistance", "fuzzystrmatch", "unaccent", "isn", "seg", "tablefunc", "tsm_system_rows"};
// clang-format on

template <std::size_t N>
bool listed(const std::array<std::string_view, N>& list, std::string_view name) {
    return std::any_of(list.begin(), list.end(), [&](std::string_view entry) {
        return entry.ends_with('*') ? name.starts_with(entry.substr(0, entry.size() - 1)) : name == entry;
    });
}

// Why a built-in named `name` may not run in a scratch copy, or nothing.
std::optional<std::string> denied_builtin(std::string_view name) {
    if (listed(sql::functions_reaching_outside, name)) return "reaches beyond the database";
    if (listed(scratch_denied_functions, name)) return "reads what the agent may not";
    if (name.starts_with("pg_") && !listed(scratch_pg_functions, name))
        return "is one of PostgreSQL's administrative functions, which pgrail does not run unread";
    return std::nullopt;
}

bool system_schema(std::string_view schema) {
    return schema == "pg_catalog" || schema == "information_schema" || schema.starts_with("pg_");
}

// A name the scratch copy's catalog must show as pg_catalog's alone (a call resolved there).
void check_in_catalog(std::vector<std::string>& functions, std::string_view name) {
    if (std::find(functions.begin(), functions.end(), name) == functions.end()) functions.emplace_back(name);
}

// Why `statement` may reach beyond its database; `functions` collects the names its calls
// resolve by (scratch_escape checks them).
std::optional<std::string> escape_of(const sql::Statement& statement, const ScriptStatement& script_statement,
                                     std::vector<std::string>& functions) {
    if (statement.statement_class == sql::StatementClass::unknown || statement.error) return "pgrail cannot read it";
    if (!listed(local_tags, statement.tag))
        return fmt::format("{} is not run before a person approves it", statement.tag);
    if (!statement.pgrail_calls.empty()) return "it calls pgrail's commands";
    const auto& flags = statement.flags;
    if (flags.copy_program || flags.copy_file || flags.alter_system) return "it reaches the server's files or settings";
    if (flags.ddl_capable_dynamic || flags.runs_query_text) return "it runs SQL from a string";
    const bool on_objects = statement.tag == "COMMENT" || statement.tag == "GRANT" || statement.tag == "REVOKE";
    if (on_objects && statement.objects.empty()) return "pgrail cannot tell what it applies to";
    // Forms the analyzer's objects do not show, read from the parse tree's canonical form (a match
    // inside a constant only refuses more): schema elements (a trigger among them), range types
    // and base types (their functions are named in options), ALTER TYPE ... SET (...).
    const std::string& form = script_statement.structural_form;
    const bool typed =
        statement.tag == "CREATE SCHEMA" || statement.tag == "CREATE TYPE" || statement.tag == "ALTER TYPE";
    if (typed &&
        (form.empty() || form.find("10:schemaElts") != std::string::npos ||
         form.find("15:CreateRangeStmt") != std::string::npos || form.find("10:DefineStmt") != std::string::npos ||
         form.find("13:AlterTypeStmt") != std::string::npos))
        return "it names code or objects pgrail does not follow (schema elements, a range or base type)";
    for (const auto& object : statement.objects) {
        if (!listed(local_kinds, object.kind))
            return fmt::format("{} {} is not an object of the database alone", object.kind, object.name);
        if (system_schema(object.schema) || (object.schema.empty() && object.name.starts_with("pg_")))
            return fmt::format("it reaches the system catalog ({}{}{})", object.schema,
                               object.schema.empty() ? "" : ".", object.name);
    }
    for (const auto& setting : statement.settings)
        if (!listed(local_settings, setting.name)) return fmt::format("it sets {}", setting.name);
    for (const auto& function : statement.functions) {
        const auto dot = function.rfind('.');
        const std::string_view name =
            dot == std::string::npos ? std::string_view(function) : std::string_view(function).substr(dot + 1);
        if (dot != std::string::npos && std::string_view(function).substr(0, dot) != "pg_catalog")
            return fmt::format("it calls {}, not one of PostgreSQL's built-in functions", function);
        if (const auto why = denied_builtin(name)) return fmt::format("it calls {}, which {}", function, *why);
        // A qualified name is also checked whole: `"pg_catalog.f"()` is a function of that name.
        check_in_catalog(functions, dot == std::string::npos ? name : std::string_view(function));
    }
    // Attribute notation calls one-argument functions the list above does not show: `(x).f`,
    // `t.f` (sql::may_call_by_attribute).
    for (const auto& read : statement.column_reads) {
        if (!sql::may_call_by_attribute(read)) continue;
        if (denied_builtin(read.name) || read.name == "nextval" || read.name == "setval")
            return fmt::format("it may call {} in attribute notation", read.name);
        check_in_catalog(functions, read.name);
    }
    return std::nullopt;
}

}  // namespace

ScratchConfinement scratch_confinement(const Migration& migration) {
    ScratchConfinement out;
    for (const Script* script : {&migration.up, &migration.down}) {
        const char* which = script == &migration.up ? "up script" : "down script";
        for (const auto& statement : script->statements) {
            const auto analysis = sql::analyze(statement.text);
            if (analysis.error || analysis.statements.empty()) {
                out.refusal =
                    fmt::format("{} ({}, line {}): pgrail cannot read it", statement.tag, which, statement.line);
                return out;
            }
            for (const auto& analysed : analysis.statements) {
                if (auto why = escape_of(analysed, statement, out.call_names)) {
                    out.refusal = fmt::format("{} ({}, line {}): {}", analysed.tag, which, statement.line, *why);
                    return out;
                }
            }
        }
    }
    return out;
}

namespace detail {

std::optional<std::string> scratch_escape(pqxx::connection& conn, const std::vector<std::string>& functions) {
    pqxx::read_transaction tx(conn);
    // The session may have the target's search_path (verify.cpp): these names are pg_catalog's.
    tx.exec0("SET LOCAL search_path = pg_catalog, pg_temp");
    // Through a foreign server or dblink, a write in the scratch copy is a write somewhere else.
    const auto outside = tx.exec(
        "SELECT 'foreign server ' || quote_ident(srvname) FROM pg_foreign_server "
        "UNION ALL SELECT 'extension ' || quote_ident(extname) FROM pg_extension WHERE extname = 'dblink' LIMIT 1");
    if (!outside.empty())
        return fmt::format("the schema has {}, through which the scripts could reach another database",
                           outside[0][0].as<std::string>());
    // Any function but pg_catalog's and plain_extensions' (the application's, or an extension's
    // that may reach out, such as pgsql-http's) runs as the migrator wherever it is reached:
    // named by a call, or without a name, through a trigger, an operator, a cast, a default, a
    // constraint, an index, a view or rule, a policy or a type that uses it. Named calls are
    // checked by name; code reached without a name is refused wherever it is, since what a
    // statement reaches that way is the catalog's to say.
    constexpr const char* function_name =
        "quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' || "
        "pg_get_function_identity_arguments(p.oid) || ')'";
    std::string extensions;
    for (const auto name : plain_extensions) extensions += fmt::format("{}'{}'", extensions.empty() ? "" : ", ", name);
    const std::string not_extension = fmt::format(
        "NOT EXISTS (SELECT 1 FROM pg_depend e JOIN pg_extension x ON x.oid = e.refobjid WHERE e.classid = "
        "'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e' AND x.extname IN ({}))",
        extensions);
    const auto implicit = tx.exec(fmt::format(
        "SELECT {}, CASE d.classid WHEN 'pg_trigger'::regclass THEN 'a trigger' WHEN "
        "'pg_operator'::regclass THEN 'an operator' WHEN 'pg_cast'::regclass THEN 'a cast' WHEN "
        "'pg_attrdef'::regclass THEN 'a column default' WHEN 'pg_constraint'::regclass THEN 'a constraint' WHEN "
        "'pg_rewrite'::regclass THEN 'a view or rule' WHEN 'pg_policy'::regclass THEN 'a row policy' WHEN "
        "'pg_type'::regclass THEN 'a type' WHEN 'pg_class'::regclass THEN 'an index or partition key' ELSE "
        "d.classid::regclass::text "
        "END FROM pg_depend d JOIN pg_proc p ON p.oid = d.refobjid JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE d.refclassid = 'pg_proc'::regclass AND d.classid <> 'pg_proc'::regclass AND n.nspname NOT IN "
        "('pg_catalog', 'information_schema') AND {} ORDER BY 1 LIMIT 1",
        function_name, not_extension));
    if (!implicit.empty())
        return fmt::format(
            "the schema runs the application's function {} through {}, without a call naming it, "
            "with the migrator's rights",
            implicit[0][0].as<std::string>(), implicit[0][1].as<std::string>());
    for (const auto& name : functions) {
        const auto other = tx.exec_params(
            fmt::format("SELECT {} FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.proname = "
                        "$1 AND n.nspname <> 'pg_catalog' AND {} ORDER BY 1 LIMIT 1",
                        function_name, not_extension),
            name);
        if (!other.empty())
            return fmt::format("{} may call {}, which is not one of PostgreSQL's built-in functions", name,
                               other[0][0].as<std::string>());
    }
    return std::nullopt;
}

}  // namespace detail

}  // namespace pgrail::migrations

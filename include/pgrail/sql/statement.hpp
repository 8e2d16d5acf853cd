// What pgrail knows about one SQL statement: the result of analysing it with
// the real PostgreSQL grammar (libpg_query). Plain data, no libpg_query types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pgrail/sql/pgrail_command.hpp"

namespace pgrail::sql {

enum class StatementClass {
    read,         // SELECT, SHOW, EXPLAIN without ANALYZE, VALUES, TABLE, FETCH, DECLARE CURSOR (EXPLAIN ANALYZE x: x's class)
    write,        // INSERT, UPDATE, DELETE, MERGE, TRUNCATE (its object has role truncated)
    ddl,          // CREATE/ALTER/DROP/COMMENT/GRANT/REVOKE/SECURITY LABEL/SELECT INTO/CREATE TABLE AS, DO with static DDL ...
    transaction,  // BEGIN, COMMIT, ROLLBACK, SAVEPOINT, PREPARE TRANSACTION ...
    session,      // SET, RESET, DISCARD, LISTEN, UNLISTEN, NOTIFY, PREPARE, EXECUTE, DEALLOCATE
    utility,      // VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, LOCK, LOAD, ALTER SYSTEM, REFRESH MATERIALIZED VIEW
    procedural,   // DO, CALL
    copy,         // COPY
    unknown,      // did not parse (or a node pgrail does not know: fail closed)
};

enum class ObjectRole { read, written, created, altered, dropped, truncated };

struct ObjectRef {
    std::string schema;  // empty when the text does not qualify the name
    std::string name;
    std::string kind;    // "table", "index", "function", "schema", ... ("relation" when unknown)
    ObjectRole role = ObjectRole::read;
    // A temporary relation: CREATE TEMP ..., or a table, index, view or sequence named pg_temp.x
    // (an unqualified name may resolve to a permanent relation: it never counts as temporary).
    bool temporary = false;
    bool operator==(const ObjectRef&) const = default;
};

struct ParseError {
    std::string message;    // PostgreSQL's own message, e.g. `syntax error at or near "FROM"`
    std::size_t cursor = 0; // 1-based character position in the whole query text, 0 when unknown
    bool limit = false;     // not the grammar: a bound of pgrail's (size, nesting, scanner cost)
    bool operator==(const ParseError&) const = default;
};

enum class CopyDirection { none, from, to };

struct StatementFlags {
    bool update_or_delete_without_where = false;  // anywhere: CTEs, PREPARE, EXPLAIN ANALYZE
    // The first such change's own command (it may be a CTE's): "UPDATE", "DELETE", "MERGE" or
    // "INSERT" (ON CONFLICT DO UPDATE); empty when none.
    std::string_view every_row_command;
    bool data_modifying_cte = false;
    bool select_into = false;             // SELECT ... INTO creates a table
    bool create_table_as = false;
    CopyDirection copy_direction = CopyDirection::none;
    bool copy_program = false;            // COPY ... PROGRAM
    bool copy_file = false;               // COPY to/from a server-side file
    bool explain_analyze = false;         // executes its inner statement
    bool locking_clause = false;          // FOR UPDATE / FOR SHARE ...
    bool temporary_object = false;        // creates a temporary relation (see ObjectRef::temporary)
    bool ddl_capable_dynamic = false;     // DO body / function with dynamic EXECUTE
    bool alter_system = false;
    // Runs SQL held in a string constant: a built-in's query argument (query_to_xml('...')),
    // a constant EXECUTE in a DO block. Its effects are the statement's own (inner); the flag
    // says that a literal's value decides what the statement does, even when that text holds
    // no statement at all (query_to_xml(''), which the server refuses as it runs it).
    bool runs_query_text = false;
    // nextval() or setval(): they write the sequence they name. A string constant naming it (as
    // regclass reads it) puts it among the objects (kind "sequence", role written); anything else
    // (an OID, an expression) names a sequence pgrail cannot see: sequence_unnamed.
    bool writes_sequence = false;
    bool sequence_unnamed = false;
    // SQL EXECUTE of a prepared statement (also wrapped: EXPLAIN, CREATE TABLE AS; or in a DO
    // block's text): it runs a statement checked when it was prepared, with values read nowhere.
    bool executes_prepared = false;
    bool operator==(const StatementFlags&) const = default;
};

struct SettingChange {
    // Lower-case setting name ("role", "search_path", ...); "all" for RESET ALL;
    // "*" for set_config() with a name that is not a constant (could be any setting);
    // "transaction" / "session characteristics" for SET TRANSACTION / SET SESSION CHARACTERISTICS.
    std::string name;
    bool via_function = false;  // set_config('name', ...) rather than SET/RESET
    // The new value as the text gives it: constants lower-cased and joined by ", " (a list such
    // as search_path), "on"/"off" for READ ONLY / READ WRITE; "" for RESET, SET ... TO DEFAULT
    // and RESET ALL (back to the session's reset value); "*" when it is not a constant.
    std::string value;
    bool operator==(const SettingChange&) const = default;
};

// One of pgrail's own in-band commands, which pgrail answers itself: `pgrail.<function>(constant,
// ...)` read as a relation in the FROM clause of a plain SELECT sent on its own (any SELECT: joins,
// WHERE, CTEs, subqueries), or the whole statement `SELECT pgrail.<function>(...)`. pgrail runs the
// command and the server reads its answer in its place, so the call is no function reference of
// the statement (Statement::functions does not list it): the rest reads as a plain read. A
// pgrail.* function anywhere else stays a function reference (and the policy refuses it).
struct PgrailCall {
    std::string function;                   // the name after `pgrail.`, as written
    std::vector<std::string> arguments;     // constant arguments as text (string or number literals)
    std::optional<PgrailCommand> command;   // the command it names; none: no pgrail command (refused)
    // The bytes of the call in the query text, from the first byte of its name to its closing
    // parenthesis (found with the scanner's tokens); the statement's range for the whole form.
    std::size_t offset = 0;
    std::size_t length = 0;
    bool aliased = false;          // `pgrail.status() AS s` / `pgrail.status() s (a, b)`
    bool whole_statement = false;  // `SELECT pgrail.f(...)`: the call is the statement
    bool operator==(const PgrailCall&) const = default;
};

// What a schema change does, in the terms a refusal's advice needs (an index wants CONCURRENTLY,
// a NOT NULL column the safe sequence, a drop loses data). Read from the parse tree, never from
// the text's spelling; it holds identifiers only (names as PostgreSQL resolved their case),
// never a constant of the statement, so advice built from it carries no literal value.
enum class ChangeKind : std::uint8_t {
    none,              // not a schema change, or one without advice of its own
    create_table,      // CREATE TABLE schema.table
    add_column,        // ALTER TABLE schema.table ADD COLUMN columns... (every command adds a column)
    drop_column,       // ALTER TABLE schema.table ... DROP COLUMN columns... (any command drops one)
    create_index,      // CREATE INDEX [name] ON schema.table; the index's name in `name`
    drop_table,        // DROP TABLE (the statement's dropped objects)
    grant,             // GRANT
    revoke,            // REVOKE
    create_extension,  // CREATE EXTENSION name
    // CREATE of one named view, materialized view, sequence, schema, type, domain, function,
    // procedure or trigger that replaces nothing (no OR REPLACE, IF NOT EXISTS, schema elements):
    // DROP of that object undoes it (the statement's created object).
    create_object,
};

struct SchemaChange {
    ChangeKind kind = ChangeKind::none;
    std::string schema;                // the table's schema as written (empty: unqualified)
    std::string table;                 // the table the change is on
    std::string name;                  // create_index: the index (empty: unnamed); create_extension: the extension
    std::vector<std::string> columns;  // add_column, drop_column: the columns
    // add_column: some column is NOT NULL (or PRIMARY KEY) without DEFAULT, identity or
    // generation expression: PostgreSQL refuses it on a table that has rows.
    bool not_null_without_default = false;
    bool concurrently = false;         // create_index: CREATE INDEX CONCURRENTLY
    // drop_column: the ALTER TABLE does more than drop columns (its other clauses are not `kind`).
    bool other_clauses = false;
    // create_table: a permanent table of built-in scalar columns with PRIMARY KEY, UNIQUE, NOT
    // NULL, NULL and constant (or now()) defaults, and no other clause: what a migration tool
    // creates for its own state (the bookkeeping_tables exemption takes only this form).
    bool plain_table = false;
    // create_object of a function or procedure: the types of its arguments as DROP FUNCTION names
    // them (IN, INOUT and VARIADIC ones, quoted), so that an overload is not ambiguous.
    std::vector<std::string> argument_types;
    bool operator==(const SchemaChange&) const = default;
};

// A name through which a statement may read column values, for the policy's sensitive_columns.
// pgrail does not resolve names to columns here (that takes the catalog and search_path): the
// policy matches these names conservatively against the guarded relations the statement reads.
struct ColumnRead {
    enum class Kind : std::uint8_t {
        column,    // `name` or `qualifier.name`; a bare name may also be a whole row (`row_to_json(u)`)
        star,      // `*` or `qualifier.*`: a target list, RETURNING, a function's argument; TABLE t
        field,     // a field selected from an expression's value: `(expression).name`
        named,     // a column a clause names: JOIN ... USING (name), ON CONFLICT (name), COPY t (name) TO
        natural,   // NATURAL JOIN: compares every column its two sides share
        position,  // ORDER BY, GROUP BY or DISTINCT ON by output position, in the outermost SELECT
                   // (`name` the position; "*" for a plain DISTINCT, which compares every one)
        written,   // a column INSERT, UPDATE, ON CONFLICT DO UPDATE, MERGE or COPY FROM stores a value
                   // in ("*": every column of the query's target, for a statement without a column list)
    };
    Kind kind = Kind::column;
    std::string qualifier;  // the relation or alias right before the name; empty when none
    std::string name;
    std::uint32_t level = 0;  // the query (SELECT, INSERT ...) it belongs to: see RangeRead::level
    // The value reaches the client as it is, as a column of the result: a target that is just
    // this column (or star) of the statement's outermost plain SELECT (a statement of its own, or
    // the query of PREPARE or DECLARE CURSOR; not a set operation, not SELECT INTO).
    bool output = false;
    std::string output_name;  // output: the result column's name when an AS gives another
    std::uint32_t output_position = 0;  // output: which target it is (1-based; a star: its first column)
    bool operator==(const ColumnRead&) const = default;
};

// Whether a column read may be a function call in attribute notation: PostgreSQL reads `(x).f`
// and `t.f` as f(x) and f(t) when the value has no column f (any one-argument function).
inline bool may_call_by_attribute(const ColumnRead& read) {
    return read.kind == ColumnRead::Kind::field ||
           (read.kind == ColumnRead::Kind::column && !read.qualifier.empty() && !read.name.empty());
}

// A relation or function that a query of the statement reads rows from (FROM, JOIN, the target of
// INSERT, UPDATE, DELETE, MERGE, COPY), as written.
struct RangeRead {
    std::string schema;     // empty when unqualified
    std::string name;
    std::string alias;      // AS alias; empty when none
    // Which query: each SELECT, INSERT, UPDATE, DELETE, MERGE and COPY of the statement has its
    // own number (an unqualified * reads the relations of its own query only).
    std::uint32_t level = 0;
    bool function = false;  // a function in FROM (`FROM f() AS g`)
    bool renamed = false;   // `AS alias(a, b)`: columns renamed by position
    bool whole = false;     // COPY t TO ... without a column list: every column leaves
    bool operator==(const RangeRead&) const = default;
};

struct Statement {
    // Byte range of the statement in the original query text (sql::normalize()
    // of that text is safe to log: literals replaced, comments dropped).
    std::size_t offset = 0;
    std::size_t length = 0;
    StatementClass statement_class = StatementClass::unknown;
    std::string tag;                         // PostgreSQL's command tag: "ALTER TABLE", "SELECT", ...
    std::vector<ObjectRef> objects;
    std::vector<std::string> functions;      // called functions, qualified as written ("pg_catalog.now", "lower")
    // Of those, the ones called for a value anywhere (not only as the rows of a FROM item,
    // `FROM f() AS g`), each once.
    std::vector<std::string> value_functions;
    std::vector<SettingChange> settings;     // SET / RESET / set_config of named settings
    StatementFlags flags;
    // The parse tree without locations, serialised canonically and injectively (constants and
    // names count; whitespace, comments and keyword case do not): two statements have the same
    // form exactly when their trees are equal. Compared whole, never hashed, where a match grants
    // a migrator power. Computed for statements that may change the schema (is_ddl_like) and
    // for TRUNCATE (the policy reads its CASCADE); empty for the rest and when unparsed.
    std::string structural_form;
    // The key of every single-key advisory-lock call (pg_advisory_lock(key) and its family):
    // the constant as text, "$n" when it is the client's parameter n (a Bind gives its value; not
    // PREPARE's, nor one of a nested text's), "int4" when it is an int2 or int4 whatever its value
    // (a cast to one, hashtext()), or "*" when the key is anything else.
    std::vector<std::string> advisory_lock_keys;
    std::optional<ParseError> error;         // set when class is unknown because it did not parse
    // pgrail's commands the statement reads, in text order (see PgrailCall).
    std::vector<PgrailCall> pgrail_calls;
    // What the statement reads rows and column values from, for sensitive_columns (the statements
    // it wraps, a DO body's and a built-in's query string included).
    std::vector<RangeRead> ranges;
    std::vector<ColumnRead> column_reads;
    // Statements with pgrail_calls: the highest parameter number ($n) the text uses, 0 for none.
    std::size_t highest_parameter = 0;
    // What the statement itself changes in the schema, for a refusal's advice (never for a decision).
    SchemaChange change;
    // The statement that PREPARE, EXPLAIN, DECLARE CURSOR or CREATE TABLE AS wraps,
    // and the static statements of a DO body, analysed in turn. They report their
    // wrapper's byte range. The wrapper's objects, functions, settings and flags
    // already include theirs (for a plain EXPLAIN, objects as read and no flags).
    std::vector<Statement> inner;
    bool operator==(const Statement&) const = default;
};

struct Analysis {
    // Empty for text without statements (empty, only comments or semicolons).
    // Text that could not even be scanned is one unknown statement over all of it.
    std::vector<Statement> statements;
    // The first statement's error, if any statement did not parse or was refused.
    std::optional<ParseError> error;
    bool operator==(const Analysis&) const = default;
};

// Whether a statement (or one inside it) may change client_encoding: SET or RESET client_encoding
// (or NAMES), RESET ALL, DISCARD ALL, set_config of it or of a computed name.
bool may_change_client_encoding(const Statement& statement);

const char* to_string(StatementClass statement_class);
const char* to_string(ObjectRole role);
const char* to_string(CopyDirection direction);

}  // namespace pgrail::sql

// Data that must never reach a rule's clients: sensitive columns (refused or masked) and row
// limits. The policy's keys (sensitive_columns, max_rows, masking) and what a database's catalog
// makes of them (SensitiveSet), shared by the evaluator (statements) and the session (results).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pgrail::policy {

// `schema.table.column` or `table.column` (any schema); each part may be a glob (`*`, `?`).
struct ColumnPattern {
    std::string schema;  // empty: any schema
    std::string table;
    std::string column;
    [[nodiscard]] std::string to_string() const;
    bool operator==(const ColumnPattern&) const = default;
};

enum class SensitiveAction : std::uint8_t { deny, mask };
// mask: what replaces a value in results. hash: a keyed HMAC-SHA-256 of the value, shaped to the
// column's type (equal values mask equally, so joins and counts by the column still work);
// constant: a fixed text (text-like types; other types become NULL); null: NULL.
enum class MaskMethod : std::uint8_t { hash, constant, null };

// A rule's `sensitive_columns`.
struct SensitiveColumns {
    std::vector<ColumnPattern> patterns;
    SensitiveAction action = SensitiveAction::deny;
    MaskMethod method = MaskMethod::hash;
    std::string constant = "********";  // MaskMethod::constant
    [[nodiscard]] bool empty() const { return patterns.empty(); }
    bool operator==(const SensitiveColumns&) const = default;
};

enum class MaxRowsAction : std::uint8_t { truncate, deny };

// A rule's `max_rows`: a result (a SELECT's, a FETCH's, COPY TO STDOUT's) longer than `limit` is
// cut after `limit` rows with a NoticeResponse (truncate) or refused (deny).
struct MaxRows {
    std::uint64_t limit = 0;  // 0: no limit
    MaxRowsAction action = MaxRowsAction::truncate;
    bool operator==(const MaxRows&) const = default;
};

// A column in a result, as RowDescription names it: the table's OID and the column's number.
struct ColumnKey {
    std::uint32_t table_oid = 0;
    std::int16_t column = 0;
    bool operator==(const ColumnKey&) const = default;
};
struct ColumnKeyHash {
    std::size_t operator()(const ColumnKey& key) const {
        return std::hash<std::uint64_t>{}((std::uint64_t{key.table_oid} << 16) ^ static_cast<std::uint16_t>(key.column));
    }
};

// One relation whose columns a rule guards, as the database's catalog has it.
struct SensitiveRelation {
    std::uint32_t oid = 0;
    std::string schema;
    std::string name;
    char kind = 'r';  // pg_class.relkind: r, p, v, m, f
    // The guarded columns' names and numbers. A table: those its patterns name. A partition or
    // inheritance child of one: the same columns. A view or materialized view that depends on a
    // guarded column: every one of its columns (pgrail does not trace a view's columns).
    std::vector<std::string> columns;
    std::vector<std::int16_t> numbers;  // parallel to columns
    // What it guards, for messages: "public.users" for a table, "public.users (through view
    // public.v)" for the rest.
    std::string origin;
    // Always refused, even where the rule masks (pg_stats' sample values: masking them is moot).
    bool always_deny = false;
    // Every column's name (guarded or not): `t.f` where t has no column f is f(t), a call on the
    // whole row (attribute notation). Empty: not known.
    std::vector<std::string> all_columns;
};

// A function whose result is (or is a set of) a guarded table's row type.
struct SensitiveRowFunction {
    std::string schema;
    std::string name;
    std::string origin;  // the relation whose rows it returns: "public.users"
    // It returns them inside another type (an array, a domain or composite over the row type, an
    // OUT column of it): no column of its result is one of the relation's, every use is refused.
    bool inside = false;
};

// What one rule's sensitive_columns mean in one database: the evaluator matches statements'
// names against it, the session masks results by ColumnKey.
struct SensitiveSet {
    std::vector<SensitiveRelation> relations;
    std::vector<SensitiveRowFunction> row_functions;
    // Every guarded (table OID, column number), for results.
    std::unordered_map<ColumnKey, std::size_t, ColumnKeyHash> keys;  // -> index into relations

    // The relations a name as written may be: `schema.name` exactly, a bare name in any schema
    // (pgrail does not follow search_path: a bare name that could be a guarded table counts as one).
    [[nodiscard]] std::vector<const SensitiveRelation*> find(std::string_view schema, std::string_view name) const;
    [[nodiscard]] const SensitiveRowFunction* find_function(std::string_view schema, std::string_view name) const;
    [[nodiscard]] bool empty() const { return relations.empty() && row_functions.empty(); }
};

// Whether a view's definition (pg_get_viewdef's text) may read a whole row of a relation it
// reads (`row_to_json(u)`, `SELECT u FROM users u`): such a view carries every column of that
// relation though the catalog records no column dependency. True when it cannot be analysed.
[[nodiscard]] bool may_read_whole_rows(std::string_view view_definition);

}  // namespace pgrail::policy

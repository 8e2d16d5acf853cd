// The lint catalogue's checks: one small function per rule over libpg_query's tree of a statement.
// They decide on what a statement does (its parse tree), never on how it is spelled.
#include <algorithm>
#include <array>
#include <utility>

#include <fmt/format.h>

#include "lint_internal.hpp"
#include "pgrail/sql/analyzer.hpp"

namespace pgrail::migrations::lint_detail {
namespace {

constexpr int access_exclusive_lock = 8;  // LockStmt.mode: AccessExclusiveLock (the default mode)

// Calls fn(subtype, command body) for every command of an ALTER TABLE on a table.
template <class Fn>
void for_each_command(const Stmt& stmt, Fn&& fn) {
    if (stmt.type != "AlterTableStmt" || str(stmt.body, "objtype") != "OBJECT_TABLE") return;
    for (const Node command : stmt.body.find("cmds")) {
        if (type_of(command) != "AlterTableCmd") continue;
        const Node body = body_of(command);
        fn(str(body, "subtype"), body);
    }
}

std::string altered_table(const Stmt& stmt) { return relation_name(stmt.body.find("relation")); }

// Constraint bodies of a column definition.
template <class Fn>
void for_each_constraint(Node column_def, Fn&& fn) {
    for (const Node constraint : column_def.find("constraints"))
        if (type_of(constraint) == "Constraint") fn(body_of(constraint));
}

bool has_constraint(Node column_def, std::string_view contype) {
    bool found = false;
    for_each_constraint(column_def, [&](Node c) { found = found || str(c, "contype") == contype; });
    return found;
}

// Column definitions a statement adds to an existing table, with the table's name.
template <class Fn>
void for_each_added_column(const LintContext& ctx, const Stmt& stmt, Fn&& fn) {
    const std::string table = altered_table(stmt);
    if (table.empty() || !ctx.existing(table)) return;
    for_each_command(stmt, [&](std::string_view subtype, Node command) {
        if (subtype != "AT_AddColumn") return;
        const Node def = command.find("def");
        if (type_of(def) == "ColumnDef") fn(table, body_of(def));
    });
}

// Every column definition a statement declares (CREATE TABLE and ADD COLUMN), with its table.
template <class Fn>
void for_each_declared_column(const Stmt& stmt, Fn&& fn) {
    if (stmt.type == "CreateStmt") {
        const std::string table = relation_name(stmt.body.find("relation"));
        for (const Node element : stmt.body.find("tableElts"))
            if (type_of(element) == "ColumnDef") fn(table, body_of(element));
        return;
    }
    const std::string table = altered_table(stmt);
    for_each_command(stmt, [&](std::string_view subtype, Node command) {
        const Node def = command.find("def");
        if ((subtype == "AT_AddColumn" || subtype == "AT_AlterColumnType") && type_of(def) == "ColumnDef") {
            Node column = body_of(def);
            fn(table, column);
        }
    });
}

bool is_serial(std::string_view type) {
    return type == "serial" || type == "bigserial" || type == "smallserial" || type == "serial2" ||
           type == "serial4" || type == "serial8";
}

// Functions known not to be VOLATILE: a default calling them is evaluated once and stored in the
// catalog (PostgreSQL 11+), so the table is not rewritten.
bool known_not_volatile(std::string_view function) {
    static constexpr std::array names{
        "now", "transaction_timestamp", "statement_timestamp", "current_setting", "lower", "upper", "btrim",
        "ltrim", "rtrim", "concat", "concat_ws", "length", "char_length", "to_char", "to_timestamp", "to_date",
        "to_number", "make_interval", "make_date", "make_timestamp", "make_timestamptz", "date_trunc",
        "jsonb_build_object", "jsonb_build_array", "json_build_object", "json_build_array", "array_fill",
        "replace", "substr", "substring", "md5", "abs", "greatest", "least", "timezone", "current_database",
        "current_schema", "pg_catalog.now", "int4", "int8", "numeric", "uuid_nil",
    };
    return std::find(names.begin(), names.end(), function) != names.end();
}

// The first function call in an expression that may be VOLATILE (empty: none). Iterative: a
// default can nest deeply.
std::string volatile_call(Node expression) {
    std::vector<Node> stack{expression};
    while (!stack.empty()) {
        const Node node = stack.back();
        stack.pop_back();
        if (!node.is_structured()) continue;
        for (const Node member : node) {
            if (node.is_object() && member.key() == "FuncCall") {
                const std::string name = last_name(member.find("funcname"));
                if (!known_not_volatile(name)) return name;
            }
            if (member.is_structured()) stack.push_back(member);
        }
    }
    return {};
}

// --- table rewrites -------------------------------------------------------------------------

void volatile_default(LintContext& ctx, const Stmt& stmt) {
    for_each_added_column(ctx, stmt, [&](const std::string& table, Node column) {
        const std::string name(str(column, "colname"));
        const ColumnType type = column_type(column.find("typeName"));
        if (is_serial(type.name) && !type.array) {
            ctx.report("volatile-default", stmt,
                       fmt::format("ADD COLUMN {}.{} {}: its nextval() default rewrites every row of {}", table, name,
                                   type.name, table));
            return;
        }
        for_each_constraint(column, [&](Node constraint) {
            if (str(constraint, "contype") != "CONSTR_DEFAULT") return;
            const std::string function = volatile_call(constraint.find("raw_expr"));
            if (function.empty()) return;
            ctx.report("volatile-default", stmt,
                       fmt::format("ADD COLUMN {}.{} DEFAULT {}(...): {}() is {}, so every row of {} is rewritten", table,
                                   name, function, function,
                                   known_not_volatile(function) ? "volatile" : "volatile or not known to be stable",
                                   table));
        });
    });
}

// Whether changing `from` to `to` keeps the stored bytes (no rewrite), per PostgreSQL 15's binary
// coercions and typmod support functions.
bool binary_compatible(const ColumnType& from, const ColumnType& to) {
    if (from.array != to.array) return false;
    if (from == to) return true;
    const auto limit = [](const ColumnType& type) { return type.modifiers.empty() ? -1LL : type.modifiers[0]; };
    if (from.name == "varchar" && to.name == "text") return true;
    if (from.name == "text" && to.name == "varchar" && to.modifiers.empty()) return true;
    if (from.name == "varchar" && to.name == "varchar")
        return to.modifiers.empty() || (!from.modifiers.empty() && limit(to) >= limit(from));
    if (from.name == "varbit" && to.name == "varbit")
        return to.modifiers.empty() || (!from.modifiers.empty() && limit(to) >= limit(from));
    if (from.name == "cidr" && to.name == "inet") return true;
    if (from.name == "numeric" && to.name == "numeric") {
        if (to.modifiers.empty()) return true;
        if (from.modifiers.empty()) return false;
        const long long from_scale = from.modifiers.size() > 1 ? from.modifiers[1] : 0;
        const long long to_scale = to.modifiers.size() > 1 ? to.modifiers[1] : 0;
        return from_scale == to_scale && to.modifiers[0] >= from.modifiers[0];
    }
    for (std::string_view timed : {"timestamp", "timestamptz", "time", "timetz", "interval"}) {
        if (from.name == timed && to.name == timed)
            return to.modifiers.empty() || (!from.modifiers.empty() && limit(to) >= limit(from));
    }
    return false;
}

int integer_width(std::string_view type) {
    if (type == "int2") return 2;
    if (type == "int4") return 4;
    if (type == "int8") return 8;
    return 0;
}

// Whether `to` can hold fewer values than `from` (a change that fails on, or rounds, data).
bool narrowing(const ColumnType& from, const ColumnType& to) {
    if (from.array != to.array) return false;
    const auto limit = [](const ColumnType& type) { return type.modifiers.empty() ? -1LL : type.modifiers[0]; };
    const bool from_string = from.name == "text" || from.name == "varchar" || from.name == "bpchar";
    if (from_string && (to.name == "varchar" || to.name == "bpchar") && !to.modifiers.empty())
        return from.modifiers.empty() || limit(to) < limit(from);
    if (integer_width(from.name) > 0 && integer_width(to.name) > 0)
        return integer_width(to.name) < integer_width(from.name);
    if (from.name == "numeric" && integer_width(to.name) > 0) return true;
    if (from.name == "numeric" && to.name == "numeric" && !to.modifiers.empty()) {
        if (from.modifiers.empty()) return true;
        const long long from_scale = from.modifiers.size() > 1 ? from.modifiers[1] : 0;
        const long long to_scale = to.modifiers.size() > 1 ? to.modifiers[1] : 0;
        return to_scale < from_scale || to.modifiers[0] - to_scale < from.modifiers[0] - from_scale;
    }
    for (std::string_view timed : {"timestamp", "timestamptz", "time", "timetz", "interval"}) {
        if (from.name == timed && to.name == timed && !to.modifiers.empty())
            return from.modifiers.empty() || limit(to) < limit(from);
    }
    if ((from.name == "float8" || from.name == "numeric") && (to.name == "float4")) return true;
    if (from.name == "timestamptz" && to.name == "date") return true;
    if (from.name == "timestamp" && to.name == "date") return true;
    return false;
}

// Calls fn(table, column, old type or nullptr, new type) for each type change of an existing table.
template <class Fn>
void for_each_type_change(const LintContext& ctx, const Stmt& stmt, Fn&& fn) {
    const std::string table = altered_table(stmt);
    if (table.empty() || !ctx.existing(table)) return;
    for_each_command(stmt, [&](std::string_view subtype, Node command) {
        if (subtype != "AT_AlterColumnType") return;
        const Node def = command.find("def");
        if (type_of(def) != "ColumnDef") return;
        const std::string column(str(command, "name"));
        const ColumnType to = column_type(body_of(def).find("typeName"));
        const ColumnType* from = nullptr;
        if (const auto found = ctx.model.tables.find(table); found != ctx.model.tables.end()) {
            if (const auto col = found->second.columns.find(column); col != found->second.columns.end())
                from = &col->second;
        }
        fn(table, column, from, to);
    });
}

void column_type_change(LintContext& ctx, const Stmt& stmt) {
    for_each_type_change(ctx, stmt, [&](const std::string& table, const std::string& column, const ColumnType* from,
                                        const ColumnType& to) {
        if (from != nullptr && (binary_compatible(*from, to) || narrowing(*from, to))) return;
        ctx.report("column-type-change", stmt,
                   from != nullptr
                       ? fmt::format("ALTER COLUMN {}.{} TYPE {} (from {}): not binary-compatible, {} is rewritten", table,
                                     column, describe(to), describe(*from), table)
                       : fmt::format("ALTER COLUMN {}.{} TYPE {}: the migrations do not show its current type; unless "
                                     "binary-compatible, {} is rewritten",
                                     table, column, describe(to), table));
    });
}

void type_narrowing(LintContext& ctx, const Stmt& stmt) {
    for_each_type_change(ctx, stmt, [&](const std::string& table, const std::string& column, const ColumnType* from,
                                        const ColumnType& to) {
        if (from == nullptr || !narrowing(*from, to)) return;
        ctx.report("type-narrowing", stmt,
                   fmt::format("ALTER COLUMN {}.{} TYPE {} narrows {}: longer or larger values fail or are rounded",
                               table, column, describe(to), describe(*from)));
    });
}

void add_generated_column(LintContext& ctx, const Stmt& stmt) {
    for_each_added_column(ctx, stmt, [&](const std::string& table, Node column) {
        const bool generated = has_constraint(column, "CONSTR_GENERATED");
        if (!generated && !has_constraint(column, "CONSTR_IDENTITY")) return;
        ctx.report("add-generated-column", stmt,
                   fmt::format("ADD COLUMN {}.{} {}: every row of {} is rewritten", table, str(column, "colname"),
                               generated ? "GENERATED ... STORED" : "GENERATED ... AS IDENTITY", table));
    });
}

// --- long locks -----------------------------------------------------------------------------

void index_not_concurrent(LintContext& ctx, const Stmt& stmt) {
    if (stmt.type != "IndexStmt" || flag(stmt.body, "concurrent")) return;
    const std::string table = relation_name(stmt.body.find("relation"));
    if (!ctx.existing(table)) return;
    const std::string_view index = str(stmt.body, "idxname");
    ctx.report("index-not-concurrent", stmt,
               fmt::format("CREATE INDEX {}ON {} without CONCURRENTLY blocks writes to {} while it builds",
                           index.empty() ? "" : fmt::format("{} ", index), table, table));
}

std::vector<std::string> dropped_names(const Stmt& stmt) { return object_names(stmt.body.find("objects")); }

void drop_index_not_concurrent(LintContext& ctx, const Stmt& stmt) {
    if (stmt.type != "DropStmt" || str(stmt.body, "removeType") != "OBJECT_INDEX" || flag(stmt.body, "concurrent"))
        return;
    for (const auto& index : dropped_names(stmt))
        ctx.report("drop-index-not-concurrent", stmt,
                   fmt::format("DROP INDEX {} without CONCURRENTLY locks its table (ACCESS EXCLUSIVE)", index));
}

bool has_option(Node options, std::string_view name) {
    for (const Node option : options)
        if (type_of(option) == "DefElem" && str(body_of(option), "defname") == name) return true;
    return false;
}

void reindex_not_concurrent(LintContext& ctx, const Stmt& stmt) {
    if (stmt.type != "ReindexStmt" || has_option(stmt.body.find("params"), "concurrently")) return;
    const std::string target = relation_name(stmt.body.find("relation"));
    ctx.report("reindex-not-concurrent", stmt,
               fmt::format("REINDEX {}without CONCURRENTLY blocks writes while it rebuilds",
                           target.empty() ? "" : target + " "));
}

// Calls fn(table, constraint body) for each constraint added to an existing table.
template <class Fn>
void for_each_added_constraint(const LintContext& ctx, const Stmt& stmt, Fn&& fn) {
    const std::string table = altered_table(stmt);
    if (table.empty() || !ctx.existing(table)) return;
    for_each_command(stmt, [&](std::string_view subtype, Node command) {
        const Node def = command.find("def");
        if (subtype == "AT_AddConstraint" && type_of(def) == "Constraint") fn(table, body_of(def));
    });
}

std::string constraint_label(Node constraint) {
    const std::string_view name = str(constraint, "conname");
    return name.empty() ? std::string() : fmt::format(" {}", name);
}

void foreign_key_not_valid(LintContext& ctx, const Stmt& stmt) {
    for_each_added_constraint(ctx, stmt, [&](const std::string& table, Node constraint) {
        if (str(constraint, "contype") != "CONSTR_FOREIGN" || flag(constraint, "skip_validation")) return;
        ctx.report("foreign-key-not-valid", stmt,
                   fmt::format("ADD CONSTRAINT{} FOREIGN KEY on {} without NOT VALID checks every row while blocking "
                               "writes to {} and {}",
                               constraint_label(constraint), table, table,
                               relation_name(constraint.find("pktable"))));
    });
}

void check_not_valid(LintContext& ctx, const Stmt& stmt) {
    for_each_added_constraint(ctx, stmt, [&](const std::string& table, Node constraint) {
        if (str(constraint, "contype") != "CONSTR_CHECK" || flag(constraint, "skip_validation")) return;
        ctx.report("check-not-valid", stmt,
                   fmt::format("ADD CONSTRAINT{} CHECK on {} without NOT VALID scans every row under ACCESS EXCLUSIVE",
                               constraint_label(constraint), table));
    });
}

void set_not_null(LintContext& ctx, const Stmt& stmt) {
    const std::string table = altered_table(stmt);
    if (table.empty() || !ctx.existing(table)) return;
    for_each_command(stmt, [&](std::string_view subtype, Node command) {
        if (subtype != "AT_SetNotNull") return;
        const std::string column(str(command, "name"));
        if (const auto found = ctx.model.tables.find(table); found != ctx.model.tables.end()) {
            for (const auto& [name, check] : found->second.checks)
                if (check.validated && check.not_null_column == column) return;
        }
        ctx.report("set-not-null", stmt,
                   fmt::format("ALTER COLUMN {}.{} SET NOT NULL scans every row under ACCESS EXCLUSIVE: no validated "
                               "CHECK ({} IS NOT NULL) precedes it",
                               table, column, column));
    });
}

void unique_without_index(LintContext& ctx, const Stmt& stmt) {
    for_each_added_constraint(ctx, stmt, [&](const std::string& table, Node constraint) {
        const std::string_view type = str(constraint, "contype");
        if ((type != "CONSTR_PRIMARY" && type != "CONSTR_UNIQUE") || !str(constraint, "indexname").empty()) return;
        ctx.report("unique-without-index", stmt,
                   fmt::format("ADD{} {} on {} builds its index under ACCESS EXCLUSIVE (no USING INDEX)",
                               constraint_label(constraint), type == "CONSTR_PRIMARY" ? "PRIMARY KEY" : "UNIQUE", table));
    });
}

void exclusion_constraint(LintContext& ctx, const Stmt& stmt) {
    for_each_added_constraint(ctx, stmt, [&](const std::string& table, Node constraint) {
        if (str(constraint, "contype") != "CONSTR_EXCLUSION") return;
        ctx.report("exclusion-constraint", stmt,
                   fmt::format("ADD{} EXCLUDE on {} builds its index and checks every row under ACCESS EXCLUSIVE",
                               constraint_label(constraint), table));
    });
}

// The existing table a statement locks ACCESS EXCLUSIVE, or empty.
std::string access_exclusive_table(const LintContext& ctx, const Stmt& stmt) {
    const auto existing = [&](std::string table) { return ctx.existing(table) ? table : std::string(); };
    if (stmt.type == "AlterTableStmt" && str(stmt.body, "objtype") == "OBJECT_TABLE") {
        // Commands taking weaker locks: VALIDATE CONSTRAINT (SHARE UPDATE EXCLUSIVE), ADD FOREIGN
        // KEY (SHARE ROW EXCLUSIVE), statistics and storage settings.
        bool exclusive = false;
        for_each_command(stmt, [&](std::string_view subtype, Node command) {
            if (subtype == "AT_ValidateConstraint" || subtype == "AT_SetStatistics" || subtype == "AT_ClusterOn" ||
                subtype == "AT_DropCluster" || subtype == "AT_SetOptions" || subtype == "AT_ResetOptions")
                return;
            if (subtype == "AT_AddConstraint" && type_of(command.find("def")) == "Constraint" &&
                str(body_of(command.find("def")), "contype") == "CONSTR_FOREIGN")
                return;
            exclusive = true;
        });
        return exclusive ? existing(altered_table(stmt)) : std::string();
    }
    if (stmt.type == "RenameStmt" && !stmt.body.find("relation").empty())
        return existing(relation_name(stmt.body.find("relation")));
    if (stmt.type == "DropStmt" && str(stmt.body, "removeType") == "OBJECT_TABLE") {
        const auto names = dropped_names(stmt);
        return names.empty() ? std::string() : existing(names.front());
    }
    if (stmt.type == "TruncateStmt" || stmt.type == "LockStmt") {
        if (stmt.type == "LockStmt" && stmt.body.find("mode").integer() != access_exclusive_lock) return {};
        const Node relations = stmt.body.find("relations");
        return relations.empty() ? std::string() : existing(relation_name(body_of(relations.front())));
    }
    if (stmt.type == "ClusterStmt") return existing(relation_name(stmt.body.find("relation")));
    if (stmt.type == "VacuumStmt" && has_option(stmt.body.find("options"), "full")) {
        const Node relations = stmt.body.find("rels");
        if (relations.empty()) return "every table";
        return existing(relation_name(body_of(relations.front()).find("relation")));
    }
    return {};
}

void multiple_exclusive_locks(LintContext& ctx, const std::vector<Stmt>& statements) {
    // The model is updated as statements are applied, so this replays the script's creations.
    LintContext replay{ctx.script, ctx.model, {}, ctx.findings};
    std::string first;
    for (const auto& stmt : statements) {
        const std::string table = access_exclusive_table(replay, stmt);
        if (stmt.type == "CreateStmt") replay.created.insert(relation_name(stmt.body.find("relation")));
        if (stmt.type == "CreateTableAsStmt") replay.created.insert(relation_name(stmt.body.find("into").find("rel")));
        // A second ACCESS EXCLUSIVE statement on a table already locked takes no new lock.
        if (table.empty() || table == first) continue;
        if (first.empty()) {
            first = table;
            continue;
        }
        ctx.report("multiple-exclusive-locks", stmt,
                   fmt::format("this statement locks {} ACCESS EXCLUSIVE while the lock taken earlier on {} is still "
                               "held",
                               table, first));
        return;  // once per migration
    }
}

void vacuum_full(LintContext& ctx, const Stmt& stmt) {
    if (stmt.type != "VacuumStmt" || !has_option(stmt.body.find("options"), "full")) return;
    ctx.report("vacuum-full", stmt, "VACUUM FULL rewrites its tables under ACCESS EXCLUSIVE");
}

void cluster(LintContext& ctx, const Stmt& stmt) {
    if (stmt.type != "ClusterStmt") return;
    const std::string table = relation_name(stmt.body.find("relation"));
    ctx.report("cluster", stmt,
               fmt::format("CLUSTER {}rewrites under ACCESS EXCLUSIVE", table.empty() ? "" : table + " "));
}

void lock_table(LintContext& ctx, const Stmt& stmt) {
    if (stmt.type != "LockStmt") return;
    std::string tables;
    for (const Node relation : stmt.body.find("relations"))
        tables += (tables.empty() ? "" : ", ") + relation_name(body_of(relation));
    ctx.report("lock-table", stmt, fmt::format("LOCK TABLE {} holds its lock until the migration commits", tables));
}

// --- breaking running applications, destroying data ----------------------------------------

void rename_table(LintContext& ctx, const Stmt& stmt) {
    if (stmt.type != "RenameStmt" || str(stmt.body, "renameType") != "OBJECT_TABLE") return;
    const std::string table = relation_name(stmt.body.find("relation"));
    if (!ctx.existing(table)) return;
    ctx.report("rename-table", stmt,
               fmt::format("RENAME {} TO {}: running queries naming {} fail", table, str(stmt.body, "newname"), table));
}

void rename_column(LintContext& ctx, const Stmt& stmt) {
    if (stmt.type != "RenameStmt" || str(stmt.body, "renameType") != "OBJECT_COLUMN") return;
    const std::string table = relation_name(stmt.body.find("relation"));
    if (!ctx.existing(table)) return;
    ctx.report("rename-column", stmt,
               fmt::format("RENAME COLUMN {}.{} TO {}: running queries naming {} fail", table,
                           str(stmt.body, "subname"), str(stmt.body, "newname"), str(stmt.body, "subname")));
}

void drop_column(LintContext& ctx, const Stmt& stmt) {
    const std::string table = altered_table(stmt);
    if (table.empty() || !ctx.existing(table)) return;
    for_each_command(stmt, [&](std::string_view subtype, Node command) {
        if (subtype != "AT_DropColumn") return;
        ctx.report("drop-column", stmt,
                   fmt::format("DROP COLUMN {}.{} destroys its data", table, str(command, "name")));
    });
}

void drop_table(LintContext& ctx, const Stmt& stmt) {
    if (stmt.type != "DropStmt") return;
    const std::string_view kind = str(stmt.body, "removeType");
    if (kind != "OBJECT_TABLE" && kind != "OBJECT_MATVIEW" && kind != "OBJECT_SCHEMA") return;
    for (const auto& name : dropped_names(stmt)) {
        if (kind == "OBJECT_TABLE" && !ctx.existing(name)) continue;
        ctx.report("drop-table", stmt,
                   fmt::format("DROP {} {} destroys its data{}",
                               kind == "OBJECT_TABLE" ? "TABLE" : kind == "OBJECT_MATVIEW" ? "MATERIALIZED VIEW" : "SCHEMA",
                               name, str(stmt.body, "behavior") == "DROP_CASCADE" ? " and that of what depends on it" : ""));
    }
}

void truncate(LintContext& ctx, const Stmt& stmt) {
    if (stmt.type != "TruncateStmt") return;
    std::string tables;
    for (const Node relation : stmt.body.find("relations")) {
        const std::string table = relation_name(body_of(relation));
        if (ctx.existing(table)) tables += (tables.empty() ? "" : ", ") + table;
    }
    if (tables.empty()) return;
    ctx.report("truncate", stmt, fmt::format("TRUNCATE {} destroys every row{}", tables,
                                             str(stmt.body, "behavior") == "DROP_CASCADE" ? " (CASCADE: of referencing tables too)" : ""));
}

void delete_rows(LintContext& ctx, const Stmt& stmt) {
    if (stmt.type != "DeleteStmt") return;
    const std::string table = relation_name(stmt.body.find("relation"));
    if (!ctx.existing(table)) return;
    ctx.report("delete-rows", stmt,
               fmt::format("DELETE FROM {}{} destroys rows", table, stmt.body.contains("whereClause") ? "" : " (every row)"));
}

void not_null_without_default(LintContext& ctx, const Stmt& stmt) {
    for_each_added_column(ctx, stmt, [&](const std::string& table, Node column) {
        const bool not_null = has_constraint(column, "CONSTR_NOTNULL") || has_constraint(column, "CONSTR_PRIMARY");
        if (!not_null || has_constraint(column, "CONSTR_DEFAULT") || has_constraint(column, "CONSTR_IDENTITY") ||
            has_constraint(column, "CONSTR_GENERATED") || is_serial(column_type(column.find("typeName")).name))
            return;
        ctx.report("not-null-without-default", stmt,
                   fmt::format("ADD COLUMN {}.{} NOT NULL without a default fails if {} has any row", table,
                               str(column, "colname"), table));
    });
}

void unbatched_update(LintContext& ctx, const Stmt& stmt) {
    if (stmt.type != "UpdateStmt" || stmt.body.contains("whereClause")) return;
    const std::string table = relation_name(stmt.body.find("relation"));
    if (!ctx.existing(table)) return;
    ctx.report("unbatched-update", stmt,
               fmt::format("UPDATE {} without WHERE rewrites every row in one transaction, holding row locks", table));
}

void alter_enum(LintContext& ctx, const Stmt& stmt) {
    if (stmt.type != "AlterEnumStmt") return;
    const std::string type = last_name(stmt.body.find("typeName"));
    ctx.report("alter-enum", stmt,
               stmt.body.contains("oldVal")
                   ? fmt::format("ALTER TYPE {} RENAME VALUE '{}': readers using the old value break", type,
                                 str(stmt.body, "oldVal"))
                   : fmt::format("ALTER TYPE {} ADD VALUE '{}': no down script can remove an enum value", type,
                                 str(stmt.body, "newVal")));
}

// --- transactions ----------------------------------------------------------------------------

bool concurrent(const Stmt& stmt) {
    if (stmt.type == "IndexStmt" || stmt.type == "DropStmt") return flag(stmt.body, "concurrent");
    if (stmt.type == "ReindexStmt") return has_option(stmt.body.find("params"), "concurrently");
    bool found = false;
    for_each_command(stmt, [&](std::string_view subtype, Node command) {
        if (subtype == "AT_DetachPartition" && flag(body_of(command.find("def")), "concurrent")) found = true;
    });
    return found;
}

void concurrently_in_transaction(LintContext& ctx, const Stmt& stmt) {
    if (ctx.script.no_transaction || !concurrent(stmt)) return;
    ctx.report("concurrently-in-transaction", stmt,
               "CONCURRENTLY in a script without `-- pgrail:no-transaction`: PostgreSQL refuses it inside the "
               "migration's transaction (25001)");
}

void no_transaction_multiple(LintContext& ctx, const std::vector<Stmt>& statements) {
    if (!ctx.script.no_transaction || statements.size() < 2) return;
    ctx.report("no-transaction-multiple-statements", statements[1],
               fmt::format("{} statements in a `-- pgrail:no-transaction` script: a failure after the first leaves "
                           "some of them done and the migration unrecorded",
                           statements.size()));
}

// --- robustness preferences ------------------------------------------------------------------

void prefer_bigint_key(LintContext& ctx, const Stmt& stmt) {
    std::map<std::string, std::pair<std::string, ColumnType>> columns;  // column -> (table, type)
    std::vector<std::pair<std::string, std::string>> keys;               // (table, column)
    for_each_declared_column(stmt, [&](const std::string& table, Node column) {
        const std::string name(str(column, "colname"));
        columns[name] = {table, column_type(column.find("typeName"))};
        if (has_constraint(column, "CONSTR_PRIMARY")) keys.emplace_back(table, name);
    });
    if (stmt.type == "CreateStmt") {
        for (const Node element : stmt.body.find("tableElts")) {
            if (type_of(element) != "Constraint" || str(body_of(element), "contype") != "CONSTR_PRIMARY") continue;
            for (const Node key : body_of(element).find("keys"))
                keys.emplace_back(relation_name(stmt.body.find("relation")), std::string(str(body_of(key), "sval")));
        }
    }
    for (const auto& [table, column] : keys) {
        const auto found = columns.find(column);
        if (found == columns.end()) continue;
        const std::string& type = found->second.second.name;
        if (type == "int4" || type == "int2" || type == "serial" || type == "serial4" || type == "smallserial" ||
            type == "serial2")
            ctx.report("prefer-bigint-key", stmt,
                       fmt::format("primary key {}.{} is {}: it runs out at {}", table, column, type,
                                   type == "int2" || type == "smallserial" || type == "serial2" ? "32767" : "2147483647"));
    }
}

template <class Predicate>
void type_preference(LintContext& ctx, const Stmt& stmt, std::string_view rule, Predicate&& matches,
                     std::string_view advice) {
    for_each_declared_column(stmt, [&](const std::string& table, Node column) {
        const ColumnType type = column_type(column.find("typeName"));
        if (!matches(type)) return;
        const std::string_view name = str(column, "colname");
        ctx.report(rule, stmt,
                   fmt::format("{}.{} is {}: {}", table, name.empty() ? "(column)" : name, describe(type), advice));
    });
}

void prefer_timestamptz(LintContext& ctx, const Stmt& stmt) {
    type_preference(ctx, stmt, "prefer-timestamptz", [](const ColumnType& t) { return t.name == "timestamp"; },
                    "use timestamptz");
}

void prefer_text(LintContext& ctx, const Stmt& stmt) {
    type_preference(ctx, stmt, "prefer-text",
                    [](const ColumnType& t) {
                        return (t.name == "varchar" && !t.modifiers.empty()) || t.name == "bpchar";
                    },
                    "use text (with a CHECK on its length if needed)");
}

void prefer_jsonb(LintContext& ctx, const Stmt& stmt) {
    type_preference(ctx, stmt, "prefer-jsonb", [](const ColumnType& t) { return t.name == "json"; }, "use jsonb");
}

void prefer_identity(LintContext& ctx, const Stmt& stmt) {
    type_preference(ctx, stmt, "prefer-identity", [](const ColumnType& t) { return is_serial(t.name); },
                    "use GENERATED ALWAYS AS IDENTITY");
}

// Only in no-transaction scripts: inside the runner's transaction a failure rolls everything
// back, and the ledger (not IF EXISTS) decides what runs; outside one, a retry after a partial
// run meets what the first attempt already did.
void prefer_if_exists(LintContext& ctx, const Stmt& stmt) {
    if (!ctx.script.no_transaction) return;
    const bool create = stmt.type == "CreateStmt" || stmt.type == "IndexStmt" || stmt.type == "CreateSeqStmt" ||
                        stmt.type == "CreateSchemaStmt" || stmt.type == "CreateExtensionStmt";
    if (create && !flag(stmt.body, "if_not_exists")) {
        ctx.report("prefer-if-exists", stmt, "CREATE without IF NOT EXISTS in a no-transaction script");
        return;
    }
    if (stmt.type == "DropStmt" && !flag(stmt.body, "missing_ok"))
        ctx.report("prefer-if-exists", stmt, "DROP without IF EXISTS in a no-transaction script");
}

}  // namespace

// PL/pgSQL runs a DO block's statements and EXECUTE strings; the rules here read only the
// script's own trees. The analyzer reads inside (a constant EXECUTE, a plain statement) and says
// when the block changes the schema or builds SQL it cannot read.
void dynamic_schema_change(LintContext& ctx, const Stmt& stmt) {
    const bool do_block = stmt.type == "DoStmt";
    if (!do_block && stmt.source->statement_class != sql::StatementClass::ddl) return;
    const sql::Analysis analysis = sql::analyze(stmt.source->text);
    for (const auto& analysed : analysis.statements) {
        const bool runs_text = do_block || analysed.flags.runs_query_text;
        if (!runs_text) continue;
        if (analysed.flags.ddl_capable_dynamic)
            ctx.report("dynamic-schema-change", stmt,
                       fmt::format("{} runs SQL it builds at run time (EXECUTE of a non-constant)", analysed.tag));
        else if (analysed.statement_class == sql::StatementClass::ddl)
            ctx.report("dynamic-schema-change", stmt,
                       fmt::format("{} changes the schema from inside (its statements go unchecked)", analysed.tag));
    }
    if (analysis.error && do_block)
        ctx.report("dynamic-schema-change", stmt, "DO block that pgrail cannot read");
}

// A CALL, or a call of a function the script itself creates, runs statements these rules never
// read (a CREATE FUNCTION's body is not a statement of the script): DDL inside goes unchecked.
void dynamic_schema_calls(LintContext& ctx, const std::vector<Stmt>& statements) {
    std::set<std::string> created;  // functions and procedures the script created so far
    for (const auto& stmt : statements) {
        if (stmt.type == "CallStmt") {
            ctx.report("dynamic-schema-change", stmt, "CALL runs a procedure whose statements go unchecked");
            continue;
        }
        if (stmt.type == "CreateFunctionStmt") {
            created.insert(last_name(stmt.body.find("funcname")));
            continue;
        }
        if (created.empty()) continue;
        const sql::Analysis analysis = sql::analyze(stmt.source->text);
        for (const auto& analysed : analysis.statements)
            for (const auto& function : analysed.functions) {
                const auto dot = function.rfind('.');
                const std::string name = dot == std::string::npos ? function : function.substr(dot + 1);
                if (!created.contains(name)) continue;
                ctx.report("dynamic-schema-change", stmt,
                           fmt::format("calls {}, which this script creates: what it runs goes unchecked", function));
                return;  // once is enough to block
            }
    }
}

const std::vector<RuleCheck>& rule_checks() {
    static const std::vector<RuleCheck> checks{
        {"volatile-default", volatile_default, nullptr},
        {"column-type-change", column_type_change, nullptr},
        {"add-generated-column", add_generated_column, nullptr},
        {"index-not-concurrent", index_not_concurrent, nullptr},
        {"drop-index-not-concurrent", drop_index_not_concurrent, nullptr},
        {"reindex-not-concurrent", reindex_not_concurrent, nullptr},
        {"foreign-key-not-valid", foreign_key_not_valid, nullptr},
        {"check-not-valid", check_not_valid, nullptr},
        {"set-not-null", set_not_null, nullptr},
        {"unique-without-index", unique_without_index, nullptr},
        {"exclusion-constraint", exclusion_constraint, nullptr},
        {"multiple-exclusive-locks", nullptr, multiple_exclusive_locks},
        {"vacuum-full", vacuum_full, nullptr},
        {"cluster", cluster, nullptr},
        {"lock-table", lock_table, nullptr},
        {"rename-table", rename_table, nullptr},
        {"rename-column", rename_column, nullptr},
        {"drop-column", drop_column, nullptr},
        {"drop-table", drop_table, nullptr},
        {"truncate", truncate, nullptr},
        {"delete-rows", delete_rows, nullptr},
        {"type-narrowing", type_narrowing, nullptr},
        {"not-null-without-default", not_null_without_default, nullptr},
        {"unbatched-update", unbatched_update, nullptr},
        {"alter-enum", alter_enum, nullptr},
        {"dynamic-schema-change", dynamic_schema_change, dynamic_schema_calls},
        {"concurrently-in-transaction", concurrently_in_transaction, nullptr},
        {"no-transaction-multiple-statements", nullptr, no_transaction_multiple},
        {"prefer-bigint-key", prefer_bigint_key, nullptr},
        {"prefer-timestamptz", prefer_timestamptz, nullptr},
        {"prefer-text", prefer_text, nullptr},
        {"prefer-jsonb", prefer_jsonb, nullptr},
        {"prefer-identity", prefer_identity, nullptr},
        {"prefer-if-exists", prefer_if_exists, nullptr},
        // rollback-incomplete (lint_rollback.cpp) and unknown-waiver (lint.cpp) run on their own.
    };
    return checks;
}

void apply(LintContext& ctx, const Stmt& stmt) {
    auto& tables = ctx.model.tables;
    if (stmt.type == "CreateStmt") {
        const std::string table = relation_name(stmt.body.find("relation"));
        ctx.created.insert(table);
        TableState state;
        for (const Node element : stmt.body.find("tableElts"))
            if (type_of(element) == "ColumnDef")
                state.columns[std::string(str(body_of(element), "colname"))] =
                    column_type(body_of(element).find("typeName"));
        tables[table] = std::move(state);
        return;
    }
    if (stmt.type == "CreateTableAsStmt") {
        ctx.created.insert(relation_name(stmt.body.find("into").find("rel")));
        return;
    }
    if (stmt.type == "RenameStmt") {
        const std::string table = relation_name(stmt.body.find("relation"));
        const std::string new_name(str(stmt.body, "newname"));
        if (str(stmt.body, "renameType") == "OBJECT_TABLE") {
            if (auto found = tables.find(table); found != tables.end()) {
                auto state = std::move(found->second);
                tables.erase(found);
                tables[new_name] = std::move(state);
            }
            if (ctx.created.erase(table) > 0) ctx.created.insert(new_name);
        } else if (str(stmt.body, "renameType") == "OBJECT_COLUMN") {
            if (auto found = tables.find(table); found != tables.end()) {
                auto& columns = found->second.columns;
                if (auto column = columns.find(std::string(str(stmt.body, "subname"))); column != columns.end()) {
                    auto type = column->second;
                    columns.erase(column);
                    columns[new_name] = std::move(type);
                }
            }
        }
        return;
    }
    if (stmt.type == "DropStmt" && str(stmt.body, "removeType") == "OBJECT_TABLE") {
        for (const auto& name : dropped_names(stmt)) {
            tables.erase(name);
            ctx.created.erase(name);
        }
        return;
    }
    const std::string table = altered_table(stmt);
    if (table.empty()) return;
    for_each_command(stmt, [&](std::string_view subtype, Node command) {
        auto& state = tables[table];
        const Node def = command.find("def");
        const std::string name(str(command, "name"));
        if (subtype == "AT_AddColumn" && type_of(def) == "ColumnDef") {
            state.columns[std::string(str(body_of(def), "colname"))] = column_type(body_of(def).find("typeName"));
        } else if (subtype == "AT_AlterColumnType" && type_of(def) == "ColumnDef") {
            state.columns[name] = column_type(body_of(def).find("typeName"));
        } else if (subtype == "AT_DropColumn") {
            state.columns.erase(name);
        } else if (subtype == "AT_AddConstraint" && type_of(def) == "Constraint") {
            const Node constraint = body_of(def);
            if (str(constraint, "contype") != "CONSTR_CHECK") return;
            CheckState check;
            check.validated = !flag(constraint, "skip_validation");
            const Node expression = constraint.find("raw_expr");
            if (type_of(expression) == "NullTest" && str(body_of(expression), "nulltesttype") == "IS_NOT_NULL") {
                const Node argument = body_of(expression).find("arg");
                if (type_of(argument) == "ColumnRef")
                    check.not_null_column = last_name(body_of(argument).find("fields"));
            }
            state.checks[std::string(str(constraint, "conname"))] = check;
        } else if (subtype == "AT_ValidateConstraint") {
            if (auto found = state.checks.find(name); found != state.checks.end()) found->second.validated = true;
        } else if (subtype == "AT_DropConstraint") {
            state.checks.erase(name);
        }
    });
}

}  // namespace pgrail::migrations::lint_detail

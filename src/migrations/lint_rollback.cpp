// rollback-incomplete: pairs each schema change of the up script with its inverse in the down
// script (CREATE x / DROP x, ADD COLUMN / DROP COLUMN, RENAME a b / RENAME b a, ...) and reports
// the changes nothing undoes. Changes are compared by what they name (kind, table, object),
// unqualified: the schema a name resolves to is not known statically.
#include <set>

#include <fmt/format.h>

#include "lint_internal.hpp"

namespace pgrail::migrations::lint_detail {
namespace {

struct Change {
    std::string key;                  // "create table t", "add column t.c", "rename column a b", ...
    std::vector<std::string> undone;  // keys of the down script that undo it (empty: not paired)
    std::string what;                 // for the message
    std::string expected;             // the inverse, for the message
    std::string scope;                // the table the change is on (empty: none)
};

std::string kind_of(std::string_view object_type) {
    static const std::map<std::string_view, std::string_view> kinds{
        {"OBJECT_TABLE", "table"},       {"OBJECT_INDEX", "index"},         {"OBJECT_VIEW", "view"},
        {"OBJECT_MATVIEW", "materialized view"}, {"OBJECT_FUNCTION", "function"}, {"OBJECT_PROCEDURE", "procedure"},
        {"OBJECT_SEQUENCE", "sequence"}, {"OBJECT_TYPE", "type"},           {"OBJECT_DOMAIN", "domain"},
        {"OBJECT_SCHEMA", "schema"},     {"OBJECT_EXTENSION", "extension"}, {"OBJECT_TRIGGER", "trigger"},
        {"OBJECT_COLUMN", "column"},
    };
    const auto found = kinds.find(object_type);
    return found != kinds.end() ? std::string(found->second) : std::string();
}

// A kind as SQL spells it in messages ("materialized view" -> "MATERIALIZED VIEW").
std::string upper(std::string text) {
    for (char& c : text) c = c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
    return text;
}

Change create(const std::string& kind, const std::string& name, bool replace, std::string scope = {}) {
    Change change;
    change.key = fmt::format("{} {} {}", replace ? "replace" : "create", kind, name);
    change.undone = {fmt::format("drop {} {}", kind, name)};
    if (replace) {
        // CREATE OR REPLACE: the down script restores the previous definition, or drops it.
        change.undone.push_back(fmt::format("replace {} {}", kind, name));
        change.undone.push_back(fmt::format("create {} {}", kind, name));
    }
    change.what = fmt::format("CREATE {}{} {}", replace ? "OR REPLACE " : "", upper(kind), name);
    change.expected = fmt::format("DROP {} {}", upper(kind), name);
    change.scope = std::move(scope);
    return change;
}

// The changes one statement makes, in the key space above.
std::vector<Change> changes_of(const Stmt& stmt) {
    std::vector<Change> out;
    const Node body = stmt.body;
    const auto& type = stmt.type;
    if (type == "CreateStmt") out.push_back(create("table", relation_name(body.find("relation")), false));
    else if (type == "IndexStmt") {
        const std::string table = relation_name(body.find("relation"));
        if (str(body, "idxname").empty()) {
            Change change;
            change.key = "create index on " + table;
            change.what = fmt::format("CREATE INDEX on {} (unnamed)", table);
            change.expected = "DROP INDEX <its name> (name the index so the down script can drop it)";
            change.scope = table;
            out.push_back(std::move(change));
        } else {
            out.push_back(create("index", std::string(str(body, "idxname")), false, table));
        }
    } else if (type == "ViewStmt") out.push_back(create("view", relation_name(body.find("view")), flag(body, "replace")));
    else if (type == "CreateTableAsStmt") {
        const bool view = str(body, "objtype") == "OBJECT_MATVIEW";
        out.push_back(create(view ? "materialized view" : "table", relation_name(body.find("into").find("rel")), false));
    } else if (type == "CreateFunctionStmt") {
        out.push_back(create(flag(body, "is_procedure") ? "procedure" : "function", last_name(body.find("funcname")),
                             flag(body, "replace")));
    } else if (type == "CreateSeqStmt") out.push_back(create("sequence", relation_name(body.find("sequence")), false));
    else if (type == "CreateEnumStmt" || type == "CreateRangeStmt")
        out.push_back(create("type", last_name(body.find("typeName")), false));
    else if (type == "CompositeTypeStmt") out.push_back(create("type", relation_name(body.find("typevar")), false));
    else if (type == "CreateDomainStmt") out.push_back(create("domain", last_name(body.find("domainname")), false));
    else if (type == "CreateSchemaStmt") out.push_back(create("schema", std::string(str(body, "schemaname")), false));
    else if (type == "CreateExtensionStmt") out.push_back(create("extension", std::string(str(body, "extname")), false));
    else if (type == "CreateTrigStmt")
        out.push_back(create("trigger", std::string(str(body, "trigname")), flag(body, "replace"),
                             relation_name(body.find("relation"))));
    else if (type == "DropStmt") {
        const std::string kind = kind_of(str(body, "removeType"));
        if (kind.empty()) return out;
        for (const auto& name : object_names(body.find("objects"))) {
            Change change;
            change.key = fmt::format("drop {} {}", kind, name);
            change.undone = {fmt::format("create {} {}", kind, name), fmt::format("replace {} {}", kind, name)};
            change.what = fmt::format("DROP {} {}", upper(kind), name);
            change.expected = fmt::format("CREATE {} {}", upper(kind), name);
            out.push_back(std::move(change));
        }
    } else if (type == "RenameStmt") {
        const std::string kind = kind_of(str(body, "renameType"));
        const std::string old_name = kind == "column" ? std::string(str(body, "subname"))
                                                      : relation_name(body.find("relation"));
        const std::string new_name(str(body, "newname"));
        if (kind.empty() || old_name.empty()) return out;
        Change change;
        change.key = fmt::format("rename {} {} {}", kind, old_name, new_name);
        change.undone = {fmt::format("rename {} {} {}", kind, new_name, old_name)};
        change.what = fmt::format("RENAME {} {} TO {}", upper(kind), old_name, new_name);
        change.expected = fmt::format("RENAME {} {} TO {}", upper(kind), new_name, old_name);
        change.scope = kind == "column" ? relation_name(body.find("relation")) : std::string();
        out.push_back(std::move(change));
    } else if (type == "AlterTableStmt" && str(body, "objtype") == "OBJECT_TABLE") {
        const std::string table = relation_name(body.find("relation"));
        for (const Node command_node : body.find("cmds")) {
            const Node command = body_of(command_node);
            const std::string_view subtype = str(command, "subtype");
            const Node def = command.find("def");
            std::string name(str(command, "name"));
            const auto pair = [&](std::string forward, std::string inverse, std::string what, std::string expected) {
                out.push_back(Change{std::move(forward), {std::move(inverse)}, std::move(what), std::move(expected), table});
            };
            if (subtype == "AT_AddColumn" && type_of(def) == "ColumnDef") {
                const std::string column(str(body_of(def), "colname"));
                pair(fmt::format("add column {}.{}", table, column), fmt::format("drop column {}.{}", table, column),
                     fmt::format("ADD COLUMN {}.{}", table, column), fmt::format("DROP COLUMN {}.{}", table, column));
            } else if (subtype == "AT_DropColumn") {
                pair(fmt::format("drop column {}.{}", table, name), fmt::format("add column {}.{}", table, name),
                     fmt::format("DROP COLUMN {}.{}", table, name), fmt::format("ADD COLUMN {}.{}", table, name));
            } else if (subtype == "AT_AddConstraint" && type_of(def) == "Constraint") {
                name = std::string(str(body_of(def), "conname"));
                if (name.empty()) {
                    Change change;
                    change.key = fmt::format("add constraint {}.", table);
                    change.what = fmt::format("ADD CONSTRAINT on {} (unnamed)", table);
                    change.expected = "DROP CONSTRAINT <its name> (name the constraint so the down script can drop it)";
                    change.scope = table;
                    out.push_back(std::move(change));
                } else {
                    pair(fmt::format("add constraint {}.{}", table, name), fmt::format("drop constraint {}.{}", table, name),
                         fmt::format("ADD CONSTRAINT {} on {}", name, table),
                         fmt::format("DROP CONSTRAINT {} on {}", name, table));
                }
            } else if (subtype == "AT_DropConstraint") {
                pair(fmt::format("drop constraint {}.{}", table, name), fmt::format("add constraint {}.{}", table, name),
                     fmt::format("DROP CONSTRAINT {} on {}", name, table),
                     fmt::format("ADD CONSTRAINT {} on {}", name, table));
            } else if (subtype == "AT_SetNotNull") {
                pair(fmt::format("set not null {}.{}", table, name), fmt::format("drop not null {}.{}", table, name),
                     fmt::format("SET NOT NULL {}.{}", table, name), fmt::format("DROP NOT NULL {}.{}", table, name));
            } else if (subtype == "AT_DropNotNull") {
                pair(fmt::format("drop not null {}.{}", table, name), fmt::format("set not null {}.{}", table, name),
                     fmt::format("DROP NOT NULL {}.{}", table, name), fmt::format("SET NOT NULL {}.{}", table, name));
            } else if (subtype == "AT_ColumnDefault") {
                // SET DEFAULT is undone by DROP DEFAULT or by setting the previous one back.
                pair(fmt::format("default {}.{}", table, name), fmt::format("default {}.{}", table, name),
                     fmt::format("{} DEFAULT {}.{}", def.valid() ? "SET" : "DROP", table, name),
                     fmt::format("SET or DROP DEFAULT {}.{}", table, name));
            } else if (subtype == "AT_AlterColumnType") {
                pair(fmt::format("type {}.{}", table, name), fmt::format("type {}.{}", table, name),
                     fmt::format("ALTER COLUMN {}.{} TYPE", table, name),
                     fmt::format("ALTER COLUMN {}.{} TYPE <its old type>", table, name));
            }
        }
    }
    return out;
}

}  // namespace

void check_rollback(LintContext& ctx, const std::vector<Stmt>& up, const std::vector<Stmt>& down) {
    std::set<std::string> undone;
    std::set<std::string> dropped_constraints_on;  // tables with some DROP CONSTRAINT in down
    for (const auto& stmt : down)
        for (auto& change : changes_of(stmt)) {
            if (change.key.starts_with("drop constraint "))
                dropped_constraints_on.insert(change.key.substr(16, change.key.find('.') - 16));
            undone.insert(std::move(change.key));
        }
    std::set<std::string> created;  // tables the up script creates: the DROP TABLE undoes all on them
    for (const auto& stmt : up) {
        for (const auto& change : changes_of(stmt)) {
            if (change.key.starts_with("create table ")) created.insert(change.key.substr(13));
            if (!change.scope.empty() && created.contains(change.scope)) continue;
            bool paired = false;
            for (const auto& inverse : change.undone) paired = paired || undone.contains(inverse);
            if (change.key.starts_with("add constraint ") && change.key.ends_with("."))
                paired = dropped_constraints_on.contains(change.scope);
            if (paired) continue;
            ctx.report("rollback-incomplete", stmt,
                       fmt::format("the down script does not undo {} (expected {})", change.what, change.expected));
        }
    }
}

}  // namespace pgrail::migrations::lint_detail

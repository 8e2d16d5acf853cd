// The advice of a refusal: what was refused and the next step, decided on the parsed statement.
#include "advice.hpp"

#include <algorithm>
#include <array>
#include <cctype>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "pgrail/sql/quote.hpp"

namespace pgrail::policy::advice {

namespace {

using sql::ChangeKind;
using sql::ObjectRole;
using sql::Statement;

constexpr std::size_t max_name_length = 60;

// Lower-case letters, digits and single underscores: a name that fits a file name.
std::string slug(std::string_view text) {
    std::string out;
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (std::isalnum(byte) && byte < 0x80) {
            out.push_back(static_cast<char>(std::tolower(byte)));
        } else if (!out.empty() && out.back() != '_') {
            out.push_back('_');
        }
    }
    while (!out.empty() && out.back() == '_') out.pop_back();
    if (out.size() > max_name_length) out.resize(max_name_length);
    while (!out.empty() && out.back() == '_') out.pop_back();
    return out;
}

std::string tag_of(const Statement& statement) {
    if (statement.flags.select_into) return "SELECT INTO";
    return statement.tag.empty() ? "statement" : statement.tag;
}

std::string table_of(const sql::SchemaChange& change) { return sql::quote_qualified(change.schema, change.table); }

// The first object the statement changes (else the first it names), quoted.
const sql::ObjectRef* first_changed(const Statement& statement) {
    for (const auto& object : statement.objects)
        if (object.role != ObjectRole::read) return &object;
    return statement.objects.empty() ? nullptr : &statement.objects.front();
}

std::string joined_columns(const sql::SchemaChange& change, std::string_view separator) {
    std::string out;
    for (const auto& column : change.columns) out += (out.empty() ? "" : std::string(separator)) + column;
    return out;
}

// The next step for a registered migration's own statement: run the migration.
Text registered_statement(const Rule& rule, const Statement& statement, const RegisteredStatement& registered) {
    const auto tag = tag_of(statement);
    Text text;
    if (!registered.rollback) {
        text.message = rule.guards.allows_command(Command::migrate_up)
                           ? fmt::format("pgrail: this {} is part of registered migration {} ({}); apply that instead: "
                                         "SELECT * FROM pgrail.migrate_up('{}')",
                                         tag, registered.version, registered.name, registered.version)
                           : fmt::format("pgrail: this {} is part of registered migration {} ({}); ask an operator to "
                                         "apply it (pgrail migrate up)",
                                         tag, registered.version, registered.name);
        text.hint = fmt::format("Migration {} is registered and not yet applied: pgrail's runner runs all of its "
                                "statements in one transaction and records it in the ledger, never one statement at "
                                "a time. SELECT * FROM pgrail.status() lists the migrations and their states.",
                                registered.version);
    } else {
        text.message = rule.guards.allows_command(Command::migrate_down)
                           ? fmt::format("pgrail: this {} is the rollback of applied migration {} ({}); roll that back "
                                         "instead: SELECT * FROM pgrail.migrate_down('{}')",
                                         tag, registered.version, registered.name, registered.version)
                           : fmt::format("pgrail: this {} is the rollback of applied migration {} ({}); ask an "
                                         "operator to roll it back (pgrail migrate down)",
                                         tag, registered.version, registered.name);
        text.hint = fmt::format("Migration {} is applied: pgrail's runner runs its whole rollback script in one "
                                "transaction and records it in the ledger. SELECT * FROM pgrail.status() lists the "
                                "migrations and their states.",
                                registered.version);
    }
    return text;
}

constexpr std::string_view no_transaction_marker = "-- pgrail:no-transaction";

}  // namespace

std::string propose_call(const std::string& name, const std::string& up_sql, const std::string& down_sql) {
    return fmt::format("SELECT * FROM pgrail.propose_migration({}, {}, {})", sql::quote_literal(name),
                       sql::quote_literal(up_sql), sql::quote_literal(down_sql));
}

std::string migration_name(const Statement& statement) {
    const auto& change = statement.change;
    std::string name;
    switch (change.kind) {
    case ChangeKind::create_table: name = slug("create_" + change.table); break;
    case ChangeKind::add_column: name = slug("add_" + change.table + "_" + joined_columns(change, "_")); break;
    case ChangeKind::drop_column: name = slug("drop_" + change.table + "_" + joined_columns(change, "_")); break;
    case ChangeKind::create_index:
        name = slug(change.name.empty() ? "add_index_on_" + change.table : "add_" + change.name);
        break;
    case ChangeKind::create_extension: name = slug("create_extension_" + change.name); break;
    case ChangeKind::drop_table: {
        const auto* object = first_changed(statement);
        name = slug("drop_" + (object ? object->name : std::string("table")));
        break;
    }
    default: {
        const auto* object = first_changed(statement);
        name = slug(tag_of(statement) + (object ? "_" + object->name : std::string()));
    }
    }
    return name.empty() ? "<name>" : name;
}

// The DROP that undoes a ChangeKind::create_object statement: of the object it creates (a
// trigger on the table it is made on).
std::string drop_of_created(const Statement& statement) {
    static constexpr std::array<std::string_view, 9> droppable = {
        "view", "materialized view", "sequence", "schema", "type", "domain", "function", "procedure", "trigger"};
    const sql::ObjectRef* created = nullptr;
    const sql::ObjectRef* table = nullptr;
    for (const auto& object : statement.objects) {
        if (object.role == ObjectRole::created && created == nullptr) created = &object;
        if (object.role == ObjectRole::altered && object.kind == "table" && table == nullptr) table = &object;
    }
    if (created == nullptr || created->name.empty() ||
        std::find(droppable.begin(), droppable.end(), created->kind) == droppable.end())
        return "<SQL that undoes it>";
    std::string kind = created->kind;
    std::transform(kind.begin(), kind.end(), kind.begin(), [](unsigned char c) { return std::toupper(c); });
    if (created->kind == "function" || created->kind == "procedure")  // with its arguments: overloads
        return fmt::format("DROP {} {}({})", kind, sql::quote_qualified(created->schema, created->name),
                           fmt::join(statement.change.argument_types, ", "));
    if (created->kind != "trigger") return "DROP " + kind + " " + sql::quote_qualified(created->schema, created->name);
    if (table == nullptr) return "<SQL that undoes it>";
    return "DROP TRIGGER " + sql::quote_identifier(created->name) + " ON " +
           sql::quote_qualified(table->schema, table->name);
}

std::string down_script(const Statement& statement) {
    const auto& change = statement.change;
    switch (change.kind) {
    case ChangeKind::create_table: return "DROP TABLE " + table_of(change);
    case ChangeKind::add_column: {
        std::string out = "ALTER TABLE " + table_of(change);
        for (std::size_t index = 0; index < change.columns.size(); ++index)
            out += fmt::format("{} DROP COLUMN {}", index ? "," : "", sql::quote_identifier(change.columns[index]));
        return out;
    }
    case ChangeKind::create_index:
        // An index lives in its table's schema.
        return change.name.empty() ? std::string("DROP INDEX <index name>")
                                   : "DROP INDEX " + sql::quote_qualified(change.schema, change.name);
    case ChangeKind::create_extension: return "DROP EXTENSION " + sql::quote_identifier(change.name);
    case ChangeKind::drop_column:
        return fmt::format("<ALTER TABLE {} ADD COLUMN {} ...>", table_of(change),
                           change.columns.empty() ? std::string("...") : sql::quote_identifier(change.columns.front()));
    case ChangeKind::drop_table: {
        for (const auto& object : statement.objects)
            if (object.role == ObjectRole::dropped)
                return fmt::format("<CREATE TABLE {} ...>", sql::quote_qualified(object.schema, object.name));
        return "<CREATE TABLE ...>";
    }
    case ChangeKind::create_object: return drop_of_created(statement);
    default: return "<SQL that undoes it>";
    }
}

Text schema_change(const Policy& policy, const Rule& rule, const Statement& statement,
                   const std::optional<RegisteredStatement>& registered) {
    if (registered) return registered_statement(rule, statement, *registered);
    const auto& change = statement.change;
    const auto tag = tag_of(statement);
    const auto name = migration_name(statement);
    const auto down = down_script(statement);
    const auto your = fmt::format("<your {}>", tag);
    const auto general_hint = migrations_hint(policy);
    Text text;
    if (rule.guards.ddl == DdlMode::deny) {
        // The rule refuses every schema change: there is nothing this session can propose.
        text.message = fmt::format("pgrail: {} refused: this session may not change the schema; ask an operator",
                                   statement.flags.ddl_capable_dynamic && tag == "DO" ? std::string("DO block") : tag);
        text.hint = general_hint;
        return text;
    }
    if (statement.flags.ddl_capable_dynamic && change.kind == ChangeKind::none) {
        text.message = fmt::format("pgrail: {} refused: its dynamic EXECUTE can change the schema; run the statements "
                                   "themselves, or propose schema changes: {}",
                                   tag == "DO" ? std::string("DO block") : tag,
                                   propose_call("<name>", "<up sql>", "<down sql>"));
        text.hint = "pgrail cannot tell what a dynamically built statement does, so it counts as a schema change. " +
                    general_hint;
        return text;
    }
    switch (change.kind) {
    case ChangeKind::create_index:
        // CONCURRENTLY cannot run in a transaction block: the script runs outside one.
        text.message = fmt::format(
            "pgrail: CREATE INDEX refused; {}: SELECT * FROM pgrail.propose_migration({}, "
            "E'{}\\n<your CREATE INDEX CONCURRENTLY>', {})",
            change.concurrently ? "propose it as a no-transaction migration" : "build it CONCURRENTLY",
            sql::quote_literal(name),
            no_transaction_marker, sql::quote_literal(down));
        text.hint = fmt::format(
            "Without CONCURRENTLY, building an index blocks every write to {} until it is done. CREATE INDEX "
            "CONCURRENTLY cannot run in a transaction block, so the up script starts with the line {} and holds "
            "that one statement{}. {}",
            table_of(change), no_transaction_marker,
            change.name.empty() ? "; name the index, so that the down script can drop it" : "", general_hint);
        return text;
    case ChangeKind::add_column:
        if (change.not_null_without_default) {
            text.message = fmt::format("pgrail: ADD COLUMN ... NOT NULL refused; add it nullable first: {}",
                                       propose_call(name, "<your ALTER TABLE without NOT NULL>", down));
            const auto column = change.columns.empty() ? std::string("the column")
                                                       : sql::quote_identifier(change.columns.front());
            text.hint = fmt::format(
                "Adding a NOT NULL column without a default fails on a table that has rows. The safe sequence, a "
                "migration each: add {0} nullable; backfill it (UPDATE ... WHERE, in batches); then ALTER TABLE {1} "
                "ADD CONSTRAINT ... CHECK ({0} IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, and ALTER COLUMN {0} SET "
                "NOT NULL (it uses the validated check instead of scanning the table). A constant DEFAULT with NOT "
                "NULL is added without a rewrite too. {2}",
                column, table_of(change), general_hint);
            return text;
        }
        text.message = fmt::format("pgrail: ad hoc {} refused; propose it as a migration: {}", tag,
                                   propose_call(name, your, down));
        text.hint = general_hint;
        return text;
    case ChangeKind::drop_column:
    case ChangeKind::drop_table:
        text.message = fmt::format("pgrail: {} refused: data loss needs an operator's approval; propose it: {}",
                                   change.kind == ChangeKind::drop_column ? "DROP COLUMN" : "DROP TABLE",
                                   propose_call(name, your, down));
        text.hint = "Dropping destroys data that no rollback script brings back, so such a migration is applied "
                    "only once an operator has approved it; say so to your user. The down script recreates the "
                    "structure (the data stays lost). " +
                    general_hint;
        return text;
    case ChangeKind::grant:
    case ChangeKind::revoke:
        text.message = fmt::format("pgrail: {} refused: privileges are an operator's decision, not a migration you "
                                   "can approve; ask an operator to run it",
                                   change.kind == ChangeKind::grant ? "GRANT" : "REVOKE");
        text.hint = "Privileges decide who may read and change data: an operator grants or revokes them, on the "
                    "database or by approving a migration. Tell your user which privilege, on what, for which role.";
        return text;
    case ChangeKind::create_extension:
        text.message = fmt::format("pgrail: CREATE EXTENSION refused; extensions belong in a migration: {}",
                                   propose_call(name, your, down));
        text.hint = "An extension adds types, functions and operators to the schema: it is a schema change like any "
                    "other, with DROP EXTENSION as its rollback. " +
                    general_hint;
        return text;
    default:
        text.message = fmt::format("pgrail: ad hoc {} refused; propose it as a migration: {}", tag,
                                   propose_call(name, your, down));
        text.hint = general_hint;
        return text;
    }
}

Text without_where(const Statement& statement) {
    Text text;
    // The command that changes every row, which may be a CTE's (not the statement's tag: review 99).
    const std::string_view command =
        statement.flags.every_row_command.empty() ? std::string_view(statement.tag) : statement.flags.every_row_command;
    if (command == "UPDATE" || command == "DELETE") {
        text.message = fmt::format("pgrail: {} without WHERE refused; add a WHERE clause that selects the rows "
                                   "(WHERE true if you mean every row)",
                                   command);
    } else if (command == "MERGE") {
        text.message = "pgrail: MERGE that matches every row refused; join ON a column of the target named with "
                       "its name or alias, or add AND <condition> to WHEN MATCHED (AND true if you mean every row)";
    } else if (command == "INSERT") {
        text.message = "pgrail: INSERT ... ON CONFLICT DO UPDATE without WHERE refused; add WHERE to DO UPDATE "
                       "(WHERE true if you mean every conflicting row)";
    } else {
        text.message = "pgrail: UPDATE or DELETE without WHERE refused; add a WHERE clause that selects the rows "
                       "(WHERE true if you mean every row)";
    }
    text.hint = "A statement that changes every row is most often a mistake, so pgrail wants the intent stated: a "
                "WHERE clause that selects the rows to change, or WHERE true if every row is meant.";
    return text;
}

Text truncate(const Statement& statement) {
    std::string table;
    for (const auto& object : statement.objects)
        if (object.role == ObjectRole::truncated) {
            table = object.name;
            break;
        }
    Text text;
    text.message = fmt::format("pgrail: TRUNCATE refused: data loss needs an operator's approval; propose it: {}",
                               propose_call(slug("truncate_" + table).empty() ? "<name>" : slug("truncate_" + table),
                                            "<your TRUNCATE>", "<SQL that restores the rows>"));
    text.hint = "TRUNCATE removes every row, beyond what a rollback script can bring back, so it runs only as a "
                "migration an operator has approved; say so to your user. To delete some rows, use DELETE ... "
                "WHERE ... instead.";
    return text;
}

}  // namespace pgrail::policy::advice

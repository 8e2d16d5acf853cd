// Scripts run through pgrail by a migrator session (a migration tool, or by hand), recorded in the ledger.
#include "pgrail/migrations/external_runs.hpp"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "fingerprint_internal.hpp"
#include "internal.hpp"
#include "pgrail/migrations/runner.hpp"
#include "pgrail/protocol/sqlstate.hpp"
#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/quote.hpp"

namespace pgrail::migrations {
namespace {

bool is_relation_kind(const std::string& kind) {
    return kind == "table" || kind == "index" || kind == "view" || kind == "sequence" || kind == "materialized view" ||
           kind == "foreign table" || kind == "relation";
}

// Where a migrator session's run landed. The session resolved the scripts' unqualified names
// under its own search_path, which code in the database may have set (a function, a trigger)
// where pgrail does not read; the ledger must not say applied unless the change is where pgrail's
// runner puts it: under this connection's search_path (the runner's role, the runner's path).
// So, after the session's commit: no session may hold a temporary relation of such a name (the
// session's name may have reached it first), each relation the scripts create (drop) must (not)
// resolve here, each column they add (drop) must (not) be on the table the name resolves to here.
// Why not, or nothing when confirmed. (An ALTER of another kind is checked by the first rule
// only; a CREATE ... IF NOT EXISTS of a relation that was already here, by the first only too.)
// Names are written as quote_ident() writes them: the audit's copy of the message hides what is
// in double quotes, and names are no literal values.
std::optional<std::string> unconfirmed_effect(pqxx::work& tx,
                                              const std::vector<std::pair<const Migration*, Direction>>& complete) {
    std::set<std::string> names;
    std::map<std::string, bool> relation_exists;                        // name -> exists after the run
    std::map<std::pair<std::string, std::string>, bool> column_exists;  // (table, column) -> exists after
    for (const auto& [migration, direction] : complete) {
        const Script& script = direction == Direction::up ? migration->up : migration->down;
        for (const ScriptStatement& registered : script.statements) {
            for (const sql::Statement& statement : sql::analyze(registered.text).statements) {
                for (const sql::ObjectRef& object : statement.objects) {
                    if (!object.schema.empty() || object.temporary || !is_relation_kind(object.kind)) continue;
                    names.insert(object.name);
                    if (object.role == sql::ObjectRole::created) relation_exists[object.name] = true;
                    if (object.role == sql::ObjectRole::dropped) relation_exists[object.name] = false;
                }
                const sql::SchemaChange& change = statement.change;
                if (!change.schema.empty() ||
                    (change.kind != sql::ChangeKind::add_column && change.kind != sql::ChangeKind::drop_column))
                    continue;
                for (const std::string& column : change.columns)
                    column_exists[{change.table, column}] = change.kind == sql::ChangeKind::add_column;
            }
        }
    }
    for (const std::string& name : names) {  // (a few names: one query each)
        if (!tx.exec_params("SELECT 1 FROM pg_catalog.pg_class WHERE relpersistence = 't' AND relname = $1", name)
                 .empty())
            return fmt::format("a temporary relation named {} exists, which the session's unqualified name may "
                               "have reached instead",
                               sql::quote_identifier(name));
    }
    for (const auto& [name, exists] : relation_exists) {
        const bool found = tx.exec_params1("SELECT pg_catalog.to_regclass(pg_catalog.quote_ident($1)) IS NOT NULL", name)[0]
                               .as<bool>();
        if (found != exists)
            return fmt::format("{} {} where pgrail's runner resolves it", sql::quote_identifier(name),
                               exists ? "was not created" : "still exists");
    }
    for (const auto& [column, exists] : column_exists) {
        const bool found =
            tx.exec_params1("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = "
                            "pg_catalog.to_regclass(pg_catalog.quote_ident($1)) AND attname = $2 AND NOT attisdropped)",
                            column.first, column.second)[0]
                .as<bool>();
        if (found != exists)
            return fmt::format("column {} {} {} where pgrail's runner resolves it", sql::quote_identifier(column.second),
                               exists ? "was not added to" : "is still on", sql::quote_identifier(column.first));
    }
    return std::nullopt;
}

}  // namespace

std::vector<std::pair<const Migration*, Direction>> advance_external_progress(
    const Registry& registry, const std::vector<CommittedStatement>& committed, ExternalProgress& progress) {
    std::vector<std::pair<const Migration*, Direction>> complete;
    for (const auto& statement : committed) {
        const Migration* migration = registry.find(statement.version);
        if (migration == nullptr) continue;
        const Script& script = statement.direction == Direction::up ? migration->up : migration->down;
        if (script.statements.empty()) continue;
        auto& next = progress.next[{migration->version, statement.direction}];
        if (next < script.statements.size() && script.statements[next].structural_form == statement.structural_form) {
            ++next;
        } else if (script.statements.front().structural_form == statement.structural_form) {
            next = 1;  // the script started over (a tool that retried)
        } else {
            continue;  // out of order: the run is not the script as registered
        }
        if (next == script.statements.size()) {
            complete.emplace_back(migration, statement.direction);
            progress.next.erase({migration->version, statement.direction});
        }
    }
    return complete;
}

std::vector<ExternalRun> record_external_runs(const Runner& runner, const std::vector<CommittedStatement>& committed,
                                              ExternalProgress& progress, const ExternalActor& actor) {
    const auto complete = advance_external_progress(runner.registry(), committed, progress);
    std::vector<ExternalRun> runs;
    if (complete.empty()) return runs;
    const RunnerOptions& options = runner.options();
    const std::string by = actor.user.empty() ? options.actor : actor.user;
    const std::string detail =
        fmt::format("external: {} (session {})", actor.application_name.empty() ? "(no application_name)"
                                                                                 : actor.application_name,
                    actor.session_id);
    std::vector<nlohmann::json> records;
    auto conn = detail::connect(options.conninfo, options.backstop_key_file);
    try {
        // The same lock as the runner's: the ledger is read and written by one run at a time.
        detail::AdvisoryLock lock(*conn, options.lock_wait);
        detail::ensure_ledger(*conn);
        pqxx::work tx(*conn);
        if (const auto why = unconfirmed_effect(tx, complete))
            throw MigrationError(sqlstate::object_not_in_prerequisite_state,
                                 "not recorded: " + *why + "; the schema shows the change as drift");
        for (const auto& [migration, direction] : complete) {
            const bool applied =
                !tx.exec_params("SELECT 1 FROM pgrail.schema_migrations WHERE version = $1", migration->version)
                     .empty();
            ExternalRun run{migration->version, migration->name, direction, false};
            if (direction == Direction::up && !applied) {
                tx.exec_params0("INSERT INTO pgrail.schema_migrations (version, name, checksum, applied_by, "
                                "execution_ms) VALUES ($1, $2, $3, $4, 0)",
                                migration->version, migration->name, migration->checksum, by);
                detail::insert_event(tx, migration->version, migration->name, migration->checksum, "applied", true,
                                     by, 0, detail);
                run.recorded = true;
            } else if (direction == Direction::down && applied) {
                tx.exec_params0("DELETE FROM pgrail.schema_migrations WHERE version = $1", migration->version);
                detail::insert_event(tx, migration->version, migration->name, migration->checksum, "rolled_back",
                                     true, by, 0, detail);
                run.recorded = true;
            }
            if (run.recorded)
                records.push_back({{"type", "migration"},
                                   {"event", direction == Direction::up ? "applied" : "rolled_back"},
                                   {"version", migration->version},
                                   {"name", migration->name},
                                   {"checksum", migration->checksum},
                                   {"duration_ms", 0},
                                   {"user", by},
                                   {"outcome", "ok"},
                                   {"external", true},
                                   {"application_name", actor.application_name},
                                   {"session_id", actor.session_id},
                                   {"detail", detail}});
            runs.push_back(std::move(run));
        }
        if (!records.empty()) {
            const auto& last = complete.back();
            detail::record_fingerprint(tx,
                                       fmt::format("{} {}_{} ({})", last.second == Direction::up ? "applied" : "rolled_back",
                                                   last.first->version, last.first->name, detail),
                                       last.first->version, by, options.bookkeeping_tables);
        }
        tx.commit();
    } catch (...) {
        detail::rethrow_database_error("cannot record a migration run by a migrator session in the ledger");
    }
    // Committed: an audit line that cannot be written does not undo it (the ledger has the event).
    if (options.audit)
        for (const auto& record : records) (void)options.audit(record);
    return runs;
}

}  // namespace pgrail::migrations

// Scripts run through pgrail by a migrator session (a migration tool, or by hand), recorded in the ledger.
#include "pgrail/migrations/external_runs.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "fingerprint_internal.hpp"
#include "internal.hpp"
#include "pgrail/migrations/runner.hpp"

namespace pgrail::migrations {

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

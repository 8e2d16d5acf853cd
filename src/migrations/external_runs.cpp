// Scripts run through pgrail by a migrator session (a migration tool, or by hand), recorded in the ledger.
#include "pgrail/migrations/external_runs.hpp"

#include <algorithm>
#include <cctype>
#include <iterator>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "fingerprint_internal.hpp"
#include "internal.hpp"
#include "lint_internal.hpp"
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
// where pgrail does not read, and may have met a temporary relation of the name first; the ledger
// must not say applied unless the change is where pgrail's runner makes it: under this
// connection's search_path (the runner's role and path). Read from the catalog after the
// session's commit, as evidence, not as a model of each statement (renames, swaps and cascades
// stay legitimate):
// - no change since the baseline fingerprint to an object of such a name outside the runner's
//   schemas (the run reached another schema's relation);
// - when none within them either (the run shows nowhere: it may have reached temporary
//   relations, which fingerprints leave out), no session may hold a temporary relation of such a
//   name (a DROP that reached one leaves none: not seen; a table swap looks the same);
// - without a baseline (none recorded yet), no relation of such a name may exist outside the
//   runner's schemas (a false "not recorded" where one does legitimately: resolve it by hand).
// Why not, or nothing when confirmed. Names are written as quote_ident() writes them: the audit's
// copy of the message hides what is in double quotes, and names are no literal values.
std::optional<std::string> unconfirmed_effect(pqxx::work& tx,
                                              const std::vector<std::pair<const Migration*, Direction>>& complete) {
    std::set<std::string> names;
    for (const auto& [migration, direction] : complete) {
        const Script& script = direction == Direction::up ? migration->up : migration->down;
        for (const ScriptStatement& registered : script.statements)
            for (const sql::Statement& statement : sql::analyze(registered.text).statements)
                for (const sql::ObjectRef& object : statement.objects)
                    if (object.schema.empty() && !object.temporary && is_relation_kind(object.kind))
                        names.insert(object.name);
    }
    if (names.empty()) return std::nullopt;

    std::set<std::string> runner_schemas;
    for (const auto& row : tx.exec("SELECT unnest(pg_catalog.current_schemas(false))::text"))
        runner_schemas.insert(row[0].as<std::string>());
    const auto baseline =
        tx.exec("SELECT excluded, description FROM pgrail.schema_fingerprints ORDER BY id DESC LIMIT 1");
    if (!baseline.empty()) {
        const std::string recorded = baseline[0][1].as<std::string>();
        const std::string live = detail::live_schema_description(tx, baseline[0][0].as<std::string>());
        auto changed = lines_missing_from(live, recorded);
        for (auto& line : lines_missing_from(recorded, live)) changed.push_back(std::move(line));
        bool shows_here = false;
        for (const std::string& line : changed) {
            const auto subject = fingerprint_subject(line);
            if (!subject || names.count(subject->second) == 0) continue;
            if (runner_schemas.count(subject->first) == 0)
                return fmt::format("the run changed {}.{}, outside the schemas where pgrail's runner resolves {}",
                                   sql::quote_identifier(subject->first), sql::quote_identifier(subject->second),
                                   sql::quote_identifier(subject->second));
            shows_here = true;
        }
        if (shows_here) return std::nullopt;
    }
    for (const std::string& name : names) {  // (a few names: one query each)
        if (!tx.exec_params("SELECT 1 FROM pg_catalog.pg_class WHERE relpersistence = 't' AND relname = $1", name)
                 .empty())
            return fmt::format("a temporary relation named {} exists, which the session's unqualified name may "
                               "have reached, and the run's change shows nowhere in the schema",
                               sql::quote_identifier(name));
        if (!baseline.empty()) continue;
        // No fingerprint yet to tell where the change went: a relation of the name outside the
        // runner's schemas may be what the session's name reached.
        const auto elsewhere = tx.exec_params(
            "SELECT n.nspname::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = "
            "c.relnamespace WHERE c.relname = $1 AND c.relpersistence <> 't' AND n.nspname <> ALL "
            "(pg_catalog.current_schemas(false)) AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND "
            "n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1 LIMIT 1",
            name);
        if (!elsewhere.empty())
            return fmt::format("no schema fingerprint yet tells where the run's change went, and {}.{} exists outside "
                               "the schemas where pgrail's runner resolves {}",
                               sql::quote_identifier(elsewhere[0][0].as<std::string>()), sql::quote_identifier(name),
                               sql::quote_identifier(name));
    }
    return std::nullopt;
}

// Every name the completed scripts hold: each string of their parse trees (relations, new names
// of renames, columns, indexes, constraints, types, functions, schemas, constants) and each word
// in one (a DO block's or a function's body), folded to lower case as unquoted names are.
std::set<std::string> names_mentioned(const std::vector<std::pair<const Migration*, Direction>>& complete) {
    std::set<std::string> names;
    const auto add_words = [&](std::string_view text) {
        names.emplace(text);
        std::string word;
        for (const char c : text) {
            const auto byte = static_cast<unsigned char>(c);
            if (std::isalnum(byte) || c == '_' || c == '$' || byte >= 0x80) {
                word += static_cast<char>(std::tolower(byte));
            } else if (!word.empty()) {
                names.insert(word);
                word.clear();
            }
        }
        if (!word.empty()) names.insert(word);
    };
    for (const auto& [migration, direction] : complete) {
        const lint_detail::ParsedScript parsed(direction == Direction::up ? migration->up : migration->down);
        for (const lint_detail::Stmt& statement : parsed.statements()) {
            std::vector<lint_detail::Node> pending{statement.body};
            while (!pending.empty()) {
                const lint_detail::Node node = pending.back();
                pending.pop_back();
                if (node.is_string()) add_words(node.text());
                else if (node.is_structured())
                    for (const lint_detail::Node child : node) pending.push_back(child);
            }
        }
    }
    return names;
}

// What the run changed: the lines that differ between the baseline and the live schema and are
// about a name its scripts mention (names_of_line). The rest changed around pgrail, or in a
// script that did not run to its end, and stays schema drift: recording the live schema whole
// would accept it unseen. Nothing when the baseline cannot be moved line by line (none yet, or
// read with other exclusions): the live schema is recorded then.
std::optional<SchemaChange> run_change(pqxx::work& tx,
                                       const std::vector<std::pair<const Migration*, Direction>>& complete,
                                       const std::vector<std::string>& bookkeeping_tables) {
    const std::string exclusions = detail::fingerprint_exclusions(tx, bookkeeping_tables);
    const auto baseline =
        tx.exec("SELECT excluded, description FROM pgrail.schema_fingerprints ORDER BY id DESC LIMIT 1");
    if (baseline.empty() || baseline[0][0].as<std::string>() != exclusions) return std::nullopt;
    const auto all = change_between(baseline[0][1].as<std::string>(), detail::live_schema_description(tx, exclusions));
    const auto names = names_mentioned(complete);
    const auto mentioned = [&](const std::string& line) {
        const auto about = names_of_line(line);
        return std::any_of(about.begin(), about.end(), [&](const std::string& name) { return names.count(name) > 0; });
    };
    SchemaChange change;
    std::copy_if(all.added.begin(), all.added.end(), std::back_inserter(change.added), mentioned);
    std::copy_if(all.removed.begin(), all.removed.end(), std::back_inserter(change.removed), mentioned);
    return change;
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
                                 "not recorded: " + *why +
                                     " (once checked by hand, `pgrail migrate resolve VERSION --as applied` records it)");
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
                                       last.first->version, by, options.bookkeeping_tables,
                                       run_change(tx, complete, options.bookkeeping_tables));
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

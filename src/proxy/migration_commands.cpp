// In-band migration commands: run on the migrator connection, answered as ordinary result sets.
#include "pgrail/proxy/migration_commands.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "pgrail/audit/redact_message.hpp"
#include "pgrail/migrations/conninfo.hpp"
#include "pgrail/migrations/error.hpp"
#include "pgrail/migrations/registry.hpp"
#include "pgrail/migrations/runner.hpp"
#include "pgrail/migrations/snapshot.hpp"
#include "pgrail/protocol/sqlstate.hpp"
#include "pgrail/proxy/metrics.hpp"
#include "pgrail/proxy/policy_gate.hpp"

namespace pgrail::proxy {

namespace {

// `message` with each `argument` in it replaced; with `whole_number`, only where no digit or `$`
// stands beside it (a version read as a number is not a part of another number or of "$1").
std::string replace_argument(std::string_view message, std::string_view argument, std::string_view replacement,
                             bool whole_number = false) {
    const auto digit_or_dollar = [](char c) { return (c >= '0' && c <= '9') || c == '$'; };
    std::string out;
    std::size_t from = 0;
    for (auto at = message.find(argument); at != std::string_view::npos; at = message.find(argument, at + 1)) {
        if (at < from) continue;
        const std::size_t end = at + argument.size();
        if (whole_number && ((at > 0 && digit_or_dollar(message[at - 1])) ||
                             (end < message.size() && digit_or_dollar(message[end]))))
            continue;
        out.append(message.substr(from, at - from));
        out.append(replacement);
        from = end;
    }
    out.append(message.substr(from));
    return out;
}

// A runner's audit record, counted for /metrics (migration events by event and outcome).
bool record_migration_event(audit::AuditLog& log, const nlohmann::json& record) {
    const bool written = log.record(record);
    (written ? metrics().audit_lines : metrics().audit_failures).fetch_add(1, std::memory_order_relaxed);
    if (record.contains("event") && record["event"].is_string())
        metrics().count_migration(record["event"].get<std::string>(),
                                  record.contains("outcome") && record["outcome"].is_string()
                                      ? record["outcome"].get<std::string>()
                                      : "ok");
    return written;
}

// Who a session's migration work is recorded as (the ledger's applied_by, proposed_by, decided_by
// and its events' actor): the identity under auth.mode pgrail, since many identities share one role
// and the ledger must tell them apart; the role otherwise.
const std::string& ledger_actor(const SessionContext& session) {
    return session.identity.empty() ? session.user : session.identity;
}

// The runner's audit records name their actor as `user`. A session's other audit lines name the
// role as `user` and who logged in as `identity` (session_fields): the runner's lines for the
// session say it the same way, so `pgrail audit --user/--identity` find them with the rest.
migrations::AuditSink session_audit_sink(std::shared_ptr<audit::AuditLog> log, const SessionContext& session) {
    return [log = std::move(log), role = session.user, identity = ledger_actor(session)](const nlohmann::json& record) {
        if (!record.is_object() || record.contains("identity")) return record_migration_event(*log, record);
        nlohmann::json named = record;
        if (named.value("user", "") == identity) named["user"] = role;
        named["identity"] = identity;
        return record_migration_event(*log, named);
    };
}

// The database a connection with `conninfo` would open, as libpq chooses it: its dbname, else
// PGDATABASE, else the user's name (its user, else PGUSER); empty when none says (the ledger's
// read then tells). Only until the ledger was read once: the server's name is the one used.
std::string conninfo_dbname(const std::string& conninfo) {
    std::vector<migrations::ConninfoOption> options;
    try {
        options = migrations::parse_conninfo(conninfo);
    } catch (const migrations::MigrationError&) {
        return {};
    }
    for (const char* keyword : {"dbname", "user"}) {
        const auto found = std::find_if(options.begin(), options.end(),
                                        [keyword](const auto& option) { return option.keyword == keyword; });
        if (found != options.end() && !found->value.empty()) return found->value;
        const char* from_environment = std::getenv(std::string_view(keyword) == "dbname" ? "PGDATABASE" : "PGUSER");
        if (from_environment != nullptr && *from_environment != '\0') return from_environment;
    }
    return {};
}

}  // namespace

std::string bounded_conninfo(const std::string& conninfo, std::uint32_t connect_timeout_ms,
                             std::uint32_t statement_timeout_ms) {
    std::vector<migrations::ConninfoOption> options;
    try {
        options = migrations::parse_conninfo(conninfo);
    } catch (const migrations::MigrationError&) {
        return conninfo;  // the connection attempt reports what is wrong with it
    }
    // libpq's connect_timeout counts whole seconds (at least 2) and bounds the whole login, as
    // pgrail's own upstream.connect_timeout_ms does for sessions.
    if (!migrations::sets(options, "connect_timeout"))
        options.push_back({"connect_timeout", std::to_string(std::max(2u, (connect_timeout_ms + 999) / 1000)), ""});
    // Unacknowledged data (the server's host gone from the network) ends the connection too.
    if (!migrations::sets(options, "tcp_user_timeout"))
        options.push_back({"tcp_user_timeout", std::to_string(statement_timeout_ms), ""});
    const std::string bound = fmt::format("-c statement_timeout={}", statement_timeout_ms);
    const auto server_options = std::find_if(options.begin(), options.end(),
                                             [](const auto& option) { return option.keyword == "options"; });
    if (server_options == options.end()) {
        options.push_back({"options", bound, ""});
    } else {
        server_options->value += " " + bound;
    }
    return migrations::conninfo_text(options);
}

MigrationCommands::MigrationCommands(const config::ServeConfig& config, std::shared_ptr<audit::AuditLog> audit_log,
                                     std::shared_ptr<PolicyGate> gate)
    : config_(config), audit_log_(std::move(audit_log)), gate_(std::move(gate)), watch_(config_.migrations_dir) {
    auto loaded = watch_.poll(true).registry;
    for (const auto& invalid : loaded->invalid_files())
        spdlog::warn("migrations: {} is not registered: {}", invalid.path.string(), invalid.reason);
    {
        std::lock_guard lock(mutex_);
        registry_ = loaded;
        merge_locked();
    }
    if (!config_.migrator_conninfo.empty()) (void)follow_proposals();
    refresh_snapshot();
    if (!config_.migrator_conninfo.empty()) {
        // Said at start: a schema changed around pgrail while it was down (or before) is on the log.
        const auto drift = migrations::read_schema_drift(
            bounded_conninfo(config_.migrator_conninfo, config_.connect_timeout_ms, config_.statement_timeout_ms));
        if (drift.drifted)
            spdlog::warn("migrations: schema drift: {}", drift.detail());
        else if (!drift.error.empty())
            spdlog::warn("migrations: {}", drift.detail());
    }
}

void MigrationCommands::record_migrator_commit(const SessionContext& session,
                                               const std::vector<migrations::CommittedStatement>& committed,
                                               migrations::ExternalProgress& progress) {
    if (config_.migrator_conninfo.empty() || committed.empty()) return;
    migrations::RunnerOptions options;
    options.conninfo = config_.migrator_conninfo;
    options.lock_timeout = std::chrono::milliseconds(config_.lock_timeout_ms);
    options.statement_timeout = std::chrono::milliseconds(config_.statement_timeout_ms);
    options.lock_wait = std::chrono::milliseconds(config_.lock_wait_ms);
    options.actor = ledger_actor(session);
    options.backstop_key_file = config_.backstop_key_file;
    options.bookkeeping_tables = bookkeeping_tables();
    options.audit = session_audit_sink(audit_log_, session);
    try {
        migrations::Runner runner(registry(), options);
        const auto runs = migrations::record_external_runs(
            runner, committed, progress, {ledger_actor(session), session.application_name, session.session_id});
        bool changed = false;
        for (const auto& run : runs) {
            spdlog::info("session {}: {} {} {}_{} by {} ({}){}", session.session_id,
                         run.direction == migrations::Direction::up ? "applied" : "rolled back",
                         "migration", run.version,
                         run.name, session.user, session.application_name,
                         run.recorded ? ": recorded in the ledger" : ": the ledger said so already");
            changed = changed || run.recorded;
        }
        if (gate_ && !runs.empty()) gate_->catalog_changed();  // the schema moved: sensitive_columns re-resolve
        if (changed) refresh_snapshot();
    } catch (const std::exception& e) {
        // The schema changed and the ledger could not say so: status shows it as schema drift.
        spdlog::error("session {}: a migration run by {} ({}) committed but could not be recorded in the ledger: {}",
                      session.session_id, session.user, session.application_name, e.what());
        (void)audit_log_->record({{"type", "migration"},
                                  {"event", "external_run_not_recorded"},
                                  {"session_id", session.session_id},
                                  {"user", session.user},
                                  {"identity", session.identity.empty() ? session.user : session.identity},
                                  {"application_name", session.application_name},
                                  {"outcome", "failed"},
                                  {"error", audit::redact_message(e.what())}});
    }
}

std::vector<std::string> MigrationCommands::bookkeeping_tables() const {
    std::vector<std::string> tables;
    const auto policy = gate_ ? gate_->current_policy() : nullptr;
    if (!policy) return tables;
    for (const auto& rule : policy->rules)
        for (const auto& table : rule.guards.bookkeeping_tables)
            tables.push_back(table.schema.empty() ? table.table : table.schema + "." + table.table);
    return tables;
}

std::shared_ptr<const migrations::Registry> MigrationCommands::registry() const {
    std::lock_guard lock(mutex_);
    return effective_;
}

std::shared_ptr<const migrations::Registry> MigrationCommands::directory_registry() const {
    std::lock_guard lock(mutex_);
    return registry_;
}

void MigrationCommands::merge_locked() {
    if (approved_.empty()) {
        effective_ = registry_;
        proposal_conflicts_.clear();
        return;
    }
    auto merged = migrations::merge_proposals(*registry_, approved_);
    effective_ = std::make_shared<const migrations::Registry>(std::move(merged.registry));
    proposal_conflicts_ = std::move(merged.conflicts);
}

std::optional<protocol::ErrorMessage> MigrationCommands::follow_proposals() {
    std::vector<migrations::Proposal> approved;
    try {
        approved = migrations::read_approved_proposals(
            bounded_conninfo(config_.migrator_conninfo, config_.connect_timeout_ms, config_.statement_timeout_ms));
    } catch (const std::exception& e) {
        spdlog::warn("migrations: cannot read the proposed migrations, keeping those read before: {}", e.what());
        approved = {};
        std::lock_guard lock(mutex_);
        approved = approved_;
    }
    bool changed = false;
    std::vector<std::string> conflicts;
    {
        std::lock_guard lock(mutex_);
        const auto same = [](const migrations::Proposal& a, const migrations::Proposal& b) {
            return a.version == b.version && a.checksum == b.checksum && a.name == b.name;
        };
        changed = !std::equal(approved.begin(), approved.end(), approved_.begin(), approved_.end(), same);
        if (changed) {
            approved_ = std::move(approved);
            merge_locked();
        }
        conflicts = proposal_conflicts_;
    }
    if (changed) refresh_snapshot();
    if (conflicts.empty()) return std::nullopt;
    std::string detail;
    for (const auto& conflict : conflicts) detail += (detail.empty() ? "" : "; ") + conflict;
    return protocol::ErrorMessage{
        "ERROR", sqlstate::object_not_in_prerequisite_state, "pgrail: " + conflicts.front(), detail,
        "A migration's version names one pair of scripts: remove or restore the file (an exported proposal has the "
        "same checksum), or reject the proposal (pgrail migrate reject VERSION --reason ...)."};
}

void MigrationCommands::reload() {
    try {
        std::shared_ptr<const migrations::Registry> loaded;
        {
            std::lock_guard watch_lock(watch_mutex_);
            loaded = watch_.poll(true).registry;
            directory_error_.reset();
        }
        spdlog::info("migrations: {} registered, {} invalid files in {}", loaded->migrations().size(),
                     loaded->invalid_files().size(), config_.migrations_dir);
        adopt(std::move(loaded));
    } catch (const std::exception& e) {
        spdlog::error("migrations: reload of {} failed, keeping the previous registry: {}", config_.migrations_dir,
                      e.what());
    }
}

void MigrationCommands::adopt(std::shared_ptr<const migrations::Registry> loaded) {
    {
        std::lock_guard lock(mutex_);
        registry_ = std::move(loaded);
        merge_locked();
    }
    refresh_snapshot();
}

std::optional<protocol::ErrorMessage> MigrationCommands::follow_directory() {
    std::shared_ptr<const migrations::Registry> adopted;
    {
        std::lock_guard watch_lock(watch_mutex_);
        migrations::DirectoryWatch::Reading reading;
        try {
            reading = watch_.poll();
        } catch (const std::exception& e) {
            spdlog::warn("migrations: {}; the registry read before stays in use", e.what());
            return protocol::ErrorMessage{
                "ERROR", sqlstate::io_error, fmt::format("pgrail: cannot read the migrations directory: {}", e.what()),
                "pgrail reads the migrations directory before every pgrail.* command; the registry read before "
                "stays in use for migrator statements",
                "An operator must make the directory readable by pgrail again."};
        }
        if (!reading.changed) return directory_error_;
        // Files that became invalid with this change and name a version (a migration file, not a
        // README): adopting them would silently unregister a migration, or let a later one apply
        // before it. Keep the registry read before, and say which file is wrong.
        const auto previous = directory_registry();
        std::vector<const migrations::InvalidFile*> broken;
        for (const auto& file : reading.registry->invalid_files()) {
            if (!file.version) continue;
            const auto& before = previous->invalid_files();
            const bool known = std::any_of(before.begin(), before.end(), [&](const auto& old) {
                return old.path == file.path && old.reason == file.reason;
            });
            if (!known) broken.push_back(&file);
        }
        if (!broken.empty()) {
            std::string detail;
            for (const auto* file : broken)
                detail += fmt::format("{}{}: {}", detail.empty() ? "" : "; ", file->path.filename().string(),
                                      file->reason);
            // Name the file at fault (of a pair, the other one's reason only points at it).
            const auto* named = broken.front();
            for (const auto* file : broken)
                if (!file->reason.starts_with("its up script") && !file->reason.starts_with("its rollback script")) {
                    named = file;
                    break;
                }
            const bool reported = directory_error_.has_value();
            directory_error_ = protocol::ErrorMessage{
                "ERROR", sqlstate::object_not_in_prerequisite_state,
                fmt::format("pgrail: migration file {} in the migrations directory is not valid ({}); fix or remove "
                            "it, until then pgrail keeps the migrations it read before",
                            named->path.filename().string(), named->reason),
                detail,
                "pgrail reads the migrations directory before every pgrail.* command and adopts a change only when "
                "every migration file in it is valid; SIGHUP adopts the directory as it is (invalid files then "
                "show as invalid in pgrail.status())."};
            if (!reported)
                spdlog::warn("migrations: not adopting the changed directory {}: {}", config_.migrations_dir, detail);
            return directory_error_;
        }
        directory_error_.reset();
        adopted = reading.registry;
    }
    spdlog::info("migrations: {} changed: {} registered, {} invalid files", config_.migrations_dir,
                 adopted->migrations().size(), adopted->invalid_files().size());
    adopt(std::move(adopted));
    return std::nullopt;
}

void MigrationCommands::refresh_snapshot() {
    // Refreshes may overlap (commands of several sessions, SIGHUP). One that started later read
    // a registry and a ledger at least as new, so an older one never replaces it.
    const auto ticket = ++refresh_started_;
    const auto registry = this->registry();
    migrations::LedgerState ledger;
    if (!config_.migrator_conninfo.empty()) {
        try {
            // Bounded: a database that does not answer costs a reload (or a command) this long at
            // most, never the listener or a session's thread (they never wait for it).
            ledger = migrations::read_ledger(
                bounded_conninfo(config_.migrator_conninfo, config_.connect_timeout_ms, config_.statement_timeout_ms),
                std::chrono::milliseconds(config_.lock_timeout_ms));
        } catch (const std::exception& e) {
            // Without the ledger every migration counts as pending: down scripts do not match.
            spdlog::warn("migrations: cannot read the ledger: {}", e.what());
        }
    }
    auto snapshot = std::make_shared<const migrations::Snapshot>(registry, std::move(ledger));
    std::lock_guard lock(mutex_);
    if (ticket < refresh_published_) return;
    refresh_published_ = ticket;
    // (A ledger that could not be read keeps the database known before, or the conninfo's dbname.)
    if (!snapshot->ledger().database.empty()) migrations_database_ = snapshot->ledger().database;
    if (migrations_database_.empty()) migrations_database_ = conninfo_dbname(config_.migrator_conninfo);
    gate_->set_migration_matcher(migrations_database_, std::make_shared<const policy::MigrationMatcher>(
        [snapshot](const sql::Statement& statement) -> std::optional<policy::RegisteredStatement> {
            auto found = snapshot->match(statement);
            if (!found) return std::nullopt;
            return policy::RegisteredStatement{std::move(found->version), std::move(found->name),
                                               found->direction == migrations::Direction::down};
        }));
}

// A command's arguments as the audit shows them: a registered migration's version as it is (it
// says what ran), anything else redacted to its placeholder, like a statement's literals.
namespace {

nlohmann::json audited_arguments(const migrations::Registry& registry, const std::vector<std::string>& arguments) {
    nlohmann::json out = nlohmann::json::array();
    for (std::size_t index = 0; index < arguments.size(); ++index) {
        if (registry.find(arguments[index]) != nullptr) {
            out.push_back(arguments[index]);
        } else {
            out.push_back("$" + std::to_string(index + 1));
        }
    }
    return out;
}

}  // namespace

InbandOutcome MigrationCommands::run(const SessionContext& session, policy::Command command,
                                     const std::vector<std::string>& arguments, AbandonedFlag abandoned) {
    InbandOutcome outcome;
    // The directory first: the command (and the audited arguments) see the registry as it is now.
    auto directory_error = follow_directory();
    // Then the approved proposals: an approved proposal is a registered migration.
    if (!directory_error && !config_.migrator_conninfo.empty()) {
        auto proposals_error = follow_proposals();
        if (proposals_error && command != policy::Command::reject_migration)
            directory_error = std::move(proposals_error);
    }
    bool quotes_server = false;  // the error quotes the server's answer to a script (MigrationError)
    std::string audit_message;   // what the audit keeps of such an error (MigrationError::own_words)
    nlohmann::json event = session_fields(session);
    event["event"] = "command";
    event["command"] = fmt::format("pgrail.{}", sql::name_of(command));
    event["arguments"] = audited_arguments(*registry(), arguments);
    if (directory_error) {
        outcome.error = *directory_error;
    } else if (config_.migrator_conninfo.empty()) {
        outcome.error = {"ERROR",
                         sqlstate::object_not_in_prerequisite_state,
                         "pgrail: in-band migration commands need a migrator connection",
                         {},
                         "Set migrations.migrator (a libpq connection string) in pgrail's configuration."};
    } else {
        // No lock of pgrail's own here: status and plan read the ledger with a plain query and
        // never wait behind another session's migration; up and down wait for the advisory lock
        // at most lock_wait (then 55P03 naming the holder), and stop if the client goes away.
        const auto current = registry();
        migrations::RunnerOptions options;
        options.conninfo = config_.migrator_conninfo;
        options.lock_timeout = std::chrono::milliseconds(config_.lock_timeout_ms);
        options.statement_timeout = std::chrono::milliseconds(config_.statement_timeout_ms);
        options.lock_wait = std::chrono::milliseconds(config_.lock_wait_ms);
        options.abandoned = std::move(abandoned);
        options.actor = ledger_actor(session);
        options.require_verified = config_.require_verified;
        options.proof_timeout = std::chrono::milliseconds(config_.proposal_proof_timeout_ms);
        options.proof_statement_timeout = std::chrono::milliseconds(config_.proposal_statement_timeout_ms);
        options.proof_max_scratch_bytes = config_.proposal_max_scratch_bytes;
        options.proof_turns = config_.proposal_proofs_at_once;
        options.proposals_waiting = config_.proposals_waiting_per_proposer;
        options.verify_sample_rows = config_.verify_sample_rows;
        options.verify_exclude_columns = config_.verify_exclude_columns;
        options.backstop_key_file = config_.backstop_key_file;
        options.bookkeeping_tables = bookkeeping_tables();
        options.audit = session_audit_sink(audit_log_, session);
        // auto_approve and the lint levels (docs/lint.md) are the calling session's rule's.
        if (gate_) {
            const auto policy = gate_->current_policy();
            if (policy && policy->rule_for(session).guards.auto_approve_clean)
                options.auto_approve = migrations::AutoApprove::clean;
            if (policy) options.lint = policy->rule_for(session).guards.lint;
        }
        try {
            migrations::Runner runner(current, options);
            outcome.table = migrations::run_command(runner, command, arguments);
            outcome.ok = true;
        } catch (const migrations::MigrationError& e) {
            outcome.error = {"ERROR", e.sqlstate(), e.message(), e.detail(), e.hint()};
            quotes_server = e.quotes_server();
            audit_message = e.own_words();
        } catch (const std::exception& e) {
            outcome.error = {"ERROR",
                             sqlstate::system_error,
                             fmt::format("pgrail: {} failed: {}", sql::name_of(command), e.what()),
                             {},
                             {}};
        }
        // Only a run that changed something (or failed, perhaps partway) makes the catalogs be read
        // again: an agent's migrate_up() with nothing pending must not make every session with
        // sensitive_columns wait for a fresh read.
        if (sql::runs_migration(command) && (!outcome.ok || !outcome.table.rows.empty())) {
            if (gate_) gate_->catalog_changed();  // new views or columns: sensitive_columns re-resolve
            refresh_snapshot();
        }
        // An approval (or a rejection) changes the registry at once, for migrator matching too.
        if (outcome.ok &&
            (command == policy::Command::propose_migration || command == policy::Command::approve_migration ||
             command == policy::Command::reject_migration))
            (void)follow_proposals();
    }
    // A run over the live data fails with the server's words, which may quote a row the client
    // may not read (a failing row, a duplicate key, a value an expression could not cast): the
    // client gets them without their quoted values and DETAIL (the operator's CLI, not the ledger,
    // shows them whole).
    if (!outcome.ok && quotes_server) {
        outcome.error.message = audit::redact_message(outcome.error.message);
        outcome.error.detail = audit::redact_message(outcome.error.detail);
    }
    event["outcome"] = outcome.ok ? "ok" : "error";
    if (!outcome.ok) {
        event["sqlstate"] = outcome.error.sqlstate;
        // The message may quote an argument (an unknown version), as written or as read (a
        // version without its leading zeros): redacted as the arguments are. Of a script's failure
        // it keeps pgrail's words only (MigrationError::own_words).
        std::string message = audit_message.empty() ? outcome.error.message : audit_message;
        const auto& shown = event["arguments"];
        for (std::size_t index = 0; index < arguments.size(); ++index) {
            if (arguments[index].empty() || shown[index] == arguments[index]) continue;
            const auto& replacement = shown[index].get_ref<const std::string&>();
            message = replace_argument(message, arguments[index], replacement);
            // A version as read ("0042" said as "42"): a whole number only, not a digit of another.
            if (auto version = migrations::canonical_version(arguments[index]); version && *version != arguments[index])
                message = replace_argument(message, *version, replacement, true);
        }
        event["message"] = audit::redact_message(message);
    }
    if (audit_log_->record(std::move(event))) {
        metrics().audit_lines.fetch_add(1, std::memory_order_relaxed);
        return outcome;
    }
    metrics().audit_failures.fetch_add(1, std::memory_order_relaxed);
    // Every command but status and plan writes the ledger (an apply, a proposal, a verify). A run
    // that failed may have applied migrations before the one that failed (the runner's own lines
    // record each): its client hears the truth too.
    // A command that failed on its own audit line (58030: a proposal, approval or rejection is
    // recorded, its line is not; a run's intent line, nothing done) already says what happened.
    const bool only_read = command == policy::Command::status || command == policy::Command::plan;
    if ((outcome.ok && !only_read) ||
        (!outcome.ok && (sql::runs_migration(command) || outcome.error.sqlstate == sqlstate::io_error))) {
        // The client hears the truth: what committed (the ledger records it), or why nothing did.
        spdlog::error("session {}: audit log write failed for pgrail.{} ({}): {}", session.session_id,
                      sql::name_of(command),
                      outcome.ok ? "it ran" : fmt::format("answered its own error [{}]", outcome.error.sqlstate),
                      audit_log_->last_error());
        return outcome;
    }
    // Nothing the client has seen happened yet, or the command failed (a refused proposal, an
    // unknown version): fail closed, as a refusal does; the command's own error goes to the log.
    spdlog::error("session {}: audit log write failed for pgrail.{}: {}; answered 58030{}", session.session_id,
                  sql::name_of(command), audit_log_->last_error(),
                  outcome.ok ? std::string() : fmt::format(" instead of its error [{}]", outcome.error.sqlstate));
    outcome.ok = false;
    outcome.table = {};
    outcome.error = audit_unavailable_error();
    return outcome;
}

std::string conninfo_with_server_tls(const std::string& conninfo, const config::ServerTlsConfig& tls) {
    if (conninfo.empty() || !tls.enabled()) return conninfo;
    std::vector<migrations::ConninfoOption> options;
    try {
        options = migrations::parse_conninfo(conninfo);
    } catch (const std::exception&) {
        return conninfo;
    }
    if (migrations::sets(options, "sslmode")) return conninfo;  // the operator's own choice
    options.push_back({"sslmode", std::string(config::to_string(tls.sslmode)), {}});
    if (!tls.ca_file.empty() && tls.ca_file != "system" && !migrations::sets(options, "sslrootcert"))
        options.push_back({"sslrootcert", tls.ca_file, {}});
    if (!tls.cert_file.empty() && !migrations::sets(options, "sslcert"))
        options.push_back({"sslcert", tls.cert_file, {}});
    if (!tls.key_file.empty() && !migrations::sets(options, "sslkey")) options.push_back({"sslkey", tls.key_file, {}});
    return migrations::conninfo_text(options);
}

}  // namespace pgrail::proxy

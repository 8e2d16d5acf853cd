// In-band migration commands: run on the migrator connection, answered as ordinary result sets.
#include "pgrail/proxy/migration_commands.hpp"

#include <libpq-fe.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "pgrail/migrations/error.hpp"
#include "pgrail/migrations/runner.hpp"
#include "pgrail/migrations/snapshot.hpp"

namespace pgrail::proxy {

namespace {

// E'' quoting is independent of standard_conforming_strings.
std::string quote_literal(std::string_view text) {
    std::string out = "E'";
    for (char c : text) {
        if (c == '\\' || c == '\'') out.push_back(c);
        out.push_back(c);
    }
    out.push_back('\'');
    return out;
}

std::string_view type_name(std::uint32_t oid) {
    switch (oid) {
        case migrations::oid_bool: return "boolean";
        case migrations::oid_int8: return "bigint";
        case migrations::oid_timestamptz: return "timestamptz";
        default: return "text";
    }
}

std::string quote_identifier(std::string_view name) {
    std::string out = "\"";
    for (char c : name) {
        if (c == '"') out.push_back(c);
        out.push_back(c);
    }
    out.push_back('"');
    return out;
}

// A conninfo value in single quotes (libpq's key=value syntax).
std::string conninfo_value(std::string_view value) {
    std::string out = "'";
    for (char c : value) {
        if (c == '\\' || c == '\'') out.push_back('\\');
        out.push_back(c);
    }
    out.push_back('\'');
    return out;
}

}  // namespace

std::string bounded_conninfo(const std::string& conninfo, std::uint32_t connect_timeout_ms,
                             std::uint32_t statement_timeout_ms) {
    char* error = nullptr;
    PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
    if (options == nullptr) {
        PQfreemem(error);
        return conninfo;  // the connection attempt reports what is wrong with it
    }
    std::string out;
    std::string server_options;
    bool has_connect_timeout = false;
    bool has_tcp_user_timeout = false;
    for (const auto* option = options; option->keyword != nullptr; ++option) {
        if (option->val == nullptr) continue;
        const std::string_view keyword = option->keyword;
        if (keyword == "options") {
            server_options = option->val;
            continue;
        }
        if (keyword == "connect_timeout") has_connect_timeout = true;
        if (keyword == "tcp_user_timeout") has_tcp_user_timeout = true;
        out += fmt::format("{}={} ", keyword, conninfo_value(option->val));
    }
    PQconninfoFree(options);
    // libpq's connect_timeout counts whole seconds (at least 2) and bounds the whole login, as
    // pgrail's own upstream.connect_timeout_ms does for sessions.
    const auto connect_timeout_s = std::max(2u, (connect_timeout_ms + 999) / 1000);
    if (!has_connect_timeout) out += fmt::format("connect_timeout={} ", connect_timeout_s);
    // Unacknowledged data (the server's host gone from the network) ends the connection too.
    if (!has_tcp_user_timeout) out += fmt::format("tcp_user_timeout={} ", statement_timeout_ms);
    if (!server_options.empty()) server_options += ' ';
    server_options += fmt::format("-c statement_timeout={}", statement_timeout_ms);
    out += "options=" + conninfo_value(server_options);
    return out;
}

std::string result_set_sql(const migrations::ResultTable& table) {
    std::string columns;
    for (std::size_t i = 0; i < table.columns.size(); ++i) {
        if (i > 0) columns += ", ";
        columns += quote_identifier(table.columns[i]);
    }
    auto value = [&](std::size_t column, const std::optional<std::string>& text) {
        const auto type = type_name(column < table.types.size() ? table.types[column] : migrations::oid_text);
        return fmt::format("{}::{}", text ? quote_literal(*text) : std::string("NULL"), type);
    };
    std::string rows;
    if (table.rows.empty()) {
        // No rows: one typed row that WHERE false removes, so the columns still describe.
        rows = "(";
        for (std::size_t i = 0; i < table.columns.size(); ++i) rows += (i ? ", " : "") + value(i, std::nullopt);
        rows += ")";
        return fmt::format("SELECT * FROM (VALUES {}) AS pgrail_result({}) WHERE false", rows, columns);
    }
    for (std::size_t r = 0; r < table.rows.size(); ++r) {
        rows += r ? ", (" : "(";
        for (std::size_t i = 0; i < table.columns.size(); ++i) {
            if (i > 0) rows += ", ";
            rows += value(i, i < table.rows[r].size() ? table.rows[r][i] : std::nullopt);
        }
        rows += ")";
    }
    return fmt::format("SELECT * FROM (VALUES {}) AS pgrail_result({})", rows, columns);
}

MigrationCommands::MigrationCommands(const config::ServeConfig& config, std::shared_ptr<audit::AuditLog> audit_log,
                                     std::shared_ptr<PolicyGate> gate)
    : config_(config), audit_log_(std::move(audit_log)), gate_(std::move(gate)) {
    auto loaded = std::make_shared<const migrations::Registry>(migrations::Registry::load(config_.migrations_dir));
    for (const auto& invalid : loaded->invalid_files())
        spdlog::warn("migrations: {} is not registered: {}", invalid.path.string(), invalid.reason);
    {
        std::lock_guard lock(mutex_);
        registry_ = loaded;
    }
    refresh_snapshot();
}

std::shared_ptr<const migrations::Registry> MigrationCommands::registry() const {
    std::lock_guard lock(mutex_);
    return registry_;
}

void MigrationCommands::reload() {
    try {
        auto loaded = std::make_shared<const migrations::Registry>(migrations::Registry::load(config_.migrations_dir));
        spdlog::info("migrations: {} registered, {} invalid files in {}", loaded->migrations().size(),
                     loaded->invalid_files().size(), config_.migrations_dir);
        {
            std::lock_guard lock(mutex_);
            registry_ = loaded;
        }
        refresh_snapshot();
    } catch (const std::exception& e) {
        spdlog::error("migrations: reload of {} failed, keeping the previous registry: {}", config_.migrations_dir,
                      e.what());
    }
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
    gate_->set_migration_matcher(std::make_shared<const policy::MigrationMatcher>(
        [snapshot](const sql::Statement& statement) { return snapshot->match(statement).has_value(); }));
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

InbandOutcome MigrationCommands::run(const SessionContext& session, const std::string& command,
                                     const std::vector<std::string>& arguments, AbandonedFlag abandoned) {
    InbandOutcome outcome;
    nlohmann::json event = {{"event", "command"},
                            {"session_id", session.session_id},
                            {"client_address", session.client_address},
                            {"user", session.user},
                            {"database", session.database},
                            {"application_name", session.application_name},
                            {"command", "pgrail." + command},
                            {"arguments", audited_arguments(*registry(), arguments)}};
    if (config_.migrator_conninfo.empty()) {
        outcome.error = {"ERROR", "55000", "pgrail: in-band migration commands need a migrator connection", {},
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
        options.actor = session.user;
        options.require_verified = config_.require_verified;
        options.audit = [log = audit_log_](const nlohmann::json& record) { return log->record(record); };
        try {
            migrations::Runner runner(current, options);
            outcome.result_sql = result_set_sql(migrations::run_command(runner, command, arguments));
            outcome.ok = true;
        } catch (const migrations::MigrationError& e) {
            outcome.error = {"ERROR", e.sqlstate(), e.message(), e.detail(), e.hint()};
        } catch (const std::exception& e) {
            outcome.error = {"ERROR", "58000", fmt::format("pgrail: {} failed: {}", command, e.what()), {}, {}};
        }
        if (command == "migrate_up" || command == "migrate_down") refresh_snapshot();
    }
    event["outcome"] = outcome.ok ? "ok" : "error";
    if (!outcome.ok) {
        event["sqlstate"] = outcome.error.sqlstate;
        // The message may quote an argument (an unknown version): redacted as the arguments are.
        std::string message = outcome.error.message;
        const auto& shown = event["arguments"];
        for (std::size_t index = 0; index < arguments.size(); ++index) {
            if (arguments[index].empty() || shown[index] == arguments[index]) continue;
            for (auto at = message.find(arguments[index]); at != std::string::npos;
                 at = message.find(arguments[index], at))
                message.replace(at, arguments[index].size(), shown[index].get<std::string>());
        }
        event["message"] = std::move(message);
    }
    if (!audit_log_->record(std::move(event)) && outcome.ok) {
        const bool changed_schema = command == "migrate_up" || command == "migrate_down";
        if (changed_schema) {
            // It committed, and its apply_started line is on disk: the client hears the truth.
            spdlog::error("session {}: audit log write failed for pgrail.{} after it committed", session.session_id,
                          command);
        } else {
            // Nothing happened yet that the client has seen: fail closed, as a refusal does.
            outcome.ok = false;
            outcome.result_sql.clear();
            outcome.error = audit_unavailable_error();
        }
    }
    return outcome;
}

}  // namespace pgrail::proxy

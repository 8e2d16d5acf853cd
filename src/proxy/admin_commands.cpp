// The admin view over SQL (PgBouncer's SHOW commands, as relations): sessions, stats, refusals.
#include "admin_commands.hpp"

#include <charconv>
#include <ctime>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "pgrail/migrations/error.hpp"
#include "pgrail/proxy/metrics.hpp"
#include "pgrail/proxy/policy_gate.hpp"

namespace pgrail::proxy {

namespace {

using migrations::oid_int8;
using migrations::oid_text;
using migrations::oid_timestamptz;
using migrations::ResultTable;
using Cell = std::optional<std::string>;

// `user` is SQL's CURRENT_USER (`WHERE user = 'x'` would compare the caller's own name), hence
// user_name. identity is the authenticated identity: the user until authentication modes of
// pgrail's own exist (issue #19).
ResultTable sessions_columns() {
    return {{"session_id", "client_address", "user_name", "database", "application_name", "identity", "state",
             "statement_fingerprint", "bytes_from_client", "bytes_from_server", "started_at", "state_since"},
            {oid_int8, oid_text, oid_text, oid_text, oid_text, oid_text, oid_text, oid_text, oid_int8, oid_int8,
             oid_timestamptz, oid_timestamptz},
            {}};
}

ResultTable stats_columns() { return {{"name", "value"}, {oid_text, oid_text}, {}}; }

ResultTable refusals_columns() {
    return {{"at", "session_id", "user_name", "rule", "guard", "sqlstate", "message", "statement_fingerprint"},
            {oid_timestamptz, oid_int8, oid_text, oid_text, oid_text, oid_text, oid_text, oid_text},
            {}};
}

// RFC 3339 in UTC with microseconds, as the audit log writes times (PostgreSQL reads it as timestamptz).
std::string timestamp(std::chrono::system_clock::time_point at) {
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(at.time_since_epoch()).count();
    const std::time_t seconds = static_cast<std::time_t>(micros / 1000000);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                       utc.tm_hour, utc.tm_min, utc.tm_sec, micros % 1000000);
}

Cell nonempty(const std::string& text) { return text.empty() ? Cell() : Cell(text); }

// pgrail.refusals' limit: none (the default), or an integer in 1..max_refusals_limit.
std::optional<std::size_t> refusals_limit(const std::vector<std::string>& arguments, protocol::ErrorMessage& error) {
    if (arguments.empty()) return default_refusals_limit;
    if (arguments.size() == 1) {
        const auto& text = arguments.front();
        std::size_t limit = 0;
        const auto [end, failed] = std::from_chars(text.data(), text.data() + text.size(), limit);
        if (failed == std::errc() && end == text.data() + text.size() && limit >= 1 && limit <= max_refusals_limit)
            return limit;
    }
    error = {"ERROR", "22023",
             fmt::format("pgrail: pgrail.refusals takes one limit, an integer from 1 to {}", max_refusals_limit),
             {},
             fmt::format("SELECT * FROM pgrail.refusals() shows the latest {}; pgrail.refusals(100) the latest 100.",
                         default_refusals_limit)};
    return std::nullopt;
}

// A command's arguments as the audit shows them: a valid limit as it is, anything else redacted
// to its placeholder (like a statement's literals).
nlohmann::json audited_arguments(policy::Command command, const std::vector<std::string>& arguments) {
    nlohmann::json out = nlohmann::json::array();
    protocol::ErrorMessage ignored;
    const bool valid_limit = command == policy::Command::refusals && refusals_limit(arguments, ignored).has_value();
    for (std::size_t index = 0; index < arguments.size(); ++index)
        out.push_back(valid_limit ? nlohmann::json(arguments[index]) : nlohmann::json("$" + std::to_string(index + 1)));
    return out;
}

}  // namespace

ResultTable inband_command_columns(policy::Command command) {
    switch (command) {
        case policy::Command::sessions:
            return sessions_columns();
        case policy::Command::stats:
            return stats_columns();
        case policy::Command::refusals:
            return refusals_columns();
        default:
            return migrations::command_columns(command);
    }
}

AdminCommands::AdminCommands(std::shared_ptr<const SessionDirectory> directory,
                             std::shared_ptr<audit::AuditLog> audit_log, const RefusalRing& refusals)
    : directory_(std::move(directory)), audit_log_(std::move(audit_log)), refusals_(refusals) {}

ResultTable AdminCommands::sessions_table() const {
    ResultTable table = sessions_columns();
    for (const auto& row : directory_->rows()) {
        table.rows.push_back({std::to_string(row.session_id), nonempty(row.client_address), row.user, row.database,
                              nonempty(row.application_name), row.identity, std::string(to_string(row.state)),
                              nonempty(row.statement_fingerprint), std::to_string(row.bytes_from_client),
                              std::to_string(row.bytes_from_server), timestamp(row.started_at),
                              timestamp(row.state_since)});
    }
    return table;
}

ResultTable AdminCommands::stats_table() const {
    ResultTable table = stats_columns();
    const auto add = [&](std::string name, auto value) { table.rows.push_back({std::move(name), fmt::format("{}", value)}); };
    const auto& m = metrics();
    const auto uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    add("uptime_seconds", fmt::format("{:.3f}", uptime));
    add("sessions_open", m.sessions_open.load(std::memory_order_relaxed));
    add("sessions_total", m.sessions_total.load(std::memory_order_relaxed));
    const auto totals = m.totals();
    std::uint64_t statements = 0;
    for (const auto& [decision, count] : totals.statements_by_decision) statements += count;
    add("statements_total", statements);
    for (const char* decision : {"allow", "deny", "would_deny", "command"}) {
        const auto found = totals.statements_by_decision.find(decision);
        add(fmt::format("statements_{}", decision), found == totals.statements_by_decision.end() ? 0 : found->second);
    }
    std::uint64_t refusals = 0;
    for (const auto& [guard, count] : totals.refusals_by_guard) refusals += count;
    add("refusals_total", refusals);
    for (const auto& [guard, count] : totals.refusals_by_guard) add(fmt::format("refusals_by_guard {}", guard), count);
    add("bytes_from_clients", m.bytes_from_clients.load());
    add("bytes_from_server", m.bytes_from_server.load());
    add("upstream_connect_failures", m.upstream_connect_failures.load(std::memory_order_relaxed));
    add("audit_lines", m.audit_lines.load(std::memory_order_relaxed));
    add("audit_failures", m.audit_failures.load(std::memory_order_relaxed));
    for (const auto& [event, count] : totals.migration_events) add(fmt::format("migration_events {}", event), count);
    add("reloads_ok", m.reloads_ok.load(std::memory_order_relaxed));
    add("reloads_refused", m.reloads_failed.load(std::memory_order_relaxed));
    for (std::size_t index = 0; index < timeout_count; ++index)
        add(fmt::format("timeouts {}", to_string(static_cast<Timeout>(index))), m.timeouts(static_cast<Timeout>(index)));
    for (std::size_t index = 0; index < gate_cache_count; ++index) {
        const auto cache = static_cast<GateCache>(index);
        add(fmt::format("cache_hits {}", to_string(cache)), m.cache_hits(cache));
        add(fmt::format("cache_misses {}", to_string(cache)), m.cache_misses(cache));
    }
    // Averages in microseconds, as PgBouncer's SHOW STATS gives its avg_* figures.
    const auto average_us = [](const Histogram& histogram) {
        const auto count = histogram.count();
        const double sum_us = static_cast<double>(histogram.sum_ns()) / 1000.0;
        return fmt::format("{:.1f}", count == 0 ? 0.0 : sum_us / static_cast<double>(count));
    };
    add("gate_texts", m.gate_seconds.count());
    add("gate_avg_us", average_us(m.gate_seconds));
    add("analyses", m.analysis_seconds.count());
    add("analysis_avg_us", average_us(m.analysis_seconds));
    add("audit_write_avg_us", average_us(m.audit_write_seconds));
    add("audit_fsyncs", m.audit_fsync_seconds.count());
    add("audit_fsync_avg_us", average_us(m.audit_fsync_seconds));
    add("sessions_listed", directory_->size());
    return table;
}

ResultTable AdminCommands::refusals_table(std::size_t limit) const {
    ResultTable table = refusals_columns();
    for (auto& refusal : refusals_.latest(limit)) {
        table.rows.push_back({nonempty(refusal.at), std::to_string(refusal.session_id), nonempty(refusal.user),
                              nonempty(refusal.rule), nonempty(refusal.guard), nonempty(refusal.sqlstate),
                              nonempty(refusal.message), nonempty(refusal.statement)});
    }
    return table;
}

InbandOutcome AdminCommands::run(const SessionContext& session, policy::Command command,
                                 const std::vector<std::string>& arguments, AbandonedFlag) {
    InbandOutcome outcome;
    const std::string_view name = sql::name_of(command);
    if (command == policy::Command::refusals) {
        if (const auto limit = refusals_limit(arguments, outcome.error)) {
            outcome.table = refusals_table(*limit);
            outcome.ok = true;
        }
    } else if (!sql::is_admin_command(command)) {
        // (InbandDispatch sends a migrations command here only when migrations are not configured.)
        outcome.error = {"ERROR", "55000", "pgrail: in-band migration commands are not configured on this pgrail", {},
                         "Set migrations.dir and migrations.migrator in pgrail's configuration."};
    } else if (!arguments.empty()) {
        outcome.error = {"ERROR",
                         "42883",
                         fmt::format("pgrail: pgrail.{} takes no arguments", name),
                         {},
                         fmt::format("SELECT * FROM pgrail.{}()", name)};
    } else {
        outcome.table = command == policy::Command::sessions ? sessions_table() : stats_table();
        outcome.ok = true;
    }
    if (!audit_log_) return outcome;
    // On record before the answer, as every pgrail command is; it only reads, so a line that
    // cannot be written fails it (fail closed, as a refusal would).
    nlohmann::json event = session_fields(session);
    event["event"] = "command";
    event["command"] = fmt::format("pgrail.{}", name);
    event["arguments"] = audited_arguments(command, arguments);
    event["outcome"] = outcome.ok ? "ok" : "error";
    if (outcome.ok) {
        event["rows"] = outcome.table.rows.size();
    } else {
        event["sqlstate"] = outcome.error.sqlstate;
        event["message"] = outcome.error.message;  // names no argument's value
    }
    if (audit_log_->record(std::move(event))) {
        metrics().audit_lines.fetch_add(1, std::memory_order_relaxed);
        return outcome;
    }
    metrics().audit_failures.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("session {}: audit log write failed for pgrail.{}: {}", session.session_id, name,
                  audit_log_->last_error());
    InbandOutcome failed;
    failed.error = audit_unavailable_error();
    return failed;
}

InbandDispatch::InbandDispatch(std::shared_ptr<InbandCommands> admin, std::shared_ptr<InbandCommands> migrations)
    : admin_(std::move(admin)), migrations_(std::move(migrations)) {}

InbandOutcome InbandDispatch::run(const SessionContext& session, policy::Command command,
                                  const std::vector<std::string>& arguments, AbandonedFlag abandoned) {
    // Without migrations, the admin view answers (and audits) their commands' refusal (review 100:
    // it went unaudited).
    if (sql::is_admin_command(command) || !migrations_)
        return admin_->run(session, command, arguments, std::move(abandoned));
    return migrations_->run(session, command, arguments, std::move(abandoned));
}

void InbandDispatch::record_migrator_commit(const SessionContext& session,
                                            const std::vector<migrations::CommittedStatement>& committed,
                                            migrations::ExternalProgress& progress) {
    if (migrations_) migrations_->record_migrator_commit(session, committed, progress);
}

}  // namespace pgrail::proxy

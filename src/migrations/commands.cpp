// The in-band commands as result tables.
#include "pgrail/migrations/commands.hpp"

#include <array>

#include <fmt/format.h>

#include "pgrail/migrations/error.hpp"
#include "pgrail/protocol/sqlstate.hpp"

namespace pgrail::migrations {

namespace {

// The lint findings of docs/lint.md in one cell: rule, severity, line, message.
std::string lint_text(const Migration& migration) {
    std::string out;
    for (const Script* script : {&migration.up, &migration.down})
        for (const auto& finding : script->lint_findings)
            out += fmt::format("{}{} [{}, line {}{}]: {}", out.empty() ? "" : "; ", finding.rule,
                               to_string(finding.severity), finding.line, finding.waived ? ", waived" : "",
                               finding.message);
    return out;
}

std::optional<std::string> bool_text(bool value) { return std::string(value ? "t" : "f"); }

// The columns of each table, without rows (command_columns() answers them without running anything).
ResultTable status_columns() {
    return {{"version", "name", "state", "checksum", "applied_at", "has_rollback", "lint_findings", "detail"},
            {oid_text, oid_text, oid_text, oid_text, oid_timestamptz, oid_bool, oid_text, oid_text},
            {}};
}

// In-band status(): one more column, backstop.
ResultTable inband_status_columns() {
    ResultTable table = status_columns();
    table.columns.emplace_back("backstop");
    table.types.push_back(oid_text);
    return table;
}

ResultTable plan_columns() {
    return {{"step", "version", "name", "checksum", "statements", "no_transaction"},
            {oid_int8, oid_text, oid_text, oid_text, oid_int8, oid_bool},
            {}};
}

// The first six columns are the original ones, in their order; what verify measured follows.
ResultTable verify_columns() {
    return {{"version", "name", "checksum", "outcome", "duration_ms", "detail", "rewrites", "locks", "up_ms",
             "down_ms", "reup_ms", "sample"},
            {oid_text, oid_text, oid_text, oid_text, oid_int8, oid_text, oid_text, oid_text, oid_int8, oid_int8,
             oid_int8, oid_text},
            {}};
}

std::optional<std::string> ms_text(std::int64_t ms) {
    return ms < 0 ? std::nullopt : std::optional<std::string>(std::to_string(ms));
}

ResultTable steps_table(const std::vector<StepResult>& steps) {
    ResultTable table{{"version", "name", "checksum", "action", "duration_ms"},
                      {oid_text, oid_text, oid_text, oid_text, oid_int8},
                      {}};
    for (const auto& step : steps)
        table.rows.push_back({step.version, step.name, step.checksum,
                              std::string(step.direction == Direction::up ? "applied" : "rolled_back"),
                              std::to_string(step.duration_ms)});
    return table;
}

ResultTable proposal_columns() {
    return {{"version", "name", "state", "checksum", "findings", "verification", "next_step"},
            {oid_text, oid_text, oid_text, oid_text, oid_text, oid_text, oid_text},
            {}};
}

std::vector<std::string> exact_arguments(std::string_view function, const std::vector<std::string>& arguments,
                                         std::size_t count, std::string_view spelled) {
    if (arguments.size() != count)
        throw MigrationError(sqlstate::undefined_function,
                             fmt::format("pgrail.{} takes {} argument{}: pgrail.{}({})", function, count,
                                         count == 1 ? "" : "s", function, spelled));
    return arguments;
}

std::optional<std::string> optional_argument(std::string_view function, const std::vector<std::string>& arguments) {
    if (arguments.size() > 1)
        throw MigrationError(sqlstate::undefined_function,
                             fmt::format("pgrail.{} takes at most one argument (a migration version)", function));
    if (arguments.empty()) return std::nullopt;
    return arguments.front();
}

}  // namespace

ResultTable status_table(const Snapshot& snapshot) {
    ResultTable table = status_columns();
    for (const StatusEntry& entry : snapshot.status()) {
        table.rows.push_back({entry.version, entry.name, std::string(to_string(entry.state)), entry.checksum,
                              entry.applied_at, bool_text(entry.has_rollback),
                              entry.migration ? std::optional<std::string>(lint_text(*entry.migration)) : std::nullopt,
                              entry.detail.empty() ? std::nullopt : std::optional<std::string>(entry.detail)});
    }
    return table;
}

ResultTable status_table(const StatusReport& report) {
    ResultTable table = status_table(*report.snapshot);
    const ResultTable columns = inband_status_columns();
    table.columns = columns.columns;
    table.types = columns.types;
    append_schema_drift_row(table, report.schema);
    const auto summary = report.backstop.summary();
    for (auto& row : table.rows) row.emplace_back(summary);
    return table;
}

void append_schema_drift_row(ResultTable& table, const SchemaDrift& schema) {
    if (!schema.drifted) return;
    // One row of its own, after the migrations: version NULL, name "(schema)", state drifted, the
    // live schema's SHA-256 as checksum, and the objects and the diff in the detail.
    table.rows.push_back({std::nullopt, std::string("(schema)"), std::string("drifted"), schema.live_sha256,
                          std::nullopt, bool_text(false), std::nullopt, schema.detail()});
}

ResultTable plan_table(const Runner& runner, const std::optional<std::string>& target, TargetMode mode) {
    ResultTable table = plan_columns();
    std::size_t step = 0;
    for (const Migration* migration : runner.plan(target, mode))
        table.rows.push_back({std::to_string(++step), migration->version, migration->name, migration->checksum,
                              std::to_string(migration->up.statements.size()),
                              bool_text(migration->up.no_transaction)});
    return table;
}

ResultTable migrate_up_table(Runner& runner, const std::optional<std::string>& target, TargetMode mode) {
    return steps_table(runner.up(target, mode));
}

ResultTable migrate_down_table(Runner& runner, const std::optional<std::string>& version) {
    return steps_table(runner.down(version));
}

ResultTable migrate_down_to_table(Runner& runner, const std::string& target) {
    return steps_table(runner.down_to(target));
}

ResultTable verify_table(Runner& runner, const std::optional<std::string>& version) {
    ResultTable table = verify_columns();
    for (const auto& result : runner.verify(version))
        table.rows.push_back({result.version, result.name, result.checksum,
                              std::string(result.passed ? "passed" : "failed"), std::to_string(result.duration_ms),
                              result.detail.empty() ? std::nullopt : std::optional<std::string>(result.detail),
                              rewrites_text(result), locks_text(result), ms_text(result.measurement.up_ms),
                              ms_text(result.measurement.down_ms), ms_text(result.measurement.reup_ms),
                              sample_text(result.sample)});
    return table;
}

std::string next_step(const Proposal& proposal) {
    switch (proposal.state) {
        case ProposalState::approved:
            return fmt::format("Approved: apply it with SELECT * FROM pgrail.migrate_up('{}')", proposal.version);
        case ProposalState::rejected:
            return fmt::format("Rejected by {}{}; change the scripts and propose again", proposal.decided_by,
                               proposal.reason.empty() ? "" : ": " + proposal.reason);
        case ProposalState::proposed: break;
    }
    // The scripts' own fault (a statement of theirs failed, or the rollback does not restore the
    // schema): the agent fixes them. A proof that could not finish otherwise waits for a person.
    if (proposal.verification.starts_with("failed") &&
        (proposal.verification.find(" failed at ") != std::string::npos ||
         proposal.verification.find("the rollback does not restore the schema") != std::string::npos))
        return fmt::format("Its verification failed (the verification column says why): fix the scripts and propose "
                           "them again. Only an operator may still approve version {} as it is (pgrail migrate "
                           "approve {} or SELECT * FROM pgrail.approve_migration('{}'))",
                           proposal.version, proposal.version, proposal.version);
    std::string why;
    if (!proposal.verification.starts_with("passed"))
        why = "its verification did not pass";
    else if (!proposal.findings.empty())
        why = "it has findings";
    else
        why = "this session's rule does not approve proposals automatically";
    return fmt::format("Waiting for an operator's approval ({}): pgrail migrate approve {} or SELECT * FROM "
                       "pgrail.approve_migration('{}'); then apply it with SELECT * FROM pgrail.migrate_up('{}'). "
                       "Proposing the same scripts again shows its state.",
                       why, proposal.version, proposal.version, proposal.version);
}

ResultTable proposal_table(const std::vector<Proposal>& proposals) {
    ResultTable table = proposal_columns();
    for (const auto& proposal : proposals)
        table.rows.push_back({proposal.version, proposal.name, std::string(to_string(proposal.state)),
                              proposal.checksum, proposal.findings.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), proposal.verification, next_step(proposal)});
    return table;
}

ResultTable command_columns(sql::PgrailCommand command) {
    using enum sql::PgrailCommand;
    switch (command) {
        case propose_migration:
        case approve_migration:
        case reject_migration:
            return proposal_columns();
        case status:
            return inband_status_columns();
        case plan:
            return plan_columns();
        case migrate_up:
        case migrate_down:
            return steps_table({});
        case verify:
            return verify_columns();
        default:
            break;
    }
    throw MigrationError(sqlstate::undefined_function,
                         fmt::format("pgrail.{} is no migrations command", sql::name_of(command)));
}

ResultTable run_command(Runner& runner, sql::PgrailCommand command, const std::vector<std::string>& arguments) {
    using enum sql::PgrailCommand;
    const std::string_view function = sql::name_of(command);
    // In-band, a version means that migration alone (it must be the next pending one).
    switch (command) {
        case status:
            if (!arguments.empty())
                throw MigrationError(sqlstate::undefined_function, "pgrail.status takes no arguments");
            return status_table(runner.status_report());
        case plan:
            return plan_table(runner, optional_argument(function, arguments), TargetMode::exactly);
        case migrate_up:
            return migrate_up_table(runner, optional_argument(function, arguments), TargetMode::exactly);
        case migrate_down:
            return migrate_down_table(runner, optional_argument(function, arguments));
        case verify:
            return verify_table(runner, optional_argument(function, arguments));
        case propose_migration: {
            const auto args = exact_arguments(function, arguments, 3, "name, up_sql, down_sql");
            return proposal_table({runner.propose(args[0], args[1], args[2])});
        }
        case approve_migration:
            return proposal_table({runner.approve(exact_arguments(function, arguments, 1, "version")[0])});
        case reject_migration: {
            const auto args = exact_arguments(function, arguments, 2, "version, reason");
            return proposal_table({runner.reject(args[0], args[1])});
        }
        default:
            break;
    }
    throw MigrationError(sqlstate::undefined_function, fmt::format("pgrail.{} is no migrations command", function));
}

}  // namespace pgrail::migrations

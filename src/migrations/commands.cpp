// The in-band commands as result tables.
#include "pgrail/migrations/commands.hpp"

#include <array>

#include <fmt/format.h>

#include "pgrail/migrations/error.hpp"

namespace pgrail::migrations {

namespace {

std::string lint_text(const Migration& migration) {
    std::string out;
    for (const Script* script : {&migration.up, &migration.down})
        for (const auto& finding : script->lint_findings)
            out += fmt::format("{}{}: {}{}", out.empty() ? "" : "; ", finding.rule, finding.message,
                               finding.waived ? " (waived)" : "");
    return out;
}

std::optional<std::string> bool_text(bool value) { return std::string(value ? "t" : "f"); }

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

std::optional<std::string> optional_argument(std::string_view function, const std::vector<std::string>& arguments) {
    if (arguments.size() > 1)
        throw MigrationError("42883", fmt::format("pgrail.{} takes at most one argument (a migration version)", function));
    if (arguments.empty()) return std::nullopt;
    return arguments.front();
}

}  // namespace

ResultTable status_table(const Snapshot& snapshot) {
    ResultTable table{
        {"version", "name", "state", "checksum", "applied_at", "has_rollback", "lint_findings", "detail"},
        {oid_text, oid_text, oid_text, oid_text, oid_timestamptz, oid_bool, oid_text, oid_text},
        {}};
    for (const StatusEntry& entry : snapshot.status()) {
        table.rows.push_back({entry.version, entry.name, std::string(to_string(entry.state)), entry.checksum,
                              entry.applied_at, bool_text(entry.has_rollback),
                              entry.migration ? std::optional<std::string>(lint_text(*entry.migration)) : std::nullopt,
                              entry.detail.empty() ? std::nullopt : std::optional<std::string>(entry.detail)});
    }
    return table;
}

ResultTable plan_table(const Runner& runner, const std::optional<std::string>& target) {
    ResultTable table{{"step", "version", "name", "checksum", "statements", "no_transaction"},
                      {oid_int8, oid_text, oid_text, oid_text, oid_int8, oid_bool},
                      {}};
    std::size_t step = 0;
    for (const Migration* migration : runner.plan(target))
        table.rows.push_back({std::to_string(++step), migration->version, migration->name, migration->checksum,
                              std::to_string(migration->up.statements.size()),
                              bool_text(migration->up.no_transaction)});
    return table;
}

ResultTable migrate_up_table(Runner& runner, const std::optional<std::string>& target) {
    return steps_table(runner.up(target));
}

ResultTable migrate_down_table(Runner& runner, const std::optional<std::string>& version) {
    return steps_table(runner.down(version));
}

ResultTable migrate_down_to_table(Runner& runner, const std::string& target) {
    return steps_table(runner.down_to(target));
}

ResultTable verify_table(Runner& runner, const std::optional<std::string>& version) {
    ResultTable table{{"version", "name", "checksum", "outcome", "duration_ms", "detail"},
                      {oid_text, oid_text, oid_text, oid_text, oid_int8, oid_text},
                      {}};
    for (const auto& result : runner.verify(version))
        table.rows.push_back({result.version, result.name, result.checksum,
                              std::string(result.passed ? "passed" : "failed"), std::to_string(result.duration_ms),
                              result.detail.empty() ? std::nullopt : std::optional<std::string>(result.detail)});
    return table;
}

bool is_command(std::string_view function) {
    static constexpr std::array<std::string_view, 5> names = {"status", "plan", "migrate_up", "migrate_down",
                                                              "verify"};
    for (const auto name : names)
        if (name == function) return true;
    return false;
}

ResultTable run_command(Runner& runner, std::string_view function, const std::vector<std::string>& arguments) {
    if (function == "status") {
        if (!arguments.empty()) throw MigrationError("42883", "pgrail.status takes no arguments");
        return status_table(*runner.snapshot());
    }
    if (function == "plan") return plan_table(runner, optional_argument(function, arguments));
    if (function == "migrate_up") return migrate_up_table(runner, optional_argument(function, arguments));
    if (function == "migrate_down") return migrate_down_table(runner, optional_argument(function, arguments));
    if (function == "verify") return verify_table(runner, optional_argument(function, arguments));
    throw MigrationError("42883", fmt::format("function pgrail.{} does not exist", function), "",
                         "pgrail knows status(), plan(), migrate_up([version]), migrate_down([version]), "
                         "verify([version])");
}

}  // namespace pgrail::migrations

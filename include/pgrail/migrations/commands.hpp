// The in-band commands (pgrail.status(), plan(), migrate_up(), migrate_down(), verify())
// as result tables: the proxy encodes them as PostgreSQL result sets, the CLI prints them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pgrail/migrations/runner.hpp"
#include "pgrail/sql/pgrail_command.hpp"
#include "pgrail/migrations/snapshot.hpp"

namespace pgrail::migrations {

// Type OIDs of the columns pgrail returns (values are in PostgreSQL's text format).
inline constexpr std::uint32_t oid_bool = 16;
inline constexpr std::uint32_t oid_int8 = 20;
inline constexpr std::uint32_t oid_text = 25;
inline constexpr std::uint32_t oid_timestamptz = 1184;

struct ResultTable {
    std::vector<std::string> columns;
    std::vector<std::uint32_t> types;  // one OID per column
    std::vector<std::vector<std::optional<std::string>>> rows;
};

// status(): version, name, state, checksum, applied_at, has_rollback, lint_findings, detail.
[[nodiscard]] ResultTable status_table(const Snapshot& snapshot);
// In-band status(): the same and a last column, backstop, on every row: the database's backstop
// in one line (BackstopStatus::summary).
[[nodiscard]] ResultTable status_table(const StatusReport& report);
// Schema drift (the live schema differs from the ledger's latest fingerprint) as a status row:
// version NULL, name "(schema)", state drifted, detail the changed objects and the diff.
void append_schema_drift_row(ResultTable& table, const SchemaDrift& schema);
// plan([target]): what migrate_up would apply, in order (TargetMode: runner.hpp).
[[nodiscard]] ResultTable plan_table(const Runner& runner, const std::optional<std::string>& target,
                                     TargetMode mode = TargetMode::up_to);
[[nodiscard]] ResultTable migrate_up_table(Runner& runner, const std::optional<std::string>& target,
                                           TargetMode mode = TargetMode::up_to);
// migrate_down([version]): rolls back the latest applied migration (which must be `version`).
[[nodiscard]] ResultTable migrate_down_table(Runner& runner, const std::optional<std::string>& version);
// Rolls back every applied migration above `target` ("0": all), newest first.
[[nodiscard]] ResultTable migrate_down_to_table(Runner& runner, const std::string& target);
[[nodiscard]] ResultTable verify_table(Runner& runner, const std::optional<std::string>& version);
// propose_migration / approve_migration / reject_migration: one row per proposal: version, name,
// state, checksum, findings (JSON text), verification, next_step (the exact next SQL).
[[nodiscard]] ResultTable proposal_table(const std::vector<Proposal>& proposals);
[[nodiscard]] std::string next_step(const Proposal& proposal);

// Dispatches `pgrail.<function>(arguments...)`: status, plan, migrate_up, migrate_down,
// verify. A version given to migrate_up or plan names that migration alone (TargetMode::exactly);
// migrate_down's must be the latest applied one. Throws MigrationError (42883 unknown function or wrong arguments, others as the
// operation fails). Blocking: run it off the I/O thread.
[[nodiscard]] ResultTable run_command(Runner& runner, sql::PgrailCommand command,
                                      const std::vector<std::string>& arguments);

// The columns (names and types, no rows) of the in-band answer of `function`, as run_command()
// gives them, without running anything: the extended protocol describes a statement reading
// pgrail commands before they run. Throws MigrationError 42883 for an unknown function.
[[nodiscard]] ResultTable command_columns(sql::PgrailCommand command);

}  // namespace pgrail::migrations

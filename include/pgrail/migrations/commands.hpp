// The in-band commands (pgrail.status(), plan(), migrate_up(), migrate_down(), verify())
// as result tables: the proxy encodes them as PostgreSQL result sets, the CLI prints them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pgrail/migrations/runner.hpp"
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
// plan([target]): what migrate_up would apply, in order.
[[nodiscard]] ResultTable plan_table(const Runner& runner, const std::optional<std::string>& target);
[[nodiscard]] ResultTable migrate_up_table(Runner& runner, const std::optional<std::string>& target);
// migrate_down([version]): rolls back the latest applied migration (which must be `version`).
[[nodiscard]] ResultTable migrate_down_table(Runner& runner, const std::optional<std::string>& version);
// Rolls back every applied migration above `target` ("0": all), newest first.
[[nodiscard]] ResultTable migrate_down_to_table(Runner& runner, const std::string& target);
[[nodiscard]] ResultTable verify_table(Runner& runner, const std::optional<std::string>& version);

// Dispatches `pgrail.<function>(arguments...)`: status, plan, migrate_up, migrate_down,
// verify. Throws MigrationError (42883 unknown function or wrong arguments, others as the
// operation fails). Blocking: run it off the I/O thread.
[[nodiscard]] ResultTable run_command(Runner& runner, std::string_view function,
                                      const std::vector<std::string>& arguments);

// Whether `function` is one of the commands above (for the policy and the proxy).
[[nodiscard]] bool is_command(std::string_view function);

}  // namespace pgrail::migrations

// The state of every migration: the registry compared with the ledger (pure, no I/O).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pgrail/migrations/registry.hpp"

namespace pgrail::migrations {

// One row of pgrail.schema_migrations.
struct AppliedMigration {
    std::string version;
    std::string name;
    std::string checksum;
    std::string applied_at;  // as PostgreSQL prints timestamptz
    std::string applied_by;
    std::int64_t execution_ms = 0;
};

// The ledger as read from the target database.
struct LedgerState {
    bool exists = false;                    // false before the first apply created it
    std::vector<AppliedMigration> applied;  // in the order they were applied
};

enum class State { pending, applied, invalid, drifted };
const char* to_string(State state);

struct StatusEntry {
    std::optional<std::string> version;
    std::string name;                   // migration name, or the file name of an invalid file
    State state = State::pending;
    std::optional<std::string> checksum;  // of the files; the ledger's when the files vanished
    std::optional<std::string> applied_at;
    bool has_rollback = false;
    std::string detail;                 // why invalid or drifted
    const Migration* migration = nullptr;        // into the registry, when registered
    const AppliedMigration* applied = nullptr;   // into the ledger, when applied
};

// Rows in version order; invalid files without a version come last. Drift is an applied
// migration whose files vanished, became invalid, or changed (checksum differs).
[[nodiscard]] std::vector<StatusEntry> compute_status(const Registry& registry, const LedgerState& ledger);

[[nodiscard]] bool has_drift(const std::vector<StatusEntry>& status);

}  // namespace pgrail::migrations

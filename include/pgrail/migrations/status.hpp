// The state of every migration: the registry compared with the ledger (pure, no I/O).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
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

// A `-- pgrail:no-transaction` script that stopped partway: statements 1..statements_ran of
// it ran (each committed on its own) and were not undone, and the ledger does not record the
// step. Read from pgrail.migration_events: the latest applied/rolled_back/failed/resolved event
// of the version is a `failed` event whose detail starts with partial_event_prefix().
struct PartialRun {
    std::string version;
    std::string name;
    std::string checksum;          // of the files that ran
    Direction direction = Direction::up;
    std::size_t statements_ran = 0;    // 1..statements_ran ran
    std::size_t statements_total = 0;  // statements in the script
    std::string at;                // when the failure was recorded, as PostgreSQL prints timestamptz
    std::string by;
    std::string detail;            // the event's detail (starts with the prefix)
};

// The ledger as read from the target database.
struct LedgerState {
    bool exists = false;                    // false before the first apply created it
    std::vector<AppliedMigration> applied;  // in the order they were applied
    std::vector<PartialRun> partial;        // stopped partway, not resolved since
    std::string database;                   // the database it was read from (the migrations' database)
};

// "up, no-transaction: statements 1..2 of 3 ran and were not undone": how a `failed` event's
// detail starts when a no-transaction script stopped after running some of its statements.
// The form is stable (status reads it back from the ledger).
[[nodiscard]] std::string partial_event_prefix(Direction direction, std::size_t ran, std::size_t total);
// Reads partial_event_prefix() back: direction, ran, total (nullopt for any other detail).
struct PartialEventPrefix {
    Direction direction = Direction::up;
    std::size_t ran = 0;
    std::size_t total = 0;
};
[[nodiscard]] std::optional<PartialEventPrefix> parse_partial_event_prefix(std::string_view detail);

// partial: a no-transaction script stopped partway (PartialRun); blocks up, plan, down and
// verify until an operator resolves it (`pgrail migrate resolve V --as applied|pending`).
enum class State { pending, applied, invalid, drifted, partial };
const char* to_string(State state);

struct StatusEntry {
    std::optional<std::string> version;
    std::string name;                   // migration name, or the file name of an invalid file
    State state = State::pending;
    std::optional<std::string> checksum;  // of the files; the ledger's when the files vanished
    std::optional<std::string> applied_at;
    bool has_rollback = false;
    std::string detail;                 // why invalid, drifted or partial
    const Migration* migration = nullptr;        // into the registry, when registered
    const AppliedMigration* applied = nullptr;   // into the ledger, when applied
    const PartialRun* partial = nullptr;         // into the ledger, when partial
};

// Rows in version order; invalid files without a version come last. Drift is an applied
// migration whose files vanished, became invalid, or changed (checksum differs). A partial
// run makes its version `partial`, whatever else is true of it (the detail says that too).
[[nodiscard]] std::vector<StatusEntry> compute_status(const Registry& registry, const LedgerState& ledger);

[[nodiscard]] bool has_drift(const std::vector<StatusEntry>& status);
[[nodiscard]] bool has_partial(const std::vector<StatusEntry>& status);

// "statement 3" or "statements 2..5" (1-based; first <= last).
[[nodiscard]] std::string statement_range(std::size_t first, std::size_t last);
// "statement 1 of 3 ran and was not undone", "statements 1..2 of 3 ran and were not undone",
// "all 3 statements ran and were not undone" (1 <= ran <= total).
[[nodiscard]] std::string statements_ran_text(std::size_t ran, std::size_t total);

// What a partial run left: which statements ran (with their lines and first words, from the
// registered files when they are still the ones that ran), which did not, and the failure.
[[nodiscard]] std::string describe_partial(const PartialRun& run, const Migration* migration);
// How an operator resolves it: finish the rest by hand or undo what ran, then
// `pgrail migrate resolve V --as applied|pending`.
[[nodiscard]] std::string partial_resolution(const PartialRun& run);

}  // namespace pgrail::migrations

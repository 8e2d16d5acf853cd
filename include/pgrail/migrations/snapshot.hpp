// An immutable picture of registry + ledger for the proxy: status and DDL matching.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "pgrail/migrations/registry.hpp"
#include "pgrail/migrations/status.hpp"
#include "pgrail/sql/statement.hpp"

namespace pgrail::migrations {

// Which registered migration a client's statement belongs to.
struct Match {
    std::string version;
    std::string name;
    Direction direction = Direction::up;
};

// Build one after loading the registry (SIGHUP) and after each apply/rollback
// (read_ledger()); share it as shared_ptr<const Snapshot>: it is immutable and thread-safe.
class Snapshot {
public:
    Snapshot(std::shared_ptr<const Registry> registry, LedgerState ledger);
    Snapshot(const Snapshot&) = delete;
    Snapshot& operator=(const Snapshot&) = delete;

    [[nodiscard]] const Registry& registry() const { return *registry_; }
    [[nodiscard]] const std::shared_ptr<const Registry>& registry_ptr() const { return registry_; }
    [[nodiscard]] const LedgerState& ledger() const { return ledger_; }
    [[nodiscard]] const std::vector<StatusEntry>& status() const { return status_; }
    [[nodiscard]] bool drift() const { return has_drift(status_); }

    // A statement sent by a migrator user is allowed when it is structurally equal (its parse
    // tree's canonical form compared whole, never a hash) to a
    // statement of the up script of a pending migration or of the down script of an
    // applied one, or of either script of a partial one (finished or undone by hand before
    // `pgrail migrate resolve`). Drifted and invalid migrations never match.
    [[nodiscard]] std::optional<Match> match(const sql::Statement& statement) const;
    [[nodiscard]] bool matches_statement(const sql::Statement& statement, Direction direction) const;

private:
    std::shared_ptr<const Registry> registry_;
    LedgerState ledger_;
    std::vector<StatusEntry> status_;
    std::unordered_multimap<std::string, Match> index_;  // by structural form
};

}  // namespace pgrail::migrations

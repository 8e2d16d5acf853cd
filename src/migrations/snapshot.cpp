// Structural-form index over the scripts a migrator may run by hand right now.
#include "pgrail/migrations/snapshot.hpp"

namespace pgrail::migrations {

Snapshot::Snapshot(std::shared_ptr<const Registry> registry, LedgerState ledger)
    : registry_(std::move(registry)), ledger_(std::move(ledger)) {
    status_ = compute_status(*registry_, ledger_);
    for (const StatusEntry& entry : status_) {
        if (entry.migration == nullptr) continue;
        const Migration& migration = *entry.migration;
        const auto add = [&](const Script& script, Direction direction) {
            for (const auto& statement : script.statements)
                if (!statement.structural_form.empty())
                    index_.emplace(statement.structural_form, Match{migration.version, migration.name, direction});
        };
        if (entry.state == State::pending) add(migration.up, Direction::up);
        if (entry.state == State::applied) add(migration.down, Direction::down);
        // Stopped partway: the operator finishes or undoes it by hand, with either script's
        // statements, before `pgrail migrate resolve`.
        if (entry.state == State::partial) {
            add(migration.up, Direction::up);
            add(migration.down, Direction::down);
        }
    }
}

std::optional<Match> Snapshot::match(const sql::Statement& statement) const {
    if (statement.error || statement.structural_form.empty()) return std::nullopt;
    const auto found = index_.find(statement.structural_form);
    if (found == index_.end()) return std::nullopt;
    return found->second;
}

bool Snapshot::matches_statement(const sql::Statement& statement, Direction direction) const {
    if (statement.error || statement.structural_form.empty()) return false;
    const auto [begin, end] = index_.equal_range(statement.structural_form);
    for (auto it = begin; it != end; ++it)
        if (it->second.direction == direction) return true;
    return false;
}

}  // namespace pgrail::migrations

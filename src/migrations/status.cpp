// Registry against ledger: pending, applied, invalid or drifted.
#include "pgrail/migrations/status.hpp"

#include <algorithm>
#include <map>

#include <fmt/format.h>

namespace pgrail::migrations {

const char* to_string(State state) {
    switch (state) {
        case State::pending: return "pending";
        case State::applied: return "applied";
        case State::invalid: return "invalid";
        case State::drifted: return "drifted";
    }
    return "unknown";
}

std::vector<StatusEntry> compute_status(const Registry& registry, const LedgerState& ledger) {
    std::map<std::string, const AppliedMigration*> applied;
    for (const auto& row : ledger.applied) applied[row.version] = &row;

    std::vector<StatusEntry> rows;
    for (const Migration& migration : registry.migrations()) {
        StatusEntry entry;
        entry.version = migration.version;
        entry.name = migration.name;
        entry.checksum = migration.checksum;
        entry.has_rollback = true;
        entry.migration = &migration;
        const auto found = applied.find(migration.version);
        if (found == applied.end()) {
            entry.state = State::pending;
        } else {
            entry.applied = found->second;
            entry.applied_at = found->second->applied_at;
            if (found->second->checksum == migration.checksum) {
                entry.state = State::applied;
            } else {
                entry.state = State::drifted;
                entry.detail = fmt::format("files changed since applied: ledger checksum {}, files {}",
                                           found->second->checksum, migration.checksum);
            }
            applied.erase(found);
        }
        rows.push_back(std::move(entry));
    }
    // Applied but no longer registered: the files vanished or became invalid.
    for (const auto& [version, row] : applied) {
        StatusEntry entry;
        entry.version = version;
        entry.name = row->name;
        entry.state = State::drifted;
        entry.checksum = row->checksum;
        entry.applied_at = row->applied_at;
        entry.applied = row;
        const auto invalid = registry.invalid_for(version);
        if (invalid.empty()) {
            entry.detail = "files vanished: applied migration has no files in the registry";
        } else {
            entry.detail = "files changed since applied and are now invalid:";
            for (const auto* file : invalid)
                entry.detail += fmt::format(" {}: {};", file->path.filename().string(), file->reason);
            entry.detail.pop_back();
        }
        rows.push_back(std::move(entry));
    }
    for (const InvalidFile& file : registry.invalid_files()) {
        if (file.version && std::any_of(ledger.applied.begin(), ledger.applied.end(),
                                        [&](const auto& row) { return row.version == *file.version; }))
            continue;  // reported as drift of the applied migration above
        StatusEntry entry;
        entry.version = file.version;
        entry.name = file.path.filename().string();
        entry.state = State::invalid;
        entry.detail = file.reason;
        rows.push_back(std::move(entry));
    }
    std::stable_sort(rows.begin(), rows.end(), [](const StatusEntry& a, const StatusEntry& b) {
        if (a.version.has_value() != b.version.has_value()) return a.version.has_value();
        if (!a.version) return false;
        return version_less(*a.version, *b.version);
    });
    return rows;
}

bool has_drift(const std::vector<StatusEntry>& status) {
    return std::any_of(status.begin(), status.end(), [](const StatusEntry& e) { return e.state == State::drifted; });
}

}  // namespace pgrail::migrations

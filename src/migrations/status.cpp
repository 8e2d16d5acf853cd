// Registry against ledger: pending, applied, invalid, drifted or partial.
#include "pgrail/migrations/status.hpp"

#include <algorithm>
#include <charconv>
#include <map>

#include <fmt/format.h>

namespace pgrail::migrations {

const char* to_string(State state) {
    switch (state) {
        case State::pending: return "pending";
        case State::applied: return "applied";
        case State::invalid: return "invalid";
        case State::drifted: return "drifted";
        case State::partial: return "partial";
    }
    return "unknown";
}

std::string partial_event_prefix(Direction direction, std::size_t ran, std::size_t total) {
    return fmt::format("{}, no-transaction: statements 1..{} of {} ran and were not undone", to_string(direction), ran,
                       total);
}

std::optional<PartialEventPrefix> parse_partial_event_prefix(std::string_view detail) {
    PartialEventPrefix out;
    const auto take = [&](std::string_view word) {
        if (!detail.starts_with(word)) return false;
        detail.remove_prefix(word.size());
        return true;
    };
    const auto number = [&](std::size_t& value) {
        const auto [end, ec] = std::from_chars(detail.data(), detail.data() + detail.size(), value);
        if (ec != std::errc() || end == detail.data()) return false;
        detail.remove_prefix(static_cast<std::size_t>(end - detail.data()));
        return true;
    };
    if (take("up")) out.direction = Direction::up;
    else if (take("down")) out.direction = Direction::down;
    else return std::nullopt;
    if (!take(", no-transaction: statements 1..") || !number(out.ran) || !take(" of ") || !number(out.total) ||
        !take(" ran and were not undone"))
        return std::nullopt;
    if (out.ran == 0 || out.ran > out.total) return std::nullopt;
    return out;
}

std::string statement_range(std::size_t first, std::size_t last) {
    return first >= last ? fmt::format("statement {}", first) : fmt::format("statements {}..{}", first, last);
}

std::string statements_ran_text(std::size_t ran, std::size_t total) {
    if (ran >= total && total > 1) return fmt::format("all {} statements ran and were not undone", total);
    return fmt::format("{} of {} ran and {} not undone", statement_range(1, ran), total, ran == 1 ? "was" : "were");
}

namespace {

std::string script_file(const PartialRun& run, const Migration* migration) {
    const Script* script = nullptr;
    if (migration != nullptr) script = run.direction == Direction::up ? &migration->up : &migration->down;
    if (script != nullptr && !script->path.empty()) return script->path.filename().string();
    return fmt::format("{}_{}.{}.sql", run.version, run.name, to_string(run.direction));
}

std::string statement_line(const Script& script, std::size_t index) {
    const auto& statement = script.statements[index];
    std::string text = statement.text.substr(0, statement.text.find('\n'));
    if (text.size() > 80) text = text.substr(0, 80) + "...";
    return fmt::format("\n  {} (line {}): {}", index + 1, statement.line, text);
}

}  // namespace

std::string describe_partial(const PartialRun& run, const Migration* migration) {
    const std::string what = run.direction == Direction::up ? "up" : "down (rollback)";
    std::string out = fmt::format("no-transaction {} script {} stopped partway ({}, run by {}): ", what,
                                  script_file(run, migration), run.at, run.by);
    const std::size_t k = run.statements_ran;
    const std::size_t n = run.statements_total;
    out += statements_ran_text(k, n);
    if (k >= n) {
        out += fmt::format(", but the ledger did not record the {}",
                           run.direction == Direction::up ? "apply" : "rollback");
    } else {
        // run_step notes a lost connection this way: the statement may have taken effect.
        const bool unknown = run.detail.find("whether it took effect is unknown") != std::string::npos;
        out += fmt::format("; statement {} {}", k + 1,
                           unknown ? "was interrupted (whether it took effect is unknown)" : "failed");
        if (k + 1 < n) out += fmt::format(", {} did not run", statement_range(k + 2, n));
    }
    out += run.direction == Direction::up ? "; the migration is not recorded as applied"
                                          : "; the migration is still recorded as applied";
    const Script* script = nullptr;
    if (migration != nullptr && migration->checksum == run.checksum)
        script = run.direction == Direction::up ? &migration->up : &migration->down;
    if (script != nullptr && script->statements.size() == run.statements_total) {
        out += "\nran:";
        for (std::size_t i = 0; i < run.statements_ran; ++i) out += statement_line(*script, i);
        if (run.statements_ran < run.statements_total) {
            out += "\nfailed or did not run:";
            for (std::size_t i = run.statements_ran; i < run.statements_total; ++i) out += statement_line(*script, i);
        }
    } else if (migration != nullptr) {
        out += fmt::format("\nthe files changed since that run (checksum then {}, now {})", run.checksum,
                           migration->checksum);
    } else {
        out += fmt::format("\nthe files of that run (checksum {}) are no longer registered", run.checksum);
    }
    const std::string prefix = partial_event_prefix(run.direction, run.statements_ran, run.statements_total);
    if (run.detail.starts_with(prefix) && run.detail.size() > prefix.size() + 2)
        out += "\nfailure: " + run.detail.substr(prefix.size() + 2);
    return out;
}

std::string partial_resolution(const PartialRun& run) {
    const std::size_t k = run.statements_ran;
    const std::size_t n = run.statements_total;
    const std::string rest = k >= n ? std::string("nothing is left to run: check the schema")
                                    : fmt::format("run {} of the {} script yourself", statement_range(k + 1, n),
                                                  to_string(run.direction));
    const std::string undo = fmt::format("undo what {} did", statement_range(1, k));
    const std::string retry =
        fmt::format("Do not retry before: a retry would run {} again.", statement_range(1, k));
    if (run.direction == Direction::up)
        return fmt::format("Either finish the migration by hand ({}), then run `pgrail migrate resolve {} --as "
                           "applied`; or {} by hand, then run `pgrail migrate resolve {} --as pending` (a later "
                           "`up` runs the whole script again). {}",
                           rest, run.version, undo, run.version, retry);
    return fmt::format("Either finish the rollback by hand ({}), then run `pgrail migrate resolve {} --as pending`; or "
                       "{} by hand, then run `pgrail migrate resolve {} --as applied`. {}",
                       rest, run.version, undo, run.version, retry);
}

std::vector<StatusEntry> compute_status(const Registry& registry, const LedgerState& ledger) {
    std::map<std::string, const AppliedMigration*> applied;
    for (const auto& row : ledger.applied) applied[row.version] = &row;
    std::map<std::string, const PartialRun*> partial;
    for (const auto& run : ledger.partial) partial[run.version] = &run;
    // A partial run outranks every other state of its version: what the files or the ledger
    // say does not match the schema until an operator resolves it.
    const auto mark_partial = [&](StatusEntry& entry) {
        const auto found = partial.find(*entry.version);
        if (found == partial.end()) return;
        std::string other = entry.detail;
        entry.state = State::partial;
        entry.partial = found->second;
        entry.detail = describe_partial(*found->second, entry.migration);
        if (!other.empty()) entry.detail += "\nalso: " + other;
        partial.erase(found);
    };

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
        mark_partial(entry);
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
        mark_partial(entry);
        rows.push_back(std::move(entry));
    }
    // Partial runs of versions neither registered nor applied (their files vanished).
    std::vector<const PartialRun*> unregistered;
    for (const auto& [version, run] : partial) unregistered.push_back(run);
    for (const PartialRun* run : unregistered) {
        StatusEntry entry;
        entry.version = run->version;
        entry.name = run->name;
        entry.checksum = run->checksum;
        mark_partial(entry);
        rows.push_back(std::move(entry));
    }
    for (const InvalidFile& file : registry.invalid_files()) {
        if (file.version && std::any_of(ledger.applied.begin(), ledger.applied.end(),
                                        [&](const auto& row) { return row.version == *file.version; }))
            continue;  // reported as drift of the applied migration above
        if (file.version && std::any_of(ledger.partial.begin(), ledger.partial.end(),
                                        [&](const auto& run) { return run.version == *file.version; }))
            continue;  // reported with the partial run above
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

bool has_partial(const std::vector<StatusEntry>& status) {
    return std::any_of(status.begin(), status.end(), [](const StatusEntry& e) { return e.state == State::partial; });
}

}  // namespace pgrail::migrations

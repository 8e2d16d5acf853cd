// The wire-level half of recording migrator runs: completed, then committed.
#include "pgrail/proxy/migrator_runs.hpp"

#include <algorithm>

namespace pgrail::proxy {

namespace {

// A session's list is bounded: a client that sends registered statements without ever
// committing (or pipelines thousands) keeps at most this many in view.
constexpr std::size_t max_pending = 1024;

// CommandComplete's tag is the statement's, with row counts after it for some ("SELECT 3").
bool tag_matches(std::string_view complete, std::string_view statement_tag) {
    if (!complete.starts_with(statement_tag)) return false;
    return complete.size() == statement_tag.size() || complete[statement_tag.size()] == ' ';
}

}  // namespace

void MigratorRunTracker::on_forwarded(const std::vector<MigratorStatement>& statements) {
    for (const auto& statement : statements) {
        if (pending_.size() >= max_pending) pending_.erase(pending_.begin());
        pending_.push_back({statement, false});
    }
}

void MigratorRunTracker::on_command_complete(std::string_view tag) {
    if (pending_.empty()) return;
    // A transaction (or a savepoint's part of it) undone: nothing not yet committed counts.
    if (tag == "ROLLBACK" || tag == "PREPARE TRANSACTION") {
        pending_.clear();
        return;
    }
    const auto found = std::find_if(pending_.begin(), pending_.end(), [&](const Pending& entry) {
        return !entry.completed && tag_matches(tag, entry.statement.tag);
    });
    if (found != pending_.end()) found->completed = true;
}

void MigratorRunTracker::on_error() { pending_.clear(); }

void MigratorRunTracker::on_ready(char transaction_status) {
    if (transaction_status == 'T') return;  // still in a transaction block: nothing committed yet
    if (transaction_status == 'I')
        for (auto& entry : pending_)
            if (entry.completed)
                committed_.push_back({std::move(entry.statement.version), entry.statement.direction,
                                      std::move(entry.statement.structural_form)});
    // 'E' (a failed block) undoes them; at 'I', statements that did not complete did not run.
    pending_.clear();
}

std::vector<migrations::CommittedStatement> MigratorRunTracker::take_committed() {
    std::vector<migrations::CommittedStatement> out;
    out.swap(committed_);
    return out;
}

}  // namespace pgrail::proxy

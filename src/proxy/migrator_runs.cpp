// The wire-level half of recording migrator runs: completed, then committed.
#include "pgrail/proxy/migrator_runs.hpp"

#include <algorithm>

namespace pgrail::proxy {

namespace {

// A session's list is bounded: a client that completes registered statements without ever
// committing keeps at most this many in view.
constexpr std::size_t max_pending = 1024;

// CommandComplete's tag is the statement's, with row counts after it for some ("SELECT 3").
bool tag_is(std::string_view complete, std::string_view tag) {
    if (!complete.starts_with(tag)) return false;
    return complete.size() == tag.size() || complete[tag.size()] == ' ';
}

}  // namespace

bool completes_as(std::string_view complete, std::string_view statement_tag) {
    if (tag_is(complete, statement_tag)) return true;
    return (statement_tag == "CREATE TABLE AS" || statement_tag == "CREATE MATERIALIZED VIEW" ||
            statement_tag == "SELECT") &&
           tag_is(complete, "SELECT");
}

void MigratorRunTracker::on_completed(const MigratorStatement& statement) {
    if (pending_.size() >= max_pending) pending_.erase(pending_.begin());
    pending_.push_back(statement);
}

void MigratorRunTracker::on_command_complete(std::string_view tag) {
    // A transaction (or a savepoint's part of it) undone: nothing not yet committed counts.
    if (tag == "ROLLBACK" || tag == "PREPARE TRANSACTION") pending_.clear();
}

void MigratorRunTracker::on_error() { pending_.clear(); }

void MigratorRunTracker::on_ready(char transaction_status) {
    if (transaction_status == 'T') return;  // still in a transaction block: nothing committed yet
    if (transaction_status == 'I')
        for (auto& statement : pending_)
            committed_.push_back({std::move(statement.version), statement.direction,
                                  std::move(statement.structural_form)});
    // 'E' (a failed block) undoes them.
    pending_.clear();
}

std::vector<migrations::CommittedStatement> MigratorRunTracker::take_committed() {
    std::vector<migrations::CommittedStatement> out;
    out.swap(committed_);
    return out;
}

}  // namespace pgrail::proxy

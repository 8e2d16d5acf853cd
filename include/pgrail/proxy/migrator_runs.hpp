// Following, on the wire, which statements of registered migrations a session ran and committed
// (the migrator route: a migration tool, or the owner by hand), so that pgrail records a script
// run to its end in the ledger (migrations::record_external_runs). Pure state, no I/O.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "pgrail/migrations/external_runs.hpp"

namespace pgrail::proxy {

// An allowed statement equal to a registered migration's (policy::MigrationMatcher found it).
struct MigratorStatement {
    std::size_t index = 0;  // its place among its text's statements (a Query's k-th completes k-th)
    std::string version;
    migrations::Direction direction = migrations::Direction::up;
    std::string structural_form;
    std::string tag;  // PostgreSQL's command tag: its CommandComplete says it ran
};

// Whether a CommandComplete's tag is what the statement's execution answers: its own tag
// ("ALTER TABLE"), with a row count after it for some; CREATE TABLE AS, CREATE MATERIALIZED VIEW
// and SELECT INTO answer "SELECT n" (their own tag WITH NO DATA).
[[nodiscard]] bool completes_as(std::string_view complete, std::string_view statement_tag);

// A statement counts once the server completed it (SessionProtocol matches each completion to
// the statement or Execute it answers, by its place in its batch) and its transaction committed
// (the next ReadyForQuery says idle, no ROLLBACK or error in between). Conservative on purpose:
// what it cannot be sure of is not counted (it then shows as schema drift): an error or a
// ROLLBACK (also ROLLBACK TO SAVEPOINT, PREPARE TRANSACTION) drops everything not yet committed.
class MigratorRunTracker {
public:
    // A registered statement the server completed.
    void on_completed(const MigratorStatement& statement);
    // Whether CommandCompletes must be read (a completed statement waits for its commit).
    [[nodiscard]] bool watching() const { return !pending_.empty(); }
    void on_command_complete(std::string_view tag);
    void on_error();
    void on_ready(char transaction_status);
    [[nodiscard]] bool has_committed() const { return !committed_.empty(); }
    [[nodiscard]] std::vector<migrations::CommittedStatement> take_committed();

private:
    std::vector<MigratorStatement> pending_;  // completed, not yet committed
    std::vector<migrations::CommittedStatement> committed_;
};

}  // namespace pgrail::proxy

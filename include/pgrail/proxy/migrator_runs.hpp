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
    std::string version;
    migrations::Direction direction = migrations::Direction::up;
    std::string structural_form;
    std::string tag;  // PostgreSQL's command tag: its CommandComplete says it ran
};

// A statement counts once the server completed it (a CommandComplete with its tag) and its
// transaction committed (the next ReadyForQuery says idle, no ROLLBACK or error in between).
// Conservative on purpose: what it cannot be sure of is not counted (it then shows as schema
// drift): an error or a ROLLBACK (also ROLLBACK TO SAVEPOINT, PREPARE TRANSACTION) drops
// everything not yet committed; a statement prepared in one Sync and executed after a later one
// is not followed.
class MigratorRunTracker {
public:
    // Statements the gate allowed, in the order the client sent them.
    void on_forwarded(const std::vector<MigratorStatement>& statements);
    // Whether CommandCompletes must be read (something is on its way).
    [[nodiscard]] bool watching() const { return !pending_.empty(); }
    void on_command_complete(std::string_view tag);
    void on_error();
    void on_ready(char transaction_status);
    [[nodiscard]] bool has_committed() const { return !committed_.empty(); }
    [[nodiscard]] std::vector<migrations::CommittedStatement> take_committed();

private:
    struct Pending {
        MigratorStatement statement;
        bool completed = false;
    };
    std::vector<Pending> pending_;
    std::vector<migrations::CommittedStatement> committed_;
};

}  // namespace pgrail::proxy

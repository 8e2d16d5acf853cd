// Migrations run by hand or by a migration tool through pgrail (the migrator route): once a
// session has committed every statement of a registered migration's up (or down) script, in
// order, pgrail records it in the ledger as applied (rolled back), as its own runner would
// (docs/migrations.md "Existing migration tools").
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "pgrail/migrations/registry.hpp"

namespace pgrail::migrations {

class Runner;

// A statement of a registered migration's script that a session ran and committed.
struct CommittedStatement {
    std::string version;
    Direction direction = Direction::up;
    std::string structural_form;
};

// One session's progress through scripts: the index of the next statement expected, per version
// and direction. Owned by the session; touched only by record_external_runs (one at a time).
struct ExternalProgress {
    std::map<std::pair<std::string, Direction>, std::size_t> next;
};

// Who ran it: recorded as `by` (the session's user) and in the event's detail.
struct ExternalActor {
    std::string user;
    std::string application_name;
    std::uint64_t session_id = 0;
};

struct ExternalRun {
    std::string version;
    std::string name;
    Direction direction = Direction::up;
    bool recorded = false;  // false: the ledger already said so (nothing written)
};

// Advances `progress` by `committed` (in commit order) against the registry: a statement equal to
// the next one expected moves on; one equal to the script's first statement starts again; any
// other is ignored. Returns the scripts now complete, in the order they completed (their
// progress is reset). Pure.
[[nodiscard]] std::vector<std::pair<const Migration*, Direction>> advance_external_progress(
    const Registry& registry, const std::vector<CommittedStatement>& committed, ExternalProgress& progress);

// advance_external_progress, then records each completed script under the migration lock: an up
// script makes the migration applied (a schema_migrations row, an `applied` event), a down script
// rolls it back (row removed, a `rolled_back` event), unless the ledger already says so; the
// event's detail is `external: <application_name> (session <id>)`, `by` the user. A schema
// fingerprint is recorded with them. Audited like the runner's steps. First it confirms, on its
// own connection, that the change is where its runner would have made it (the session's names
// may have resolved elsewhere; the evidence: what changed since the baseline fingerprint, and
// where, and temporary relations of the scripts' names: docs/migrations.md): when not, nothing is
// written and it throws MigrationError (55000) with the reason. Throws MigrationError.
std::vector<ExternalRun> record_external_runs(const Runner& runner, const std::vector<CommittedStatement>& committed,
                                              ExternalProgress& progress, const ExternalActor& actor);

}  // namespace pgrail::migrations

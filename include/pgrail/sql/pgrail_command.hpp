// pgrail's in-band commands (SELECT * FROM pgrail.<command>(...)) as a type: the analyzer names
// the command once, and the policy, the proxy and the migrations module switch on it from there.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace pgrail::sql {

// The last three are the admin view (sessions, stats, refusals): read-only, answered from
// pgrail's memory.
enum class PgrailCommand : std::uint8_t {
    status,
    plan,
    migrate_up,
    migrate_down,
    verify,
    propose_migration,
    approve_migration,
    reject_migration,
    sessions,
    stats,
    refusals
};

inline constexpr std::array<PgrailCommand, 11> all_pgrail_commands = {PgrailCommand::status,
                                                                      PgrailCommand::plan,
                                                                      PgrailCommand::migrate_up,
                                                                      PgrailCommand::migrate_down,
                                                                      PgrailCommand::verify,
                                                                      PgrailCommand::propose_migration,
                                                                      PgrailCommand::approve_migration,
                                                                      PgrailCommand::reject_migration,
                                                                      PgrailCommand::sessions,
                                                                      PgrailCommand::stats,
                                                                      PgrailCommand::refusals};

// The function's name after `pgrail.`.
[[nodiscard]] std::string_view name_of(PgrailCommand command);
// The command `pgrail.<name>` calls; nothing for a name that is none of pgrail's commands.
[[nodiscard]] std::optional<PgrailCommand> pgrail_command_named(std::string_view name);
// migrate_up and migrate_down change what a ROLLBACK of the client's transaction would not undo
// (the schema and the ledger): pgrail runs them only outside a transaction block (SQLSTATE 25001
// otherwise), one a statement. status, plan and verify read (verify records that a test ran, which
// stays true whatever the client's transaction does).
[[nodiscard]] bool runs_migration(PgrailCommand command);
// What leaves a record behind (a migration, a proposal, an approval or rejection, a verification):
// run only where PostgreSQL would run the statement, never in a failed transaction block nor after
// an error earlier in its extended-protocol batch (the server skips those; a record made there
// would be one its client was told did not happen).
[[nodiscard]] bool leaves_a_record(PgrailCommand command);
// sessions, stats, refusals: answered from pgrail's memory, never from the migrations module.
[[nodiscard]] bool is_admin_command(PgrailCommand command);

}  // namespace pgrail::sql

#include "pgrail/sql/pgrail_command.hpp"

namespace pgrail::sql {

std::string_view name_of(PgrailCommand command) {
    switch (command) {
        case PgrailCommand::status:
            return "status";
        case PgrailCommand::plan:
            return "plan";
        case PgrailCommand::migrate_up:
            return "migrate_up";
        case PgrailCommand::migrate_down:
            return "migrate_down";
        case PgrailCommand::verify:
            return "verify";
        case PgrailCommand::propose_migration:
            return "propose_migration";
        case PgrailCommand::approve_migration:
            return "approve_migration";
        case PgrailCommand::reject_migration:
            return "reject_migration";
        case PgrailCommand::sessions:
            return "sessions";
        case PgrailCommand::stats:
            return "stats";
        case PgrailCommand::refusals:
            return "refusals";
    }
    return "?";
}

std::optional<PgrailCommand> pgrail_command_named(std::string_view name) {
    for (const PgrailCommand command : all_pgrail_commands)
        if (name_of(command) == name) return command;
    return std::nullopt;
}

bool runs_migration(PgrailCommand command) {
    return command == PgrailCommand::migrate_up || command == PgrailCommand::migrate_down;
}

bool is_admin_command(PgrailCommand command) {
    return command == PgrailCommand::sessions || command == PgrailCommand::stats || command == PgrailCommand::refusals;
}

}  // namespace pgrail::sql

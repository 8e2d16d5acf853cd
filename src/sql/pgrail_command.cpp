#include "pgrail/sql/pgrail_command.hpp"

#include <cstddef>

namespace pgrail::sql {

namespace {

// In the enum's order: a command's name is names[its value].
constexpr std::array<std::string_view, all_pgrail_commands.size()> names = {
    "status",           "plan",     "migrate_up", "migrate_down", "verify", "propose_migration",
    "approve_migration", "reject_migration", "sessions", "stats",  "refusals"};

constexpr bool listed_in_order() {
    for (std::size_t index = 0; index < all_pgrail_commands.size(); ++index)
        if (static_cast<std::size_t>(all_pgrail_commands[index]) != index) return false;
    return true;
}
static_assert(listed_in_order(), "all_pgrail_commands lists the enum in its order");

}  // namespace

std::string_view name_of(PgrailCommand command) { return names.at(static_cast<std::size_t>(command)); }

std::optional<PgrailCommand> pgrail_command_named(std::string_view name) {
    for (const PgrailCommand command : all_pgrail_commands)
        if (name_of(command) == name) return command;
    return std::nullopt;
}

bool runs_migration(PgrailCommand command) {
    return command == PgrailCommand::migrate_up || command == PgrailCommand::migrate_down;
}

bool leaves_a_record(PgrailCommand command) {
    return runs_migration(command) || command == PgrailCommand::verify || command == PgrailCommand::propose_migration ||
           command == PgrailCommand::approve_migration || command == PgrailCommand::reject_migration;
}

bool is_admin_command(PgrailCommand command) {
    return command == PgrailCommand::sessions || command == PgrailCommand::stats || command == PgrailCommand::refusals;
}

}  // namespace pgrail::sql

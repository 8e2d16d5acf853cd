// `pgrail check --policy FILE`: validate a policy file and print what it does.
#include <iostream>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "pgrail/policy/loader.hpp"

namespace pgrail::cli {

void add_check_command(CLI::App& app) {
    auto policy_file = std::make_shared<std::string>();
    auto migrations_dir = std::make_shared<std::string>("migrations");
    CLI::App* command = app.add_subcommand(
        "check", "Validate a policy file (errors name file:line:column) and print its rules and guards");
    command->add_option("--policy", *policy_file, "The policy file (YAML)")->required();
    command->add_option("--migrations-dir", *migrations_dir, "The migrations directory named in the DDL hint")
        ->default_str("migrations");
    command->callback([policy_file, migrations_dir] {
        // A bad file throws config::ConfigError "file:line:column: ..."; main prints it and exits 1.
        const auto policy = policy::load_policy_file(*policy_file, {*migrations_dir});
        std::cout << policy::summarize(*policy) << std::flush;
    });
}

}  // namespace pgrail::cli

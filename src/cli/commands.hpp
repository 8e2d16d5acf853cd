// The pgrail subcommands; each lives in src/cli/<name>_command.cpp.
#pragma once

#include <CLI/CLI.hpp>

namespace pgrail::cli {

void add_serve_command(CLI::App& app);
void add_classify_command(CLI::App& app);
void add_check_command(CLI::App& app);
void add_explain_command(CLI::App& app);
void add_migrate_command(CLI::App& app);
void add_backstop_command(CLI::App& app);
void add_audit_command(CLI::App& app);
void add_passwd_command(CLI::App& app);

}  // namespace pgrail::cli

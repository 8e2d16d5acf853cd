// `pgrail backstop install|status|uninstall`: the database's own backstop (docs/security.md).
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.hpp"
#include "pgrail/migrations/backstop.hpp"
#include "pgrail/migrations/error.hpp"

namespace pgrail::cli {

namespace {

namespace mig = pgrail::migrations;

struct BackstopOptions {
    std::string dsn;
    std::string key_file;
    bool no_temp = false;
};

int install(const BackstopOptions& options) {
    if (options.key_file.empty())
        throw std::invalid_argument("install needs --key-file PATH: the runner's key is written there (or reused)");
    const auto result = mig::install_backstop({options.dsn, options.key_file, !options.no_temp});
    std::string events;
    for (const auto& event : mig::backstop_events()) events += (events.empty() ? "" : ", ") + event;
    std::printf("pgrail backstop %s %s in database %s (schema pgrail_backstop, owner %s)\n", PGRAIL_VERSION,
                result.reinstalled ? "reinstalled" : "installed", result.database.c_str(), result.owner.c_str());
    std::printf("event triggers on %s; temporary tables, views and sequences %s\n", events.c_str(),
                options.no_temp ? "refused too" : "allowed");
    std::printf("pgrail's ledger: %s\n", result.ledger_guarded
                                             ? "guarded (written by the runner only)"
                                             : "not there yet (the runner guards it when it creates it)");
    std::printf("key: %s (%s)\n", options.key_file.c_str(),
                result.key_created ? "created, mode 0600" : "kept: runners configured with it stay authorized");
    std::printf("Configure the runner with it: migrations.backstop_key_file (pgrail serve), --backstop-key-file "
                "(pgrail migrate). Keep it out of agents' reach.\n");
    return 0;
}

// 0: installed by this version and firing; 2: missing, another version, a trigger off, or the
// key does not match; 1: the state could not be read.
int status(const BackstopOptions& options) {
    std::optional<std::string> key;
    if (!options.key_file.empty()) key = mig::read_backstop_key(options.key_file);
    const auto state = mig::read_backstop_status(options.dsn, key);
    if (!state.error.empty()) {
        std::fprintf(stderr, "pgrail: cannot read the backstop's state: %s\n", state.error.c_str());
        return 1;
    }
    std::printf("installed: %s\n", state.installed ? "yes" : "no");
    if (state.installed) {
        std::printf("version: %s (this pgrail: %s)\n", state.installed_version.c_str(), PGRAIL_VERSION);
        std::printf("temporary objects: %s\n", state.allows_temporary ? "allowed" : "refused");
    }
    for (const auto& trigger : state.triggers)
        std::printf("event trigger %s on %s: %s\n", trigger.name.c_str(), trigger.event.c_str(),
                    trigger.enabled == 'O' || trigger.enabled == 'A' ? "enabled"
                    : trigger.enabled == 'D'                          ? "DISABLED"
                                                                      : "replica sessions only");
    if (state.key_matches) std::printf("key: %s\n", *state.key_matches ? "matches" : "DOES NOT MATCH");
    for (const auto& problem : state.problems()) std::printf("problem: %s\n", problem.c_str());
    return state.healthy() ? 0 : 2;
}

int uninstall(const BackstopOptions& options) {
    if (mig::uninstall_backstop(options.dsn))
        std::printf("pgrail backstop removed: event triggers, the ledger's guard and schema pgrail_backstop\n");
    else
        std::printf("no pgrail backstop in this database: nothing to remove\n");
    return 0;
}

int run(const std::string& action, const BackstopOptions& options) {
    try {
        if (action == "install") return install(options);
        if (action == "status") return status(options);
        return uninstall(options);
    } catch (const mig::MigrationError& error) {
        std::fprintf(stderr, "pgrail: ERROR [%s] %s\n", error.sqlstate().c_str(), error.what());
        if (!error.detail().empty()) std::fprintf(stderr, "DETAIL: %s\n", error.detail().c_str());
        if (!error.hint().empty()) std::fprintf(stderr, "HINT: %s\n", error.hint().c_str());
        return 1;
    }
}

}  // namespace

void add_backstop_command(CLI::App& app) {
    auto options = std::make_shared<BackstopOptions>();
    CLI::App* backstop = app.add_subcommand(
        "backstop", "The database's own backstop: event triggers that refuse schema changes not made by pgrail's "
                    "migration runner");
    backstop->require_subcommand(1);
    backstop->fallthrough();
    backstop->add_option("--dsn", options->dsn, "libpq connection string of the target database (a superuser's)")
        ->required();
    const auto add = [&](const char* name, const char* help) {
        CLI::App* sub = backstop->add_subcommand(name, help);
        sub->callback([options, action = std::string(name)] {
            if (const int code = run(action, *options); code != 0) {
                std::fflush(stdout);
                std::exit(code);
            }
        });
        return sub;
    };
    CLI::App* install_command =
        add("install", "Install (or upgrade) the backstop in one transaction; the runner's key goes to --key-file");
    install_command->add_option("--key-file", options->key_file,
                                "The runner's key: reused when the file exists, else created (mode 0600)");
    install_command->add_flag("--no-temp", options->no_temp,
                              "Refuse temporary tables, views and sequences too (default: allowed)");
    add("status", "Whether the backstop is installed, by this version, firing (exit 0), or not (exit 2)")
        ->add_option("--key-file", options->key_file, "Also check that this key is the installed one");
    add("uninstall", "Remove the backstop: event triggers, the ledger's guard, schema pgrail_backstop");
}

}  // namespace pgrail::cli

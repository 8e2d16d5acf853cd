// pgrail: a PostgreSQL wire-protocol proxy that keeps AI agents from ad hoc schema changes.
#include <csignal>
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "commands.hpp"

int main(int argc, char** argv) {
    // A file size limit (ulimit -f) makes a write past it fail with EFBIG, which the audit log
    // handles (the line cut back, the statement refused with 58030), instead of killing pgrail.
    std::signal(SIGXFSZ, SIG_IGN);
    CLI::App app{"pgrail: a PostgreSQL proxy that lets the schema change only through registered migrations"};
    app.set_version_flag("--version", "pgrail " PGRAIL_VERSION);
    app.require_subcommand(1);
    pgrail::cli::add_serve_command(app);
    pgrail::cli::add_classify_command(app);
    pgrail::cli::add_check_command(app);
    pgrail::cli::add_explain_command(app);
    pgrail::cli::add_migrate_command(app);
    pgrail::cli::add_backstop_command(app);
    pgrail::cli::add_audit_command(app);
    pgrail::cli::add_passwd_command(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pgrail: %s\n", e.what());
        return 1;
    }
    return 0;
}

// `pgrail migrate status|plan|up|down|verify|resolve|lint`: the migration runner from the command line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.hpp"
#include "pgrail/audit/audit_log.hpp"
#include "pgrail/migrations/commands.hpp"
#include "pgrail/migrations/error.hpp"
#include "pgrail/migrations/lint.hpp"
#include "pgrail/migrations/proposals.hpp"
#include "pgrail/migrations/registry.hpp"
#include "pgrail/migrations/runner.hpp"

namespace pgrail::cli {

namespace {

namespace mig = pgrail::migrations;

struct MigrateOptions {
    std::string dir = "migrations";
    std::string dsn;
    std::string lock_timeout = "5s";
    std::string statement_timeout = "60s";
    std::string lock_wait = "300s";
    std::string audit;
    std::string user;
    std::string scratch_dsn;
    std::string pg_dump;
    std::string backstop_key_file;
    bool require_verified = false;
    std::int64_t sample_rows = 0;                // verify: rows per table copied into the scratch copy
    std::vector<std::string> exclude_columns;    // verify: schema.table.column never copied
    std::string to;
    std::string version;
    std::string as;  // resolve of a partial migration: applied | pending
    bool accept_schema = false;  // resolve --accept-schema: the live schema becomes the ledger's baseline
    std::string reason;                 // reject
    std::vector<std::string> versions;  // export
    std::string export_dir;             // export (default: --dir)
    bool pending = false;               // export: proposed ones too
    bool force = false;                 // export: overwrite files that differ
    std::string lint_format = "text";   // lint: text | json | sarif
    bool lint_rules = false;            // lint: list the catalogue instead
};

// `pgrail migrate lint`: the lint catalogue over the directory's files, no database needed. Exit
// 1 when an unwaived error (or a finding the default policy blocks) or an invalid file exists.
int lint_directory(const MigrateOptions& options) {
    if (options.lint_rules) {
        for (const auto& rule : mig::lint_catalogue)
            std::printf("%-36s %-8s %s\n", std::string(rule.id).c_str(), mig::to_string(rule.severity),
                        std::string(rule.message).c_str());
        return 0;
    }
    mig::LintFormat format = mig::LintFormat::text;
    if (options.lint_format == "json") format = mig::LintFormat::json;
    else if (options.lint_format == "sarif") format = mig::LintFormat::sarif;
    else if (options.lint_format != "text")
        throw std::invalid_argument(
            fmt::format("--format: expected text, json or sarif, not \"{}\"", options.lint_format));
    const auto registry = mig::Registry::load(options.dir);
    const auto report = mig::lint_report(registry, format);
    std::fwrite(report.output.data(), 1, report.output.size(), stdout);
    return report.failed() ? 1 : 0;
}

// `pgrail migrate export`: approved (and with --pending, proposed) proposals as migration files.
int export_proposals(const MigrateOptions& options) {
    namespace fs = std::filesystem;
    const fs::path dir = options.export_dir.empty() ? fs::path(options.dir) : fs::path(options.export_dir);
    std::error_code ec;
    fs::create_directories(dir, ec);
    int written = 0;
    for (const auto& proposal : mig::read_proposals(options.dsn)) {
        if (!options.versions.empty() &&
            std::find_if(options.versions.begin(), options.versions.end(), [&](const std::string& v) {
                return mig::canonical_version(v) == proposal.version;
            }) == options.versions.end())
            continue;
        if (proposal.state == mig::ProposalState::rejected) continue;
        if (proposal.state == mig::ProposalState::proposed && !options.pending) continue;
        for (const auto direction : {mig::Direction::up, mig::Direction::down}) {
            const fs::path path = dir / mig::proposal_file_name(proposal, direction);
            const std::string& text = direction == mig::Direction::up ? proposal.up_sql : proposal.down_sql;
            if (fs::exists(path) && !options.force) {
                std::ifstream in(path, std::ios::binary);
                const std::string existing((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
                if (existing == text) continue;
                throw std::runtime_error(fmt::format("{} exists with other content (--force overwrites it)",
                                                     path.string()));
            }
            std::ofstream out(path, std::ios::binary | std::ios::trunc);
            out << text;
            out.close();
            if (!out) throw std::runtime_error(fmt::format("cannot write {}", path.string()));
        }
        std::printf("%s_%s (%s, checksum %s)\n", proposal.version.c_str(), proposal.name.c_str(),
                    mig::to_string(proposal.state), proposal.checksum.c_str());
        ++written;
    }
    std::printf("exported %d proposal%s to %s\n", written, written == 1 ? "" : "s", dir.string().c_str());
    return 0;
}

// "500ms", "5s", "2min", "1h"; a bare number is milliseconds.
std::chrono::milliseconds parse_duration(const std::string& text, const char* option) {
    std::size_t used = 0;
    long long value = -1;
    try {
        value = std::stoll(text, &used);
    } catch (const std::exception&) {
    }
    const std::string unit = text.substr(std::min(used, text.size()));
    long long factor = 0;
    if (unit.empty() || unit == "ms") factor = 1;
    else if (unit == "s") factor = 1000;
    else if (unit == "min") factor = 60'000;
    else if (unit == "h") factor = 3'600'000;
    if (value < 0 || factor == 0)
        throw std::invalid_argument(fmt::format("{}: invalid duration \"{}\" (e.g. 500ms, 5s, 2min, 1h)", option, text));
    return std::chrono::milliseconds(value * factor);
}

void print_table(const mig::ResultTable& table) {
    std::vector<std::size_t> widths(table.columns.size());
    const auto cell = [](const std::optional<std::string>& value) {
        if (!value) return std::string();
        const auto eol = value->find('\n');
        return eol == std::string::npos ? *value : value->substr(0, eol) + " ...";
    };
    for (std::size_t c = 0; c < table.columns.size(); ++c) widths[c] = table.columns[c].size();
    for (const auto& row : table.rows)
        for (std::size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], cell(row[c]).size());
    const auto print_row = [&](const auto& value_of) {
        std::string line;
        for (std::size_t c = 0; c < table.columns.size(); ++c)
            line += fmt::format("{}{:<{}}", c == 0 ? "" : " | ", value_of(c), widths[c]);
        while (!line.empty() && line.back() == ' ') line.pop_back();
        std::printf("%s\n", line.c_str());
    };
    print_row([&](std::size_t c) { return table.columns[c]; });
    std::string rule;
    for (std::size_t c = 0; c < widths.size(); ++c) rule += (c == 0 ? "" : "-+-") + std::string(widths[c], '-');
    std::printf("%s\n", rule.c_str());
    for (const auto& row : table.rows) print_row([&](std::size_t c) { return cell(row[c]); });
    std::printf("(%zu row%s)\n", table.rows.size(), table.rows.size() == 1 ? "" : "s");
    // Multi-line values (a schema diff, an error) in full below the table.
    for (const auto& row : table.rows)
        for (std::size_t c = 0; c < row.size(); ++c)
            if (row[c] && row[c]->find('\n') != std::string::npos)
                std::printf("\n%s %s:\n%s\n", row[0].value_or("").c_str(), table.columns[c].c_str(), row[c]->c_str());
}

int run(const std::string& action, const MigrateOptions& options) {
    if (action == "lint") return lint_directory(options);
    if (options.dsn.empty())
        throw std::invalid_argument("--dsn is required (a libpq connection string, or set PGRAIL_MIGRATE_DSN)");
    if (action == "export") return export_proposals(options);
    auto directory = mig::Registry::load(options.dir);
    // Approved proposals are registered migrations (proposals.hpp): read them from the ledger.
    auto merged = mig::merge_proposals(directory, mig::read_approved_proposals(options.dsn));
    for (const auto& conflict : merged.conflicts) std::fprintf(stderr, "pgrail: WARNING %s\n", conflict.c_str());
    if (!merged.conflicts.empty() && action != "reject" && action != "proposals" && action != "status") {
        std::fprintf(stderr, "pgrail: ERROR [55000] %s\n", merged.conflicts.front().c_str());
        return 1;
    }
    auto registry = std::make_shared<const mig::Registry>(std::move(merged.registry));
    mig::RunnerOptions runner_options;
    runner_options.conninfo = options.dsn;
    runner_options.lock_timeout = parse_duration(options.lock_timeout, "--lock-timeout");
    runner_options.statement_timeout = parse_duration(options.statement_timeout, "--statement-timeout");
    runner_options.lock_wait = parse_duration(options.lock_wait, "--lock-wait");
    runner_options.actor = options.user;
    runner_options.require_verified = options.require_verified;
    runner_options.scratch_conninfo = options.scratch_dsn;
    runner_options.pg_dump = options.pg_dump;
    runner_options.backstop_key_file = options.backstop_key_file;
    runner_options.verify_sample_rows = options.sample_rows;
    runner_options.verify_exclude_columns = options.exclude_columns;
    std::unique_ptr<audit::AuditLog> audit_log;
    if (!options.audit.empty()) {
        audit_log = std::make_unique<audit::AuditLog>(options.audit, audit::FsyncMode::always);
        runner_options.audit = [log = audit_log.get()](const nlohmann::json& event) {
            nlohmann::json record = event;
            record["source"] = "cli";
            return log->record(record);
        };
    }
    mig::Runner runner(registry, std::move(runner_options));
    const std::optional<std::string> to = options.to.empty() ? std::nullopt : std::optional(options.to);
    try {
        if (action == "status") {
            const auto report = runner.status_report();
            const auto& snapshot = report.snapshot;
            auto table = mig::status_table(*snapshot);
            mig::append_schema_drift_row(table, report.schema);
            print_table(table);
            if (!report.schema.error.empty()) std::printf("schema: %s\n", report.schema.detail().c_str());
            // Said, not counted in the exit status: a database without the backstop is not a
            // migration that needs attention (`pgrail backstop status` exits non-zero for it).
            std::printf("backstop: %s\n", report.backstop.summary().c_str());
            // Non-zero when something needs an operator: drift, invalid files, a partial run.
            const bool attention = std::any_of(snapshot->status().begin(), snapshot->status().end(), [](const auto& e) {
                return e.state == mig::State::drifted || e.state == mig::State::invalid ||
                       e.state == mig::State::partial;
            });
            return attention || report.schema.drifted ? 2 : 0;
        }
        if (action == "plan") print_table(mig::plan_table(runner, to));
        if (action == "up") print_table(mig::migrate_up_table(runner, to));
        if (action == "down") {
            const auto table = to ? mig::migrate_down_to_table(runner, *to) : mig::migrate_down_table(runner, std::nullopt);
            print_table(table);
        }
        if (action == "verify") {
            const auto table =
                mig::verify_table(runner, options.version.empty() ? std::nullopt : std::optional(options.version));
            print_table(table);
            // What each migration did in the scratch copy, in one line (the table cuts nothing,
            // but a line is easier to read than six columns).
            for (const auto& row : table.rows)
                std::printf("%s %s: %s; locks: %s; sample: %s\n", row[0].value_or("").c_str(),
                            row[3].value_or("").c_str(), row[6].value_or("").c_str(), row[7].value_or("").c_str(),
                            row[11].value_or("").c_str());
            for (const auto& row : table.rows)
                if (row[3] != "passed") return 1;
        }
        if (action == "approve") print_table(mig::proposal_table({runner.approve(options.version)}));
        if (action == "reject") print_table(mig::proposal_table({runner.reject(options.version, options.reason)}));
        if (action == "proposals") {
            auto proposals = mig::read_proposals(options.dsn);
            if (!options.versions.empty()) {
                // Named ones: with both scripts, as migrate_up and migrate_down would run them.
                std::erase_if(proposals, [&](const mig::Proposal& p) {
                    return std::find(options.versions.begin(), options.versions.end(), p.version) == options.versions.end();
                });
                if (proposals.size() != options.versions.size())
                    throw std::invalid_argument("no proposal has some of the versions given");
            }
            print_table(mig::proposal_table(proposals));
            if (!options.versions.empty())
                for (const auto& proposal : proposals)
                    std::printf("\n-- %s_%s: up script (migrate_up runs it)\n%s\n-- %s_%s: down script "
                                "(migrate_down runs it)\n%s\n",
                                proposal.version.c_str(), proposal.name.c_str(), proposal.up_sql.c_str(),
                                proposal.version.c_str(), proposal.name.c_str(), proposal.down_sql.c_str());
        }
        if (action == "resolve" && options.accept_schema) {
            if (!options.version.empty() || !options.as.empty())
                throw std::invalid_argument("--accept-schema takes no version and no --as");
            const auto accepted = runner.accept_schema();
            if (accepted.drifted)
                std::printf("accepted the live schema as the ledger's baseline; it differed:\n%s\n", accepted.diff.c_str());
            else
                std::printf("recorded the live schema as the ledger's baseline (it did not differ)\n");
            return 0;
        }
        if (action == "resolve") {
            if (options.version.empty()) throw std::invalid_argument("resolve: name a migration version, or --accept-schema");
            std::optional<mig::Resolution> as;
            if (options.as == "applied") as = mig::Resolution::applied;
            else if (options.as == "pending") as = mig::Resolution::pending;
            else if (!options.as.empty())
                throw std::invalid_argument(fmt::format("--as: expected applied or pending, not \"{}\"", options.as));
            runner.resolve(options.version, as);
            if (as)
                std::printf("resolved partial migration %s: now %s\n", options.version.c_str(), options.as.c_str());
            else
                std::printf("resolved drift of migration %s\n", options.version.c_str());
        }
    } catch (const mig::MigrationError& error) {
        std::fprintf(stderr, "pgrail: ERROR [%s] %s\n", error.sqlstate().c_str(), error.what());
        if (!error.detail().empty()) std::fprintf(stderr, "DETAIL: %s\n", error.detail().c_str());
        if (!error.hint().empty()) std::fprintf(stderr, "HINT: %s\n", error.hint().c_str());
        return 1;
    }
    return 0;
}

}  // namespace

void add_migrate_command(CLI::App& app) {
    auto options = std::make_shared<MigrateOptions>();
    if (const char* dsn = std::getenv("PGRAIL_MIGRATE_DSN")) options->dsn = dsn;
    if (const char* key = std::getenv("PGRAIL_BACKSTOP_KEY_FILE")) options->backstop_key_file = key;
    CLI::App* migrate = app.add_subcommand("migrate", "Show, apply, roll back and verify registered migrations");
    migrate->require_subcommand(1);
    migrate->fallthrough();
    migrate->add_option("--dir", options->dir, "Migrations directory (<version>_<name>.up.sql / .down.sql)")
        ->capture_default_str();
    migrate->add_option("--dsn", options->dsn, "libpq connection string of the target database ($PGRAIL_MIGRATE_DSN)");
    migrate->add_option("--lock-timeout", options->lock_timeout, "lock_timeout of each migration")->capture_default_str();
    migrate->add_option("--statement-timeout", options->statement_timeout, "statement_timeout of each migration")
        ->capture_default_str();
    migrate->add_option("--lock-wait", options->lock_wait, "How long to wait for another run's migration lock")
        ->capture_default_str();
    migrate->add_option("--audit", options->audit, "Append audit records (JSON lines) to this file ('-': stdout)");
    migrate->add_option("--user", options->user, "Who to record as applied_by (default: the database user)");
    migrate->add_flag("--require-verified", options->require_verified,
                      "Apply only migrations whose exact checksum passed `migrate verify`");
    migrate->add_option("--scratch-dsn", options->scratch_dsn,
                        "verify: server to create the scratch database on (default: --dsn's)");
    migrate->add_option("--pg-dump", options->pg_dump, "verify: pg_dump to use (default: PostgreSQL 15's)");
    migrate->add_option("--backstop-key-file", options->backstop_key_file,
                        "The key `pgrail backstop install` wrote: authorizes this runner where the database has the "
                        "backstop ($PGRAIL_BACKSTOP_KEY_FILE)");

    const auto add = [&](const char* name, const char* help) {
        CLI::App* sub = migrate->add_subcommand(name, help);
        sub->callback([options, action = std::string(name)] {
            if (const int code = run(action, *options); code != 0) {
                std::fflush(stdout);
                std::exit(code);
            }
        });
        return sub;
    };
    auto* lint = add("lint", "Check the migrations against the lint catalogue (docs/lint.md); no database needed. "
                             "Exit 1 on an unwaived error-severity finding or an invalid file");
    lint->add_option("--format", options->lint_format, "text, json or sarif (SARIF 2.1.0 for code scanning)")
        ->capture_default_str();
    lint->add_flag("--rules", options->lint_rules, "List the rules: id, severity, message");
    add("status", "List migrations: pending, applied, invalid (with the reason), drifted or partial (exit 2 "
                  "if any needs attention)");
    add("plan", "Show what `up` would apply")->add_option("--to", options->to, "Stop after this version");
    add("up", "Apply pending migrations in order")->add_option("--to", options->to, "Stop after this version");
    add("down", "Roll back the latest applied migration")
        ->add_option("--to", options->to, "Roll back every applied migration above this version (0: all)");
    CLI::App* verify = add("verify", "Prove rollbacks in a scratch database: up, down, compare schemas, up; report "
                                     "tables rewritten, locks taken and time per script");
    verify->add_option("version", options->version, "Migration to verify (default: every pending one)");
    verify->add_option("--sample-rows", options->sample_rows,
                       "Copy at most N rows of each table from the target into the scratch copy (default 0: "
                       "schema only)")
        ->check(CLI::Range(std::int64_t{0}, mig::max_verify_sample_rows));
    verify->add_option("--exclude-column", options->exclude_columns,
                       "schema.table.column never copied into the scratch copy (repeatable; sensitive columns)")
        ->allow_extra_args(false)  // one column per --exclude-column: the version stays positional
        ->check([](const std::string& column) {
            const auto dots = std::count(column.begin(), column.end(), '.');
            return dots >= 2 && column.front() != '.' && column.back() != '.'
                       ? std::string()
                       : "expected schema.table.column, got \"" + column + "\"";
        });
    add("approve", "Approve a proposed migration (pgrail.propose_migration): it becomes a registered migration")
        ->add_option("version", options->version, "The proposal's version")
        ->required();
    CLI::App* reject = add("reject", "Reject a proposed migration, with a reason");
    reject->add_option("version", options->version, "The proposal's version")->required();
    reject->add_option("--reason", options->reason, "Why (recorded in the ledger)")->required();
    add("proposals", "List the proposed migrations and their states; with versions, also their up and down scripts")
        ->add_option("versions", options->versions, "Show these proposals with both scripts (read them before approving)");
    CLI::App* exporter = add("export", "Write approved proposals as <version>_<name>.up.sql/.down.sql files (for "
                                       "review in git); the files have the proposals' checksums");
    exporter->add_option("versions", options->versions, "Only these proposals (default: all)");
    exporter->add_option("--out", options->export_dir, "Folder to write to (default: --dir)");
    exporter->add_flag("--pending", options->pending, "Also proposals that are not approved yet");
    exporter->add_flag("--force", options->force, "Overwrite files whose content differs");
    CLI::App* resolve = add("resolve", "Accept changed files of a drifted migration, or forget one whose files "
                                       "are gone; or record how a partial one was finished or undone by hand");
    resolve->add_option("version", options->version, "The drifted or partial migration");
    resolve->add_flag("--accept-schema", options->accept_schema,
                      "Schema drift: record the live schema as the ledger's baseline (audited, with the diff)");
    resolve->add_option("--as", options->as,
                        "Partial migration only: the state its statements were left in by hand (applied: the rest "
                        "was run by hand; pending: what ran was undone)")
        ->check(CLI::IsMember({"applied", "pending"}));
}

}  // namespace pgrail::cli

// `pgrail serve --config FILE`: run the proxy with its policy, audit log and migrations.
#include <memory>
#include <thread>

#include <spdlog/spdlog.h>

#include "commands.hpp"
#include "pgrail/audit/audit_log.hpp"
#include "pgrail/config/serve_config.hpp"
#include "pgrail/config/yaml_reader.hpp"
#include "pgrail/migrations/backstop.hpp"
#include "pgrail/migrations/error.hpp"
#include "pgrail/policy/loader.hpp"
#include "pgrail/proxy/metrics.hpp"
#include "pgrail/proxy/logging.hpp"
#include "pgrail/proxy/migration_commands.hpp"
#include "pgrail/proxy/policy_gate.hpp"
#include "pgrail/proxy/server.hpp"

namespace pgrail::cli {

namespace {

// auth.mode passthrough relays the client's password exchange; with TLS on the server leg two
// things follow from the server seeing pgrail's connection, not the client's (docs/security.md).
void warn_of_passthrough_tls(const config::ServeConfig& config) {
    if (config.auth_mode != config::ServeConfig::AuthMode::passthrough || !config.tls.server.enabled()) return;
    if (config.tls.client.enabled())
        spdlog::warn("auth.mode passthrough with TLS on both legs: SCRAM channel binding cannot pass through pgrail, "
                     "so SCRAM clients over TLS must connect with channel_binding=disable (libpq's default, prefer, "
                     "is refused by pgrail with that advice); auth.mode pgrail binds each leg itself");
    if (!config.tls.server.cert_file.empty())
        spdlog::warn("tls.server.cert_file with auth.mode passthrough: PostgreSQL sees pgrail's certificate for every "
                     "client, so a role it authenticates by certificate alone is open to anyone who reaches pgrail");
}

policy::LoadOptions policy_options(const config::ServeConfig& config) {
    policy::LoadOptions options;
    if (!config.migrations_dir.empty()) options.migrations_dir = config.migrations_dir;
    return options;
}

// A warning when the migration database has no working backstop. On a thread of its own and
// bounded by the connect timeout: never fatal, never in the way of the start.
std::jthread check_backstop(const config::ServeConfig& config) {
    if (config.migrator_conninfo.empty()) return {};
    return std::jthread([conninfo = proxy::bounded_conninfo(config.migrator_conninfo, config.connect_timeout_ms, 5000)] {
        const auto status = migrations::read_backstop_status(conninfo);
        if (!status.error.empty())
            spdlog::warn("backstop: cannot tell whether the migration database has pgrail's backstop: {}", status.error);
        else if (!status.healthy())
            spdlog::warn("backstop: {} (docs/security.md)", status.summary());
        else
            spdlog::info("backstop: {}", status.summary());
    });
}

// The exit status of a shutdown: 1 when a session had to be cut inside a transaction or statement.
void finish(int status) {
    if (status != 0) throw CLI::RuntimeError(status);
}

void serve(const std::string& config_path) {
    config::ServeConfig config;
    std::shared_ptr<const policy::Policy> policy;
    try {
        config = config::load_serve_config(config_path);
        if (!config.policy_file.empty()) policy = policy::load_policy_file(config.policy_file, policy_options(config));
    } catch (const config::ConfigError& e) {
        // Fail closed: never start with a configuration or policy that does not load.
        std::fprintf(stderr, "pgrail: %s\n", e.what());
        throw CLI::RuntimeError(2);
    }
    if (!config.backstop_key_file.empty()) {
        // Fail closed: a runner whose key cannot be read would be refused at its first migration.
        try {
            (void)migrations::read_backstop_key(config.backstop_key_file);
        } catch (const migrations::MigrationError& e) {
            std::fprintf(stderr, "pgrail: migrations.backstop_key_file: %s\n", e.what());
            throw CLI::RuntimeError(2);
        }
    }
    proxy::configure_logging(config.log_level, config.log_format);
    warn_of_passthrough_tls(config);
    // pgrail's own connections to the server (migrations, catalog) get the server leg's TLS.
    config.migrator_conninfo = proxy::conninfo_with_server_tls(config.migrator_conninfo, config.tls.server);
    config.catalog_conninfo = proxy::conninfo_with_server_tls(config.catalog_conninfo, config.tls.server);

    if (!policy) {
        spdlog::warn("no policy configured: every statement is forwarded (set `policy:` to enforce one)");
        finish(proxy::Server(config, std::make_shared<proxy::ForwardAllGate>(), nullptr).run());
        return;
    }
    // The audit log's write and fdatasync times go to /metrics.
    audit::AuditTimings audit_timings{
        [](std::chrono::nanoseconds elapsed) { proxy::metrics().audit_write_seconds.observe(elapsed); },
        [](std::chrono::nanoseconds elapsed) { proxy::metrics().audit_fsync_seconds.observe(elapsed); }};
    auto audit_log = std::make_shared<audit::AuditLog>(
        config.audit_file, config.audit_fsync ? audit::FsyncMode::always : audit::FsyncMode::never,
        std::move(audit_timings));
    auto gate = std::make_shared<proxy::PolicyGate>(policy, audit_log, config.audit_redact_literals,
                                                    config.max_analyzed_size);
    // sensitive_columns are resolved against each database's catalog, read on pgrail's own
    // connection (catalog.conninfo, by default the migrations'). Without one, a rule with
    // sensitive_columns refuses every statement that reads a relation (fail closed).
    if (!config.catalog_conninfo.empty()) {
        gate->set_sensitive_catalogs(std::make_shared<proxy::SensitiveCatalogs>(
            config.catalog_conninfo, std::chrono::milliseconds(config.catalog_refresh_ms),
            std::chrono::milliseconds(config.catalog_timeout_ms)));
    } else if (policy->has_sensitive_columns) {
        spdlog::warn("the policy has sensitive_columns but no catalog connection is configured (catalog.conninfo): "
                     "statements that read relations are refused under those rules");
    }
    std::shared_ptr<proxy::MigrationCommands> migration_commands;
    std::jthread backstop_check;
    if (!config.migrations_dir.empty()) {
        migration_commands = std::make_shared<proxy::MigrationCommands>(config, audit_log, gate);
        // Only once the main thread's own first libpqxx work is done: ThreadSanitizer saw libpqxx
        // 6.4 share data of its own (pqxx::internal::find_with_encoding) between this check and
        // the ledger reads above when the two started at once, on separate connections.
        backstop_check = check_backstop(config);
    }
    spdlog::info("policy {} loaded (mode {}, {} rules)", policy->source, policy::to_string(policy->mode),
                 policy->rules.size());

    auto reload = [config, gate, migration_commands, audit_log] {
        if (!audit_log->reopen())  // after logrotate moved it away (packaging/logrotate/pgrail)
            spdlog::error("audit log not reopened, the previous file stays in use: {}", audit_log->last_error());
        try {
            auto fresh = policy::load_policy_file(config.policy_file, policy_options(config));
            gate->replace_policy(fresh);
            gate->catalog_changed();
            spdlog::info("policy {} reloaded (mode {}, {} rules)", fresh->source, policy::to_string(fresh->mode),
                         fresh->rules.size());
            proxy::metrics().reloads_ok.fetch_add(1);
        } catch (const std::exception& e) {
            spdlog::error("policy reload refused, the previous policy stays in force: {}", e.what());
            proxy::metrics().reloads_failed.fetch_add(1);
        }
        if (migration_commands) migration_commands->reload();
    };
    finish(proxy::Server(config, gate, migration_commands, reload, audit_log).run());
}

}  // namespace

void add_serve_command(CLI::App& app) {
    auto* command = app.add_subcommand("serve", "Run the proxy in front of a PostgreSQL server");
    auto config_path = std::make_shared<std::string>();
    command->add_option("-c,--config", *config_path, "YAML configuration file (see config/pgrail.yaml)")->required();
    command->callback([config_path] { serve(*config_path); });
}

}  // namespace pgrail::cli

// The serve configuration: defaults, every key, and errors that name file:line:column.
#include <catch2/catch.hpp>

#include "pgrail/config/serve_config.hpp"
#include "pgrail/config/yaml_reader.hpp"

using pgrail::config::ConfigError;
using pgrail::config::parse_serve_config;

TEST_CASE("an empty configuration gives the documented defaults") {
    const auto config = parse_serve_config("", "empty.yaml");
    CHECK(config.listen_host == "127.0.0.1");
    CHECK(config.listen_port == 6432);
    CHECK(config.upstream_port == 5432);
    CHECK(config.max_message_size == 64u << 20);
    CHECK(config.workers == 0);
    CHECK(config.policy_file.empty());
    CHECK(config.lock_wait_ms == 10000);
    CHECK(config.proposal_proof_timeout_ms == 30000);
    CHECK(config.proposal_statement_timeout_ms == 5000);
    CHECK(config.proposal_max_scratch_bytes == 256u << 20);
    CHECK(config.proposal_proofs_at_once == 1);
    CHECK(config.connect_timeout_ms == 5000);
    CHECK(config.shutdown_timeout_ms == 30000);
    CHECK(config.tcp_keepalive_idle_ms == 60000);
    CHECK(config.tcp_keepalive_interval_ms == 10000);
    CHECK(config.tcp_keepalive_count == 6);
}

TEST_CASE("every key is read") {
    const auto config = parse_serve_config(R"(
listen: {host: 0.0.0.0, port: 7000}
upstream: {host: db, port: 5433, connect_timeout_ms: 250}
workers: 3
max_pending_logins_per_address: 9
max_message_size: 2048
max_analyzed_size: 100000
max_buffered_size: 4097
buffered_message_timeout: 2s
shutdown_timeout: 5s
tcp_keepalive: {idle: 30s, interval: 2s, count: 3}
log: {level: debug, format: json}
policy: p.yaml
audit: {file: a.jsonl, fsync: always, redact_literals: false, refusal_bytes_per_second: 5, refusal_burst_bytes: 20000}
migrations: {dir: m, migrator: "user=x", lock_timeout: 2s, statement_timeout: 1min, lock_wait: 500ms,
             require_verified: true, backstop_key_file: /etc/pgrail/backstop.key, proposal_proof_timeout: 10s,
             proposal_statement_timeout: 2s, proposal_max_scratch_size: 1048576, proposal_proofs_at_once: 3}
)", "full.yaml");
    CHECK(config.listen_host == "0.0.0.0");
    CHECK(config.listen_port == 7000);
    CHECK(config.upstream_host == "db");
    CHECK(config.connect_timeout_ms == 250);
    CHECK(config.workers == 3);
    CHECK(config.max_pending_logins_per_address == 9);
    CHECK(config.max_message_size == 2048);
    CHECK(config.max_analyzed_size == 100000);
    CHECK(config.max_buffered_size == 4097);
    CHECK(config.buffered_message_timeout_ms == 2000);
    CHECK(config.shutdown_timeout_ms == 5000);
    CHECK(config.tcp_keepalive_idle_ms == 30000);
    CHECK(config.tcp_keepalive_interval_ms == 2000);
    CHECK(config.tcp_keepalive_count == 3);
    CHECK(parse_serve_config("tcp_keepalive: off\n", "off.yaml").tcp_keepalive_idle_ms == 0);
    CHECK(config.log_format == "json");
    CHECK(config.audit_fsync);
    CHECK_FALSE(config.audit_redact_literals);
    CHECK(config.audit_refusal_bytes_per_second == 5);
    CHECK(config.audit_refusal_burst_bytes == 20000);
    CHECK(config.migrator_conninfo == "user=x");
    CHECK(config.lock_timeout_ms == 2000);
    CHECK(config.statement_timeout_ms == 60000);
    CHECK(config.lock_wait_ms == 500);
    CHECK(config.require_verified);
    CHECK(config.backstop_key_file == "/etc/pgrail/backstop.key");
    CHECK(config.proposal_proof_timeout_ms == 10000);
    CHECK(config.proposal_statement_timeout_ms == 2000);
    CHECK(config.proposal_max_scratch_bytes == 1048576);
    CHECK(config.proposal_proofs_at_once == 3);
}

TEST_CASE("bad configurations name file:line:column") {
    auto error_of = [](const std::string& yaml) {
        try {
            (void)parse_serve_config(yaml, "bad.yaml");
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK_THAT(error_of("listen:\n  hots: x\n"), Catch::StartsWith("bad.yaml:2:3: unknown key 'hots' in listen"));
    CHECK_THAT(error_of("listen: {port: 70000}\n"), Catch::StartsWith("bad.yaml:1:16: 'listen.port' must be between 1 and 65535"));
    CHECK_THAT(error_of("workers: many\n"), Catch::StartsWith("bad.yaml:1:10: 'workers' must be an integer"));
    CHECK_THAT(error_of("log: {format: xml}\n"), Catch::StartsWith("bad.yaml:1:15: 'log.format' must be one of"));
    CHECK_THAT(error_of("max_message_size: 10\n"), Catch::StartsWith("bad.yaml:1:19:"));
    CHECK_THAT(error_of("audit: {refusal_burst_bytes: 100}\n"), Catch::StartsWith("bad.yaml:1:30: 'audit.refusal_burst_bytes' must be between 16384"));
    CHECK_THAT(error_of("migrations: {lock_timeout: soon}\n"), Catch::StartsWith("bad.yaml:1:28:"));
    CHECK_THAT(error_of("migrations: {backstop_key_file: [a]}\n"),
               Catch::StartsWith("bad.yaml:1:33: 'migrations.backstop_key_file' must be a string"));
    CHECK_THAT(error_of("migrations:\n  backstop_key_file: ''\n"),
               Catch::StartsWith("bad.yaml:2:22: 'migrations.backstop_key_file' must name a file"));
    CHECK_THAT(error_of("migrations: {lock_wait: 0s}\n"),
               Catch::StartsWith("bad.yaml:1:25: 'migrations.lock_wait' must be a positive duration"));
    CHECK_THAT(error_of("migrations: {proposal_proofs_at_once: 0}\n"),
               Catch::StartsWith("bad.yaml:1:39: 'migrations.proposal_proofs_at_once' must be between 1 and 64"));
    // The budget for whole messages must hold the longest one.
    CHECK_THAT(error_of("max_message_size: 4096\nmax_buffered_size: 4096\n"),
               Catch::StartsWith("bad.yaml:2:20: max_buffered_size (4096) must be larger than max_message_size (4096)"));
    CHECK_THAT(error_of("max_message_size: 536870912\n"), Catch::StartsWith("bad.yaml:1:19: max_buffered_size"));
    CHECK_THAT(error_of("listen: [1, 2\n"), Catch::StartsWith("bad.yaml:"));
    CHECK_THAT(error_of("tcp_keepalive: on\n"), Catch::StartsWith("bad.yaml:1:16: 'tcp_keepalive' must be one of"));
    CHECK_THAT(error_of("tcp_keepalive: {idle: 0s}\n"),
               Catch::StartsWith("bad.yaml:1:23: 'tcp_keepalive.idle' must be a positive duration"));
    CHECK_THAT(error_of("tcp_keepalive: {count: 0}\n"),
               Catch::StartsWith("bad.yaml:1:24: 'tcp_keepalive.count' must be between 1 and 127"));
    CHECK_THAT(error_of("upstream:\n  host: /" + std::string(100, 'd') + "\n"),
               Catch::StartsWith("bad.yaml:2:9: upstream.host: the socket path"));
}

TEST_CASE("auth: passthrough by default; pgrail needs an identities file") {
    CHECK(parse_serve_config("", "a.yaml").auth_mode == pgrail::config::ServeConfig::AuthMode::passthrough);
    const auto config = parse_serve_config("auth: {mode: pgrail, identities_file: /etc/pgrail/identities.yaml}\n", "a.yaml");
    CHECK(config.auth_mode == pgrail::config::ServeConfig::AuthMode::pgrail);
    CHECK(config.identities_file == "/etc/pgrail/identities.yaml");
    auto error_of = [](const std::string& yaml) {
        try {
            (void)parse_serve_config(yaml, "bad.yaml");
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK_THAT(error_of("auth: {mode: pgrail}\n"),
               Catch::StartsWith("bad.yaml:1:7: auth.mode pgrail needs auth.identities_file"));
    CHECK_THAT(error_of("auth: {mode: scram}\n"), Catch::StartsWith("bad.yaml:1:14: 'auth.mode' must be one of"));
    CHECK_THAT(error_of("auth:\n  mode: pgrail\n  identity_file: x\n"),
               Catch::StartsWith("bad.yaml:3:3: unknown key 'identity_file' in auth"));
}

TEST_CASE("an upstream host that is a directory means PostgreSQL's Unix socket in it, as in libpq") {
    const auto config = parse_serve_config("upstream: {host: /var/run/postgresql, port: 5433}\n", "unix.yaml");
    CHECK(config.upstream_is_socket());
    CHECK(config.upstream_socket_path() == "/var/run/postgresql/.s.PGSQL.5433");
    CHECK_FALSE(parse_serve_config("upstream: {host: db.internal}\n", "tcp.yaml").upstream_is_socket());
}

TEST_CASE("durations") {
    using pgrail::config::parse_duration_ms;
    CHECK(parse_duration_ms("250") == 250u);
    CHECK(parse_duration_ms("250ms") == 250u);
    CHECK(parse_duration_ms("5s") == 5000u);
    CHECK(parse_duration_ms("2min") == 120000u);
    CHECK_FALSE(parse_duration_ms("5 s"));
    CHECK_FALSE(parse_duration_ms("s"));
    CHECK_FALSE(parse_duration_ms("99999999999"));
}

TEST_CASE("migrations.verify: the opt-in row sample and the columns it never copies") {
    CHECK(parse_serve_config("", "empty.yaml").verify_sample_rows == 0);  // schema only
    const auto config = parse_serve_config(
        "migrations:\n  verify: {sample_rows: 100, exclude_columns: [public.users.password_hash, app.t.c]}\n",
        "verify.yaml");
    CHECK(config.verify_sample_rows == 100);
    CHECK(config.verify_exclude_columns == std::vector<std::string>{"public.users.password_hash", "app.t.c"});
    auto error_of = [](const std::string& yaml) {
        try {
            (void)parse_serve_config(yaml, "bad.yaml");
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK_THAT(error_of("migrations: {verify: {sample_rows: -1}}\n"),
               Catch::Contains("'migrations.verify.sample_rows' must be between 0 and 1000000"));
    CHECK_THAT(error_of("migrations: {verify: {rows: 1}}\n"), Catch::Contains("unknown key 'rows' in migrations.verify"));
    CHECK_THAT(error_of("migrations: {verify: {exclude_columns: [users.email]}}\n"),
               Catch::Contains("\"users.email\" is not schema.table.column"));
}

TEST_CASE("listen.unix_socket_dir adds PostgreSQL's socket name in that directory") {
    const auto none = parse_serve_config("", "empty.yaml");
    CHECK(none.unix_socket_dir.empty());
    CHECK(none.unix_socket_mode == 0777);
    CHECK(none.unix_socket_group.empty());

    const auto config = parse_serve_config(
        "listen: {port: 6543, unix_socket_dir: /run/pgrail, unix_socket_mode: \"0770\", unix_socket_group: agents}\n",
        "unix.yaml");
    CHECK(config.unix_socket_dir == "/run/pgrail");
    CHECK(config.unix_socket_path() == "/run/pgrail/.s.PGSQL.6543");
    CHECK(config.unix_socket_mode == 0770);
    CHECK(config.unix_socket_group == "agents");
    // Unquoted, YAML's octal-looking scalar is read as written.
    CHECK(parse_serve_config("listen: {unix_socket_dir: /tmp, unix_socket_mode: 0700}\n", "u.yaml").unix_socket_mode ==
          0700);
}

TEST_CASE("bad listen.unix_socket_* keys name file:line:column") {
    auto error_of = [](const std::string& yaml) {
        try {
            (void)parse_serve_config(yaml, "bad.yaml");
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK_THAT(error_of("listen:\n  unix_socket_dir: ''\n"),
               Catch::StartsWith("bad.yaml:2:20: 'listen.unix_socket_dir' must name a directory"));
    CHECK_THAT(error_of("listen:\n  unix_socket_dir: [a]\n"),
               Catch::StartsWith("bad.yaml:2:20: 'listen.unix_socket_dir' must be a string"));
    CHECK_THAT(error_of("listen:\n  unix_socket_dir: /" + std::string(100, 'd') + "\n"),
               Catch::StartsWith("bad.yaml:2:20: listen.unix_socket_dir: the socket path"));
    for (const char* mode : {"777", "0778", "rwx", "01777", "\"\""}) {
        INFO(mode);
        CHECK_THAT(error_of(std::string("listen:\n  unix_socket_dir: /tmp\n  unix_socket_mode: ") + mode + "\n"),
                   Catch::StartsWith("bad.yaml:3:21: 'listen.unix_socket_mode' must be an octal file mode"));
    }
    CHECK_THAT(error_of("listen:\n  unix_socket_dir: /tmp\n  unix_socket_group: ''\n"),
               Catch::StartsWith("bad.yaml:3:22: 'listen.unix_socket_group' must name a group"));
    CHECK_THAT(error_of("listen:\n  unix_socket_mode: \"0700\"\n"),
               Catch::StartsWith("bad.yaml:2:21: listen.unix_socket_mode and listen.unix_socket_group need "
                                 "listen.unix_socket_dir"));
}

TEST_CASE("catalog: its conninfo defaults to the migrator's, refresh and timeout are durations") {
    const auto defaults = parse_serve_config("migrations: {migrator: \"user=m\"}\n", "d.yaml");
    CHECK(defaults.catalog_conninfo == "user=m");
    CHECK(defaults.catalog_refresh_ms == 60000);
    CHECK(defaults.catalog_timeout_ms == 10000);
    const auto config = parse_serve_config(
        "migrations: {migrator: \"user=m\"}\ncatalog: {conninfo: \"user=c\", refresh: 5s, timeout: 250ms}\n", "c.yaml");
    CHECK(config.catalog_conninfo == "user=c");
    CHECK(config.catalog_refresh_ms == 5000);
    CHECK(config.catalog_timeout_ms == 250);
    for (const char* yaml : {"catalog: {refresh: 0s}\n", "catalog: {conninfo: \"\"}\n", "catalog: {refreh: 5s}\n",
                             "catalog: {timeout: soon}\n"}) {
        INFO(yaml);
        CHECK_THROWS_AS((void)parse_serve_config(yaml, "bad.yaml"), ConfigError);
    }
}

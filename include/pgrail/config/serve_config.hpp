// The `pgrail serve` configuration file (config/pgrail.yaml documents every key).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pgrail/config/tls_config.hpp"

namespace pgrail::config {

struct ServeConfig {
    std::string listen_host = "127.0.0.1";
    std::uint16_t listen_port = 6432;
    // listen.unix_socket_dir: also listen on <dir>/.s.PGSQL.<listen_port>, as PostgreSQL's
    // unix_socket_directories (empty: no Unix socket). The file gets unix_socket_mode (as
    // unix_socket_permissions, default 0777) and, if set, unix_socket_group (as unix_socket_group).
    std::string unix_socket_dir;
    std::uint32_t unix_socket_mode = 0777;
    std::string unix_socket_group;
    std::string upstream_host = "127.0.0.1";        // or, as in libpq, the directory of a Unix socket
    std::uint16_t upstream_port = 5432;
    // How long pgrail waits for the server: for the TCP (or Unix socket) connection, and then for
    // each of the server's turns of the login (after the startup packet, after each authentication
    // message of the client) up to the first ReadyForQuery. Like libpq's connect_timeout and
    // PgBouncer's server_connect_timeout; the client's own turns (a password typed by a person)
    // are not counted: the whole login is bounded by 60 s (PostgreSQL's authentication_timeout).
    std::uint32_t connect_timeout_ms = 5000;
    unsigned workers = 0;                           // 0: one per core
    // Client connections at once; more are answered FATAL 53300 (0: as many as the open-file
    // limit allows, two descriptors each, the limit raised to its hard value at start).
    std::uint32_t max_client_connections = 0;
    // Connections from one address (an IPv6 /64) still logging in, at most; 0: no bound.
    std::uint32_t max_pending_logins_per_address = 128;
    std::uint32_t max_message_size = 64u << 20;     // bytes, for one protocol message
    std::uint32_t max_analyzed_size = 512u << 10;   // bytes of statement text a policy analyses
    std::uint64_t max_buffered_size = 256u << 20;   // bytes of whole client messages, all sessions together
    std::uint32_t buffered_message_timeout_ms = 60000;  // longest wait for, or stall holding, that space
    // SIGTERM: how long sessions may take to finish their transaction before they are ended.
    std::uint32_t shutdown_timeout_ms = 30000;
    // TCP keepalive on both legs (src/proxy/tcp_keepalive.hpp): a peer gone without a word is
    // seen after idle + interval x count (2 min by default); idle 0: off (`tcp_keepalive: off`).
    std::uint32_t tcp_keepalive_idle_ms = 60000;
    std::uint32_t tcp_keepalive_interval_ms = 10000;
    std::uint32_t tcp_keepalive_count = 6;
    // http: the operator's listener for /metrics, /healthz and /readyz (port 0: off).
    std::string http_host = "127.0.0.1";
    std::uint16_t http_port = 0;
    std::string log_level = "info";                 // trace debug info warn error critical off
    std::string log_format = "text";                // text | json

    std::string policy_file;                        // empty: no policy (forward everything)
    std::string audit_file = "-";                   // "-": stdout
    bool audit_fsync = false;                       // fsync every audit line
    bool audit_redact_literals = true;
    // Bytes of refusal lines per login (identity, else role) each second after a burst; beyond
    // it the session waits before it is answered (refusal_pacer.hpp). 0: no pacing.
    std::uint32_t audit_refusal_bytes_per_second = 256 * 1024;
    std::uint32_t audit_refusal_burst_bytes = 4 * 1024 * 1024;

    std::string migrations_dir;                     // empty: no registry
    std::string migrator_conninfo;                  // libpq conninfo for in-band migrations
    std::uint32_t lock_timeout_ms = 5000;           // SET LOCAL lock_timeout for each migration
    std::uint32_t statement_timeout_ms = 60000;     // SET LOCAL statement_timeout for each migration
    std::uint32_t lock_wait_ms = 10000;             // in-band up/down: wait for the advisory lock, then 55P03
    bool require_verified = false;                  // apply only checksums with a passing `verify`
    // An agent's proposal's proof (its scripts run before anyone has read them): all of it, each
    // statement, and the scratch database's size in bytes (0: unbounded), one proof at a time.
    std::uint32_t proposal_proof_timeout_ms = 30000;
    std::uint32_t proposal_statement_timeout_ms = 5000;
    std::uint64_t proposal_max_scratch_bytes = 256ULL << 20;
    std::uint32_t proposal_proofs_at_once = 1;
    // Proposals of one proposer that wait for a decision at once: each is stored with its scripts,
    // so a proposer in a loop cannot grow the ledger without bound.
    std::uint32_t proposals_waiting_per_proposer = 100;
    // migrations.verify: rows copied per table into verify's scratch copy (0: schema only), and
    // columns never copied ("schema.table.column").
    std::int64_t verify_sample_rows = 0;
    std::vector<std::string> verify_exclude_columns;
    // The key `pgrail backstop install` wrote; the runner authorizes itself with it where the
    // database has the backstop. Empty: none (the backstop then refuses the runner's DDL).
    std::string backstop_key_file;

    // catalog: where pgrail reads each database's catalog for the policy's sensitive_columns
    // (docs/security.md). conninfo defaults to migrations.migrator; its dbname is replaced by the
    // session's database. A catalog older than refresh is reloaded in the background; timeout
    // bounds the connection and each query of a read.
    std::string catalog_conninfo;
    std::uint32_t catalog_refresh_ms = 60000;
    std::uint32_t catalog_timeout_ms = 10000;

    // tls: the client leg (clients -> pgrail) and the server leg (pgrail -> PostgreSQL), docs/security.md.
    TlsConfig tls;

    // auth: who authenticates clients (docs/security.md). passthrough: the server, as if pgrail were
    // not there. pgrail: pgrail itself, against identities_file's SCRAM verifiers, and pgrail then
    // logs into the server as the identity's role with credentials only it holds.
    enum class AuthMode : std::uint8_t { passthrough, pgrail };
    AuthMode auth_mode = AuthMode::passthrough;
    std::string identities_file;  // required (and only read) in pgrail mode

    [[nodiscard]] std::string unix_socket_path() const {
        return unix_socket_dir + "/.s.PGSQL." + std::to_string(listen_port);
    }
    // upstream.host names a directory: connect to PostgreSQL's Unix socket in it.
    [[nodiscard]] bool upstream_is_socket() const { return upstream_host.starts_with('/'); }
    [[nodiscard]] std::string upstream_socket_path() const {
        return upstream_host + "/.s.PGSQL." + std::to_string(upstream_port);
    }
};

// "250ms", "5s", "2min" or a bare number of milliseconds; nullopt when malformed.
[[nodiscard]] std::optional<std::uint32_t> parse_duration_ms(const std::string& text);

// Loads and validates `path`. Relative paths inside are resolved against the file's folder.
// Throws ConfigError naming file:line:column.
[[nodiscard]] ServeConfig load_serve_config(const std::string& path);
[[nodiscard]] ServeConfig parse_serve_config(const std::string& yaml, const std::string& name);

}  // namespace pgrail::config

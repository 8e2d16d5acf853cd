// Loading the `pgrail serve` configuration with strict key and type checks.
#include "pgrail/config/serve_config.hpp"

#include <algorithm>
#include <charconv>
#include <filesystem>

#include <fmt/format.h>

#include "pgrail/config/yaml_reader.hpp"
#include "tls_reader.hpp"

namespace pgrail::config {

namespace {

std::string resolve(const std::string& path, const std::string& base_dir) {
    if (path.empty() || path == "-" || base_dir.empty()) return path;
    std::filesystem::path p(path);
    return p.is_absolute() ? path : (std::filesystem::path(base_dir) / p).lexically_normal().string();
}

std::uint32_t duration(const YamlReader& reader, const YAML::Node& node, std::string_view key) {
    const auto value = parse_duration_ms(reader.as_string(node, key));
    if (!value || *value == 0) reader.fail(node, fmt::format("'{}' must be a positive duration such as 500ms, 5s or 2min", key));
    return *value;
}

// listen.unix_socket_*: the directory of a second listener, `<dir>/.s.PGSQL.<listen.port>` as
// PostgreSQL names its socket, and the socket file's permissions and group.
void read_unix_socket(const YamlReader& reader, const YAML::Node& listen, const std::string& base_dir,
                      ServeConfig& config) {
    if (const auto dir = listen["unix_socket_dir"]) {
        config.unix_socket_dir = resolve(reader.as_string(dir, "listen.unix_socket_dir"), base_dir);
        if (config.unix_socket_dir.empty())
            reader.fail(dir, "'listen.unix_socket_dir' must name a directory (leave the key out for no Unix socket)");
        // sockaddr_un holds 108 bytes, the terminating NUL included; the lock file is longer still
        // but has no such limit.
        if (config.unix_socket_path().size() > 107)
            reader.fail(dir, "listen.unix_socket_dir: the socket path " + config.unix_socket_path() +
                                 " is longer than 107 bytes");
    }
    if (const auto mode = listen["unix_socket_mode"]) {
        const auto text = reader.as_string(mode, "listen.unix_socket_mode");
        // Octal as chmod(1) and PostgreSQL's unix_socket_permissions write it; the leading 0 is
        // required so that 777 cannot be mistaken for a decimal number.
        const bool octal = text.size() == 4 && text[0] == '0' &&
                           std::all_of(text.begin() + 1, text.end(), [](char c) { return c >= '0' && c <= '7'; });
        if (!octal)
            reader.fail(mode, fmt::format("'listen.unix_socket_mode' must be an octal file mode such as \"0777\" or "
                                          "\"0770\" (a 0 and three octal digits; got '{}')",
                                          text));
        config.unix_socket_mode = static_cast<std::uint32_t>(std::stoul(text, nullptr, 8));
    }
    if (const auto group = listen["unix_socket_group"]) {
        config.unix_socket_group = reader.as_string(group, "listen.unix_socket_group");
        if (config.unix_socket_group.empty())
            reader.fail(group, "'listen.unix_socket_group' must name a group (leave the key out to keep pgrail's)");
    }
    if ((listen["unix_socket_mode"] || listen["unix_socket_group"]) && config.unix_socket_dir.empty()) {
        const auto where = listen["unix_socket_mode"] ? listen["unix_socket_mode"] : listen["unix_socket_group"];
        reader.fail(where, "listen.unix_socket_mode and listen.unix_socket_group need listen.unix_socket_dir");
    }
}

// tcp_keepalive: `off`, or a map of idle, interval (durations) and count (probes), each optional.
void read_tcp_keepalive(const YamlReader& reader, const YAML::Node& keepalive, ServeConfig& config) {
    if (keepalive.IsScalar()) {
        if (reader.as_choice(keepalive, "tcp_keepalive", {"off"}) == "off") config.tcp_keepalive_idle_ms = 0;
        return;
    }
    reader.expect_map(keepalive, {"idle", "interval", "count"}, "tcp_keepalive");
    if (keepalive["idle"]) config.tcp_keepalive_idle_ms = duration(reader, keepalive["idle"], "tcp_keepalive.idle");
    if (keepalive["interval"])
        config.tcp_keepalive_interval_ms = duration(reader, keepalive["interval"], "tcp_keepalive.interval");
    if (keepalive["count"])
        config.tcp_keepalive_count =
            static_cast<std::uint32_t>(reader.as_int(keepalive["count"], "tcp_keepalive.count", 1, 127));
}

ServeConfig read(const YamlReader& reader, const std::string& base_dir) {
    ServeConfig config;
    const auto& root = reader.root();
    if (root.IsNull()) return config;
    reader.expect_map(root,
                      {"listen", "upstream", "workers", "max_client_connections", "max_pending_logins_per_address", "max_message_size", "max_analyzed_size", "max_buffered_size",
                       "buffered_message_timeout", "shutdown_timeout", "tcp_keepalive", "log", "policy", "audit", "migrations", "http",
                       "catalog", "tls", "auth"},
                      "the configuration");
    if (const auto listen = root["listen"]) {
        reader.expect_map(listen, {"host", "port", "unix_socket_dir", "unix_socket_mode", "unix_socket_group"},
                          "listen");
        if (listen["host"]) config.listen_host = reader.as_string(listen["host"], "listen.host");
        if (listen["port"]) config.listen_port = static_cast<std::uint16_t>(reader.as_int(listen["port"], "listen.port", 1, 65535));
        read_unix_socket(reader, listen, base_dir, config);
    }
    if (const auto upstream = root["upstream"]) {
        reader.expect_map(upstream, {"host", "port", "connect_timeout_ms"}, "upstream");
        if (upstream["host"]) config.upstream_host = reader.as_string(upstream["host"], "upstream.host");
        if (upstream["port"])
            config.upstream_port = static_cast<std::uint16_t>(reader.as_int(upstream["port"], "upstream.port", 1, 65535));
        // sockaddr_un holds 108 bytes, the terminating NUL included.
        if (config.upstream_is_socket() && config.upstream_socket_path().size() > 107) {
            reader.fail(upstream["host"], "upstream.host: the socket path " + config.upstream_socket_path() +
                                              " is longer than 107 bytes");
        }
        if (upstream["connect_timeout_ms"])
            config.connect_timeout_ms = static_cast<std::uint32_t>(
                reader.as_int(upstream["connect_timeout_ms"], "upstream.connect_timeout_ms", 1, 600000));
    }
    if (root["workers"]) config.workers = static_cast<unsigned>(reader.as_int(root["workers"], "workers", 0, 256));
    if (root["max_pending_logins_per_address"])
        config.max_pending_logins_per_address = static_cast<std::uint32_t>(reader.as_int(
            root["max_pending_logins_per_address"], "max_pending_logins_per_address", 0, 1000000));
    if (root["max_client_connections"])
        config.max_client_connections = static_cast<std::uint32_t>(
            reader.as_int(root["max_client_connections"], "max_client_connections", 0, 1000000));
    if (root["max_message_size"])
        // Below 1 KiB no ordinary client could talk; PostgreSQL itself stops at 1 GiB.
        config.max_message_size = static_cast<std::uint32_t>(
            reader.as_int(root["max_message_size"], "max_message_size", 1024, 1 << 30));
    if (root["max_analyzed_size"])
        config.max_analyzed_size = static_cast<std::uint32_t>(
            reader.as_int(root["max_analyzed_size"], "max_analyzed_size", 1024, 1 << 30));
    if (root["max_buffered_size"])
        config.max_buffered_size = static_cast<std::uint64_t>(
            reader.as_int(root["max_buffered_size"], "max_buffered_size", 1024, std::int64_t{1} << 40));
    if (root["buffered_message_timeout"])
        config.buffered_message_timeout_ms =
            duration(reader, root["buffered_message_timeout"], "buffered_message_timeout");
    if (root["shutdown_timeout"])
        config.shutdown_timeout_ms = duration(reader, root["shutdown_timeout"], "shutdown_timeout");
    if (const auto keepalive = root["tcp_keepalive"]) read_tcp_keepalive(reader, keepalive, config);
    // The longest message (its length word plus the type byte) must always fit, or its session
    // could never be served.
    if (config.max_buffered_size <= config.max_message_size) {
        const auto where = root["max_buffered_size"] ? root["max_buffered_size"] : root["max_message_size"];
        reader.fail(where, "max_buffered_size (" + std::to_string(config.max_buffered_size) +
                               ") must be larger than max_message_size (" + std::to_string(config.max_message_size) +
                               ")");
    }
    if (const auto log = root["log"]) {
        reader.expect_map(log, {"level", "format"}, "log");
        if (log["level"])
            config.log_level = reader.as_choice(log["level"], "log.level",
                                                {"trace", "debug", "info", "warn", "error", "critical", "off"});
        if (log["format"]) config.log_format = reader.as_choice(log["format"], "log.format", {"text", "json"});
    }
    if (const auto http = root["http"]) {
        reader.expect_map(http, {"host", "port"}, "http");
        if (http["host"]) config.http_host = reader.as_string(http["host"], "http.host");
        if (http["port"]) config.http_port = static_cast<std::uint16_t>(reader.as_int(http["port"], "http.port", 0, 65535));
        if (config.http_port != 0 && config.http_port == config.listen_port &&
            (config.http_host == config.listen_host || config.http_host == "0.0.0.0"))
            reader.fail(http["port"], "http.port is listen.port: the HTTP listener needs a port of its own");
    }
    if (root["policy"]) config.policy_file = resolve(reader.as_string(root["policy"], "policy"), base_dir);
    if (const auto audit = root["audit"]) {
        reader.expect_map(audit, {"file", "fsync", "redact_literals", "refusal_bytes_per_second", "refusal_burst_bytes"}, "audit");
        if (audit["file"]) config.audit_file = resolve(reader.as_string(audit["file"], "audit.file"), base_dir);
        if (audit["fsync"]) config.audit_fsync = reader.as_choice(audit["fsync"], "audit.fsync", {"always", "never"}) == "always";
        if (audit["redact_literals"]) config.audit_redact_literals = reader.as_bool(audit["redact_literals"], "audit.redact_literals");
        if (audit["refusal_bytes_per_second"])
            config.audit_refusal_bytes_per_second = static_cast<std::uint32_t>(
                reader.as_int(audit["refusal_bytes_per_second"], "audit.refusal_bytes_per_second", 0, 1 << 30));
        // At least one long refusal's line (~9 KB), so none waits for a budget it can never fill.
        if (audit["refusal_burst_bytes"])
            config.audit_refusal_burst_bytes = static_cast<std::uint32_t>(
                reader.as_int(audit["refusal_burst_bytes"], "audit.refusal_burst_bytes", 16384, 1 << 30));
    }
    if (const auto migrations = root["migrations"]) {
        reader.expect_map(migrations, {"dir", "migrator", "lock_timeout", "statement_timeout", "lock_wait",
                                       "require_verified", "backstop_key_file", "verify", "proposal_proof_timeout",
                                       "proposal_statement_timeout", "proposal_max_scratch_size", "proposal_proofs_at_once",
                                       "proposals_waiting_per_proposer"},
                          "migrations");
        // An agent's proposal is proven before anyone reads it: bounded as a whole (RunnerOptions).
        if (migrations["proposal_proof_timeout"])
            config.proposal_proof_timeout_ms =
                duration(reader, migrations["proposal_proof_timeout"], "migrations.proposal_proof_timeout");
        if (migrations["proposal_statement_timeout"])
            config.proposal_statement_timeout_ms =
                duration(reader, migrations["proposal_statement_timeout"], "migrations.proposal_statement_timeout");
        if (migrations["proposal_proofs_at_once"])
            config.proposal_proofs_at_once = static_cast<std::uint32_t>(
                reader.as_int(migrations["proposal_proofs_at_once"], "migrations.proposal_proofs_at_once", 1, 64));
        if (migrations["proposals_waiting_per_proposer"])
            config.proposals_waiting_per_proposer = static_cast<std::uint32_t>(reader.as_int(
                migrations["proposals_waiting_per_proposer"], "migrations.proposals_waiting_per_proposer", 1, 100000));
        if (migrations["proposal_max_scratch_size"])
            config.proposal_max_scratch_bytes = static_cast<std::uint64_t>(reader.as_int(
                migrations["proposal_max_scratch_size"], "migrations.proposal_max_scratch_size", 0, std::int64_t{1} << 40));
        if (const auto verify = migrations["verify"]) {
            reader.expect_map(verify, {"sample_rows", "exclude_columns"}, "migrations.verify");
            // The sample is copied per verify run, table by table: bounded like the rest.
            if (verify["sample_rows"])
                config.verify_sample_rows =
                    reader.as_int(verify["sample_rows"], "migrations.verify.sample_rows", 0, 1'000'000);
            if (verify["exclude_columns"]) {
                config.verify_exclude_columns =
                    reader.as_string_list(verify["exclude_columns"], "migrations.verify.exclude_columns");
                for (const auto& column : config.verify_exclude_columns)
                    if (std::count(column.begin(), column.end(), '.') < 2 || column.front() == '.' ||
                        column.back() == '.')
                        reader.fail(verify["exclude_columns"],
                                    fmt::format("migrations.verify.exclude_columns: \"{}\" is not "
                                                "schema.table.column",
                                                column));
            }
        }
        if (const auto key_file = migrations["backstop_key_file"]) {
            config.backstop_key_file = resolve(reader.as_string(key_file, "migrations.backstop_key_file"), base_dir);
            if (config.backstop_key_file.empty())
                reader.fail(key_file, "'migrations.backstop_key_file' must name a file (`pgrail backstop install "
                                      "--key-file` writes it)");
        }
        if (migrations["require_verified"])
            config.require_verified = reader.as_bool(migrations["require_verified"], "migrations.require_verified");
        if (migrations["dir"]) config.migrations_dir = resolve(reader.as_string(migrations["dir"], "migrations.dir"), base_dir);
        if (migrations["migrator"]) config.migrator_conninfo = reader.as_string(migrations["migrator"], "migrations.migrator");
        if (migrations["lock_timeout"]) config.lock_timeout_ms = duration(reader, migrations["lock_timeout"], "migrations.lock_timeout");
        if (migrations["statement_timeout"])
            config.statement_timeout_ms = duration(reader, migrations["statement_timeout"], "migrations.statement_timeout");
        if (migrations["lock_wait"]) config.lock_wait_ms = duration(reader, migrations["lock_wait"], "migrations.lock_wait");
    }
    if (const auto catalog = root["catalog"]) {
        reader.expect_map(catalog, {"conninfo", "refresh", "timeout"}, "catalog");
        if (catalog["conninfo"]) {
            config.catalog_conninfo = reader.as_string(catalog["conninfo"], "catalog.conninfo");
            if (config.catalog_conninfo.empty())
                reader.fail(catalog["conninfo"], "'catalog.conninfo' must be a libpq connection string (or left out: "
                                                 "migrations.migrator is used)");
        }
        if (catalog["refresh"]) config.catalog_refresh_ms = duration(reader, catalog["refresh"], "catalog.refresh");
        if (catalog["timeout"]) config.catalog_timeout_ms = duration(reader, catalog["timeout"], "catalog.timeout");
    }
    if (config.catalog_conninfo.empty()) config.catalog_conninfo = config.migrator_conninfo;
    if (root["tls"]) config.tls = read_tls_config(reader, root["tls"], base_dir);
    if (const auto auth = root["auth"]) {
        reader.expect_map(auth, {"mode", "identities_file"}, "auth");
        if (auth["mode"] && reader.as_choice(auth["mode"], "auth.mode", {"passthrough", "pgrail"}) == "pgrail")
            config.auth_mode = ServeConfig::AuthMode::pgrail;
        if (auth["identities_file"]) {
            config.identities_file = resolve(reader.as_string(auth["identities_file"], "auth.identities_file"), base_dir);
            if (config.identities_file.empty())
                reader.fail(auth["identities_file"], "'auth.identities_file' must name a file (`pgrail passwd` writes it)");
        }
        if (config.auth_mode == ServeConfig::AuthMode::pgrail && config.identities_file.empty())
            reader.fail(auth, "auth.mode pgrail needs auth.identities_file: the identities pgrail authenticates "
                              "clients against (`pgrail passwd NAME --role ROLE` writes it)");
    }
    return config;
}

}  // namespace

std::optional<std::uint32_t> parse_duration_ms(const std::string& text) {
    std::uint64_t number = 0;
    const auto* end = text.data() + text.size();
    const auto [rest, ec] = std::from_chars(text.data(), end, number);
    if (ec != std::errc{} || rest == text.data()) return std::nullopt;
    const std::string_view unit(rest, static_cast<std::size_t>(end - rest));
    std::uint64_t scale = 0;
    if (unit.empty() || unit == "ms") scale = 1;
    else if (unit == "s") scale = 1000;
    else if (unit == "min") scale = 60000;
    else return std::nullopt;
    const auto ms = number * scale;
    if (number > UINT32_MAX || ms > UINT32_MAX) return std::nullopt;
    return static_cast<std::uint32_t>(ms);
}

ServeConfig load_serve_config(const std::string& path) {
    const auto reader = YamlReader::from_file(path);
    return read(reader, std::filesystem::path(path).parent_path().string());
}

ServeConfig parse_serve_config(const std::string& yaml, const std::string& name) {
    return read(YamlReader::from_string(yaml, name), "");
}

}  // namespace pgrail::config

// The `tls:` section of the serve configuration: defaults, every key, and errors at file:line:column.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "pgrail/config/serve_config.hpp"
#include "pgrail/config/yaml_reader.hpp"

using namespace pgrail::config;

namespace {

// A folder with files whose content does not matter here (the proxy's tls_context reads them).
struct Files {
    std::filesystem::path dir;
    Files() {
        dir = std::filesystem::temp_directory_path() / ("pgrail-tls-config-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir);
        for (const char* name : {"server.crt", "server.key", "ca.crt", "client.crt", "client.key", "open.key"})
            std::ofstream(dir / name) << "-----BEGIN NOTHING-----\n";
        for (const char* name : {"server.key", "client.key"})
            std::filesystem::permissions(dir / name, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
        std::filesystem::permissions(dir / "open.key", std::filesystem::perms(0644));
    }
    ~Files() { std::filesystem::remove_all(dir); }
    [[nodiscard]] std::string operator()(const char* name) const { return (dir / name).string(); }
};

std::string error_of(const std::string& yaml) {
    try {
        (void)parse_serve_config(yaml, "bad.yaml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "no error";
}

}  // namespace

TEST_CASE("tls: off on both legs by default (not libpq's prefer: name the server leg's mode)") {
    const auto config = parse_serve_config("", "empty.yaml");
    CHECK(config.tls.client.mode == ClientTlsMode::disable);
    CHECK_FALSE(config.tls.client.enabled());
    CHECK(config.tls.client.min_version == TlsVersion::tls1_2);
    CHECK(config.tls.client.max_version == TlsVersion::tls1_3);
    CHECK(config.tls.server.sslmode == ServerSslMode::disable);
    CHECK_FALSE(config.tls.server.enabled());
    CHECK_FALSE(config.tls.server.verifies());
    CHECK(config.tls.server.server_name.empty());
}

TEST_CASE("tls: every key is read") {
    const Files files;
    const auto config = parse_serve_config(fmt::format(R"(
tls:
  client:
    mode: require
    cert_file: {}
    key_file: {}
    ca_file: {}
    protocols: [TLSv1.3]
    ciphers: "HIGH:!aNULL"
  server:
    sslmode: verify-full
    ca_file: {}
    cert_file: {}
    key_file: {}
    server_name: db.example.com
)", files("server.crt"), files("server.key"), files("ca.crt"), files("ca.crt"), files("client.crt"),
                                                       files("client.key")),
                                           "tls.yaml");
    CHECK(config.tls.client.mode == ClientTlsMode::require);
    CHECK(config.tls.client.cert_file == files("server.crt"));
    CHECK(config.tls.client.key_file == files("server.key"));
    CHECK(config.tls.client.ca_file == files("ca.crt"));
    CHECK(config.tls.client.min_version == TlsVersion::tls1_3);
    CHECK(config.tls.client.max_version == TlsVersion::tls1_3);
    CHECK(config.tls.client.ciphers == "HIGH:!aNULL");
    CHECK(config.tls.server.sslmode == ServerSslMode::verify_full);
    CHECK(config.tls.server.verifies());
    CHECK(config.tls.server.ca_file == files("ca.crt"));
    CHECK(config.tls.server.cert_file == files("client.crt"));
    CHECK(config.tls.server.server_name == "db.example.com");
}

TEST_CASE("tls: every mode's spelling, and ca_file: system") {
    const Files files;
    for (const auto* mode : {"disable", "allow", "prefer", "require"}) {
        const auto config = parse_serve_config(fmt::format("tls: {{client: {{mode: {}, cert_file: {}, key_file: {}}}}}",
                                                           mode, files("server.crt"), files("server.key")),
                                               "m.yaml");
        CHECK(to_string(config.tls.client.mode) == mode);
    }
    for (const auto* mode : {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}) {
        const auto config = parse_serve_config(fmt::format("tls: {{server: {{sslmode: {}, ca_file: system}}}}", mode), "m.yaml");
        CHECK(to_string(config.tls.server.sslmode) == mode);
        CHECK(config.tls.server.ca_file == "system");
    }
    CHECK_FALSE(parse_serve_config("tls: {server: {sslmode: disable}}", "m.yaml").tls.server.enabled());
    const auto both = parse_serve_config(
        fmt::format("tls: {{client: {{mode: prefer, cert_file: {}, key_file: {}, protocols: [TLSv1.3, TLSv1.2]}}}}",
                    files("server.crt"), files("server.key")),
        "m.yaml");
    CHECK(both.tls.client.min_version == TlsVersion::tls1_2);
    CHECK(both.tls.client.max_version == TlsVersion::tls1_3);
}

TEST_CASE("tls: relative file names are read against the configuration's folder") {
    const Files files;
    const auto path = files.dir / "pgrail.yaml";
    std::ofstream(path) << "tls:\n  client: {mode: require, cert_file: server.crt, key_file: ./server.key}\n";
    const auto config = load_serve_config(path.string());
    CHECK(config.tls.client.cert_file == files("server.crt"));
    CHECK(config.tls.client.key_file == files("server.key"));
}

TEST_CASE("bad tls configurations name file:line:column") {
    const Files files;
    CHECK_THAT(error_of("tls:\n  clients: {}\n"), Catch::StartsWith("bad.yaml:2:3: unknown key 'clients' in tls"));
    CHECK_THAT(error_of("tls:\n  client: {mode: on}\n"),
               Catch::StartsWith("bad.yaml:2:18: 'tls.client.mode' must be one of: disable, allow, prefer, require"));
    // require (and allow, prefer) without a certificate: at the mode's position.
    CHECK_THAT(error_of("tls:\n  client:\n    mode: require\n"),
               Catch::StartsWith("bad.yaml:3:11: tls.client.mode require needs tls.client.cert_file and "
                                 "tls.client.key_file"));
    CHECK_THAT(error_of(fmt::format("tls:\n  client:\n    mode: prefer\n    cert_file: {}\n", files("server.crt"))),
               Catch::StartsWith("bad.yaml:3:11: tls.client.mode prefer needs"));
    CHECK_THAT(error_of(fmt::format("tls:\n  client:\n    cert_file: {}\n", files("server.crt"))),
               Catch::StartsWith("bad.yaml:3:16: tls.client.cert_file and tls.client.key_file go together"));
    // An unreadable file: at its key, with the path and the system's reason.
    CHECK_THAT(error_of("tls:\n  client:\n    mode: require\n    cert_file: /nonexistent/server.crt\n"),
               Catch::StartsWith("bad.yaml:4:16: tls.client.cert_file: cannot read /nonexistent/server.crt: No such "
                                 "file or directory"));
    CHECK_THAT(error_of("tls:\n  client: {cert_file: ''}\n"),
               Catch::StartsWith("bad.yaml:2:23: 'tls.client.cert_file' must name a file"));
    CHECK_THAT(error_of("tls:\n  client: {protocols: [TLSv1.1]}\n"),
               Catch::StartsWith("bad.yaml:2:24: 'tls.client.protocols' must be one of: TLSv1.2, TLSv1.3 (got 'TLSv1.1')"));
    CHECK_THAT(error_of("tls:\n  client: {protocols: []}\n"),
               Catch::StartsWith("bad.yaml:2:23: 'tls.client.protocols' must be a non-empty list"));
    CHECK_THAT(error_of("tls:\n  client: {ciphers: ''}\n"),
               Catch::StartsWith("bad.yaml:2:21: 'tls.client.ciphers' must be an OpenSSL cipher list"));
    CHECK_THAT(error_of("tls:\n  server: {sslmode: verify}\n"),
               Catch::StartsWith("bad.yaml:2:21: 'tls.server.sslmode' must be one of: disable, allow, prefer, require, "
                                 "verify-ca, verify-full (got 'verify')"));
    CHECK_THAT(error_of("tls:\n  server:\n    sslmode: verify-full\n"),
               Catch::StartsWith("bad.yaml:3:14: tls.server.sslmode verify-full needs tls.server.ca_file"));
    CHECK_THAT(error_of("tls:\n  server: {sslmode: verify-ca, ca_file: /nonexistent/root.crt}\n"),
               Catch::StartsWith("bad.yaml:2:41: tls.server.ca_file: cannot read /nonexistent/root.crt"));
    CHECK_THAT(error_of(fmt::format("tls:\n  server: {{key_file: {}}}\n", files("client.key"))),
               Catch::StartsWith("bad.yaml:2:22: tls.server.cert_file and tls.server.key_file go together"));
    CHECK_THAT(error_of("tls:\n  server: {server_name: ''}\n"),
               Catch::StartsWith("bad.yaml:2:25: 'tls.server.server_name' must be a host name"));
    CHECK_THAT(error_of("tls: [client]\n"), Catch::StartsWith("bad.yaml:1:6: tls must be a mapping"));
    // A private key other users can read, as PostgreSQL and libpq refuse it.
    CHECK(error_of(fmt::format("tls:\n  server:\n    cert_file: {}\n    key_file: {}\n", files("client.crt"),
                               files("open.key"))) ==
          fmt::format("bad.yaml:4:15: tls.server.key_file: {} is accessible to other users (chmod o-rwx, e.g. 0600 "
                      "or 0640)",
                      files("open.key")));
}

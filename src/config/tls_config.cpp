// The `tls:` section: strict keys, libpq's sslmode names, and files that must be readable at load.
#include "pgrail/config/tls_config.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include <fmt/format.h>

#include "tls_reader.hpp"

namespace pgrail::config {

std::string_view to_string(ClientTlsMode mode) {
    switch (mode) {
        case ClientTlsMode::disable: return "disable";
        case ClientTlsMode::allow: return "allow";
        case ClientTlsMode::prefer: return "prefer";
        case ClientTlsMode::require: return "require";
    }
    return "disable";
}

std::string_view to_string(ServerSslMode mode) {
    switch (mode) {
        case ServerSslMode::disable: return "disable";
        case ServerSslMode::allow: return "allow";
        case ServerSslMode::prefer: return "prefer";
        case ServerSslMode::require: return "require";
        case ServerSslMode::verify_ca: return "verify-ca";
        case ServerSslMode::verify_full: return "verify-full";
    }
    return "disable";
}

std::string_view to_string(TlsVersion version) {
    return version == TlsVersion::tls1_2 ? "TLSv1.2" : "TLSv1.3";
}

namespace {

// Same rule as the rest of the file's paths: relative to the configuration's folder.
std::string resolve(const std::string& path, const std::string& base_dir) {
    if (path.empty() || base_dir.empty()) return path;
    const std::filesystem::path p(path);
    return p.is_absolute() ? path : (std::filesystem::path(base_dir) / p).lexically_normal().string();
}

// A certificate or key named in the file: non-empty, resolved, and readable now, so that a typo or
// a permission fails the start (or the reload) at its key rather than at the first handshake.
std::string readable_file(const YamlReader& reader, const YAML::Node& node, std::string_view key,
                          const std::string& base_dir) {
    const auto path = resolve(reader.as_string(node, key), base_dir);
    if (path.empty()) reader.fail(node, fmt::format("'{}' must name a file (leave the key out for none)", key));
    std::FILE* file = std::fopen(path.c_str(), "rb");
    if (file == nullptr) {
        const int error = errno;
        reader.fail(node, fmt::format("{}: cannot read {}: {}", key, path, std::strerror(error)));
    }
    std::fclose(file);
    return path;
}

// A private key other users can read is refused, as PostgreSQL refuses such an ssl_key_file and
// libpq such an sslkey (group access is allowed: a root-owned 0640 file for pgrail's group).
std::string private_key_file(const YamlReader& reader, const YAML::Node& node, std::string_view key,
                             const std::string& base_dir) {
    auto path = readable_file(reader, node, key, base_dir);
    std::error_code error;
    const auto permissions = std::filesystem::status(path, error).permissions();
    if (!error && (permissions & std::filesystem::perms::others_all) != std::filesystem::perms::none)
        reader.fail(node, fmt::format("{}: {} is accessible to other users (chmod o-rwx, e.g. 0600 or 0640)", key, path));
    return path;
}

TlsVersion protocol_version(const YamlReader& reader, const YAML::Node& node) {
    const auto name = reader.as_choice(node, "tls.client.protocols", {"TLSv1.2", "TLSv1.3"});
    return name == "TLSv1.2" ? TlsVersion::tls1_2 : TlsVersion::tls1_3;
}

ClientTlsConfig read_client(const YamlReader& reader, const YAML::Node& node, const std::string& base_dir) {
    reader.expect_map(node, {"mode", "cert_file", "key_file", "ca_file", "protocols", "ciphers"}, "tls.client");
    ClientTlsConfig client;
    if (const auto mode = node["mode"]) {
        const auto name = reader.as_choice(mode, "tls.client.mode", {"disable", "allow", "prefer", "require"});
        client.mode = name == "allow"    ? ClientTlsMode::allow
                      : name == "prefer" ? ClientTlsMode::prefer
                      : name == "require" ? ClientTlsMode::require
                                          : ClientTlsMode::disable;
    }
    if (node["cert_file"]) client.cert_file = readable_file(reader, node["cert_file"], "tls.client.cert_file", base_dir);
    if (node["key_file"]) client.key_file = private_key_file(reader, node["key_file"], "tls.client.key_file", base_dir);
    if (node["ca_file"]) client.ca_file = readable_file(reader, node["ca_file"], "tls.client.ca_file", base_dir);
    if (const auto protocols = node["protocols"]) {
        if (!protocols.IsSequence() || protocols.size() == 0)
            reader.fail(protocols, "'tls.client.protocols' must be a non-empty list such as [TLSv1.2, TLSv1.3]");
        std::vector<TlsVersion> versions;
        for (const auto& item : protocols) versions.push_back(protocol_version(reader, item));
        client.min_version = *std::min_element(versions.begin(), versions.end());
        client.max_version = *std::max_element(versions.begin(), versions.end());
    }
    if (const auto ciphers = node["ciphers"]) {
        client.ciphers = reader.as_string(ciphers, "tls.client.ciphers");
        if (client.ciphers.empty() || client.ciphers.size() > 4096)
            reader.fail(ciphers, "'tls.client.ciphers' must be an OpenSSL cipher list such as \"HIGH:!aNULL\" "
                                 "(leave the key out for OpenSSL's default)");
    }
    // pgrail is the server on this leg: it cannot answer 'S' without a certificate to present.
    if (client.enabled() && (client.cert_file.empty() || client.key_file.empty()))
        reader.fail(node["mode"], fmt::format("tls.client.mode {} needs tls.client.cert_file and tls.client.key_file",
                                              to_string(client.mode)));
    if (client.cert_file.empty() != client.key_file.empty()) {
        const auto where = client.cert_file.empty() ? node["key_file"] : node["cert_file"];
        reader.fail(where, "tls.client.cert_file and tls.client.key_file go together");
    }
    return client;
}

ServerTlsConfig read_server(const YamlReader& reader, const YAML::Node& node, const std::string& base_dir) {
    reader.expect_map(node, {"sslmode", "ca_file", "cert_file", "key_file", "server_name"}, "tls.server");
    ServerTlsConfig server;
    if (const auto mode = node["sslmode"]) {
        const auto name = reader.as_choice(mode, "tls.server.sslmode",
                                           {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"});
        server.sslmode = name == "disable"     ? ServerSslMode::disable
                         : name == "allow"     ? ServerSslMode::allow
                         : name == "prefer"    ? ServerSslMode::prefer
                         : name == "require"   ? ServerSslMode::require
                         : name == "verify-ca" ? ServerSslMode::verify_ca
                                               : ServerSslMode::verify_full;
    }
    if (const auto ca = node["ca_file"]) {
        // "system" is a word, not a file: the operating system's root certificates.
        if (ca.IsScalar() && ca.Scalar() == "system") server.ca_file = "system";
        else server.ca_file = readable_file(reader, ca, "tls.server.ca_file", base_dir);
    }
    if (node["cert_file"]) server.cert_file = readable_file(reader, node["cert_file"], "tls.server.cert_file", base_dir);
    if (node["key_file"]) server.key_file = private_key_file(reader, node["key_file"], "tls.server.key_file", base_dir);
    if (const auto name = node["server_name"]) {
        server.server_name = reader.as_string(name, "tls.server.server_name");
        // 253: the longest DNS name; an address literal is shorter still.
        if (server.server_name.empty() || server.server_name.size() > 253)
            reader.fail(name, "'tls.server.server_name' must be a host name or address of at most 253 bytes "
                              "(leave the key out for upstream.host)");
    }
    if (server.verifies() && server.ca_file.empty())
        reader.fail(node["sslmode"], fmt::format("tls.server.sslmode {} needs tls.server.ca_file (the root "
                                                 "certificates to check the server's against, or \"system\")",
                                                 to_string(server.sslmode)));
    if (server.cert_file.empty() != server.key_file.empty()) {
        const auto where = server.cert_file.empty() ? node["key_file"] : node["cert_file"];
        reader.fail(where, "tls.server.cert_file and tls.server.key_file go together");
    }
    return server;
}

}  // namespace

TlsConfig read_tls_config(const YamlReader& reader, const YAML::Node& tls, const std::string& base_dir) {
    reader.expect_map(tls, {"client", "server"}, "tls");
    TlsConfig config;
    if (const auto client = tls["client"]) config.client = read_client(reader, client, base_dir);
    if (const auto server = tls["server"]) config.server = read_server(reader, server, base_dir);
    return config;
}

}  // namespace pgrail::config

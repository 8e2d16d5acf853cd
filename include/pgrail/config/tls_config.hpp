// The `tls:` section of the serve configuration: TLS between clients and pgrail, and between pgrail
// and PostgreSQL (named as libpq's and PgBouncer's settings are).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace pgrail::config {

enum class TlsVersion : std::uint8_t { tls1_2, tls1_3 };

// The client leg (clients -> pgrail). allow and prefer both mean: answer an SSLRequest with 'S'
// (pgrail is the server here, so libpq's distinction between them does not arise); require also
// refuses a client that does not ask, as PostgreSQL does for a hostssl-only server.
enum class ClientTlsMode : std::uint8_t { disable, allow, prefer, require };

// The server leg (pgrail -> PostgreSQL), libpq's sslmode: allow tries without TLS first, prefer with
// TLS first; require encrypts without checking the certificate (libpq's require without a root
// certificate); verify-ca checks the chain against ca_file; verify-full also checks the name.
enum class ServerSslMode : std::uint8_t { disable, allow, prefer, require, verify_ca, verify_full };

struct ClientTlsConfig {
    ClientTlsMode mode = ClientTlsMode::disable;
    std::string cert_file;   // PEM, the chain (leaf first) pgrail presents; required unless disable
    std::string key_file;    // PEM private key of cert_file
    std::string ca_file;     // empty: no client certificates; else every client must present one it signed
    TlsVersion min_version = TlsVersion::tls1_2;  // tls.client.protocols: the lowest and highest listed
    TlsVersion max_version = TlsVersion::tls1_3;
    std::string ciphers;     // OpenSSL cipher list for TLS 1.2 (empty: OpenSSL's default)

    [[nodiscard]] bool enabled() const { return mode != ClientTlsMode::disable; }
};

struct ServerTlsConfig {
    // disable, unlike libpq's prefer: pgrail mostly runs next to its database, and prefer protects
    // against no active attacker while it costs a round trip per connection. Name the mode.
    ServerSslMode sslmode = ServerSslMode::disable;
    // Root certificates for verify-ca / verify-full (PEM); "system": the operating system's store
    // (as libpq 16's sslrootcert=system). Required by verify-ca and verify-full.
    std::string ca_file;
    std::string cert_file;   // optional client certificate pgrail presents to PostgreSQL
    std::string key_file;
    std::string server_name; // SNI and the name verify-full checks; empty: upstream.host

    [[nodiscard]] bool verifies() const {
        return sslmode == ServerSslMode::verify_ca || sslmode == ServerSslMode::verify_full;
    }
    // TLS is ever tried on this leg. Over a Unix socket it never is (as in libpq).
    [[nodiscard]] bool enabled() const { return sslmode != ServerSslMode::disable; }
};

struct TlsConfig {
    ClientTlsConfig client;
    ServerTlsConfig server;
};

// The spelling used in the configuration ("verify-full", "TLSv1.3", ...).
[[nodiscard]] std::string_view to_string(ClientTlsMode mode);
[[nodiscard]] std::string_view to_string(ServerSslMode mode);
[[nodiscard]] std::string_view to_string(TlsVersion version);

}  // namespace pgrail::config

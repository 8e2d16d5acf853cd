// TLS contexts for both legs, built from the configuration's `tls:` section and swapped whole on
// reload; the tls-server-end-point channel binding of pgrail's certificate (SCRAM-SHA-256-PLUS).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <boost/asio/ssl/context.hpp>
#include <boost/system/error_code.hpp>
#include <openssl/ssl.h>

#include "pgrail/config/tls_config.hpp"

namespace pgrail::proxy {

// One generation of contexts, immutable once built. A session takes the current generation once,
// at its start, and keeps the shared_ptr: a reload (new certificates, another mode) changes only
// the sessions that start after it, and never a handshake under way.
struct TlsContextSet {
    config::TlsConfig settings;  // what this generation was built from (decide modes from here, not
                                 // from the ServeConfig read at start: a reload may change them)
    // Server leg: the name sent as SNI (only when it is not an address, as libpq does) and checked by
    // verify-full: tls.server.server_name, else upstream.host.
    std::string server_name;
    // Client leg: pgrail is the TLS server. Null when tls.client.mode is disable.
    std::shared_ptr<boost::asio::ssl::context> client_leg;
    // Server leg: pgrail is the TLS client. Null when tls.server.sslmode is disable. Certificate and
    // name checks are set on the context; call prepare_server_leg for each connection (SNI).
    std::shared_ptr<boost::asio::ssl::context> server_leg;
    // RFC 5929 tls-server-end-point of the client leg's certificate (its hash, as PostgreSQL
    // computes it): the SCRAM-SHA-256-PLUS channel binding data. Empty when the client leg is off,
    // or when the certificate's signature names no usable hash (e.g. Ed25519): offer no -PLUS then.
    std::vector<std::uint8_t> end_point;
};

// Building either fails with one clear error or gives a complete generation.
struct TlsBuild {
    std::shared_ptr<const TlsContextSet> contexts;  // null on error
    std::string error;  // names the key, the file and OpenSSL's reason, e.g. "tls.client.key_file
                        // /etc/pgrail/server.key: does not match tls.client.cert_file ..."
};

// Loads every certificate, key and CA file named in `tls` (reading them now: a file that became
// unreadable or malformed since the configuration was checked is an error here).
[[nodiscard]] TlsBuild build_tls_contexts(const config::TlsConfig& tls, const std::string& upstream_host);

// Per connection on the server leg, before the handshake: SNI for a host name. Returns false (and
// leaves the connection unusable) only when OpenSSL refuses the name.
[[nodiscard]] bool prepare_server_leg(SSL* ssl, const TlsContextSet& contexts);

// A handshake's failure in words: for a certificate check, OpenSSL's verify result ("certificate
// verify failed: hostname mismatch (expected db.example.com)", "... unable to get local issuer
// certificate"), else the error's own message.
[[nodiscard]] std::string describe_tls_error(const boost::system::error_code& error, SSL* ssl);

// RFC 5929 tls-server-end-point of a certificate: its DER hashed with the hash of its signature
// algorithm, SHA-256 where that is MD5 or SHA-1 (PostgreSQL's be_tls_get_certificate_hash and
// libpq's pgtls_get_peer_certificate_hash compute the same). Empty when there is no such hash.
[[nodiscard]] std::vector<std::uint8_t> tls_server_end_point(X509* certificate);

// The current generation, replaced atomically by reload. One per pgrail process; shared by every
// session and by the SIGHUP handler.
class TlsContexts {
public:
    explicit TlsContexts(std::shared_ptr<const TlsContextSet> first) : current_(std::move(first)) {}

    [[nodiscard]] std::shared_ptr<const TlsContextSet> current() const {
        const std::lock_guard lock(mutex_);
        return current_;
    }

    // Builds a generation from `tls` and, if that succeeds, makes it current and returns "". On
    // failure returns the error and the current generation stays in force (sessions are never
    // dropped either way).
    [[nodiscard]] std::string reload(const config::TlsConfig& tls, const std::string& upstream_host);

private:
    mutable std::mutex mutex_;
    std::shared_ptr<const TlsContextSet> current_;
};

}  // namespace pgrail::proxy

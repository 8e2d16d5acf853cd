// Building the two legs' TLS contexts with OpenSSL through Asio, and swapping them on reload.
#include "tls_context.hpp"

#include <arpa/inet.h>

#include <array>
#include <filesystem>
#include <utility>

#include <boost/asio/ssl/error.hpp>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

namespace pgrail::proxy {

namespace ssl = boost::asio::ssl;

namespace {

int openssl_version(config::TlsVersion version) {
    return version == config::TlsVersion::tls1_2 ? TLS1_2_VERSION : TLS1_3_VERSION;
}

// OpenSSL's reason for a failure: the error Asio took off the queue (the first, i.e. the cause:
// "no start line" rather than the "PEM lib" reported after it), else the queue's first. The queue is
// emptied so that nothing of it is blamed on a later, unrelated call on this thread.
std::string openssl_reason(const boost::system::error_code& error) {
    std::string reason;
    const auto code = error ? static_cast<unsigned long>(error.value()) : ERR_peek_error();
    if (const char* why = code != 0 ? ERR_reason_error_string(code) : nullptr) reason = why;
    else if (error) reason = error.message();
    else reason = "unknown OpenSSL error";
    ERR_clear_error();
    return reason;
}

std::string file_error(std::string_view key, const std::string& path, const boost::system::error_code& error) {
    return fmt::format("{} {}: {}", key, path, openssl_reason(error));
}

bool is_address(const std::string& name) {
    std::array<unsigned char, 16> buffer{};
    return ::inet_pton(AF_INET, name.c_str(), buffer.data()) == 1 || ::inet_pton(AF_INET6, name.c_str(), buffer.data()) == 1;
}

// A certificate chain and its key; "" or the error.
std::string load_identity(ssl::context& context, const std::string& cert_file, const std::string& key_file,
                          std::string_view leg) {
    boost::system::error_code error;
    context.use_certificate_chain_file(cert_file, error);
    if (error) return file_error(fmt::format("tls.{}.cert_file", leg), cert_file, error);
    // Checked again here, not only when the configuration is read: a reload (SIGHUP) reads the
    // same paths, and a key made readable to others since must not be taken.
    std::error_code stat_error;
    const auto permissions = std::filesystem::status(key_file, stat_error).permissions();
    if (!stat_error && (permissions & std::filesystem::perms::others_all) != std::filesystem::perms::none)
        return fmt::format("tls.{}.key_file {}: is accessible to other users (chmod o-rwx, e.g. 0600 or 0640)", leg,
                           key_file);
    context.use_private_key_file(key_file, ssl::context::pem, error);
    const bool mismatch =
        error && ERR_GET_REASON(static_cast<unsigned long>(error.value())) == X509_R_KEY_VALUES_MISMATCH;
    if (error && !mismatch) return file_error(fmt::format("tls.{}.key_file", leg), key_file, error);
    if (mismatch || SSL_CTX_check_private_key(context.native_handle()) != 1) {
        ERR_clear_error();
        return fmt::format("tls.{0}.key_file {1}: does not match tls.{0}.cert_file {2}", leg, key_file, cert_file);
    }
    return {};
}

// The client leg: pgrail is the server. Like PostgreSQL's own (be-secure-openssl.c): no session
// cache and no tickets (each connection is one session; a reload then leaves nothing resumable
// behind), no compression, no renegotiation.
std::string build_client_leg(const config::ClientTlsConfig& tls, TlsContextSet& set) {
    auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
    auto* native = context->native_handle();
    SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                                    SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_set_min_proto_version(native, openssl_version(tls.min_version)) != 1 ||
        SSL_CTX_set_max_proto_version(native, openssl_version(tls.max_version)) != 1)
        return fmt::format("tls.client.protocols: {}", openssl_reason({}));
    if (!tls.ciphers.empty() && SSL_CTX_set_cipher_list(native, tls.ciphers.c_str()) != 1)
        return fmt::format("tls.client.ciphers \"{}\": {}", tls.ciphers, openssl_reason({}));
    if (auto error = load_identity(*context, tls.cert_file, tls.key_file, "client"); !error.empty()) return error;
    if (!tls.ca_file.empty()) {
        boost::system::error_code error;
        context->load_verify_file(tls.ca_file, error);
        if (error) return file_error("tls.client.ca_file", tls.ca_file, error);
        // Tell clients which CAs are accepted (libpq picks its sslcert regardless; others choose).
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.ca_file.c_str());
        if (names == nullptr) return file_error("tls.client.ca_file", tls.ca_file, {});
        SSL_CTX_set_client_CA_list(native, names);
        context->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    } else {
        context->set_verify_mode(ssl::verify_none);
    }
    if (X509* certificate = SSL_CTX_get0_certificate(native)) set.end_point = tls_server_end_point(certificate);
    set.client_leg = std::move(context);
    return {};
}

// The server leg: pgrail is the client, with libpq's sslmode meaning.
std::string build_server_leg(const config::ServerTlsConfig& tls, TlsContextSet& set) {
    auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
    auto* native = context->native_handle();
    SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    // libpq's default ssl_min_protocol_version.
    SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
    if (!tls.cert_file.empty())
        if (auto error = load_identity(*context, tls.cert_file, tls.key_file, "server"); !error.empty()) return error;
    if (tls.verifies()) {
        boost::system::error_code error;
        if (tls.ca_file == "system") {
            context->set_default_verify_paths(error);
            if (error) return fmt::format("tls.server.ca_file system: {}", openssl_reason(error));
        } else {
            context->load_verify_file(tls.ca_file, error);
            if (error) return file_error("tls.server.ca_file", tls.ca_file, error);
        }
        context->set_verify_mode(ssl::verify_peer);
        if (tls.sslmode == config::ServerSslMode::verify_full) {
            // The check is OpenSSL's own (RFC 6125: subjectAltName, the CN only without DNS names), done
            // during the handshake so that a wrong name fails it with X509_V_ERR_HOSTNAME_MISMATCH.
            X509_VERIFY_PARAM* param = SSL_CTX_get0_param(native);
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            const int set_name = is_address(set.server_name)
                                     ? X509_VERIFY_PARAM_set1_ip_asc(param, set.server_name.c_str())
                                     : X509_VERIFY_PARAM_set1_host(param, set.server_name.c_str(), set.server_name.size());
            if (set_name != 1)
                return fmt::format("tls.server.server_name \"{}\": {}", set.server_name, openssl_reason({}));
        }
    } else {
        // require (and prefer, allow): encrypted, unauthenticated, as libpq without a root certificate.
        context->set_verify_mode(ssl::verify_none);
    }
    set.server_leg = std::move(context);
    return {};
}

}  // namespace

TlsBuild build_tls_contexts(const config::TlsConfig& tls, const std::string& upstream_host) {
    auto set = std::make_shared<TlsContextSet>();
    set->settings = tls;
    set->server_name = tls.server.server_name.empty() ? upstream_host : tls.server.server_name;
    if (tls.client.enabled())
        if (auto error = build_client_leg(tls.client, *set); !error.empty()) return {nullptr, std::move(error)};
    if (tls.server.enabled())
        if (auto error = build_server_leg(tls.server, *set); !error.empty()) return {nullptr, std::move(error)};
    return {std::move(set), {}};
}

bool prepare_server_leg(SSL* ssl, const TlsContextSet& contexts) {
    // libpq sends SNI for host names only (RFC 6066 forbids addresses), and so does pgrail.
    if (contexts.server_name.empty() || is_address(contexts.server_name) || contexts.server_name.starts_with('/'))
        return true;
    // SSL_set_tlsext_host_name, without the macro's C cast.
    if (SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                 const_cast<char*>(contexts.server_name.c_str())) != 1) {
        ERR_clear_error();
        return false;
    }
    return true;
}

std::string describe_tls_error(const boost::system::error_code& error, SSL* ssl) {
    if (ssl != nullptr) {
        const long result = SSL_get_verify_result(ssl);
        if (result != X509_V_OK) {
            auto text = fmt::format("certificate verify failed: {}", X509_verify_cert_error_string(result));
            X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
            if (result == X509_V_ERR_HOSTNAME_MISMATCH) {
                if (const char* host = X509_VERIFY_PARAM_get0_host(param, 0))
                    text += fmt::format(" (the certificate is not for \"{}\")", host);
            } else if (result == X509_V_ERR_IP_ADDRESS_MISMATCH) {
                if (char* ip = X509_VERIFY_PARAM_get1_ip_asc(param)) {
                    text += fmt::format(" (the certificate is not for {})", ip);
                    OPENSSL_free(ip);
                }
            }
            ERR_clear_error();
            return text;
        }
    }
    if (error.category() == boost::asio::error::get_ssl_category()) {
        // "wrong version number (SSL routines)" and the like: OpenSSL's reason, without Asio's suffix.
        if (const char* reason = ERR_reason_error_string(static_cast<unsigned long>(error.value()))) {
            ERR_clear_error();
            return reason;
        }
    }
    ERR_clear_error();
    return error.message();
}

std::vector<std::uint8_t> tls_server_end_point(X509* certificate) {
    if (certificate == nullptr) return {};
    int algorithm = NID_undef;
    if (OBJ_find_sigid_algs(X509_get_signature_nid(certificate), &algorithm, nullptr) != 1) return {};
    // RFC 5929 4.1: MD5 and SHA-1 are replaced by SHA-256.
    const EVP_MD* digest = nullptr;
    if (algorithm == NID_md5 || algorithm == NID_sha1) digest = EVP_sha256();
    else digest = EVP_get_digestbynid(algorithm);
    if (digest == nullptr) return {};
    std::array<unsigned char, EVP_MAX_MD_SIZE> hash{};
    unsigned int length = 0;
    if (X509_digest(certificate, digest, hash.data(), &length) != 1) {
        ERR_clear_error();
        return {};
    }
    return {hash.begin(), hash.begin() + length};
}

std::string TlsContexts::reload(const config::TlsConfig& tls, const std::string& upstream_host) {
    auto built = build_tls_contexts(tls, upstream_host);
    if (!built.contexts) return std::move(built.error);
    std::shared_ptr<const TlsContextSet> previous;  // freed outside the lock, if no session holds it
    {
        const std::lock_guard lock(mutex_);
        previous = std::exchange(current_, std::move(built.contexts));
    }
    return {};
}

}  // namespace pgrail::proxy

// pgrail's server-leg TLS context (src/proxy/tls_context) against the real PostgreSQL 15 with
// ssl = on (scripts/test-cluster.sh, PGRAIL_CLUSTER_SSL=1): SSLRequest, the handshake under each
// sslmode, SNI, a client certificate for cert authentication, and the clear errors of a wrong CA
// and a wrong name.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

#include "../../src/proxy/tls_context.hpp"
#include "ssl_cluster.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using pgrail::config::ServerSslMode;
using pgrail::config::TlsConfig;
using namespace pgrail::proxy;
using pgrail::test::SslCluster;

namespace {

std::string tls_file(const char* name) { return (SslCluster::get().tls / name).string(); }

TlsConfig server_leg(ServerSslMode mode, const char* ca = "ca.crt") {
    TlsConfig tls;
    tls.server.sslmode = mode;
    tls.server.ca_file = tls_file(ca);
    tls.server.cert_file = tls_file("client.crt");  // certuser's: PostgreSQL's cert authentication
    tls.server.key_file = tls_file("client.key");
    return tls;
}

struct Login {
    std::string handshake_error;  // empty: the handshake succeeded
    char first = 0;               // the server's first message type after the startup packet
    std::string text;             // its body (an ErrorResponse's fields)
    std::string version;          // the negotiated protocol
};

// SSLRequest, the handshake with the context pgrail's session would use, then a startup packet.
Login login(const TlsContextSet& contexts, const std::string& user) {
    const auto& cluster = SslCluster::get();
    asio::io_context io;
    asio::ssl::stream<tcp::socket> stream(io, *contexts.server_leg);
    tcp::resolver resolver(io);
    asio::connect(stream.next_layer(), resolver.resolve(cluster.host, std::to_string(cluster.port)));
    const std::array<unsigned char, 8> ssl_request{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    asio::write(stream.next_layer(), asio::buffer(ssl_request));
    char answer = 0;
    asio::read(stream.next_layer(), asio::buffer(&answer, 1));
    REQUIRE(answer == 'S');
    REQUIRE(prepare_server_leg(stream.native_handle(), contexts));
    Login result;
    boost::system::error_code error;
    stream.handshake(asio::ssl::stream_base::client, error);
    if (error) {
        result.handshake_error = describe_tls_error(error, stream.native_handle());
        return result;
    }
    result.version = SSL_get_version(stream.native_handle());
    std::string body;
    body += std::string("\0\3\0\0", 4);
    for (const std::string& field : {std::string("user"), user, std::string("database"), std::string("app")})
        body += field + '\0';
    body += '\0';
    const auto length = static_cast<std::uint32_t>(body.size() + 4);
    std::string packet{static_cast<char>(length >> 24), static_cast<char>(length >> 16), static_cast<char>(length >> 8),
                       static_cast<char>(length)};
    packet += body;
    asio::write(stream, asio::buffer(packet));
    std::array<unsigned char, 5> header{};
    asio::read(stream, asio::buffer(header));
    result.first = static_cast<char>(header[0]);
    const auto size = (std::uint32_t{header[1]} << 24 | std::uint32_t{header[2]} << 16 | std::uint32_t{header[3]} << 8 |
                       std::uint32_t{header[4]}) - 4;
    REQUIRE(size < 65536);
    result.text.resize(size);
    asio::read(stream, asio::buffer(result.text));
    return result;
}

std::shared_ptr<const TlsContextSet> build(const TlsConfig& tls, const std::string& upstream_host = "localhost") {
    auto built = build_tls_contexts(tls, upstream_host);
    INFO(built.error);
    REQUIRE(built.contexts);
    return built.contexts;
}

}  // namespace

TEST_CASE("server leg: verify-full against the harness CA logs in by client certificate", "[tls][tls_server_leg]") {
    const auto contexts = build(server_leg(ServerSslMode::verify_full));
    const auto result = login(*contexts, "certuser");
    CHECK(result.handshake_error.empty());
    CHECK(result.version == "TLSv1.3");
    // AuthenticationOk: PostgreSQL's cert method accepted client.crt (CN=certuser) without a password.
    CHECK(result.first == 'R');
    CHECK(result.text == std::string("\0\0\0\0", 4));

    // An address as the name: checked against the certificate's IP subjectAltName.
    const auto by_address = build(server_leg(ServerSslMode::verify_full), "127.0.0.1");
    CHECK(login(*by_address, "certuser").first == 'R');
}

TEST_CASE("server leg: a wrong CA and a wrong name are refused with clear errors", "[tls][tls_server_leg]") {
    for (auto mode : {ServerSslMode::verify_ca, ServerSslMode::verify_full}) {
        // PostgreSQL sends its CA after server.crt (OpenSSL completes the chain from ssl_ca_file), so
        // OpenSSL reports the chain's root as the untrusted one.
        const auto wrong_ca = build(server_leg(mode, "wrong-ca.crt"));
        CHECK(login(*wrong_ca, "certuser").handshake_error ==
              "certificate verify failed: self-signed certificate in certificate chain");
    }
    auto tls = server_leg(ServerSslMode::verify_full);
    tls.server.server_name = "db.example.com";
    CHECK(login(*build(tls), "certuser").handshake_error ==
          "certificate verify failed: hostname mismatch (the certificate is not for \"db.example.com\")");
    // verify-ca does not check the name.
    tls.server.sslmode = ServerSslMode::verify_ca;
    CHECK(login(*build(tls), "certuser").first == 'R');
}

TEST_CASE("server leg: require encrypts without checking; without a client certificate cert auth refuses", "[tls][tls_server_leg]") {
    TlsConfig tls;
    tls.server.sslmode = ServerSslMode::require;
    tls.server.ca_file = tls_file("wrong-ca.crt");  // not used by require
    const auto result = login(*build(tls), "certuser");
    CHECK(result.handshake_error.empty());
    CHECK(result.first == 'E');
    CHECK_THAT(result.text, Catch::Contains("connection requires a valid client certificate"));
}

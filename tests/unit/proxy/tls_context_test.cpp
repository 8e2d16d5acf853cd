// TLS contexts: built from the configuration, clear errors for bad files, handshakes between the two
// legs over a socketpair (certificates from scripts/test-certs.sh), reload and channel binding.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <fmt/format.h>
#include <openssl/pem.h>

#include "../../../src/proxy/tls_context.hpp"

namespace asio = boost::asio;
using pgrail::config::ClientTlsMode;
using pgrail::config::ServerSslMode;
using pgrail::config::TlsConfig;
using pgrail::config::TlsVersion;
using namespace pgrail::proxy;

namespace {

// One set of certificates for the whole run, made by the script the test cluster uses.
const std::filesystem::path& certs() {
    static const std::filesystem::path dir = [] {
        auto path = std::filesystem::temp_directory_path() / ("pgrail-tls-unit-" + std::to_string(::getpid()));
        const std::string script = std::string(PGRAIL_TEST_DATA) + "/../../scripts/test-certs.sh";
        const auto command = "bash '" + script + "' '" + path.string() + "' >/dev/null";
        REQUIRE(std::system(command.c_str()) == 0);
        std::atexit([] { std::filesystem::remove_all(certs()); });
        return path;
    }();
    return dir;
}

std::string cert(const char* name) { return (certs() / name).string(); }

// The client leg presents server.crt; the server leg trusts ca.crt and expects "localhost".
TlsConfig both_legs(ServerSslMode sslmode = ServerSslMode::verify_full) {
    TlsConfig tls;
    tls.client.mode = ClientTlsMode::require;
    tls.client.cert_file = cert("server.crt");
    tls.client.key_file = cert("server.key");
    tls.server.sslmode = sslmode;
    tls.server.ca_file = cert("ca.crt");
    return tls;
}

std::shared_ptr<const TlsContextSet> build(const TlsConfig& tls, const std::string& upstream_host = "localhost") {
    auto built = build_tls_contexts(tls, upstream_host);
    INFO(built.error);
    REQUIRE(built.contexts);
    return built.contexts;
}

std::string build_error(const TlsConfig& tls) {
    auto built = build_tls_contexts(tls, "localhost");
    CHECK_FALSE(built.contexts);
    return built.error;
}

struct Handshake {
    std::optional<std::string> server_error;  // pgrail's client leg (the TLS server); nullopt: success
    std::optional<std::string> client_error;  // pgrail's server leg (the TLS client)
    std::string version;                      // negotiated, when both succeeded
    std::string sni;                          // the name the server leg sent, as the client leg saw it
};

// `accepting`'s client leg against `connecting`'s server leg, over a socketpair, on one thread.
Handshake handshake(const TlsContextSet& accepting, const TlsContextSet& connecting) {
    asio::io_context io;
    asio::ssl::stream<asio::local::stream_protocol::socket> server(io, *accepting.client_leg);
    asio::ssl::stream<asio::local::stream_protocol::socket> client(io, *connecting.server_leg);
    asio::local::connect_pair(server.next_layer(), client.next_layer());
    REQUIRE(prepare_server_leg(client.native_handle(), connecting));
    Handshake result;
    // A failing side closes its socket, so that the other one never waits for a peer that gave up.
    auto on_server = [&](const boost::system::error_code& error) {
        if (!error) return;
        result.server_error = describe_tls_error(error, server.native_handle());
        server.next_layer().close();
    };
    auto on_client = [&](const boost::system::error_code& error) {
        if (!error) return;
        result.client_error = describe_tls_error(error, client.native_handle());
        client.next_layer().close();
    };
    server.async_handshake(asio::ssl::stream_base::server, on_server);
    client.async_handshake(asio::ssl::stream_base::client, on_client);
    io.run();
    if (!result.server_error && !result.client_error) {
        result.version = SSL_get_version(client.native_handle());
        if (const char* name = SSL_get_servername(server.native_handle(), TLSEXT_NAMETYPE_host_name)) result.sni = name;
    }
    return result;
}

std::string run(const std::string& command) {
    std::string out;
    if (FILE* pipe = ::popen(command.c_str(), "r")) {
        char buffer[256];
        while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) out += buffer;
        ::pclose(pipe);
    }
    return out;
}

std::string hex(const std::vector<std::uint8_t>& bytes) {
    std::string out;
    for (auto byte : bytes) out += fmt::format("{:02x}", byte);
    return out;
}

}  // namespace

TEST_CASE("tls contexts: none for a disabled leg, both from certificate files") {
    TlsConfig off;
    off.server.sslmode = ServerSslMode::disable;
    const auto none = build(off);
    CHECK_FALSE(none->client_leg);
    CHECK_FALSE(none->server_leg);
    CHECK(none->end_point.empty());

    const auto both = build(both_legs(), "db.internal");
    CHECK(both->client_leg);
    CHECK(both->server_leg);
    CHECK(both->server_name == "db.internal");  // upstream.host when server_name is not set
    CHECK(both->settings.client.mode == ClientTlsMode::require);
    auto named = both_legs();
    named.server.server_name = "localhost";
    CHECK(build(named, "10.1.2.3")->server_name == "localhost");

    // The default is disable; prefer needs no CA: it never verifies.
    CHECK(TlsConfig{}.server.sslmode == ServerSslMode::disable);
    TlsConfig prefer;
    prefer.server.sslmode = ServerSslMode::prefer;
    CHECK(build(prefer)->server_leg);
    CHECK_FALSE(build(prefer)->client_leg);
}

TEST_CASE("tls contexts: bad files and settings are clear errors naming the key and the file") {
    const auto garbage = (certs() / "garbage.pem").string();
    std::ofstream(garbage) << "not a certificate\n";

    auto tls = both_legs();
    tls.client.cert_file = garbage;
    auto error = build_error(tls);
    CHECK_THAT(error, Catch::StartsWith("tls.client.cert_file " + garbage + ": "));
    CHECK_THAT(error, Catch::Contains("no start line"));

    tls = both_legs();
    tls.client.key_file = cert("client.key");  // a key, but not server.crt's
    CHECK(build_error(tls) == "tls.client.key_file " + cert("client.key") + ": does not match tls.client.cert_file " +
                                  cert("server.crt"));

    tls = both_legs();
    tls.client.key_file = garbage;
    CHECK_THAT(build_error(tls), Catch::StartsWith("tls.client.key_file " + garbage + ": "));

    tls = both_legs();
    tls.client.cert_file = (certs() / "gone.crt").string();  // removed after the configuration was read
    CHECK_THAT(build_error(tls), Catch::StartsWith("tls.client.cert_file " + (certs() / "gone.crt").string() + ": "));

    tls = both_legs();
    tls.client.ca_file = garbage;
    CHECK_THAT(build_error(tls), Catch::StartsWith("tls.client.ca_file " + garbage + ": "));

    tls = both_legs();
    tls.server.ca_file = garbage;
    CHECK_THAT(build_error(tls), Catch::StartsWith("tls.server.ca_file " + garbage + ": "));

    tls = both_legs();
    tls.server.cert_file = cert("client.crt");
    tls.server.key_file = cert("server.key");
    CHECK_THAT(build_error(tls), Catch::StartsWith("tls.server.key_file " + cert("server.key") + ": does not match"));

    tls = both_legs();
    tls.client.ciphers = "NO-SUCH-CIPHER";
    CHECK_THAT(build_error(tls), Catch::StartsWith("tls.client.ciphers \"NO-SUCH-CIPHER\": "));
}

TEST_CASE("tls handshake: verify-full against the CA and the name succeeds, TLS 1.3 by default") {
    const auto contexts = build(both_legs());
    const auto result = handshake(*contexts, *contexts);
    CHECK_FALSE(result.server_error);
    CHECK_FALSE(result.client_error);
    CHECK(result.version == "TLSv1.3");
    CHECK(result.sni == "localhost");

    // An address is checked against the certificate's IP subjectAltName (127.0.0.1 is in it).
    auto by_address = both_legs();
    by_address.server.server_name = "127.0.0.1";
    const auto address = build(by_address);
    const auto by_ip = handshake(*contexts, *address);
    CHECK_FALSE(by_ip.client_error);
    CHECK(by_ip.sni.empty());  // no SNI for an address (RFC 6066), as libpq

    // tls.client.protocols: [TLSv1.2]
    auto tls12 = both_legs();
    tls12.client.max_version = TlsVersion::tls1_2;
    tls12.client.ciphers = "HIGH:!aNULL";
    const auto old = build(tls12);
    CHECK(handshake(*old, *contexts).version == "TLSv1.2");
}

TEST_CASE("tls handshake: verify-full with a wrong name fails, saying so") {
    const auto server = build(both_legs());
    auto wrong = both_legs();
    wrong.server.server_name = "db.example.com";
    auto result = handshake(*server, *build(wrong));
    REQUIRE(result.client_error);
    CHECK(*result.client_error ==
          "certificate verify failed: hostname mismatch (the certificate is not for \"db.example.com\")");
    CHECK(result.server_error);  // the client's alert ends the server's handshake too

    wrong.server.server_name = "10.9.8.7";
    result = handshake(*server, *build(wrong));
    REQUIRE(result.client_error);
    CHECK(*result.client_error == "certificate verify failed: IP address mismatch (the certificate is not for 10.9.8.7)");

    // verify-ca checks the chain only: the name does not matter.
    auto ca_only = both_legs(ServerSslMode::verify_ca);
    ca_only.server.server_name = "db.example.com";
    CHECK_FALSE(handshake(*server, *build(ca_only)).client_error);
}

TEST_CASE("tls handshake: a certificate of another CA fails verify-ca, require does not check") {
    auto impostor = both_legs();
    impostor.client.cert_file = cert("wrong-server.crt");
    impostor.client.key_file = cert("wrong-server.key");
    const auto server = build(impostor);
    for (auto mode : {ServerSslMode::verify_ca, ServerSslMode::verify_full}) {
        const auto result = handshake(*server, *build(both_legs(mode)));
        REQUIRE(result.client_error);
        CHECK(*result.client_error == "certificate verify failed: unable to get local issuer certificate");
    }
    for (auto mode : {ServerSslMode::require, ServerSslMode::prefer, ServerSslMode::allow}) {
        TlsConfig unverified;
        unverified.server.sslmode = mode;
        const auto result = handshake(*server, *build(unverified));
        CHECK_FALSE(result.client_error);
        CHECK_FALSE(result.server_error);
    }
}

TEST_CASE("tls handshake: tls.client.ca_file requires a client certificate signed by it") {
    auto accepting = both_legs();
    accepting.client.ca_file = cert("ca.crt");
    const auto server = build(accepting);

    auto anonymous = handshake(*server, *build(both_legs()));
    REQUIRE(anonymous.server_error);
    CHECK_THAT(*anonymous.server_error, Catch::Contains("peer did not return a certificate"));

    auto with_cert = both_legs();
    with_cert.server.cert_file = cert("client.crt");
    with_cert.server.key_file = cert("client.key");
    const auto good = handshake(*server, *build(with_cert));
    CHECK_FALSE(good.server_error);
    CHECK_FALSE(good.client_error);

    with_cert.server.cert_file = cert("wrong-client.crt");
    with_cert.server.key_file = cert("wrong-client.key");
    const auto bad = handshake(*server, *build(with_cert));
    REQUIRE(bad.server_error);
    CHECK(*bad.server_error == "certificate verify failed: unable to get local issuer certificate");
}

TEST_CASE("tls contexts: a reload swaps the generation, a failed one keeps it, sessions keep theirs") {
    TlsContexts holder(build(both_legs()));
    const auto first = holder.current();  // what a session that started now holds

    auto broken = both_legs();
    broken.client.cert_file = (certs() / "missing.crt").string();
    CHECK_THAT(holder.reload(broken, "localhost"), Catch::StartsWith("tls.client.cert_file "));
    CHECK(holder.current() == first);

    auto other = both_legs();
    other.client.cert_file = cert("wrong-server.crt");
    other.client.key_file = cert("wrong-server.key");
    CHECK(holder.reload(other, "localhost").empty());
    const auto second = holder.current();
    CHECK(second != first);
    CHECK(second->settings.client.cert_file == cert("wrong-server.crt"));

    // The session that started before the reload still completes handshakes with its generation;
    // new ones get the new certificate (which this verifier rejects).
    const auto verifier = build(both_legs());
    CHECK_FALSE(handshake(*first, *verifier).client_error);
    CHECK(handshake(*second, *verifier).client_error);
}

TEST_CASE("tls contexts: a reload refuses a key made readable to other users since the start") {
    // A copy of the key, 0600 at the start, 0644 at the reload: the old generation stays.
    const auto dir = std::filesystem::temp_directory_path() / ("pgrail-tls-perm-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto key = dir / "server.key";
    std::filesystem::copy_file(cert("server.key"), key, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::permissions(key, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    auto settings = both_legs();
    settings.client.key_file = key.string();
    TlsContexts holder(build(settings));
    const auto first = holder.current();
    std::filesystem::permissions(key, std::filesystem::perms::others_read, std::filesystem::perm_options::add);
    CHECK_THAT(holder.reload(settings, "localhost"), Catch::Contains("is accessible to other users"));
    CHECK(holder.current() == first);
    std::filesystem::remove_all(dir);
}

TEST_CASE("tls-server-end-point: the DER certificate's SHA-256 for an ecdsa-with-SHA256 certificate") {
    const auto contexts = build(both_legs());
    const auto expected = run("openssl x509 -in '" + cert("server.crt") + "' -outform DER | sha256sum | cut -c1-64");
    REQUIRE(expected.size() == 65);
    CHECK(hex(contexts->end_point) == expected.substr(0, 64));

    // SHA-1 signed: RFC 5929 replaces SHA-1 with SHA-256.
    const auto sha1 = (certs() / "sha1.crt").string();
    run("openssl req -x509 -new -key '" + cert("server.key") + "' -sha1 -days 1 -subj /CN=old -out '" + sha1 +
        "' 2>/dev/null");
    FILE* file = std::fopen(sha1.c_str(), "r");
    REQUIRE(file != nullptr);
    X509* certificate = PEM_read_X509(file, nullptr, nullptr, nullptr);
    std::fclose(file);
    REQUIRE(certificate != nullptr);
    const auto sha1_expected = run("openssl x509 -in '" + sha1 + "' -outform DER | sha256sum | cut -c1-64");
    CHECK(hex(tls_server_end_point(certificate)) == sha1_expected.substr(0, 64));
    X509_free(certificate);
    CHECK(tls_server_end_point(nullptr).empty());
}

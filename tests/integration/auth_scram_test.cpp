// pgrail's SCRAM against the real PostgreSQL 15 and libpq: verifiers PostgreSQL accepts, ScramClient
// logging in to PostgreSQL, ScramServer accepting libpq, md5 and cleartext answers PostgreSQL accepts.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <future>
#include <thread>

#include <catch2/catch.hpp>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "cluster.hpp"
#include "pgrail/auth/scram.hpp"
#include "pgrail/auth/scram_client.hpp"
#include "pgrail/auth/scram_server.hpp"

using namespace pgrail::test;
using namespace pgrail::auth;

namespace {

constexpr const char* probe_role = "auth_scram_probe";

std::string quote_literal(const std::string& text) {
    std::string out = "'";
    for (char c : text) {
        if (c == '\'') out += '\'';
        out += c;
    }
    return out + "'";
}

// (Re)creates the probe role with the given verifier as its stored password.
void set_probe_verifier(const std::string& verifier) {
    auto conn = admin();
    (void)run(conn.get(), std::string("DROP ROLE IF EXISTS ") + probe_role);
    const auto outcome = run(conn.get(), std::string("CREATE ROLE ") + probe_role + " LOGIN PASSWORD " + quote_literal(verifier));
    REQUIRE(outcome.size() == 1);
    REQUIRE(outcome[0].sqlstate.empty());
}

void drop_probe() {
    auto conn = admin();
    (void)run(conn.get(), std::string("DROP ROLE IF EXISTS ") + probe_role);
}

std::string direct_conninfo(const std::string& user, const std::string& password) {
    const auto& c = Cluster::get();
    return "host=" + c.host + " port=" + std::to_string(c.pg_port) + " dbname=" + c.database + " user=" + user +
           " password=" + quote_literal(password) + " sslmode=disable gssencmode=disable";
}

std::int32_t auth_code(const BackendMessage& message) {
    REQUIRE(message.type == 'R');
    REQUIRE(message.body.size() >= 4);
    return static_cast<std::int32_t>(from_be32(message.body));
}

// AuthenticationSASL's mechanism list.
std::vector<std::string> mechanisms_of(const BackendMessage& message) {
    std::vector<std::string> out;
    std::string_view rest = std::string_view(message.body).substr(4);
    while (!rest.empty() && rest.front() != '\0') {
        const auto end = rest.find('\0');
        out.emplace_back(rest.substr(0, end));
        rest.remove_prefix(end + 1);
    }
    return out;
}

// Logs in to PostgreSQL directly over a raw socket with pgrail's ScramClient; returns the last
// message PostgreSQL sent ('Z' after a successful login, 'E' otherwise) and whether the client
// verified the server's signature.
BackendMessage scram_login(const std::string& user, const std::string& password, bool* server_verified) {
    RawSocket socket(Cluster::get().pg_port);
    socket.send(startup_packet(0x00030000, {{"user", user}, {"database", Cluster::get().database}}));
    const auto request = read_message(socket);
    REQUIRE(auth_code(request) == 10);
    const auto offered = mechanisms_of(request);
    std::vector<std::string_view> offered_views(offered.begin(), offered.end());
    ScramClient client(password);
    const auto mechanism = client.choose_mechanism(offered_views);
    REQUIRE(mechanism);
    const auto first = client.client_first();
    socket.send(message('p', std::string(*mechanism) + '\0' + be32(static_cast<std::uint32_t>(first.size())) + first));
    const auto server_first = read_message(socket);
    if (server_first.type == 'E') return server_first;
    REQUIRE(auth_code(server_first) == 11);
    const auto final_message = client.server_first(std::string_view(server_first.body).substr(4));
    REQUIRE(final_message.ok);
    socket.send(message('p', final_message.message));
    const auto server_final = read_message(socket);
    if (server_final.type == 'E') return server_final;
    REQUIRE(auth_code(server_final) == 12);
    *server_verified = client.server_final(std::string_view(server_final.body).substr(4)).ok;
    const auto ok = read_message(socket);
    REQUIRE(auth_code(ok) == 0);
    return read_until_ready(socket).back();
}

// Logs in with a password-message answer (md5 or cleartext); returns PostgreSQL's last message.
BackendMessage password_login(const std::string& user, const std::function<std::string(const BackendMessage&)>& answer) {
    RawSocket socket(Cluster::get().pg_port);
    socket.send(startup_packet(0x00030000, {{"user", user}, {"database", Cluster::get().database}}));
    const auto request = read_message(socket);
    socket.send(message('p', answer(request) + '\0'));
    const auto reply = read_message(socket);
    if (reply.type == 'E') return reply;
    REQUIRE(auth_code(reply) == 0);
    return read_until_ready(socket).back();
}

// A self-signed certificate made in the process (ECDSA P-256, SHA-256), for the TLS test server.
struct TestCertificate {
    EVP_PKEY* key = nullptr;
    X509* cert = nullptr;
    TestCertificate() {
        key = EVP_EC_gen("P-256");
        REQUIRE(key != nullptr);
        cert = X509_new();
        X509_set_version(cert, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
        X509_gmtime_adj(X509_getm_notBefore(cert), -60);
        X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
        X509_set_pubkey(cert, key);
        X509_NAME* name = X509_get_subject_name(cert);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
        X509_set_issuer_name(cert, name);
        REQUIRE(X509_sign(cert, key, EVP_sha256()) > 0);
    }
    ~TestCertificate() {
        X509_free(cert);
        EVP_PKEY_free(key);
    }
    // RFC 5929 tls-server-end-point: the certificate's hash with its signature's hash (SHA-256 here).
    [[nodiscard]] std::string end_point() const {
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int length = 0;
        REQUIRE(X509_digest(cert, EVP_sha256(), digest, &length) == 1);
        return {reinterpret_cast<const char*>(digest), length};
    }
};

struct TestServerOptions {
    bool tls = false;             // answer SSLRequest with 'S' and run the exchange over TLS
    bool offer_plus = true;       // list SCRAM-SHA-256-PLUS when the ScramServer has binding data
    bool wrong_binding = false;   // give the ScramServer binding data of another certificate
};

// A one-connection server that authenticates its client with pgrail's ScramServer and, on success,
// answers AuthenticationOk + ReadyForQuery (enough for libpq to report CONNECTION_OK).
class ScramTestServer {
public:
    explicit ScramTestServer(std::optional<ScramVerifier> verifier, TestServerOptions options = {})
        : verifier_(std::move(verifier)), options_(options) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        socklen_t length = sizeof address;
        REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0);
        port_ = ntohs(address.sin_port);
        REQUIRE(::listen(fd_, 1) == 0);
        if (options_.tls) {
            ctx_ = SSL_CTX_new(TLS_server_method());
            REQUIRE(ctx_ != nullptr);
            REQUIRE(SSL_CTX_use_certificate(ctx_, certificate_.cert) == 1);
            REQUIRE(SSL_CTX_use_PrivateKey(ctx_, certificate_.key) == 1);
        }
        outcome_ = std::async(std::launch::async, [this] { return serve(); });
    }
    ~ScramTestServer() {
        ::close(fd_);
        if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    }
    [[nodiscard]] int port() const { return port_; }
    // What ScramServer decided ("success", or the failure's error and detail).
    std::string outcome() { return outcome_.get(); }

private:
    bool read_exactly(std::string& out, std::size_t n) {
        out.resize(n);
        std::size_t got = 0;
        while (got < n) {
            const auto r = ssl_ != nullptr ? SSL_read(ssl_, out.data() + got, static_cast<int>(n - got))
                                           : static_cast<int>(::read(client_, out.data() + got, n - got));
            if (r <= 0) return false;
            got += static_cast<std::size_t>(r);
        }
        return true;
    }
    void send(const std::string& bytes) {
        if (ssl_ != nullptr) {
            (void)SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size()));
        } else {
            (void)write_fd(client_, bytes);
        }
    }
    std::optional<std::string> read_typed() {
        std::string header, body;
        if (!read_exactly(header, 5) || header[0] != 'p') return std::nullopt;
        if (!read_exactly(body, from_be32(header.substr(1)) - 4)) return std::nullopt;
        return body;
    }
    std::optional<std::string> read_startup() {
        std::string length, body;
        if (!read_exactly(length, 4) || !read_exactly(body, from_be32(length) - 4)) return std::nullopt;
        return body;
    }

    std::string serve() {
        client_ = ::accept(fd_, nullptr, nullptr);
        if (client_ < 0) return "accept failed";
        auto result = exchange();
        // Wait for libpq's Terminate (or its close) before closing our side.
        std::string rest;
        (void)read_exactly(rest, 1);
        if (ssl_ != nullptr) SSL_free(ssl_);
        ::close(client_);
        return result;
    }

    std::string exchange() {
        auto startup = read_startup();
        if (!startup) return "no startup packet";
        std::string binding;
        if (options_.tls) {
            if (startup->size() != 4 || from_be32(*startup) != 80877103) return "no SSLRequest";
            (void)write_fd(client_, "S");
            ssl_ = SSL_new(ctx_);
            SSL_set_fd(ssl_, client_);
            if (SSL_accept(ssl_) != 1) return "TLS handshake failed";
            startup = read_startup();
            if (!startup) return "no startup packet after TLS";
            binding = options_.wrong_binding ? TestCertificate().end_point() : certificate_.end_point();
        }
        auto server = verifier_ ? ScramServer::for_verifier(*verifier_, binding)
                                : ScramServer::mock("ghost", new_mock_secret(), binding);
        std::string offer = be32(10);
        for (const auto name : server.mechanisms())
            if (options_.offer_plus || name != scram_sha_256_plus) offer += std::string(name) + '\0';
        send(message('R', offer + '\0'));
        const auto initial = read_typed();
        if (!initial) return "no SASLInitialResponse";
        const auto nul = initial->find('\0');
        if (nul == std::string::npos || initial->size() < nul + 5) return "malformed SASLInitialResponse";
        const auto mechanism = initial->substr(0, nul);
        const auto data = initial->substr(nul + 1 + 4);
        std::string result;
        const auto first = server.client_first(mechanism, data);
        if (first.status == ScramStep::Status::next) {
            send(message('R', be32(11) + first.message));
            const auto response = read_typed();
            const auto last = server.client_final(response ? *response : std::string());
            if (last.status == ScramStep::Status::success) {
                send(message('R', be32(12) + last.message) + message('R', be32(0)) + message('Z', "I"));
                return "success (" + mechanism + ")";
            }
            result = last.error + " / " + last.detail;
        } else {
            result = first.error + " / " + first.detail;
        }
        send(message('E', std::string("SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed\0\0", 55)));
        return result;
    }

    std::optional<ScramVerifier> verifier_;
    TestServerOptions options_;
    TestCertificate certificate_;
    SSL_CTX* ctx_ = nullptr;
    SSL* ssl_ = nullptr;
    int fd_ = -1;
    int client_ = -1;
    int port_ = 0;
    std::future<std::string> outcome_;
};

std::string local_conninfo(int port, const std::string& user, const std::string& password) {
    return "host=127.0.0.1 port=" + std::to_string(port) + " dbname=app user=" + user +
           " password=" + quote_literal(password) + " sslmode=disable gssencmode=disable connect_timeout=10";
}

}  // namespace

TEST_CASE("PostgreSQL stores a verifier pgrail made as is and logs in with its password", "[auth_scram]") {
    const auto verifier = make_scram_verifier("correct horse battery");
    set_probe_verifier(verifier.to_string());
    {
        auto conn = admin();
        CHECK(scalar(conn.get(), std::string("SELECT rolpassword FROM pg_authid WHERE rolname = '") + probe_role + "'") ==
              verifier.to_string());
    }
    auto good = try_connect(direct_conninfo(probe_role, "correct horse battery"));
    CHECK(PQstatus(good.get()) == CONNECTION_OK);
    CHECK(PQconnectionUsedPassword(good.get()) == 1);
    auto bad = try_connect(direct_conninfo(probe_role, "correct horse"));
    CHECK(PQstatus(bad.get()) == CONNECTION_BAD);
    CHECK_THAT(PQerrorMessage(bad.get()), Catch::Contains("password authentication failed"));

    // Non-ASCII: pgrail SASLprep's the password as libpq does, so either spelling logs in.
    set_probe_verifier(make_scram_verifier("I\xC2\xADX-\xE2\x85\xA8-caf\xC3\xA9", 4096).to_string());
    for (const char* spelling : {"I\xC2\xADX-\xE2\x85\xA8-caf\xC3\xA9", "IX-IX-caf\xC3\xA9"}) {
        INFO(spelling);
        auto conn = try_connect(direct_conninfo(probe_role, spelling));
        CHECK(PQstatus(conn.get()) == CONNECTION_OK);
    }
    // NFKC that lengthens the text 18 times (U+FDFA), and the ASCII-free spelling it maps to.
    set_probe_verifier(make_scram_verifier("\xEF\xB7\xBA\xEF\xB7\xBA", 4096).to_string());
    {
        auto conn = try_connect(direct_conninfo(probe_role, "\xEF\xB7\xBA\xEF\xB7\xBA"));
        CHECK(PQstatus(conn.get()) == CONNECTION_OK);
    }
    // A password SASLprep refuses (a C1 control character): both sides fall back to the raw bytes.
    set_probe_verifier(make_scram_verifier("raw\xC2\x80pw", 4096).to_string());
    auto raw = try_connect(direct_conninfo(probe_role, "raw\xC2\x80pw"));
    CHECK(PQstatus(raw.get()) == CONNECTION_OK);
    drop_probe();
}

TEST_CASE("pgrail parses the verifiers PostgreSQL makes", "[auth_scram]") {
    auto conn = admin();
    (void)run(conn.get(), std::string("DROP ROLE IF EXISTS ") + probe_role);
    (void)run(conn.get(), "SET password_encryption = 'scram-sha-256'");
    (void)run(conn.get(), std::string("CREATE ROLE ") + probe_role + " LOGIN PASSWORD 'made by postgres'");
    const auto stored = scalar(conn.get(), std::string("SELECT rolpassword FROM pg_authid WHERE rolname = '") + probe_role + "'");
    const auto parsed = parse_scram_verifier(stored);
    REQUIRE(parsed.verifier);
    CHECK(parsed.verifier->to_string() == stored);
    CHECK(make_scram_verifier("made by postgres", parsed.verifier->salt, parsed.verifier->iterations) == *parsed.verifier);
    drop_probe();
}

TEST_CASE("ScramClient logs in to PostgreSQL and verifies its signature", "[auth_scram]") {
    const auto verifier = make_scram_verifier("client side pw");
    set_probe_verifier(verifier.to_string());
    bool verified = false;
    const auto last = scram_login(probe_role, "client side pw", &verified);
    CHECK(last.type == 'Z');
    CHECK(verified);
    // The harness's roles have verifiers PostgreSQL made (password = role name).
    verified = false;
    CHECK(scram_login("agent", "agent", &verified).type == 'Z');
    CHECK(verified);
    const auto refused = scram_login(probe_role, "wrong", &verified);
    REQUIRE(refused.type == 'E');
    CHECK(error_fields(refused.body)['C'] == "28P01");
    drop_probe();
}

TEST_CASE("md5 and cleartext answers pgrail computes log in to PostgreSQL", "[auth_scram]") {
    const auto md5 = password_login("md5user", [](const BackendMessage& request) {
        REQUIRE(auth_code(request) == 5);
        std::array<unsigned char, 4> salt{};
        std::memcpy(salt.data(), request.body.data() + 4, 4);
        return md5_password_response("md5user", "md5user", salt);
    });
    CHECK(md5.type == 'Z');
    const auto md5_wrong = password_login("md5user", [](const BackendMessage& request) {
        std::array<unsigned char, 4> salt{};
        std::memcpy(salt.data(), request.body.data() + 4, 4);
        return md5_password_response("md5user", "nope", salt);
    });
    CHECK(md5_wrong.type == 'E');
    const auto plain = password_login("plainuser", [](const BackendMessage& request) {
        REQUIRE(auth_code(request) == 3);
        return *cleartext_password_response("plainuser");
    });
    CHECK(plain.type == 'Z');
}

TEST_CASE("libpq logs in to pgrail's ScramServer, and is refused with a wrong password or an unknown name",
          "[auth_scram]") {
    const auto verifier = make_scram_verifier("agent seven pw");
    {
        ScramTestServer server(verifier);
        auto conn = try_connect(local_conninfo(server.port(), "agent-7", "agent seven pw"));
        CHECK(PQstatus(conn.get()) == CONNECTION_OK);
        conn.reset();
        CHECK(server.outcome() == "success (SCRAM-SHA-256)");
    }
    {
        ScramTestServer server(verifier);
        auto conn = try_connect(local_conninfo(server.port(), "agent-7", "wrong"));
        CHECK(PQstatus(conn.get()) == CONNECTION_BAD);
        conn.reset();
        CHECK(server.outcome() == "password authentication failed / the SCRAM proof is wrong");
    }
    {
        ScramTestServer server(std::nullopt);  // the mock exchange
        auto conn = try_connect(local_conninfo(server.port(), "ghost", "anything"));
        CHECK(PQstatus(conn.get()) == CONNECTION_BAD);
        CHECK_THAT(PQerrorMessage(conn.get()), Catch::Contains("password authentication failed"));
        conn.reset();
        CHECK(server.outcome() == "password authentication failed / unknown identity");
    }
    {
        // channel_binding=require without TLS: libpq refuses before it sends a proof.
        ScramTestServer server(verifier);
        auto conn = try_connect(local_conninfo(server.port(), "agent-7", "agent seven pw") + " channel_binding=require");
        CHECK(PQstatus(conn.get()) == CONNECTION_BAD);
        conn.reset();
        CHECK(server.outcome() != "success");
    }
}

TEST_CASE("libpq logs in to pgrail's ScramServer with SCRAM-SHA-256-PLUS over TLS; wrong binding data and a "
          "downgrade are refused",
          "[auth_scram]") {
    const auto verifier = make_scram_verifier("agent seven pw");
    const auto tls_conninfo = [](int port, const std::string& extra) {
        return local_conninfo(port, "agent-7", "agent seven pw") + " sslmode=require " + extra;
    };
    {
        ScramTestServer server(verifier, {.tls = true});
        auto conn = try_connect(tls_conninfo(server.port(), "channel_binding=require"));
        CHECK(PQstatus(conn.get()) == CONNECTION_OK);
        CHECK(PQsslInUse(conn.get()) == 1);
        conn.reset();
        CHECK(server.outcome() == "success (SCRAM-SHA-256-PLUS)");
    }
    {
        // libpq's default (channel_binding=prefer) picks -PLUS over TLS too.
        ScramTestServer server(verifier, {.tls = true});
        auto conn = try_connect(tls_conninfo(server.port(), ""));
        CHECK(PQstatus(conn.get()) == CONNECTION_OK);
        conn.reset();
        CHECK(server.outcome() == "success (SCRAM-SHA-256-PLUS)");
    }
    {
        // The server binds to another certificate than the client saw (a man in the middle).
        ScramTestServer server(verifier, {.tls = true, .wrong_binding = true});
        auto conn = try_connect(tls_conninfo(server.port(), "channel_binding=require"));
        CHECK(PQstatus(conn.get()) == CONNECTION_BAD);
        conn.reset();
        CHECK(server.outcome() == "SCRAM channel binding check failed / ");
    }
    {
        // -PLUS stripped from the offer on the way (a downgrade): libpq says 'y', the server refuses.
        ScramTestServer server(verifier, {.tls = true, .offer_plus = false});
        auto conn = try_connect(tls_conninfo(server.port(), "channel_binding=prefer"));
        CHECK(PQstatus(conn.get()) == CONNECTION_BAD);
        conn.reset();
        CHECK_THAT(server.outcome(), Catch::StartsWith("SCRAM channel binding negotiation error"));
    }
}

namespace {

// A TLS connection straight to PostgreSQL (SSLRequest, then OpenSSL over the socket, certificate
// not verified: the test is about channel binding, not trust).
class TlsToPostgres {
public:
    TlsToPostgres() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(static_cast<std::uint16_t>(Cluster::get().pg_port));
        REQUIRE(::inet_pton(AF_INET, Cluster::get().host.c_str(), &address.sin_addr) == 1);
        REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        REQUIRE(write_fd(fd_, be32(8) + be32(80877103)));
        char answer = 0;
        REQUIRE(::read(fd_, &answer, 1) == 1);
        accepted_ = answer == 'S';
        if (!accepted_) return;
        ctx_ = SSL_CTX_new(TLS_client_method());
        ssl_ = SSL_new(ctx_);
        SSL_set_fd(ssl_, fd_);
        REQUIRE(SSL_connect(ssl_) == 1);
    }
    ~TlsToPostgres() {
        if (ssl_ != nullptr) SSL_free(ssl_);
        if (ctx_ != nullptr) SSL_CTX_free(ctx_);
        ::close(fd_);
    }
    [[nodiscard]] bool accepted() const { return accepted_; }
    // RFC 5929: the server certificate's hash, with its signature's hash (SHA-256 for MD5 and SHA-1).
    [[nodiscard]] std::string end_point() const {
        X509* cert = SSL_get1_peer_certificate(ssl_);
        REQUIRE(cert != nullptr);
        int md_nid = NID_undef;
        REQUIRE(OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md_nid, nullptr) == 1);
        const EVP_MD* md = (md_nid == NID_md5 || md_nid == NID_sha1) ? EVP_sha256() : EVP_get_digestbynid(md_nid);
        REQUIRE(md != nullptr);
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int length = 0;
        REQUIRE(X509_digest(cert, md, digest, &length) == 1);
        X509_free(cert);
        return {reinterpret_cast<const char*>(digest), length};
    }
    void send(const std::string& bytes) { REQUIRE(SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size())) > 0); }
    BackendMessage read() {
        std::string header = read_exactly(5);
        const auto body = read_exactly(from_be32(header.substr(1)) - 4);
        return {header[0], body};
    }

private:
    std::string read_exactly(std::size_t n) {
        std::string out(n, '\0');
        std::size_t got = 0;
        while (got < n) {
            const int r = SSL_read(ssl_, out.data() + got, static_cast<int>(n - got));
            REQUIRE(r > 0);
            got += static_cast<std::size_t>(r);
        }
        return out;
    }
    int fd_ = -1;
    bool accepted_ = false;
    SSL_CTX* ctx_ = nullptr;
    SSL* ssl_ = nullptr;
};

// Logs in as `user` over TLS with ScramClient; `binding` replaces the real channel-binding data when
// given, `strip_plus` hides SCRAM-SHA-256-PLUS from the client. Returns PostgreSQL's last message.
BackendMessage tls_scram_login(TlsToPostgres& tls, const std::string& user, const std::string& password,
                               std::optional<std::string> binding, bool strip_plus, std::string* mechanism_used) {
    tls.send(startup_packet(0x00030000, {{"user", user}, {"database", Cluster::get().database}}));
    const auto request = tls.read();
    REQUIRE(auth_code(request) == 10);
    auto offered = mechanisms_of(request);
    CHECK(offered == std::vector<std::string>{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"});
    if (strip_plus) offered = {"SCRAM-SHA-256"};
    std::vector<std::string_view> offered_views(offered.begin(), offered.end());
    ScramClient client(password, binding ? *binding : tls.end_point());
    const auto mechanism = client.choose_mechanism(offered_views);
    REQUIRE(mechanism);
    *mechanism_used = std::string(*mechanism);
    const auto first = client.client_first();
    tls.send(message('p', std::string(*mechanism) + '\0' + be32(static_cast<std::uint32_t>(first.size())) + first));
    const auto server_first = tls.read();
    if (server_first.type == 'E') return server_first;
    REQUIRE(auth_code(server_first) == 11);
    const auto final_message = client.server_first(std::string_view(server_first.body).substr(4));
    REQUIRE(final_message.ok);
    tls.send(message('p', final_message.message));
    const auto server_final = tls.read();
    if (server_final.type == 'E') return server_final;
    REQUIRE(auth_code(server_final) == 12);
    CHECK(client.server_final(std::string_view(server_final.body).substr(4)).ok);
    BackendMessage last = tls.read();
    REQUIRE(auth_code(last) == 0);
    while (last.type != 'Z' && last.type != 'E') last = tls.read();
    return last;
}

}  // namespace

TEST_CASE("ScramClient logs in to PostgreSQL over TLS with SCRAM-SHA-256-PLUS (PGRAIL_CLUSTER_SSL=1)",
          "[auth_scram]") {
    {
        TlsToPostgres probe;
        if (!probe.accepted()) {
            WARN("PostgreSQL has ssl = off: start the cluster with PGRAIL_CLUSTER_SSL=1 to run this test");
            return;
        }
    }
    std::string mechanism;
    {
        TlsToPostgres tls;
        CHECK(tls_scram_login(tls, "agent", "agent", std::nullopt, false, &mechanism).type == 'Z');
        CHECK(mechanism == "SCRAM-SHA-256-PLUS");
    }
    {
        // Binding data of another certificate (a man in the middle): PostgreSQL refuses.
        TlsToPostgres tls;
        const auto refused = tls_scram_login(tls, "agent", "agent", std::string(32, '\x42'), false, &mechanism);
        REQUIRE(refused.type == 'E');
        CHECK(error_fields(refused.body)['M'] == "SCRAM channel binding check failed");
    }
    {
        // -PLUS hidden from the client: it says 'y', and PostgreSQL, which offered -PLUS, sees a downgrade.
        TlsToPostgres tls;
        const auto refused = tls_scram_login(tls, "agent", "agent", std::nullopt, true, &mechanism);
        REQUIRE(refused.type == 'E');
        CHECK(mechanism == "SCRAM-SHA-256");
        CHECK(error_fields(refused.body)['M'] == "SCRAM channel binding negotiation error");
    }
}

// TLS through pgrail, with test CAs made by scripts/test-certs.sh. Client leg (tls.client): real
// libpq and psql clients verify pgrail's certificate, a client that does not ask for TLS hears
// PostgreSQL's hostssl error, a wrong CA is refused, cancel works, and a reload swaps certificates
// without dropping the sessions that use the old ones. Server leg (tls.server): pgrail verifies a
// PostgreSQL 15 with ssl = on, and refuses a wrong CA or a server without TLS.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>

#include "cluster.hpp"
#include "pgrail_process.hpp"
#include "ssl_cluster.hpp"

using namespace pgrail::test;

namespace {

// A fresh set of test certificates in `dir` (every file made again when it exists).
void make_certificates(const std::string& dir) {
    const auto [status, output] = shell(source_dir() + "/scripts/test-certs.sh " + dir + " 2>&1");
    REQUIRE(status == 0);
}

std::string client_tls_yaml(const std::string& certs, const std::string& mode) {
    return "tls:\n  client:\n    mode: " + mode + "\n    cert_file: " + certs + "/server.crt\n    key_file: " + certs +
           "/server.key\n";
}

std::string verify_full(const std::string& ca) { return " sslmode=verify-full sslrootcert=" + ca; }

}  // namespace

TEST_CASE("tls client leg, require: verify-full clients get in; a client without TLS hears PostgreSQL's "
          "hostssl error; a wrong CA is refused",
          "[tls]") {
    const auto dir = PgrailProcess::make_temp_dir();
    const auto certs = dir + "/certs";
    make_certificates(certs);
    PgrailProcess proxy(client_tls_yaml(certs, "require"));

    SECTION("libpq with verify-full, by name and by address") {
        for (const char* host : {"localhost", "127.0.0.1"}) {
            auto conn = try_connect(proxy.conninfo("agent") + verify_full(certs + "/ca.crt") + " host=" + host);
            REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
            CHECK(PQsslInUse(conn.get()) == 1);
            CHECK(std::string(PQsslAttribute(conn.get(), "protocol")).starts_with("TLSv1."));
            CHECK(scalar(conn.get(), "SELECT 40 + 2") == "42");
            // The extended protocol and a bigger result over TLS.
            const auto rows = run(conn.get(), "SELECT repeat('x', 100000) FROM generate_series(1, 20)");
            REQUIRE(rows.size() == 1);
            CHECK(rows[0].rows.size() == 20);
        }
    }
    SECTION("psql with verify-full") {
        const auto [status, output] = shell("psql '" + proxy.conninfo("agent") + verify_full(certs + "/ca.crt") +
                                            "' -XAtc 'SELECT current_user' 2>&1");
        CHECK(status == 0);
        CHECK(output == "agent\n");
    }
    SECTION("a client that does not ask for TLS") {
        auto conn = try_connect(proxy.conninfo("agent") + " sslmode=disable");
        REQUIRE(PQstatus(conn.get()) == CONNECTION_BAD);
        const std::string message = PQerrorMessage(conn.get());
        INFO(message);
        CHECK(message.find("no pg_hba.conf entry for host \"127.0.0.1\", user \"agent\", database \"" +
                           Cluster::get().database + "\", no encryption") != std::string::npos);
    }
    SECTION("a client that trusts another CA refuses pgrail's certificate") {
        auto conn = try_connect(proxy.conninfo("agent") + verify_full(certs + "/wrong-ca.crt"));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_BAD);
        const std::string message = PQerrorMessage(conn.get());
        INFO(message);
        CHECK(message.find("certificate verify failed") != std::string::npos);
        // pgrail goes on serving.
        auto good = try_connect(proxy.conninfo("agent") + verify_full(certs + "/ca.crt"));
        CHECK(PQstatus(good.get()) == CONNECTION_OK);
    }
    SECTION("cancel of a statement running over TLS (libpq's cancel request comes in plain text)") {
        auto conn = try_connect(proxy.conninfo("agent") + verify_full(certs + "/ca.crt"));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        REQUIRE(PQsendQuery(conn.get(), "SELECT pg_sleep(30)") == 1);
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        char error[256];
        PGcancel* cancel = PQgetCancel(conn.get());
        REQUIRE(PQcancel(cancel, error, sizeof error) == 1);
        PQfreeCancel(cancel);
        const auto started = std::chrono::steady_clock::now();
        std::string sqlstate;
        while (PGresult* result = PQgetResult(conn.get())) {
            if (const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE)) sqlstate = state;
            PQclear(result);
        }
        CHECK(sqlstate == "57014");
        CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(20));
        CHECK(scalar(conn.get(), "SELECT 1") == "1");
    }
}

TEST_CASE("tls client leg, prefer: TLS for those who ask, plain text for the others", "[tls]") {
    const auto dir = PgrailProcess::make_temp_dir();
    const auto certs = dir + "/certs";
    make_certificates(certs);
    PgrailProcess proxy(client_tls_yaml(certs, "prefer"));
    auto tls = try_connect(proxy.conninfo("agent") + verify_full(certs + "/ca.crt"));
    REQUIRE(PQstatus(tls.get()) == CONNECTION_OK);
    CHECK(PQsslInUse(tls.get()) == 1);
    auto plain = try_connect(proxy.conninfo("agent") + " sslmode=disable");
    REQUIRE(PQstatus(plain.get()) == CONNECTION_OK);
    CHECK(PQsslInUse(plain.get()) == 0);
    CHECK(scalar(plain.get(), "SELECT 1") == "1");
}

TEST_CASE("tls client leg: SIGHUP reloads the certificates; sessions on the old ones go on", "[tls]") {
    const auto dir = PgrailProcess::make_temp_dir();
    const auto certs = dir + "/certs";
    make_certificates(certs);
    const auto [copied, ignored] = shell("cp " + certs + "/ca.crt " + dir + "/old-ca.crt");
    REQUIRE(copied == 0);
    PgrailProcess proxy(client_tls_yaml(certs, "require"));
    auto before = try_connect(proxy.conninfo("agent") + verify_full(dir + "/old-ca.crt"));
    REQUIRE(PQstatus(before.get()) == CONNECTION_OK);

    make_certificates(certs);  // a new CA, and a new certificate for pgrail
    proxy.reload();
    bool reloaded = false;
    for (int attempt = 0; attempt < 100 && !reloaded; ++attempt) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        reloaded = proxy.log().find("TLS certificates reloaded") != std::string::npos;
    }
    REQUIRE(reloaded);
    auto with_new_ca = try_connect(proxy.conninfo("agent") + verify_full(certs + "/ca.crt"));
    CHECK(PQstatus(with_new_ca.get()) == CONNECTION_OK);
    auto with_old_ca = try_connect(proxy.conninfo("agent") + verify_full(dir + "/old-ca.crt"));
    CHECK(PQstatus(with_old_ca.get()) == CONNECTION_BAD);
    // The session that began before the reload still works.
    CHECK(scalar(before.get(), "SELECT 7") == "7");
}

TEST_CASE("tls server leg: pgrail verifies PostgreSQL (verify-full) and its sessions run over TLS", "[tls]") {
    const auto& cluster = SslCluster::get();
    const auto yaml = [&](const std::string& mode, const std::string& ca) {
        return "tls:\n  server:\n    sslmode: " + mode + "\n    ca_file: " + (cluster.tls / ca).string() +
               "\n    server_name: localhost\n";
    };
    SECTION("verify-full: the backend sees TLS; a cancel reaches it over TLS too") {
        PgrailProcess proxy(yaml("verify-full", "ca.crt"), cluster.host, cluster.port);
        auto conn = try_connect(proxy.conninfo("agent"));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        CHECK(PQsslInUse(conn.get()) == 0);  // the client's own leg is plain here
        CHECK(scalar(conn.get(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == "t");
        REQUIRE(PQsendQuery(conn.get(), "SELECT pg_sleep(30)") == 1);
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        char error[256];
        PGcancel* cancel = PQgetCancel(conn.get());
        REQUIRE(PQcancel(cancel, error, sizeof error) == 1);
        PQfreeCancel(cancel);
        std::string sqlstate;
        while (PGresult* result = PQgetResult(conn.get())) {
            if (const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE)) sqlstate = state;
            PQclear(result);
        }
        CHECK(sqlstate == "57014");
    }
    SECTION("a server certificate from another CA: the client hears why") {
        PgrailProcess proxy(yaml("verify-full", "wrong-ca.crt"), cluster.host, cluster.port);
        auto conn = try_connect(proxy.conninfo("agent"));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_BAD);
        const std::string message = PQerrorMessage(conn.get());
        INFO(message);
        CHECK(message.find("could not connect to the database server") != std::string::npos);
        CHECK(message.find("certificate verify failed") != std::string::npos);
    }
}

TEST_CASE("tls server leg: require against a server without TLS is refused, not downgraded", "[tls]") {
    {
        auto direct = try_connect(conninfo(Route::direct, "agent"));
        if (scalar(direct.get(), "SHOW ssl") == "on") {
            WARN("the fixture's PostgreSQL has ssl = on: this case needs a server without TLS");
            return;
        }
    }
    PgrailProcess proxy("tls:\n  server:\n    sslmode: require\n");  // the fixture's PostgreSQL: ssl = off
    auto conn = try_connect(proxy.conninfo("agent"));
    REQUIRE(PQstatus(conn.get()) == CONNECTION_BAD);
    const std::string message = PQerrorMessage(conn.get());
    INFO(message);
    CHECK(message.find("the server does not support SSL, but tls.server.sslmode is require") != std::string::npos);
}

TEST_CASE("tls on both legs, auth.mode passthrough: a SCRAM client that would bind the channel hears how to log "
          "in; with channel_binding=disable it logs in over TLS",
          "[tls]") {
    const auto& cluster = SslCluster::get();
    const auto certs = cluster.tls.string();
    PgrailProcess proxy(client_tls_yaml(certs, "require") + "  server:\n    sslmode: verify-full\n    ca_file: " + certs +
                            "/ca.crt\n    server_name: localhost\n",
                        cluster.host, cluster.port);
    CHECK(proxy.log().find("SCRAM clients over TLS must connect with channel_binding=disable") != std::string::npos);
    const auto client = proxy.conninfo("agent") + verify_full(certs + "/ca.crt") + " host=localhost";

    // libpq's default (channel_binding=prefer), not offered SCRAM-SHA-256-PLUS, answers "y": the
    // server, on TLS too, would call that a downgrade. pgrail says what to do instead.
    auto refused = try_connect(client);
    REQUIRE(PQstatus(refused.get()) == CONNECTION_BAD);
    const std::string message = PQerrorMessage(refused.get());
    INFO(message);
    CHECK(message.find("pgrail: SCRAM channel binding cannot pass through pgrail") != std::string::npos);
    CHECK(message.find("channel_binding=disable") != std::string::npos);

    auto conn = try_connect(client + " channel_binding=disable");
    REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
    CHECK(PQsslInUse(conn.get()) == 1);
    CHECK(scalar(conn.get(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == "t");
    CHECK(scalar(conn.get(), "SELECT current_user") == "agent");
}

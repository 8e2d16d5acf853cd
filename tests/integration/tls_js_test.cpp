// node-postgres (pg) and postgres.js (postgres) from npm through pgrail's TLS client leg, configured
// as their users configure verify-full: each verifies pgrail's certificate against the test CA, runs
// simple and extended-protocol queries, hears a refused DDL as its own error (42501, with the hint)
// and goes on; a wrong CA is a certificate error in the driver, and no TLS against `require` is
// PostgreSQL's hostssl error (28000). The node side is tests/integration/tls_js/tls_client.js.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "cluster.hpp"
#include "node_packages.hpp"
#include "pgrail_process.hpp"
#include "seed_database.hpp"
#include "ssl_cluster.hpp"

using namespace pgrail::test;

namespace {

// Pinned, installed once per machine from npm into a folder of their own.
const std::string drivers_dir = "/tmp/pgrail-test-tls-js-v1";

std::string drivers_unavailable() {
    return node_packages_unavailable(drivers_dir, {"pg@8.23.1", "postgres@3.4.10"});
}

struct Target {
    int port = 0;
    std::string database;
    std::string ca;  // "" : the driver does not ask for TLS
    std::string table = "profiles";
};

// One run of tls_client.js: what the driver saw, as the JSON line it printed.
nlohmann::json drive(const std::string& driver, const Target& target, const std::string& scenario) {
    const nlohmann::json settings = {
        {"driver", driver},     {"host", "127.0.0.1"},
        {"port", target.port},  {"database", target.database},
        {"user", "agent"},      {"password", "agent"},
        {"ca", target.ca.empty() ? nlohmann::json(nullptr) : nlohmann::json(target.ca)},
        {"servername", "localhost"}, {"scenario", scenario},
        {"table", target.table}};
    const auto [status, output] = shell("node " + source_dir() + "/tests/integration/tls_js/tls_client.js " +
                                        drivers_dir + "/node_modules '" + settings.dump() + "' 2>&1");
    INFO(output);
    REQUIRE(status == 0);
    const auto line = output.substr(0, output.find('\n'));
    REQUIRE(nlohmann::json::accept(line));
    return nlohmann::json::parse(line);
}

void make_certificates(const std::string& dir) {
    const auto [status, output] = shell(source_dir() + "/scripts/test-certs.sh " + dir + " 2>&1");
    INFO(output);
    REQUIRE(status == 0);
}

std::string client_tls_yaml(const std::string& certs) {
    return "tls:\n  client:\n    mode: require\n    cert_file: " + certs + "/server.crt\n    key_file: " + certs +
           "/server.key\n";
}

// The session scenario's assertions, for either driver; `server_leg_ssl`: what pg_stat_ssl must say.
void check_session(const std::string& driver, const nlohmann::json& seen, bool server_leg_ssl) {
    INFO(driver << ": " << seen.dump(2));
    REQUIRE(seen.value("ok", false));
    if (driver == "pg") {
        // node-postgres exposes its socket: the client leg really is TLS.
        CHECK(seen["tls"]["encrypted"] == true);
        CHECK(seen["tls"]["protocol"].get<std::string>().starts_with("TLSv1."));
    }
    CHECK(seen["server_leg_ssl"] == server_leg_ssl);
    CHECK(seen["simple"] == 42);
    CHECK(seen["extended"] == "42");
    CHECK(seen["extended_rows"] == "1000");
    CHECK(seen["two_in_one_parse"]["error"]["code"] == "42601");
    for (const char* protocol : {"refused_simple", "refused_extended"}) {
        INFO(protocol);
        const auto& refusal = seen[protocol];
        REQUIRE(refusal["refused"] == true);
        CHECK(refusal["error"]["code"] == "42501");
        CHECK(refusal["error"]["severity"] == "ERROR");
        CHECK_THAT(refusal["error"]["message"].get<std::string>(),
                   Catch::StartsWith("pgrail: DROP TABLE refused") && Catch::Contains("pgrail.propose_migration("));
        CHECK_THAT(refusal["error"]["hint"].get<std::string>(), Catch::Contains("registered migrations"));
    }
    // The session goes on after each refusal, by the same protocol.
    CHECK(seen["after_simple"] == 7);
    CHECK(seen["after_extended"] == "8");
}

}  // namespace

// (No ": " near the 80th column of a test's name: Catch2 v2 indents a wrapped name to just after
// it, and at the console's width its wrapping never ends.)
TEST_CASE("node-postgres and postgres.js with verify-full through pgrail's TLS client leg (queries, a refusal "
          "heard as the driver's error, a wrong CA and a client without TLS refused)",
          "[tls_js]") {
    if (const auto why = drivers_unavailable(); !why.empty()) {
        WARN("skipped: " << why);
        return;
    }
    const auto certs = PgrailProcess::make_temp_dir() + "/certs";
    make_certificates(certs);
    SeedDatabase db{"tls_js_"};
    PgrailProcess proxy("policy: " + source_dir() + "/policies/default.yaml\n" + client_tls_yaml(certs));
    const Target trusted{proxy.port(), db.name, certs + "/ca.crt"};

    for (const std::string driver : {"pg", "postgres"}) {
        DYNAMIC_SECTION(driver) {
            // The fixture's server leg is plain: pg_stat_ssl says so through pgrail.
            check_session(driver, drive(driver, trusted, "session"), false);

            const auto wrong_ca = drive(driver, Target{proxy.port(), db.name, certs + "/wrong-ca.crt"}, "connect");
            INFO(wrong_ca.dump(2));
            CHECK(wrong_ca["ok"] == false);
            // Node's verdict on a certificate no trusted CA signed (pgrail sends its leaf alone).
            CHECK(wrong_ca["error"]["code"] == "UNABLE_TO_VERIFY_LEAF_SIGNATURE");

            const auto plain = drive(driver, Target{proxy.port(), db.name, ""}, "connect");
            INFO(plain.dump(2));
            CHECK(plain["ok"] == false);
            CHECK(plain["error"]["code"] == "28000");
            CHECK(plain["error"]["severity"] == "FATAL");
            CHECK(plain["error"]["message"] == "no pg_hba.conf entry for host \"127.0.0.1\", user \"agent\", database \"" +
                                                   db.name + "\", no encryption");

            // pgrail went on serving.
            CHECK(drive(driver, trusted, "connect")["answer"] == 42);
        }
    }
}

TEST_CASE("node-postgres and postgres.js through pgrail with TLS on both legs (pgrail verifies a PostgreSQL "
          "with ssl = on)",
          "[tls_js]") {
    if (const auto why = drivers_unavailable(); !why.empty()) {
        WARN("skipped: " << why);
        return;
    }
    const auto& cluster = SslCluster::get();
    const auto certs = cluster.tls.string();  // the same test CA signed pgrail's certificate and PostgreSQL's
    PgrailProcess proxy("policy: " + source_dir() + "/policies/default.yaml\n" + client_tls_yaml(certs) +
                            "  server:\n    sslmode: verify-full\n    ca_file: " + certs +
                            "/ca.crt\n    server_name: localhost\n",
                        cluster.host, cluster.port);
    // The ssl cluster has the harness's roles and its `app` database, without the seed table: the
    // refused DROP TABLE names a table that need not exist (the policy refuses it before the server).
    const Target trusted{proxy.port(), "app", certs + "/ca.crt", "tls_js_anything"};
    for (const std::string driver : {"pg", "postgres"}) {
        DYNAMIC_SECTION(driver) { check_session(driver, drive(driver, trusted, "session"), true); }
    }
}

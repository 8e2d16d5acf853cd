// auth.mode pgrail against the real PostgreSQL 15: agents log in to pgrail with their own
// identities (SCRAM-SHA-256 against the identities file's verifiers, never a database password),
// pgrail logs into the server as the role each maps to (SCRAM, md5 or cleartext, with credentials
// only pgrail holds), every audit line names the identity, and a reload that removes an identity
// refuses its new logins and ends its live sessions while the others keep working.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"
#include "scripted_server.hpp"
#include "seed_database.hpp"

using namespace pgrail::test;

namespace {

std::vector<nlohmann::json> audit_lines(const std::string& path) {
    std::vector<nlohmann::json> lines;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);)
        if (nlohmann::json::accept(line)) lines.push_back(nlohmann::json::parse(line));
    return lines;
}

bool audited(const std::string& path, const std::string& event, const std::string& identity) {
    for (const auto& line : audit_lines(path))
        if (line.value("event", "") == event && line.value("identity", "") == identity) return true;
    return false;
}

void write_secret(const std::string& path, const std::string& text) {
    write_file(path, text);
    REQUIRE(::chmod(path.c_str(), 0600) == 0);
}

// `pgrail passwd NAME --role ROLE` with the password on standard input.
void add_identity(const std::string& dir, const std::string& identities, const std::string& name,
                  const std::string& role, const std::string& password, int iterations = 4096) {
    const auto input = dir + "/input-" + name;
    write_secret(input, password + "\n");
    const auto [status, output] = pgrail_cli("passwd " + name + " --role " + role + " --identities " + identities +
                                             " --iterations " + std::to_string(iterations) + " < " + input);
    INFO(output);
    REQUIRE(status == 0);
}

// The identity's line out of the identities file (as passwd writes it: one line each).
void remove_identity(const std::string& identities, const std::string& name) {
    std::string text = read_file(identities);
    const auto start = text.find("  - {name: " + name + ",");
    REQUIRE(start != std::string::npos);
    text.erase(start, text.find('\n', start) + 1 - start);
    write_secret(identities, text);
}

// A directory with the roles' password files (the cluster's passwords: each role's name) and
// identities agent-7 and agent-8 (role agent), m1 (md5user) and p1 (plainuser).
struct AuthSetup {
    std::string dir = PgrailProcess::make_temp_dir() + "/auth_mode_" + std::to_string(::getpid()) + "_" +
                      std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
    std::string identities = dir + "/identities.yaml";
    std::string audit = dir + "/audit.jsonl";

    AuthSetup() {
        REQUIRE(shell("mkdir -p " + dir).first == 0);
        for (const char* role : {"agent", "md5user", "plainuser"})
            write_secret(dir + "/" + role + ".pw", std::string(role) + "\n");
        write_secret(identities, "roles:\n  agent: {password_file: agent.pw}\n  md5user: {password_file: md5user.pw}\n"
                                 "  plainuser: {password_file: plainuser.pw}\nidentities: []\n");
        add_identity(dir, identities, "agent-7", "agent", "seven secret");
        add_identity(dir, identities, "agent-8", "agent", "eight secret");
        add_identity(dir, identities, "m1", "md5user", "m1 secret");
        add_identity(dir, identities, "p1", "plainuser", "p1 secret");
        // agent-8 may read the admin view (a rule matched by identity, not by role).
        write_file(dir + "/policy.yaml", "version: 1\nmode: enforce\ndefaults:\n  allow_classes: [read, write, "
                                         "transaction, session]\n  migrations: [status]\nrules:\n"
                                         "  - name: eights\n    match: {identities: [\"agent-8*\"]}\n"
                                         "    migrations: [status, sessions]\n  - name: everyone\n");
    }
    [[nodiscard]] std::string yaml(const std::string& extra = "") const {
        return "auth: {mode: pgrail, identities_file: " + identities + "}\npolicy: " + dir +
               "/policy.yaml\naudit: {file: " + audit + "}\n" + extra;
    }
};

std::string conninfo(const PgrailProcess& proxy, const std::string& user, const std::string& password) {
    return "host=127.0.0.1 port=" + std::to_string(proxy.port()) + " dbname=" + Cluster::get().database +
           " user=" + user + " password='" + password + "' connect_timeout=10";
}

}  // namespace

TEST_CASE("auth mode pgrail: two identities of one role log in with their own passwords, each audited by its "
          "own name",
          "[auth_mode]") {
    AuthSetup setup;
    PgrailProcess proxy(setup.yaml());

    auto seven = try_connect(conninfo(proxy, "agent-7", "seven secret"));
    INFO(PQerrorMessage(seven.get()));
    REQUIRE(PQstatus(seven.get()) == CONNECTION_OK);
    auto eight = try_connect(conninfo(proxy, "agent-8", "eight secret"));
    INFO(PQerrorMessage(eight.get()));
    REQUIRE(PQstatus(eight.get()) == CONNECTION_OK);
    // The server sees the role; pgrail's key, not the server's, reaches the client (cancel works
    // through pgrail as ever).
    CHECK(scalar(seven.get(), "SELECT current_user") == "agent");
    CHECK(scalar(eight.get(), "SELECT current_user") == "agent");

    // pgrail.sessions(): the rule matched by identity lets agent-8 read it, not agent-7.
    const auto rows = run(eight.get(), "SELECT identity, user_name FROM pgrail.sessions() ORDER BY identity");
    REQUIRE(rows.size() == 1);
    INFO(rows[0].message);
    REQUIRE(rows[0].status == "PGRES_TUPLES_OK");
    REQUIRE(rows[0].rows.size() == 2);
    CHECK(rows[0].rows[0][0].value_or("") == "agent-7");
    CHECK(rows[0].rows[0][1].value_or("") == "agent");
    CHECK(rows[0].rows[1][0].value_or("") == "agent-8");
    const auto refused = run(seven.get(), "SELECT * FROM pgrail.sessions()");
    REQUIRE(refused.size() == 1);
    CHECK(refused[0].status == "PGRES_FATAL_ERROR");
    // A refused DDL statement: each is audited under its own identity, with the role as user.
    CHECK(run(seven.get(), "CREATE TABLE auth_mode_seven (id int)").at(0).status == "PGRES_FATAL_ERROR");
    CHECK(run(eight.get(), "CREATE TABLE auth_mode_eight (id int)").at(0).status == "PGRES_FATAL_ERROR");
    bool seven_line = false;
    bool eight_command = false;
    for (const auto& line : audit_lines(setup.audit)) {
        if (line.value("identity", "") == "agent-7" && line.value("event", "") == "statement_refused") {
            seven_line = true;
            CHECK(line.value("user", "") == "agent");
        }
        if (line.value("identity", "") == "agent-8" && line.value("event", "") == "command") eight_command = true;
    }
    CHECK(seven_line);
    CHECK(eight_command);
    CHECK(audited(setup.audit, "statement_refused", "agent-8"));
    // `pgrail audit --identity`: one identity's records, though both ran as the same role.
    {
        const auto [status, text] = pgrail_cli("audit " + setup.audit + " --identity agent-7 --event statement_refused");
        INFO(text);
        CHECK(status == 0);
        CHECK_THAT(text, Catch::Contains("agent@" + Cluster::get().database + " (identity agent-7)") &&
                             Catch::Contains("auth_mode_seven"));
        CHECK(text.find("agent-8") == std::string::npos);
        CHECK(text.find("auth_mode_eight") == std::string::npos);
        const auto [json_status, json] = pgrail_cli("audit " + setup.audit + " --identity agent-8 --json");
        CHECK(json_status == 0);
        std::size_t records = 0;
        for (std::size_t at = 0, end; (end = json.find('\n', at)) != std::string::npos; at = end + 1, ++records) {
            const auto line = nlohmann::json::parse(json.substr(at, end - at));
            CHECK(line.value("identity", "") == "agent-8");
        }
        CHECK(records >= 2);  // its refused statement and its pgrail.sessions() command at least
    }
    // `pgrail audit --summary`: refusals told apart by identity though both ran as role agent, and
    // each identity's records by event. agent-7: its refused pgrail.sessions() and CREATE TABLE
    // (rule everyone); agent-8: its pgrail.sessions() command and its refused CREATE TABLE (rule
    // eights, matched by identity).
    {
        const auto [status, json] = pgrail_cli("audit " + setup.audit + " --summary --json 2>/dev/null");
        INFO(json);
        REQUIRE(status == 0);
        const auto summary = nlohmann::json::parse(json);
        CHECK(summary["refusals"] == nlohmann::json::parse(R"([
            {"rule":"everyone","user":"agent","identity":"agent-7","count":2},
            {"rule":"eights","user":"agent","identity":"agent-8","count":1}])"));
        REQUIRE(summary.contains("identities"));
        REQUIRE(summary["identities"].size() == 2);
        CHECK(summary["identities"][0] == nlohmann::json::parse(R"(
            {"identity":"agent-7","roles":["agent"],"records":2,"refusals":2,"events":{"statement_refused":2}})"));
        CHECK(summary["identities"][1] == nlohmann::json::parse(R"(
            {"identity":"agent-8","roles":["agent"],"records":2,"refusals":1,
             "events":{"command":1,"statement_refused":1}})"));
        const auto [text_status, text] = pgrail_cli("audit " + setup.audit + " --summary 2>/dev/null");
        INFO(text);
        CHECK(text_status == 0);
        CHECK_THAT(text, Catch::Contains("2  rule everyone  user agent (identity agent-7)\n") &&
                             Catch::Contains("1  rule eights  user agent (identity agent-8)\n") &&
                             Catch::Contains("2  identity agent-7  role agent  refusals 2\n") &&
                             Catch::Contains("2  identity agent-8  role agent  refusals 1\n"));
    }

    // psql, as a person would use it.
    const auto [status, output] = shell("PGPASSWORD=\"eight secret\" psql 'host=127.0.0.1 port=" +
                                        std::to_string(proxy.port()) + " dbname=" + Cluster::get().database +
                                        " user=agent-8' -XAtc 'SELECT current_user' 2>&1");
    CHECK(status == 0);
    CHECK(output == "agent\n");
}

TEST_CASE("auth mode pgrail: a wrong password and an unknown identity hear the same 28P01, both audited",
          "[auth_mode]") {
    AuthSetup setup;
    PgrailProcess proxy(setup.yaml());
    for (const auto& [user, password] : std::vector<std::pair<std::string, std::string>>{
             {"agent-7", "eight secret"}, {"nobody", "seven secret"}, {"agent", "agent"}}) {
        auto conn = try_connect(conninfo(proxy, user, password));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_BAD);
        const std::string message = PQerrorMessage(conn.get());
        INFO(message);
        CHECK(message.find("FATAL:  password authentication failed for user \"" + user + "\"") != std::string::npos);
        CHECK(audited(setup.audit, "login_refused", user));
    }
    // The reason is in pgrail's log only.
    CHECK(proxy.log().find("no such identity") != std::string::npos);
    CHECK(proxy.log().find("the SCRAM proof is wrong") != std::string::npos);
}

// The server-first message pgrail answers a SCRAM client-first for `user` with (s=, i=, r=).
std::string server_first_for(const PgrailProcess& proxy, const std::string& user) {
    RawSocket raw(proxy.port());
    raw.send(startup_packet(196608, {{"user", user}, {"database", Cluster::get().database}}));
    const auto request = read_message(raw);
    REQUIRE(request.type == 'R');
    REQUIRE(from_be32(request.body) == 10);  // AuthenticationSASL
    const std::string first = "n,,n=,r=abcdefghijklmnop";
    raw.send(
        message('p', std::string("SCRAM-SHA-256") + '\0' + be32(static_cast<std::uint32_t>(first.size())) + first));
    const auto answer = read_message(raw);
    REQUIRE(answer.type == 'R');
    REQUIRE(from_be32(answer.body) == 11);  // AuthenticationSASLContinue
    return answer.body.substr(4);
}

std::string scram_attribute(const std::string& server_first, char name) {
    const auto at = server_first.find(std::string(",") + name + "=");
    REQUIRE(at != std::string::npos);
    const auto end = server_first.find(',', at + 3);
    return server_first.substr(at + 3, end == std::string::npos ? std::string::npos : end - at - 3);
}

TEST_CASE("auth mode pgrail: an unknown identity's exchange tells nothing about which names exist", "[auth_mode]") {
    AuthSetup setup;
    // Most verifiers have 5000 iterations: an unknown name is offered that count, not 4096.
    const std::string long_name = "agent-" + std::string(57, 'x');  // 63 bytes, the longest
    for (const char* name : {"five-1", "five-2", "five-3", "five-4", "five-5"})
        add_identity(setup.dir, setup.identities, name, "agent", "five secret", 5000);
    add_identity(setup.dir, setup.identities, long_name, "agent", "long secret", 5000);
    PgrailProcess proxy(setup.yaml());
    CHECK(scram_attribute(server_first_for(proxy, "ghost"), 'i') == "5000");
    // An unknown name's salt is its own and stays the same. A longer name is read as its first
    // 63 bytes, as PostgreSQL reads a role's name: for a 63-byte identity and for a 63-byte name
    // that is none alike, so the two still look the same from a longer name.
    const auto ghost_salt = scram_attribute(server_first_for(proxy, "ghost"), 's');
    CHECK(scram_attribute(server_first_for(proxy, "ghost"), 's') == ghost_salt);
    CHECK(scram_attribute(server_first_for(proxy, "ghost-other"), 's') != ghost_salt);
    const std::string unknown_long = "ghost-" + std::string(57, 'y');
    CHECK(scram_attribute(server_first_for(proxy, unknown_long), 's') ==
          scram_attribute(server_first_for(proxy, unknown_long + "y"), 's'));
    CHECK(scram_attribute(server_first_for(proxy, long_name), 's') ==
          scram_attribute(server_first_for(proxy, long_name + "x"), 's'));
    // A name is the client's text: in pgrail's log it cannot start a line of its own.
    const std::string port = std::to_string(proxy.port());
    const char* keys[] = {"host", "port", "dbname", "user", "password", nullptr};
    const char* values[] = {"127.0.0.1",
                            port.c_str(),
                            Cluster::get().database.c_str(),
                            "ghost\n2026-01-01 00:00:00.000000 info forged-line",
                            "x",
                            nullptr};
    Conn forged(PQconnectdbParams(keys, values, 0));
    CHECK(PQstatus(forged.get()) == CONNECTION_BAD);
    CHECK(eventually([&] { return proxy.log().find("ghost\\n2026-01-01") != std::string::npos; },
                     std::chrono::seconds(5)));
    CHECK(proxy.log().find("\n2026-01-01 00:00:00.000000 info forged-line") == std::string::npos);
}

TEST_CASE("auth mode pgrail: pgrail logs into md5 and cleartext roles as well as SCRAM ones", "[auth_mode]") {
    AuthSetup setup;
    PgrailProcess proxy(setup.yaml());
    auto md5 = try_connect(conninfo(proxy, "m1", "m1 secret"));
    INFO(PQerrorMessage(md5.get()));
    REQUIRE(PQstatus(md5.get()) == CONNECTION_OK);
    CHECK(scalar(md5.get(), "SELECT current_user") == "md5user");
    auto plain = try_connect(conninfo(proxy, "p1", "p1 secret"));
    INFO(PQerrorMessage(plain.get()));
    REQUIRE(PQstatus(plain.get()) == CONNECTION_OK);
    CHECK(scalar(plain.get(), "SELECT current_user") == "plainuser");
}

TEST_CASE("auth mode pgrail: the server's refusal of pgrail's own login reaches the client as it came",
          "[auth_mode]") {
    AuthSetup setup;
    write_secret(setup.dir + "/agent.pw", "not agent's password\n");
    PgrailProcess proxy(setup.yaml());
    auto conn = try_connect(conninfo(proxy, "agent-7", "seven secret"));
    REQUIRE(PQstatus(conn.get()) == CONNECTION_BAD);
    const std::string message = PQerrorMessage(conn.get());
    INFO(message);
    CHECK(message.find("password authentication failed for user \"agent\"") != std::string::npos);
}

TEST_CASE("auth mode pgrail: removing an identity by reload ends its access and its live session; the other "
          "keeps working",
          "[auth_mode]") {
    AuthSetup setup;
    PgrailProcess proxy(setup.yaml());
    auto seven = try_connect(conninfo(proxy, "agent-7", "seven secret"));
    REQUIRE(PQstatus(seven.get()) == CONNECTION_OK);
    auto eight = try_connect(conninfo(proxy, "agent-8", "eight secret"));
    REQUIRE(PQstatus(eight.get()) == CONNECTION_OK);
    CHECK(scalar(seven.get(), "SELECT 1") == "1");

    // agent-7's line out of the file, and a reload.
    remove_identity(setup.identities, "agent-7");
    proxy.reload();
    REQUIRE(eventually([&] { return proxy.log().find("identities reloaded") != std::string::npos; },
                       std::chrono::seconds(10)));

    // Its live session is ended with 28000; its new logins fail as an unknown identity's.
    REQUIRE(eventually([&] { return audited(setup.audit, "identity_revoked", "agent-7"); }, std::chrono::seconds(10)));
    const auto after = run(seven.get(), "SELECT 1");
    REQUIRE(!after.empty());
    CHECK(after.back().status == "PGRES_FATAL_ERROR");
    // libpq reports the FATAL (28000) with the connection's loss, in the result or the connection.
    const std::string said = after.back().message + PQerrorMessage(seven.get());
    INFO(said);
    CHECK((said.find("no longer authorized") != std::string::npos ||
           said.find("server closed the connection") != std::string::npos));
    CHECK(PQstatus(seven.get()) == CONNECTION_BAD);
    auto again = try_connect(conninfo(proxy, "agent-7", "seven secret"));
    CHECK(PQstatus(again.get()) == CONNECTION_BAD);
    CHECK(std::string(PQerrorMessage(again.get())).find("password authentication failed for user \"agent-7\"") !=
          std::string::npos);

    // agent-8 keeps its session and can log in again.
    CHECK(scalar(eight.get(), "SELECT 2") == "2");
    auto eight_again = try_connect(conninfo(proxy, "agent-8", "eight secret"));
    CHECK(PQstatus(eight_again.get()) == CONNECTION_OK);
}

TEST_CASE("auth mode pgrail: a server that says AuthenticationOk before SASLFinal has not logged pgrail in",
          "[auth_mode]") {
    // Helper 68: a server (or a man in the middle below verify-full) that skips the SCRAM
    // exchange's end has not shown that it knows the role's verifier.
    AuthSetup setup;
    ScriptedServer server([](int fd) {
        const auto send = [fd](const std::string& bytes) { (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL); };
        const auto receive_message = [fd] {
            auto bytes = receive_n(fd, 5);
            return bytes + receive_n(fd, from_be32(bytes.substr(1)) - 4);
        };
        const auto head = receive_n(fd, 4);
        (void)receive_n(fd, from_be32(head) - 4);  // the startup packet
        send(message('R', be32(10) + std::string("SCRAM-SHA-256") + '\0' + '\0'));
        const auto first = receive_message();  // SASLInitialResponse: ... n,,n=,r=<nonce>
        const auto nonce = first.substr(first.rfind("r=") + 2);
        send(message('R', be32(11) + "r=" + nonce + "server,s=c2FsdHNhbHRzYWx0c2FsdA==,i=4096"));
        (void)receive_message();  // SASLResponse with the proof
        send(message('R', be32(0)) + message('K', be32(1) + be32(2)) + message('Z', "I"));
        (void)receive_n(fd, 1);  // until pgrail leaves
    });
    PgrailProcess proxy(setup.yaml(), "127.0.0.1", server.port());
    auto seven = try_connect(conninfo(proxy, "agent-7", "seven secret"));
    CHECK(PQstatus(seven.get()) == CONNECTION_BAD);
    CHECK_THAT(PQerrorMessage(seven.get()), Catch::Contains("without its signature"));
}

TEST_CASE("auth mode pgrail: SCRAM-SHA-256-PLUS over the client leg's TLS", "[auth_mode]") {
    AuthSetup setup;
    const auto certs = setup.dir + "/certs";
    REQUIRE(shell(source_dir() + "/scripts/test-certs.sh " + certs + " >/dev/null 2>&1").first == 0);
    PgrailProcess proxy(setup.yaml("tls:\n  client:\n    mode: require\n    cert_file: " + certs +
                                   "/server.crt\n    key_file: " + certs + "/server.key\n"));
    auto conn = try_connect(conninfo(proxy, "agent-7", "seven secret") + " sslmode=require channel_binding=require");
    INFO(PQerrorMessage(conn.get()));
    REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
    CHECK(PQsslInUse(conn.get()) == 1);
    CHECK(scalar(conn.get(), "SELECT current_user") == "agent");
    auto wrong = try_connect(conninfo(proxy, "agent-7", "wrong") + " sslmode=require channel_binding=require");
    CHECK(PQstatus(wrong.get()) == CONNECTION_BAD);
}

TEST_CASE("auth mode pgrail: a bad identities file fails the start with its file:line:column, and a bad reload "
          "keeps the identities in force",
          "[auth_mode]") {
    AuthSetup setup;
    SECTION("at start") {
        const auto bad = setup.dir + "/bad-identities.yaml";
        write_secret(bad, "roles:\n  agent: {password_file: agent.pw}\nidentities:\n"
                          "  - {name: agent-7, role: agent, verifier: not-a-verifier}\n");
        write_file(setup.dir + "/bad.yaml", "listen: {host: 127.0.0.1, port: 1}\nauth: {mode: pgrail, identities_file: " +
                                                bad + "}\n");
        const auto [status, output] = pgrail_cli("serve --config " + setup.dir + "/bad.yaml");
        INFO(output);
        CHECK(status != 0);
        CHECK(output.find(bad + ":4:") != std::string::npos);
    }
    SECTION("at reload") {
        PgrailProcess proxy(setup.yaml());
        write_secret(setup.identities, "identities: [\n");
        proxy.reload();
        REQUIRE(eventually([&] { return proxy.log().find("identities reload refused") != std::string::npos; },
                           std::chrono::seconds(10)));
        CHECK(proxy.log().find(setup.identities + ":") != std::string::npos);
        auto conn = try_connect(conninfo(proxy, "agent-7", "seven secret"));
        CHECK(PQstatus(conn.get()) == CONNECTION_OK);
    }
}

TEST_CASE("auth mode pgrail: SCRAM-SHA-256-PLUS on the server leg's TLS, bound to the server's certificate",
          "[auth_mode]") {
    // Needs the fixture's cluster with ssl = on (PGRAIL_CLUSTER_SSL=1, scripts/test-cluster.sh).
    const char* cluster_dir = std::getenv("PGRAIL_CLUSTER_DIR");
    std::string tls_dir;
    if (cluster_dir != nullptr) {
        std::ifstream env(std::string(cluster_dir) + "/env");
        bool ssl = false;
        for (std::string line; std::getline(env, line);) {
            if (line == "PGRAIL_CLUSTER_SSL=1") ssl = true;
            if (line.starts_with("PGRAIL_TLS_DIR=")) tls_dir = line.substr(15);
        }
        if (!ssl) tls_dir.clear();
    }
    if (tls_dir.empty()) {
        WARN("the cluster runs without ssl = on (PGRAIL_CLUSTER_SSL=1): server-leg -PLUS not tested here");
        return;
    }
    AuthSetup setup;
    write_secret(setup.dir + "/ssluser.pw", "ssluser\n");
    std::string text = read_file(setup.identities);
    const auto roles = text.find("roles:\n");
    REQUIRE(roles != std::string::npos);
    text.insert(roles + 7, "  ssluser: {password_file: ssluser.pw}\n");
    write_secret(setup.identities, text);
    add_identity(setup.dir, setup.identities, "s1", "ssluser", "s1 secret");
    PgrailProcess proxy(setup.yaml("tls:\n  server: {sslmode: verify-full, ca_file: " + tls_dir + "/ca.crt}\n"));
    auto conn = try_connect(conninfo(proxy, "s1", "s1 secret"));
    INFO(PQerrorMessage(conn.get()));
    REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
    CHECK(scalar(conn.get(), "SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") ==
          "ssluser true");
    CHECK(proxy.log().find("as role ssluser for identity s1 (SCRAM-SHA-256-PLUS)") != std::string::npos);
}

TEST_CASE("auth mode pgrail: the ledger names the identity that applied, rolled back or proposed a migration over "
          "SQL; its audit lines name the role as user and the identity",
          "[auth_mode]") {
    AuthSetup setup;
    // propose_migration verifies on a scratch database created by the migrator connection's role.
    (void)run(admin().get(), "ALTER ROLE app_owner CREATEDB");
    struct NoCreatedb {
        ~NoCreatedb() { (void)run(admin().get(), "ALTER ROLE app_owner NOCREATEDB"); }
    } no_createdb;
    SeedDatabase db{"auth_actor_"};
    const auto migrations = setup.dir + "/migrations";
    REQUIRE(shell("mkdir -p " + migrations).first == 0);
    write_file(migrations + "/1_create_actor_t.up.sql", "CREATE TABLE auth_actor_t (id int);\n");
    write_file(migrations + "/1_create_actor_t.down.sql", "DROP TABLE auth_actor_t;\n");
    // owner-1 (role app_owner), a migrator: runs the registered DDL itself, as a migration tool does.
    write_secret(setup.dir + "/app_owner.pw", "app_owner\n");
    std::string identities = read_file(setup.identities);
    REQUIRE(identities.find("roles:\n") != std::string::npos);
    identities.replace(identities.find("roles:\n"), 7, "roles:\n  app_owner: {password_file: app_owner.pw}\n");
    write_secret(setup.identities, identities);
    add_identity(setup.dir, setup.identities, "owner-1", "app_owner", "owner secret");
    // agent-7 (role agent) may run migrations; agent-8 (the same role) may not.
    write_file(setup.dir + "/policy.yaml",
               "version: 1\nmode: enforce\ndefaults:\n  allow_classes: [read, write, transaction, session]\n"
               "  migrations: [status]\nrules:\n  - name: sevens\n    match: {identities: [agent-7]}\n"
               "    migrations: [status, plan, migrate_up, migrate_down, propose_migration]\n"
               "  - name: owners\n    match: {identities: [owner-1]}\n    migrator: true\n  - name: everyone\n");
    PgrailProcess proxy(setup.yaml("migrations: {dir: " + migrations + ", migrator: \"" + db.conninfo_for("app_owner") +
                                   "\"}\n"));
    const auto login = [&](const std::string& identity, const std::string& password) {
        auto conn = try_connect("host=127.0.0.1 port=" + std::to_string(proxy.port()) + " dbname=" + db.name +
                                " user=" + identity + " password='" + password + "' connect_timeout=10");
        INFO(PQerrorMessage(conn.get()));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        return conn;
    };
    auto seven = login("agent-7", "seven secret");
    auto eight = login("agent-8", "eight secret");
    Conn owner(PQconnectdb(db.conninfo_for("app_owner").c_str()));
    REQUIRE(PQstatus(owner.get()) == CONNECTION_OK);

    const auto up = run(seven.get(), "SELECT * FROM pgrail.migrate_up('1')");
    REQUIRE(up.size() == 1);
    INFO(up[0].message);
    REQUIRE(up[0].status == "PGRES_TUPLES_OK");
    CHECK(scalar(owner.get(), "SELECT applied_by FROM pgrail.schema_migrations WHERE version = '1'") == "agent-7");
    CHECK(scalar(owner.get(), "SELECT by FROM pgrail.migration_events WHERE version = '1' AND event = 'applied'") ==
          "agent-7");
    // The other identity of the same role is refused by the rule that matches identities.
    CHECK(run(eight.get(), "SELECT * FROM pgrail.migrate_down('1')").at(0).sqlstate == "42501");

    const auto down = run(seven.get(), "SELECT * FROM pgrail.migrate_down('1')");
    REQUIRE(down.size() == 1);
    INFO(down[0].message);
    REQUIRE(down[0].status == "PGRES_TUPLES_OK");
    CHECK(scalar(owner.get(), "SELECT by FROM pgrail.migration_events WHERE version = '1' AND event = "
                              "'rolled_back'") == "agent-7");

    const auto proposed = run(seven.get(), "SELECT * FROM pgrail.propose_migration('create_actor_b', 'CREATE TABLE "
                                           "auth_actor_b (id int)', 'DROP TABLE auth_actor_b')");
    REQUIRE(proposed.size() == 1);
    INFO(proposed[0].message);
    REQUIRE(proposed[0].status == "PGRES_TUPLES_OK");
    CHECK(scalar(owner.get(), "SELECT string_agg(proposed_by, ',') FROM pgrail.migration_proposals WHERE name = "
                              "'create_actor_b'") == "agent-7");
    CHECK(scalar(owner.get(), "SELECT string_agg(by, ',') FROM pgrail.migration_events WHERE name = "
                              "'create_actor_b' AND event = 'proposed'") == "agent-7");

    // The migrator's own run of the registered DDL, followed on the wire, is recorded as owner-1's.
    auto migrator = login("owner-1", "owner secret");
    const auto ddl = run(migrator.get(), "CREATE TABLE auth_actor_t (id int)");
    REQUIRE(ddl.size() == 1);
    INFO(ddl[0].message);
    REQUIRE(ddl[0].status == "PGRES_COMMAND_OK");
    CHECK(scalar(owner.get(), "SELECT applied_by FROM pgrail.schema_migrations WHERE version = '1'") == "owner-1");
    CHECK(scalar(owner.get(), "SELECT by FROM pgrail.migration_events WHERE version = '1' AND event = 'applied' "
                              "ORDER BY id DESC LIMIT 1") == "owner-1");

    // The runner's audit lines: the role as user, the identity beside it.
    std::vector<std::string> events;
    bool external = false;
    for (const auto& line : audit_lines(setup.audit)) {
        if (line.value("type", "") != "migration") continue;
        INFO(line.dump());
        if (line.value("external", false)) {
            external = true;
            CHECK(line.value("user", "") == "app_owner");
            CHECK(line.value("identity", "") == "owner-1");
            continue;
        }
        events.push_back(line.value("event", ""));
        CHECK(line.value("user", "") == "agent");
        CHECK(line.value("identity", "") == "agent-7");
    }
    for (const char* event : {"applied", "rolled_back", "proposed"})
        CHECK(std::find(events.begin(), events.end(), event) != events.end());
    CHECK(external);

    // `pgrail audit --summary` counts each identity's schema changes: agent-7's over SQL, owner-1's
    // forwarded DDL and the external run recorded from it.
    const auto [status, json] = pgrail_cli("audit " + setup.audit + " --summary --json 2>/dev/null");
    INFO(json);
    REQUIRE(status == 0);
    std::map<std::string, nlohmann::json> by_identity;
    const auto summary = nlohmann::json::parse(json);
    REQUIRE(summary.contains("identities"));
    for (const auto& entry : summary["identities"])
        by_identity[entry["identity"].get<std::string>()] = entry;
    for (const char* identity : {"agent-7", "agent-8", "owner-1"}) REQUIRE(by_identity.count(identity) == 1);
    for (const char* event : {"applied", "rolled_back", "proposed"})
        CHECK(by_identity["agent-7"]["events"].value(event, 0) == 1);
    CHECK(by_identity["agent-7"]["roles"] == nlohmann::json::array({"agent"}));
    CHECK(by_identity["owner-1"]["events"].value("schema_change_forwarded", 0) == 1);
    CHECK(by_identity["owner-1"]["events"].value("applied", 0) == 1);
    CHECK(by_identity["owner-1"]["roles"] == nlohmann::json::array({"app_owner"}));
    CHECK(by_identity["agent-8"]["refusals"] == 1);  // its refused migrate_down

    // Helper 68: revoked by reload while its migration runs, the identity's migration stops and
    // rolls back (as when its client leaves), instead of committing after the revocation.
    write_file(migrations + "/2_slow.up.sql", "SELECT pg_sleep(5);\nCREATE TABLE auth_revoked_t (id int);\n");
    write_file(migrations + "/2_slow.down.sql", "DROP TABLE auth_revoked_t;\n");
    REQUIRE(PQsendQuery(seven.get(), "SELECT * FROM pgrail.migrate_up('2')") == 1);
    REQUIRE(eventually(
        [&] {
            return scalar(owner.get(), "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(5)%'") ==
                   "1";
        },
        std::chrono::seconds(10)));
    remove_identity(setup.identities, "agent-7");
    proxy.reload();
    REQUIRE(eventually([&] { return audited(setup.audit, "identity_revoked", "agent-7"); }, std::chrono::seconds(10)));
    while (PGresult* result = PQgetResult(seven.get())) PQclear(result);  // (its end: FATAL 28000 or a closed socket)
    REQUIRE(eventually([&] { return scalar(owner.get(), "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                                                        "'SELECT pg_sleep(5)%'") == "0"; },
                       std::chrono::seconds(10)));
    CHECK(scalar(owner.get(), "SELECT count(*) FROM pg_class WHERE relname = 'auth_revoked_t'") == "0");
    CHECK(scalar(owner.get(), "SELECT count(*) FROM pgrail.schema_migrations WHERE version = '2'") == "0");
}

// PolicyGate's caches must never change a decision: a text allowed through the cache of
// shapes is one the exact analysis allows too, for every session.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "pgrail/policy/loader.hpp"
#include "pgrail/proxy/policy_gate.hpp"

using namespace pgrail;

namespace {

constexpr const char* policy_yaml = R"(version: 1
mode: enforce
defaults:
  read_only_tables: [public.ledger]
rules:
  - name: owner
    match: {users: app_owner}
    read_only_tables: []
  - name: agents
)";

proxy::SessionContext session_of(const std::string& user, std::uint64_t id) {
    proxy::SessionContext session;
    session.user = user;
    session.database = "app";
    session.client_address = "127.0.0.1";
    session.session_id = id;
    return session;
}

std::vector<std::string> lines_of(const std::filesystem::path& path) {
    std::ifstream file(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(file, line);) lines.push_back(line);
    return lines;
}

struct Fixture {
    explicit Fixture(std::size_t max_analyzed_size = 4u << 20)
        : gate(policy::load_policy_string(policy_yaml, "test.yaml"),
               std::make_shared<audit::AuditLog>(audit_path.string(), audit::FsyncMode::never), true,
               max_analyzed_size) {}
    ~Fixture() { std::filesystem::remove(audit_path); }
    std::filesystem::path audit_path =
        std::filesystem::temp_directory_path() / ("pgrail-gate-test-" + std::to_string(::getpid()) + ".jsonl");
    proxy::PolicyGate gate;
};

}  // namespace

TEST_CASE("a shape allowed for one session is decided afresh for another", "[proxy][gate][shape]") {
    Fixture fixture;
    const auto owner = session_of("app_owner", 1);
    const auto agent = session_of("agent", 2);
    using Kind = proxy::GateVerdict::Kind;

    // The owner may write the ledger: the shape is now known and its analysis shared.
    CHECK(fixture.gate.check(owner, "UPDATE ledger SET amount = 1 WHERE id = 1").kind ==
          Kind::forward);
    CHECK(fixture.gate.check(owner, "UPDATE ledger SET amount = 2 WHERE id = 7").kind ==
          Kind::forward);
    // The agent may not, whatever the values; each refusal is audited with the agent's own text.
    CHECK(fixture.gate.check(agent, "UPDATE ledger SET amount = 3 WHERE id = 8").kind ==
          Kind::refuse);
    const std::string refused = "SELECT 1; UPDATE ledger SET amount = 300 WHERE id = 42";
    const auto verdict = fixture.gate.check(agent, refused);
    REQUIRE(verdict.kind == Kind::refuse);
    CHECK(verdict.refused_offset == refused.find("UPDATE"));
    const auto verdict_again = fixture.gate.check(agent, "SELECT 2; UPDATE ledger SET amount = 5 WHERE id = 4");
    CHECK(verdict_again.kind == Kind::refuse);
    CHECK(verdict_again.refused_offset == std::string("SELECT 2; ").size());
    const auto lines = lines_of(fixture.audit_path);
    REQUIRE(lines.size() == 3);
    for (const auto& line : lines) {
        CHECK(line.find("\"session_id\":2") != std::string::npos);
        CHECK(line.find("UPDATE ledger SET amount = $1 WHERE id = $2") != std::string::npos);
    }
    // Reads of other shapes stay allowed for both.
    CHECK(fixture.gate.check(agent, "SELECT * FROM ledger WHERE id = 9").kind ==
          Kind::forward);
}

TEST_CASE("statements whose meaning is in a literal never share a shape's analysis", "[proxy][gate][shape]") {
    Fixture fixture;
    const auto agent = session_of("agent", 3);
    using Kind = proxy::GateVerdict::Kind;
    // set_config names its setting in a literal: the first is fine, the second is refused.
    CHECK(fixture.gate.check(agent, "SELECT set_config('work_mem', '8MB', false)").kind ==
          Kind::forward);
    CHECK(fixture.gate.check(agent, "SELECT set_config('role', 'postgres', false)").kind ==
          Kind::refuse);
    // A pgrail command's arguments are literals: each call is read from its own text.
    const auto first = fixture.gate.check(agent, "SELECT * FROM pgrail.plan('1')");
    const auto second = fixture.gate.check(agent, "SELECT * FROM pgrail.plan('2')");
    REQUIRE(first.kind == Kind::intercept);
    REQUIRE(second.kind == Kind::intercept);
    REQUIRE(first.calls.size() == 1);
    REQUIRE(second.calls.size() == 1);
    CHECK(first.calls[0].arguments == std::vector<std::string>{"1"});
    CHECK(second.calls[0].arguments == std::vector<std::string>{"2"});
}

// A built-in's query string is a literal: one that holds no statement (the server refuses it as it
// runs it) must not stand for the shape, which also fits a query that takes pgrail's lock or
// changes a protected setting (found by review: both ran with the lock and the role taken).
TEST_CASE("an empty query string never shares its shape with a query that runs", "[proxy][gate][shape]") {
    Fixture fixture;
    const auto agent = session_of("agent", 4);
    using Kind = proxy::GateVerdict::Kind;
    for (const std::string function : {"query_to_xml(", "query_to_xmlschema(", "query_to_xml_and_xmlschema("}) {
        INFO(function);
        CHECK(fixture.gate.check(agent, "SELECT " + function + "'', true, true, '')").kind == Kind::forward);
        CHECK(fixture.gate.check(agent, "SELECT " + function + "'SELECT pg_advisory_lock(8099568217555234151)', true, "
                                        "true, '')").kind == Kind::refuse);
        CHECK(fixture.gate.check(agent, "SELECT " + function + "'SELECT set_config(''role'', ''postgres'', false)', "
                                        "true, true, '')").kind == Kind::refuse);
    }
    CHECK(fixture.gate.check(agent, "SELECT ts_stat(' ; ')").kind == Kind::forward);
    CHECK(fixture.gate.check(agent, "SELECT ts_stat('SELECT set_config(''role'', ''postgres'', false)')").kind ==
          Kind::refuse);
}

TEST_CASE("a text longer than max_analyzed_size is refused unread, as a limit, and audited", "[proxy][gate]") {
    Fixture fixture(2048);
    auto& gate = fixture.gate;
    const auto agent = session_of("agent", 4);
    const std::string in_list = "SELECT * FROM ledger WHERE id IN (1" + std::string(2100, ' ') + ")";
    CHECK(gate.check_here(agent, in_list).has_value());  // decided on the I/O thread: no analysis to wait for
    const auto misses = gate.cache().misses();
    const auto verdict = gate.check(agent, in_list);
    CHECK(gate.cache().misses() == misses);  // and none ran
    REQUIRE(verdict.kind == proxy::GateVerdict::Kind::refuse);
    CHECK(verdict.error.sqlstate == "54000");
    CHECK_THAT(verdict.error.message, Catch::Contains("2136 bytes") && Catch::Contains("max_analyzed_size: 2048"));
    const auto lines = lines_of(fixture.audit_path);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("\"guard\":\"on_parse_error\"") != std::string::npos);
    CHECK(lines[0].find("\"statement_bytes\":2136") != std::string::npos);
    // At the limit the text is analysed as usual.
    const std::string at_limit = "SELECT * FROM ledger WHERE id IN (1" + std::string(2048 - 36, ' ') + ")";
    REQUIRE(at_limit.size() == 2048);
    CHECK(gate.check(agent, at_limit).kind == proxy::GateVerdict::Kind::forward);
}

TEST_CASE("text that does not parse is refused whole, its audit line names the statement that failed",
          "[proxy][gate]") {
    Fixture fixture;
    const auto agent = session_of("agent", 5);
    // PostgreSQL parses a whole Query before it runs any of it: nothing of this runs.
    const auto verdict = fixture.gate.check(agent, "SELECT 1; SELEC 2");
    REQUIRE(verdict.kind == proxy::GateVerdict::Kind::refuse);
    CHECK(verdict.refused_offset == 0);
    CHECK(verdict.error.sqlstate == "42601");
    const auto lines = lines_of(fixture.audit_path);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("\"statement_bytes\":7") != std::string::npos);  // "SELEC 2", not "SELECT 1"
}

TEST_CASE("with literals redacted, a parse error's audit line does not quote the text", "[proxy][gate]") {
    Fixture fixture;
    const auto agent = session_of("agent", 6);
    // PostgreSQL's message quotes the text from where the scanner failed: here, a literal.
    const auto verdict = fixture.gate.check(agent, "SELECT 'secret value");
    REQUIRE(verdict.kind == proxy::GateVerdict::Kind::refuse);
    CHECK_THAT(verdict.error.message, Catch::Contains("secret"));  // the client sees its own text
    const auto lines = lines_of(fixture.audit_path);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("secret") == std::string::npos);
    CHECK(lines[0].find("\"parse_error\":\"unterminated quoted string\"") != std::string::npos);
}

// Every spelling that changes client_encoding marks its verdict, so that the session reads the
// texts behind it as if the encoding were unknown until the server answers (GateVerdict::
// changes_encoding); allowed or refused, as what runs before a refusal runs.
TEST_CASE("every way to change client_encoding marks the verdict", "[proxy][gate][encoding]") {
    Fixture fixture;
    const auto owner = session_of("app_owner", 1);
    for (const char* sql : {"SET client_encoding TO 'LATIN1'", "SET NAMES 'LATIN1'", "set Client_Encoding = latin1",
                            "SET SESSION client_encoding TO 'LATIN1'", "SET LOCAL client_encoding TO 'LATIN1'",
                            "RESET client_encoding", "SET client_encoding TO DEFAULT", "RESET ALL", "DISCARD ALL",
                            "SELECT set_config('CLIENT_ENCODING', 'LATIN1', false)",
                            "SELECT pg_catalog.set_config('client_encoding', 'LATIN1', true)",
                            "SELECT set_config(current_setting('application_name'), 'LATIN1', false)",
                            "SELECT 1; SET client_encoding TO 'LATIN1'",
                            "DO $$BEGIN SET client_encoding TO 'LATIN1'; END$$",
                            "DO $$BEGIN PERFORM set_config('client_encoding', 'LATIN1', false); END$$",
                            "EXPLAIN ANALYZE SELECT set_config('client_encoding', 'LATIN1', false)"}) {
        INFO(sql);
        CHECK(fixture.gate.check(owner, sql).changes_encoding);
    }
    for (const char* sql : {"SELECT 1", "SET search_path TO public", "SHOW client_encoding",
                            "SELECT current_setting('client_encoding')", "DISCARD PLANS",
                            "SELECT 'SET client_encoding TO LATIN1'"}) {
        INFO(sql);
        CHECK_FALSE(fixture.gate.check(owner, sql).changes_encoding);
    }
}

// The policy on the wire: refusals look and behave exactly like PostgreSQL errors, every
// refusal is audited before the client sees it, and SIGHUP swaps the policy safely.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"

using namespace pgrail::test;

namespace {

// A pgrail with the shipped default policy and a synchronous audit file.
struct EnforcingProxy {
    std::string audit_path;
    PgrailProcess process;
    explicit EnforcingProxy(const std::string& policy_file = source_dir() + "/policies/default.yaml",
                            const std::string& extra = "")
        : audit_path(PgrailProcess::make_temp_dir() + "/audit.jsonl"),
          process("policy: " + policy_file + "\naudit: {file: " + audit_path + ", fsync: always}\n" + extra) {}

    [[nodiscard]] Conn connect(const std::string& user = "agent") const {
        Conn conn(PQconnectdb(process.conninfo(user).c_str()));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        return conn;
    }
    [[nodiscard]] std::vector<nlohmann::json> audit_lines() const {
        std::vector<nlohmann::json> lines;
        std::ifstream in(audit_path);
        for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
        return lines;
    }
};

// The shipped default policy with one piece of text replaced, written to a file of its own.
std::string default_policy_with(std::string_view from, std::string_view to) {
    auto policy = read_file(source_dir() + "/policies/default.yaml");
    const auto at = policy.find(from);
    REQUIRE(at != std::string::npos);
    policy.replace(at, from.size(), to);
    const auto path = PgrailProcess::make_temp_dir() + "/policy.yaml";
    write_file(path, policy);
    return path;
}

// A pgrail enforcing a copy of the shipped default policy that the test rewrites and reloads.
struct ReloadableProxy {
    std::string path = PgrailProcess::make_temp_dir() + "/policy.yaml";
    std::string shipped = read_file(source_dir() + "/policies/default.yaml");
    EnforcingProxy proxy{(write_file(path, shipped), path)};

    // Writes `policy` and sends SIGHUP; waits until the log says the reload was `outcome`.
    void reload(const std::string& policy, const std::string& outcome, std::size_t times = 1) {
        write_file(path, policy);
        proxy.process.reload();
        REQUIRE(eventually([&] { return count_occurrences(proxy.process.log(), outcome) >= times; },
                           std::chrono::seconds(5)));
    }
};

void reset_table() {
    auto conn = admin();
    (void)run(conn.get(), "DROP TABLE IF EXISTS enforce_items; CREATE TABLE enforce_items (id int, v text);"
                    "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON enforce_items TO agent, app_owner");
}

std::string row_count(PGconn* conn) { return scalar(conn, "SELECT count(*) FROM enforce_items"); }

// What the client observes of a sequence of results, minus the error's text.
std::vector<std::string> shape(const std::vector<Outcome>& outcomes) {
    std::vector<std::string> out;
    for (const auto& outcome : outcomes) out.push_back(outcome.status + "/" + outcome.command);
    return out;
}

// set_config(text, text, boolean)'s OID, for fast-path calls.
int set_config_oid() {
    auto conn = admin();
    return std::stoi(scalar(conn.get(), "SELECT 'set_config(text,text,boolean)'::regprocedure::oid"));
}

// set_config('default_transaction_read_only', 'off', false) by OID, as libpq's PQfn sends it.
Result fast_path_set_config(PGconn* conn, int oid) {
    const char* name = "default_transaction_read_only";
    const char* value = "off";
    const char is_local = 0;  // a bool travels as one byte, not as an int
    PQArgBlock args[3];
    args[0].len = static_cast<int>(std::strlen(name));
    args[0].isint = 0;
    args[0].u.ptr = const_cast<int*>(reinterpret_cast<const int*>(name));
    args[1].len = static_cast<int>(std::strlen(value));
    args[1].isint = 0;
    args[1].u.ptr = const_cast<int*>(reinterpret_cast<const int*>(value));
    args[2].len = 1;
    args[2].isint = 0;
    args[2].u.ptr = const_cast<int*>(reinterpret_cast<const int*>(&is_local));
    char result_buffer[256];
    int result_length = 0;
    return Result(PQfn(conn, oid, reinterpret_cast<int*>(result_buffer), &result_length, 0, args, 3));
}

}  // namespace

TEST_CASE("a refused statement is an ordinary PostgreSQL error with DETAIL and HINT", "[policy]") {
    reset_table();
    EnforcingProxy proxy;
    auto conn = proxy.connect();
    Result result(PQexec(conn.get(), "ALTER TABLE enforce_items ADD COLUMN secret text"));
    REQUIRE(PQresultStatus(result.get()) == PGRES_FATAL_ERROR);
    CHECK(std::string(PQresultErrorField(result.get(), PG_DIAG_SQLSTATE)) == "42501");
    CHECK(std::string(PQresultErrorField(result.get(), PG_DIAG_SEVERITY_NONLOCALIZED)) == "ERROR");
    CHECK_THAT(PQresultErrorField(result.get(), PG_DIAG_MESSAGE_PRIMARY), Catch::StartsWith("pgrail: "));
    CHECK_THAT(PQresultErrorField(result.get(), PG_DIAG_MESSAGE_DETAIL), Catch::Contains("ALTER TABLE") &&
                                                                          Catch::Contains("enforce_items"));
    CHECK_THAT(PQresultErrorField(result.get(), PG_DIAG_MESSAGE_HINT), Catch::Contains("pgrail.migrate_up"));
    CHECK(PQtransactionStatus(conn.get()) == PQTRANS_IDLE);
    CHECK(scalar(conn.get(), "SELECT 41 + 1") == "42");  // the session goes on

    // The column was never added.
    auto direct = admin();
    CHECK(scalar(direct.get(), "SELECT count(*) FROM information_schema.columns WHERE table_name = 'enforce_items' "
                               "AND column_name = 'secret'") == "0");
}

TEST_CASE("the server's log says that pgrail refused a statement, and why", "[policy]") {
    reset_table();
    EnforcingProxy proxy;
    auto conn = proxy.connect();
    // A quote, a backslash and a non-ASCII byte in the names the reason carries stay out of the stand-in.
    Result simple(PQexec(conn.get(), "DROP TABLE enforce_items, \"it's\\\xc3\xa9\""));
    REQUIRE(std::string(PQresultErrorField(simple.get(), PG_DIAG_SQLSTATE)) == "42501");
    Result parsed(PQprepare(conn.get(), "", "TRUNCATE enforce_items", 0, nullptr));
    REQUIRE(std::string(PQresultErrorField(parsed.get(), PG_DIAG_SQLSTATE)) == "42501");
    const auto log_has = [](const std::string& text) {
        return eventually([&] { return read_file(Cluster::get().pg_log).find(text) != std::string::npos; },
                          std::chrono::seconds(5));
    };
    CHECK(log_has("invalid input syntax for type integer: \"pgrail: rule \"agents\" (ddl: migrations_only) refused "
                  "DROP TABLE on enforce_items, it?s???; "));
    CHECK(log_has("invalid input syntax for type integer: \"pgrail: rule \"agents\" (allow_truncate: false) "
                  "refused TRUNCATE TABLE on enforce_items; "));
}

TEST_CASE("a refused statement in a multi-statement Query behaves like a failing one", "[policy]") {
    reset_table();
    EnforcingProxy proxy;
    auto through = proxy.connect();
    auto direct = connect(Route::direct);
    const auto refused = run(through.get(), "INSERT INTO enforce_items VALUES (1); DROP TABLE enforce_items; "
                                            "INSERT INTO enforce_items VALUES (2)");
    const auto failed = run(direct.get(), "INSERT INTO enforce_items VALUES (1); SELECT no_such_function(); "
                                          "INSERT INTO enforce_items VALUES (2)");
    CHECK(shape(refused) == shape(failed));
    REQUIRE_FALSE(refused.empty());
    CHECK(refused.back().sqlstate == "42501");
    CHECK(row_count(through.get()) == "0");  // the implicit transaction was rolled back, as on the server
    CHECK(PQtransactionStatus(through.get()) == PQtransactionStatus(direct.get()));
}

TEST_CASE("a refusal inside a transaction block fails the transaction, as PostgreSQL does", "[policy]") {
    reset_table();
    EnforcingProxy proxy;
    auto through = proxy.connect();
    auto direct = connect(Route::direct);
    for (auto* conn : {through.get(), direct.get()}) {
        const bool proxied = conn == through.get();
        INFO((proxied ? "through pgrail" : "direct"));
        CHECK(run(conn, "BEGIN").at(0).command == "BEGIN");
        CHECK(run(conn, "INSERT INTO enforce_items VALUES (1)").at(0).command == "INSERT 0 1");
        const auto error = run(conn, proxied ? "CREATE INDEX ON enforce_items (id)" : "SELECT no_such_function()");
        CHECK(error.at(0).status == "PGRES_FATAL_ERROR");
        CHECK(PQtransactionStatus(conn) == PQTRANS_INERROR);
        CHECK(run(conn, "SELECT 1").at(0).sqlstate == "25P02");
        CHECK(run(conn, "COMMIT").at(0).command == "ROLLBACK");
        CHECK(PQtransactionStatus(conn) == PQTRANS_IDLE);
        CHECK(row_count(conn) == "0");
    }
}

TEST_CASE("a refusal in an extended-protocol pipeline discards up to Sync like a failing Parse", "[policy]") {
    reset_table();
    EnforcingProxy proxy;
    auto through = proxy.connect();
    auto direct = connect(Route::direct);
    auto pipeline = [](PGconn* conn, const char* middle) {
        REQUIRE(PQenterPipelineMode(conn) == 1);
        const char* value = "7";
        REQUIRE(PQsendQueryParams(conn, "INSERT INTO enforce_items VALUES ($1::int)", 1, nullptr, &value, nullptr,
                                  nullptr, 0) == 1);
        REQUIRE(PQsendQueryParams(conn, middle, 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
        REQUIRE(PQsendQueryParams(conn, "SELECT count(*) FROM enforce_items", 0, nullptr, nullptr, nullptr, nullptr,
                                  0) == 1);
        REQUIRE(PQpipelineSync(conn) == 1);
        REQUIRE(PQsendQueryParams(conn, "SELECT 'after sync'", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
        REQUIRE(PQpipelineSync(conn) == 1);
        std::vector<std::string> seen;
        int syncs = 0;
        while (syncs < 2) {
            Result result(PQgetResult(conn));
            if (!result) continue;
            const auto status = PQresultStatus(result.get());
            std::string entry = PQresStatus(status);
            if (status == PGRES_FATAL_ERROR) entry += ":" + std::string(PQresultErrorField(result.get(), PG_DIAG_SQLSTATE)).substr(0, 2);
            if (status == PGRES_TUPLES_OK) entry += ":" + std::string(PQgetvalue(result.get(), 0, 0));
            if (status == PGRES_PIPELINE_SYNC) ++syncs;
            seen.push_back(entry);
        }
        REQUIRE(PQexitPipelineMode(conn) == 1);
        return seen;
    };
    const auto refused = pipeline(through.get(), "DROP TABLE enforce_items");
    const auto failed = pipeline(direct.get(), "SELECT no_such_function()");
    // Same message flow; only the SQLSTATE class differs (42 either way: 42501 vs 42883).
    CHECK(refused == failed);
    CHECK(row_count(through.get()) == "0");  // the pipelined INSERT was rolled back with the implicit transaction
}

TEST_CASE("statements inside PREPARE and EXPLAIN ANALYZE are enforced, and so is Parse", "[policy]") {
    reset_table();
    EnforcingProxy proxy;
    auto conn = proxy.connect();
    CHECK(run(conn.get(), "PREPARE wipe AS DELETE FROM enforce_items").at(0).sqlstate == "42501");
    CHECK(run(conn.get(), "EXPLAIN ANALYZE DELETE FROM enforce_items").at(0).sqlstate == "42501");
    CHECK(run(conn.get(), "EXPLAIN DELETE FROM enforce_items WHERE id = 1").at(0).status == "PGRES_TUPLES_OK");
    Result prepared(PQprepare(conn.get(), "ddl", "DROP TABLE enforce_items", 0, nullptr));
    CHECK(std::string(PQresultErrorField(prepared.get(), PG_DIAG_SQLSTATE)) == "42501");
    // The statement was never prepared on the server, exactly as after a failed Parse.
    Result executed(PQexecPrepared(conn.get(), "ddl", 0, nullptr, nullptr, nullptr, 0));
    CHECK(std::string(PQresultErrorField(executed.get(), PG_DIAG_SQLSTATE)) == "26000");
}

TEST_CASE("every refusal is audited before the answer, with literals redacted", "[policy][audit]") {
    reset_table();
    EnforcingProxy proxy;
    auto conn = proxy.connect();
    CHECK(run(conn.get(), "UPDATE enforce_items SET v = 'hunter2-secret'").at(0).sqlstate == "42501");
    // The line is on disk by the time the client has its error: no waiting here.
    const auto lines = proxy.audit_lines();
    REQUIRE(lines.size() == 1);
    const auto& line = lines[0];
    CHECK(line["event"] == "statement_refused");
    CHECK(line["user"] == "agent");
    CHECK(line["database"] == Cluster::get().database);
    CHECK(line["tag"] == "UPDATE");
    CHECK(line["class"] == "write");
    CHECK(line["rule"] == "agents");
    CHECK(line["guard"] == "require_where");
    CHECK(line["sqlstate"] == "42501");
    CHECK(line["decision"] == "deny");
    CHECK(line["objects"][0]["name"] == "enforce_items");
    CHECK(line["statement"] == "UPDATE enforce_items SET v = $1");
    CHECK_THAT(line["time"].get<std::string>(), Catch::Matches(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)"));
    CHECK(read_file(proxy.audit_path).find("hunter2") == std::string::npos);
    CHECK(proxy.process.log().find("hunter2") == std::string::npos);
}

TEST_CASE("audit_only forwards everything and records what would have been refused", "[policy][audit]") {
    reset_table();
    EnforcingProxy proxy(default_policy_with("mode: enforce", "mode: audit_only"));
    auto conn = proxy.connect();
    CHECK(run(conn.get(), "INSERT INTO enforce_items VALUES (1), (2)").at(0).command == "INSERT 0 2");
    CHECK(run(conn.get(), "DELETE FROM enforce_items").at(0).command == "DELETE 2");
    // A fast-path call, which enforce mode refuses, is forwarded and recorded.
    const auto called = fast_path_set_config(conn.get(), set_config_oid());
    CHECK(PQresultStatus(called.get()) == PGRES_COMMAND_OK);
    const auto lines = proxy.audit_lines();
    REQUIRE(lines.size() == 2);
    CHECK(lines[0]["event"] == "statement_would_be_refused");
    CHECK(lines[0]["guard"] == "require_where");
    CHECK(lines[1]["event"] == "statement_would_be_refused");
    CHECK(lines[1]["guard"] == "function_call");
}

TEST_CASE("SIGHUP swaps the policy for new statements without dropping sessions", "[policy][reload]") {
    reset_table();
    ReloadableProxy reloadable;
    const auto& strict = reloadable.shipped;
    auto conn = reloadable.proxy.connect();
    CHECK(run(conn.get(), "TRUNCATE enforce_items").at(0).sqlstate == "42501");

    // A broken policy is refused with file:line:column; the old one stays in force.
    reloadable.reload(strict + "\nbogus_key: 1\n", "policy reload refused");
    CHECK_THAT(reloadable.proxy.process.log(), Catch::Contains(reloadable.path + ":") && Catch::Contains("bogus_key"));
    CHECK(run(conn.get(), "TRUNCATE enforce_items").at(0).sqlstate == "42501");

    // A valid new policy takes effect for the next statement on the same session.
    auto relaxed = strict;
    relaxed.replace(relaxed.find("allow_truncate: false"), std::string("allow_truncate: false").size(),
                    "allow_truncate: true");
    reloadable.reload(relaxed, "reloaded");
    CHECK(PQstatus(conn.get()) == CONNECTION_OK);
    CHECK(run(conn.get(), "TRUNCATE enforce_items").at(0).command == "TRUNCATE TABLE");
    CHECK(scalar(conn.get(), "SELECT 1") == "1");
}

TEST_CASE("a reload that changes a session's rule ends it if it holds what the old rule checked",
          "[policy][reload]") {
    // Helper 77: a statement prepared (PREPARE, or Parse) or a cursor declared under the old rule
    // ran after a reload that refused it: EXECUTE, FETCH and Bind are not checked again.
    reset_table();
    ReloadableProxy reloadable;
    auto& proxy = reloadable.proxy;
    auto prepared = proxy.connect();        // PREPARE
    auto parsed = proxy.connect();          // Parse of a named statement
    auto cursor = proxy.connect();          // a cursor WITH HOLD
    auto pathed = proxy.connect();          // a search_path set (helper 78: it outlived the reload)
    auto copying = proxy.connect();         // a COPY FROM STDIN under way (helper 79)
    auto plain = proxy.connect();           // simple queries only: kept
    auto owner = proxy.connect("app_owner");  // another rule, unchanged: kept, prepared or not
    REQUIRE(run(prepared.get(), "INSERT INTO enforce_items VALUES (1, 'a'), (2, 'b'); "
                                "PREPARE wipe AS DELETE FROM enforce_items WHERE id > 0")
                .at(1).command == "PREPARE");
    Result parse(PQprepare(parsed.get(), "wipe", "DELETE FROM enforce_items WHERE id > 0", 0, nullptr));
    REQUIRE(PQresultStatus(parse.get()) == PGRES_COMMAND_OK);
    REQUIRE(run(cursor.get(), "DECLARE c CURSOR WITH HOLD FOR SELECT id FROM enforce_items").at(0).command ==
            "DECLARE CURSOR");
    REQUIRE(run(owner.get(), "PREPARE look AS SELECT count(*) FROM enforce_items").at(0).command == "PREPARE");
    REQUIRE(run(pathed.get(), "SET search_path = public").at(0).command == "SET");
    // Refused texts ran nothing (helper 81: they marked the session): it stays.
    REQUIRE(run(plain.get(), "ALTER TABLE enforce_items ADD COLUMN z int").at(0).sqlstate == "42501");
    REQUIRE(run(plain.get(), "SELEC 1").at(0).sqlstate == "42601");
    Result copy(PQexec(copying.get(), "COPY enforce_items (id, v) FROM STDIN"));
    REQUIRE(PQresultStatus(copy.get()) == PGRES_COPY_IN);
    REQUIRE(PQputCopyData(copying.get(), "7\tbefore\n", 9) == 1);
    REQUIRE(PQflush(copying.get()) == 0);

    // The agents' rule now keeps enforce_items read-only; the owner's is as it was.
    auto strict = reloadable.shipped;
    const std::string agents = "  - name: agents\n";
    REQUIRE(strict.find(agents) != std::string::npos);
    strict.insert(strict.find(agents) + agents.size(), "    read_only_tables: [enforce_items]\n");
    reloadable.reload(strict, "reloaded");

    for (auto* conn : {prepared.get(), cursor.get(), pathed.get()}) {
        const auto ended =
            run(conn, conn == prepared.get() ? "EXECUTE wipe" : conn == cursor.get() ? "FETCH ALL c" : "SELECT 1").at(0);
        CHECK(ended.sqlstate == "57P01");
        CHECK_THAT(ended.message, Catch::Contains("policy was reloaded"));
        CHECK(PQstatus(conn) == CONNECTION_BAD);
    }
    REQUIRE(PQputCopyData(copying.get(), "8\tafter\n", 8) == 1);
    REQUIRE(PQputCopyEnd(copying.get(), nullptr) == 1);
    Result copied(PQgetResult(copying.get()));
    CHECK(PQresultStatus(copied.get()) == PGRES_FATAL_ERROR);
    Result executed(PQexecPrepared(parsed.get(), "wipe", 0, nullptr, nullptr, nullptr, 0));
    CHECK(PQresultStatus(executed.get()) == PGRES_FATAL_ERROR);
    CHECK(PQstatus(parsed.get()) == CONNECTION_BAD);
    CHECK(row_count(owner.get()) == "2");  // nothing of the old rule's ran

    // A session that holds nothing the old rule checked follows the new one at once.
    CHECK(run(plain.get(), "DELETE FROM enforce_items WHERE id > 0").at(0).sqlstate == "42501");
    CHECK(PQstatus(plain.get()) == CONNECTION_OK);
    CHECK(scalar(owner.get(), "EXECUTE look") == "2");
    CHECK(PQstatus(owner.get()) == CONNECTION_OK);
    // Each session the reload ended is on record (review 100: in pgrail's log only).
    std::size_t ended = 0;
    for (const auto& line : proxy.audit_lines()) ended += line.value("event", "") == "session_ended";
    CHECK(ended == 5);
}

TEST_CASE("a burst of 10,000 refusals from 20 sessions gives exactly 10,000 audit lines", "[policy][audit]") {
    reset_table();
    EnforcingProxy proxy;
    constexpr int sessions = 20;
    constexpr int per_session = 500;
    std::vector<std::thread> threads;
    std::atomic<int> refused{0};
    for (int s = 0; s < sessions; ++s) {
        threads.emplace_back([&, s] {
            Conn conn(PQconnectdb(proxy.process.conninfo().c_str()));
            if (PQstatus(conn.get()) != CONNECTION_OK) return;
            for (int i = 0; i < per_session; ++i) {
                const auto sql = "DELETE FROM enforce_items -- session " + std::to_string(s) + " #" + std::to_string(i);
                Result result(PQexec(conn.get(), sql.c_str()));
                const char* state = PQresultErrorField(result.get(), PG_DIAG_SQLSTATE);
                if (state != nullptr && std::string(state) == "42501") ++refused;
            }
        });
    }
    for (auto& thread : threads) thread.join();
    CHECK(refused == sessions * per_session);
    const auto lines = proxy.audit_lines();  // every line parses as JSON, or this throws
    CHECK(lines.size() == static_cast<std::size_t>(sessions * per_session));
}

TEST_CASE("replication connections are refused at startup", "[policy]") {
    EnforcingProxy proxy;
    Conn conn(PQconnectdb((proxy.process.conninfo() + " replication=database").c_str()));
    CHECK(PQstatus(conn.get()) == CONNECTION_BAD);
    CHECK_THAT(PQerrorMessage(conn.get()), Catch::Contains("pgrail"));
    const auto lines = proxy.audit_lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0]["event"] == "connection_refused");
}

// Found by review 84: with no bound, one agent opened connections until the server had none
// left (53300 "remaining connection slots are reserved"), and the owner could not log in at all.
TEST_CASE("a rule's max_connections bounds its sessions at once; other rules still get in", "[policy]") {
    EnforcingProxy proxy(default_policy_with("    max_connections: 50\n", "    max_connections: 2\n"));
    auto first = proxy.connect();
    auto second = proxy.connect();
    {
        Conn third(PQconnectdb(proxy.process.conninfo("agent").c_str()));
        REQUIRE(PQstatus(third.get()) == CONNECTION_BAD);
        const std::string message = PQerrorMessage(third.get());
        INFO(message);
        CHECK(message.find("pgrail: too many connections for this login's rule (2 at once)") != std::string::npos);
        // With the way on (a FATAL has its DETAIL and HINT too); refused before the server
        // authenticated the client, it names no rule (the audit line does).
        CHECK(message.find("DETAIL:  pgrail checks the startup packet") != std::string::npos);
        CHECK(message.find("HINT:  Reuse one connection") != std::string::npos);
    }
    // Another rule's login is not counted with the agents'. The third took no server connection:
    // the rule's places were all sessions'.
    auto owner = proxy.connect("app_owner");
    std::string agents;
    for (int attempt = 0; attempt < 100 && (agents = scalar(owner.get(), "SELECT count(*) FROM pg_stat_activity "
                                                                          "WHERE usename = 'agent'")) != "2";
         ++attempt)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(agents == "2");

    const auto lines = proxy.audit_lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0]["event"] == "connection_refused");
    CHECK(lines[0]["guard"] == "max_connections");
    CHECK(lines[0]["sqlstate"] == "53300");
    CHECK(lines[0]["authenticated"] == false);
    // A session that ends gives its place back. Clients that claim the rule's user but never log in
    // hold a server connection each while they do: they count among the rule's places (review 93:
    // 100 of them took every server connection, the owner's too), but each gives way to the next
    // login when the rule is full (review 87: else anyone could keep the rule's own users out).
    second.reset();
    std::vector<std::unique_ptr<RawSocket>> unauthenticated;
    for (int i = 0; i < 3; ++i) {
        // (The ended session gives its place back once pgrail has seen it go: until then the first
        // is refused, 53300, the rule's places all sessions'.)
        std::string first_byte;
        for (int attempt = 0; attempt < 100 && first_byte != "R"; ++attempt) {
            if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
            unauthenticated.push_back(std::make_unique<RawSocket>(proxy.process.port()));
            unauthenticated.back()->send(
                startup_packet(0x00030000, {{"user", "agent"}, {"database", Cluster::get().database}}));
            first_byte = unauthenticated.back()->read_exactly(1);
            if (first_byte != "R") unauthenticated.pop_back();
        }
        CHECK(first_byte == "R");  // asked for a password, which never comes
    }
    for (int attempt = 0; attempt < 100; ++attempt) {
        Conn again(PQconnectdb(proxy.process.conninfo("agent").c_str()));
        if (PQstatus(again.get()) == CONNECTION_OK) {
            CHECK(scalar(again.get(), "SELECT 1") == "1");
            // Of the three, each gave way to the next, the last to this login: all ended.
            for (auto& socket : unauthenticated) {
                const auto farewell = socket->read_until_close(std::chrono::seconds(5));
                CHECK(socket->eof());
                CHECK(farewell.find("53300") != std::string::npos);
            }
            // The rule full of authenticated sessions: a login is refused before the server is
            // asked (no server connection taken for it).
            Conn refused(PQconnectdb(proxy.process.conninfo("agent").c_str()));
            CHECK(PQstatus(refused.get()) == CONNECTION_BAD);
            CHECK_THAT(std::string(PQerrorMessage(refused.get())), Catch::Contains("too many connections"));
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL("the place of the session that ended was not given back");
}

// Review 89: the server's default search_path begins with "$user": for role agent, an unqualified
// name resolves into a schema named agent first. Protected, that schema took an agent's plain
// INSERT with no setting at all. Checked against the server's own resolution and the table.
TEST_CASE("a protected schema named like the role takes none of its unqualified writes", "[policy]") {
    auto admin_conn = admin();
    run(admin_conn.get(), "DROP SCHEMA IF EXISTS agent CASCADE; CREATE SCHEMA agent; CREATE TABLE agent.notes (n int); "
                          "CREATE TABLE public.notes (n int); GRANT USAGE ON SCHEMA agent TO agent; "
                          "GRANT ALL ON agent.notes, public.notes TO agent");
    const AdminAtExit drop_after("DROP SCHEMA IF EXISTS agent CASCADE; DROP TABLE IF EXISTS public.notes");
    EnforcingProxy proxy(default_policy_with("    max_connections: 50\n",
                                             "    max_connections: 50\n    protected_schemas: [agent]\n"));
    auto agent = proxy.connect();
    // The server would write agent.notes: the name resolves there.
    CHECK(scalar(agent.get(), "SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = 'notes'::regclass") ==
          "agent");
    for (const char* write : {"INSERT INTO notes VALUES (1)", "SET search_path = \"$user\", public"}) {
        INFO(write);
        const auto refused = run(agent.get(), write).at(0);
        CHECK(refused.sqlstate == "42501");
        CHECK_THAT(refused.message, Catch::Contains("protected schema agent"));
    }
    CHECK(run(agent.get(), "INSERT INTO public.notes VALUES (2)").at(0).status == "PGRES_COMMAND_OK");
    CHECK(scalar(admin_conn.get(), "SELECT count(*) FROM agent.notes") == "0");
    CHECK(scalar(admin_conn.get(), "SELECT count(*) FROM public.notes") == "1");
}

TEST_CASE("a startup packet that names a key twice is refused, in pgrail's words, and audited", "[policy]") {
    // PostgreSQL would take the last user, pgrail's rule the first: the packet is refused instead.
    EnforcingProxy proxy;
    RawSocket raw(proxy.process.port());
    std::string packet = be32(0) + be32(196608);
    for (const auto& [key, value] : {std::pair{"user", "agent"}, {"database", "app"}, {"user", "app_owner"}})
        packet += std::string(key) + '\0' + value + '\0';
    packet += '\0';
    packet.replace(0, 4, be32(static_cast<std::uint32_t>(packet.size())));
    raw.send(packet);
    const auto messages = split_messages(raw.read_until_close());
    REQUIRE_FALSE(messages.empty());
    CHECK(messages[0].type == 'E');
    const auto fields = error_fields(messages[0].body);
    CHECK(fields.at('V') == "FATAL");
    CHECK(fields.at('C') == "08P01");
    CHECK(fields.at('M') == "pgrail: invalid startup packet: parameter \"user\" is given more than once");
    const auto lines = proxy.audit_lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0]["event"] == "connection_refused");
    CHECK(lines[0]["sqlstate"] == "08P01");
}

TEST_CASE("a statement that is slow to analyse does not hold up the other sessions of its thread", "[policy]") {
    // One I/O thread for all sessions: analysing on it would stall the other session too.
    const EnforcingProxy proxy(source_dir() + "/policies/default.yaml", "workers: 1\n");
    auto slow = proxy.connect();
    auto other = proxy.connect();
    // PostgreSQL's scanner is quadratic in a run of + and -: the longest run pgrail accepts
    // (4,000 characters) takes it a quarter of a second, in each of the analysis's scans.
    std::string text = "SELECT 1 ";
    for (int i = 0; i < 2000; ++i) text += "-+";
    text += " 1";
    REQUIRE(PQsendQuery(slow.get(), text.c_str()) == 1);
    for (int i = 0; i < 5; ++i) CHECK(scalar(other.get(), "SELECT 41 + 1") == "42");
    // The other session's round trips are done while the slow text is still being analysed.
    REQUIRE(PQconsumeInput(slow.get()) == 1);
    CHECK(PQisBusy(slow.get()) == 1);
    while (PGresult* result = PQgetResult(slow.get())) {
        CHECK(PQresultStatus(result) == PGRES_TUPLES_OK);  // accepted: the run is within the bound
        PQclear(result);
    }
    CHECK(scalar(slow.get(), "SELECT 1") == "1");

    // A longer run is refused at once, as an ordinary error, and audited.
    text.insert(9, std::string(200, '+'));
    const auto refused = run(slow.get(), text);
    REQUIRE(refused.size() == 1);
    CHECK(refused[0].sqlstate == "54000");  // a limit of pgrail's, not a syntax error
    CHECK_THAT(refused[0].message, Catch::Contains("4200 operator characters"));
    CHECK(proxy.audit_lines().size() == 1);
}

TEST_CASE("a statement longer than max_analyzed_size is refused as a limit, audited, the session usable",
          "[policy]") {
    const EnforcingProxy proxy(source_dir() + "/policies/default.yaml", "max_analyzed_size: 4096\n");
    auto conn = proxy.connect();
    const auto in_list = [](std::size_t values) {
        std::string text = "SELECT count(*) FROM generate_series(1, 3) AS g(id) WHERE id IN (1";
        for (std::size_t i = 2; i <= values; ++i) text += "," + std::to_string(i);
        return text + ")";
    };
    const auto within = in_list(500);
    REQUIRE(within.size() < 4096);
    CHECK(scalar(conn.get(), within) == "3");
    const auto beyond = in_list(1100);
    REQUIRE(beyond.size() > 4096);
    const auto refused = run(conn.get(), beyond);
    REQUIRE(refused.size() == 1);
    CHECK(refused[0].sqlstate == "54000");
    CHECK_THAT(refused[0].message, Catch::Contains("max_analyzed_size: 4096"));
    const auto lines = proxy.audit_lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0]["guard"] == "on_parse_error");
    CHECK(lines[0]["statement_bytes"] == beyond.size());
    CHECK(scalar(conn.get(), "SELECT 'usable'") == "usable");
}

TEST_CASE("a statement shape allowed for one role is still refused for another", "[policy]") {
    // One I/O thread, so both sessions share one cache of statement shapes: the owner's
    // INSERTs put the shape there, the agent's INSERT of other values has the same shape.
    reset_table();
    const EnforcingProxy proxy(
        default_policy_with("  - name: agents\n", "  - name: agents\n    read_only_tables: [enforce_items]\n"),
        "workers: 1\n");
    auto owner = proxy.connect("app_owner");
    auto agent = proxy.connect("agent");

    CHECK(run(owner.get(), "INSERT INTO enforce_items VALUES (1, 'owner-one')").at(0).command == "INSERT 0 1");
    CHECK(run(owner.get(), "INSERT INTO enforce_items VALUES (2, 'owner-two')").at(0).command == "INSERT 0 1");
    const auto refused = run(agent.get(), "INSERT INTO enforce_items VALUES (3, 'agent-secret')");
    REQUIRE(refused.size() == 1);
    CHECK(refused[0].sqlstate == "42501");
    CHECK(run(owner.get(), "INSERT INTO enforce_items VALUES (4, 'owner-four')").at(0).command == "INSERT 0 1");
    CHECK(row_count(owner.get()) == "3");

    // The refusal is the agent's own: its audit line, its rule, its text redacted.
    const auto lines = proxy.audit_lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0]["user"] == "agent");
    CHECK(lines[0]["rule"] == "agents");
    CHECK(lines[0]["guard"] == "read_only_tables");
    CHECK(lines[0]["statement"] == "INSERT INTO enforce_items VALUES ($1, $2)");
    CHECK(read_file(proxy.audit_path).find("agent-secret") == std::string::npos);
}

TEST_CASE("pgrail reads no SQL before the server has authenticated the client", "[policy][auth]") {
    reset_table();
    const EnforcingProxy proxy;
    const std::string refused = "DROP TABLE enforce_items";
    const std::string query = query_message(refused);
    {
        // The startup packet and a Query in one write; the password is never sent.
        RawSocket socket(proxy.process.port());
        socket.send(startup_packet(0x00030000, {{"user", "agent"}, {"database", Cluster::get().database}}) + query);
        CHECK(socket.read_exactly(1) == "R");  // the server asks for SCRAM
        // No event marks "not checked": the held Query waits, unread, for a ReadyForQuery that
        // never comes (until PostgreSQL's authentication_timeout). Half a second is far longer
        // than a check and its audit line take.
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    // Nobody vouched for that client: its statement was neither checked nor audited.
    CHECK(proxy.audit_lines().empty());

    // A client that sends its password and a query in one write (PostgreSQL reads the query
    // once the login is done) gets both answered, the query after authentication.
    RawSocket socket(proxy.process.port());
    start_as_plainuser(socket);
    socket.send(password_message("plainuser") + query);
    (void)read_until_ready(socket);  // the login
    const auto messages = read_until_ready(socket);  // the query's answer
    const auto error = std::find_if(messages.begin(), messages.end(), [](const auto& m) { return m.type == 'E'; });
    REQUIRE(error != messages.end());
    CHECK(error_fields(error->body).at('C') == "42501");  // refused by the policy, after login
    const auto lines = proxy.audit_lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0]["user"] == "plainuser");

    // A wrong password and a query in one write: the server refuses the login, and the query
    // behind the password was never looked at.
    RawSocket impostor(proxy.process.port());
    start_as_plainuser(impostor);
    impostor.send(password_message("wrong") + query);
    const auto refusal = split_messages(impostor.read_until_close());
    REQUIRE(refusal.size() == 1);
    CHECK(error_fields(refusal[0].body).at('C') == "28P01");
    CHECK(proxy.audit_lines().size() == 1);
}

TEST_CASE("a fast-path FunctionCall is refused like a failing call, and audited", "[policy]") {
    reset_table();
    const EnforcingProxy proxy;
    auto conn = proxy.connect();
    auto direct = connect(Route::direct, "agent");
    const auto oid = set_config_oid();
    for (auto* session : {conn.get(), direct.get()}) {
        const bool proxied = session == conn.get();
        INFO((proxied ? "through pgrail" : "direct"));
        CHECK(run(session, "BEGIN").at(0).command == "BEGIN");
        const auto result = fast_path_set_config(session, oid);
        if (proxied) {
            REQUIRE(PQresultStatus(result.get()) == PGRES_FATAL_ERROR);
            CHECK(std::string(PQresultErrorField(result.get(), PG_DIAG_SQLSTATE)) == "42501");
            CHECK_THAT(PQresultErrorField(result.get(), PG_DIAG_MESSAGE_HINT), Catch::Contains("SELECT"));
            // Like any failing statement in a transaction block.
            CHECK(PQtransactionStatus(session) == PQTRANS_INERROR);
        } else {
            CHECK(PQresultStatus(result.get()) == PGRES_COMMAND_OK);
            CHECK(PQtransactionStatus(session) == PQTRANS_INTRANS);
        }
        CHECK(run(session, "ROLLBACK").at(0).command == "ROLLBACK");
        CHECK(scalar(session, "SELECT 1") == "1");
    }
    const auto lines = proxy.audit_lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0]["tag"] == "FunctionCall");
    CHECK(lines[0]["guard"] == "function_call");
    CHECK(lines[0]["function_oid"] == oid);
}

// Review 91: Django's sequence reset (loaddata, sqlsequencereset) names the sequence by
// pg_get_serial_sequence('"table"', 'id'), which pgrail refused as a sequence it cannot name.
// It is the sequence that table's column owns, judged in the table's schema: checked against
// the server (the sequence moves) and against pgrail's ledger (refused, unmoved).
TEST_CASE("Django's sequence reset passes; a protected schema's sequence is refused", "[policy]") {
    auto admin_conn = admin();
    run(admin_conn.get(), "DROP TABLE IF EXISTS public.django_items; DROP SCHEMA IF EXISTS vault CASCADE; "
                          "CREATE TABLE public.django_items (id serial PRIMARY KEY, v text); "
                          "GRANT ALL ON public.django_items, public.django_items_id_seq TO agent; "
                          "INSERT INTO public.django_items (id, v) VALUES (41, 'loaded'); CREATE SCHEMA vault; "
                          "CREATE TABLE vault.items (id serial); GRANT USAGE ON SCHEMA vault TO agent; "
                          "GRANT ALL ON ALL SEQUENCES IN SCHEMA vault TO agent");
    const AdminAtExit drop_after("DROP TABLE IF EXISTS public.django_items; DROP SCHEMA IF EXISTS vault CASCADE");
    EnforcingProxy proxy(default_policy_with("protected_schemas: []", "protected_schemas: [vault]"));
    auto agent = proxy.connect();
    const auto reset = run(agent.get(), "SELECT setval(pg_get_serial_sequence('\"django_items\"','id'), "
                                        "coalesce(max(\"id\"), 1), max(\"id\") IS NOT null) FROM \"django_items\"");
    REQUIRE(reset.at(0).status == "PGRES_TUPLES_OK");
    CHECK(reset.at(0).rows.at(0).at(0) == "41");
    CHECK(scalar(agent.get(), "INSERT INTO django_items (v) VALUES ('next') RETURNING id") == "42");
    // The sequence a protected schema's table owns is that schema's (the server would move it).
    const auto refused = run(agent.get(), "SELECT setval(pg_get_serial_sequence('vault.items', 'id'), 100000)");
    CHECK(refused.at(0).sqlstate == "42501");
    CHECK(scalar(admin_conn.get(), "SELECT last_value FROM vault.items_id_seq") == "1");
}

TEST_CASE("an unqualified DROP of a session's temporary table is refused with the qualified name to send",
          "[policy]") {
    auto admin_conn = admin();
    run(admin_conn.get(), "DROP TABLE IF EXISTS public.scratch_totals; CREATE TABLE public.scratch_totals (a int); "
                          "INSERT INTO public.scratch_totals VALUES (7); GRANT ALL ON public.scratch_totals TO agent");
    const AdminAtExit drop_after("DROP TABLE IF EXISTS public.scratch_totals");
    EnforcingProxy proxy;
    auto agent = proxy.connect();
    REQUIRE(run(agent.get(), "CREATE TEMP TABLE scratch_totals AS SELECT 1 AS a").at(0).status == "PGRES_COMMAND_OK");
    // The temporary table may be gone while pgrail still knows its name (a rollback, DISCARD TEMP),
    // and the unqualified name then reaches the permanent table: refused, with the certain way.
    Result refused(PQexec(agent.get(), "DROP TABLE IF EXISTS scratch_totals"));
    REQUIRE(std::string(PQresultErrorField(refused.get(), PG_DIAG_SQLSTATE)) == "42501");
    CHECK_THAT(PQresultErrorField(refused.get(), PG_DIAG_MESSAGE_PRIMARY), Catch::Contains("pg_temp.scratch_totals"));
    CHECK_THAT(PQresultErrorField(refused.get(), PG_DIAG_MESSAGE_HINT),
               Catch::StartsWith("Send DROP TABLE pg_temp.scratch_totals."));
    CHECK(run(agent.get(), "DROP TABLE pg_temp.scratch_totals").at(0).status == "PGRES_COMMAND_OK");
    // Now the name reaches only the permanent table, which the same text would drop.
    CHECK(run(agent.get(), "DROP TABLE scratch_totals").at(0).sqlstate == "42501");
    CHECK(scalar(admin_conn.get(), "SELECT count(*) FROM public.scratch_totals") == "1");
    // A name the session never made temporary is sent to a migration, as before.
    Result other(PQexec(agent.get(), "DROP TABLE IF EXISTS scratch_totals, enforce_items"));
    CHECK_THAT(PQresultErrorField(other.get(), PG_DIAG_MESSAGE_PRIMARY), Catch::Contains("propose"));
}

TEST_CASE("a pgrail command on a pgrail without migrations is refused, and on record", "[policy][audit]") {
    EnforcingProxy proxy;  // (a policy and an audit file; no migrations section)
    auto agent = proxy.connect();
    Result refused(PQexec(agent.get(), "SELECT * FROM pgrail.propose_migration('n', 'CREATE TABLE n (a int)', "
                                       "'DROP TABLE n')"));
    REQUIRE(std::string(PQresultErrorField(refused.get(), PG_DIAG_SQLSTATE)) == "55000");
    // Review 100: this refusal was the one pgrail command not audited; its arguments stay redacted.
    const auto lines = proxy.audit_lines();
    REQUIRE_FALSE(lines.empty());
    const auto& line = lines.back();
    CHECK(line.value("event", "") == "command");
    CHECK(line.value("command", "") == "pgrail.propose_migration");
    CHECK(line.value("sqlstate", "") == "55000");
    CHECK(line["arguments"] == nlohmann::json::array({"$1", "$2", "$3"}));
    CHECK(scalar(agent.get(), "SELECT 1") == "1");
}

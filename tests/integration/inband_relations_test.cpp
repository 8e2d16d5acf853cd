// pgrail's in-band commands read as relations (issue 15, item 6): any SELECT that reads
// pgrail.status() & co. in FROM works, in simple and extended protocol, pipelined, inside a
// transaction block for reads; a command that changes the schema is refused inside one (25001),
// and a call anywhere else is refused. Each test has a database and a pgrail of its own.
#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"
#include "seed_database.hpp"

using namespace pgrail::test;

namespace {

const std::string seed_version = "20261125090000";

// A pgrail with in-band commands in front of a seed database; `policy` defaults to the shipped one
// (agents may call status, plan and migrate_up; app_owner everything).
struct RelationsProxy {
    SeedDatabase db{"relations_"};
    std::string dir = PgrailProcess::make_temp_dir();
    std::string audit_path = dir + "/audit.jsonl";
    PgrailProcess process;

    explicit RelationsProxy(const std::string& policy = source_dir() + "/policies/default.yaml")
        : process("policy: " + policy + "\n" + "audit: {file: " + audit_path + ", fsync: always}\n" +
                  "migrations: {dir: " + source_dir() + "/migrations, migrator: \"" + db.conninfo_for("app_owner") +
                  "\"}\n") {}

    [[nodiscard]] Conn connect(const std::string& user) const { return db.connect_through(process, user); }

    // Straight to PostgreSQL, as the schema's owner (to observe the catalog and the ledger).
    [[nodiscard]] Conn owner_direct() const {
        Conn conn(PQconnectdb(db.conninfo_for("app_owner").c_str()));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        return conn;
    }

    // Rows of the ledger (0 when pgrail never created it).
    [[nodiscard]] std::string applied() const {
        auto conn = owner_direct();
        if (scalar(conn.get(), "SELECT to_regclass('pgrail.schema_migrations') IS NULL") == "t") return "0";
        return scalar(conn.get(), "SELECT count(*) FROM pgrail.schema_migrations");
    }

    [[nodiscard]] std::vector<nlohmann::json> audit() const {
        std::vector<nlohmann::json> lines;
        std::ifstream in(audit_path);
        for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
        return lines;
    }
};

Outcome one(PGconn* conn, const std::string& sql) {
    auto outcomes = run(conn, sql);
    REQUIRE(outcomes.size() == 1);
    return outcomes[0];
}

std::vector<std::string> rows_of(const Outcome& outcome, std::size_t column = 0) {
    std::vector<std::string> values;
    for (const auto& row : outcome.rows) values.push_back(row.at(column).value_or("NULL"));
    return values;
}

Outcome exec_params(PGconn* conn, const std::string& sql, const std::vector<std::string>& values = {}) {
    std::vector<const char*> pointers;
    for (const auto& value : values) pointers.push_back(value.c_str());
    Result result(PQexecParams(conn, sql.c_str(), static_cast<int>(values.size()), nullptr,
                               pointers.empty() ? nullptr : pointers.data(), nullptr, nullptr, 0));
    return capture(result.get());
}

Outcome exec_prepared(PGconn* conn, const std::string& name, const std::vector<std::string>& values = {}) {
    std::vector<const char*> pointers;
    for (const auto& value : values) pointers.push_back(value.c_str());
    Result result(PQexecPrepared(conn, name.c_str(), static_cast<int>(values.size()),
                                 pointers.empty() ? nullptr : pointers.data(), nullptr, nullptr, 0));
    return capture(result.get());
}

// The column list ("name:type:format") a statement describes, prepared under `name`.
std::vector<std::string> described(PGconn* conn, const std::string& name, const std::string& sql, int* params = nullptr) {
    Result prepared(PQprepare(conn, name.c_str(), sql.c_str(), 0, nullptr));
    REQUIRE(PQresultStatus(prepared.get()) == PGRES_COMMAND_OK);
    Result description(PQdescribePrepared(conn, name.c_str()));
    REQUIRE(PQresultStatus(description.get()) == PGRES_COMMAND_OK);
    if (params != nullptr) *params = PQnparams(description.get());
    return capture(description.get()).columns;
}

}  // namespace

TEST_CASE("pgrail commands read as relations: columns, WHERE, ORDER BY, joins, CTEs and aliases", "[inband]") {
    RelationsProxy proxy;
    auto agent = proxy.connect("agent");

    const auto columns = one(agent.get(), "SELECT version, state FROM pgrail.status()");
    REQUIRE(columns.status == "PGRES_TUPLES_OK");
    CHECK(columns.columns == std::vector<std::string>{"version:25:0", "state:25:0"});
    REQUIRE(columns.rows.size() == 1);
    CHECK(columns.rows[0][0] == seed_version);
    CHECK(columns.rows[0][1] == "pending");

    // WHERE, ORDER BY and LIMIT are the server's.
    CHECK(one(agent.get(), "SELECT version FROM pgrail.status() WHERE state = 'applied'").rows.empty());
    CHECK(rows_of(one(agent.get(), "SELECT version, has_rollback FROM pgrail.status() WHERE state = 'pending' AND "
                                   "has_rollback ORDER BY version DESC LIMIT 1")) ==
          std::vector<std::string>{seed_version});

    // A join with an ordinary table, and with a VALUES list.
    const auto joined = one(agent.get(), "SELECT p.display_name, s.state FROM profiles p CROSS JOIN pgrail.status() s "
                                         "ORDER BY p.id");
    CHECK(rows_of(joined) ==
          std::vector<std::string>{"Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra"});
    CHECK(rows_of(joined, 1) == std::vector<std::string>(4, "pending"));
    CHECK(rows_of(one(agent.get(), "SELECT v.label FROM (VALUES ('" + seed_version +
                                       "', 'seed'), ('1', 'other')) AS v (version, label) JOIN pgrail.status() "
                                       "USING (version)")) == std::vector<std::string>{"seed"});

    // A CTE, a subquery in WHERE, two commands in one statement.
    CHECK(scalar(agent.get(), "WITH pending AS (SELECT * FROM pgrail.status() WHERE state = 'pending') "
                              "SELECT count(*) FROM pending") == "1");
    CHECK(scalar(agent.get(), "SELECT count(*) FROM profiles WHERE EXISTS (SELECT 1 FROM pgrail.plan() "
                              "WHERE version = '" + seed_version + "')") == "4");
    CHECK(scalar(agent.get(), "SELECT count(*) FROM pgrail.status() s JOIN pgrail.plan() p USING (version)") == "1");

    // An alias with column aliases; without an alias, the function's name qualifies its columns.
    const auto aliased = one(agent.get(), "SELECT v, n FROM pgrail.status() AS s (v, n)");
    CHECK(aliased.columns == std::vector<std::string>{"v:25:0", "n:25:0"});
    CHECK(rows_of(aliased, 1) == std::vector<std::string>{"add_profiles_timezone"});
    CHECK(scalar(agent.get(), "SELECT status.state FROM pgrail.status()") == "pending");
    CHECK(scalar(agent.get(), "SELECT step FROM pgrail.plan() plan_step") == "1");

    // Comments, line breaks and quoted names inside the call are read as PostgreSQL reads them.
    CHECK(scalar(agent.get(), "SELECT state FROM \"pgrail\" /* ) */ .\n  -- (\n  status ( ) AS s") == "pending");

    // Typed as the plain form's columns.
    const auto plain = one(agent.get(), "SELECT * FROM pgrail.status()");
    const auto wrapped = one(agent.get(), "SELECT * FROM (SELECT * FROM pgrail.status()) AS t LIMIT 100");
    CHECK(plain.columns == wrapped.columns);
    CHECK(plain.rows == wrapped.rows);
    CHECK(plain.columns.at(4) == "applied_at:1184:0");
    CHECK(plain.columns.at(5) == "has_rollback:16:0");

    // Nothing of it changed the schema; every command is on record.
    CHECK(proxy.db.timezone_columns() == "0");
    const auto lines = proxy.audit();
    CHECK(std::count_if(lines.begin(), lines.end(),
                        [](const auto& line) { return line.value("event", "") == "command"; }) >= 14);
}

TEST_CASE("inside a transaction block reads work, migrate_up is refused with 25001 and applies nothing",
          "[inband]") {
    RelationsProxy proxy;
    auto agent = proxy.connect("agent");

    CHECK(one(agent.get(), "BEGIN").status == "PGRES_COMMAND_OK");
    CHECK(scalar(agent.get(), "SELECT state FROM pgrail.status()") == "pending");
    CHECK(scalar(agent.get(), "SELECT count(*) FROM pgrail.plan()") == "1");
    CHECK(PQtransactionStatus(agent.get()) == PQTRANS_INTRANS);
    const auto refused = one(agent.get(), "SELECT * FROM pgrail.migrate_up('" + seed_version + "')");
    CHECK(refused.sqlstate == "25001");
    CHECK_THAT(refused.message, Catch::StartsWith("pgrail: pgrail.migrate_up cannot run inside a transaction block; "
                                                  "send it on its own after COMMIT or ROLLBACK"));
    // The transaction failed, as at any error; COMMIT rolls it back.
    CHECK(one(agent.get(), "SELECT 1").sqlstate == "25P02");
    CHECK(one(agent.get(), "SELECT * FROM pgrail.migrate_up()").sqlstate == "25P02");
    CHECK(one(agent.get(), "COMMIT").command == "ROLLBACK");
    CHECK(proxy.db.timezone_columns() == "0");
    CHECK(proxy.applied() == "0");

    // The extended protocol, wrapped in a bigger SELECT: the same.
    CHECK(one(agent.get(), "BEGIN").status == "PGRES_COMMAND_OK");
    const auto extended = exec_params(agent.get(), "SELECT version FROM (SELECT * FROM pgrail.migrate_up()) AS up");
    CHECK(extended.sqlstate == "25001");
    CHECK(one(agent.get(), "ROLLBACK").status == "PGRES_COMMAND_OK");
    CHECK(proxy.db.timezone_columns() == "0");
    CHECK(proxy.applied() == "0");

    // Queries sent back to back: pgrail waits for the server's answer to BEGIN before it decides.
    {
        auto raw = proxy.connect("agent");
        const auto query = [](const std::string& sql) {
            return std::string("Q") + be32(static_cast<std::uint32_t>(sql.size() + 5)) + sql + std::string(1, '\0');
        };
        REQUIRE(write_fd(PQsocket(raw.get()), query("BEGIN") + query("SELECT * FROM pgrail.migrate_up()") +
                                                   query("ROLLBACK")));
        const auto answer = read_fd_until_close(PQsocket(raw.get()), std::chrono::seconds(3));
        const auto messages = split_messages(answer);
        CHECK(std::count_if(messages.begin(), messages.end(), [](const auto& m) { return m.type == 'Z'; }) == 3);
        CHECK(answer.find("C25001") != std::string::npos);
        CHECK(answer.find("pgrail.migrate_up cannot run inside a transaction block") != std::string::npos);
    }
    CHECK(proxy.db.timezone_columns() == "0");
    CHECK(proxy.applied() == "0");

    // Outside a transaction block it runs once, and its answer reads as any relation.
    const auto applied = one(agent.get(), "SELECT version, action FROM pgrail.migrate_up('" + seed_version +
                                              "') WHERE action = 'applied'");
    REQUIRE(applied.status == "PGRES_TUPLES_OK");
    CHECK(applied.rows == std::vector<std::vector<std::optional<std::string>>>{{seed_version, "applied"}});
    CHECK(proxy.db.timezone_columns() == "1");
    CHECK(proxy.applied() == "1");
    CHECK(PQtransactionStatus(agent.get()) == PQTRANS_IDLE);

    // The owner rolls it back (it may), also through a relation.
    auto owner = proxy.connect("app_owner");
    CHECK(scalar(owner.get(), "SELECT action FROM pgrail.migrate_down('" + seed_version + "') AS d") ==
          "rolled_back");
    CHECK(proxy.db.timezone_columns() == "0");
}

TEST_CASE("extended protocol: Parse runs nothing; each execution runs the commands", "[inband]") {
    RelationsProxy proxy;
    auto agent = proxy.connect("agent");

    // PQexecParams with a parameter of the client's own.
    const auto params = exec_params(agent.get(), "SELECT version, state FROM pgrail.status() WHERE state = $1",
                                    {"pending"});
    REQUIRE(params.status == "PGRES_TUPLES_OK");
    CHECK(params.columns == std::vector<std::string>{"version:25:0", "state:25:0"});
    CHECK(rows_of(params) == std::vector<std::string>{seed_version});

    // The whole-statement form, too.
    CHECK(rows_of(exec_params(agent.get(), "SELECT pgrail.plan()"), 1) == std::vector<std::string>{seed_version});

    // A binary parameter (one format code for all) next to pgrail's own text one.
    const Oid int4 = 23;
    const std::uint32_t length = htonl(static_cast<std::uint32_t>(seed_version.size()));
    const char* binary_values[] = {reinterpret_cast<const char*>(&length)};
    const int binary_lengths[] = {4};
    const int binary_formats[] = {1};
    Result binary(PQexecParams(agent.get(), "SELECT state FROM pgrail.status() WHERE length(version) = $1", 1, &int4,
                               binary_values, binary_lengths, binary_formats, 0));
    REQUIRE(PQresultStatus(binary.get()) == PGRES_TUPLES_OK);
    CHECK(PQntuples(binary.get()) == 1);

    // A prepared statement describes as the client wrote it: its own parameter, the command's columns.
    int parameters = -1;
    const auto status_columns = described(agent.get(), "by_version", "SELECT state FROM pgrail.status() WHERE version = $1",
                                          &parameters);
    CHECK(parameters == 1);
    CHECK(status_columns == std::vector<std::string>{"state:25:0"});
    CHECK(rows_of(exec_prepared(agent.get(), "by_version", {seed_version})) == std::vector<std::string>{"pending"});

    // The plain forms describe exactly as they answer in the simple protocol.
    for (const std::string command : {"status", "plan"}) {
        const auto simple = one(agent.get(), "SELECT * FROM pgrail." + command + "()");
        CHECK(described(agent.get(), "plain_" + command, "SELECT * FROM pgrail." + command + "()") == simple.columns);
    }

    // A statement the server cannot prepare runs nothing, though its Bind follows in the same
    // batch: pgrail makes sure the server holds the statement before migrate_up runs.
    const auto misspelt = exec_params(agent.get(), "SELECT no_such_column FROM pgrail.migrate_up()");
    CHECK(misspelt.sqlstate == "42703");
    CHECK(proxy.db.timezone_columns() == "0");
    CHECK(proxy.applied() == "0");
    CHECK(scalar(agent.get(), "SELECT 'still in step'") == "still in step");

    // Preparing migrate_up applies nothing; executing it does, once per execution.
    int up_parameters = -1;
    const auto up_columns = described(agent.get(), "up", "SELECT * FROM pgrail.migrate_up()", &up_parameters);
    CHECK(up_parameters == 0);
    CHECK(up_columns == std::vector<std::string>{"version:25:0", "name:25:0", "checksum:25:0", "action:25:0",
                                                 "duration_ms:20:0"});
    CHECK(proxy.db.timezone_columns() == "0");
    CHECK(proxy.applied() == "0");
    const auto applied = exec_prepared(agent.get(), "up");
    REQUIRE(applied.status == "PGRES_TUPLES_OK");
    CHECK(applied.columns == up_columns);
    CHECK(rows_of(applied) == std::vector<std::string>{seed_version});
    CHECK(proxy.db.timezone_columns() == "1");
    CHECK(exec_prepared(agent.get(), "up").rows.empty());  // ran again: nothing left to apply

    // The same prepared statement answers anew at each execution.
    CHECK(rows_of(exec_prepared(agent.get(), "by_version", {seed_version})) == std::vector<std::string>{"applied"});

    // A name prepared again with ordinary text (after DEALLOCATE) is ordinary again.
    CHECK(one(agent.get(), "DEALLOCATE by_version").status == "PGRES_COMMAND_OK");
    Result again(PQprepare(agent.get(), "by_version", "SELECT $1::text AS echo", 0, nullptr));
    REQUIRE(PQresultStatus(again.get()) == PGRES_COMMAND_OK);
    CHECK(rows_of(exec_prepared(agent.get(), "by_version", {"x"})) == std::vector<std::string>{"x"});

    // The owner's migrate_down through the extended protocol; then nothing is left to roll back.
    auto owner = proxy.connect("app_owner");
    const auto down = exec_params(owner.get(), "SELECT version, action FROM pgrail.migrate_down($$" + seed_version + "$$)");
    REQUIRE(down.status == "PGRES_TUPLES_OK");
    CHECK(down.rows == std::vector<std::vector<std::optional<std::string>>>{{seed_version, "rolled_back"}});
    CHECK(proxy.db.timezone_columns() == "0");
    const auto verify_columns = described(owner.get(), "verify", "SELECT * FROM pgrail.verify()");
    CHECK(verify_columns.size() == 12);  // the original six, then what verify measured
    CHECK(verify_columns.at(3) == "outcome:25:0");
    CHECK(verify_columns.at(6) == "rewrites:25:0");
}

TEST_CASE("prepared statements that read pgrail commands are bounded per session, names as the server keys them",
          "[inband]") {
    // Helper 69: pgrail holds these itself (the server holds a rewritten text); 250 of them with
    // 4 MB names took 1.2 GB of pgrail's memory in one session.
    RelationsProxy proxy;
    auto agent = proxy.connect("agent");
    const std::string tail(100, 'x');  // past the 63 bytes the server (and pgrail) key a name by
    for (int index = 0; index < 64; ++index) {
        const std::string name = "status_" + std::to_string(index) + "_" + tail;
        Result prepared(PQprepare(agent.get(), name.c_str(), "SELECT version FROM pgrail.status()", 0, nullptr));
        REQUIRE(PQresultStatus(prepared.get()) == PGRES_COMMAND_OK);
    }
    Result one_more(PQprepare(agent.get(), "one_more", "SELECT version FROM pgrail.status()", 0, nullptr));
    CHECK(std::string(PQresultErrorField(one_more.get(), PG_DIAG_SQLSTATE)) == "54000");
    CHECK_THAT(PQresultErrorField(one_more.get(), PG_DIAG_MESSAGE_PRIMARY),
               Catch::Contains("more than 64 prepared statements that read pgrail commands"));
    // A name the server reads as one already held is that statement (its first 63 bytes).
    const std::string alias = "status_7_" + tail.substr(0, 54) + "anything after the 63rd byte";
    CHECK(rows_of(exec_prepared(agent.get(), alias, {})) == std::vector<std::string>{seed_version});
    // Closing them makes room (DEALLOCATE forgets them all: pgrail cannot tell which it names).
    CHECK(one(agent.get(), "DEALLOCATE ALL").status == "PGRES_COMMAND_OK");
    Result again(PQprepare(agent.get(), "one_more", "SELECT version FROM pgrail.status()", 0, nullptr));
    CHECK(PQresultStatus(again.get()) == PGRES_COMMAND_OK);
    CHECK(rows_of(exec_prepared(agent.get(), "one_more", {})) == std::vector<std::string>{seed_version});
}

TEST_CASE("pipeline mode: reads pipeline; migrate_up after another statement of the pipeline is refused",
          "[inband]") {
    RelationsProxy proxy;
    auto agent = proxy.connect("agent");
    REQUIRE(PQenterPipelineMode(agent.get()) == 1);
    REQUIRE(PQsendQueryParams(agent.get(), "SELECT state FROM pgrail.status()", 0, nullptr, nullptr, nullptr, nullptr, 0));
    REQUIRE(PQsendQueryParams(agent.get(), "SELECT 41 + 1", 0, nullptr, nullptr, nullptr, nullptr, 0));
    REQUIRE(PQsendQueryParams(agent.get(), "SELECT * FROM pgrail.migrate_up()", 0, nullptr, nullptr, nullptr, nullptr, 0));
    REQUIRE(PQpipelineSync(agent.get()));
    // The first batch: the read, the ordinary statement, and migrate_up refused (not applied).
    std::vector<Outcome> outcomes;
    while (outcomes.size() < 4) {
        Result result(PQgetResult(agent.get()));
        if (!result) continue;  // the end of one query's results
        outcomes.push_back(capture(result.get()));
    }
    CHECK(outcomes[0].rows.at(0).at(0) == "pending");
    CHECK(outcomes[1].rows.at(0).at(0) == "42");
    CHECK(outcomes[2].sqlstate == "25001");
    CHECK(outcomes[2].message ==
          "pgrail: pgrail.migrate_up cannot be executed within a pipeline; send it on its own, outside the pipeline");
    CHECK(outcomes[3].status == "PGRES_PIPELINE_SYNC");
    CHECK(proxy.db.timezone_columns() == "0");

    // First in its pipeline it runs, and what follows sees its effect.
    REQUIRE(PQsendQueryParams(agent.get(), "SELECT version FROM pgrail.migrate_up()", 0, nullptr, nullptr, nullptr, nullptr, 0));
    REQUIRE(PQpipelineSync(agent.get()));
    REQUIRE(PQsendQueryParams(agent.get(), "SELECT state FROM pgrail.status()", 0, nullptr, nullptr, nullptr, nullptr, 0));
    REQUIRE(PQpipelineSync(agent.get()));
    outcomes.clear();
    while (outcomes.size() < 4) {
        Result result(PQgetResult(agent.get()));
        if (!result) continue;
        outcomes.push_back(capture(result.get()));
    }
    CHECK(outcomes[0].rows.at(0).at(0) == seed_version);
    CHECK(outcomes[1].status == "PGRES_PIPELINE_SYNC");
    CHECK(outcomes[2].rows.at(0).at(0) == "applied");
    CHECK(outcomes[3].status == "PGRES_PIPELINE_SYNC");
    REQUIRE(PQexitPipelineMode(agent.get()) == 1);
    CHECK(proxy.db.timezone_columns() == "1");
}

TEST_CASE("a pgrail call anywhere but FROM is refused, and a command a rule may not call stays out of reach",
          "[inband]") {
    const std::string policy = PgrailProcess::make_temp_dir() + "/read_only_agents.yaml";
    {
        std::ofstream out(policy);
        out << "version: 1\n"
               "rules:\n"
               "  - name: owner\n"
               "    match: {users: app_owner}\n"
               "    migrations: [status, plan, migrate_up, migrate_down, verify]\n"
               "  - name: agents\n"
               "    migrations: [status, plan]\n";
    }
    RelationsProxy proxy(policy);
    auto agent = proxy.connect("agent");

    for (const std::string sql : {
             "SELECT pgrail.status(), 1",
             "SELECT * FROM profiles WHERE pgrail.status() IS NOT NULL",
             "SELECT * FROM generate_series(1, pgrail.plan())",
             "SELECT * FROM pgrail.plan(pgrail.status())",
             "DELETE FROM profiles USING pgrail.status() s WHERE s.version = profiles.email",
             "UPDATE profiles SET display_name = s.name FROM pgrail.status() s WHERE s.version = profiles.email",
             "WITH x AS (DELETE FROM profiles WHERE email IN (SELECT version FROM pgrail.status()) RETURNING 1) "
             "SELECT count(*) FROM x",
             "EXPLAIN SELECT * FROM pgrail.status()",
         }) {
        INFO(sql);
        const auto refused = one(agent.get(), sql);
        CHECK(refused.sqlstate == "42501");
        CHECK_THAT(refused.message, Catch::StartsWith("pgrail: pgrail commands are read as relations in FROM"));
    }
    const auto writes = one(agent.get(), "WITH gone AS (DELETE FROM profiles WHERE id = 1 RETURNING email) "
                                         "SELECT * FROM pgrail.status(), gone");
    CHECK(writes.sqlstate == "42501");
    CHECK_THAT(writes.message, Catch::Contains("can only be read by a plain SELECT"));
    // A text holding a pgrail call is that one statement: the statements before it run, as before
    // any statement that fails.
    const auto several = run(agent.get(), "SELECT 1; SELECT * FROM pgrail.status()");
    REQUIRE(several.size() == 2);
    CHECK(several[0].rows.at(0).at(0) == "1");
    CHECK(several[1].sqlstate == "42501");
    CHECK_THAT(several[1].message, Catch::Contains("must be that one statement"));
    CHECK(scalar(agent.get(), "SELECT count(*) FROM profiles") == "4");

    // Rule "agents" may not call migrate_up: no wrapping reaches it, in either protocol.
    for (const std::string& sql : std::vector<std::string>{
             "SELECT * FROM pgrail.migrate_up()",
             "SELECT pgrail.migrate_up()",
             "SELECT s.version FROM pgrail.status() s JOIN pgrail.migrate_up() u USING (version)",
             "SELECT * FROM (SELECT * FROM pgrail.migrate_up('" + seed_version + "')) AS wrapped LIMIT 100",
             "WITH up AS (SELECT * FROM pgrail.migrate_up()) SELECT count(*) FROM up",
             "SELECT * FROM profiles WHERE email IN (SELECT version FROM pgrail.migrate_up())",
             "SELECT * FROM profiles, LATERAL \"pgrail\".\"migrate_up\"() AS up",
         }) {
        INFO(sql);
        for (const auto& refused : {one(agent.get(), sql), exec_params(agent.get(), sql)}) {
            CHECK(refused.sqlstate == "42501");
            CHECK(refused.message == "pgrail: pgrail.migrate_up is not allowed for this session; ask an operator to "
                                     "run it");
        }
    }
    Result prepared(PQprepare(agent.get(), "sneaky", "SELECT * FROM pgrail.status(), pgrail.migrate_up()", 0, nullptr));
    CHECK(std::string(PQresultErrorField(prepared.get(), PG_DIAG_SQLSTATE)) == "42501");
    CHECK(proxy.db.timezone_columns() == "0");
    CHECK(proxy.applied() == "0");
    const auto lines = proxy.audit();
    CHECK(std::none_of(lines.begin(), lines.end(), [](const auto& line) {
        return line.value("event", "") == "command" && line.value("command", "") == "pgrail.migrate_up";
    }));
}

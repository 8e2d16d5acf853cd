// The admin view over SQL (pgrail.sessions(), pgrail.stats(), pgrail.refusals()) through a
// running pgrail without migrations configured: what an operator's psql sees of the agents
// connected, what pgrail refused, and that every call is on record.
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"
#include "seed_database.hpp"

using namespace pgrail::test;

namespace {

std::vector<nlohmann::json> audit_lines(const std::string& path) {
    std::vector<nlohmann::json> lines;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        INFO(path << ": " << line);
        REQUIRE(nlohmann::json::accept(line));
        lines.push_back(nlohmann::json::parse(line));
    }
    return lines;
}

// One outcome's rows as maps from column name to value ("" for NULL).
std::vector<std::map<std::string, std::string>> rows_of(const Outcome& outcome) {
    std::vector<std::map<std::string, std::string>> out;
    for (const auto& row : outcome.rows) {
        std::map<std::string, std::string> named;
        for (std::size_t index = 0; index < row.size() && index < outcome.columns.size(); ++index) {
            const auto& column = outcome.columns[index];
            named[column.substr(0, column.find(':'))] = row[index].value_or("");
        }
        out.push_back(std::move(named));
    }
    return out;
}

std::vector<std::map<std::string, std::string>> query(PGconn* conn, const std::string& sql) {
    const auto outcomes = run(conn, sql);
    REQUIRE(outcomes.size() == 1);
    INFO(sql << ": " << outcomes[0].message);
    REQUIRE(outcomes[0].status == "PGRES_TUPLES_OK");
    return rows_of(outcomes[0]);
}

std::string backend_pid_session(PGconn* viewer, const std::string& application_name) {
    for (const auto& row : query(viewer, "SELECT * FROM pgrail.sessions()"))
        if (row.at("application_name") == application_name) return row.at("session_id");
    return "";
}

struct AdminProxy {
    SeedDatabase db{"admin_"};
    std::string audit_path = PgrailProcess::make_temp_dir() + "/admin_audit.jsonl";
    // No migrations: the admin view needs none.
    PgrailProcess process{"policy: " + source_dir() + "/policies/default.yaml\naudit: {file: " + audit_path + "}\n"};

    [[nodiscard]] Conn connect(const std::string& user, const std::string& application_name) const {
        Conn conn(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(process.port()) + " dbname=" + db.name +
                               " user=" + user + " password=" + user + " application_name=" + application_name)
                                  .c_str()));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        return conn;
    }
};

}  // namespace

TEST_CASE("admin view: pgrail.sessions() lists each session with its state, user and bytes", "[admin_view]") {
    AdminProxy proxy;
    auto owner = proxy.connect("app_owner", "operator");
    auto busy = proxy.connect("agent", "agent_in_tx");
    auto idle = proxy.connect("agent", "agent_idle");
    REQUIRE(run(busy.get(), "BEGIN").at(0).status == "PGRES_COMMAND_OK");
    REQUIRE(run(busy.get(), "SELECT id FROM profiles WHERE email = 'secret-literal@example.com'").at(0).status ==
            "PGRES_TUPLES_OK");
    REQUIRE(scalar(idle.get(), "SELECT count(*) FROM profiles") == "4");

    const auto rows = query(owner.get(), "SELECT * FROM pgrail.sessions()");
    std::map<std::string, std::map<std::string, std::string>> by_application;
    for (const auto& row : rows) by_application[row.at("application_name")] = row;
    REQUIRE(by_application.count("agent_in_tx") == 1);
    REQUIRE(by_application.count("agent_idle") == 1);
    REQUIRE(by_application.count("operator") == 1);
    const auto& in_tx = by_application["agent_in_tx"];
    CHECK(in_tx.at("state") == "idle in transaction");
    CHECK(in_tx.at("user_name") == "agent");
    CHECK(in_tx.at("identity") == "agent");
    CHECK(in_tx.at("database") == proxy.db.name);
    CHECK(in_tx.at("client_address") == "127.0.0.1");
    // The statement as the audit log names statements: its literal is a placeholder.
    CHECK(in_tx.at("statement_fingerprint") == "SELECT id FROM profiles WHERE email = $1");
    CHECK(std::stoll(in_tx.at("bytes_from_client")) > 0);
    CHECK(std::stoll(in_tx.at("bytes_from_server")) > 0);
    CHECK_FALSE(in_tx.at("started_at").empty());
    CHECK_FALSE(in_tx.at("state_since").empty());
    CHECK(by_application["agent_idle"].at("state") == "idle");
    CHECK(by_application["agent_idle"].at("statement_fingerprint") == "SELECT count(*) FROM profiles");
    CHECK(by_application["operator"].at("state") == "active");  // the caller itself, as pg_stat_activity shows it
    CHECK(by_application["operator"].at("user_name") == "app_owner");
    for (const auto& row : rows)
        for (const auto& [column, value] : row) CHECK(value.find("secret-literal") == std::string::npos);

    // The bytes grow with the session's traffic.
    const auto before = std::stoll(by_application["agent_idle"].at("bytes_from_server"));
    REQUIRE(scalar(idle.get(), "SELECT string_agg(email, ',') FROM profiles") != "");
    const auto after = query(owner.get(), "SELECT bytes_from_server FROM pgrail.sessions() WHERE application_name = "
                                          "'agent_idle'");
    REQUIRE(after.size() == 1);
    CHECK(std::stoll(after[0].at("bytes_from_server")) > before);

    // WHERE, ORDER BY and an aggregate over it, as over any relation.
    const auto agents = query(owner.get(), "SELECT application_name, state FROM pgrail.sessions() s WHERE "
                                           "s.user_name = 'agent' ORDER BY application_name DESC");
    REQUIRE(agents.size() == 2);
    CHECK(agents[0].at("application_name") == "agent_in_tx");
    CHECK(agents[1].at("application_name") == "agent_idle");
    CHECK(scalar(owner.get(), "SELECT count(*) FROM pgrail.sessions() WHERE state = 'idle in transaction'") == "1");

    // An ended session leaves the view.
    idle.reset();
    CHECK(eventually([&] { return backend_pid_session(owner.get(), "agent_idle").empty(); }, std::chrono::seconds(5)));

    // An aborted transaction shows as such.
    (void)run(busy.get(), "SELECT 1/0");
    CHECK(scalar(owner.get(), "SELECT state FROM pgrail.sessions() WHERE application_name = 'agent_in_tx'") ==
          "idle in transaction (aborted)");
    (void)run(busy.get(), "ROLLBACK");
    CHECK(scalar(owner.get(), "SELECT state FROM pgrail.sessions() WHERE application_name = 'agent_in_tx'") == "idle");

    // Inside the caller's own transaction too: it only reads.
    REQUIRE(run(owner.get(), "BEGIN").at(0).status == "PGRES_COMMAND_OK");
    CHECK(scalar(owner.get(), "SELECT count(*) FROM pgrail.sessions()") == "2");
    REQUIRE(run(owner.get(), "COMMIT").at(0).status == "PGRES_COMMAND_OK");
}

TEST_CASE("admin view: the extended protocol prepares and binds it like any query", "[admin_view]") {
    AdminProxy proxy;
    auto owner = proxy.connect("app_owner", "operator");
    auto agent = proxy.connect("agent", "agent_x");
    REQUIRE(scalar(agent.get(), "SELECT count(*) FROM profiles") == "4");

    Result prepared(PQprepare(owner.get(), "by_user",
                              "SELECT application_name, state FROM pgrail.sessions() WHERE user_name = $1", 1, nullptr));
    INFO(PQresultErrorMessage(prepared.get()));
    REQUIRE(PQresultStatus(prepared.get()) == PGRES_COMMAND_OK);
    Result described(PQdescribePrepared(owner.get(), "by_user"));
    REQUIRE(PQnfields(described.get()) == 2);
    CHECK(std::string(PQfname(described.get(), 0)) == "application_name");
    for (int round = 0; round < 2; ++round) {
        const char* values[] = {"agent"};
        Result rows(PQexecPrepared(owner.get(), "by_user", 1, values, nullptr, nullptr, 0));
        INFO(PQresultErrorMessage(rows.get()));
        REQUIRE(PQresultStatus(rows.get()) == PGRES_TUPLES_OK);
        REQUIRE(PQntuples(rows.get()) == 1);
        CHECK(std::string(PQgetvalue(rows.get(), 0, 0)) == "agent_x");
        CHECK(std::string(PQgetvalue(rows.get(), 0, 1)) == "idle");
    }
    const char* limit[] = {"3"};
    Result refusals(PQexecParams(owner.get(), "SELECT count(*) FROM pgrail.refusals(5) WHERE sqlstate <> $1", 1,
                                 nullptr, limit, nullptr, nullptr, 0));
    INFO(PQresultErrorMessage(refusals.get()));
    CHECK(PQresultStatus(refusals.get()) == PGRES_TUPLES_OK);
    Result stats(PQexecParams(owner.get(), "SELECT value FROM pgrail.stats() WHERE name = $1", 1, nullptr,
                              std::vector<const char*>{"sessions_open"}.data(), nullptr, nullptr, 0));
    INFO(PQresultErrorMessage(stats.get()));
    REQUIRE(PQresultStatus(stats.get()) == PGRES_TUPLES_OK);
    REQUIRE(PQntuples(stats.get()) == 1);
    CHECK(std::stoi(PQgetvalue(stats.get(), 0, 0)) >= 2);
}

TEST_CASE("admin view: a rule without the commands is refused and audited; refusals() shows it without literals",
          "[admin_view]") {
    AdminProxy proxy;
    auto owner = proxy.connect("app_owner", "operator");
    auto agent = proxy.connect("agent", "agent_r");

    const auto refused = run(agent.get(), "SELECT * FROM pgrail.sessions()");
    REQUIRE(refused.size() == 1);
    CHECK(refused[0].sqlstate == "42501");
    CHECK_THAT(refused[0].message, Catch::Contains("pgrail.sessions is not allowed"));
    CHECK(run(agent.get(), "SELECT * FROM pgrail.refusals(5)").at(0).sqlstate == "42501");
    CHECK(run(agent.get(), "SELECT * FROM pgrail.stats()").at(0).sqlstate == "42501");
    CHECK(run(agent.get(), "UPDATE profiles SET email = 'leak-me@example.com'").at(0).sqlstate == "42501");

    const auto latest = query(owner.get(), "SELECT * FROM pgrail.refusals(5)");
    REQUIRE(latest.size() == 4);  // newest first
    CHECK(latest[0].at("guard") == "require_where");
    CHECK(latest[0].at("sqlstate") == "42501");
    CHECK(latest[0].at("user_name") == "agent");
    CHECK(latest[0].at("rule") == "agents");
    CHECK(latest[0].at("statement_fingerprint") == "UPDATE profiles SET email = $1");
    CHECK_FALSE(latest[0].at("at").empty());
    CHECK(latest[3].at("guard") == "migrations");
    CHECK_THAT(latest[3].at("message"), Catch::Contains("pgrail.sessions"));
    CHECK(latest[3].at("session_id") == latest[0].at("session_id"));
    for (const auto& row : latest)
        for (const auto& [column, value] : row) CHECK(value.find("leak-me") == std::string::npos);
    CHECK(query(owner.get(), "SELECT * FROM pgrail.refusals(2)").size() == 2);
    CHECK(query(owner.get(), "SELECT * FROM pgrail.refusals()").size() == 4);
    // The limit is bounded, and says so.
    const auto too_many = run(owner.get(), "SELECT * FROM pgrail.refusals(100000)");
    CHECK(too_many.at(0).sqlstate == "22023");
    CHECK_THAT(too_many.at(0).message, Catch::Contains("from 1 to 1000"));

    // stats: one row per figure.
    std::map<std::string, std::string> stats;
    for (const auto& row : query(owner.get(), "SELECT name, value FROM pgrail.stats()")) stats[row.at("name")] = row.at("value");
    CHECK(std::stoll(stats.at("sessions_open")) >= 2);
    CHECK(std::stoll(stats.at("statements_deny")) >= 4);
    CHECK(std::stoll(stats.at("refusals_total")) >= 4);
    CHECK(std::stoll(stats.at("refusals_by_guard require_where")) >= 1);
    CHECK(std::stoll(stats.at("bytes_from_clients")) > 0);
    CHECK(stats.count("uptime_seconds") == 1);
    CHECK(stats.count("timeouts login") == 1);

    // Migrations are not configured here: their commands say so, the admin view works regardless.
    const auto status = run(owner.get(), "SELECT * FROM pgrail.status()");
    CHECK(status.at(0).sqlstate == "55000");

    // Every call is on record: the owner's as commands, the agent's as refusals.
    const auto lines = audit_lines(proxy.audit_path);
    std::map<std::string, int> calls;
    int refused_calls = 0;
    for (const auto& line : lines) {
        if (line.value("event", "") == "command" && line.value("outcome", "") == "ok") {
            ++calls[line.value("command", "")];
            CHECK(line.value("user", "") == "app_owner");
        }
        if (line.value("event", "") == "statement_refused" && line.value("guard", "") == "migrations") ++refused_calls;
        CHECK(line.dump().find("leak-me") == std::string::npos);
    }
    CHECK(calls["pgrail.refusals"] == 3);
    CHECK(calls["pgrail.stats"] == 1);
    CHECK(refused_calls == 3);
    bool limit_audited = false;
    for (const auto& line : lines)
        if (line.value("command", "") == "pgrail.refusals" && line.value("outcome", "") == "error")
            limit_audited = line.value("sqlstate", "") == "22023";
    CHECK(limit_audited);
}

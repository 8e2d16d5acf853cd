// The database's own backstop (issue 14) against PostgreSQL 15: DDL sent straight to the
// database, bypassing pgrail, is refused for every object kind event triggers see, as the agent,
// the schema owner and a superuser, with the catalog unchanged; temporary objects still work;
// pgrail's runner (in-band and on the command line) still migrates with its key and says what to
// configure without it; the attacks of docs/security.md fail; uninstall leaves nothing behind.
// Every test installs the backstop into a database of its own: the cluster's other databases
// see DDL from other tests.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "catalog_fingerprint.hpp"
#include "cluster.hpp"
#include "pgrail/migrations/backstop.hpp"
#include "pgrail/migrations/error.hpp"
#include "pgrail/migrations/registry.hpp"
#include "pgrail/migrations/runner.hpp"
#include "pgrail_process.hpp"
#include "seed_database.hpp"

using namespace pgrail::test;
namespace mig = pgrail::migrations;

namespace {

const std::string refusal(mig::backstop_refusal_message);
const std::string seed_version = "20261125090000";

// What a client sees of one statement's error (or its success).
struct Answer {
    bool ok = false;
    std::string sqlstate;
    std::string message;
    std::string detail;
    std::string hint;
    std::string value;  // first value of a successful query, if any
};

std::ostream& operator<<(std::ostream& out, const Answer& answer) {
    if (answer.ok) return out << "ok " << answer.value;
    return out << "ERROR " << answer.sqlstate << ": " << answer.message << " / DETAIL: " << answer.detail;
}

std::string field(const PGresult* result, int code) {
    const char* value = PQresultErrorField(result, code);
    return value == nullptr ? "" : value;
}

Answer ask(PGconn* conn, const std::string& sql, const std::vector<std::string>& parameters = {}) {
    std::vector<const char*> values;
    for (const auto& parameter : parameters) values.push_back(parameter.c_str());
    Result result(parameters.empty() ? PQexec(conn, sql.c_str())
                                     : PQexecParams(conn, sql.c_str(), static_cast<int>(values.size()), nullptr,
                                                    values.data(), nullptr, nullptr, 0));
    Answer answer;
    const auto status = PQresultStatus(result.get());
    answer.ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
    if (answer.ok) {
        if (PQntuples(result.get()) > 0 && PQnfields(result.get()) > 0) answer.value = PQgetvalue(result.get(), 0, 0);
        return answer;
    }
    answer.sqlstate = field(result.get(), PG_DIAG_SQLSTATE);
    answer.message = field(result.get(), PG_DIAG_MESSAGE_PRIMARY);
    answer.detail = field(result.get(), PG_DIAG_MESSAGE_DETAIL);
    answer.hint = field(result.get(), PG_DIAG_MESSAGE_HINT);
    if (answer.message.empty()) answer.message = PQerrorMessage(conn);
    return answer;
}

bool refused_by_backstop(const Answer& answer) {
    return !answer.ok && answer.sqlstate == "42501" && answer.message == refusal;
}

// The seed database (profiles, owned by app_owner) with objects of every kind, owned by a group
// role both the agent and app_owner are members of: whatever the database itself would let them
// do, only the backstop stands in the way. The backstop goes in last.
class BackstopDatabase {
public:
    explicit BackstopDatabase(bool install = true, bool allow_temporary = true) {
        std::random_device random;
        owners_ = "bs_owners_" + std::to_string(random() % 1000000000);
        auto maint = admin();
        REQUIRE(ask(maint.get(), "CREATE ROLE " + owners_ + " NOLOGIN").ok);
        REQUIRE(ask(maint.get(), "GRANT " + owners_ + " TO agent, app_owner").ok);
        auto conn = superuser();
        const std::string setup =
            "GRANT CREATE ON SCHEMA public TO agent, " + owners_ + ";\n"
            "GRANT CREATE ON DATABASE " + db_.name + " TO agent, " + owners_ + ";\n"
            "CREATE EXTENSION dblink;\n"
            "SET ROLE " + owners_ + ";\n"
            "CREATE TABLE bs_t (id int PRIMARY KEY, v text);\n"
            "INSERT INTO bs_t VALUES (1, 'a'), (2, 'b');\n"
            "CREATE INDEX bs_t_v ON bs_t (v);\n"
            "CREATE VIEW bs_v AS SELECT id FROM bs_t;\n"
            "CREATE MATERIALIZED VIEW bs_mv AS SELECT id FROM bs_t;\n"
            "CREATE SEQUENCE bs_s;\n"
            "CREATE TABLE bs_parted (x int) PARTITION BY RANGE (x);\n"
            "CREATE TABLE bs_part1 PARTITION OF bs_parted FOR VALUES FROM (0) TO (10);\n"
            "CREATE FUNCTION bs_f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"
            "CREATE PROCEDURE bs_p() LANGUAGE sql AS 'SELECT 1';\n"
            "CREATE TYPE bs_enum AS ENUM ('a');\n"
            "CREATE DOMAIN bs_dom AS int;\n"
            "CREATE TYPE bs_comp AS (a int);\n"
            "CREATE SCHEMA bs_schema;\n"
            "CREATE FUNCTION bs_trg() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';\n"
            "CREATE TRIGGER bs_trigger BEFORE INSERT ON bs_t FOR EACH ROW EXECUTE FUNCTION bs_trg();\n"
            "CREATE POLICY bs_pol ON bs_t USING (true);\n"
            "CREATE RULE bs_rule AS ON INSERT TO bs_v DO INSTEAD NOTHING;\n"
            // Code already in the database that runs DDL: pgrail cannot read it, the backstop stops it.
            "CREATE FUNCTION bs_exec(q text) RETURNS void LANGUAGE plpgsql AS $f$BEGIN EXECUTE q; END$f$;\n"
            "CREATE PROCEDURE bs_proc_ddl() LANGUAGE plpgsql AS $f$BEGIN CREATE TABLE bs_from_proc (x int); END$f$;\n"
            "RESET ROLE;\n";
        for (const auto& outcome : run(conn.get(), setup)) {
            INFO(outcome);
            REQUIRE(outcome.sqlstate.empty());
        }
        if (install) install_backstop(allow_temporary);
    }
    ~BackstopDatabase() {
        // The database goes first (SeedDatabase's destructor would come after this one).
        auto maint = admin();
        (void)run(maint.get(), "DROP DATABASE IF EXISTS " + db_.name + " WITH (FORCE)");
        (void)run(maint.get(), "DROP ROLE IF EXISTS " + owners_);
        std::filesystem::remove_all(dir_);
    }
    BackstopDatabase(const BackstopDatabase&) = delete;
    BackstopDatabase& operator=(const BackstopDatabase&) = delete;

    void install_backstop(bool allow_temporary = true) const {
        (void)mig::install_backstop({superuser_conninfo(), key_file_, allow_temporary});
    }

    [[nodiscard]] const std::string& name() const { return db_.name; }
    [[nodiscard]] const std::string& key_file() const { return key_file_; }
    [[nodiscard]] std::string key() const { return mig::read_backstop_key(key_file_); }
    [[nodiscard]] const std::string& dir() const { return dir_; }
    [[nodiscard]] const SeedDatabase& seed() const { return db_; }
    [[nodiscard]] std::string conninfo_for(const std::string& user) const { return db_.conninfo_for(user); }
    [[nodiscard]] std::string superuser_conninfo() const { return db_.conninfo_for("postgres"); }

    // Straight to PostgreSQL, bypassing pgrail.
    [[nodiscard]] Conn direct(const std::string& user, const std::string& extra = "") const {
        Conn conn(PQconnectdb((conninfo_for(user) + " " + extra).c_str()));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        PQsetNoticeProcessor(conn.get(), [](void*, const char*) {}, nullptr);
        return conn;
    }
    [[nodiscard]] Conn superuser() const { return direct("postgres"); }

    // A runner's connection: the key as a bound parameter, as pgrail's runner sends it.
    [[nodiscard]] Conn authorized(const std::string& user) const {
        auto conn = direct(user, "application_name=pgrail-migrate");
        REQUIRE(ask(conn.get(), "SELECT pgrail_backstop.authorize($1)", {key()}).value == "t");
        return conn;
    }

    [[nodiscard]] Fingerprint fingerprint() const {
        auto conn = superuser();
        return take_fingerprint(conn.get(), {"public.bs_t", "public.profiles"});
    }

private:
    SeedDatabase db_{"backstop_"};
    std::string owners_;
    std::string dir_ = PgrailProcess::make_temp_dir();
    std::string key_file_ = dir_ + "/backstop.key";
};

struct DdlCase {
    const char* kind;
    const char* sql;
    const char* tag;  // the command tag the refusal's DETAIL names
};

// Every object kind PostgreSQL 15's event triggers see, and the spellings that reach them.
const std::vector<DdlCase> ddl_cases = {
    {"table", "CREATE TABLE bs_new (x int)", "CREATE TABLE"},
    {"table", "CREATE UNLOGGED TABLE bs_new (x int)", "CREATE TABLE"},
    {"table", "CREATE TABLE bs_new AS SELECT 1 AS x", "CREATE TABLE AS"},
    {"table", "SELECT 1 AS x INTO bs_new", "SELECT INTO"},
    {"table", "CREATE TABLE bs_part2 PARTITION OF bs_parted FOR VALUES FROM (10) TO (20)", "CREATE TABLE"},
    {"table", "CREATE TABLE IF NOT EXISTS bs_new (x int)", "CREATE TABLE"},
    {"table", "DROP TABLE bs_t CASCADE", "DROP TABLE"},
    {"table", "DROP TABLE IF EXISTS bs_part1", "DROP TABLE"},
    {"table", "ALTER TABLE bs_t RENAME TO bs_t2", "ALTER TABLE"},
    {"table", "ALTER TABLE bs_t SET SCHEMA bs_schema", "ALTER TABLE"},
    {"table", "ALTER TABLE bs_t OWNER TO CURRENT_USER", "ALTER TABLE"},
    {"table", "ALTER TABLE bs_t ENABLE ROW LEVEL SECURITY", "ALTER TABLE"},
    {"table", "ALTER TABLE bs_t SET (fillfactor = 50)", "ALTER TABLE"},
    {"table", "ALTER TABLE bs_t DISABLE TRIGGER bs_trigger", "ALTER TABLE"},
    {"table", "ALTER TABLE bs_parted DETACH PARTITION bs_part1", "ALTER TABLE"},
    // Commits its first half before any end trigger could refuse: refused at the start.
    {"table", "ALTER TABLE bs_parted DETACH PARTITION bs_part1 CONCURRENTLY", "ALTER TABLE"},
    {"column", "ALTER TABLE bs_t ADD COLUMN w int", "ALTER TABLE"},
    {"column", "ALTER TABLE bs_t DROP COLUMN v", "ALTER TABLE"},
    {"column", "ALTER TABLE bs_t RENAME COLUMN v TO w", "ALTER TABLE"},
    {"column", "ALTER TABLE bs_t ALTER COLUMN v SET NOT NULL", "ALTER TABLE"},
    {"column", "ALTER TABLE bs_t ALTER COLUMN v SET DEFAULT 'x'", "ALTER TABLE"},
    {"column", "ALTER TABLE bs_t ALTER COLUMN v TYPE int USING length(v)", "ALTER TABLE"},  // a rewrite
    {"constraint", "ALTER TABLE bs_t ADD CONSTRAINT bs_c CHECK (id > 0)", "ALTER TABLE"},
    {"constraint", "ALTER TABLE bs_t DROP CONSTRAINT bs_t_pkey", "ALTER TABLE"},
    {"index", "CREATE INDEX bs_i ON bs_t (id, v)", "CREATE INDEX"},
    {"index", "CREATE UNIQUE INDEX bs_i ON bs_t (v)", "CREATE INDEX"},
    {"index", "CREATE INDEX CONCURRENTLY bs_i ON bs_t (id, v)", "CREATE INDEX"},
    {"index", "DROP INDEX bs_t_v", "DROP INDEX"},
    {"index", "DROP INDEX CONCURRENTLY bs_t_v", "DROP INDEX"},
    {"index", "ALTER INDEX bs_t_v RENAME TO bs_t_w", "ALTER INDEX"},
    {"view", "CREATE VIEW bs_v2 AS SELECT 1 AS x", "CREATE VIEW"},
    {"view", "CREATE OR REPLACE VIEW bs_v AS SELECT id, 1 AS y FROM bs_t", "CREATE VIEW"},
    {"view", "ALTER VIEW bs_v RENAME TO bs_v3", "ALTER VIEW"},
    {"view", "DROP VIEW bs_v", "DROP VIEW"},
    {"materialized view", "CREATE MATERIALIZED VIEW bs_mv2 AS SELECT 1 AS x", "CREATE MATERIALIZED VIEW"},
    {"materialized view", "ALTER MATERIALIZED VIEW bs_mv RENAME TO bs_mv3", "ALTER MATERIALIZED VIEW"},
    {"materialized view", "DROP MATERIALIZED VIEW bs_mv", "DROP MATERIALIZED VIEW"},
    {"sequence", "CREATE SEQUENCE bs_s2", "CREATE SEQUENCE"},
    {"sequence", "ALTER SEQUENCE bs_s INCREMENT BY 2", "ALTER SEQUENCE"},
    {"sequence", "DROP SEQUENCE bs_s", "DROP SEQUENCE"},
    {"function", "CREATE FUNCTION bs_f2() RETURNS int LANGUAGE sql AS 'SELECT 1'", "CREATE FUNCTION"},
    {"function", "CREATE OR REPLACE FUNCTION bs_f() RETURNS int LANGUAGE sql AS 'SELECT 2'", "CREATE FUNCTION"},
    {"function", "ALTER FUNCTION bs_f() SECURITY DEFINER", "ALTER FUNCTION"},
    {"function", "DROP FUNCTION bs_f()", "DROP FUNCTION"},
    {"procedure", "CREATE PROCEDURE bs_p2() LANGUAGE sql AS 'SELECT 1'", "CREATE PROCEDURE"},
    {"procedure", "DROP PROCEDURE bs_p()", "DROP PROCEDURE"},
    {"aggregate", "CREATE AGGREGATE bs_agg (int) (sfunc = int4pl, stype = int)", "CREATE AGGREGATE"},
    {"trigger", "CREATE TRIGGER bs_trigger2 BEFORE UPDATE ON bs_t FOR EACH ROW EXECUTE FUNCTION bs_trg()",
     "CREATE TRIGGER"},
    {"trigger", "ALTER TRIGGER bs_trigger ON bs_t RENAME TO bs_trigger3", "ALTER TRIGGER"},
    {"trigger", "DROP TRIGGER bs_trigger ON bs_t", "DROP TRIGGER"},
    {"type", "CREATE TYPE bs_comp2 AS (x int)", "CREATE TYPE"},
    {"type", "ALTER TYPE bs_comp ADD ATTRIBUTE b int", "ALTER TYPE"},
    {"type", "DROP TYPE bs_comp", "DROP TYPE"},
    {"enum", "CREATE TYPE bs_enum2 AS ENUM ('x')", "CREATE TYPE"},
    {"enum", "ALTER TYPE bs_enum ADD VALUE 'b'", "ALTER TYPE"},
    {"domain", "CREATE DOMAIN bs_dom2 AS text", "CREATE DOMAIN"},
    {"domain", "ALTER DOMAIN bs_dom SET NOT NULL", "ALTER DOMAIN"},
    {"domain", "DROP DOMAIN bs_dom", "DROP DOMAIN"},
    {"schema", "CREATE SCHEMA bs_schema2", "CREATE SCHEMA"},
    {"schema", "ALTER SCHEMA bs_schema RENAME TO bs_schema3", "ALTER SCHEMA"},
    {"schema", "DROP SCHEMA bs_schema CASCADE", "DROP SCHEMA"},
    {"extension", "CREATE EXTENSION pgcrypto", "CREATE EXTENSION"},
    {"extension", "DROP EXTENSION dblink", "DROP EXTENSION"},
    {"policy", "CREATE POLICY bs_pol2 ON bs_t USING (id > 0)", "CREATE POLICY"},
    {"policy", "ALTER POLICY bs_pol ON bs_t USING (false)", "ALTER POLICY"},
    {"policy", "DROP POLICY bs_pol ON bs_t", "DROP POLICY"},
    {"rule", "CREATE RULE bs_rule2 AS ON UPDATE TO bs_v DO INSTEAD NOTHING", "CREATE RULE"},
    {"rule", "DROP RULE bs_rule ON bs_v", "DROP RULE"},
    {"publication", "CREATE PUBLICATION bs_pub FOR TABLE bs_t", "CREATE PUBLICATION"},
    {"statistics", "CREATE STATISTICS bs_st ON id, v FROM bs_t", "CREATE STATISTICS"},
    {"collation", "CREATE COLLATION bs_coll FROM \"C\"", "CREATE COLLATION"},
    {"operator", "CREATE OPERATOR === (leftarg = int, rightarg = int, function = int4eq)", "CREATE OPERATOR"},
    {"text search", "CREATE TEXT SEARCH CONFIGURATION bs_ts (COPY = simple)", "CREATE TEXT SEARCH CONFIGURATION"},
    {"cast", "CREATE CAST (bs_comp AS text) WITH INOUT", "CREATE CAST"},
    {"foreign data", "CREATE FOREIGN DATA WRAPPER bs_fdw", "CREATE FOREIGN DATA WRAPPER"},
    {"comment", "COMMENT ON TABLE bs_t IS 'x'", "COMMENT"},
    {"comment", "COMMENT ON COLUMN bs_t.v IS 'x'", "COMMENT"},
    {"grant", "GRANT SELECT ON bs_t TO PUBLIC", "GRANT"},
    {"grant", "REVOKE SELECT ON bs_t FROM agent", "REVOKE"},
    {"grant", "GRANT USAGE ON SCHEMA bs_schema TO PUBLIC", "GRANT"},
    {"default privileges", "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC", "ALTER DEFAULT PRIVILEGES"},
    {"security label", "SECURITY LABEL ON TABLE bs_t IS 'x'", "SECURITY LABEL"},
    // A temporary table that inherits a permanent one changes what the parent's queries read.
    {"temporary", "CREATE TEMP TABLE bs_tmp () INHERITS (bs_t)", "CREATE TABLE"},
    {"code in the database", "SELECT bs_exec('CREATE TABLE bs_new (x int)')", "CREATE TABLE"},
    {"code in the database", "DO $$BEGIN EXECUTE 'DROP TABLE bs_t CASCADE'; END$$", "DROP TABLE"},
    {"code in the database", "CALL bs_proc_ddl()", "CREATE TABLE"},
};

}  // namespace

TEST_CASE("the backstop refuses DDL sent straight to PostgreSQL, for every object kind and every role",
          "[backstop]") {
    BackstopDatabase db;
    const auto before = db.fingerprint();
    int runs = 0;
    for (const std::string user : {"agent", "app_owner", "postgres"}) {
        auto conn = db.direct(user);
        for (const auto& c : ddl_cases) {
            ++runs;
            const auto answer = ask(conn.get(), c.sql);
            INFO(user << " [" << c.kind << "] " << c.sql << "\n  -> " << answer);
            CHECK(refused_by_backstop(answer));
            CHECK_THAT(answer.detail, Catch::StartsWith(c.tag));
            CHECK_THAT(answer.hint, Catch::Contains("pgrail.propose_migration") && Catch::Contains(".up.sql"));
            const auto after = db.fingerprint();
            if (!(after == before)) FAIL_CHECK("the catalog changed:\n" << describe_difference(before, after));
        }
        // Not left half done by a refused CONCURRENTLY: no invalid index, no detach pending.
        CHECK(scalar(conn.get(), "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == "0");
        CHECK(scalar(conn.get(), "SELECT count(*) FROM pg_inherits WHERE inhdetachpending") == "0");
    }
    CHECK(runs == 3 * static_cast<int>(ddl_cases.size()));
}

TEST_CASE("what is not a schema change passes the backstop", "[backstop]") {
    BackstopDatabase db;
    auto agent = db.direct("agent");
    for (const char* sql : {"INSERT INTO bs_t VALUES (3, 'c')", "UPDATE bs_t SET v = 'z' WHERE id = 3",
                            "DELETE FROM bs_t WHERE id = 3", "REFRESH MATERIALIZED VIEW bs_mv",
                            "REFRESH MATERIALIZED VIEW CONCURRENTLY bs_mv", "ANALYZE bs_t", "VACUUM bs_t",
                            "SELECT nextval('bs_s')", "TRUNCATE bs_t", "CREATE TABLE IF NOT EXISTS profiles (x int)",
                            "DROP TABLE IF EXISTS bs_nothing_here"}) {
        INFO(sql);
        // REFRESH ... CONCURRENTLY needs a unique index; its own error is fine, the backstop's is not.
        const auto answer = ask(agent.get(), sql);
        CHECK_FALSE(refused_by_backstop(answer));
        if (std::string(sql).find("CONCURRENTLY") == std::string::npos) CHECK(answer.ok);
    }
}

TEST_CASE("temporary tables, views and sequences still work; --no-temp refuses them", "[backstop]") {
    SECTION("allowed (the default)") {
        BackstopDatabase db;
        const auto before = db.fingerprint();
        auto agent = db.direct("agent");
        for (const char* sql :
             {"CREATE TEMP TABLE bs_tmp (id serial PRIMARY KEY, x int DEFAULT 3 CHECK (x > 0), y text)",
              "INSERT INTO bs_tmp (y) VALUES ('a')", "ALTER TABLE pg_temp.bs_tmp ADD COLUMN z int",
              "ALTER TABLE pg_temp.bs_tmp ALTER COLUMN x TYPE bigint", "ALTER TABLE pg_temp.bs_tmp DROP COLUMN y",
              "CREATE TEMP VIEW bs_tmp_v AS SELECT * FROM bs_tmp", "CREATE TEMP SEQUENCE bs_tmp_s",
              "ALTER SEQUENCE pg_temp.bs_tmp_s INCREMENT BY 5", "SELECT 1 AS x INTO TEMP bs_tmp_into",
              "CREATE TEMP TABLE bs_tmp_as AS SELECT * FROM bs_t", "DROP VIEW pg_temp.bs_tmp_v",
              "DROP TABLE pg_temp.bs_tmp, pg_temp.bs_tmp_into", "DROP SEQUENCE pg_temp.bs_tmp_s",
              "CREATE TEMP TABLE bs_tmp2 (x int)", "CREATE TEMP VIEW bs_tmp2_v AS SELECT x FROM bs_tmp2",
              "DROP TABLE pg_temp.bs_tmp2 CASCADE"}) {
            const auto answer = ask(agent.get(), sql);
            INFO(sql << " -> " << answer);
            CHECK(answer.ok);
        }
        // A false refusal by design: an index (CONCURRENTLY would commit before an end trigger
        // could refuse it) on a temporary table needs the runner.
        CHECK(refused_by_backstop(ask(agent.get(), "CREATE INDEX ON pg_temp.bs_tmp_as (id)")));
        // Temporary objects never count in the fingerprint; nothing else changed.
        const auto after = db.fingerprint();
        if (!(after == before)) FAIL_CHECK(describe_difference(before, after));
    }
    SECTION("--no-temp") {
        BackstopDatabase db(true, false);
        auto agent = db.direct("agent");
        for (const char* sql : {"CREATE TEMP TABLE bs_tmp (x int)", "CREATE TEMP VIEW bs_tmp_v AS SELECT 1 AS x",
                                "SELECT 1 AS x INTO TEMP bs_tmp_into"}) {
            const auto answer = ask(agent.get(), sql);
            INFO(sql << " -> " << answer);
            CHECK(refused_by_backstop(answer));
        }
        CHECK(mig::read_backstop_status(db.superuser_conninfo()).allows_temporary == false);
    }
}

TEST_CASE("attacks on the runner's identity fail", "[backstop]") {
    BackstopDatabase db;
    const std::string ddl = "CREATE TABLE bs_attack (x int)";
    // The runner: app_owner, authorized once on its connection, idle afterwards.
    auto runner = db.authorized("app_owner");
    const auto runner_pid = std::to_string(PQbackendPID(runner.get()));
    auto agent = db.direct("agent", "application_name=pgrail-migrate");

    SECTION("a wrong key is a plain false, and nothing changes") {
        CHECK(ask(agent.get(), "SELECT pgrail_backstop.authorize($1)", {"wrong"}).value == "f");
        CHECK(ask(agent.get(), "SELECT pgrail_backstop.authorize(NULL)").value == "f");
        CHECK(refused_by_backstop(ask(agent.get(), ddl)));
    }
    SECTION("everything pg_stat_activity shows of the runner is worth nothing") {
        // Same role, same application_name, another backend: it sees the runner's query text,
        // which has $1 only (the key travels as a bound parameter), and it is not the runner.
        auto twin = db.direct("app_owner", "application_name=pgrail-migrate");
        const auto text = ask(twin.get(), "SELECT query FROM pg_stat_activity WHERE pid = " + runner_pid).value;
        CHECK_THAT(text, Catch::Contains("pgrail_backstop.authorize($1)"));
        CHECK(text.find(db.key()) == std::string::npos);
        CHECK(ask(twin.get(), "SELECT pgrail_backstop.authorize($1)", {text}).value == "f");
        CHECK(refused_by_backstop(ask(twin.get(), ddl)));
        CHECK(refused_by_backstop(ask(agent.get(), ddl)));
    }
    SECTION("the backstop's tables and helpers are out of reach") {
        for (const char* sql : {"SELECT * FROM pgrail_backstop.runner_key", "SELECT * FROM pgrail_backstop.runner_sessions",
                                "INSERT INTO pgrail_backstop.runner_sessions (pid, backend_start) "
                                "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                                "DELETE FROM pgrail_backstop.runner_key", "SELECT pgrail_backstop.is_runner()",
                                "ALTER EVENT TRIGGER pgrail_backstop_ddl_command_start DISABLE",
                                "DROP EVENT TRIGGER pgrail_backstop_sql_drop",
                                "CREATE FUNCTION pgrail_backstop.authorize(key varchar) RETURNS boolean "
                                "LANGUAGE sql AS 'SELECT true'"}) {
            for (auto* conn : {agent.get(), runner.get()}) {
                const auto answer = ask(conn, sql);
                INFO(sql << " -> " << answer);
                CHECK_FALSE(answer.ok);
                CHECK(answer.sqlstate == "42501");
            }
        }
        // Even the stored hash (read here by a superuser, as a leak would give it) is no key.
        auto su = db.superuser();
        const auto hash = scalar(su.get(), "SELECT encode(key_sha256, 'hex') FROM pgrail_backstop.runner_key");
        CHECK(hash.size() == 64);
        CHECK(ask(agent.get(), "SELECT pgrail_backstop.authorize($1)", {hash}).value == "f");
        CHECK(refused_by_backstop(ask(agent.get(), ddl)));
    }
    SECTION("a row with the agent's pid but another backend start authorizes nothing") {
        // What a reused pid would look like: the runner's row outlives its backend.
        auto su = db.superuser();
        const auto agent_pid = std::to_string(PQbackendPID(agent.get()));
        REQUIRE(ask(su.get(), "INSERT INTO pgrail_backstop.runner_sessions (pid, backend_start) VALUES (" + agent_pid +
                                  ", now() - interval '1 hour')")
                    .ok);
        CHECK(refused_by_backstop(ask(agent.get(), ddl)));
        // The next authorize() forgets rows of backends that are gone.
        auto gone = db.authorized("app_owner");
        const auto gone_pid = std::to_string(PQbackendPID(gone.get()));
        gone.reset();
        CHECK(eventually([&] { return scalar(su.get(), "SELECT count(*) FROM pg_stat_activity WHERE pid = " + gone_pid) == "0"; },
                         std::chrono::seconds(5)));
        auto next = db.authorized("app_owner");
        CHECK(scalar(su.get(), "SELECT count(*) FROM pgrail_backstop.runner_sessions WHERE pid = " + gone_pid) == "0");
    }
    SECTION("a new backend opened by the runner's own backend (dblink) is not the runner") {
        const auto self = db.conninfo_for("app_owner");
        const auto answer = ask(runner.get(), "SELECT dblink_exec($1, $2)", {self, ddl});
        INFO(answer);
        CHECK_FALSE(answer.ok);
        CHECK_THAT(answer.message + answer.detail, Catch::Contains("pgrail backstop"));
    }
    SECTION("the runner itself changes the schema") {
        CHECK(ask(runner.get(), ddl).ok);
        CHECK(ask(runner.get(), "DROP TABLE bs_attack").ok);
        CHECK(ask(runner.get(), "ALTER TABLE bs_t ALTER COLUMN v TYPE int USING length(v)").ok);
    }
    SECTION("session_replication_role = replica: only a superuser can, and pgrail refuses it") {
        const auto agent_set = ask(agent.get(), "SET session_replication_role = replica");
        CHECK_FALSE(agent_set.ok);
        CHECK(agent_set.sqlstate == "42501");
        PgrailProcess proxy("policy: " + source_dir() + "/policies/default.yaml\naudit: {file: " + db.dir() +
                            "/audit.jsonl}\n");
        Conn through(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(proxy.port()) + " dbname=" + db.name() +
                                  " user=postgres password=postgres")
                                     .c_str()));
        REQUIRE(PQstatus(through.get()) == CONNECTION_OK);
        const auto refused = ask(through.get(), "SET session_replication_role = replica");
        CHECK(refused.sqlstate == "42501");
        CHECK_THAT(refused.message, Catch::StartsWith("pgrail"));
        // The documented limit: a superuser straight on the database skips event triggers so.
        auto su = db.superuser();
        CHECK(ask(su.get(), "SET session_replication_role = replica").ok);
        CHECK(ask(su.get(), ddl).ok);
        CHECK(ask(su.get(), "DROP TABLE bs_attack").ok);
    }
}

TEST_CASE("default privileges granted before the install give nobody the backstop's tables", "[backstop]") {
    BackstopDatabase db(false);
    auto su = db.superuser();
    REQUIRE(ask(su.get(), "ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT ALL ON TABLES TO agent").ok);
    REQUIRE(ask(su.get(), "ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT EXECUTE ON FUNCTIONS TO agent").ok);
    db.install_backstop();
    auto agent = db.direct("agent");
    for (const char* sql : {"INSERT INTO pgrail_backstop.runner_sessions (pid, backend_start) "
                            "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                            "SELECT * FROM pgrail_backstop.runner_key", "SELECT pgrail_backstop.is_runner()"}) {
        const auto answer = ask(agent.get(), sql);
        INFO(sql << " -> " << answer);
        CHECK(answer.sqlstate == "42501");
    }
    CHECK(refused_by_backstop(ask(agent.get(), "CREATE TABLE bs_new (x int)")));
}

TEST_CASE("pgrail's ledger is written by the runner only", "[backstop]") {
    BackstopDatabase db;
    const auto common = "migrate --dir " + source_dir() + "/migrations --dsn '" + db.conninfo_for("app_owner") + "' ";
    const auto [code, out] = pgrail_cli(common + "--backstop-key-file " + db.key_file() + " up");
    INFO(out);
    REQUIRE(code == 0);
    auto owner = db.direct("app_owner");  // the ledger's owner, as the runner's role
    // schema_migrations, migration_events, migration_proposals and schema_fingerprints.
    CHECK(scalar(owner.get(), "SELECT count(*) FROM pg_trigger WHERE tgname = 'pgrail_backstop_guard'") == "4");
    for (const char* sql : {"INSERT INTO pgrail.schema_migrations (version, name, checksum, applied_by, execution_ms) "
                            "VALUES ('1', 'forged', 'x', 'x', 0)",
                            "INSERT INTO pgrail.migration_proposals (version, name, up_sql, down_sql, no_transaction, "
                            "checksum, verification, state, proposed_by) VALUES ('9', 'forged', 'DROP TABLE profiles', "
                            "'SELECT 1', false, 'x', 'passed', 'approved', 'x')",
                            "UPDATE pgrail.migration_proposals SET state = 'approved'",
                            "DELETE FROM pgrail.schema_migrations", "UPDATE pgrail.migration_events SET outcome = 'ok'",
                            "TRUNCATE pgrail.migration_events",
                            "ALTER TABLE pgrail.schema_migrations DISABLE TRIGGER pgrail_backstop_guard",
                            "DROP TRIGGER pgrail_backstop_guard ON pgrail.schema_migrations"}) {
        const auto answer = ask(owner.get(), sql);
        INFO(sql << " -> " << answer);
        CHECK(refused_by_backstop(answer));
    }
    CHECK(scalar(owner.get(), "SELECT count(*) FROM pgrail.schema_migrations") == "1");
    const auto [down, down_out] = pgrail_cli(common + "--backstop-key-file " + db.key_file() + " down");
    INFO(down_out);
    CHECK(down == 0);
}

TEST_CASE("the seed scenario through pgrail with the backstop on; without the key the runner says so",
          "[backstop][inband]") {
    BackstopDatabase db;
    const auto migrations = "migrations: {dir: " + source_dir() + "/migrations, migrator: \"" +
                            db.conninfo_for("app_owner") + "\"";
    PgrailProcess proxy("policy: " + source_dir() + "/policies/default.yaml\naudit: {file: " + db.dir() +
                        "/audit.jsonl, fsync: always}\n" + migrations + ", backstop_key_file: " + db.key_file() +
                        "}\n");
    const auto through = [&](const PgrailProcess& process, const std::string& user) {
        Conn conn(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(process.port()) + " dbname=" + db.name() +
                               " user=" + user + " password=" + user)
                                  .c_str()));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        return conn;
    };
    auto agent = through(proxy, "agent");
    auto owner_direct = db.direct("app_owner");

    // pgrail refuses the ad hoc change; straight on the database, the backstop does.
    const auto by_pgrail = ask(agent.get(), "ALTER TABLE profiles ADD COLUMN timezone text");
    CHECK(by_pgrail.sqlstate == "42501");
    CHECK_THAT(by_pgrail.message, Catch::StartsWith("pgrail"));
    CHECK(refused_by_backstop(ask(owner_direct.get(), "ALTER TABLE profiles ADD COLUMN timezone text")));
    CHECK(db.seed().timezone_columns() == "0");

    // status() says the backstop is there, on every row.
    const auto status = run(agent.get(), "SELECT * FROM pgrail.status()");
    REQUIRE(status.at(0).status == "PGRES_TUPLES_OK");
    REQUIRE(status[0].rows.size() == 1);
    CHECK(status[0].columns.back().starts_with("backstop:"));
    CHECK_THAT(status[0].rows[0].back().value_or(""), Catch::StartsWith("installed by pgrail " PGRAIL_VERSION));

    // The registered migration applies and rolls back through pgrail's runner.
    const auto relfilenode = scalar(owner_direct.get(), "SELECT pg_relation_filenode('profiles')");
    const auto applied = run(agent.get(), "SELECT * FROM pgrail.migrate_up()");
    REQUIRE(applied.at(0).status == "PGRES_TUPLES_OK");
    CHECK(applied[0].rows.at(0)[0] == seed_version);
    CHECK(db.seed().timezone_columns() == "1");
    CHECK(scalar(owner_direct.get(), "SELECT count(*) FROM profiles WHERE timezone IS NULL") == "4");
    CHECK(scalar(owner_direct.get(), "SELECT pg_relation_filenode('profiles')") == relfilenode);
    auto owner = through(proxy, "app_owner");
    const auto rolled_back = run(owner.get(), "SELECT * FROM pgrail.migrate_down('" + seed_version + "')");
    REQUIRE(rolled_back.at(0).status == "PGRES_TUPLES_OK");
    CHECK(db.seed().timezone_columns() == "0");
    CHECK(scalar(owner_direct.get(), "SELECT string_agg(event, ',' ORDER BY id) FROM pgrail.migration_events") ==
          "applied,rolled_back");
    CHECK(eventually([&] { return proxy.log().find("backstop: installed by pgrail") != std::string::npos; },
                     std::chrono::seconds(5)));

    // A pgrail whose runner has no key: the database refuses, and the error says what to configure.
    PgrailProcess keyless("policy: " + source_dir() + "/policies/default.yaml\naudit: {file: " + db.dir() +
                          "/audit2.jsonl}\n" + migrations + "}\n");
    auto agent2 = through(keyless, "agent");
    const auto failed = ask(agent2.get(), "SELECT * FROM pgrail.migrate_up()");
    INFO(failed);
    CHECK(failed.sqlstate == "42501");
    CHECK_THAT(failed.message, Catch::Contains(refusal));
    CHECK_THAT(failed.hint, Catch::Contains("backstop_key_file"));
    CHECK(db.seed().timezone_columns() == "0");

    // A wrong key is refused before anything runs.
    const auto wrong_key = db.dir() + "/wrong.key";
    write_file(wrong_key, std::string(64, '0') + "\n");
    PgrailProcess wrong("policy: " + source_dir() + "/policies/default.yaml\naudit: {file: " + db.dir() +
                        "/audit3.jsonl}\n" + migrations + ", backstop_key_file: " + wrong_key + "}\n");
    auto agent3 = through(wrong, "agent");
    const auto refused_key = ask(agent3.get(), "SELECT * FROM pgrail.migrate_up()");
    CHECK(refused_key.sqlstate == "42501");
    CHECK_THAT(refused_key.message, Catch::Contains("refused the migration runner's key"));
    CHECK(db.seed().timezone_columns() == "0");
}

TEST_CASE("pgrail serve warns at start when the migration database has no backstop", "[backstop]") {
    SeedDatabase db{"backstop_none_"};
    PgrailProcess proxy("policy: " + source_dir() + "/policies/default.yaml\nmigrations: {dir: " + source_dir() +
                        "/migrations, migrator: \"" + db.conninfo_for("app_owner") + "\"}\n");
    CHECK(eventually([&] { return proxy.log().find("backstop: not installed") != std::string::npos; },
                     std::chrono::seconds(10)));
    CHECK(proxy.running());
    // A key file that cannot be read is a configuration error: pgrail does not start.
    const auto dir = PgrailProcess::make_temp_dir();
    write_file(dir + "/pgrail.yaml", "policy: " + source_dir() + "/policies/default.yaml\nmigrations: {dir: " +
                                         source_dir() + "/migrations, backstop_key_file: " + dir + "/missing.key}\n");
    const auto [code, out] = pgrail_cli("serve --config " + dir + "/pgrail.yaml");
    CHECK(code == 2);
    CHECK_THAT(out, Catch::Contains("migrations.backstop_key_file") && Catch::Contains("does not exist"));
    std::filesystem::remove_all(dir);
}

TEST_CASE("pgrail migrate up|down|status|verify on the command line with the backstop", "[backstop]") {
    BackstopDatabase db;
    const auto common = "migrate --dir " + source_dir() + "/migrations --dsn '" + db.conninfo_for("app_owner") + "' ";
    const auto keyed = common + "--backstop-key-file " + db.key_file() + " ";

    const auto [status_code, status_out] = pgrail_cli(common + "status");
    CHECK(status_code == 0);
    CHECK_THAT(status_out, Catch::Contains("backstop: installed by pgrail " PGRAIL_VERSION));

    const auto [keyless, keyless_out] = pgrail_cli(common + "up");
    CHECK(keyless == 1);
    CHECK_THAT(keyless_out, Catch::Contains("[42501]") && Catch::Contains(refusal) &&
                                Catch::Contains("--backstop-key-file"));
    CHECK(db.seed().timezone_columns() == "0");

    const auto [up, up_out] = pgrail_cli(keyed + "up");
    INFO(up_out);
    CHECK(up == 0);
    CHECK(db.seed().timezone_columns() == "1");
    const auto [down_keyless, down_keyless_out] = pgrail_cli(common + "down");
    CHECK(down_keyless == 1);
    CHECK(db.seed().timezone_columns() == "1");
    const auto [down, down_out] = pgrail_cli(keyed + "down");
    INFO(down_out);
    CHECK(down == 0);
    CHECK(db.seed().timezone_columns() == "0");

    // verify: the target dumped by a role that may not read the backstop's key table, the scratch
    // copy loaded without the backstop (it would refuse the scratch run), the outcome recorded.
    mig::RunnerOptions options;
    options.conninfo = db.conninfo_for("app_owner");
    options.scratch_conninfo = db.superuser_conninfo();
    options.backstop_key_file = db.key_file();
    mig::Runner runner(std::make_shared<const mig::Registry>(mig::Registry::load(source_dir() + "/migrations")),
                       options);
    const auto results = runner.verify(seed_version);
    REQUIRE(results.size() == 1);
    INFO(results[0].detail);
    CHECK(results[0].passed);
    CHECK(runner.has_passing_verify(seed_version, results[0].checksum));
    CHECK(mig::rewrites_text(results[0]) == "no table rewritten");
    // With sample rows: the tables' rows read from the target by the schema's owner (never the
    // backstop's key table), loaded into the scratch copy.
    options.verify_sample_rows = 10;
    mig::Runner sampling(std::make_shared<const mig::Registry>(mig::Registry::load(source_dir() + "/migrations")),
                         options);
    const auto sampled = sampling.verify(seed_version);
    REQUIRE(sampled.size() == 1);
    INFO(sampled[0].detail);
    CHECK(sampled[0].passed);
    // profiles' 4 rows and bs_t's 2; nothing of the backstop's, nothing skipped.
    CHECK(mig::sample_text(sampled[0].sample) == "6 rows in 2 tables (at most 10 per table)");
    auto su = db.superuser();
    CHECK(scalar(su.get(), "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgrail_verify_%'") == "0");
}

TEST_CASE("the runner's key is never quoted back, whatever the role's defaults", "[backstop]") {
    // A role's or database's defaults (ALTER ROLE ... SET, which the event triggers do not see)
    // can make authorize() fail while the key is bound, and log_parameter_max_length_on_error
    // would then quote the bound key in the error's CONTEXT (helper 74: it reached in-band
    // callers of migrate_up, agents included).
    BackstopDatabase db;
    auto su = db.superuser();
    const auto defaults = "ALTER ROLE app_owner IN DATABASE " + db.name() + " SET ";
    REQUIRE(ask(su.get(), defaults + "log_parameter_max_length_on_error = -1").ok);
    REQUIRE(ask(su.get(), defaults + "default_transaction_read_only = on").ok);
    const auto keyed = "migrate --dir " + source_dir() + "/migrations --dsn '" + db.conninfo_for("app_owner") +
                       "' --backstop-key-file " + db.key_file() + " ";
    const auto [refused, refused_out] = pgrail_cli(keyed + "up");
    INFO(refused_out);
    CHECK(refused == 1);
    CHECK_THAT(refused_out, Catch::Contains("read-only transaction"));
    CHECK(refused_out.find(db.key()) == std::string::npos);
    CHECK(refused_out.find("parameters") == std::string::npos);
    CHECK(db.seed().timezone_columns() == "0");
    const auto [status, status_out] =
        pgrail_cli("backstop --dsn '" + db.conninfo_for("app_owner") + "' status --key-file " + db.key_file());
    INFO(status_out);
    CHECK(status_out.find(db.key()) == std::string::npos);

    REQUIRE(ask(su.get(), "ALTER ROLE app_owner IN DATABASE " + db.name() + " RESET default_transaction_read_only").ok);
    const auto [up, up_out] = pgrail_cli(keyed + "up");
    INFO(up_out);
    CHECK(up == 0);
    CHECK(db.seed().timezone_columns() == "1");
    REQUIRE(ask(su.get(), "ALTER ROLE app_owner IN DATABASE " + db.name() + " RESET ALL").ok);
}

TEST_CASE("pgrail backstop install|status|uninstall; uninstall leaves nothing behind", "[backstop]") {
    BackstopDatabase db(false);
    const auto su = "--dsn '" + db.superuser_conninfo() + "' ";
    const auto key_file = db.dir() + "/cli.key";

    auto [absent, absent_out] = pgrail_cli("backstop " + su + "status");
    CHECK(absent == 2);
    CHECK_THAT(absent_out, Catch::Contains("installed: no"));
    auto [not_super, not_super_out] =
        pgrail_cli("backstop --dsn '" + db.conninfo_for("app_owner") + "' install --key-file " + key_file);
    CHECK(not_super == 1);
    CHECK_THAT(not_super_out, Catch::Contains("needs a superuser"));

    auto [installed, installed_out] = pgrail_cli("backstop " + su + "install --key-file " + key_file);
    INFO(installed_out);
    REQUIRE(installed == 0);
    CHECK_THAT(installed_out, Catch::Contains("created, mode 0600"));
    struct stat info {};
    REQUIRE(::stat(key_file.c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);
    const auto key = mig::read_backstop_key(key_file);
    auto [healthy, healthy_out] = pgrail_cli("backstop " + su + "status --key-file " + key_file);
    CHECK(healthy == 0);
    CHECK_THAT(healthy_out, Catch::Contains("version: " PGRAIL_VERSION) && Catch::Contains("key: matches") &&
                                Catch::Contains("temporary objects: allowed"));
    write_file(db.dir() + "/other.key", std::string(64, 'a') + "\n");
    auto [other, other_out] = pgrail_cli("backstop " + su + "status --key-file " + db.dir() + "/other.key");
    CHECK(other == 2);
    CHECK_THAT(other_out, Catch::Contains("DOES NOT MATCH"));

    // The runner creates the ledger, and guards it.
    const auto [up, up_out] = pgrail_cli("migrate --dir " + source_dir() + "/migrations --dsn '" +
                                         db.conninfo_for("app_owner") + "' --backstop-key-file " + key_file + " up");
    INFO(up_out);
    CHECK(up == 0);

    // A disabled trigger is reported; installing again repairs it and keeps the key.
    auto conn = db.superuser();
    REQUIRE(ask(conn.get(), "ALTER EVENT TRIGGER pgrail_backstop_sql_drop DISABLE").ok);
    auto [disabled, disabled_out] = pgrail_cli("backstop " + su + "status");
    CHECK(disabled == 2);
    CHECK_THAT(disabled_out, Catch::Contains("DISABLED"));
    auto [again, again_out] = pgrail_cli("backstop " + su + "install --no-temp --key-file " + key_file);
    CHECK(again == 0);
    CHECK_THAT(again_out, Catch::Contains("reinstalled") && Catch::Contains("kept") &&
                              Catch::Contains("pgrail's ledger: guarded"));
    CHECK(mig::read_backstop_key(key_file) == key);
    auto [repaired, repaired_out] = pgrail_cli("backstop " + su + "status --key-file " + key_file);
    CHECK(repaired == 0);
    CHECK_THAT(repaired_out, Catch::Contains("temporary objects: refused"));

    auto [removed, removed_out] = pgrail_cli("backstop " + su + "uninstall");
    CHECK(removed == 0);
    CHECK_THAT(removed_out, Catch::Contains("removed"));
    CHECK(scalar(conn.get(), "SELECT count(*) FROM pg_event_trigger") == "0");
    CHECK(scalar(conn.get(), "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgrail_backstop'") == "0");
    CHECK(scalar(conn.get(), "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                             "WHERE n.nspname <> 'pg_catalog' AND p.proname IN ('authorize', 'is_runner', 'refuse', "
                             "'guard_ledger', 'version', 'allows_temp', 'is_temporary_relation', "
                             "'on_ddl_command_start', 'on_ddl_command_end', 'on_sql_drop', 'on_table_rewrite')") ==
          "0");
    CHECK(scalar(conn.get(), "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgrail_backstop%'") == "0");
    CHECK(scalar(conn.get(), "SELECT count(*) FROM pg_class WHERE relname IN ('runner_key', 'runner_sessions')") ==
          "0");
    // The ledger stays: it is pgrail's record, not the backstop's.
    CHECK(scalar(conn.get(), "SELECT count(*) FROM pgrail.schema_migrations") == "1");
    auto [gone, gone_out] = pgrail_cli("backstop " + su + "status");
    CHECK(gone == 2);
    auto [twice, twice_out] = pgrail_cli("backstop " + su + "uninstall");
    CHECK(twice == 0);
    CHECK_THAT(twice_out, Catch::Contains("nothing to remove"));
    // DDL works again without the runner.
    CHECK(ask(conn.get(), "CREATE TABLE bs_after (x int)").ok);

    // A schema of that name made by someone else is not taken over.
    REQUIRE(ask(conn.get(), "CREATE SCHEMA pgrail_backstop AUTHORIZATION app_owner").ok);
    auto [foreign_schema, foreign_out] = pgrail_cli("backstop " + su + "install --key-file " + key_file);
    CHECK(foreign_schema == 1);
    CHECK_THAT(foreign_out, Catch::Contains("[42P06]") && Catch::Contains("belongs to app_owner"));
    CHECK(scalar(conn.get(), "SELECT count(*) FROM pg_event_trigger") == "0");
}

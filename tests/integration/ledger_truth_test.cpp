// The ledger tells the truth (issue #17): a registered migration run by hand (or by a migration
// tool) through pgrail is recorded as pgrail's runner would record it, and a schema changed around
// pgrail shows as schema drift, with the objects named, until an operator accepts it.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "cluster.hpp"
#include "node_packages.hpp"
#include "pgrail_process.hpp"
#include "seed_database.hpp"

using namespace pgrail::test;

namespace {

const std::string seed_version = "20261125090000";

struct LedgerProxy {
    SeedDatabase db{"ledger_"};
    std::string audit_path = PgrailProcess::make_temp_dir() + "/ledger-audit.jsonl";
    PgrailProcess process;

    LedgerProxy()
        : process("policy: " + source_dir() + "/policies/default.yaml\n" + "audit: {file: " + audit_path + "}\n" +
                  "migrations: {dir: " + source_dir() + "/migrations, migrator: \"" + db.conninfo_for("app_owner") +
                  "\"}\n") {}

    // Through pgrail, naming the application (recorded in the ledger's event).
    [[nodiscard]] Conn connect(const std::string& user, const std::string& application) const {
        Conn conn(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(process.port()) + " dbname=" + db.name +
                               " user=" + user + " password=" + user + " application_name=" + application)
                                  .c_str()));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        return conn;
    }
    [[nodiscard]] Conn direct(const std::string& user) const {
        Conn conn(PQconnectdb(db.conninfo_for(user).c_str()));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        return conn;
    }
};

// The rows of pgrail.status(): state by name ("(schema)" for schema drift).
std::string state_of(PGconn* conn, const std::string& name) {
    const auto status = run(conn, "SELECT name, state FROM pgrail.status()");
    REQUIRE(status.at(0).status == "PGRES_TUPLES_OK");
    for (const auto& row : status[0].rows)
        if (row.at(0) == name) return row.at(1).value_or("<null>");
    return "<none>";
}

std::string schema_detail(PGconn* conn) {
    const auto status = run(conn, "SELECT detail FROM pgrail.status() WHERE name = '(schema)'");
    REQUIRE(status.at(0).status == "PGRES_TUPLES_OK");
    if (status[0].rows.empty()) return "<none>";
    return status[0].rows[0].at(0).value_or("<null>");
}

// Sends each step in libpq's pipeline mode, then one Sync; each step's first result.
std::vector<Outcome> pipelined(PGconn* conn, const std::vector<std::function<int(PGconn*)>>& steps) {
    REQUIRE(PQenterPipelineMode(conn) == 1);
    for (const auto& step : steps) REQUIRE(step(conn) == 1);
    REQUIRE(PQpipelineSync(conn) == 1);
    std::vector<Outcome> firsts;
    for (std::size_t index = 0; index < steps.size(); ++index) {
        const auto results = drain(conn);
        REQUIRE_FALSE(results.empty());
        firsts.push_back(results.front());
    }
    PGresult* sync = PQgetResult(conn);
    REQUIRE(sync != nullptr);
    CHECK(PQresultStatus(sync) == PGRES_PIPELINE_SYNC);
    PQclear(sync);
    REQUIRE(PQgetResult(conn) == nullptr);
    REQUIRE(PQexitPipelineMode(conn) == 1);
    return firsts;
}

std::function<int(PGconn*)> send_query(std::string sql) {
    return [sql](PGconn* conn) { return PQsendQueryParams(conn, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0); };
}
std::function<int(PGconn*)> send_prepare(std::string name, std::string sql) {
    return [name, sql](PGconn* conn) { return PQsendPrepare(conn, name.c_str(), sql.c_str(), 0, nullptr); };
}
std::function<int(PGconn*)> send_execute(std::string name) {
    return [name](PGconn* conn) { return PQsendQueryPrepared(conn, name.c_str(), 0, nullptr, nullptr, nullptr, 0); };
}

}  // namespace

// Found by review: a registered statement prepared and never executed was recorded as applied
// when another statement of its batch completed with the same tag (and its down script then
// passed); one prepared before the session set a search_path or made a temporary relation ran
// under them; a temporary type named like the catalog's took the new column's type, which then
// went with the session. Now a completion counts for the statement it answers, a prepared
// registered statement runs only in its batch and as it was checked, and a temporary type ends
// the session's registered statements.
TEST_CASE("a registered statement is recorded only when it ran, and runs only as it was checked", "[ledger_truth]") {
    LedgerProxy proxy;
    const std::string registered = "ALTER TABLE profiles ADD COLUMN timezone text";
    {
        auto owner = proxy.connect("app_owner", "prepared");
        const auto unexecuted = pipelined(owner.get(), {send_prepare("s1", registered),
                                                        send_query("CREATE TEMP TABLE zz (a int)"),
                                                        send_query("ALTER TABLE pg_temp.zz ADD COLUMN timezone text")});
        for (const auto& outcome : unexecuted) CHECK(outcome.sqlstate.empty());
        CHECK(proxy.db.timezone_columns() == "0");
        CHECK(state_of(owner.get(), "add_profiles_timezone") == "pending");
        // Its Bind in a later batch is refused.
        const auto later = pipelined(owner.get(), {send_execute("s1")});
        CHECK(later.at(0).sqlstate == "55000");
        CHECK_THAT(later.at(0).message, Catch::Contains("the batch it was prepared in"));
        CHECK(proxy.db.timezone_columns() == "0");
        CHECK(state_of(owner.get(), "add_profiles_timezone") == "pending");
    }
    {
        // So is one after a temporary relation made in its batch (in a new session: the one above
        // altered a temporary relation, after which its registered statements are refused whole).
        auto owner = proxy.connect("app_owner", "temporary");
        const auto after_temporary = pipelined(owner.get(), {send_prepare("s2", registered),
                                                             send_query("CREATE TEMP TABLE yy (a int)"),
                                                             send_execute("s2")});
        CHECK(after_temporary.at(0).sqlstate.empty());
        CHECK(after_temporary.at(2).sqlstate == "55000");
        CHECK_THAT(after_temporary.at(2).message, Catch::Contains("temporary relation or type"));
        CHECK(proxy.db.timezone_columns() == "0");
    }
    {
        auto owner = proxy.connect("app_owner", "path");
        const auto outcomes = pipelined(owner.get(), {send_prepare("s1", registered),
                                                      send_query("SET search_path = staging, public"),
                                                      send_execute("s1")});
        CHECK(outcomes.at(2).sqlstate == "55000");
        CHECK_THAT(outcomes.at(2).message, Catch::Contains("search_path"));
        CHECK(proxy.db.timezone_columns() == "0");
    }
    {
        // A temporary type named like the catalog's text is refused where it is made (review 86:
        // '...'::text would no longer be text); one of another name still ends registered statements.
        auto owner = proxy.connect("app_owner", "type");
        const auto shadowing = run(owner.get(), "CREATE TYPE pg_temp.text AS (a int)").at(0);
        CHECK(shadowing.sqlstate == "42501");
        CHECK_THAT(shadowing.message, Catch::Contains("would hide the built-in type text"));
        REQUIRE(run(owner.get(), "CREATE TYPE pg_temp.text_pair AS (a text, b text)").at(0).sqlstate.empty());
        const auto refused = run(owner.get(), registered).at(0);
        CHECK(refused.sqlstate == "55000");
        CHECK_THAT(refused.message, Catch::Contains("temporary type"));
        CHECK(proxy.db.timezone_columns() == "0");
        CHECK(state_of(owner.get(), "add_profiles_timezone") == "pending");
    }
    {
        // A temporary table's row type is a type of its name: text, here, refused where it is made.
        auto owner = proxy.connect("app_owner", "rowtype");
        const auto shadowing = run(owner.get(), "CREATE TEMP TABLE text (a int)").at(0);
        CHECK(shadowing.sqlstate == "42501");
        CHECK_THAT(shadowing.message, Catch::Contains("would hide the built-in type text"));
        CHECK(proxy.db.timezone_columns() == "0");
    }
    {
        // Prepared and executed in its batch, as drivers do: it runs and is recorded.
        auto owner = proxy.connect("app_owner", "driver");
        const auto outcomes = pipelined(owner.get(), {send_prepare("s1", registered), send_execute("s1")});
        CHECK(outcomes.at(1).sqlstate.empty());
        CHECK(proxy.db.timezone_columns() == "1");
        CHECK(state_of(owner.get(), "add_profiles_timezone") == "applied");
    }
}

TEST_CASE("a registered statement that a session's temporary table would catch is refused, not recorded",
          "[ledger_truth][inband]") {
    // pg_temp comes first for an unqualified name: the registered ALTER TABLE profiles would alter
    // the session's temporary profiles, and the ledger would say the migration was applied.
    LedgerProxy proxy;
    auto owner = proxy.connect("app_owner", "shadow");
    for (const char* temporary : {"CREATE TEMP TABLE profiles (id int)",
                                  "CREATE TEMPORARY TABLE profiles (id int) ON COMMIT DROP",
                                  "SELECT 1 AS id INTO TEMP profiles"}) {
        INFO(temporary);
        REQUIRE(run(owner.get(), "BEGIN").at(0).status == "PGRES_COMMAND_OK");
        REQUIRE(run(owner.get(), temporary).at(0).sqlstate.empty());
        const auto refused = run(owner.get(), "ALTER TABLE profiles ADD COLUMN timezone text").at(0);
        CHECK(refused.sqlstate == "55000");
        CHECK_THAT(refused.message, Catch::Contains("temporary relation named \"profiles\""));
        REQUIRE(run(owner.get(), "ROLLBACK").at(0).status == "PGRES_COMMAND_OK");
        CHECK(proxy.db.timezone_columns() == "0");
        CHECK(state_of(owner.get(), "add_profiles_timezone") == "pending");
    }
    // In the same text as the registered statement, or before a refused statement in a text whose
    // first statements run: the same.
    for (const char* text : {"CREATE TEMP TABLE profiles (id int); ALTER TABLE profiles ADD COLUMN timezone text",
                             "BEGIN; CREATE TEMP TABLE profiles (id int); ALTER TABLE profiles ADD COLUMN timezone text"}) {
        INFO(text);
        const auto outcomes = run(owner.get(), text);
        CHECK(outcomes.back().sqlstate == "55000");
        (void)run(owner.get(), "ROLLBACK");
        CHECK(proxy.db.timezone_columns() == "0");
        CHECK(state_of(owner.get(), "add_profiles_timezone") == "pending");
    }
    // Another search_path may resolve the name in another schema's relation: refused too, unless it
    // is a role's usual one.
    // Once set, it counts for the session: a ROLLBACK, an error or a RESET may or may not undo it.
    // pg_temp named before public makes an unqualified CREATE a temporary one; pg_catalog named
    // first makes it a catalog object, after public lets public's functions shadow the catalog's.
    for (const char* path : {"SET search_path = staging, public", "SELECT set_config('search_path', 'staging', false)",
                             "BEGIN; SET search_path = staging; ROLLBACK",
                             "SET search_path = staging; SET search_path = public; RESET search_path",
                             "SET search_path = pg_temp, public", "SET search_path = \"$user\", pg_temp, public",
                             "SET search_path = public, pg_catalog", "SET search_path = pg_catalog, public"}) {
        INFO(path);
        auto setter = proxy.connect("app_owner", "path");
        REQUIRE(run(setter.get(), path).back().sqlstate.empty());
        const auto refused = run(setter.get(), "ALTER TABLE profiles ADD COLUMN timezone text").at(0);
        CHECK(refused.sqlstate == "55000");
        CHECK_THAT(refused.message, Catch::Contains("search_path"));
        CHECK(proxy.db.timezone_columns() == "0");
    }
    for (const char* options : {"-c search_path=staging", "--search-path=staging", "-c search\\\\_path=staging"}) {
        INFO(options);
        Conn by_option(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(proxy.process.port()) + " dbname=" +
                                    proxy.db.name + " user=app_owner password=app_owner options='" + options + "'")
                                       .c_str()));
        REQUIRE(PQstatus(by_option.get()) == CONNECTION_OK);
        REQUIRE(run(by_option.get(), "RESET search_path").at(0).sqlstate.empty());  // back to staging
        CHECK(run(by_option.get(), "ALTER TABLE profiles ADD COLUMN timezone text").at(0).sqlstate == "55000");
    }
    // A temporary relation renamed may take the name: from then on every unqualified name counts.
    {
        auto renamer = proxy.connect("app_owner", "renamer");
        REQUIRE(run(renamer.get(), "CREATE TEMP TABLE dummy (id int)").at(0).sqlstate.empty());
        REQUIRE(run(renamer.get(), "ALTER TABLE pg_temp.dummy RENAME TO profiles").at(0).sqlstate.empty());
        CHECK(run(renamer.get(), "ALTER TABLE profiles ADD COLUMN timezone text").at(0).sqlstate == "55000");
        CHECK(proxy.db.timezone_columns() == "0");
    }
    // Only the names a session made temporary are held against it: another name's temporary
    // table leaves the registered statement to run, and to be recorded.
    auto fresh = proxy.connect("app_owner", "fresh");
    REQUIRE(run(fresh.get(), "CREATE TEMP TABLE scratch_notes (id int)").at(0).sqlstate.empty());
    REQUIRE(run(fresh.get(), "SET search_path = \"$user\", public, pg_temp").at(0).sqlstate.empty());
    REQUIRE(run(fresh.get(), "ALTER TABLE profiles ADD COLUMN timezone text").at(0).status == "PGRES_COMMAND_OK");
    CHECK(proxy.db.timezone_columns() == "1");
    CHECK(state_of(owner.get(), "add_profiles_timezone") == "applied");
}

TEST_CASE("a registered statement that code in the database redirected runs, and is not recorded",
          "[ledger_truth][inband]") {
    // A search_path that a function sets, or a temporary table that one makes, is not in the
    // session's texts: the registered ALTER TABLE profiles reaches another relation. Before the
    // ledger says applied, pgrail confirms on its own connection that the change is where its
    // runner would have made it.
    LedgerProxy proxy;
    auto direct = proxy.direct("app_owner");
    REQUIRE(run(direct.get(), "CREATE SCHEMA staging; CREATE TABLE staging.profiles (id int); "
                              "CREATE FUNCTION make_temp_profiles() RETURNS void LANGUAGE plpgsql AS "
                              "$$BEGIN CREATE TEMP TABLE profiles (id int); END$$; "
                              "CREATE FUNCTION to_staging() RETURNS text LANGUAGE sql AS "
                              "$$SELECT set_config('search_path', 'staging, public', false)$$")
                .back()
                .sqlstate.empty());
    const auto timezone_in = [&](const std::string& schema) {
        return scalar(direct.get(), "SELECT count(*) FROM information_schema.columns WHERE table_schema = '" + schema +
                                        "' AND table_name = 'profiles' AND column_name = 'timezone'");
    };
    const auto redirected = [&](const char* redirect) {
        INFO(redirect);
        auto owner = proxy.connect("app_owner", "redirected");
        REQUIRE(run(owner.get(), redirect).at(0).sqlstate.empty());
        const auto outcome = run(owner.get(), "ALTER TABLE profiles ADD COLUMN timezone text").at(0);
        CHECK(outcome.status == "PGRES_COMMAND_OK");  // the server ran it, on the other relation
        CHECK(timezone_in("public") == "0");
        CHECK(state_of(owner.get(), "add_profiles_timezone") == "pending");
    };
    const auto audit = [&] {
        std::ifstream file(proxy.audit_path);
        std::stringstream lines;
        lines << file.rdbuf();
        return lines.str();
    };
    const auto undo_staging = [&] {
        REQUIRE(timezone_in("staging") == "1");
        REQUIRE(run(direct.get(), "ALTER TABLE staging.profiles DROP COLUMN timezone").at(0).sqlstate.empty());
    };

    // No schema fingerprint yet: a relation of the name outside the runner's schemas is enough.
    redirected("SELECT to_staging()");
    CHECK_THAT(audit(), Catch::Contains("external_run_not_recorded") &&
                            Catch::Contains("not recorded: no schema fingerprint yet tells where the run's change "
                                            "went, and staging.profiles exists outside the schemas where pgrail's "
                                            "runner resolves profiles"));
    undo_staging();

    // With one (the live schema accepted as the baseline): what changed, and where.
    const auto dsn = "--dsn \"" + proxy.db.conninfo_for("app_owner") + "\" --dir " + source_dir() + "/migrations";
    REQUIRE(pgrail_cli("migrate resolve --accept-schema " + dsn).first == 0);
    redirected("SELECT make_temp_profiles()");
    CHECK_THAT(audit(), Catch::Contains("not recorded: a temporary relation named profiles exists"));
    // (A closed session's temporary table lasts until its backend has gone.)
    CHECK(eventually([&] { return scalar(direct.get(), "SELECT count(*) FROM pg_class WHERE relpersistence = 't' "
                                                       "AND relname = 'profiles'") == "0"; },
                     std::chrono::seconds(10)));
    redirected("SELECT to_staging()");
    CHECK_THAT(audit(), Catch::Contains("not recorded: the run changed staging.profiles, outside the schemas where "
                                        "pgrail's runner resolves profiles"));
    undo_staging();

    // The same statement in a session of the usual path: applied, and recorded.
    auto plain = proxy.connect("app_owner", "plain");
    REQUIRE(run(plain.get(), "ALTER TABLE profiles ADD COLUMN timezone text").at(0).status == "PGRES_COMMAND_OK");
    CHECK(timezone_in("public") == "1");
    CHECK(state_of(plain.get(), "add_profiles_timezone") == "applied");
}

TEST_CASE("a table swap and an index rebuild run by hand are recorded: what is confirmed is where they landed",
          "[ledger_truth][inband]") {
    // Renames, drops of what was just made, and cascades: the evidence (what changed, and where)
    // holds, with and without a baseline fingerprint.
    const auto registry = PgrailProcess::make_temp_dir() + "/swap-registry";
    std::filesystem::remove_all(registry);
    std::filesystem::create_directories(registry);
    write_file(registry + "/1_swap_profiles.up.sql",
               "CREATE TABLE profiles_new (LIKE profiles INCLUDING ALL);\n"
               "DROP TABLE profiles;\n"
               "ALTER TABLE profiles_new RENAME TO profiles;\n");
    write_file(registry + "/1_swap_profiles.down.sql", "COMMENT ON TABLE profiles IS NULL;\n");
    write_file(registry + "/2_rebuild_index.up.sql",
               "CREATE INDEX profiles_name_new ON profiles (display_name);\n"
               "DROP INDEX IF EXISTS profiles_name;\n"
               "ALTER INDEX profiles_name_new RENAME TO profiles_name;\n");
    write_file(registry + "/2_rebuild_index.down.sql", "DROP INDEX profiles_name;\n");
    SeedDatabase db{"swap_"};
    PgrailProcess proxy("policy: " + source_dir() + "/policies/default.yaml\n" + "migrations: {dir: " + registry +
                        ", migrator: \"" + db.conninfo_for("app_owner") + "\"}\n");
    auto owner = db.connect_through(proxy, "app_owner");
    for (const char* script : {"BEGIN; CREATE TABLE profiles_new (LIKE profiles INCLUDING ALL); DROP TABLE profiles; "
                               "ALTER TABLE profiles_new RENAME TO profiles; COMMIT",
                               "BEGIN; CREATE INDEX profiles_name_new ON profiles (display_name); "
                               "DROP INDEX IF EXISTS profiles_name; ALTER INDEX profiles_name_new RENAME TO "
                               "profiles_name; COMMIT"}) {
        INFO(script);
        for (const auto& outcome : run(owner.get(), script)) {
            INFO(outcome.message);
            CHECK(outcome.sqlstate.empty());
        }
    }
    CHECK(state_of(owner.get(), "swap_profiles") == "applied");
    CHECK(state_of(owner.get(), "rebuild_index") == "applied");
    // Again with the baseline that the first recording wrote: down, then the rebuild once more.
    REQUIRE(run(owner.get(), "DROP INDEX profiles_name").at(0).sqlstate.empty());
    CHECK(state_of(owner.get(), "rebuild_index") == "pending");
    for (const auto& outcome : run(owner.get(), "BEGIN; CREATE INDEX profiles_name_new ON profiles (display_name); "
                                                "DROP INDEX IF EXISTS profiles_name; ALTER INDEX profiles_name_new "
                                                "RENAME TO profiles_name; COMMIT"))
        CHECK(outcome.sqlstate.empty());
    CHECK(state_of(owner.get(), "rebuild_index") == "applied");
}

TEST_CASE("the owner's hand-run up and down statements through pgrail are recorded in the ledger",
          "[ledger_truth][inband]") {
    LedgerProxy proxy;
    auto owner = proxy.connect("app_owner", "handwork");
    auto direct = proxy.direct("app_owner");

    // Up by hand: the registered statement passes (migrator route) and the ledger says applied.
    REQUIRE(run(owner.get(), "ALTER TABLE profiles ADD COLUMN timezone text").at(0).status == "PGRES_COMMAND_OK");
    CHECK(proxy.db.timezone_columns() == "1");
    CHECK(state_of(owner.get(), "add_profiles_timezone") == "applied");
    CHECK(scalar(direct.get(), "SELECT applied_by FROM pgrail.schema_migrations WHERE version = '" + seed_version +
                                   "'") == "app_owner");
    CHECK(scalar(direct.get(), "SELECT event || ' by ' || by || ': ' || detail FROM pgrail.migration_events "
                               "ORDER BY id DESC LIMIT 1")
              .starts_with("applied by app_owner: external: handwork (session "));
    // No schema drift: the fingerprint was recorded with it.
    CHECK(state_of(owner.get(), "(schema)") == "<none>");

    // pgrail.migrate_up() does not try again: nothing is pending.
    auto agent = proxy.connect("agent", "agent");
    const auto up = run(agent.get(), "SELECT * FROM pgrail.migrate_up()");
    REQUIRE(up.at(0).status == "PGRES_TUPLES_OK");
    CHECK(up[0].rows.empty());

    // Down by hand: the ledger says pending again, and the up statement is accepted again.
    REQUIRE(run(owner.get(), "ALTER TABLE profiles DROP COLUMN timezone").at(0).status == "PGRES_COMMAND_OK");
    CHECK(proxy.db.timezone_columns() == "0");
    CHECK(state_of(owner.get(), "add_profiles_timezone") == "pending");
    CHECK(scalar(direct.get(), "SELECT count(*) FROM pgrail.schema_migrations") == "0");
    CHECK(scalar(direct.get(), "SELECT event || ': ' || detail FROM pgrail.migration_events ORDER BY id DESC LIMIT 1")
              .starts_with("rolled_back: external: handwork"));
    CHECK(state_of(owner.get(), "(schema)") == "<none>");

    // In a transaction block: recorded at COMMIT, not before; a ROLLBACK records nothing.
    REQUIRE(run(owner.get(), "BEGIN").at(0).status == "PGRES_COMMAND_OK");
    REQUIRE(run(owner.get(), "ALTER TABLE profiles ADD COLUMN timezone text").at(0).status == "PGRES_COMMAND_OK");
    REQUIRE(run(owner.get(), "ROLLBACK").at(0).status == "PGRES_COMMAND_OK");
    CHECK(state_of(owner.get(), "add_profiles_timezone") == "pending");
    REQUIRE(run(owner.get(), "BEGIN").at(0).status == "PGRES_COMMAND_OK");
    REQUIRE(run(owner.get(), "ALTER TABLE profiles ADD COLUMN timezone text").at(0).status == "PGRES_COMMAND_OK");
    CHECK(scalar(direct.get(), "SELECT count(*) FROM pgrail.schema_migrations") == "0");
    REQUIRE(run(owner.get(), "COMMIT").at(0).status == "PGRES_COMMAND_OK");
    CHECK(state_of(owner.get(), "add_profiles_timezone") == "applied");
    CHECK(state_of(owner.get(), "(schema)") == "<none>");

    // The runner's own rollback then works on what the hand run applied.
    const auto down = run(owner.get(), "SELECT * FROM pgrail.migrate_down('" + seed_version + "')");
    REQUIRE(down.at(0).status == "PGRES_TUPLES_OK");
    CHECK(proxy.db.timezone_columns() == "0");
    CHECK(state_of(owner.get(), "(schema)") == "<none>");

    // On record in the audit log too.
    const auto audit = read_file(proxy.audit_path);
    CHECK(audit.find("\"external\":true") != std::string::npos);
}

TEST_CASE("a run through pgrail records its own change only: what changed around pgrail before it stays drift",
          "[ledger_truth][drift]") {
    LedgerProxy proxy;
    auto agent = proxy.connect("agent", "agent");
    auto owner = proxy.connect("app_owner", "handwork");
    // A first baseline, then a superuser changes the schema straight at PostgreSQL.
    REQUIRE(run(agent.get(), "SELECT * FROM pgrail.migrate_up()").at(0).status == "PGRES_TUPLES_OK");
    REQUIRE(run(owner.get(), "SELECT * FROM pgrail.migrate_down('" + seed_version + "')").at(0).status ==
            "PGRES_TUPLES_OK");
    CHECK(state_of(agent.get(), "(schema)") == "<none>");
    Conn around(PQconnectdb(proxy.db.conninfo_for("postgres").c_str()));
    REQUIRE(PQstatus(around.get()) == CONNECTION_OK);
    REQUIRE(run(around.get(), "CREATE TABLE public.notes (id serial PRIMARY KEY, body text)").at(0).status ==
            "PGRES_COMMAND_OK");
    REQUIRE(run(around.get(), "ALTER TABLE profiles ADD COLUMN nickname text").at(0).status == "PGRES_COMMAND_OK");
    const auto drift_names_only_what_changed_around = [&] {
        const auto detail = schema_detail(agent.get());
        INFO(detail);
        CHECK(state_of(agent.get(), "(schema)") == "drifted");
        CHECK_THAT(detail, Catch::Contains("table public.notes") && Catch::Contains("public.notes_pkey") &&
                               Catch::Contains("public.notes_id_seq") &&
                               Catch::Contains("column public.profiles.nickname"));
        CHECK_THAT(detail, !Catch::Contains("column public.profiles.timezone"));
    };
    drift_names_only_what_changed_around();

    // pgrail's runner (in band): applied and rolled back, the drift stays as it was.
    REQUIRE(run(agent.get(), "SELECT * FROM pgrail.migrate_up()").at(0).status == "PGRES_TUPLES_OK");
    CHECK(proxy.db.timezone_columns() == "1");
    CHECK(state_of(agent.get(), "add_profiles_timezone") == "applied");
    drift_names_only_what_changed_around();
    REQUIRE(run(owner.get(), "SELECT * FROM pgrail.migrate_down('" + seed_version + "')").at(0).status ==
            "PGRES_TUPLES_OK");
    drift_names_only_what_changed_around();

    // A migrator session's run (the owner by hand): recorded, and the drift stays too. (The run
    // names profiles, so a change around pgrail to profiles made before it counts as the run's:
    // only the unrelated table is left to see.)
    REQUIRE(run(owner.get(), "ALTER TABLE profiles ADD COLUMN timezone text").at(0).status == "PGRES_COMMAND_OK");
    CHECK(state_of(owner.get(), "add_profiles_timezone") == "applied");
    const auto detail = schema_detail(agent.get());
    INFO(detail);
    CHECK(state_of(agent.get(), "(schema)") == "drifted");
    CHECK_THAT(detail, Catch::Contains("table public.notes") && !Catch::Contains("column public.profiles.timezone") &&
                           !Catch::Contains("column public.profiles.nickname"));

    // Undone around pgrail, the drift is gone: the baseline never took it in.
    REQUIRE(run(around.get(), "DROP TABLE public.notes").at(0).status == "PGRES_COMMAND_OK");
    CHECK(state_of(agent.get(), "(schema)") == "<none>");
}

TEST_CASE("a schema changed around pgrail shows as schema drift, named, until accepted", "[ledger_truth][drift]") {
    LedgerProxy proxy;
    auto agent = proxy.connect("agent", "agent");
    REQUIRE(run(agent.get(), "SELECT * FROM pgrail.migrate_up()").at(0).status == "PGRES_TUPLES_OK");
    CHECK(state_of(agent.get(), "(schema)") == "<none>");

    // A superuser changes the schema straight at PostgreSQL.
    auto superuser = admin();
    Conn around(PQconnectdb(proxy.db.conninfo_for("postgres").c_str()));
    REQUIRE(PQstatus(around.get()) == CONNECTION_OK);
    REQUIRE(run(around.get(), "ALTER TABLE profiles ADD COLUMN nickname varchar(40) NOT NULL DEFAULT 'x'")
                .at(0)
                .status == "PGRES_COMMAND_OK");
    REQUIRE(run(around.get(), "CREATE INDEX profiles_nickname ON profiles (nickname)").at(0).status ==
            "PGRES_COMMAND_OK");

    CHECK(state_of(agent.get(), "(schema)") == "drifted");
    const auto detail = schema_detail(agent.get());
    CHECK_THAT(detail, Catch::Contains("column public.profiles.nickname") &&
                           Catch::Contains("index public.profiles_nickname") &&
                           Catch::Contains("after applied 20261125090000_add_profiles_timezone") &&
                           Catch::Contains("--accept-schema"));
    // The diff names the column with its type, nullability and default.
    CHECK_THAT(detail, Catch::Contains("+column public.profiles.nickname character varying(40) not null default "
                                       "'x'::character varying"));

    // The CLI says it too, and exits 2.
    const auto dsn = "--dsn \"" + proxy.db.conninfo_for("app_owner") + "\" --dir " + source_dir() + "/migrations";
    const auto [status_code, status_out] = pgrail_cli("migrate status " + dsn);
    CHECK(status_code == 2);
    CHECK_THAT(status_out, Catch::Contains("(schema)") && Catch::Contains("column public.profiles.nickname"));

    // A pgrail started now says so in its log.
    PgrailProcess restarted("policy: " + source_dir() + "/policies/default.yaml\n" + "migrations: {dir: " +
                            source_dir() + "/migrations, migrator: \"" + proxy.db.conninfo_for("app_owner") + "\"}\n");
    CHECK_THAT(restarted.log(), Catch::Contains("schema drift") && Catch::Contains("public.profiles.nickname"));

    // A column dropped around pgrail is named as gone.
    REQUIRE(run(around.get(), "ALTER TABLE profiles DROP COLUMN timezone").at(0).status == "PGRES_COMMAND_OK");
    CHECK_THAT(schema_detail(agent.get()), Catch::Contains("changed or gone since: column public.profiles.timezone"));
    REQUIRE(run(around.get(), "ALTER TABLE profiles ADD COLUMN timezone text").at(0).status == "PGRES_COMMAND_OK");

    // Accepting it: the live schema becomes the baseline, audited with the diff.
    const auto [accept_code, accept_out] = pgrail_cli("migrate resolve --accept-schema " + dsn);
    INFO(accept_out);
    CHECK(accept_code == 0);
    CHECK_THAT(accept_out, Catch::Contains("+column public.profiles.nickname"));
    CHECK(state_of(agent.get(), "(schema)") == "<none>");
    CHECK(pgrail_cli("migrate status " + dsn).first == 0);
    CHECK_THAT(scalar(around.get(), "SELECT detail FROM pgrail.migration_events WHERE event = 'resolved' AND "
                                    "version = 'schema'"),
               Catch::Contains("+column public.profiles.nickname"));
    (void)superuser;
}

TEST_CASE("a newline inside an object's description is one line of it: accepted drift is gone for good",
          "[ledger_truth][drift]") {
    LedgerProxy proxy;
    auto agent = proxy.connect("agent", "agent");
    REQUIRE(run(agent.get(), "SELECT * FROM pgrail.migrate_up()").at(0).status == "PGRES_TUPLES_OK");
    Conn around(PQconnectdb(proxy.db.conninfo_for("postgres").c_str()));
    REQUIRE(PQstatus(around.get()) == CONNECTION_OK);
    // A default and a CHECK whose constants hold newlines (review 97: each split its line, and the
    // pieces, out of order, were drift again after every accept).
    REQUIRE(run(around.get(), "ALTER TABLE profiles ADD COLUMN banner text DEFAULT 'hello' || E'\\nworld' "
                              "CHECK (banner <> E'a\\nz\\n')")
                .at(0)
                .status == "PGRES_COMMAND_OK");
    const auto detail = schema_detail(agent.get());
    INFO(detail);
    CHECK(state_of(agent.get(), "(schema)") == "drifted");
    CHECK_THAT(detail, Catch::Contains("+column public.profiles.banner text null default ('hello'::text || '\\nworld'"));
    const auto dsn = "--dsn \"" + proxy.db.conninfo_for("app_owner") + "\" --dir " + source_dir() + "/migrations";
    const auto [accept_code, accept_out] = pgrail_cli("migrate resolve --accept-schema " + dsn);
    INFO(accept_out);
    REQUIRE(accept_code == 0);
    CHECK(state_of(agent.get(), "(schema)") == "<none>");
    CHECK(pgrail_cli("migrate status " + dsn).first == 0);
    // And a run through pgrail records its change beside it without drift.
    auto owner = proxy.connect("app_owner", "handwork");
    REQUIRE(run(owner.get(), "SELECT * FROM pgrail.migrate_down('" + seed_version + "')").at(0).status ==
            "PGRES_TUPLES_OK");
    CHECK(state_of(agent.get(), "(schema)") == "<none>");
}

namespace {

// node-pg-migrate and knex, pinned, installed once per machine from npm into a folder of their own.
const std::string tools_dir = "/tmp/pgrail-test-migration-tools-v1";

std::string tools_unavailable() {
    return node_packages_unavailable(tools_dir, {"node-pg-migrate@7.9.1", "knex@3.1.0", "pg@8.13.1"});
}

// One step of a tool (tests/integration/migration_tools/run_tool.js): "" when it succeeded, else its error.
std::string tool_step(const std::string& tool, const std::string& url, const std::string& dir, const std::string& step) {
    const std::string command = "node " + source_dir() + "/tests/integration/migration_tools/run_tool.js " + tools_dir +
                                "/node_modules " + tool + " '" + url + "' " + dir + " " + step + " 2>&1";
    FILE* pipe = ::popen(command.c_str(), "r");
    REQUIRE(pipe != nullptr);
    std::string output;
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
    ::pclose(pipe);
    if (output.find("{\"ok\":true}") != std::string::npos) return "";
    return output.empty() ? "no output" : output;
}

}  // namespace

TEST_CASE("node-pg-migrate and knex from npm run up, down and up again through pgrail under the default policy",
          "[migration_tools]") {
    if (const auto why = tools_unavailable(); !why.empty()) {
        WARN("skipped: " << why);
        return;
    }
    // pgrail's registry: each tool migration's DDL, registered the documented way (same statements).
    const auto registry = PgrailProcess::make_temp_dir() + "/tools-registry";
    const auto npm_dir = PgrailProcess::make_temp_dir() + "/tools-node-pg-migrate";
    const auto knex_dir = PgrailProcess::make_temp_dir() + "/tools-knex";
    for (const auto& dir : {registry, npm_dir, knex_dir}) {
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
    }
    write_file(registry + "/1_add_nickname.up.sql", "ALTER TABLE profiles ADD COLUMN nickname text;\n");
    write_file(registry + "/1_add_nickname.down.sql", "ALTER TABLE profiles DROP COLUMN nickname;\n");
    write_file(registry + "/2_add_locale.up.sql", "ALTER TABLE profiles ADD COLUMN locale text;\n");
    write_file(registry + "/2_add_locale.down.sql", "ALTER TABLE profiles DROP COLUMN locale;\n");
    write_file(npm_dir + "/1700000000000_add-nickname.js",
               "exports.up = (pgm) => { pgm.sql('ALTER TABLE profiles ADD COLUMN nickname text'); };\n"
               "exports.down = (pgm) => { pgm.sql('ALTER TABLE profiles DROP COLUMN nickname'); };\n");
    write_file(knex_dir + "/20240101000000_add_locale.js",
               "exports.up = (knex) => knex.raw('ALTER TABLE profiles ADD COLUMN locale text');\n"
               "exports.down = (knex) => knex.raw('ALTER TABLE profiles DROP COLUMN locale');\n");

    SeedDatabase db{"tools_"};
    PgrailProcess proxy("policy: " + source_dir() + "/policies/default.yaml\n" + "migrations: {dir: " + registry +
                        ", migrator: \"" + db.conninfo_for("app_owner") + "\"}\n");
    Conn direct(PQconnectdb(db.conninfo_for("app_owner").c_str()));
    REQUIRE(PQstatus(direct.get()) == CONNECTION_OK);
    const auto url = [&](const std::string& application) {
        return "postgresql://app_owner:app_owner@127.0.0.1:" + std::to_string(proxy.port()) + "/" + db.name +
               "?application_name=" + application;
    };
    const auto columns = [&](const std::string& column) {
        return scalar(direct.get(), "SELECT count(*) FROM information_schema.columns WHERE table_name = 'profiles' "
                                    "AND column_name = '" + column + "'");
    };
    const auto ledger = [&](const std::string& version) {
        return scalar(direct.get(), "SELECT count(*) FROM pgrail.schema_migrations WHERE version = '" + version + "'");
    };
    Conn owner(PQconnectdb(proxy.conninfo("app_owner").c_str()));
    REQUIRE(PQstatus(owner.get()) == CONNECTION_OK);
    const auto no_drift = [&] {
        return scalar(owner.get(), "SELECT count(*) FROM pgrail.status() WHERE name = '(schema)'") == "0";
    };

    SECTION("node-pg-migrate") {
        const auto at = url("node-pg-migrate");
        CHECK(tool_step("node-pg-migrate", at, npm_dir, "up") == "");
        CHECK(columns("nickname") == "1");
        CHECK(ledger("1") == "1");
        CHECK(scalar(direct.get(), "SELECT count(*) FROM pgmigrations") == "1");
        CHECK(no_drift());
        CHECK(tool_step("node-pg-migrate", at, npm_dir, "down") == "");
        CHECK(columns("nickname") == "0");
        CHECK(ledger("1") == "0");
        CHECK(scalar(direct.get(), "SELECT count(*) FROM pgmigrations") == "0");
        CHECK(no_drift());
        CHECK(tool_step("node-pg-migrate", at, npm_dir, "up") == "");
        CHECK(columns("nickname") == "1");
        CHECK(ledger("1") == "1");
        CHECK(no_drift());
        CHECK(scalar(direct.get(), "SELECT string_agg(event || ':' || detail, ',' ORDER BY id) FROM "
                                   "pgrail.migration_events WHERE version = '1'")
                  .find("applied:external: node-pg-migrate") == 0);
    }
    SECTION("knex") {
        const auto at = url("knex");
        CHECK(tool_step("knex", at, knex_dir, "up") == "");
        CHECK(columns("locale") == "1");
        CHECK(ledger("2") == "1");
        // Its lock was released (UPDATE knex_migrations_lock SET is_locked = $1, without WHERE).
        CHECK(scalar(direct.get(), "SELECT max(is_locked) FROM knex_migrations_lock") == "0");
        CHECK(no_drift());
        CHECK(tool_step("knex", at, knex_dir, "down") == "");
        CHECK(columns("locale") == "0");
        CHECK(ledger("2") == "0");
        CHECK(no_drift());
        CHECK(tool_step("knex", at, knex_dir, "up") == "");
        CHECK(columns("locale") == "1");
        CHECK(ledger("2") == "1");
        CHECK(no_drift());
    }
    // What the tools may do beyond their registered migrations is their bookkeeping tables only:
    // the owner's ad hoc DDL and an UPDATE without WHERE on an application table stay refused.
    CHECK(run(owner.get(), "ALTER TABLE profiles ADD COLUMN ad_hoc text").at(0).sqlstate == "42501");
    CHECK(run(owner.get(), "UPDATE profiles SET display_name = 'x'").at(0).sqlstate == "42501");
    CHECK(run(owner.get(), "CREATE TABLE pgmigrations_extra (id int)").at(0).sqlstate == "42501");
}

TEST_CASE("a registered statement run in another database is ad hoc DDL there, and the ledger stays as it was",
          "[ledger_truth][inband]") {
    // A staging copy on the same server: the migration's statement would change its table, and
    // the ledger (in the migrations' database) would say the migration was applied.
    LedgerProxy proxy;
    SeedDatabase staging("staging_");
    Conn owner(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(proxy.process.port()) + " dbname=" + staging.name +
                            " user=app_owner password=app_owner application_name=elsewhere")
                               .c_str()));
    REQUIRE(PQstatus(owner.get()) == CONNECTION_OK);
    const auto refused = run(owner.get(), "ALTER TABLE profiles ADD COLUMN timezone text").at(0);
    CHECK(refused.sqlstate == "42501");
    CHECK_THAT(refused.message, Catch::Contains("ad hoc ALTER TABLE refused"));
    CHECK(staging.timezone_columns() == "0");
    // In the migrations' database the same statement is the migration, recorded as applied.
    auto here = proxy.connect("app_owner", "here");
    CHECK(state_of(here.get(), "add_profiles_timezone") == "pending");
    REQUIRE(run(here.get(), "ALTER TABLE profiles ADD COLUMN timezone text").at(0).sqlstate.empty());
    CHECK(state_of(here.get(), "add_profiles_timezone") == "applied");
    CHECK(proxy.db.timezone_columns() == "1");
}

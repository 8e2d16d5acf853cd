// Which proposals pgrail runs in a scratch copy before a person approves them: the positive list
// of scratch_guard.hpp, against the ways out of the scratch database an agent has (its scripts run
// as the migrator, who may create databases and owns the schema).
#include <catch2/catch.hpp>

#include "pgrail/migrations/error.hpp"
#include "pgrail/migrations/proposals.hpp"
#include "pgrail/migrations/scratch_guard.hpp"

using namespace pgrail::migrations;

namespace {

ScratchConfinement confine(const std::string& up, const std::string& down = "SELECT 1") {
    return scratch_confinement(proposal_migration("1", "x", up, down));
}

// (A script pgrail refuses to register at all runs nowhere either.)
bool runs(const std::string& up, const std::string& down = "SELECT 1") {
    try {
        return !confine(up, down).refusal;
    } catch (const MigrationError&) {
        return false;
    }
}

}  // namespace

TEST_CASE("a proposal runs in a scratch copy only when it stays in that database", "[scratch_guard]") {
    // What migrations do: tables, columns, indexes, views, types, data, privileges on them.
    CHECK(runs("ALTER TABLE profiles ADD COLUMN timezone text", "ALTER TABLE profiles DROP COLUMN timezone"));
    CHECK(runs("CREATE TABLE t (id bigint PRIMARY KEY, at timestamptz DEFAULT now(), k uuid DEFAULT gen_random_uuid())",
               "DROP TABLE t"));
    CHECK(runs("CREATE INDEX i ON p (lower(email))", "DROP INDEX i"));
    CHECK(runs("CREATE TYPE mood AS ENUM ('a', 'b'); CREATE VIEW v AS SELECT 1 AS one", "DROP VIEW v; DROP TYPE mood"));
    CHECK(runs("SET lock_timeout = '2s'; UPDATE p SET c = upper(c) WHERE c IS NOT NULL; ANALYZE p", "SELECT 1"));
    CHECK(runs("CREATE SCHEMA reports; GRANT USAGE ON SCHEMA reports TO agent; COMMENT ON TABLE p IS 'x'",
               "DROP SCHEMA reports"));
    CHECK(runs("ALTER TABLE p ALTER COLUMN n TYPE bigint USING pg_catalog.int8(n)", "SELECT 1"));
    CHECK(confine("CREATE INDEX i ON p (lower(a), upper(b), pg_catalog.lower(c))").call_names ==
          std::vector<std::string>{"lower", "upper", "pg_catalog.lower"});
    // A field or qualified column may be a call (attribute notation): its name is checked too.
    CHECK(confine("UPDATE p SET n = q.total FROM q WHERE q.id = p.id").call_names ==
          std::vector<std::string>{"total", "id"});
    CHECK(runs("CREATE TYPE mood2 AS ENUM ('x'); CREATE TYPE pair AS (a int, b text); CREATE SCHEMA reports2",
               "DROP TYPE pair; DROP TYPE mood2; DROP SCHEMA reports2"));

    // The shared catalogs: databases, roles, tablespaces, parameters (the helper's reproductions
    // first, then other syntax for the same effect).
    for (const char* up : {"COMMENT ON DATABASE app IS 'pwned'",
                           "ALTER DATABASE app SET search_path = pgrail, public",
                           "GRANT ALL ON DATABASE app TO PUBLIC",
                           "ALTER ROLE app_owner SET statement_timeout = 1",
                           "ALTER USER app_owner SET statement_timeout = 1",
                           "ALTER ROLE ALL SET work_mem = '1MB'",
                           "ALTER ROLE agent IN DATABASE app SET role = 'app_owner'",
                           "ALTER DATABASE app OWNER TO agent",
                           "ALTER DATABASE app RENAME TO app2",
                           "ALTER DATABASE app WITH CONNECTION LIMIT 0",
                           "REVOKE CONNECT ON DATABASE app FROM PUBLIC",
                           "COMMENT ON ROLE agent IS 'x'",
                           "COMMENT ON TABLESPACE pg_default IS 'x'",
                           "GRANT SET ON PARAMETER work_mem TO agent",
                           "GRANT app_owner TO agent",
                           "CREATE ROLE intruder LOGIN PASSWORD 'x'",
                           "DROP ROLE agent",
                           "CREATE DATABASE other",
                           "CREATE TABLESPACE t LOCATION '/tmp'",
                           "REASSIGN OWNED BY a TO b",
                           "DROP OWNED BY agent",
                           "SECURITY LABEL ON DATABASE app IS 'x'",
                           "ALTER SYSTEM SET fsync = off",
                           "ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO agent"})
        CHECK_FALSE(runs(std::string("CREATE TABLE ok (a int); ") + up));
    CHECK_FALSE(runs("-- pgrail:no-transaction\nDROP DATABASE victim WITH (FORCE)"));
    // The payload in the down script, behind a harmless up.
    const auto down = confine("CREATE TABLE t_ok (a int)", "DROP TABLE t_ok; COMMENT ON DATABASE app IS 'via-down'");
    REQUIRE(down.refusal);
    CHECK(down.refusal->find("down script, line 1") != std::string::npos);

    // Code that runs later, elsewhere or with other rights.
    for (const char* up :
         {"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
          "CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'", "DO $$ BEGIN NULL; END $$", "CALL p()",
          "CREATE TRIGGER tr AFTER INSERT ON t EXECUTE FUNCTION f()",
          "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u",
          "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()", "CREATE EXTENSION dblink",
          "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", "CREATE FOREIGN TABLE ft (a int) SERVER s",
          "IMPORT FOREIGN SCHEMA public FROM SERVER s INTO x",
          "CREATE SCHEMA s CREATE TABLE t (a int) CREATE TRIGGER tr AFTER INSERT ON t EXECUTE FUNCTION f()",
          "COPY t FROM PROGRAM 'id'", "COPY t TO '/tmp/x'", "PREPARE q AS SELECT 1", "EXPLAIN ANALYZE SELECT 1",
          "VACUUM t"})
        CHECK_FALSE(runs(up));

    // Functions: none but pg_catalog's, none that reaches beyond the database, no dynamic SQL.
    for (const char* up :
         {"SELECT dblink_exec('dbname=app', 'DROP TABLE p')", "SELECT public.f()",
          "CREATE TABLE t (a int DEFAULT app.next_id())", "SELECT pg_terminate_backend(1)",
          "SELECT pg_catalog.pg_reload_conf()", "SELECT lo_export(1, '/tmp/x')", "SELECT pg_read_file('/etc/passwd')",
          "SELECT query::int FROM pg_catalog.pg_stat_activity", "SELECT pg_stat_get_backend_activity(1)",
          "SELECT pg_stat_reset_shared('bgwriter')",
          "SELECT query_to_xml('ALTER DATABASE app OWNER TO agent', true, true, '')",
          "SELECT set_config('search_path', 'pgrail', false)", "SET search_path = pgrail, public", "SET ROLE postgres",
          "RESET ALL", "SELECT * FROM pgrail.status()", "SELECT * FROM information_schema.tables",
          "SELECT table_to_xml('pg_stat_activity', true, false, '')",
          "SELECT pg_catalog.schema_to_xml('public', true, false, '')", "SELECT database_to_xml(true, false, '')",
          // tablefunc: crosstab runs its text, connectby reads the relation it names.
          "SELECT * FROM crosstab('SELECT 1, 2, 3') AS t(a int, b int)",
          "SELECT * FROM connectby('pg_stat_activity', 'pid', 'leader_pid', '1', 0) AS t(a int, b int, c int)",
          // The runner's bounds: its statement_timeout, memory.
          "SET statement_timeout = 0; SELECT pg_sleep(70)", "SET work_mem = '64GB'",
          "SELECT set_config('statement_timeout', '0', false)",
          // Calls the function list does not show: attribute notation.
          "SELECT ('/etc/passwd'::text).pg_read_file", "SELECT t.pg_terminate_backend FROM (SELECT 1 AS x) t",
          "SELECT ('pgrail.migration_events_id_seq'::regclass).nextval",
          // Code named in options, schema elements that hide objects.
          "CREATE TYPE r AS RANGE (subtype = float8, subtype_diff = public.f)",
          "CREATE SCHEMA AUTHORIZATION CURRENT_USER CREATE TABLE t (a int) CREATE TRIGGER tr AFTER INSERT ON t FOR "
          "EACH ROW EXECUTE FUNCTION public.app_fn()",
          "CREATE SCHEMA s CREATE TABLE s (a int)",
          // The server's settings and files, other sessions' locks.
          "SELECT setting::int FROM pg_show_all_file_settings()", "SELECT pg_hba_file_rules()",
          "SELECT current_setting('primary_conninfo')::int", "SELECT pg_lock_status()",
          // PostgreSQL's administration: a positive list of pg_ functions, not a deny-list.
          "SELECT pg_notify('jobs', 'x')", "SELECT pg_postmaster_start_time()", "SELECT pg_blocking_pids(1)",
          "SELECT pg_catalog.pg_control_system()", "SELECT pg_tablespace_location(1663)",
          "SELECT pg_database_size('app')", "SELECT pg_import_system_collations('public')",
          "SELECT ((1)::regclass).pg_relation_filepath", "SELECT pg_advisory_lock(1)"}) {
        INFO(up);
        CHECK_FALSE(runs(up));
    }
    // The pg_ functions it does run: the copy's own objects, or nothing.
    CHECK(
        runs("SELECT setval(pg_get_serial_sequence('p', 'id'), 1); SELECT pg_typeof(1), "
             "pg_size_pretty(pg_total_relation_size('p')), pg_get_indexdef('i'::regclass)"));
    CHECK(runs("SELECT pg_advisory_xact_lock(42); SELECT pg_sleep(0.1)"));
}

// A migrator rule's bookkeeping_tables: a migration tool's own tables, by name, and nothing else.
#include <catch2/catch.hpp>

#include "pgrail/policy/evaluator.hpp"
#include "pgrail/policy/loader.hpp"
#include "pgrail/sql/analyzer.hpp"

using namespace pgrail;
using namespace pgrail::policy;
using Action = Decision::Action;

namespace {

const SessionInfo owner{"app_owner", "app", "knex", "10.1.2.3"};
const SessionInfo agent{"agent", "app", "psql", "10.1.2.3"};

Decision decide(const Policy& policy, const SessionInfo& session, const std::string& sql) {
    return evaluate_all(policy, session, sql::analyze(sql));
}

std::shared_ptr<const Policy> shipped() {
    static auto policy = load_policy_file(PGRAIL_TEST_DATA "/../../policies/default.yaml", {"db/migrations"});
    return policy;
}

}  // namespace

TEST_CASE("the shipped owner rule lets migration tools keep their own tables, and only those", "[bookkeeping]") {
    const auto& policy = *shipped();
    for (const char* allowed : {
             R"(CREATE TABLE "public"."pgmigrations" ( id SERIAL PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamp NOT NULL))",
             R"(create table "knex_migrations" ("id" serial primary key, "name" varchar(255), "batch" integer, "migration_time" timestamptz))",
             R"(create table "knex_migrations_lock" ("index" serial primary key, "is_locked" integer))",
             R"(update "knex_migrations_lock" set "is_locked" = $1)",
             R"(DELETE FROM "public"."pgmigrations" WHERE name = $1)",
             R"(delete from "knex_migrations_lock")",
         }) {
        INFO(allowed);
        CHECK(decide(policy, owner, allowed).action == Action::allow);
    }
    for (const char* refused : {
             "CREATE TABLE pgmigrations_extra (id int)",
             "ALTER TABLE profiles ADD COLUMN x text",
             "UPDATE profiles SET display_name = 'x'",
             "CREATE INDEX knex_idx ON knex_migrations (name)",       // the index is another object
             "CREATE FUNCTION pgmigrations() RETURNS int LANGUAGE sql AS 'SELECT 1'",
             "DROP TABLE pgmigrations, profiles",
             // Only a plain CREATE TABLE of the tool's own table: every other form reaches further
             // (the security review of this exemption found each of these passing before).
             "ALTER TABLE pgmigrations RENAME TO customers_v2",
             "ALTER TABLE pgmigrations ADD COLUMN secret text",
             "CREATE TABLE pgmigrations (id int REFERENCES profiles (id))",
             "CREATE TABLE pgmigrations (id int, FOREIGN KEY (id) REFERENCES profiles ON DELETE RESTRICT)",
             "CREATE TABLE pgmigrations (id int GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME pgrail.evil_seq))",
             "CREATE TABLE pgmigrations (id int GENERATED ALWAYS AS IDENTITY)",
             "GRANT ALL ON pgmigrations TO PUBLIC",
             "REVOKE ALL ON pgmigrations FROM PUBLIC",
             "ALTER TABLE pgmigrations OWNER TO agent",
             "CREATE TABLE pgmigrations AS SELECT * FROM profiles",
             "SELECT * INTO pgmigrations FROM profiles",
             "DROP TABLE pgmigrations",
             "DROP TABLE pgmigrations CASCADE",
             "ALTER TABLE pgmigrations DROP COLUMN x CASCADE",
             "CREATE TABLE pgmigrations (r profiles)",
             "CREATE TABLE pgmigrations (id int DEFAULT nextval('profiles_id_seq'))",
             "CREATE TABLE pgmigrations (id int DEFAULT some_fn())",
             "CREATE TABLE pgmigrations (id int CHECK (some_fn(id)))",
             "CREATE TABLE pgmigrations (id int, n int GENERATED ALWAYS AS (id * 2) STORED)",
             "CREATE TABLE pgmigrations (LIKE profiles INCLUDING ALL)",
             "CREATE TABLE pgmigrations (id int) PARTITION BY RANGE (id)",
             "CREATE TABLE pgmigrations (id int) WITH (fillfactor = 10)",
             "CREATE UNLOGGED TABLE pgmigrations (id int)",
             "CREATE TABLE pgmigrations (id int) TABLESPACE pg_default",
             "CREATE TABLE pgmigrations OF some_type",
             "CREATE TABLE pgmigrations (id my_domain)",
             "CREATE TABLE pgmigrations (id int[])",
             "CREATE TABLE pgmigrations (id int PRIMARY KEY USING INDEX TABLESPACE pg_default)",
             "CREATE INDEX ON pgmigrations (lower(name))",
             "ALTER TABLE pgmigrations DISABLE TRIGGER ALL",
             "COMMENT ON TABLE pgmigrations IS 'x'",
             "CREATE TABLE pgmigrations (id int); CREATE TABLE other_table (id int)",
         }) {
        INFO(refused);
        CHECK(decide(policy, owner, refused).action == Action::deny);
    }
    // Not a migrator: the agent gets nothing of it.
    CHECK(decide(policy, agent, "create table knex_migrations (id serial)").action == Action::deny);
    CHECK(decide(policy, agent, R"(update "knex_migrations_lock" set "is_locked" = $1)").action == Action::deny);
}

TEST_CASE("bookkeeping_tables: a migrator rule's own key, plain names only", "[bookkeeping]") {
    CHECK_THROWS_WITH(load_policy_string("version: 1\nrules:\n  - name: all\n    bookkeeping_tables: [pgmigrations]\n", "p"),
                      Catch::Contains("bookkeeping_tables is for a rule with migrator: true"));
    CHECK_THROWS_WITH(load_policy_string("version: 1\nrules:\n  - name: all\n    migrator: true\n"
                                         "    bookkeeping_tables: [\"knex_*\"]\n",
                                         "p"),
                      Catch::Contains("no globs"));
    CHECK_THROWS_WITH(load_policy_string("version: 1\ndefaults:\n  bookkeeping_tables: [pgmigrations]\n"
                                         "rules:\n  - name: all\n",
                                         "p"),
                      Catch::Contains("not to defaults"));
    const auto policy = load_policy_string("version: 1\nrules:\n  - name: all\n    migrator: true\n"
                                           "    bookkeeping_tables: [tools.schema_version]\n",
                                           "p");
    REQUIRE(policy->rules.at(0).guards.bookkeeping_tables.size() == 1);
    CHECK(decide(*policy, owner, "CREATE TABLE tools.schema_version (v int)").action == Action::allow);
    CHECK(decide(*policy, owner, "CREATE TABLE other.schema_version (v int)").action == Action::deny);
    // A qualified entry exempts that qualified name only: a plain name may resolve elsewhere.
    CHECK(decide(*policy, owner, "CREATE TABLE schema_version (v int)").action == Action::deny);
    CHECK(decide(*policy, owner, "UPDATE schema_version SET v = 1").action == Action::deny);
    CHECK(decide(*policy, owner, "UPDATE tools.schema_version SET v = 1").action == Action::allow);
}

TEST_CASE("bookkeeping CREATE TABLE: built-in scalar columns, keys and constant defaults pass", "[bookkeeping]") {
    const auto& policy = *shipped();
    for (const char* allowed : {
             "CREATE TABLE IF NOT EXISTS pgmigrations (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, "
             "run_on timestamptz NOT NULL DEFAULT now(), batch integer DEFAULT 1, ok boolean DEFAULT false, "
             "at timestamp with time zone DEFAULT CURRENT_TIMESTAMP, note varchar(64) DEFAULT 'x'::text)",
             "CREATE TABLE app.knex_migrations (id serial, name varchar(255), CONSTRAINT k PRIMARY KEY (id), UNIQUE (name))",
         }) {
        INFO(allowed);
        CHECK(decide(policy, owner, allowed).action == Action::allow);
    }
}

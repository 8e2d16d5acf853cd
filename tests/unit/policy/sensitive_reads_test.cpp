// The static half of sensitive_columns over statements as the analyzer reads them: which reads
// reach a guarded column, under deny and under mask. The catalog side is stood in for by a set
// built by hand (what resolve_sensitive makes of a catalog is tested against PostgreSQL).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "../../../src/policy/sensitive_reads.hpp"
#include "pgrail/policy/evaluator.hpp"
#include "pgrail/policy/loader.hpp"
#include "pgrail/sql/analyzer.hpp"

using namespace pgrail;
using policy::SensitiveAction;

namespace {

policy::SensitiveSet guarded_set() {
    policy::SensitiveSet set;
    set.relations.push_back({1001, "public", "users", 'r', {"password_hash"}, {3}, "public.users", false,
                             {"id", "name", "email", "password_hash"}});
    set.relations.push_back({1002, "public", "users_leaky", 'v', {"id", "ph"}, {1, 2}, "public.users (through view public.users_leaky)", false});
    set.relations.push_back({11, "pg_catalog", "pg_stats", 'v', {"most_common_vals"}, {9}, "pg_catalog.pg_stats", true,
                             {"schemaname", "tablename", "attname", "most_common_vals"}});
    set.row_functions.push_back({"public", "all_users", "public.users"});
    set.row_functions.push_back({"public", "team_rows", "public.users", true});  // RETURNS TABLE (id int, u users)
    set.keys[{1001, 3}] = 0;
    return set;
}

policy::SensitiveReads reads_of(const std::string& sql, SensitiveAction action) {
    const auto analysis = sql::analyze(sql);
    REQUIRE_FALSE(analysis.error);
    REQUIRE(analysis.statements.size() == 1);
    policy::SensitiveColumns rule;
    rule.action = action;
    rule.patterns.push_back({"", "users", "password_hash"});
    static const auto set = guarded_set();
    return policy::find_sensitive_reads(analysis.statements.front(), rule, set);
}

}  // namespace

TEST_CASE("sensitive reads: shapes that reach a guarded column are refused under deny", "[sensitive]") {
    const std::vector<std::string> refused = {
        "SELECT * FROM users",
        "SELECT u.* FROM users u",
        "SELECT public.users.* FROM public.users",
        "TABLE users",
        "SELECT password_hash FROM users",
        "SELECT u.password_hash AS p FROM users u",
        "SELECT id FROM users WHERE password_hash = 'x'",
        "SELECT id FROM users ORDER BY password_hash",
        "SELECT count(password_hash) FROM users",
        "SELECT max(password_hash) FROM users GROUP BY id",
        "SELECT length(password_hash) FROM users",
        "SELECT password_hash::int FROM users",
        "SELECT row_to_json(u) FROM users u",
        "SELECT to_jsonb(u.*) FROM users u",
        "SELECT u FROM users u",
        "SELECT (u).password_hash FROM users u",
        "SELECT users FROM users",
        "WITH c AS (SELECT password_hash FROM users) SELECT 1 FROM c",
        "WITH c AS (SELECT * FROM users) SELECT id FROM c",
        "SELECT * FROM (SELECT * FROM users) s",
        "SELECT (SELECT password_hash FROM users LIMIT 1)",
        "SELECT id FROM orders o, LATERAL (SELECT password_hash FROM users u WHERE u.id = o.user_id) x",
        "SELECT password_hash FROM users UNION SELECT 'a'",
        "SELECT * FROM users_leaky",
        "SELECT id FROM users_leaky",
        "SELECT * FROM all_users()",
        "SELECT all_users()",
        "SELECT (all_users()).password_hash",
        "COPY users TO STDOUT",
        "COPY users (id, password_hash) TO STDOUT",
        "COPY (SELECT password_hash FROM users) TO STDOUT",
        "UPDATE users SET name = 'x' WHERE id = 1 RETURNING *",
        "UPDATE users SET name = password_hash WHERE id = 1",
        "DELETE FROM users WHERE id = 1 RETURNING password_hash",
        "INSERT INTO users (id) VALUES (9) RETURNING *",
        "INSERT INTO orders (note) SELECT password_hash FROM users",
        "SELECT * FROM users JOIN users_copy USING (password_hash)",
        "SELECT count(*) FROM users NATURAL JOIN users_copy",
        "SELECT rank() OVER (ORDER BY password_hash) FROM users",
        "EXPLAIN ANALYZE SELECT password_hash FROM users",
        "PREPARE p AS SELECT password_hash FROM users",
        "DECLARE c CURSOR FOR SELECT * FROM users",
        "CREATE TEMP TABLE t AS SELECT password_hash FROM users",
        "CREATE TEMP VIEW v AS SELECT * FROM users",
        "DO $$ BEGIN PERFORM password_hash FROM users; END $$",
        "SELECT query_to_xml('SELECT password_hash FROM users', true, true, '')",
        "SELECT most_common_vals FROM pg_stats",
        "SELECT * FROM users AS u (a, b, c)",
        "INSERT INTO users (id) VALUES (1) ON CONFLICT (password_hash) DO NOTHING",
        // A function returning users' rows inside another type (review 102).
        "SELECT * FROM team_rows()",
        "SELECT t.id FROM team_rows() AS t",
        "SELECT (u).password_hash FROM team_rows()",
        "SELECT (team_rows()).u",
        // Writes (review 99): a value stored beside the real ones reveals them.
        "UPDATE users SET password_hash = 'new' WHERE id = 1",
        "UPDATE users u SET (name, password_hash) = ('n', 'p') WHERE id = 1",
        "INSERT INTO users (id, password_hash) VALUES (1, 'x') RETURNING id",
        "INSERT INTO users VALUES (1, 'n', 'e', 'x')",
        "INSERT INTO public.users SELECT * FROM orders",
        "INSERT INTO users (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET password_hash = 'x'",
        "COPY users FROM STDIN",
        "COPY users (id, password_hash) FROM STDIN",
        "MERGE INTO users u USING orders o ON u.id = o.user_id WHEN MATCHED THEN UPDATE SET password_hash = 'x'",
        "MERGE INTO users u USING orders o ON u.id = o.user_id WHEN NOT MATCHED THEN INSERT VALUES (1, 'n')",
        "UPDATE users_leaky SET ph = 'x' WHERE id = 1",
        "WITH w AS (INSERT INTO users VALUES (1) RETURNING id) SELECT * FROM w",
    };
    for (const auto& sql : refused) {
        INFO(sql);
        CHECK(reads_of(sql, SensitiveAction::deny).refuses());
    }
}

TEST_CASE("sensitive reads: shapes that do not reach a guarded column pass", "[sensitive]") {
    const std::vector<std::string> allowed = {
        "SELECT id, name FROM users",
        "SELECT count(*) FROM users",
        "SELECT u.id FROM users u WHERE u.name = 'x'",
        "SELECT * FROM orders",
        "SELECT * FROM orders WHERE user_id IN (SELECT id FROM users)",
        "SELECT o.* FROM users u JOIN orders o ON o.user_id = u.id",
        "SELECT EXISTS (SELECT 1 FROM users WHERE id = 1)",
        "UPDATE users SET name = 'new' WHERE id = 1",
        "INSERT INTO users (id, name) VALUES (1, 'x') RETURNING id",
        "INSERT INTO users (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name",
        "COPY users (id, name) TO STDOUT",
        "COPY users (id, name) FROM STDIN",
        "MERGE INTO users u USING orders o ON u.id = o.user_id WHEN NOT MATCHED THEN INSERT DEFAULT VALUES",
        // Defaults only; a guarded relation that is the source, not the target (review 102).
        "INSERT INTO users DEFAULT VALUES",
        "MERGE INTO orders o USING users u ON o.user_id = u.id WHEN NOT MATCHED THEN INSERT VALUES (u.id)",
        "INSERT INTO orders VALUES (1, 'x')",
        "SELECT id FROM all_users()",
        "SELECT attname FROM pg_stats",
        "SELECT 1",
        "SET search_path = public",
    };
    for (const auto& sql : allowed) {
        INFO(sql);
        const auto reads = reads_of(sql, SensitiveAction::deny);
        CHECK_FALSE(reads.refuses());
        CHECK(reads.masked.empty());
    }
}

TEST_CASE("sensitive reads: under mask only plain result columns pass, and are masked", "[sensitive]") {
    const std::vector<std::string> masked = {
        "SELECT password_hash FROM users",
        "SELECT id, u.password_hash AS p FROM users u WHERE id = 1",
        "SELECT * FROM users",
        "SELECT u.* FROM users u JOIN orders o ON o.user_id = u.id",
        "DECLARE c CURSOR FOR SELECT * FROM users",
        "PREPARE p AS SELECT password_hash FROM users",
        "SELECT id, password_hash FROM users ORDER BY 1",
        "SELECT DISTINCT ON (1) id, password_hash FROM users",
        "SELECT id, password_hash FROM users GROUP BY ROLLUP(1), ROW(2)",
    };
    for (const auto& sql : masked) {
        INFO(sql);
        const auto reads = reads_of(sql, SensitiveAction::mask);
        CHECK_FALSE(reads.refuses());
        CHECK(reads.masked == std::vector<std::string>{"public.users.password_hash"});
    }
    const std::vector<std::string> refused = {
        "SELECT lower(password_hash) FROM users",
        "SELECT id FROM users WHERE password_hash = 'x'",
        "SELECT password_hash FROM users ORDER BY password_hash",
        "SELECT password_hash AS p FROM users ORDER BY p",
        "SELECT id, password_hash FROM users ORDER BY 2",
        "SELECT * FROM users ORDER BY 3",
        "SELECT password_hash FROM users GROUP BY 1",
        // A position inside ROLLUP, CUBE and GROUPING SETS groups by the real values as well.
        "SELECT password_hash FROM users GROUP BY ROLLUP(1)",
        "SELECT id, password_hash FROM users GROUP BY CUBE((1, 2))",
        "SELECT id, password_hash FROM users GROUP BY GROUPING SETS ((1), (2), ())",
        "SELECT id, password_hash FROM users GROUP BY 1, GROUPING SETS (ROLLUP(2))",
        // DISTINCT compares the real values: one row per value (counted under a constant mask),
        // and sorted to find them.
        "SELECT DISTINCT password_hash FROM users",
        "SELECT DISTINCT id, password_hash FROM users",
        "SELECT DISTINCT * FROM users",
        "SELECT * FROM (SELECT * FROM users) s",
        "SELECT password_hash FROM users UNION SELECT 'a'",
        "SELECT row_to_json(u) FROM users u",
        "SELECT * FROM all_users()",
        "UPDATE users SET name = 'x' WHERE id = 1 RETURNING *",
        "COPY (SELECT password_hash FROM users) TO STDOUT",
        "SELECT most_common_vals FROM pg_stats",
        "CREATE TEMP TABLE t AS SELECT password_hash FROM users",
    };
    for (const auto& sql : refused) {
        INFO(sql);
        CHECK(reads_of(sql, SensitiveAction::mask).refuses());
    }
}

TEST_CASE("sensitive reads: what pgrail cannot follow is refused", "[sensitive]") {
    CHECK(reads_of("DO $$ BEGIN EXECUTE 'SELECT ' || 'password_hash FROM users'; END $$", SensitiveAction::deny)
              .unresolved);
    CHECK(reads_of("SELECT table_to_xml('users', true, true, '')", SensitiveAction::deny).unresolved);
    // tablefunc's connectby reads the relation its first argument names, in whatever schema.
    CHECK(reads_of("SELECT * FROM connectby('users', 'id', 'parent', '1', 0) AS t(id int, parent int, level int)",
                   SensitiveAction::deny)
              .unresolved);
    CHECK(reads_of("SELECT * FROM ext.connectby('users', 'id', 'parent', '1', 0) AS t(id int, parent int, level int)",
                   SensitiveAction::mask)
              .unresolved);
    // Its sibling crosstab runs its query text, which is read: a guarded column in it is seen.
    CHECK(reads_of("SELECT * FROM crosstab('SELECT id, 1, password_hash FROM users') AS t(id int, a text)",
                   SensitiveAction::deny)
              .refuses());
    CHECK(reads_of("SELECT cursor_to_xml('c', 10, true, true, '')", SensitiveAction::mask).unresolved);
    // A cursor fetched inside a DO block (helper 70: its masked rows came back in a NOTICE): they
    // never pass the masking on the wire, as a prepared statement run inside another.
    CHECK(reads_of("DO $$ DECLARE v record; BEGIN EXECUTE 'FETCH ALL c' INTO v; RAISE NOTICE '%', v; END $$",
                   SensitiveAction::mask)
              .unresolved);
    CHECK(reads_of("DO $$ BEGIN EXECUTE 'MOVE 1 IN c'; END $$", SensitiveAction::mask).unresolved);
    CHECK_FALSE(reads_of("FETCH ALL FROM c", SensitiveAction::mask).unresolved);  // on the wire: masked
    // Logical decoding returns what every table's changes wrote.
    CHECK(reads_of("SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL)", SensitiveAction::deny).unresolved);
    CHECK(reads_of("SELECT * FROM pg_catalog.pg_logical_slot_get_binary_changes('cdc', NULL, 10)", SensitiveAction::mask)
              .unresolved);
}

TEST_CASE("sensitive reads: view definitions that may read whole rows", "[sensitive]") {
    CHECK(policy::may_read_whole_rows(" SELECT row_to_json(u.*) AS j FROM users u;"));
    CHECK(policy::may_read_whole_rows(" SELECT u AS row FROM users u;"));
    CHECK_FALSE(policy::may_read_whole_rows(" SELECT users.id, users.name FROM users;"));
    CHECK(policy::may_read_whole_rows("not sql at all"));
}

TEST_CASE("sensitive reads: a replication connection under a rule with sensitive columns is refused", "[sensitive]") {
    const auto policy = policy::load_policy_string(R"(version: 1
rules:
  - name: all
    replication: allow
    sensitive_columns: {columns: [users.password_hash]}
)",
                                                   "case");
    policy::SessionInfo session;
    session.user = "agent";
    const auto decision = policy::evaluate_startup(*policy, session, {{"replication", "database"}});
    CHECK(decision.action == policy::Decision::Action::deny);
    CHECK(decision.guard == "sensitive_columns");
    CHECK(policy::evaluate_startup(*policy, session, {{"replication", "false"}}).allowed());
}

TEST_CASE("sensitive reads: the ways around found by review 6", "[sensitive]") {
    for (const auto action : {SensitiveAction::deny, SensitiveAction::mask}) {
        // Attribute notation: `u.to_jsonb` is to_jsonb(u), a function of the whole row.
        CHECK(reads_of("SELECT u.row_to_json FROM users u", action).refuses());
        CHECK(reads_of("SELECT u.to_jsonb FROM users u WHERE u.id = 1", action).refuses());
        CHECK(reads_of("SELECT id FROM users u WHERE u.text LIKE '%x%'", action).refuses());
        CHECK(reads_of("SELECT s.to_jsonb FROM pg_stats s", action).refuses());
        // ... while a column of the relation stays a column.
        CHECK_FALSE(reads_of("SELECT u.id, u.email FROM users u WHERE u.email <> ''", action).refuses());
        CHECK_FALSE(reads_of("SELECT s.tablename FROM pg_stats s", action).refuses());
        // EXCLUDED in ON CONFLICT is the proposed row only at the INSERT's own level: a subquery
        // there names its own.
        CHECK(reads_of("INSERT INTO sink VALUES (1, '') ON CONFLICT (id) DO UPDATE SET v = (SELECT "
                       "string_agg(excluded.password_hash, ';') FROM users excluded)",
                       action)
                  .refuses());
        // A prepared statement run inside another is not masked on the wire.
        CHECK(reads_of("CREATE TEMP TABLE leak AS EXECUTE p", action).unresolved);
        CHECK(reads_of("DO $$ DECLARE v text; BEGIN EXECUTE 'EXECUTE p' INTO v; RAISE NOTICE '%', v; END $$", action)
                  .unresolved);
    }
    // A star before a masked column: its real position is unknown, so a sort by any position
    // from it on may sort by the masked values.
    CHECK(reads_of("SELECT x.*, id, password_hash FROM users, (SELECT 1 a, 2 b) x ORDER BY 4", SensitiveAction::mask)
              .refuses());
    CHECK(reads_of("SELECT x.*, id, password_hash FROM users, (SELECT 1 a, 2 b) x GROUP BY x.a, x.b, 3",
                   SensitiveAction::mask)
              .refuses());
    CHECK_FALSE(reads_of("SELECT id, password_hash FROM users ORDER BY 1", SensitiveAction::mask).refuses());
    // The alias of a join names the rows of every relation it holds.
    for (const auto action : {SensitiveAction::deny, SensitiveAction::mask}) {
        CHECK(reads_of("SELECT to_jsonb(j) FROM (users CROSS JOIN (SELECT 1 AS one) o) AS j", action).refuses());
        CHECK(reads_of("SELECT 1 FROM ((users u JOIN orders o ON true) JOIN teams t ON true) AS j WHERE j IS NOT NULL",
                       action)
                  .refuses());
        // A column of the join's other relation through the alias: pgrail knows only the guarded
        // relation's columns, so `j.total` may be total(j): refused, a false refusal by design.
        CHECK(reads_of("SELECT j.total FROM (users u JOIN orders o ON o.user_id = u.id) AS j", action).refuses());
        CHECK_FALSE(reads_of("SELECT o.total FROM users u JOIN orders o ON o.user_id = u.id", action).refuses());
    }
}

TEST_CASE("sensitive reads: a guarded column is recorded once however often it is reached, and the work is bounded",
          "[sensitive]") {
    // Review 101: N aliases of a guarded table and N reads of its column made N*N records (2 GB
    // from a 110 KB statement) and, under mask, R*K*M steps (minutes of an analysis thread).
    const auto aliases_and_reads = [](int aliases, int reads) {
        std::string sql = "SELECT 1 FROM orders";
        for (int index = 0; index < aliases; ++index) sql += ", users u" + std::to_string(index);
        sql += " WHERE false";
        for (int index = 0; index < reads; ++index) sql += " OR u" + std::to_string(index % aliases) + ".name = ''";
        sql += " OR u0.password_hash = ''";
        return sql;
    };
    const auto few = reads_of(aliases_and_reads(50, 50), SensitiveAction::deny);
    REQUIRE(few.refused.size() == 1);
    CHECK(few.refused.front().column == "public.users.password_hash");
    CHECK_FALSE(few.unresolved);
    const auto many = reads_of(aliases_and_reads(3000, 3000), SensitiveAction::mask);
    CHECK(many.refuses());
    REQUIRE(many.unresolved);
    CHECK_THAT(*many.unresolved, Catch::Contains("too many times over"));
}

// Proposals' pure parts: names, version assignment, structure findings, merge into the registry.
#include <catch2/catch.hpp>

#include "pgrail/migrations/error.hpp"
#include "pgrail/migrations/proposals.hpp"

using namespace pgrail::migrations;

namespace {

std::chrono::system_clock::time_point at(std::time_t seconds) { return std::chrono::system_clock::from_time_t(seconds); }

// The findings as script:rule, without `needs_review` unless asked for.
std::vector<std::string> rules(const Migration& migration, bool with_review = false) {
    std::vector<std::string> out;
    for (const auto& finding : proposal_findings(migration))
        if (with_review || finding.rule != "needs_review") out.push_back(finding.script + ":" + finding.rule);
    return out;
}

// The findings (without `needs_review`) of a proposal of these two scripts.
std::vector<std::string> findings(const std::string& up, const std::string& down) {
    return rules(proposal_migration("1", "x", up, down));
}

}  // namespace

TEST_CASE("proposal names", "[proposals]") {
    CHECK(valid_proposal_name("add_profiles_timezone"));
    CHECK(valid_proposal_name("a"));
    CHECK(valid_proposal_name(std::string(63, 'a')));
    CHECK_FALSE(valid_proposal_name(""));
    CHECK_FALSE(valid_proposal_name(std::string(64, 'a')));
    CHECK_FALSE(valid_proposal_name("Add"));
    CHECK_FALSE(valid_proposal_name("add-col"));
    CHECK_FALSE(valid_proposal_name("a b"));
    CHECK_FALSE(valid_proposal_name("../x"));
}

TEST_CASE("a proposal's version: UTC now, bumped past every taken version", "[proposals]") {
    const auto now = at(1795683600);  // 2026-11-26 09:00:00 UTC
    CHECK(next_proposal_version(now, {}) == "20261126090000");
    CHECK(next_proposal_version(now, {"1", "20261125090000"}) == "20261126090000");
    CHECK(next_proposal_version(now, {"20261126090000"}) == "20261126090001");
    CHECK(next_proposal_version(now, {"20261126090000", "20261126090001"}) == "20261126090002");
    CHECK(next_proposal_version(now, {"20301231235959"}) == "20301231235960");
    CHECK(next_proposal_version(now, {"99999999999999"}) == "100000000000000");
    CHECK(next_proposal_version(now, {"000020301231235959"}) == "20301231235960");
}

TEST_CASE("a proposal's scripts parse as migration files do", "[proposals]") {
    const auto migration = proposal_migration("7", "add_tz", "ALTER TABLE p ADD COLUMN tz text;", "ALTER TABLE p DROP COLUMN tz");
    CHECK(migration.checksum == migration_checksum("ALTER TABLE p ADD COLUMN tz text;", "ALTER TABLE p DROP COLUMN tz"));
    CHECK(migration.up.path.string() == "pgrail.migration_proposals/7_add_tz.up.sql");
    CHECK(rules(migration).empty());

    const auto state = [](const std::string& name, const std::string& up, const std::string& down) {
        try {
            (void)proposal_migration("7", name, up, down);
        } catch (const MigrationError& error) {
            return error.sqlstate();
        }
        return std::string("ok");
    };
    CHECK(state("x", "ALTER TABLE p ADD COLUMN tz text", "ALTER TABLE p DROP COLUMN tz,,") == "42601");
    CHECK(state("x", "ALTER TABLE p ADD COLUMN tz text", "") == "22023");
    CHECK(state("x", "ALTER TABLE p ADD COLUMN tz text", "-- nothing\n;") == "22023");
    CHECK(state("x", "", "DROP TABLE t") == "22023");
    CHECK(state("x", "BEGIN; CREATE TABLE t (a int); COMMIT; DROP TABLE u", "DROP TABLE t") == "22023");
    CHECK(state("X", "CREATE TABLE t (a int)", "DROP TABLE t") == "22023");
}

TEST_CASE("structure findings of a proposal", "[proposals]") {
    CHECK(findings("ALTER TABLE p ADD COLUMN tz text", "ALTER TABLE p DROP COLUMN tz").empty());
    CHECK(findings("CREATE TABLE t (a int)", "DROP TABLE t").empty());
    CHECK(findings("ALTER TABLE p DROP COLUMN tz", "ALTER TABLE p ADD COLUMN tz text") ==
          std::vector<std::string>{"up:destructive"});
    CHECK(findings("DROP TABLE t", "CREATE TABLE t (a int)") == std::vector<std::string>{"up:destructive"});
    CHECK(findings("TRUNCATE t", "SELECT 1") ==
          std::vector<std::string>{"up:no_schema_change", "up:destructive"});
    CHECK(findings("ALTER TABLE p ALTER COLUMN a TYPE bigint", "ALTER TABLE p ALTER COLUMN a TYPE int") ==
          std::vector<std::string>{"up:destructive"});
    CHECK(findings("CREATE INDEX CONCURRENTLY i ON p (a)", "DROP INDEX i") ==
          std::vector<std::string>{"up:concurrently_in_transaction"});
    CHECK(findings("-- pgrail:no-transaction\nCREATE INDEX CONCURRENTLY i ON p (a)", "DROP INDEX i").empty());
    CHECK(findings("-- pgrail:no-transaction\nCREATE INDEX CONCURRENTLY i ON p (a); CREATE INDEX j ON p (b)",
                   "DROP INDEX i; DROP INDEX j") == std::vector<std::string>{"up:no_transaction_statements"});
    CHECK(findings("CREATE TABLE t (a int)", "SELECT 1") == std::vector<std::string>{"down:rollback_reverses_nothing"});
    CHECK(findings("UPDATE p SET a = 1 WHERE a IS NULL", "SELECT 1") ==
          std::vector<std::string>{"up:no_schema_change", "up:destructive"});
}

TEST_CASE("a rollback that drops what its up script did not make is destructive", "[proposals]") {
    const std::vector<std::string> down_destructive{"down:destructive"};
    CHECK(findings("ALTER TABLE p ADD COLUMN a text", "ALTER TABLE p DROP COLUMN a").empty());
    CHECK(findings("ALTER TABLE p ADD COLUMN a text", "ALTER TABLE p DROP COLUMN a; DROP TABLE important") ==
          down_destructive);
    CHECK(findings("ALTER TABLE p ADD COLUMN a text", "ALTER TABLE p DROP COLUMN b") == down_destructive);
    CHECK(findings("ALTER TABLE p ADD COLUMN a text", "ALTER TABLE q DROP COLUMN a") == down_destructive);
    CHECK(findings("CREATE TABLE t (a int)", "DROP TABLE t CASCADE") == down_destructive);
    CHECK(findings("CREATE TABLE t (a int)", "DROP TABLE t; TRUNCATE p") == down_destructive);
    CHECK(findings("CREATE TABLE t (a int)", "DROP TABLE t; DELETE FROM p WHERE a = 1") == down_destructive);
    CHECK(findings("CREATE TABLE t (a int)", "DROP TABLE t, p") == down_destructive);
    CHECK(findings("CREATE TABLE t (a int)", "DO $$BEGIN EXECUTE 'DROP TABLE t'; EXECUTE 'DROP TABLE p'; END$$") ==
          down_destructive);
    CHECK(findings("ALTER TABLE p ADD COLUMN a text",
                   "DO $$BEGIN ALTER TABLE p DROP COLUMN a; ALTER TABLE p DROP COLUMN b; END$$") == down_destructive);
    CHECK(findings("CREATE TABLE t (a int)", "DO $$BEGIN EXECUTE 'DROP TABLE t'; END$$").empty());
    // Review 9: what the up script did not make, however it is spelled.
    CHECK(findings("CREATE TABLE IF NOT EXISTS payroll (id int)", "DROP TABLE payroll") == down_destructive);
    CHECK(findings("ALTER TABLE p ADD COLUMN IF NOT EXISTS a text", "ALTER TABLE p DROP COLUMN a") == down_destructive);
    CHECK(findings("CREATE TABLE attic.important (id int)", "DROP TABLE public.important") == down_destructive);
    CHECK(findings("CREATE TABLE public.t (a int)", "DROP TABLE public.t").empty());
    CHECK(findings("CREATE TABLE t (a int)", "DROP TABLE t; DROP SEQUENCE s") == down_destructive);
    CHECK(findings("CREATE TABLE t (a int)", "DROP TABLE t; DROP OWNED BY app_owner") == down_destructive);
    CHECK(findings("ALTER TABLE p ALTER COLUMN a TYPE bigint", "ALTER TABLE p ALTER COLUMN a TYPE int USING NULL") ==
          std::vector<std::string>{"up:destructive", "down:destructive"});
}

TEST_CASE("what a DO block or a query string runs is read for destruction as a statement is", "[proposals]") {
    const std::string add_back = "ALTER TABLE p ADD COLUMN a text";
    const std::vector<std::string> up_destructive{"up:destructive"};
    CHECK(findings("DO $$BEGIN EXECUTE 'ALTER TABLE p DROP COLUMN a'; END$$", add_back) == up_destructive);
    CHECK(findings("DO $$BEGIN ALTER TABLE p DROP COLUMN a; END$$", add_back) == up_destructive);
    CHECK(findings("DO $$BEGIN EXECUTE 'ALTER TABLE p ALTER COLUMN a TYPE int USING 0'; END$$", add_back) ==
          up_destructive);
    CHECK(findings("DO $$BEGIN EXECUTE 'TRUNCATE p'; END$$", add_back) ==
          std::vector<std::string>{"up:no_schema_change", "up:destructive"});
    CHECK(findings("DO $$DECLARE q text := 'x'; BEGIN EXECUTE q; END$$", add_back) ==
          std::vector<std::string>{"up:no_schema_change", "up:destructive"});
    CHECK(findings("DO $$BEGIN EXECUTE 'ALTER TABLE p ADD COLUMN b text'; END$$", "ALTER TABLE p DROP COLUMN b")
              .empty());
    // Review 9: functions the scripts create and call, procedures, CASCADE, rows rewritten in a CTE or MERGE.
    const std::string zap =
        "CREATE FUNCTION zap4() RETURNS void LANGUAGE plpgsql AS 'BEGIN ALTER TABLE important DROP COLUMN p; END'; "
        "SELECT zap4(); DROP FUNCTION zap4()";
    CHECK(findings(zap, add_back) == up_destructive);
    CHECK(findings("ALTER TABLE p ADD COLUMN b text; CALL public.tidy()", "ALTER TABLE p DROP COLUMN b") == up_destructive);
    CHECK(findings("DROP TYPE mood CASCADE", "CREATE TYPE mood AS ENUM ('a')") == up_destructive);
    CHECK(findings("ALTER TABLE p ADD COLUMN b text; WITH gone AS (DELETE FROM p RETURNING id) SELECT count(*) FROM gone",
                   "ALTER TABLE p DROP COLUMN b") == up_destructive);
    CHECK(findings("ALTER TABLE p ADD COLUMN b text; MERGE INTO p USING q ON p.id = q.id WHEN MATCHED THEN DELETE",
                   "ALTER TABLE p DROP COLUMN b") == up_destructive);
}

TEST_CASE("a waiver in a proposal's own script keeps its finding listed, and the proposal unclean", "[proposals]") {
    const auto migration =
        proposal_migration("1", "x", "-- pgrail:allow volatile-default it is fine\nALTER TABLE p ADD COLUMN s bigserial",
                           "ALTER TABLE p DROP COLUMN s");
    const auto lint = proposal_lint_findings(migration);
    const auto waived =
        std::find_if(lint.begin(), lint.end(), [](const ProposalFinding& f) { return f.rule == "volatile-default"; });
    REQUIRE(waived != lint.end());
    CHECK(waived->severity == "warning");
    CHECK_THAT(waived->message, Catch::Contains("waived by the proposal: it is fine"));
    CHECK_FALSE(proposal_is_clean(findings_json(lint), "passed"));
}

TEST_CASE("only additive changes and their reversal can be approved without a person", "[proposals]") {
    const auto review = [](const std::string& up, const std::string& down) {
        return rules(proposal_migration("1", "x", up, down), true);
    };
    CHECK(review("ALTER TABLE p ADD COLUMN tz text", "ALTER TABLE p DROP COLUMN tz").empty());
    CHECK(review("ALTER TABLE p ADD COLUMN n int DEFAULT 0", "ALTER TABLE p DROP COLUMN n").empty());
    CHECK(review("CREATE TABLE t (a int)", "DROP TABLE t").empty());
    CHECK(review("CREATE INDEX i ON p (a)", "DROP INDEX i").empty());
    const std::vector<std::string> up_review{"up:needs_review"};
    // Privileges, data copied by the runner's rights, functions run with them, pgrail's own tables.
    CHECK(review("CREATE TABLE t (a int); GRANT SELECT ON secrets TO agent", "DROP TABLE t") == up_review);
    CHECK(review("CREATE TABLE leak AS SELECT * FROM secrets", "DROP TABLE leak") == up_review);
    CHECK(review("ALTER TABLE p ADD COLUMN f text DEFAULT pg_read_file('/etc/passwd')", "ALTER TABLE p DROP COLUMN f") ==
          up_review);
    CHECK(review("CREATE INDEX i ON p (lower(a))", "DROP INDEX i") == up_review);
    CHECK(review("CREATE TABLE t (a int); INSERT INTO pgrail.schema_migrations (version) VALUES ('9')",
                 "DROP TABLE t") == up_review);
    CHECK(review("CREATE TABLE pgrail.t (a int)", "DROP TABLE pgrail.t") ==
          std::vector<std::string>{"up:needs_review", "down:needs_review"});
    CHECK(review("ALTER TABLE p ADD COLUMN n int NOT NULL", "ALTER TABLE p DROP COLUMN n") == up_review);
    // Another table reached with the runner's rights: bound by a key, inherited, partitioned, copied.
    CHECK(review("CREATE TABLE c (x int REFERENCES secrets (id))", "DROP TABLE c") == up_review);
    CHECK(review("CREATE TABLE c (x int) INHERITS (secrets)", "DROP TABLE c") == up_review);
    CHECK(review("CREATE TABLE c PARTITION OF secrets FOR VALUES IN (1)", "DROP TABLE c") == up_review);
    CHECK(review("CREATE TABLE c (LIKE secrets)", "DROP TABLE c") == up_review);
    CHECK(review("ALTER TABLE p ADD COLUMN s int REFERENCES secrets (id)", "ALTER TABLE p DROP COLUMN s") ==
          up_review);
    // Review 9: what evaluates existing rows (a failure would quote their values to the agent).
    CHECK(review("CREATE INDEX IF NOT EXISTS leak ON p ((email::int))", "DROP INDEX leak") == up_review);
    // Helper 75: a no-transaction script, however plain, commits as it goes (a lock timeout on the
    // live table leaves an INVALID index behind).
    CHECK(review("-- pgrail:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON p (a)",
                 "-- pgrail:no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS i") ==
          std::vector<std::string>{"up:needs_review", "down:needs_review"});
    CHECK(review("CREATE UNIQUE INDEX i ON p (email)", "DROP INDEX i") == up_review);
    CHECK(review("CREATE INDEX i ON p (a) WHERE email <> ''", "DROP INDEX i") == up_review);
    CHECK(review("ALTER TABLE p ADD COLUMN c int CHECK (length(email) > 0)", "ALTER TABLE p DROP COLUMN c") ==
          up_review);
    CHECK(review("ALTER TABLE p ADD COLUMN c int CHECK (c > 0)", "ALTER TABLE p DROP COLUMN c") == up_review);
    CHECK(review("ALTER TABLE p ADD COLUMN c bigint GENERATED ALWAYS AS (id * 2) STORED", "ALTER TABLE p DROP COLUMN c") ==
          up_review);
    CHECK(review("CREATE TABLE t (id bigint PRIMARY KEY, code text UNIQUE CHECK (code <> ''))", "DROP TABLE t").empty());
    // A down script that does more than drop what up made.
    CHECK(review("CREATE TABLE t (a int)", "DROP TABLE t; GRANT ALL ON p TO agent") ==
          std::vector<std::string>{"down:needs_review"});
    // Review 62: an ALTER TABLE's other clauses beside the drop; a foreign key to the table itself
    // (deletes of a root row would then cascade to every row pointed at it).
    const std::vector<std::string> down_review{"down:needs_review"};
    CHECK(review("ALTER TABLE p ADD COLUMN d int", "ALTER TABLE p DROP COLUMN d, DISABLE TRIGGER USER") == down_review);
    CHECK(review("ALTER TABLE p ADD COLUMN d int", "ALTER TABLE p DROP COLUMN d, OWNER TO agent") == down_review);
    CHECK(review("ALTER TABLE p ADD COLUMN d int, ADD COLUMN e int", "ALTER TABLE p DROP COLUMN d, DROP COLUMN e")
              .empty());
    CHECK(review("ALTER TABLE p ADD COLUMN q bigint REFERENCES p (id) ON DELETE CASCADE", "ALTER TABLE p DROP COLUMN q") ==
          up_review);
    CHECK(review("ALTER TABLE p ADD COLUMN q bigint REFERENCES p (id)", "ALTER TABLE p DROP COLUMN q") == up_review);
    // (Up does more than add columns, so down's drop is not up's reversal either: destructive.)
    CHECK(review("ALTER TABLE p ADD COLUMN q bigint, ADD FOREIGN KEY (q) REFERENCES p (id)",
                 "ALTER TABLE p DROP COLUMN q") == std::vector<std::string>{"down:destructive", "up:needs_review"});
}

TEST_CASE("clean proposals and the merge into the registry", "[proposals]") {
    CHECK(proposal_is_clean(nlohmann::json::array(), "passed"));
    CHECK_FALSE(proposal_is_clean(nlohmann::json::array(), "skipped: no scratch database"));
    CHECK_FALSE(proposal_is_clean(nlohmann::json::array({{{"rule", "destructive"}}}), "passed"));

    const auto directory = Registry::from_files("m", {{"1_a.up.sql", "CREATE TABLE a (x int)"},
                                                      {"1_a.down.sql", "DROP TABLE a"}});
    Proposal same;
    same.version = "1";
    same.name = "a";
    same.up_sql = "CREATE TABLE a (x int)";
    same.down_sql = "DROP TABLE a";
    same.checksum = migration_checksum(same.up_sql, same.down_sql);
    same.state = ProposalState::approved;
    Proposal other = same;
    other.version = "2";
    other.name = "b";
    other.up_sql = "CREATE TABLE b (x int)";
    other.down_sql = "DROP TABLE b";
    other.checksum = migration_checksum(other.up_sql, other.down_sql);
    Proposal pending = other;
    pending.version = "3";
    pending.state = ProposalState::proposed;

    auto merged = merge_proposals(directory, {same, other, pending});
    CHECK(merged.conflicts.empty());
    REQUIRE(merged.registry.migrations().size() == 2);
    CHECK(merged.registry.migrations()[0].up.path.string() == "m/1_a.up.sql");  // the file
    CHECK(merged.registry.find("2")->checksum == other.checksum);
    CHECK(merged.registry.find("3") == nullptr);

    Proposal changed = same;
    changed.down_sql = "DROP TABLE a CASCADE";
    changed.checksum = migration_checksum(changed.up_sql, changed.down_sql);
    merged = merge_proposals(directory, {changed});
    REQUIRE(merged.conflicts.size() == 1);
    CHECK_THAT(merged.conflicts[0], Catch::Contains("migration 1 is both in the migrations directory"));
    CHECK(merged.registry.find("1")->checksum == directory.find("1")->checksum);
}

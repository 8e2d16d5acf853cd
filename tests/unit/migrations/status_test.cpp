// Status: pending/applied/drifted/invalid from registry and ledger; the migrator match index.
#include <catch2/catch.hpp>

#include <memory>

#include "pgrail/migrations/snapshot.hpp"
#include "pgrail/migrations/status.hpp"
#include "pgrail/sql/analyzer.hpp"

using namespace pgrail::migrations;

namespace {

std::shared_ptr<const Registry> sample_registry() {
    return std::make_shared<const Registry>(Registry::from_files(
        "/m", {{"1_create.up.sql", "CREATE TABLE t (id int);"},
               {"1_create.down.sql", "DROP TABLE t;"},
               {"2_column.up.sql", "ALTER TABLE t ADD COLUMN c text;"},
               {"2_column.down.sql", "ALTER TABLE t DROP COLUMN c;"},
               {"3_index.up.sql", "CREATE INDEX i ON t (c);"},
               {"3_index.down.sql", "DROP INDEX i;"},
               {"4_no_down.up.sql", "CREATE TABLE w (id int);"},
               {"7_bad.up.sql", "CREATE TABLE (;"},
               {"7_bad.down.sql", "SELECT 1;"}}));
}

AppliedMigration applied(const Registry& registry, const std::string& version) {
    const Migration& migration = *registry.find(version);
    return {version, migration.name, migration.checksum, "2026-11-25 10:00:00+00", "migrator", 3};
}

const StatusEntry& entry(const std::vector<StatusEntry>& status, const std::string& version) {
    for (const auto& e : status)
        if (e.version == version) return e;
    FAIL("no status row for " << version);
    throw;
}

pgrail::sql::Statement statement(const std::string& text) {
    auto analysis = pgrail::sql::analyze(text);
    REQUIRE(analysis.statements.size() == 1);
    return analysis.statements[0];
}

}  // namespace

TEST_CASE("status without a ledger: registered pending, bad files invalid") {
    const auto registry = sample_registry();
    const auto status = compute_status(*registry, LedgerState{});
    REQUIRE(status.size() == 6);
    CHECK(entry(status, "1").state == State::pending);
    CHECK(entry(status, "3").has_rollback);
    CHECK(entry(status, "4").state == State::invalid);
    CHECK_FALSE(entry(status, "4").has_rollback);
    CHECK_THAT(entry(status, "4").detail, Catch::Contains("no rollback script"));
    CHECK(entry(status, "4").name == "4_no_down.up.sql");
    CHECK(entry(status, "7").state == State::invalid);
    CHECK(*status.back().version == "7");
    CHECK_FALSE(has_drift(status));
}

TEST_CASE("drift: changed files, vanished files, files now invalid") {
    const auto registry = sample_registry();
    LedgerState ledger{true, {applied(*registry, "1"), applied(*registry, "2")}, {}};
    ledger.applied[1].checksum = "0000";
    ledger.applied.push_back({"7", "bad", "abcd", "2026-11-25 10:00:00+00", "migrator", 1});
    ledger.applied.push_back({"5", "gone", "ef01", "2026-11-25 10:00:00+00", "migrator", 1});
    const auto status = compute_status(*registry, ledger);
    CHECK(entry(status, "1").state == State::applied);
    CHECK(entry(status, "1").applied_at == "2026-11-25 10:00:00+00");
    CHECK(entry(status, "2").state == State::drifted);
    CHECK_THAT(entry(status, "2").detail, Catch::Contains("files changed since applied"));
    CHECK(entry(status, "5").state == State::drifted);
    CHECK(entry(status, "5").checksum == "ef01");
    CHECK_THAT(entry(status, "5").detail, Catch::Contains("files vanished"));
    CHECK(entry(status, "7").state == State::drifted);
    CHECK_THAT(entry(status, "7").detail, Catch::Contains("now invalid") && Catch::Contains("does not parse"));
    CHECK(has_drift(status));
    // Invalid files of an applied version are reported once, as its drift.
    CHECK(std::count_if(status.begin(), status.end(), [](const auto& e) { return e.version == "7"; }) == 1);
}

TEST_CASE("a migrator's DDL matches pending up scripts and applied down scripts only") {
    const auto registry = sample_registry();
    LedgerState ledger{true, {applied(*registry, "1")}, {}};
    const Snapshot snapshot(registry, ledger);
    // 2 is pending: its up statement matches, with different spacing and case.
    const auto up = statement("alter table t   add column c TEXT");
    CHECK(snapshot.matches_statement(up, Direction::up));
    CHECK_FALSE(snapshot.matches_statement(up, Direction::down));
    REQUIRE(snapshot.match(up).has_value());
    CHECK(snapshot.match(up)->version == "2");
    // 1 is applied: its down script matches, its up script no longer does.
    CHECK(snapshot.matches_statement(statement("DROP TABLE t"), Direction::down));
    CHECK_FALSE(snapshot.match(statement("CREATE TABLE t (id int)")).has_value());
    // Structurally different statements do not match.
    CHECK_FALSE(snapshot.match(statement("ALTER TABLE t ADD COLUMN d text")).has_value());
    CHECK_FALSE(snapshot.match(statement("ALTER TABLE t ADD COLUMN c int")).has_value());
    // A migration without a rollback script never matches.
    CHECK_FALSE(snapshot.match(statement("CREATE TABLE w (id int)")).has_value());

    LedgerState drifted = ledger;
    drifted.applied[0].checksum = "changed";
    const Snapshot blocked(registry, drifted);
    CHECK(blocked.drift());
    CHECK_FALSE(blocked.match(statement("DROP TABLE t")).has_value());
}

namespace {

std::shared_ptr<const Registry> no_transaction_registry() {
    return std::make_shared<const Registry>(Registry::from_files(
        "/m", {{"1_create.up.sql", "CREATE TABLE t (id int, c text);"},
               {"1_create.down.sql", "DROP TABLE t;"},
               {"2_idx.up.sql", "-- pgrail:no-transaction\nCREATE INDEX CONCURRENTLY a ON t (id);\n"
                                "CREATE INDEX CONCURRENTLY b ON t (c);\nCREATE INDEX CONCURRENTLY c ON t (id, c);"},
               {"2_idx.down.sql", "-- pgrail:no-transaction\nDROP INDEX CONCURRENTLY c;\nDROP INDEX CONCURRENTLY b;\n"
                                  "DROP INDEX CONCURRENTLY a;"}}));
}

PartialRun partial_run(const Registry& registry, Direction direction, std::size_t ran) {
    const Migration& migration = *registry.find("2");
    PartialRun run;
    run.version = "2";
    run.name = migration.name;
    run.checksum = migration.checksum;
    run.direction = direction;
    run.statements_ran = ran;
    run.statements_total = 3;
    run.at = "2026-11-25 10:00:00+00";
    run.by = "migrator";
    run.detail = partial_event_prefix(direction, ran, 3) + "; migration 2_idx failed at statement 3: boom";
    return run;
}

}  // namespace

TEST_CASE("the partial event prefix is written and read back exactly") {
    CHECK(partial_event_prefix(Direction::up, 2, 3) == "up, no-transaction: statements 1..2 of 3 ran and were not undone");
    const auto parsed = parse_partial_event_prefix(partial_event_prefix(Direction::down, 1, 4) + "; whatever");
    REQUIRE(parsed.has_value());
    CHECK(parsed->direction == Direction::down);
    CHECK(parsed->ran == 1);
    CHECK(parsed->total == 4);
    CHECK_FALSE(parse_partial_event_prefix("up: migration 2_x failed at statement 2").has_value());
    CHECK_FALSE(parse_partial_event_prefix("up, no-transaction: statements 1..0 of 3 ran and were not undone"));
    CHECK_FALSE(parse_partial_event_prefix("up, no-transaction: statements 1..4 of 3 ran and were not undone"));
    CHECK_FALSE(parse_partial_event_prefix("up, no-transaction: statements 1..x of 3 ran and were not undone"));
    CHECK_FALSE(parse_partial_event_prefix("sideways, no-transaction: statements 1..1 of 3 ran and were not undone"));
}

TEST_CASE("a no-transaction script that stopped partway is partial, with what ran and how to resolve it") {
    const auto registry = no_transaction_registry();
    LedgerState ledger{true, {applied(*registry, "1")}, {partial_run(*registry, Direction::up, 2)}};
    const auto status = compute_status(*registry, ledger);
    REQUIRE(status.size() == 2);
    const auto& row = entry(status, "2");
    CHECK(row.state == State::partial);
    CHECK(std::string(to_string(row.state)) == "partial");
    CHECK(has_partial(status));
    CHECK_FALSE(has_drift(status));
    CHECK(row.partial != nullptr);
    CHECK(row.has_rollback);
    CHECK_THAT(row.detail, Catch::Contains("no-transaction up script 2_idx.up.sql stopped partway") &&
                               Catch::Contains("statements 1..2 of 3 ran and were not undone") &&
                               Catch::Contains("not recorded as applied") &&
                               Catch::Contains("1 (line 2): CREATE INDEX CONCURRENTLY a ON t (id)") &&
                               Catch::Contains("2 (line 3): CREATE INDEX CONCURRENTLY b ON t (c)") &&
                               Catch::Contains("statement 3 failed") &&
                               Catch::Contains("failed or did not run:\n  3 (line 4)") &&
                               Catch::Contains("failure: migration 2_idx failed at statement 3: boom"));
    const auto hint = partial_resolution(*row.partial);
    CHECK_THAT(hint, Catch::Contains("run statement 3 of the up script yourself") &&
                         Catch::Contains("pgrail migrate resolve 2 --as applied") &&
                         Catch::Contains("undo what statements 1..2 did") &&
                         Catch::Contains("pgrail migrate resolve 2 --as pending") &&
                         Catch::Contains("would run statements 1..2 again"));

    // Either script's statements match for a migrator finishing or undoing it by hand.
    const Snapshot snapshot(registry, ledger);
    CHECK(snapshot.matches_statement(statement("CREATE INDEX CONCURRENTLY c ON t (id, c)"), Direction::up));
    CHECK(snapshot.matches_statement(statement("DROP INDEX CONCURRENTLY a"), Direction::down));
}

TEST_CASE("a partial rollback, and a partial run whose files changed or vanished") {
    const auto registry = no_transaction_registry();
    SECTION("down") {
        LedgerState ledger{true, {applied(*registry, "1"), applied(*registry, "2")},
                           {partial_run(*registry, Direction::down, 1)}};
        const auto status = compute_status(*registry, ledger);
        const auto& row = entry(status, "2");
        CHECK(row.state == State::partial);
        CHECK(row.applied != nullptr);
        CHECK_THAT(row.detail, Catch::Contains("down (rollback) script 2_idx.down.sql") &&
                                   Catch::Contains("statement 1 of 3 ran and was not undone; statement 2 failed, "
                                                   "statement 3 did not run") &&
                                   Catch::Contains("still recorded as applied"));
        CHECK_THAT(partial_resolution(*row.partial),
                   Catch::Contains("finish the rollback by hand (run statements 2..3 of the down script yourself), "
                                   "then run `pgrail migrate resolve 2 --as pending`") &&
                       Catch::Contains("undo what statement 1 did by hand, then run `pgrail migrate resolve 2 --as "
                                       "applied`"));
    }
    SECTION("changed files: still partial, the detail says the files changed") {
        auto run = partial_run(*registry, Direction::up, 2);
        run.checksum = "0000";
        LedgerState ledger{true, {}, {run}};
        const auto status = compute_status(*registry, ledger);
        CHECK(entry(status, "2").state == State::partial);
        CHECK_THAT(entry(status, "2").detail, Catch::Contains("files changed since that run (checksum then 0000"));
    }
    SECTION("vanished files") {
        auto run = partial_run(*registry, Direction::up, 2);
        run.version = "9";
        LedgerState ledger{true, {}, {run}};
        const auto status = compute_status(*registry, ledger);
        REQUIRE(status.size() == 3);
        CHECK(entry(status, "9").state == State::partial);
        CHECK(entry(status, "9").name == "idx");
        CHECK_FALSE(entry(status, "9").has_rollback);
        CHECK_THAT(entry(status, "9").detail, Catch::Contains("no longer registered"));
    }
    SECTION("every statement ran but the ledger did not record it") {
        LedgerState ledger{true, {}, {partial_run(*registry, Direction::up, 3)}};
        const auto status = compute_status(*registry, ledger);
        CHECK_THAT(entry(status, "2").detail,
                   Catch::Contains("all 3 statements ran and were not undone, but the ledger did not record"));
        CHECK_THAT(partial_resolution(*entry(status, "2").partial), Catch::Contains("nothing is left to run"));
    }
}

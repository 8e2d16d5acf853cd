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
    LedgerState ledger{true, {applied(*registry, "1"), applied(*registry, "2")}};
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
    LedgerState ledger{true, {applied(*registry, "1")}};
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

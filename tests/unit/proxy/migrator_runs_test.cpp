// The wire-level half of recording migrator runs: completed, then committed; nothing else counts.
// (Which completion answers which statement is the session core's: session_protocol_test.cpp.)
#include <catch2/catch.hpp>

#include "pgrail/proxy/migrator_runs.hpp"

using namespace pgrail;
using pgrail::proxy::completes_as;
using pgrail::proxy::MigratorRunTracker;
using pgrail::proxy::MigratorStatement;

namespace {
const MigratorStatement alter{0, "1", migrations::Direction::up, "form", "ALTER TABLE"};
}

TEST_CASE("a registered statement counts once completed and committed", "[migrator_runs]") {
    MigratorRunTracker tracker;
    // Autocommit: completed, then ReadyForQuery idle.
    tracker.on_completed(alter);
    CHECK(tracker.watching());
    tracker.on_ready('I');
    REQUIRE(tracker.has_committed());
    const auto committed = tracker.take_committed();
    REQUIRE(committed.size() == 1);
    CHECK(committed[0].version == "1");
    CHECK(!tracker.watching());

    // In a block: counted only at the COMMIT's ReadyForQuery.
    tracker.on_completed(alter);
    tracker.on_ready('T');
    CHECK(!tracker.has_committed());
    tracker.on_command_complete("COMMIT");
    tracker.on_ready('I');
    CHECK(tracker.take_committed().size() == 1);

    // Rolled back (also to a savepoint, or prepared for two-phase commit) or failed: nothing.
    for (const char* undo : {"ROLLBACK", "PREPARE TRANSACTION"}) {
        tracker.on_completed(alter);
        tracker.on_ready('T');
        tracker.on_command_complete(undo);
        tracker.on_ready('I');
        CHECK(!tracker.has_committed());
    }
    tracker.on_completed(alter);
    tracker.on_error();
    tracker.on_ready('I');
    CHECK(!tracker.has_committed());
    tracker.on_completed(alter);
    tracker.on_ready('E');
    CHECK(!tracker.has_committed());
}

TEST_CASE("a completion's tag is the statement's, or SELECT for those that write a query's rows",
          "[migrator_runs]") {
    CHECK(completes_as("ALTER TABLE", "ALTER TABLE"));
    CHECK(completes_as("CREATE INDEX", "CREATE INDEX"));
    CHECK_FALSE(completes_as("CREATE INDEX", "CREATE TABLE"));
    CHECK_FALSE(completes_as("ALTER TABLESPACE", "ALTER TABLE"));
    // CREATE TABLE AS, CREATE MATERIALIZED VIEW and SELECT INTO answer "SELECT n" (PostgreSQL 15),
    // and their own tag WITH NO DATA.
    for (const char* tag : {"CREATE TABLE AS", "CREATE MATERIALIZED VIEW", "SELECT"}) {
        CHECK(completes_as("SELECT 4", tag));
        CHECK(completes_as(tag, tag));
    }
    CHECK_FALSE(completes_as("SELECT 4", "CREATE TABLE"));
    CHECK_FALSE(completes_as("INSERT 0 1", "CREATE TABLE AS"));
}

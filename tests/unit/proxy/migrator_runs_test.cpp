// The wire-level half of recording migrator runs: completed, then committed; nothing else counts.
#include <catch2/catch.hpp>

#include "pgrail/proxy/migrator_runs.hpp"

using namespace pgrail;
using pgrail::proxy::MigratorRunTracker;
using pgrail::proxy::MigratorStatement;

namespace {
const MigratorStatement alter{"1", migrations::Direction::up, "form", "ALTER TABLE"};
}

TEST_CASE("a registered statement counts once completed and committed", "[migrator_runs]") {
    MigratorRunTracker tracker;
    // Autocommit: CommandComplete, then ReadyForQuery idle.
    tracker.on_forwarded({alter});
    CHECK(tracker.watching());
    tracker.on_command_complete("ALTER TABLE");
    tracker.on_ready('I');
    REQUIRE(tracker.has_committed());
    const auto committed = tracker.take_committed();
    REQUIRE(committed.size() == 1);
    CHECK(committed[0].version == "1");
    CHECK(!tracker.watching());

    // In a block: counted only at the COMMIT's ReadyForQuery.
    tracker.on_forwarded({alter});
    tracker.on_command_complete("ALTER TABLE");
    tracker.on_ready('T');
    CHECK(!tracker.has_committed());
    tracker.on_command_complete("COMMIT");
    tracker.on_ready('I');
    CHECK(tracker.take_committed().size() == 1);

    // Rolled back, failed, or never completed: nothing.
    tracker.on_forwarded({alter});
    tracker.on_command_complete("ALTER TABLE");
    tracker.on_ready('T');
    tracker.on_command_complete("ROLLBACK");
    tracker.on_ready('I');
    CHECK(!tracker.has_committed());
    tracker.on_forwarded({alter});
    tracker.on_error();
    tracker.on_ready('I');
    CHECK(!tracker.has_committed());
    tracker.on_forwarded({alter});
    tracker.on_command_complete("INSERT 0 1");  // another statement's
    tracker.on_ready('I');
    CHECK(!tracker.has_committed());
    tracker.on_forwarded({alter});
    tracker.on_command_complete("ALTER TABLE");
    tracker.on_ready('E');
    CHECK(!tracker.has_committed());
}

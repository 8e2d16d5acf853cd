// The admin view's commands answered from memory: their columns, their rows, their arguments.
#include <algorithm>

#include <catch2/catch.hpp>

#include "../../../src/proxy/admin_commands.hpp"
#include "pgrail/migrations/error.hpp"

using namespace pgrail::proxy;

namespace {

const std::optional<std::string>* find_stat(const pgrail::migrations::ResultTable& table, const std::string& name) {
    for (const auto& row : table.rows)
        if (row.at(0) == name) return &row.at(1);
    return nullptr;
}

}  // namespace

TEST_CASE("admin commands: columns without running, the migrations' commands still theirs", "[admin]") {
    using pgrail::sql::PgrailCommand;
    CHECK(pgrail::sql::is_admin_command(PgrailCommand::sessions));
    CHECK(pgrail::sql::is_admin_command(PgrailCommand::stats));
    CHECK(pgrail::sql::is_admin_command(PgrailCommand::refusals));
    CHECK_FALSE(pgrail::sql::is_admin_command(PgrailCommand::status));
    const auto sessions = inband_command_columns(PgrailCommand::sessions);
    CHECK(sessions.columns.front() == "session_id");
    CHECK(std::find(sessions.columns.begin(), sessions.columns.end(), "statement_fingerprint") != sessions.columns.end());
    CHECK(sessions.columns.size() == sessions.types.size());
    CHECK(inband_command_columns(PgrailCommand::status).columns.front() == "version");
    // Every command has its columns.
    for (const auto command : pgrail::sql::all_pgrail_commands)
        CHECK_FALSE(inband_command_columns(command).columns.empty());
}

TEST_CASE("admin commands: sessions, stats and refusals from memory", "[admin]") {
    auto directory = std::make_shared<SessionDirectory>();
    RefusalRing ring(10);
    AdminCommands admin(directory, nullptr, ring);
    SessionContext caller;
    caller.session_id = 5;
    caller.user = "app_owner";
    auto entry = directory->add(caller);
    entry->on_statement("SELECT * FROM pgrail.sessions()", {});

    auto outcome = admin.run(caller, pgrail::sql::PgrailCommand::sessions, {});
    REQUIRE(outcome.ok);
    REQUIRE(outcome.table.rows.size() == 1);
    CHECK(outcome.table.rows[0][0] == "5");
    CHECK(outcome.table.rows[0][2] == "app_owner");
    CHECK(outcome.table.rows[0][5] == "app_owner");  // identity: the user until issue #19
    CHECK(outcome.table.rows[0][6] == "active");

    outcome = admin.run(caller, pgrail::sql::PgrailCommand::stats, {});
    REQUIRE(outcome.ok);
    CHECK(find_stat(outcome.table, "sessions_open") != nullptr);
    CHECK(find_stat(outcome.table, "statements_deny") != nullptr);
    CHECK(find_stat(outcome.table, "timeouts login") != nullptr);
    REQUIRE(find_stat(outcome.table, "sessions_listed") != nullptr);
    CHECK(*find_stat(outcome.table, "sessions_listed") == "1");

    for (int n = 0; n < 30; ++n) {
        RefusalRecord record;
        record.session_id = static_cast<std::uint64_t>(n);
        ring.add(record);
    }
    outcome = admin.run(caller, pgrail::sql::PgrailCommand::refusals, {});
    REQUIRE(outcome.ok);
    CHECK(outcome.table.rows.size() == 10);  // the ring holds 10; the default limit is 20
    outcome = admin.run(caller, pgrail::sql::PgrailCommand::refusals, {"3"});
    REQUIRE(outcome.ok);
    REQUIRE(outcome.table.rows.size() == 3);
    CHECK(outcome.table.rows[0][1] == "29");
}

TEST_CASE("admin commands: bad arguments are refused with a clear error", "[admin]") {
    auto directory = std::make_shared<SessionDirectory>();
    RefusalRing ring;
    AdminCommands admin(directory, nullptr, ring);
    const SessionContext caller;
    for (const std::string bad : {"0", "1001", "-1", "ten", "5.5", ""}) {
        const auto outcome = admin.run(caller, pgrail::sql::PgrailCommand::refusals, {bad});
        CHECK_FALSE(outcome.ok);
        CHECK(outcome.error.sqlstate == "22023");
    }
    CHECK(admin.run(caller, pgrail::sql::PgrailCommand::refusals, {"1000"}).ok);
    CHECK(admin.run(caller, pgrail::sql::PgrailCommand::refusals, {"1", "2"}).error.sqlstate == "22023");
    CHECK(admin.run(caller, pgrail::sql::PgrailCommand::sessions, {"x"}).error.sqlstate == "42883");
    CHECK(admin.run(caller, pgrail::sql::PgrailCommand::stats, {"x"}).error.sqlstate == "42883");
}

TEST_CASE("admin commands: the dispatcher routes, migrations not configured answer 55000", "[admin]") {
    auto directory = std::make_shared<SessionDirectory>();
    RefusalRing ring;
    InbandDispatch dispatch(std::make_shared<AdminCommands>(directory, nullptr, ring), nullptr);
    const SessionContext caller;
    CHECK(dispatch.run(caller, pgrail::sql::PgrailCommand::stats, {}).ok);
    const auto status = dispatch.run(caller, pgrail::sql::PgrailCommand::status, {});
    CHECK_FALSE(status.ok);
    CHECK(status.error.sqlstate == "55000");
}

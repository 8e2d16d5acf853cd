// How verify's measurements read: the ledger's detail, the CLI's columns, the audit line's JSON.
#include <catch2/catch.hpp>

#include "pgrail/migrations/runner.hpp"

using namespace pgrail::migrations;

namespace {

VerifyResult measured() {
    VerifyResult result;
    result.passed = true;
    result.measurement.rewrites = {"profiles"};
    result.measurement.locks_measured = true;
    result.measurement.locks = {{"profiles", "ACCESS EXCLUSIVE"}, {"app.orders", "SHARE"}};
    result.measurement.up_ms = 4;
    result.measurement.down_ms = 2;
    result.measurement.reup_ms = 3;
    return result;
}

}  // namespace

TEST_CASE("verify's measurements in one readable line") {
    auto result = measured();
    CHECK(measurement_text(result) ==
          "rewrites profiles; locks: profiles ACCESS EXCLUSIVE, app.orders SHARE; up 4 ms, down 2 ms, up again 3 ms; "
          "sample: schema only");
    result.measurement.rewrites.clear();
    result.measurement.down_rewrites = {"profiles"};
    CHECK(rewrites_text(result) == "no table rewritten; down rewrites profiles");
    result.measurement.locks.clear();
    CHECK(locks_text(result) == "none on existing tables");
    result.measurement.locks_measured = false;
    CHECK(locks_text(result) == "not measured: no-transaction script");

    VerifyResult failed;
    failed.sample = {10, 7, 2, {"users: no rows (excluded column email is NOT NULL without a default)"}};
    CHECK(rewrites_text(failed) == "not measured: up did not finish");
    CHECK(locks_text(failed) == "not measured: up did not finish");
    CHECK(measurement_text(failed) ==
          "up did not finish: nothing measured; sample: 7 rows in 2 tables (at most 10 per table); users: no rows "
          "(excluded column email is NOT NULL without a default)");
    CHECK(sample_text({1, 1, 1, {}}) == "1 row in 1 table (at most 1 per table)");
}

TEST_CASE("verify's measurements as JSON: null for what was not measured") {
    const auto json = measurement_json(measured());
    CHECK(json["rewrites"] == nlohmann::json{"profiles"});
    CHECK(json["locks"] == nlohmann::json{{"profiles", "ACCESS EXCLUSIVE"}, {"app.orders", "SHARE"}});
    CHECK(json["up_ms"] == 4);
    CHECK(json["sample"]["rows_per_table"] == 0);
    const auto failed = measurement_json(VerifyResult{});
    CHECK(failed["rewrites"].is_null());
    CHECK(failed["locks"].is_null());
    CHECK(failed["reup_ms"].is_null());
}

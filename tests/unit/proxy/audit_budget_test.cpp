// Audit lines of clients nobody authenticated are bounded: a burst, then a rate; what is left
// out is counted and carried by the next line written.
#include <catch2/catch.hpp>

#include "pgrail/proxy/audit_budget.hpp"

using pgrail::proxy::AuditBudget;
using namespace std::chrono_literals;

TEST_CASE("a burst, then a rate; the next line written carries how many were left out", "[audit_budget]") {
    AuditBudget budget(10.0, 100.0);
    const auto start = AuditBudget::Clock::now();
    for (int i = 0; i < 100; ++i) REQUIRE(budget.take(start) == std::optional<std::uint64_t>(0));
    for (int i = 0; i < 5000; ++i) CHECK_FALSE(budget.take(start).has_value());  // a flood at one instant
    CHECK(budget.take(start + 50ms) == std::nullopt);   // half a token
    CHECK(budget.take(start + 100ms) == std::optional<std::uint64_t>(5001));  // one token: this line, with the count
    CHECK(budget.take(start + 110ms) == std::nullopt);
    CHECK(budget.left_out_total() == 5002);
    // Quiet for a minute: the burst is back, never more.
    for (int i = 0; i < 100; ++i) REQUIRE(budget.take(start + 60s).has_value());
    CHECK_FALSE(budget.take(start + 60s).has_value());
}

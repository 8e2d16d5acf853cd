// The budget of log lines that unauthenticated connections cause: a burst, then a rate, and the
// count of lines left out carried by the next one logged.
#include <catch2/catch.hpp>

#include "../../../src/proxy/log_budget.hpp"

using pgrail::proxy::LogBudget;
using Clock = pgrail::proxy::TokenBucket::Clock;

TEST_CASE("log budget: a burst, then a rate; the next line says how many were left out", "[proxy][log]") {
    LogBudget budget(2, 3);
    const auto start = Clock::now();
    for (int i = 0; i < 3; ++i) CHECK(budget.take(start) == std::string());
    CHECK_FALSE(budget.take(start).has_value());
    CHECK_FALSE(budget.take(start).has_value());
    // Half a second later: one more line, carrying the two left out.
    CHECK(budget.take(start + std::chrono::milliseconds(500)) == " (2 more such lines not logged before it)");
    CHECK_FALSE(budget.take(start + std::chrono::milliseconds(500)).has_value());
    CHECK(budget.take(start + std::chrono::seconds(10)) == " (1 more such lines not logged before it)");
    CHECK(budget.take(start + std::chrono::seconds(10)) == std::string());
}

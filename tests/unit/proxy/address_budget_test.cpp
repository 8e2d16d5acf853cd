// Unauthenticated clients' audit lines are bounded per address first, then in all: one address's
// flood spends its own budget, and another address is still heard.
#include <catch2/catch.hpp>

#include "pgrail/proxy/address_budget.hpp"

using pgrail::proxy::AddressBudget;
using namespace std::chrono_literals;

TEST_CASE("a flood from one address leaves another address's lines written", "[audit_budget]") {
    AddressBudget budget;  // per address 1/s after 20; in all 10/s after 100
    const auto start = AddressBudget::Clock::now();
    for (int i = 0; i < 20; ++i) REQUIRE(budget.take("198.51.100.7", start).has_value());
    for (int i = 0; i < 5000; ++i) CHECK_FALSE(budget.take("198.51.100.7", start).has_value());
    // The flood spent its address's burst, not the total: another client is heard at once,
    // and its line carries the count of those left out.
    CHECK(budget.take("203.0.113.9", start) == std::optional<std::uint64_t>(5000));
    CHECK(budget.take("198.51.100.7", start + 1s).has_value());  // one a second for the flooder
    CHECK(budget.left_out_total() == 5000);
}

TEST_CASE("many addresses together stop at the total", "[audit_budget]") {
    AddressBudget budget;
    const auto start = AddressBudget::Clock::now();
    int written = 0;
    for (int i = 0; i < 1000; ++i)
        if (budget.take("10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250), start)) ++written;
    CHECK(written == 100);  // the total burst
}

TEST_CASE("an IPv6 client counts by its /64; IPv4-mapped addresses as IPv4", "[audit_budget]") {
    CHECK(AddressBudget::key_of("2001:db8:1:2:aaaa::1") == AddressBudget::key_of("2001:db8:1:2:ffff::9"));
    CHECK(AddressBudget::key_of("2001:db8:1:2::1") != AddressBudget::key_of("2001:db8:1:3::1"));
    CHECK(AddressBudget::key_of("::ffff:192.0.2.1") == "192.0.2.1");
    CHECK(AddressBudget::key_of("192.0.2.1") == "192.0.2.1");
    CHECK(AddressBudget::key_of("[local]") == "[local]");
    AddressBudget budget;
    const auto start = AddressBudget::Clock::now();
    for (int i = 0; i < 20; ++i) REQUIRE(budget.take("2001:db8::" + std::to_string(i + 1), start).has_value());
    CHECK_FALSE(budget.take("2001:db8::ffff", start).has_value());  // the same /64
}

TEST_CASE("addresses beyond the tracked number share one budget; idle ones are forgotten", "[audit_budget]") {
    AddressBudget budget(AddressBudget::Rates{1.0, 2.0, 1000.0, 1000.0, 4});
    const auto start = AddressBudget::Clock::now();
    for (int i = 0; i < 4; ++i) REQUIRE(budget.take("10.1.0." + std::to_string(i), start).has_value());
    // Four tracked, none idle: newcomers share the overflow's burst of 2.
    CHECK(budget.take("10.2.0.1", start).has_value());
    CHECK(budget.take("10.2.0.2", start).has_value());
    CHECK_FALSE(budget.take("10.2.0.3", start).has_value());
    // Two seconds on, the four have their burst back: forgotten, and a newcomer has its own.
    CHECK(budget.take("10.3.0.1", start + 2s).has_value());
    CHECK(budget.take("10.3.0.1", start + 2s).has_value());
    CHECK_FALSE(budget.take("10.3.0.1", start + 2s).has_value());
}

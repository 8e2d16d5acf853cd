// A login refused faster than its budget is answered later, never left unanswered or unaudited.
#include <catch2/catch.hpp>

#include "pgrail/proxy/refusal_pacer.hpp"

using pgrail::proxy::RefusalPacer;
using namespace std::chrono_literals;

TEST_CASE("a burst answered at once, then each refusal waits for its line's turn at the rate", "[refusal_pacer]") {
    RefusalPacer pacer(10000.0, 100000.0);  // bytes a second, burst bytes
    const auto start = RefusalPacer::Clock::now();
    const auto zero = RefusalPacer::Clock::duration::zero();
    for (int i = 0; i < 200; ++i) REQUIRE(pacer.reserve("role agent", 500, start) == zero);
    // Ten more 500-byte lines at the same instant: the k-th waits k * 50 ms (a debt the login's
    // sessions share); a 9 KB line then waits its 0.9 s more.
    for (int k = 1; k <= 10; ++k) {
        const auto wait = pacer.reserve("role agent", 500, start);
        CHECK(wait >= std::chrono::milliseconds(50 * k - 1));
        CHECK(wait <= std::chrono::milliseconds(50 * k + 1));
    }
    const auto long_line = pacer.reserve("role agent", 9000, start);
    CHECK(long_line >= 1399ms);
    CHECK(long_line <= 1401ms);
    // Another login has a budget of its own.
    CHECK(pacer.reserve("identity reviewer", 500, start) == zero);
    // Once the debt is paid and a minute passes, the burst is back, never more.
    for (int i = 0; i < 200; ++i) REQUIRE(pacer.reserve("role agent", 500, start + 60s) == zero);
    CHECK(pacer.reserve("role agent", 500, start + 60s) > zero);
}

TEST_CASE("a rate of 0 paces nothing", "[refusal_pacer]") {
    RefusalPacer pacer(0.0, 16384.0);
    const auto start = RefusalPacer::Clock::now();
    for (int i = 0; i < 1000; ++i) REQUIRE(pacer.reserve("role agent", 9000, start) == RefusalPacer::Clock::duration::zero());
}

// The in-band commands' pace (ServerShared::command_pacer): a wait past the bound takes nothing,
// so sessions that ask and leave pile no debt on the login's others (review 95: 58 s).
TEST_CASE("reserve_within takes nothing when the wait would pass its bound", "[refusal_pacer]") {
    RefusalPacer pacer(10.0, 30.0);  // commands a second, burst
    const auto start = RefusalPacer::Clock::now();
    for (int i = 0; i < 30; ++i) REQUIRE(pacer.reserve_within("role agent", 1, 5s, start) == RefusalPacer::Clock::duration::zero());
    // 49 more at once: the k-th waits k / 10 s, up to 4.9 s.
    for (int k = 1; k <= 49; ++k) REQUIRE(pacer.reserve_within("role agent", 1, 5s, start).has_value());
    // The 50th would wait 5.0 s and more: refused, and any number of refusals leave the debt as it was.
    for (int i = 0; i < 1000; ++i) CHECK_FALSE(pacer.reserve_within("role agent", 2, 5s, start).has_value());
    const auto next = pacer.reserve_within("role agent", 1, 5s, start);
    REQUIRE(next.has_value());
    CHECK(*next >= 4999ms);
    CHECK(*next <= 5001ms);
}

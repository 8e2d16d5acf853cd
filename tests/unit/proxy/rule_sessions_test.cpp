// A rule's max_connections counts the logins in progress that hold a server connection with its
// sessions; the oldest login in progress gives its place up when the rule is full.
#include <catch2/catch.hpp>

#include "pgrail/proxy/rule_sessions.hpp"

using pgrail::proxy::RuleSessions;

TEST_CASE("a rule's places: sessions are kept, the oldest login in progress gives way", "[rule_sessions]") {
    const auto sessions = std::make_shared<RuleSessions>();
    int evicted_first = 0;
    int evicted_second = 0;
    auto first = sessions->take("agents", 2, [&] { ++evicted_first; });
    auto second = sessions->take("agents", 2, [&] { ++evicted_second; });
    REQUIRE(first);
    REQUIRE(second);
    CHECK(sessions->count("agents") == 2);
    // Full: a third login takes the oldest login's place, whose login is told to end.
    auto third = sessions->take("agents", 2, [] {});
    REQUIRE(third);
    CHECK(evicted_first == 1);
    CHECK(evicted_second == 0);
    CHECK(sessions->count("agents") == 2);
    first.reset();  // the evicted place was passed on: releasing it gives nothing back
    CHECK(sessions->count("agents") == 2);
    // An authenticated session takes a login's place too (the second's, now the oldest).
    auto session = sessions->take("agents", 2);
    REQUIRE(session);
    CHECK(evicted_second == 1);
    second.reset();
    // The third logs in: its login place is given back, a session's taken.
    third.reset();
    CHECK(sessions->count("agents") == 1);
    auto logged_in = sessions->take("agents", 2);
    REQUIRE(logged_in);
    // Sessions alone fill the rule: no login, no session gets in, and nothing is evicted.
    CHECK_FALSE(sessions->take("agents", 2, [] { FAIL("a session was evicted"); }));
    CHECK_FALSE(sessions->take("agents", 2));
    CHECK(sessions->count("agents") == 2);
    // Another rule is counted apart.
    CHECK(sessions->take("owner", 1));
    session.reset();
    logged_in.reset();
    CHECK(sessions->count("agents") == 0);
}

TEST_CASE("a flood of logins from one address ends its own logins first", "[rule_sessions]") {
    const auto sessions = std::make_shared<RuleSessions>();
    int flood_evicted = 0;
    int real_evicted = 0;
    std::vector<std::shared_ptr<void>> held;
    held.push_back(sessions->take("agents", 3, [&] { ++real_evicted; }, "198.51.100.7"));  // a real client
    for (int i = 0; i < 20; ++i) held.push_back(sessions->take("agents", 3, [&] { ++flood_evicted; }, "203.0.113.9"));
    // The flood's address always had the most logins in progress: it gave way to itself.
    CHECK(real_evicted == 0);
    CHECK(flood_evicted == 18);
    CHECK(sessions->count("agents") == 3);
    // The real client, authenticated, takes a session's place: a flood login gives way again.
    auto session = sessions->take("agents", 3);
    CHECK(real_evicted == 0);
    CHECK(flood_evicted == 19);
}

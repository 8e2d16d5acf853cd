// The migration lock: its key, the bounded wait, and errors that name the holder or say the
// run was abandoned (no database: the holders are given).
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "pgrail/migrations/lock.hpp"

using namespace pgrail::migrations;
using namespace std::chrono_literals;

TEST_CASE("the advisory lock key is \"pgrailmg\" and shows in pg_locks as its two halves") {
    STATIC_REQUIRE(advisory_lock_key == 8099568217555234151);
    char ascii[9] = {};
    for (int i = 0; i < 8; ++i)
        ascii[i] = static_cast<char>((static_cast<std::uint64_t>(advisory_lock_key) >> (56 - 8 * i)) & 0xff);
    CHECK(std::string(ascii) == "pgrailmg");
    STATIC_REQUIRE(advisory_lock_classid == 1885827681u);
    STATIC_REQUIRE(advisory_lock_objid == 1768713575u);
    STATIC_REQUIRE((static_cast<std::uint64_t>(advisory_lock_classid) << 32 | advisory_lock_objid) ==
                   static_cast<std::uint64_t>(advisory_lock_key));
}

TEST_CASE("an abandon flag: null never abandons; set abandons") {
    CHECK_FALSE(is_abandoned(nullptr));
    auto flag = std::make_shared<std::atomic<bool>>(false);
    const AbandonFlag shared = flag;  // what the session hands over converts implicitly
    CHECK_FALSE(is_abandoned(shared));
    flag->store(true);
    CHECK(is_abandoned(shared));
}

TEST_CASE("wait_for_lock polls until the lock is free") {
    int tries = 0;
    const auto outcome = wait_for_lock([&] { return ++tries == 4; }, [] { return false; }, 10s);
    CHECK(outcome == LockWait::acquired);
    CHECK(tries == 4);
}

TEST_CASE("wait_for_lock gives up after the wait, with a last try at the deadline") {
    int tries = 0;
    const auto started = std::chrono::steady_clock::now();
    const auto outcome = wait_for_lock([&] { return ++tries, false; }, nullptr, 200ms);
    const auto waited = std::chrono::steady_clock::now() - started;
    CHECK(outcome == LockWait::timed_out);
    CHECK(waited >= 200ms);
    CHECK(waited < 5s);  // loose: bounded, not exact
    CHECK(tries >= 3);   // polled, not slept through
    CHECK(tries < 200);  // and not a busy loop (10 ms doubling to 100 ms)
}

TEST_CASE("wait_for_lock tries once even with no wait at all") {
    int tries = 0;
    CHECK(wait_for_lock([&] { return ++tries, true; }, nullptr, 0ms) == LockWait::acquired);
    CHECK(wait_for_lock([&] { return ++tries, false; }, nullptr, 0ms) == LockWait::timed_out);
    CHECK(tries == 2);
}

TEST_CASE("an abandoned run stops waiting at once, long before the wait is over") {
    std::atomic<bool> abandoned{false};
    std::thread client([&] {
        std::this_thread::sleep_for(150ms);
        abandoned = true;
    });
    const auto started = std::chrono::steady_clock::now();
    const auto outcome = wait_for_lock([] { return false; }, [&] { return abandoned.load(); }, 60s);
    const auto waited = std::chrono::steady_clock::now() - started;
    client.join();
    CHECK(outcome == LockWait::abandoned);
    CHECK(waited < 10s);

    // Abandoned before it starts: it does not even try (a free lock is not taken).
    int tries = 0;
    CHECK(wait_for_lock([&] { return ++tries, true; }, [] { return true; }, 1s) == LockWait::abandoned);
    CHECK(tries == 0);
}

TEST_CASE("the lock-wait error names the holder's pid and how to end it") {
    LockHolder holder;
    holder.pid = 4242;
    holder.mode = "ExclusiveLock";
    holder.user = "mallory";
    holder.application_name = "psql";
    holder.client_address = "10.0.0.7";
    holder.state = "idle";
    const auto error = lock_wait_error({holder}, 500ms);
    CHECK(error.sqlstate() == "55P03");
    CHECK_THAT(error.message(), Catch::Contains("within 500 ms") && Catch::Contains("pid 4242"));
    CHECK_THAT(error.detail(), Catch::Contains("8099568217555234151") && Catch::Contains("backend pid 4242") &&
                                   Catch::Contains("user mallory") && Catch::Contains("\"psql\"") &&
                                   Catch::Contains("client 10.0.0.7") && Catch::Contains("state idle"));
    CHECK_THAT(error.hint(), Catch::Contains("SELECT pg_terminate_backend(4242);") && Catch::Contains("retry"));
}

TEST_CASE("the lock-wait error tells another pgrail run apart from a stranger") {
    LockHolder runner;
    runner.pid = 17;
    runner.application_name = std::string(runner_application_name);
    CHECK(is_pgrail_runner(runner));
    const auto error = lock_wait_error({runner}, 10s);
    CHECK_THAT(error.message(), Catch::Contains("pid 17"));
    CHECK_THAT(error.hint(), Catch::Contains("Another pgrail migration run is in progress"));
    CHECK_THAT(error.hint(), !Catch::Contains("pg_terminate_backend"));

    // Shared holders: all are named; only the strangers are offered pg_terminate_backend.
    LockHolder stranger;
    stranger.pid = 99;
    stranger.mode = "ShareLock";
    CHECK_FALSE(is_pgrail_runner(stranger));
    const auto both = lock_wait_error({runner, stranger}, 10s);
    CHECK_THAT(both.message(), Catch::Contains("pids 17, 99"));
    CHECK_THAT(both.hint(), Catch::Contains("pg_terminate_backend(99)") && !Catch::Contains("pg_terminate_backend(17)"));
}

TEST_CASE("the lock-wait error without a holder to name") {
    const auto error = lock_wait_error({}, 1s);
    CHECK(error.sqlstate() == "55P03");
    CHECK_THAT(error.message(), Catch::Contains("within 1000 ms"));
    CHECK_THAT(error.hint(), Catch::Contains("retry"));
}

TEST_CASE("the abandoned error says what was done before the run stopped") {
    const auto nothing = abandoned_error("while it waited for the migration lock", {});
    CHECK(nothing.sqlstate() == "57014");
    CHECK_THAT(nothing.message(), Catch::Contains("abandoned while it waited for the migration lock") &&
                                      Catch::Contains("cancelled or disconnected"));
    CHECK(nothing.detail() == "nothing was applied or rolled back");

    const auto some = abandoned_error("before migration 2_b", {"applied 1_a (3 ms)"});
    CHECK_THAT(some.detail(), Catch::Contains("applied 1_a (3 ms)") && Catch::Contains("nothing after"));
}

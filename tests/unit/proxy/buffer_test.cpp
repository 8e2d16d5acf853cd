// The budget for whole client messages: granted whole or not at all, first come first served,
// returned by every way a buffer lets go of its memory.
#include <catch2/catch.hpp>

#include "../../../src/proxy/buffer.hpp"

using pgrail::proxy::Buffer;
using pgrail::proxy::BufferBudget;
using pgrail::proxy::standard_buffer_size;

namespace {
constexpr std::size_t large = 3 * standard_buffer_size;
}

TEST_CASE("standard buffers cost no budget; larger ones reserve their whole size", "[proxy][buffer]") {
    BufferBudget budget(4 * standard_buffer_size);
    {
        Buffer buffer(&budget);
        REQUIRE(buffer.prepare(100));
        CHECK(budget.used() == 0);
        REQUIRE(buffer.prepare(large));
        CHECK(budget.used() == large);
        CHECK(buffer.holds_budget());
        // Growing reserves only the difference.
        REQUIRE(buffer.prepare(large + 10));
        CHECK(budget.used() == large + 10);
        buffer.release();
        CHECK(budget.used() == 0);
        REQUIRE(buffer.prepare(large));
    }
    CHECK(budget.used() == 0);  // the destructor returns it too
}

// A budget of five standard buffers, three taken by `holder`, and `first` refused and in line.
struct Line {
    BufferBudget budget{5 * standard_buffer_size};
    Buffer holder{&budget};
    Buffer first{&budget};
    Buffer second{&budget};
    Line() {
        holder.set_login("role a");
        first.set_login("role b");
        second.set_login("role c");
        REQUIRE(holder.prepare(large));
        CHECK_FALSE(first.prepare(large));  // 3 + 3 > 5 standard buffers: refused, in line
    }
};

TEST_CASE("a request that does not fit waits its turn; later ones queue behind it", "[proxy][buffer]") {
    Line line;
    // A smaller request would fit, but must not overtake the one waiting.
    CHECK_FALSE(line.second.prepare(standard_buffer_size + 1));
    CHECK(line.budget.used() == large);
    line.holder.release();
    CHECK_FALSE(line.second.prepare(standard_buffer_size + 1));  // still behind `first`
    REQUIRE(line.first.prepare(large));
    REQUIRE(line.second.prepare(standard_buffer_size + 1));
    CHECK(line.budget.used() == large + standard_buffer_size + 1);
}

TEST_CASE("a request that gives up leaves the line", "[proxy][buffer]") {
    Line line;
    line.first.release();  // its session ended
    REQUIRE(line.second.prepare(standard_buffer_size + 1));
}

TEST_CASE("one login holds at most half of the budget, and waits for its own past that", "[proxy][buffer]") {
    BufferBudget budget(8 * standard_buffer_size);
    Buffer a1(&budget), a2(&budget), b1(&budget), a3(&budget);
    for (Buffer* buffer : {&a1, &a2, &a3}) buffer->set_login("role agent");
    b1.set_login("identity other");
    // Holding nothing, a login may take more than half at once (a message of max_message_size).
    REQUIRE(a1.prepare(5 * standard_buffer_size));
    CHECK(budget.used_by("role agent") == 5 * standard_buffer_size);
    a1.release();
    REQUIRE(a1.prepare(large));
    // Past half (4 standard buffers) it waits, though the budget has room ...
    CHECK_FALSE(a2.prepare(large));
    // (and a shorter one of the same login, which would fit its share, waits behind it) ...
    Buffer a4(&budget);
    a4.set_login("role agent");
    CHECK_FALSE(a4.prepare(standard_buffer_size + 1));
    a4.release();
    // ... and another login's request behind it in the line goes first.
    REQUIRE(b1.prepare(large));
    CHECK(budget.used_by("identity other") == large);
    // Once its own message is gone, its waiting request is granted; its next one waits again.
    a1.release();
    REQUIRE(a2.prepare(large));
    CHECK_FALSE(a3.prepare(large));
    CHECK(budget.used() == 2 * large);
    a2.release();
    b1.release();
    REQUIRE(a3.prepare(large));
    CHECK(budget.used() == large);
    CHECK(budget.used_by("identity other") == 0);
}

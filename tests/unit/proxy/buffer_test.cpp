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

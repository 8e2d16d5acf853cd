// Work that needs more stack than the calling thread has runs on a big stack of that same thread
// (or, where that cannot be, a worker): same results, exceptions carried back, nothing lost.
#include <pthread.h>

#include <functional>
#include <stdexcept>
#include <string>

#include <catch2/catch.hpp>

#include "../../../src/sql/analyzer_internal.hpp"
#include "../../../src/sql/deep_stack.hpp"
#include "pgrail/sql/analyzer.hpp"

using namespace pgrail::sql;

namespace {

// Runs `body` on a new thread with a 512 KB stack (an analysis of a few KB of text needs more).
void on_small_stack(const std::function<void()>& body) {
    struct Call {
        const std::function<void()>* body;
        std::exception_ptr failure;
    } call{&body, nullptr};
    pthread_attr_t attributes;
    REQUIRE(pthread_attr_init(&attributes) == 0);
    REQUIRE(pthread_attr_setstacksize(&attributes, std::size_t{512} << 10) == 0);
    pthread_t thread;
    const auto main = [](void* argument) -> void* {
        auto* self = static_cast<Call*>(argument);
        try {
            (*self->body)();
        } catch (...) {
            self->failure = std::current_exception();
        }
        return nullptr;
    };
    REQUIRE(pthread_create(&thread, &attributes, main, &call) == 0);
    pthread_join(thread, nullptr);
    pthread_attr_destroy(&attributes);
    if (call.failure) std::rethrow_exception(call.failure);
}

// About 9 KB of comment-free SQL, several statements, a DO body among them.
std::string long_text() {
    std::string sql = "SELECT t.id, CASE";
    for (int arm = 0; arm < 120; ++arm) sql += " WHEN t.k = " + std::to_string(arm) + " THEN 'a" + std::to_string(arm) + "'";
    sql += " END AS label FROM app.items t JOIN app.owners o ON o.id = t.owner WHERE t.id IN (";
    for (int item = 0; item < 1000; ++item) sql += (item == 0 ? "" : ", ") + std::to_string(item * 7);
    sql += "); UPDATE app.items SET n = n + 1 WHERE id = 3; DO $$BEGIN EXECUTE 'DROP TABLE x'; END$$";
    return sql;
}

}  // namespace

TEST_CASE("a long text analysed on a thread with a small stack: same analysis as on a big one", "[sql][stack]") {
    const std::string text = long_text();
    REQUIRE(text.size() > 8000);
    const Analysis expected = analyze(text);  // the main thread: 8 MB
    REQUIRE(expected.statements.size() == 3);
    CHECK(expected.statements[0].statement_class == StatementClass::read);
    CHECK(expected.statements[2].statement_class == StatementClass::ddl);  // the DO body's constant EXECUTE
    Analysis small;
    Analysis split;
    on_small_stack([&] {
        small = analyze(text);
        split = detail::analyze_split(text);
    });
    CHECK(small == expected);
    CHECK(split == expected);
}

TEST_CASE("run_with_stack runs on the calling thread with the stack asked for, and carries exceptions back",
          "[sql][stack]") {
    constexpr std::size_t needed = std::size_t{8} << 20;
    on_small_stack([&] {
        REQUIRE(detail::stack_remaining() < needed);
        const pthread_t caller = pthread_self();
        bool ran = false;
        bool same_thread = false;
        std::size_t remaining = 0;
        auto work = [&] {
            ran = true;
            remaining = detail::stack_remaining();
            same_thread = pthread_equal(pthread_self(), caller) != 0;
        };
        REQUIRE(detail::run_with_stack(needed, detail::Work(work)));
        CHECK(ran);
        CHECK(remaining >= needed);
        // Sanitizer builds switch no stacks: a worker runs it there.
        if (detail::instrumented_stack_factor == 1) CHECK(same_thread);

        auto failing = [] { throw std::runtime_error("from the big stack"); };
        CHECK_THROWS_WITH(detail::run_with_stack(needed, detail::Work(failing)), "from the big stack");

        // Work on the big stack may ask again: a need the big stack meets runs there, one beyond
        // any stack pgrail has is refused.
        bool inner_ran = false;
        bool too_big_refused = false;
        auto nested = [&] {
            auto inner = [&] { inner_ran = detail::stack_remaining() >= (std::size_t{60} << 20); };
            if (!detail::run_with_stack(std::size_t{60} << 20, detail::Work(inner))) inner_ran = false;
            auto never = [] {};
            too_big_refused = !detail::run_with_stack(detail::worker_stack_bytes, detail::Work(never));
        };
        REQUIRE(detail::run_with_stack(needed, detail::Work(nested)));
        CHECK(inner_ran);
        CHECK(too_big_refused);
        // And the thread's own stack is measured again once back on it.
        CHECK(detail::stack_remaining() < needed);
    });
}

// Hostile nesting must be refused, never crash: the worst shapes at and beyond the bound.
#include <pthread.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>

#include <catch2/catch.hpp>

#include "../../../src/sql/analyzer_internal.hpp"
#include "../../../src/sql/deep_stack.hpp"
#include "deep_input.hpp"
#include "pgrail/sql/analyzer.hpp"

using namespace pgrail::sql;
using pgrail::sql::testing::deep_shapes;

namespace {

// Runs analyze_unchecked on a fresh 64 MB stack painted with a pattern and
// reports the deepest byte it touched: the stack the analysis really used.
struct Measurement {
    std::string query;
    bool whole = false;  // analyze() as is (whole-text fast path when it applies)
    std::size_t used = 0;
};

void* measure_thread(void* argument) {
    auto* measurement = static_cast<Measurement*>(argument);
    pthread_attr_t attributes;
    pthread_getattr_np(pthread_self(), &attributes);
    void* low = nullptr;
    std::size_t size = 0;
    pthread_attr_getstack(&attributes, &low, &size);
    pthread_attr_destroy(&attributes);
    // Addresses as integers: comparing pointers into different objects would be undefined.
    const auto here = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
    const std::uintptr_t bottom = reinterpret_cast<std::uintptr_t>(low) + 64 * 1024;  // above the guard page
    const std::uintptr_t top = here - 16 * 1024;
    for (std::uintptr_t address = bottom; address < top; ++address) {
        *reinterpret_cast<volatile unsigned char*>(address) = 0xA5;
    }
    (void)(measurement->whole ? analyze(measurement->query) : detail::analyze_unchecked(measurement->query));
    std::uintptr_t touched = bottom;
    while (touched < top && *reinterpret_cast<volatile unsigned char*>(touched) == 0xA5) ++touched;
    measurement->used = static_cast<std::size_t>(here - touched);
    return nullptr;
}

std::size_t stack_used(const std::string& query, bool whole = false) {
    Measurement measurement{query, whole, 0};
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setstacksize(&attributes, detail::worker_stack_bytes);
    pthread_t thread;
    REQUIRE(pthread_create(&thread, &attributes, measure_thread, &measurement) == 0);
    pthread_join(thread, nullptr);
    pthread_attr_destroy(&attributes);
    return measurement.used;
}

// Runs `work` on a fresh thread with a stack of `bytes`; false if the thread could not start.
bool run_on_thread_with_stack(std::size_t bytes, std::function<void()> work) {
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setstacksize(&attributes, bytes);
    pthread_t thread;
    const int started = pthread_create(&thread, &attributes, [](void* argument) -> void* {
        (*static_cast<std::function<void()>*>(argument))();
        return nullptr;
    }, &work);
    pthread_attr_destroy(&attributes);
    if (started != 0) return false;
    pthread_join(thread, nullptr);
    return true;
}

}  // namespace

TEST_CASE("stack use per nesting level stays within the budget for every deep shape", "[sql][stack]") {
    for (const auto& shape : deep_shapes()) {
        // Near the limit but inside it, so the analysis really parses.
        // DO bodies are bounded separately: the body is one string to the outer scanner.
        const auto bound_of = [](const std::string& text) {
            const std::size_t body = text.find("$$");
            return body == std::string::npos
                       ? detail::max_nesting_bound(text)
                       : detail::max_nesting_bound(text.substr(body + 2, text.rfind("$$") - body - 2), true);
        };
        std::size_t levels = 1000;
        std::string query = shape.make(levels);
        std::size_t bound = bound_of(query);
        // Scale the shape up to about half the limit.
        if (bound > 0 && bound < detail::max_nesting / 2) {
            levels = levels * (detail::max_nesting / 2) / bound;
            query = shape.make(levels);
            bound = bound_of(query);
        }
        const std::size_t used = stack_used(query);
        const double per_level = bound == 0 ? 0.0 : static_cast<double>(used) / static_cast<double>(bound);
        std::printf("%-26s levels %6zu bound %6zu stack %9zu B  %7.1f B/level  budget %9zu B\n", shape.name, levels,
                    bound, used, per_level, detail::stack_needed(bound));
        CHECK(used < detail::stack_needed(bound));
        CHECK(bound <= detail::max_nesting);
    }
}

TEST_CASE("deep input beyond the bound is refused as unparseable, not a crash", "[sql][stack]") {
    for (const auto& shape : deep_shapes()) {
        // 30,000 levels is past the bound (16,000); more only slows the lexer, quadratic on long operator runs.
        for (std::size_t levels : {std::size_t{3000}, std::size_t{30000}}) {
            const std::string query = shape.make(levels);
            const Analysis analysis = analyze(query);
            INFO(shape.name << " x " << levels);
            REQUIRE(analysis.statements.size() == 1);
            const Statement& statement = analysis.statements.front();
            if (detail::max_nesting_bound(query) > detail::max_nesting) {
                CHECK(statement.statement_class == StatementClass::unknown);
                REQUIRE(statement.error.has_value());
                CHECK(analysis.error.has_value());
            }
        }
    }
}

TEST_CASE("deep input is analysed safely from a thread with a small stack", "[sql][stack]") {
    // A 256 KB thread (where 6 KB of 1+1+... used to crash) hands deep work to the workers.
    const std::string query = "SELECT 1" + pgrail::sql::testing::repeat("+1", 8000);
    Analysis analysis;
    REQUIRE(run_on_thread_with_stack(256 * 1024 * detail::instrumented_stack_factor, [&] { analysis = analyze(query); }));
    REQUIRE(analysis.statements.size() == 1);
    CHECK(analysis.statements[0].statement_class == StatementClass::read);
    CHECK_FALSE(analysis.error.has_value());
}

TEST_CASE("long flat statements are not mistaken for deep ones", "[sql][stack]") {
    const std::string values = "INSERT INTO t VALUES (1, 'a')" + pgrail::sql::testing::repeat(", (1, 'a')", 50000);
    CHECK(detail::max_nesting_bound(values) < 10);
    const std::string in_list = "SELECT * FROM t WHERE id IN (1" + pgrail::sql::testing::repeat(", 1", 50000) + ")";
    CHECK(detail::max_nesting_bound(in_list) < 10);
    const Analysis analysis = analyze(in_list);
    REQUIRE(analysis.statements.size() == 1);
    CHECK(analysis.statements[0].statement_class == StatementClass::read);
}

TEST_CASE("random bytes and token soup never crash the analysis", "[sql][stack]") {
    std::uint64_t state = 0x9E3779B97F4A7C15ULL;
    const auto next = [&state] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    };
    const char* const pieces[] = {"(", ")", "[", "]", "SELECT", "CASE", "WHEN", "END", "+", "-", "NOT", "'x'",
                                  "$$", "$a$", "/*", "*/", "--", "\n", ";", ",", "1", "a", "::", "DO", "BEGIN",
                                  "ATOMIC", "E'\\'", "U&\"", "\"", "ARRAY", "UNION", "JOIN", "ON", "FROM", " "};
    for (int round = 0; round < 3000; ++round) {
        std::string text;
        const std::size_t length = next() % 400;
        if (round % 2 == 0) {
            for (std::size_t index = 0; index < length; ++index) text += static_cast<char>(next() % 255 + 1);
        } else {
            for (std::size_t index = 0; index < length; ++index) {
                text += pieces[next() % (sizeof pieces / sizeof pieces[0])];
                text += ' ';
            }
        }
        const Analysis analysis = analyze(text);
        for (const Statement& statement : analysis.statements) {
            CHECK(statement.offset + statement.length <= text.size());
            if (statement.error) CHECK(statement.statement_class == StatementClass::unknown);
        }
    }
}

TEST_CASE("parsing whole texts without a nesting bound happens only within the stack bound", "[sql][stack]") {
    // The fast path's premise: parsing whole text uses less stack than stack_needed(its length).
    for (const auto& shape : deep_shapes()) {
        const std::string query = shape.make(3000);
        const std::size_t used = stack_used(query, true);
        std::printf("%-26s bytes %6zu stack %9zu B  %7.1f B/byte  budget %9zu B\n", shape.name, query.size(), used,
                    static_cast<double>(used) / static_cast<double>(query.size()), detail::stack_needed(query.size()));
        INFO(shape.name);
        CHECK(used < detail::stack_needed(query.size()));
    }
    const std::string one_byte_per_level = "SELECT " + pgrail::sql::testing::repeat("-+", 750) + "1";

    // On a 1 MB thread: a short statement is parsed whole, 1.5 KB of text is not (it
    // could nest 1500 levels, ~2.3 MB of stack), yet analyses safely via the split path.
    bool short_allowed = false;
    bool long_allowed = true;
    Analysis analysis;
    REQUIRE(run_on_thread_with_stack(1024 * 1024 * detail::instrumented_stack_factor, [&] {
        short_allowed = detail::whole_text_path_allowed(60);
        long_allowed = detail::whole_text_path_allowed(one_byte_per_level.size());
        analysis = analyze(one_byte_per_level);
    }));
    CHECK(short_allowed);
    CHECK_FALSE(long_allowed);
    REQUIRE(analysis.statements.size() == 1);
    CHECK(analysis.statements[0].statement_class == StatementClass::read);
    CHECK_FALSE(analysis.error.has_value());
}

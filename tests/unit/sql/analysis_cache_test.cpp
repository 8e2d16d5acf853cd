// The analysis cache: hits, misses, the memory bound and concurrent use.
#include <malloc.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "pgrail/sql/analysis_cache.hpp"
#include "pgrail/sql/analyzer.hpp"

using namespace pgrail::sql;

TEST_CASE("a repeated text is a hit and returns the same analysis", "[sql][cache]") {
    AnalysisCache cache;
    const auto first = cache.analyze("SELECT * FROM users WHERE id = 1");
    const auto second = cache.analyze("SELECT * FROM users WHERE id = 1");
    CHECK(first == second);
    CHECK(cache.hits() == 1);
    CHECK(cache.misses() == 1);
    // The key is the exact text: another spelling is another entry.
    (void)cache.analyze("select * from users where id = 1");
    CHECK(cache.misses() == 2);
    CHECK(*first == analyze("SELECT * FROM users WHERE id = 1"));
}

TEST_CASE("the cache stays within its byte bound and evicts the least recently used", "[sql][cache]") {
    AnalysisCache cache(64 * 1024);
    for (int index = 0; index < 5000; ++index) {
        (void)cache.analyze("SELECT * FROM t WHERE id = " + std::to_string(index));
        CHECK(cache.size_bytes() <= 64 * 1024);
    }
    CHECK(cache.size_bytes() > 0);
    const std::uint64_t misses = cache.misses();
    (void)cache.analyze("SELECT * FROM t WHERE id = 0");  // long evicted
    CHECK(cache.misses() == misses + 1);
    (void)cache.analyze("SELECT * FROM t WHERE id = 4999");  // recent
    CHECK(cache.misses() == misses + 1);
}

TEST_CASE("an entry larger than the cache is analysed but not kept", "[sql][cache]") {
    AnalysisCache cache(1024);
    const std::string big = "SELECT '" + std::string(4000, 'x') + "'";
    REQUIRE(cache.analyze(big)->statements.size() == 1);
    CHECK(cache.size_bytes() == 0);
}

TEST_CASE("the cache is safe with several threads", "[sql][cache]") {
    AnalysisCache cache(256 * 1024);
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    for (int thread = 0; thread < 4; ++thread) {
        threads.emplace_back([&cache, &wrong, thread] {
            for (int round = 0; round < 2000; ++round) {
                const int id = (round * 7 + thread) % 300;
                const auto analysis = cache.analyze("DELETE FROM t WHERE id = " + std::to_string(id));
                if (analysis->statements.size() != 1 || analysis->statements[0].tag != "DELETE") ++wrong;
            }
        });
    }
    for (std::thread& thread : threads) thread.join();
    CHECK(wrong == 0);
    CHECK(cache.hits() + cache.misses() == 8000);
    CHECK(cache.hits() > 0);
}

// What the cache counts is what an analysis holds: texts an agent shapes to make large analyses
// (a column read per name, the reads of a DO body's statements counted again in the DO) are
// bounded by what they allocate, not by their length. Measured with glibc's own count of the
// bytes in use, around a copy of each analysis.
TEST_CASE("an analysis's footprint counts what it allocates", "[sql][cache]") {
    std::string columns = "SELECT a";
    while (columns.size() < 1000) columns += ", a";
    const std::string wrapped = "DO $$BEGIN PERFORM " + columns.substr(7) + " FROM t; END$$";
    const std::string nested =
        "DO $d$BEGIN EXECUTE 'DO $$BEGIN PERFORM " + columns.substr(7) + " FROM t; END$$'; END$d$";
    for (const std::string& text : {columns + " FROM t", wrapped, nested, std::string("SELECT 1")}) {
        INFO(text.substr(0, 40));
        const Analysis analysis = analyze(text);
        const auto before = mallinfo2().uordblks;
        const Analysis copy = analysis;
        const auto allocated = mallinfo2().uordblks - before;
        const std::size_t counted = footprint(text, copy);
        if (allocated == 0) {  // a sanitizer's allocator, which glibc does not count
            WARN("glibc's malloc is not the one in use: not measured");
            continue;
        }
        INFO("allocated " << allocated << " bytes, counted " << counted);
        // Each allocation's header (8-16 bytes) is glibc's, not counted; the rest is.
        CHECK(counted >= allocated * 3 / 4);
        CHECK(counted <= allocated * 2 + 4096);
    }
}

// The latest refusals kept for pgrail.refusals(): only refusals, newest first, bounded.
#include <catch2/catch.hpp>

#include "../../../src/proxy/refusal_ring.hpp"

using pgrail::proxy::RefusalRecord;
using pgrail::proxy::RefusalRing;

namespace {

RefusalRecord numbered(int n) {
    RefusalRecord record;
    record.session_id = static_cast<std::uint64_t>(n);
    record.message = "refusal " + std::to_string(n);
    return record;
}

}  // namespace

TEST_CASE("refusal ring: newest first, at most the limit", "[refusal_ring]") {
    RefusalRing ring(10);
    CHECK(ring.latest(5).empty());
    for (int n = 1; n <= 3; ++n) ring.add(numbered(n));
    const auto latest = ring.latest(5);
    REQUIRE(latest.size() == 3);
    CHECK(latest[0].session_id == 3);
    CHECK(latest[2].session_id == 1);
    REQUIRE(ring.latest(2).size() == 2);
    CHECK(ring.latest(2)[1].session_id == 2);
}

TEST_CASE("refusal ring: bounded, the oldest give way", "[refusal_ring]") {
    RefusalRing ring(4);
    for (int n = 1; n <= 11; ++n) ring.add(numbered(n));
    const auto latest = ring.latest(100);
    REQUIRE(latest.size() == 4);
    CHECK(latest[0].session_id == 11);
    CHECK(latest[1].session_id == 10);
    CHECK(latest[3].session_id == 8);
    CHECK(RefusalRing().capacity() == 1000);
}

TEST_CASE("refusal ring: a record from a refusal's audit line, nothing from other lines", "[refusal_ring]") {
    const nlohmann::json refused = {{"event", "statement_refused"}, {"session_id", 9},     {"user", "agent"},
                                    {"rule", "agents"},            {"guard", "ddl"},      {"sqlstate", "42501"},
                                    {"message", "pgrail: no"},     {"decision", "deny"},  {"statement", "DROP TABLE t"}};
    const auto record = RefusalRing::record_of(refused);
    REQUIRE(record);
    CHECK(record->session_id == 9);
    CHECK(record->user == "agent");
    CHECK(record->rule == "agents");
    CHECK(record->guard == "ddl");
    CHECK(record->sqlstate == "42501");
    CHECK(record->statement == "DROP TABLE t");
    CHECK_FALSE(record->at.empty());
    // A statement that did not parse has no statement in its line (null): none here either.
    auto unparsed = refused;
    unparsed["statement"] = nullptr;
    CHECK(RefusalRing::record_of(unparsed)->statement.empty());
    CHECK_FALSE(RefusalRing::record_of({{"event", "schema_change_forwarded"}, {"decision", "allow"}}));
    CHECK_FALSE(RefusalRing::record_of({{"event", "command"}}));
}

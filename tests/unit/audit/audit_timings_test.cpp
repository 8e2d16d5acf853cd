// The audit log reports how long its writes and fdatasyncs take (for /metrics), once each.
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

#include "pgrail/audit/audit_log.hpp"

namespace fs = std::filesystem;
using pgrail::audit::AuditLog;
using pgrail::audit::AuditTimings;
using pgrail::audit::FsyncMode;

TEST_CASE("audit timings: one write per line, fdatasyncs only with fsync: always", "[audit_timings]") {
    std::string pattern = (fs::current_path() / "audit_timings_XXXXXX").string();  // a real disk, not a tmpfs
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    const fs::path dir = pattern;
    std::atomic<int> writes{0};
    std::atomic<int> syncs{0};
    const auto timings = [&] {
        return AuditTimings{[&](std::chrono::nanoseconds elapsed) {
                                CHECK(elapsed.count() >= 0);
                                ++writes;
                            },
                            [&](std::chrono::nanoseconds elapsed) {
                                CHECK(elapsed.count() >= 0);
                                ++syncs;
                            }};
    };
    {
        AuditLog log((dir / "synced.jsonl").string(), FsyncMode::always, timings());
        CHECK(log.record({{"event", "test"}}));
        CHECK(log.record({{"event", "test"}}));
        CHECK(writes == 2);
        CHECK(syncs >= 1);
        CHECK(static_cast<std::uint64_t>(syncs.load()) == log.sync_count());
    }
    writes = 0;
    syncs = 0;
    {
        AuditLog log((dir / "unsynced.jsonl").string(), FsyncMode::never, timings());
        CHECK(log.record({{"event", "test"}}));
        CHECK(writes == 1);
        CHECK(syncs == 0);
    }
    // Without an observer nothing changes.
    AuditLog plain((dir / "plain.jsonl").string(), FsyncMode::always);
    CHECK(plain.record({{"event", "test"}}));
    fs::remove_all(dir);
}

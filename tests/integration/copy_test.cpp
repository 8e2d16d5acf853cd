// COPY in both directions through pgrail: same data as directly, streamed with bounded memory
// even when one side stops reading (backpressure).
#include <atomic>
#include <thread>

#include <sys/socket.h>

#include <catch2/catch.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"

using namespace pgrail::test;

namespace {

constexpr std::size_t copy_rows = 100'000;           // x ~1 KiB per row = ~100 MB each way
constexpr long rss_bound_kib = 64 * 1024;            // pgrail's whole RSS while 100 MB flow

// Samples pgrail's VmRSS every 10 ms while alive and keeps the maximum.
class RssSampler {
public:
    RssSampler() : thread_([this] {
        while (!stop_) {
            max_ = std::max(max_.load(), pgrail_rss_kib());
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }) {}
    ~RssSampler() { finish(); }
    long finish() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
        return max_;
    }

private:
    std::atomic<bool> stop_{false};
    std::atomic<long> max_{0};
    std::thread thread_;
};

std::string row_text(std::size_t id) {
    // Deterministic ~1 KiB payload, different per row.
    std::string payload;
    payload.reserve(1024);
    std::uint64_t state = id * 0x9E3779B97F4A7C15ull + 1;
    while (payload.size() < 1000) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        payload += static_cast<char>('a' + state % 26);
    }
    return std::to_string(id) + "\t" + payload + "\n";
}

void exec_ok(PGconn* conn, const std::string& sql) {
    Result result(PQexec(conn, sql.c_str()));
    const auto status = PQresultStatus(result.get());
    REQUIRE((status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK));
}

// Sends copy_rows rows with COPY FROM STDIN; returns the command status.
std::string copy_in(PGconn* conn, const std::string& table) {
    Result start(PQexec(conn, ("COPY " + table + " (id, payload) FROM STDIN").c_str()));
    REQUIRE(PQresultStatus(start.get()) == PGRES_COPY_IN);
    std::string chunk;
    for (std::size_t id = 1; id <= copy_rows; ++id) {
        chunk += row_text(id);
        if (chunk.size() >= 64 * 1024 || id == copy_rows) {
            REQUIRE(PQputCopyData(conn, chunk.data(), static_cast<int>(chunk.size())) == 1);
            chunk.clear();
        }
    }
    REQUIRE(PQputCopyEnd(conn, nullptr) == 1);
    const auto outcomes = drain(conn);
    REQUIRE(outcomes.size() == 1);
    return outcomes[0].status + " " + outcomes[0].command + outcomes[0].message;
}

struct CopyOut {
    std::size_t bytes = 0;
    std::uint64_t hash = 1469598103934665603ull;  // FNV-1a
    std::string status;
    bool operator==(const CopyOut&) const = default;
};

std::ostream& operator<<(std::ostream& out, const CopyOut& c) {
    return out << c.bytes << " bytes, hash " << c.hash << ", " << c.status;
}

// Reads a COPY TO STDOUT; pauses for `stall` after the first MiB to test backpressure.
CopyOut copy_out(PGconn* conn, const std::string& sql, std::chrono::milliseconds stall) {
    Result start(PQexec(conn, sql.c_str()));
    REQUIRE(PQresultStatus(start.get()) == PGRES_COPY_OUT);
    CopyOut out;
    bool stalled = false;
    for (;;) {
        char* buffer = nullptr;
        const int length = PQgetCopyData(conn, &buffer, 0);
        if (length < 0) break;
        for (int i = 0; i < length; ++i) {
            out.hash = (out.hash ^ static_cast<unsigned char>(buffer[i])) * 1099511628211ull;
        }
        out.bytes += static_cast<std::size_t>(length);
        PQfreemem(buffer);
        if (!stalled && out.bytes > (1 << 20)) {
            stalled = true;
            std::this_thread::sleep_for(stall);
        }
    }
    const auto outcomes = drain(conn);
    REQUIRE(outcomes.size() == 1);
    out.status = outcomes[0].status + " " + outcomes[0].command;
    return out;
}

}  // namespace

TEST_CASE("COPY FROM STDIN of 100 MB: same rows, bounded pgrail memory", "[copy]") {
    auto admin_conn = admin();
    std::vector<std::string> summaries;
    for (const Route route : both_routes) {
        INFO(route_name(route));
        const std::string table = std::string("copy_in_") + route_name(route);
        exec_ok(admin_conn.get(), "DROP TABLE IF EXISTS " + table);
        exec_ok(admin_conn.get(), "CREATE TABLE " + table + " (id int PRIMARY KEY, payload text)");
        exec_ok(admin_conn.get(), "GRANT ALL ON " + table + " TO agent");
        // The server stops reading while another session holds the table lock: what the client
        // sends meanwhile must wait in socket buffers, not pile up in pgrail.
        exec_ok(admin_conn.get(), "BEGIN");
        exec_ok(admin_conn.get(), "LOCK TABLE " + table + " IN ACCESS EXCLUSIVE MODE");
        auto conn = connect(route);
        RssSampler sampler;
        std::string status;
        std::thread sender([&] { status = copy_in(conn.get(), table); });
        std::this_thread::sleep_for(std::chrono::seconds(2));
        exec_ok(admin_conn.get(), "COMMIT");
        sender.join();
        const long max_rss = sampler.finish();
        CHECK(status == "PGRES_COMMAND_OK COPY 100000");
        summaries.push_back(scalar(conn.get(), "SELECT count(*) || ' ' || sum(length(payload)) || ' ' || "
                                               "md5(string_agg(md5(payload), '' ORDER BY id)) FROM " + table));
        if (route == Route::pgrail && Cluster::get().proxied()) {
            INFO("pgrail max VmRSS " << max_rss << " KiB");
            CHECK(max_rss > 0);
            CHECK(max_rss < rss_bound_kib);
        }
        exec_ok(admin_conn.get(), "DROP TABLE " + table);
    }
    CHECK(summaries[1] == summaries[0]);
}

TEST_CASE("COPY TO STDOUT of 100 MB: same bytes, bounded pgrail memory with a stalled reader", "[copy]") {
    const std::string sql = "COPY (SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, " +
                            std::to_string(copy_rows) + ") AS g) TO STDOUT";
    std::vector<CopyOut> results;
    for (const Route route : both_routes) {
        INFO(route_name(route));
        auto conn = connect(route);
        RssSampler sampler;
        results.push_back(copy_out(conn.get(), sql, std::chrono::seconds(2)));
        const long max_rss = sampler.finish();
        CHECK(results.back().bytes > 100'000'000);
        if (route == Route::pgrail && Cluster::get().proxied()) {
            INFO("pgrail max VmRSS " << max_rss << " KiB");
            CHECK(max_rss > 0);
            CHECK(max_rss < rss_bound_kib);
        }
    }
    CHECK(results[1] == results[0]);
}

TEST_CASE("COPY errors and client-side aborts are relayed", "[copy]") {
    std::vector<std::vector<Outcome>> per_route;
    for (const Route route : both_routes) {
        auto conn = connect(route);
        auto& all = per_route.emplace_back();
        for (auto& o : run(conn.get(), "CREATE TEMP TABLE c (id int, t text)")) all.push_back(o);
        // Bad data in the middle: 22P02 after the server read it.
        Result start(PQexec(conn.get(), "COPY c FROM STDIN"));
        REQUIRE(PQresultStatus(start.get()) == PGRES_COPY_IN);
        const std::string rows = "1\ta\nnot-a-number\tb\n3\tc\n";
        REQUIRE(PQputCopyData(conn.get(), rows.data(), static_cast<int>(rows.size())) == 1);
        REQUIRE(PQputCopyEnd(conn.get(), nullptr) == 1);
        for (auto& o : drain(conn.get())) all.push_back(o);
        // The client gives up: CopyFail.
        Result again(PQexec(conn.get(), "COPY c FROM STDIN"));
        REQUIRE(PQresultStatus(again.get()) == PGRES_COPY_IN);
        REQUIRE(PQputCopyData(conn.get(), "9\tz\n", 4) == 1);
        REQUIRE(PQputCopyEnd(conn.get(), "client changed its mind") == 1);
        for (auto& o : drain(conn.get())) all.push_back(o);
        // The same through the extended protocol (libpq sends the Sync behind the Execute at
        // once): a bad row and a CopyFail, each answered and the session going on. (Not FREEZE:
        // refused before the copy reads that Sync, PostgreSQL answers it too, and libpq, not
        // expecting it, takes it for the end of what it sends next, directly as through pgrail;
        // protocol_test compares those bytes.)
        const std::pair<const char*, const char*> extended_copies[] = {{"COPY c FROM STDIN", nullptr},
                                                                       {"COPY c FROM STDIN", "gave up"}};
        for (const auto& [copy, give_up] : extended_copies) {
            REQUIRE(PQsendQueryParams(conn.get(), copy, 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
            Result extended(PQgetResult(conn.get()));
            REQUIRE(PQresultStatus(extended.get()) == PGRES_COPY_IN);
            REQUIRE(PQputCopyData(conn.get(), rows.data(), static_cast<int>(rows.size())) == 1);
            REQUIRE(PQputCopyEnd(conn.get(), give_up) == 1);
            for (auto& o : drain(conn.get())) all.push_back(o);
            for (auto& o : run(conn.get(), "SELECT 1")) all.push_back(o);
        }
        for (auto& o : run(conn.get(), "SELECT count(*) FROM c; COPY c TO STDOUT")) all.push_back(o);
    }
    CHECK(per_route[1] == per_route[0]);
}

TEST_CASE("after an extended-protocol COPY FROM STDIN the session is in step again", "[copy]") {
    if (!Cluster::get().proxied()) return;
    // libpq sends Sync after the Execute of COPY (the server ignores it in copy-in mode) and
    // again after CopyDone. Were both counted, pgrail would think a query still runs, and a
    // client that then drops its connection would get a needless CancelRequest sent upstream.
    auto admin_conn = admin();
    (void)run(admin_conn.get(), "DROP TABLE IF EXISTS copy_in_step; CREATE TABLE copy_in_step (v int);"
                                "GRANT SELECT, INSERT ON copy_in_step TO agent");
    const auto cancels_logged = [] {
        return count_occurrences(read_file(Cluster::get().pgrail_log), "sent cancel request");
    };
    auto conn = connect(Route::pgrail);
    REQUIRE(PQsendQueryParams(conn.get(), "COPY copy_in_step FROM STDIN", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
    Result started(PQgetResult(conn.get()));
    REQUIRE(PQresultStatus(started.get()) == PGRES_COPY_IN);
    REQUIRE(PQputCopyData(conn.get(), "1\n2\n", 4) == 1);
    REQUIRE(PQputCopyEnd(conn.get(), nullptr) == 1);
    Result done(PQgetResult(conn.get()));
    CHECK(PQresultStatus(done.get()) == PGRES_COMMAND_OK);
    while (PGresult* rest = PQgetResult(conn.get())) PQclear(rest);
    CHECK(scalar(conn.get(), "SELECT count(*) FROM copy_in_step") == "2");
    const auto backend = scalar(conn.get(), "SELECT pg_backend_pid()");

    const auto before = cancels_logged();
    ::shutdown(PQsocket(conn.get()), SHUT_RDWR);  // gone without a Terminate
    CHECK(eventually([&] {
        return scalar(admin_conn.get(), "SELECT count(*) FROM pg_stat_activity WHERE pid = " + backend) == "0";
    }, std::chrono::seconds(5)));
    CHECK(cancels_logged() == before);
}

TEST_CASE("an error that quotes a huge value streams through, not held whole", "[copy][query]") {
    // The server's ErrorResponse quotes the 100 MB value; pgrail reads short ErrorResponses
    // whole (to spot FATAL and its own stand-in errors) and streams longer ones.
    auto direct = connect(Route::direct);
    auto proxied = connect(Route::pgrail);
    const std::string sql = "SELECT repeat('x', 100000000)::int";
    const auto expected = run(direct.get(), sql);
    REQUIRE(expected.size() == 1);
    CHECK(expected[0].sqlstate == "22P02");
    CHECK(expected[0].message.size() > 100000000);
    RssSampler sampler;
    const auto through = run(proxied.get(), sql);
    const long max_rss = sampler.finish();
    CHECK(through == expected);
    CHECK(scalar(proxied.get(), "SELECT 'after'") == "after");
    if (Cluster::get().proxied()) {
        INFO("pgrail max VmRSS " << max_rss << " KiB");
        CHECK(max_rss > 0);
        CHECK(max_rss < rss_bound_kib);
    }
}

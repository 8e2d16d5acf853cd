// The operator's HTTP listener: /healthz, /readyz (the server reachable or not) and /metrics
// counting what the sessions did, read over plain HTTP/1.1 as a load balancer or Prometheus would.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"
#include "scripted_server.hpp"
#include "seed_database.hpp"

namespace pgrail::test {
namespace {

// A port nothing listens on right now (bound once by the kernel's choice, then released).
int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    socklen_t length = sizeof address;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    ::close(fd);
    return ntohs(address.sin_port);
}

struct HttpAnswer {
    int status = 0;
    std::string body;
};

HttpAnswer get(int port, const std::string& path, const std::string& method = "GET") {
    RawSocket raw(port);
    raw.send(method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    const auto answer = raw.read_until_close();
    HttpAnswer out;
    if (answer.starts_with("HTTP/1.1 ")) out.status = std::stoi(answer.substr(9, 3));
    const auto body = answer.find("\r\n\r\n");
    if (body != std::string::npos) out.body = answer.substr(body + 4);
    return out;
}

}  // namespace

TEST_CASE("http: /healthz, /readyz and /metrics count sessions, decisions and refusals", "[http]") {
    SeedDatabase db("http_");
    const int http_port = free_port();
    PgrailProcess pgrail("policy: " + source_dir() + "/policies/default.yaml\nmigrations: {dir: " + source_dir() +
                         "/migrations}\nhttp: {port: " + std::to_string(http_port) + "}\n");
    CHECK(get(http_port, "/healthz").status == 200);
    const auto ready = get(http_port, "/readyz");
    CHECK(ready.status == 200);
    CHECK(ready.body == "ready\n");
    CHECK(get(http_port, "/nothing").status == 404);
    CHECK(get(http_port, "/metrics", "POST").status == 405);

    const auto sessions_total = [&] {
        const auto body = get(http_port, "/metrics").body;
        const auto at = body.find("\npgrail_sessions_total ");
        REQUIRE(at != std::string::npos);
        return std::stoi(body.substr(at + 23));
    };
    const int sessions_before = sessions_total();  // pgrail's start was probed with a connection
    {
        auto agent = db.connect_through(pgrail, "agent");
        CHECK(scalar(agent.get(), "SELECT count(*) FROM profiles") == "4");
        CHECK(run(agent.get(), "DROP TABLE profiles").at(0).sqlstate == "42501");
        CHECK(run(agent.get(), "DELETE FROM profiles").at(0).sqlstate == "42501");
        const auto metrics = get(http_port, "/metrics");
        CHECK(metrics.status == 200);
        CHECK_THAT(metrics.body, Catch::Contains("# TYPE pgrail_sessions_open gauge\npgrail_sessions_open 1\n"));
        CHECK_THAT(metrics.body, Catch::Contains("pgrail_statements_total{rule=\"agents\",decision=\"allow\","
                                                 "class=\"read\"} 1\n"));
        CHECK_THAT(metrics.body, Catch::Contains("pgrail_refusals_total{rule=\"agents\",guard=\"ddl\"} 1\n"));
        CHECK_THAT(metrics.body, Catch::Contains("pgrail_refusals_total{rule=\"agents\",guard=\"require_where\"} 1\n"));
        CHECK_THAT(metrics.body, Catch::Contains("pgrail_audit_lines_total 2\n"));
        CHECK_THAT(metrics.body, Catch::Contains("pgrail_session_rules_total{rule=\"agents\"} 1\n"));
        CHECK_THAT(metrics.body, Catch::Contains("pgrail_gate_seconds_count 3\n"));
    }
    // The session's end is counted once its socket closes.
    CHECK(eventually([&] { return get(http_port, "/metrics").body.find("pgrail_sessions_open 0\n") != std::string::npos; },
                     std::chrono::seconds(5)));
    CHECK(sessions_total() == sessions_before + 1);
}

// A figure of /metrics: the value of the line that starts with `series` (name and labels).
double metric(const std::string& body, const std::string& series) {
    const auto at = body.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(body.substr(at + series.size() + 2));
}

TEST_CASE("http: /metrics times analyses and audit writes and fsyncs, counts the gate's cache lookups", "[http]") {
    SeedDatabase db("httpm_");
    const int http_port = free_port();
    const auto audit_path = PgrailProcess::make_temp_dir() + "/metrics_audit.jsonl";
    PgrailProcess pgrail("policy: " + source_dir() + "/policies/default.yaml\naudit: {file: " + audit_path +
                         ", fsync: always}\nhttp: {port: " + std::to_string(http_port) + "}\n");
    const auto before = get(http_port, "/metrics").body;
    auto agent = db.connect_through(pgrail, "agent");
    // A new text (analysed), the same text again (the worker's cache by text), the same shape with
    // another value (its cache by shape), a refusal (an audit line, synced).
    CHECK(scalar(agent.get(), "SELECT count(*) FROM profiles WHERE id > 1") == "3");
    CHECK(scalar(agent.get(), "SELECT count(*) FROM profiles WHERE id > 1") == "3");
    CHECK(scalar(agent.get(), "SELECT count(*) FROM profiles WHERE id > 2") == "2");
    CHECK(run(agent.get(), "DROP TABLE profiles").at(0).sqlstate == "42501");
    const auto after = get(http_port, "/metrics").body;
    const auto moved = [&](const std::string& series) {
        INFO(series);
        REQUIRE(metric(before, series) >= 0);
        return metric(after, series) - metric(before, series);
    };
    CHECK_THAT(after, Catch::Contains("# TYPE pgrail_analysis_seconds histogram\n"));
    CHECK(moved("pgrail_analysis_seconds_count") >= 2);
    CHECK(moved("pgrail_gate_cache_lookups_total{cache=\"thread_text\",result=\"hit\"}") >= 1);
    CHECK(moved("pgrail_gate_cache_lookups_total{cache=\"thread_text\",result=\"miss\"}") >= 3);
    CHECK(moved("pgrail_gate_cache_lookups_total{cache=\"thread_shape\",result=\"hit\"}") >= 1);
    CHECK(moved("pgrail_gate_cache_lookups_total{cache=\"shared_text\",result=\"miss\"}") >= 2);
    CHECK(moved("pgrail_audit_write_seconds_count") == 1);
    CHECK(moved("pgrail_audit_fsync_seconds_count") >= 1);
    CHECK(metric(after, "pgrail_timeouts_total{kind=\"login\"}") == 0);
}

TEST_CASE("http: a new text of a few KB is checked on the session's thread, a longer one on the analysis pool",
          "[http]") {
    SeedDatabase db("httpp_");
    const int http_port = free_port();
    PgrailProcess pgrail("policy: " + source_dir() + "/policies/default.yaml\nhttp: {port: " +
                         std::to_string(http_port) + "}\n");
    auto agent = db.connect_through(pgrail, "agent");
    // A read of `bytes` or a little more, new to every cache (its list of ids is its own).
    const auto read_of = [](std::size_t bytes, int first_id) {
        std::string sql = "SELECT count(*) FROM profiles WHERE id IN (0";
        for (int id = first_id; sql.size() < bytes; ++id) sql += ", " + std::to_string(id);
        return sql + ")";
    };
    const auto pool_checks = [&] { return metric(get(http_port, "/metrics").body, "pgrail_analysis_pool_checks_total"); };
    const double before = pool_checks();
    REQUIRE(before >= 0);
    // 3 KB: within inline_text_max, and a fresh thread's budget holds tokens.
    CHECK(scalar(agent.get(), read_of(3000, 1)) == "4");
    CHECK(pool_checks() == before);
    // 6 KB: past inline_text_max, always the pool's (an allow and a refusal alike).
    CHECK(scalar(agent.get(), read_of(6000, 1)) == "4");
    CHECK(pool_checks() == before + 1);
    CHECK(run(agent.get(), read_of(6000, 2) + "; DROP TABLE profiles").back().sqlstate == "42501");
    CHECK(pool_checks() == before + 2);
    // A short text that PostgreSQL's scanner reads in quadratic time (it scans a run of operator
    // characters again for each sign it keeps: 1 KB of them is about 4 ms of analysis) is the
    // pool's whatever its size; one of ordinary operators stays on the thread.
    std::string signs;
    for (int i = 0; i < 100; ++i) signs += "+-";
    CHECK(scalar(agent.get(), "SELECT 1 " + signs + "1") == "2");
    CHECK(pool_checks() == before + 3);
    CHECK(scalar(agent.get(), "SELECT count(*) FROM profiles WHERE id >= 1 AND id <> -1 OR id <= 2") == "4");
    CHECK(pool_checks() == before + 3);
    // Once a cache holds a long text, it is checked on the thread; but a session lexed otherwise
    // (here: its text converted from another client_encoding) is analysed past the caches, at
    // the text's full cost: the pool's again.
    const auto cached = read_of(6000, 1) + " AND true";
    CHECK(scalar(agent.get(), cached) == "4");
    CHECK(scalar(agent.get(), cached) == "4");
    CHECK(pool_checks() == before + 4);
    REQUIRE(run(agent.get(), "SET client_encoding = 'LATIN1'").at(0).sqlstate.empty());
    CHECK(scalar(agent.get(), cached) == "4");
    CHECK(pool_checks() == before + 5);
}

TEST_CASE("http: /metrics counts the timeouts of a server that never answers the login", "[http]") {
    // Reads what pgrail sends and never answers.
    ScriptedServer silent([](int fd) {
        char buffer[1024];
        while (::recv(fd, buffer, sizeof buffer, 0) > 0) {
        }
    });
    const int http_port = free_port();
    PgrailProcess pgrail("http: {port: " + std::to_string(http_port) + "}\n", "127.0.0.1", silent.port(),
                         ", connect_timeout_ms: 300");
    const auto timeouts = [&] { return metric(get(http_port, "/metrics").body, "pgrail_timeouts_total{kind=\"upstream_login\"}"); };
    const double before = timeouts();
    REQUIRE(before >= 0);
    RawSocket client(pgrail.port());
    client.send(startup_packet(0x00030000, {{"user", "agent"}, {"database", "app"}}));
    (void)client.read_until_close();
    CHECK(eventually([&] { return timeouts() >= before + 1; }, std::chrono::seconds(5)));
}

TEST_CASE("http: /readyz says not ready while the server cannot be reached", "[http]") {
    const int http_port = free_port();
    PgrailProcess pgrail("http: {port: " + std::to_string(http_port) + "}\n", "127.0.0.1", free_port(),
                         ", connect_timeout_ms: 500");
    CHECK(get(http_port, "/healthz").status == 200);
    const auto ready = get(http_port, "/readyz");
    CHECK(ready.status == 503);
    CHECK_THAT(ready.body, Catch::StartsWith("not ready: cannot connect to the server"));
}

TEST_CASE("http: callers that send nothing are held 64 at a time, the oldest closed to make room", "[http]") {
    const int http_port = free_port();
    PgrailProcess pgrail("http: {port: " + std::to_string(http_port) + "}\n");
    // 100 connections that never send a request: each open one would wait for its 5 s timeout.
    std::vector<std::unique_ptr<RawSocket>> idle;
    for (int i = 0; i < 100; ++i) idle.push_back(std::make_unique<RawSocket>(http_port));
    const auto closed = [&](std::size_t from, std::size_t to) {
        return std::count_if(idle.begin() + from, idle.begin() + to,
                             [](const auto& raw) { return raw->closed_by_peer(); });
    };
    // The first 36 made room for the last 36; the newest 64 are held.
    CHECK(eventually([&] { return closed(0, 100) >= 36; }, std::chrono::seconds(3)));
    CHECK(closed(0, 36) == 36);
    CHECK(closed(36, 100) == 0);
    // A probe is answered at once while they are held: it takes the place of the oldest (the
    // next one finds the probe's place free again).
    CHECK(get(http_port, "/healthz").status == 200);
    CHECK(get(http_port, "/readyz").status == 200);
    CHECK(eventually([&] { return closed(36, 37) == 1; }, std::chrono::seconds(3)));
    CHECK(closed(37, 100) == 0);
}

}  // namespace pgrail::test

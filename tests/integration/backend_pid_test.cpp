// The pid a client sees through pgrail is its backend's real pid (only the cancel secret is
// pgrail's own): pg_backend_pid(), pg_terminate_backend and NOTIFY's sender pid agree with
// PQbackendPID as they do directly, and a cancel needs pgrail's secret, not just the pid.
#include <poll.h>

#include <catch2/catch.hpp>

#include "cluster.hpp"

using namespace pgrail::test;

namespace {

int real_pid(PGconn* conn) { return std::stoi(scalar(conn, "SELECT pg_backend_pid()")); }

bool backend_active(PGconn* admin_conn, int pid) {
    return scalar(admin_conn, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid = " +
                                  std::to_string(pid)) != "0";
}

bool backend_exists(PGconn* admin_conn, int pid) {
    return scalar(admin_conn, "SELECT count(*) FROM pg_stat_activity WHERE pid = " + std::to_string(pid)) != "0";
}

}  // namespace

TEST_CASE("PQbackendPID is the backend's pg_backend_pid()", "[session][backend_pid]") {
    for (const Route route : both_routes) {
        INFO(route_name(route));
        auto conn = connect(route);
        CHECK(PQbackendPID(conn.get()) == real_pid(conn.get()));
        // Two sessions, two backends, two pids.
        auto other = connect(route);
        CHECK(PQbackendPID(other.get()) == real_pid(other.get()));
        CHECK(PQbackendPID(other.get()) != PQbackendPID(conn.get()));
    }
}

TEST_CASE("pg_terminate_backend(PQbackendPID) from another session ends it", "[session][backend_pid]") {
    auto admin_conn = admin();
    for (const Route route : both_routes) {
        INFO(route_name(route));
        auto victim = connect(route);
        const int pid = PQbackendPID(victim.get());
        // The agent role may not signal other roles' backends: a superuser does it, through the
        // same route, with the pid the victim's driver reports.
        auto killer = connect(route, "postgres");
        CHECK(scalar(killer.get(), "SELECT pg_terminate_backend(" + std::to_string(pid) + ")") == "t");
        CHECK(eventually([&] { return !backend_exists(admin_conn.get(), pid); }, std::chrono::seconds(5)));
        Result result(PQexec(victim.get(), "SELECT 1"));
        CHECK(PQresultStatus(result.get()) != PGRES_TUPLES_OK);
    }
}

TEST_CASE("a session recognises its own NOTIFY by the sender pid", "[session][backend_pid]") {
    for (const Route route : both_routes) {
        INFO(route_name(route));
        auto conn = connect(route);
        (void)run(conn.get(), "LISTEN own_pid_channel");
        (void)run(conn.get(), "NOTIFY own_pid_channel, 'mine'");
        PGnotify* notify = nullptr;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (notify == nullptr && std::chrono::steady_clock::now() < deadline) {
            REQUIRE(PQconsumeInput(conn.get()) == 1);
            notify = PQnotifies(conn.get());
            if (notify == nullptr) {
                pollfd pfd{PQsocket(conn.get()), POLLIN, 0};
                ::poll(&pfd, 1, 100);
            }
        }
        REQUIRE(notify != nullptr);
        CHECK(std::string(notify->extra) == "mine");
        CHECK(notify->be_pid == PQbackendPID(conn.get()));
        PQfreemem(notify);
    }
}

TEST_CASE("a cancel with the right pid and a wrong secret does nothing; the right secret cancels",
          "[session][backend_pid][cancel]") {
    auto admin_conn = admin();
    for (const Route route : both_routes) {
        INFO(route_name(route));
        auto conn = connect(route);
        const int pid = PQbackendPID(conn.get());
        REQUIRE(pid == real_pid(conn.get()));
        REQUIRE(PQsendQuery(conn.get(), "SELECT pg_sleep(30)") == 1);
        REQUIRE(eventually([&] { return backend_active(admin_conn.get(), pid); }, std::chrono::seconds(5)));

        // The right pid with secrets that are not this session's: ignored, as PostgreSQL ignores them.
        for (const std::uint32_t secret : {0u, 0x5eC12e7u, 0xffffffffu}) {
            RawSocket raw(route);
            raw.send(cancel_request(static_cast<std::uint32_t>(pid), secret));
            (void)raw.read_until_close(std::chrono::seconds(2));
            CHECK(raw.eof());  // closed without a word
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        CHECK(backend_active(admin_conn.get(), pid));

        // libpq's cancel uses the key it was given: the right secret reaches the backend.
        PGcancel* cancel = PQgetCancel(conn.get());
        char error[256] = {};
        CHECK(PQcancel(cancel, error, sizeof error) == 1);
        PQfreeCancel(cancel);
        const auto outcomes = drain(conn.get());
        REQUIRE(outcomes.size() == 1);
        CHECK(outcomes[0].sqlstate == "57014");
        CHECK(scalar(conn.get(), "SELECT 'still usable'") == "still usable");
    }
}

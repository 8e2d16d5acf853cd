// Messages the server sends on its own: NotificationResponse (LISTEN/NOTIFY across two
// sessions) and NoticeResponse, relayed through pgrail as PostgreSQL sends them.
#include <poll.h>

#include <catch2/catch.hpp>

#include "cluster.hpp"

using namespace pgrail::test;

namespace {

struct Notification {
    std::string channel, payload;
    bool from_sender = false;  // be_pid is the sender's backend
    bool operator==(const Notification&) const = default;
};

std::ostream& operator<<(std::ostream& out, const Notification& n) {
    return out << n.channel << ":" << n.payload << (n.from_sender ? " (sender)" : " (other pid)");
}

// Waits up to 5 s for `count` notifications on an idle connection.
std::vector<Notification> wait_notifications(PGconn* conn, std::size_t count, int sender_pid) {
    std::vector<Notification> got;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (got.size() < count && std::chrono::steady_clock::now() < deadline) {
        pollfd pfd{PQsocket(conn), POLLIN, 0};
        ::poll(&pfd, 1, 100);
        REQUIRE(PQconsumeInput(conn) == 1);
        while (PGnotify* notify = PQnotifies(conn)) {
            got.push_back({notify->relname, notify->extra, notify->be_pid == sender_pid});
            PQfreemem(notify);
        }
    }
    return got;
}

std::vector<Notification> listen_notify(Route route) {
    auto listener = connect(route);
    auto sender = connect(route);
    (void)run(listener.get(), "LISTEN jobs; LISTEN \"Mixed Case\"");
    // NotificationResponse carries the sending backend's real pid, whatever pgrail reports.
    const int sender_pid = std::stoi(scalar(sender.get(), "SELECT pg_backend_pid()"));
    (void)run(sender.get(), "NOTIFY jobs, 'first'");
    (void)run(sender.get(), "SELECT pg_notify('Mixed Case', repeat('p', 7000))");
    (void)run(sender.get(), "BEGIN; NOTIFY jobs, 'in a transaction'; NOTIFY other, 'not listened'; COMMIT");
    (void)run(sender.get(), "BEGIN; NOTIFY jobs, 'rolled back'; ROLLBACK");
    auto got = wait_notifications(listener.get(), 3, sender_pid);
    // Delivered while the listener runs a query too.
    (void)run(sender.get(), "NOTIFY jobs, 'last'");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    (void)run(listener.get(), "SELECT 1");
    while (PGnotify* notify = PQnotifies(listener.get())) {
        got.push_back({notify->relname, notify->extra, notify->be_pid == sender_pid});
        PQfreemem(notify);
    }
    return got;
}

struct Notice {
    std::string severity, sqlstate, message, detail, hint;
    bool operator==(const Notice&) const = default;
};

std::ostream& operator<<(std::ostream& out, const Notice& n) {
    return out << n.severity << " " << n.sqlstate << " " << n.message << " / " << n.detail << " / " << n.hint;
}

void collect_notice(void* arg, const PGresult* result) {
    auto* notices = static_cast<std::vector<Notice>*>(arg);
    auto field = [&](int code) {
        const char* value = PQresultErrorField(result, code);
        return value == nullptr ? std::string{} : std::string{value};
    };
    notices->push_back({field(PG_DIAG_SEVERITY_NONLOCALIZED), field(PG_DIAG_SQLSTATE),
                        field(PG_DIAG_MESSAGE_PRIMARY), field(PG_DIAG_MESSAGE_DETAIL),
                        field(PG_DIAG_MESSAGE_HINT)});
}

std::pair<std::vector<Notice>, std::vector<Outcome>> notices(Route route) {
    auto conn = connect(route);
    std::vector<Notice> got;
    PQsetNoticeReceiver(conn.get(), collect_notice, &got);
    std::vector<Outcome> outcomes;
    for (const char* sql : {
             "DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$",
             "DO $$ BEGIN RAISE WARNING 'careful' USING DETAIL = 'some detail', HINT = 'a hint'; END $$",
             "SET client_min_messages = debug1; DO $$ BEGIN RAISE DEBUG 'debugging'; RAISE INFO 'info'; END $$",
             "DROP TABLE IF EXISTS surely_not_here",
             "DO $$ BEGIN FOR i IN 1..200 LOOP RAISE NOTICE 'row %', i; END LOOP; END $$; SELECT 'after notices'",
         }) {
        for (auto& o : run(conn.get(), sql)) outcomes.push_back(o);
    }
    return {got, outcomes};
}

}  // namespace

TEST_CASE("LISTEN/NOTIFY across two sessions", "[async]") {
    const auto direct = listen_notify(Route::direct);
    const auto proxied = listen_notify(Route::pgrail);
    REQUIRE(direct.size() == 4);
    CHECK(proxied == direct);
}

TEST_CASE("NoticeResponse is relayed with all its fields", "[async]") {
    const auto direct = notices(Route::direct);
    const auto proxied = notices(Route::pgrail);
    REQUIRE(direct.first.size() > 200);
    CHECK(proxied.first == direct.first);
    CHECK(proxied.second == direct.second);
}

// Session lifetime through pgrail: cancel routing, clients that vanish mid-query, backends
// terminated by the server.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <future>

#include <catch2/catch.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"

using namespace pgrail::test;

namespace {

int real_pid(PGconn* conn) { return std::stoi(scalar(conn, "SELECT pg_backend_pid()")); }

// A statement of about `size` bytes (the budget tests' long messages); it answers `size`.
std::string length_query(std::size_t size, char filler) {
    return "SELECT length('" + std::string(size, filler) + "')";
}

// The one value of a raw answer (RowDescription, DataRow, CommandComplete, ReadyForQuery).
std::string only_value(const std::vector<BackendMessage>& answer) {
    REQUIRE(answer.size() == 4);
    REQUIRE(answer[1].type == 'D');
    return answer[1].body.substr(6);  // after the column count and the value's length
}

// Whether the server shows backend `pid` (or a backend with `application_name`) in state `state`.
bool backend_in_state(PGconn* admin_conn, const std::string& where, const std::string& state) {
    return scalar(admin_conn, "SELECT count(*) FROM pg_stat_activity WHERE " + where +
                                  (state.empty() ? "" : " AND state = '" + state + "'")) != "0";
}

std::string pid_is(int pid) { return "pid = " + std::to_string(pid); }

// Cancels what `conn` is running with PQcancel and returns what the query answered.
std::vector<Outcome> cancel_and_drain(PGconn* conn) {
    PGcancel* cancel = PQgetCancel(conn);
    char error[256] = {};
    CHECK(PQcancel(cancel, error, sizeof error) == 1);
    PQfreeCancel(cancel);
    return drain(conn);
}

// Starts pg_sleep(30), cancels it with PQcancel, returns the outcome and how long the cancel took.
std::pair<std::vector<Outcome>, std::chrono::milliseconds> cancel_sleep(Route route) {
    auto admin_conn = admin();
    auto conn = connect(route);
    const int pid = real_pid(conn.get());
    // pgrail hands out the backend's real pid (with a secret of its own).
    CHECK(PQbackendPID(conn.get()) == pid);
    REQUIRE(PQsendQuery(conn.get(), "SELECT pg_sleep(30)") == 1);
    REQUIRE(eventually([&] { return backend_in_state(admin_conn.get(), pid_is(pid), "active"); },
                       std::chrono::seconds(5)));
    const auto start = std::chrono::steady_clock::now();
    auto outcomes = cancel_and_drain(conn.get());
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    for (auto& o : run(conn.get(), "SELECT 'still usable'")) outcomes.push_back(o);
    return {outcomes, took};
}

}  // namespace

TEST_CASE("PQcancel of pg_sleep(30) through pgrail ends it within 1 s", "[session][cancel]") {
    const auto direct = cancel_sleep(Route::direct);
    const auto proxied = cancel_sleep(Route::pgrail);
    REQUIRE(direct.first.size() == 2);
    CHECK(direct.first[0].sqlstate == "57014");
    CHECK(proxied.first == direct.first);
    CHECK(proxied.second < std::chrono::seconds(1));
}

TEST_CASE("a cancel reaches only its own session", "[session][cancel]") {
    auto admin_conn = admin();
    auto first = connect(Route::pgrail);
    auto second = connect(Route::pgrail);
    const int first_pid = real_pid(first.get());
    const int second_pid = real_pid(second.get());
    if (Cluster::get().proxied()) CHECK(PQbackendPID(first.get()) != PQbackendPID(second.get()));
    REQUIRE(PQsendQuery(first.get(), "SELECT pg_sleep(30)") == 1);
    REQUIRE(PQsendQuery(second.get(), "SELECT pg_sleep(3)") == 1);
    REQUIRE(eventually([&] { return backend_in_state(admin_conn.get(), pid_is(first_pid), "active") &&
                                    backend_in_state(admin_conn.get(), pid_is(second_pid), "active"); },
                       std::chrono::seconds(5)));

    // A CancelRequest with the right pid but a wrong secret must be ignored.
    {
        RawSocket raw(Route::pgrail);
        raw.send(cancel_request(static_cast<std::uint32_t>(PQbackendPID(first.get())), 0x5eC12e7u));
        (void)raw.read_until_close(std::chrono::seconds(2));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(backend_in_state(admin_conn.get(), pid_is(first_pid), "active"));

    const auto first_outcome = cancel_and_drain(first.get());
    REQUIRE(first_outcome.size() == 1);
    CHECK(first_outcome[0].sqlstate == "57014");
    const auto second_outcome = drain(second.get());  // ran to its end, untouched
    REQUIRE(second_outcome.size() == 1);
    CHECK(second_outcome[0].status == "PGRES_TUPLES_OK");
}

TEST_CASE("a client killed mid-query ends its server backend", "[session][disconnect]") {
    auto admin_conn = admin();
    // Idle and busy clients, killed with SIGKILL: the kernel closes their socket.
    for (const bool busy : {false, true}) {
        for (const Route route : both_routes) {
            // PostgreSQL itself notices a vanished client only when it next reads or writes,
            // so a busy backend directly stays; pgrail must end it (cancel/terminate).
            if (busy && (route == Route::direct || !Cluster::get().proxied())) continue;
            INFO(route_name(route) << (busy ? " busy" : " idle"));
            const std::string app_name = std::string("killed_") + route_name(route) + (busy ? "_busy" : "_idle");
            int ready[2];
            REQUIRE(::pipe(ready) == 0);
            const pid_t child = ::fork();
            REQUIRE(child >= 0);
            if (child == 0) {
                PGconn* conn = PQconnectdb(conninfo(route, "agent", std::nullopt, "application_name=" + app_name).c_str());
                if (PQstatus(conn) != CONNECTION_OK) ::_exit(1);
                if (busy && PQsendQuery(conn, "SELECT pg_sleep(60)") != 1) ::_exit(2);
                (void)!::write(ready[1], "r", 1);
                for (;;) ::pause();
            }
            ::close(ready[1]);
            char byte = 0;
            REQUIRE(::read(ready[0], &byte, 1) == 1);
            ::close(ready[0]);
            const std::string where = "application_name = '" + app_name + "'";
            CHECK(eventually([&] { return backend_in_state(admin_conn.get(), where, busy ? "active" : "idle"); },
                             std::chrono::seconds(5)));
            ::kill(child, SIGKILL);
            ::waitpid(child, nullptr, 0);
            CHECK(eventually([&] { return !backend_in_state(admin_conn.get(), where, ""); },
                             std::chrono::seconds(5)));
        }
    }
}

TEST_CASE("a raw client that closes its socket mid-query ends its server backend", "[session][disconnect]") {
    if (!Cluster::get().proxied()) return;  // see above: PostgreSQL alone keeps sleeping
    auto admin_conn = admin();
    std::optional<RawSocket> raw;
    raw.emplace(Route::pgrail);
    log_in_as_plainuser(*raw, "raw_closed");
    raw->send(query_message("SELECT pg_sleep(60)"));
    const std::string where = "application_name = 'raw_closed'";
    REQUIRE(eventually([&] { return backend_in_state(admin_conn.get(), where, "active"); }, std::chrono::seconds(5)));
    raw.reset();  // close without Terminate
    CHECK(eventually([&] { return !backend_in_state(admin_conn.get(), where, ""); }, std::chrono::seconds(5)));
}

namespace {

void collect_notice(void* arg, const PGresult* result) {
    const char* sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    const char* severity = PQresultErrorField(result, PG_DIAG_SEVERITY_NONLOCALIZED);
    static_cast<std::vector<std::string>*>(arg)->push_back(std::string(severity ? severity : "?") + " " +
                                                           (sqlstate ? sqlstate : "?"));
}

}  // namespace

TEST_CASE("pg_terminate_backend ends the client with the server's FATAL; pgrail serves on", "[session][terminate]") {
    auto admin_conn = admin();
    std::vector<std::vector<std::string>> per_route;
    for (const Route route : both_routes) {
        for (const bool busy : {false, true}) {
            INFO(route_name(route) << (busy ? " busy" : " idle"));
            auto bystander = connect(route);
            auto victim = connect(route);
            std::vector<std::string> seen;
            // An idle client's libpq reports the unsolicited FATAL as a notice.
            PQsetNoticeReceiver(victim.get(), collect_notice, &seen);
            const int pid = real_pid(victim.get());
            if (busy) {
                REQUIRE(PQsendQuery(victim.get(), "SELECT pg_sleep(30)") == 1);
                REQUIRE(eventually([&] { return backend_in_state(admin_conn.get(), pid_is(pid), "active"); },
                                   std::chrono::seconds(5)));
            }
            CHECK(scalar(admin_conn.get(), "SELECT pg_terminate_backend(" + std::to_string(pid) + ", 5000)") == "t");
            if (busy) {
                const auto outcomes = drain(victim.get());
                REQUIRE_FALSE(outcomes.empty());
                seen.push_back(outcomes[0].severity + " " + outcomes[0].sqlstate + " " + outcomes[0].message);
            } else {
                std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let the FATAL arrive first
                seen.push_back("consume " + std::to_string(PQconsumeInput(victim.get())));
                Result result(PQexec(victim.get(), "SELECT 1"));
                seen.push_back(PQresStatus(PQresultStatus(result.get())));
            }
            CHECK(PQstatus(victim.get()) == CONNECTION_BAD);
            CHECK(scalar(bystander.get(), "SELECT 'bystander fine'") == "bystander fine");
            auto fresh = connect(route);
            CHECK(scalar(fresh.get(), "SELECT 'new session fine'") == "new session fine");
            per_route.push_back(seen);
        }
    }
    REQUIRE(per_route.size() == 4);
    CHECK(per_route[0] == std::vector<std::string>{"consume 1", "FATAL 57P01", "PGRES_FATAL_ERROR"});
    CHECK(per_route[1] == std::vector<std::string>{"FATAL 57P01 terminating connection due to administrator command"});
    CHECK(per_route[2] == per_route[0]);
    CHECK(per_route[3] == per_route[1]);
}

TEST_CASE("pgrail reaches a PostgreSQL on the same host through its Unix socket", "[session][unix]") {
    const PgrailProcess process("", Cluster::get().socket_dir);
    Conn conn(PQconnectdb(process.conninfo("app_owner").c_str()));
    REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
    // The server sees a local connection: it has no client address.
    CHECK(scalar(conn.get(), "SELECT coalesce(inet_client_addr()::text, 'local')") == "local");
    CHECK(scalar(conn.get(), "SELECT current_user") == "app_owner");
    // A cancel takes the same way.
    REQUIRE(PQsendQuery(conn.get(), "SELECT pg_sleep(30)") == 1);
    auto admin_conn = admin();
    REQUIRE(eventually([&] { return backend_in_state(admin_conn.get(), "query = 'SELECT pg_sleep(30)'", "active"); },
                       std::chrono::seconds(5)));
    const auto outcomes = cancel_and_drain(conn.get());
    REQUIRE(outcomes.size() == 1);
    CHECK(outcomes[0].sqlstate == "57014");
    CHECK(scalar(conn.get(), "SELECT 'still usable'") == "still usable");
}

TEST_CASE("a server that dies inside a message: the client gets the cut message and EOF, nothing spliced in",
          "[session][terminate]") {
    // A backend blocked writing to its client and told to die sends nothing more (it may be
    // inside a message): PostgreSQL's ProcessClientWriteInterrupt. The client must see exactly
    // that through pgrail too: no FATAL of pgrail's inside the half-sent DataRow.
    const auto cut_sessions_logged = [] {
        return count_occurrences(read_file(Cluster::get().pgrail_log), "closing the client mid-message");
    };
    const auto logged_before = Cluster::get().proxied() ? cut_sessions_logged() : 0;
    auto admin_conn = admin();
    for (const Route route : both_routes) {
        INFO(route_name(route));
        const std::string app_name = std::string("cut_mid_row_") + route_name(route);
        RawSocket raw(route);
        log_in_as_plainuser(raw, app_name);
        // One 32 MiB row, more than the socket buffers and pgrail hold: the backend blocks.
        raw.send(query_message("SELECT repeat('x', 32 * 1024 * 1024)"));
        const std::string where = "application_name = '" + app_name + "' AND wait_event = 'ClientWrite'";
        REQUIRE(eventually([&] { return backend_in_state(admin_conn.get(), where, "active"); },
                           std::chrono::seconds(10)));
        CHECK(scalar(admin_conn.get(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE " + where) ==
              "t");
        const auto bytes = raw.read_until_close(std::chrono::seconds(30));
        CHECK(raw.eof());
        const auto messages = split_messages(bytes);
        REQUIRE(messages.size() == 2);
        CHECK(messages[0].type == 'T');  // RowDescription
        REQUIRE(messages[1].type == '?');  // the DataRow, cut:
        const auto& cut = messages[1].body;
        CHECK(cut[0] == 'D');
        CHECK(cut.size() < 1 + 4 + 2 + 4 + 32u * 1024 * 1024);
        // after its header (type, length, column count, value length) only the value's bytes
        CHECK(cut.find_first_not_of('x', 11) == std::string::npos);
    }
    if (Cluster::get().proxied()) {
        CHECK(eventually([&] { return cut_sessions_logged() > logged_before; }, std::chrono::seconds(5)));
        auto conn = connect(Route::pgrail);
        CHECK(scalar(conn.get(), "SELECT 'pgrail serves on'") == "pgrail serves on");
    }
}

TEST_CASE("long messages of several sessions share max_buffered_size: one waits, both are answered",
          "[session][budget]") {
    // pgrail reads a Query whole before it decides; about 1 MiB for all sessions' such messages.
    const PgrailProcess process("max_message_size: 1048576\nmax_buffered_size: 1048577\n");
    // One session announces a Query of about 900 KB and sends a tenth of it.
    RawSocket holder(process.port());
    log_in_as_plainuser(holder, "budget_holder");
    const auto holder_query = query_message(length_query(900000, 'h'));
    holder.send(holder_query.substr(0, 90000));
    // Another sends about 800 KB at once: the two do not fit in the budget together.
    const Conn waiter(PQconnectdb(process.conninfo("app_owner").c_str()));
    REQUIRE(PQstatus(waiter.get()) == CONNECTION_OK);
    auto waiter_answer = std::async(std::launch::async, [&] {
        const Result result(PQexec(waiter.get(), length_query(800000, 'w').c_str()));
        return std::string(PQresultStatus(result.get()) == PGRES_TUPLES_OK ? PQgetvalue(result.get(), 0, 0)
                                                                            : PQresultErrorMessage(result.get()));
    });
    // Whichever came second waits (and says so) until the first is done.
    CHECK(eventually([&] { return process.log().find("waits for buffer space") != std::string::npos; },
                     std::chrono::seconds(10)));
    CHECK(waiter_answer.wait_for(std::chrono::seconds(0)) == std::future_status::timeout);
    holder.send(holder_query.substr(90000));
    CHECK(only_value(read_until_ready(holder)) == "900000");
    CHECK(waiter_answer.get() == "800000");
}

TEST_CASE("one login holds at most half of max_buffered_size: another login's long message goes first",
          "[session][budget]") {
    // 3 MiB for all: plainuser's first long message (1 MB) is granted, its second waits (it would
    // hold more than half), and app_owner's, sent after both, is answered while they wait.
    const PgrailProcess process("max_message_size: 1048576\nmax_buffered_size: 3145728\n");
    const auto long_query = query_message(length_query(1000000, 'h'));
    std::vector<std::unique_ptr<RawSocket>> holders;
    for (int i = 0; i < 2; ++i) {
        holders.push_back(std::make_unique<RawSocket>(process.port()));
        log_in_as_plainuser(*holders.back(), "budget_share");
        holders.back()->send(long_query.substr(0, 100000));
    }
    CHECK(eventually([&] { return process.log().find("waits for buffer space") != std::string::npos; },
                     std::chrono::seconds(10)));
    const Conn other(PQconnectdb(process.conninfo("app_owner").c_str()));
    REQUIRE(PQstatus(other.get()) == CONNECTION_OK);
    const Result result(PQexec(other.get(), length_query(1000000, 'o').c_str()));
    REQUIRE(PQresultStatus(result.get()) == PGRES_TUPLES_OK);
    CHECK(std::string(PQgetvalue(result.get(), 0, 0)) == "1000000");
    // The holders finish: both answered (the second once the first is done).
    for (auto& holder : holders) holder->send(long_query.substr(100000));
    for (auto& holder : holders) CHECK(only_value(read_until_ready(*holder)) == "1000000");
}

TEST_CASE("no message waits for buffer space, or holds it unfinished, beyond buffered_message_timeout",
          "[session][budget]") {
    const PgrailProcess process("max_message_size: 1048576\nmax_buffered_size: 1048577\n"
                                "buffered_message_timeout: 2s\n");
    const auto holder_query = query_message(length_query(900000, 'h'));
    {
        // The holder keeps sending, slowly but within its own bound (2 s and a second per MiB
        // begun: 6 s for 3.9 MB): a second long message waits 2 s, then gives up.
        const PgrailProcess process(
            "max_message_size: 4194304\nmax_buffered_size: 4194305\n"
            "buffered_message_timeout: 2s\n");
        const auto holder_query = query_message(length_query(3900000, 'h'));
        RawSocket holder(process.port());
        log_in_as_plainuser(holder, "budget_trickle");
        holder.send(holder_query.substr(0, 90000));
        RawSocket waiter(process.port());
        log_in_as_plainuser(waiter, "budget_waiter");
        // (Raw: libpq, still sending when the FATAL comes, reports only the closed socket, as it
        // does when PostgreSQL ends a session whose message it has not read.)
        const auto waiting_since = std::chrono::steady_clock::now();
        auto sending = std::async(std::launch::async, [&] {
            waiter.send(query_message(length_query(800000, 'w')));
        });
        auto reading =
            std::async(std::launch::async, [&] { return waiter.read_until_close(std::chrono::seconds(30)); });
        std::size_t sent = 90000;
        // (The holder finishes only after the waiter has its answer: it cannot have been served.)
        // 90 rounds of 200 ms: the waiter should have given up long before.
        while (reading.wait_for(std::chrono::milliseconds(200)) != std::future_status::ready && sent < 180000) {
            holder.send(holder_query.substr(sent, 1000));
            sent += 1000;
        }
        const bool gave_up = reading.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
        const auto waited = std::chrono::steady_clock::now() - waiting_since;
        if (!gave_up) {
            holder.send(holder_query.substr(sent));  // let the waiter through: fail, do not hang
            sent = holder_query.size();
        }
        REQUIRE(gave_up);
        // It waited (and said so) for about the timeout, neither refused at once nor much longer.
        CHECK(waited >= std::chrono::milliseconds(1500));
        CHECK(waited < std::chrono::seconds(10));
        CHECK(process.log().find("waits for buffer space") != std::string::npos);
        sending.wait();
        const auto farewell = split_messages(reading.get());
        CHECK(waiter.eof());  // and the connection closed
        REQUIRE(farewell.size() == 1);
        REQUIRE(farewell[0].type == 'E');
        CHECK(error_fields(farewell[0].body).at('C') == "53200");
        CHECK_THAT(error_fields(farewell[0].body).at('M'), Catch::Contains("out of buffer space"));
        holder.send(holder_query.substr(sent));
        CHECK(only_value(read_until_ready(holder)) == "3900000");
    }
    {
        // A holder that keeps sending, but too slowly to finish within 2 s and a second (per MiB begun),
        // is disconnected: a trickle must not hold the budget for ever.
        RawSocket holder(process.port());
        log_in_as_plainuser(holder, "budget_slow");
        holder.send(holder_query.substr(0, 90000));
        const auto since = std::chrono::steady_clock::now();
        auto reading =
            std::async(std::launch::async, [&] { return holder.read_until_close(std::chrono::seconds(30)); });
        for (std::size_t sent = 90000;
             reading.wait_for(std::chrono::milliseconds(200)) != std::future_status::ready && sent < 180000;
             sent += 1000)
            holder.send(holder_query.substr(sent, 1000));
        REQUIRE(reading.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
        CHECK(std::chrono::steady_clock::now() - since < std::chrono::seconds(10));
        const auto farewell = split_messages(reading.get());
        REQUIRE(farewell.size() == 1);
        const auto fields = error_fields(farewell[0].body);
        CHECK(fields.at('C') == "08P01");
        CHECK_THAT(fields.at('M'), Catch::Contains("came too slowly"));
    }
    {
        // A holder that stops sending in the middle of its message is disconnected.
        RawSocket holder(process.port());
        log_in_as_plainuser(holder, "budget_stalled");
        holder.send(holder_query.substr(0, 90000));
        const auto farewell = split_messages(holder.read_until_close(std::chrono::seconds(10)));
        CHECK(holder.eof());
        REQUIRE(farewell.size() == 1);
        CHECK(farewell[0].type == 'E');
        const auto fields = error_fields(farewell[0].body);
        CHECK(fields.at('V') == "FATAL");
        CHECK(fields.at('C') == "08P01");
        CHECK_THAT(fields.at('M'), Catch::Contains("stalled"));
    }
    // And the budget is whole again.
    const Conn after(PQconnectdb(process.conninfo("app_owner").c_str()));
    CHECK(scalar(after.get(), length_query(1000000, 'a')) == "1000000");
}

TEST_CASE("pipelined long messages are each held alone, and their budget is given back", "[session][budget]") {
    const PgrailProcess process("max_message_size: 1048576\nmax_buffered_size: 1048577\n"
                                "buffered_message_timeout: 2s\n");
    RawSocket pipelining(process.port());
    log_in_as_plainuser(pipelining, "budget_pipeline");
    // Three long Queries in one write: each needs a buffer of its own size, one after the other.
    std::string three;
    // Any two of them together exceed the budget: held together, one would wait (and say so).
    for (const std::size_t length : {600000, 500000, 700000})
        three += query_message(length_query(length, 'p'));
    pipelining.send(three);
    for (const std::string expected : {"600000", "500000", "700000"}) {
        CHECK(only_value(read_until_ready(pipelining)) == expected);
    }
    // Nothing of the three is still held: a message of nearly the whole budget fits at once.
    const Conn after(PQconnectdb(process.conninfo("app_owner").c_str()));
    CHECK(scalar(after.get(), length_query(1000000, 'a')) == "1000000");
    CHECK(process.log().find("waits for buffer space") == std::string::npos);
}

TEST_CASE("a client that leaves while pgrail holds back its pipeline has its statement cancelled",
          "[session][disconnect]") {
    // Past 4,096 answers owed pgrail reads no more of the client; it still sees it leave (the
    // peer's FIN, with its own messages unread), and cancels what the server runs for it.
    if (!Cluster::get().proxied()) return;
    auto admin_conn = admin();
    std::optional<RawSocket> raw;
    raw.emplace(Route::pgrail);
    log_in_as_plainuser(*raw, "gone_while_held");
    std::string pipeline = query_message("SELECT pg_sleep(60)");
    // 100 KB of Syncs: more than pgrail reads ahead (its 64 KiB buffer), so that the close comes
    // behind bytes pgrail has not read; few enough for its kernel's first receive window to take
    // them all, so that the close reaches it (a close queued behind bytes never sent is not seen:
    // docs/security.md).
    for (int i = 0; i < 20000; ++i) pipeline += message('S', "");
    raw->send(pipeline);
    const std::string where = "application_name = 'gone_while_held'";
    REQUIRE(eventually([&] { return backend_in_state(admin_conn.get(), where, "active"); }, std::chrono::seconds(5)));
    REQUIRE(raw->all_sent(std::chrono::seconds(5)));
    raw.reset();  // close, the Syncs beyond the first 4,096 unread by pgrail
    CHECK(eventually([&] { return !backend_in_state(admin_conn.get(), where, ""); }, std::chrono::seconds(10)));
}

// pgrail's lifecycle under an operator's hand and a server's silence: the login's timeouts
// (upstream.connect_timeout_ms), SIGHUP that never stops the listener, and the shutdown
// (SIGTERM: sessions finish their transaction, then FATAL 57P01; SIGINT: at once; the exit status).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"
#include "seed_database.hpp"
#include "scripted_server.hpp"

using namespace pgrail::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A TCP port on the loopback that takes connections but never says a word: bound at once (a
// connection is refused until listen()), then listening without ever calling accept(), as a
// PostgreSQL whose postmaster is stopped (SIGSTOP) looks to a client: the kernel completes the
// handshake, nobody answers.
class SilentPort {
public:
    SilentPort() {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t size = sizeof address;
        if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&address), size) != 0 ||
            getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
            if (fd_ >= 0) close(fd_);
            throw std::runtime_error("the silent port cannot bind");
        }
        port_ = ntohs(address.sin_port);
    }
    ~SilentPort() { close(fd_); }
    SilentPort(const SilentPort&) = delete;
    SilentPort& operator=(const SilentPort&) = delete;

    void listen_silently() {
        if (listen(fd_, 64) != 0) throw std::runtime_error("the silent port cannot listen");
    }
    [[nodiscard]] int port() const { return port_; }

private:
    int fd_ = -1;
    int port_ = 0;
};


std::string receive_startup(int fd) {
    auto bytes = receive_n(fd, 4);
    return bytes + receive_n(fd, from_be32(bytes) - 4);
}

std::string receive_message(int fd) {
    auto bytes = receive_n(fd, 5);
    return bytes + receive_n(fd, from_be32(bytes.substr(1)) - 4);
}

// Waits until pgrail hangs up (or a minute passes).
void wait_for_close(int fd) {
    while (true) (void)receive_n(fd, 1);
}

const std::string cleartext_request = message('R', be32(3));

// The one message a client got before pgrail closed its connection, which must be an error.
std::map<char, std::string> last_words(RawSocket& client, std::chrono::milliseconds timeout = 10s) {
    const auto messages = split_messages(client.read_until_close(timeout));
    CHECK(client.eof());
    REQUIRE(!messages.empty());
    REQUIRE(messages.back().type == 'E');
    return error_fields(messages.back().body);
}

void check_terminated(const std::map<char, std::string>& fields) {
    CHECK(fields.at('S') == "FATAL");
    CHECK(fields.at('C') == "57P01");
    CHECK(fields.at('M') == "terminating connection due to administrator command");
}

void log_in_plain(RawSocket& raw, const std::string& database) {
    raw.send(startup_packet(0x00030000, {{"user", "plainuser"}, {"database", database}}));
    REQUIRE(raw.read_exactly(9) == std::string("R\0\0\0\x08\0\0\0\x03", 9));
    raw.send(password_message("plainuser"));
    REQUIRE(read_until_ready(raw).back().type == 'Z');
}

// Sends a simple Query and returns its answer up to ReadyForQuery.
std::vector<BackendMessage> ask(RawSocket& raw, const std::string& sql) {
    raw.send(query_message(sql));
    return read_until_ready(raw);
}

char status_of(const std::vector<BackendMessage>& answer) {
    REQUIRE(!answer.empty());
    REQUIRE(answer.back().type == 'Z');
    REQUIRE(answer.back().body.size() == 1);
    return answer.back().body[0];
}

bool has_error(const std::vector<BackendMessage>& answer) {
    return std::any_of(answer.begin(), answer.end(), [](const auto& m) { return m.type == 'E'; });
}

bool refuses_connections(int port) {
    try {
        RawSocket probe(port);
        return false;
    } catch (const std::exception& e) {
        return std::string(e.what()).find("refused") != std::string::npos;
    }
}

std::string unique_name(const std::string& prefix) {
    std::random_device random;
    return prefix + std::to_string(random() % 1000000000);
}

// A table plainuser may write, in the cluster's database, dropped again at the end.
struct ScratchTable {
    std::string name = unique_name("lifecycle_");
    ScratchTable() {
        auto conn = admin();
        REQUIRE(run(conn.get(), "CREATE TABLE " + name + " (id int)").at(0).status == "PGRES_COMMAND_OK");
        REQUIRE(run(conn.get(), "GRANT SELECT, INSERT ON " + name + " TO plainuser").at(0).status == "PGRES_COMMAND_OK");
    }
    ~ScratchTable() {
        auto conn = admin();
        (void)run(conn.get(), "DROP TABLE IF EXISTS " + name);
    }
    [[nodiscard]] std::string rows() const {
        auto conn = admin();
        return scalar(conn.get(), "SELECT count(*) FROM " + name);
    }
};

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

// --- The login's timeouts -----------------------------------------------------------------

TEST_CASE("a server that accepts the connection and never answers the login: FATAL 08006 within the timeout",
          "[lifecycle]") {
    // Both ways a server can be silent: a process that accepts and reads but never writes, and a
    // listen queue nobody takes connections from (the postmaster stopped).
    const auto check_silent_server = [](int port) {
        PgrailProcess pgrail("", "127.0.0.1", port, ", connect_timeout_ms: 500");
        for (int attempt = 0; attempt < 2; ++attempt) {  // and pgrail goes on serving the next client
            RawSocket client(pgrail.port());
            const auto start = Clock::now();
            client.send(startup_packet(0x00030000, {{"user", "agent"}, {"database", "app"}}));
            const auto fields = last_words(client);
            CHECK(seconds_since(start) < 5.0);
            CHECK(fields.at('S') == "FATAL");
            CHECK(fields.at('C') == "08006");
            CHECK_THAT(fields.at('M'), Catch::Contains("did not answer the login within 500 ms") &&
                                           Catch::Contains("127.0.0.1:" + std::to_string(port)) &&
                                           Catch::Contains("upstream.connect_timeout_ms"));
        }
        CHECK(pgrail.running());
        CHECK_THAT(pgrail.log(), Catch::Contains("did not answer within 500 ms during the login"));
    };
    SECTION("a server that reads the startup packet and says nothing") {
        ScriptedServer server([](int fd) {
            receive_startup(fd);
            wait_for_close(fd);
        });
        check_silent_server(server.port());
    }
    SECTION("a listen queue nobody accepts from") {
        SilentPort port;
        port.listen_silently();
        check_silent_server(port.port());
    }
}

TEST_CASE("a server that goes silent after the client's password: FATAL 08006; the client's own time is not counted",
          "[lifecycle]") {
    ScriptedServer server([](int fd) {
        receive_startup(fd);
        write_fd(fd, cleartext_request);
        receive_message(fd);  // the password; then nothing more
        wait_for_close(fd);
    });
    PgrailProcess pgrail("", "127.0.0.1", server.port(), ", connect_timeout_ms: 500");
    RawSocket client(pgrail.port());
    client.send(startup_packet(0x00030000, {{"user", "agent"}, {"database", "app"}}));
    REQUIRE(client.read_exactly(cleartext_request.size()) == cleartext_request);
    // A person types the password: three times the server's timeout, and no timeout for that.
    std::this_thread::sleep_for(1500ms);
    const auto start = Clock::now();
    client.send(password_message("agent"));
    const auto fields = last_words(client);
    CHECK(seconds_since(start) < 5.0);
    CHECK(fields.at('S') == "FATAL");
    CHECK(fields.at('C') == "08006");
    CHECK_THAT(fields.at('M'), Catch::Contains("did not answer the login within 500 ms"));
    CHECK(pgrail.running());
}

TEST_CASE("the login timeout leaves a real server's login alone", "[lifecycle]") {
    // Startup, a password round trip and the backend's start: each turn well inside 500 ms.
    PgrailProcess pgrail("", "127.0.0.1", 0, ", connect_timeout_ms: 500");
    for (int i = 0; i < 3; ++i) {
        RawSocket client(pgrail.port());
        log_in_plain(client, Cluster::get().database);
        CHECK(status_of(ask(client, "SELECT 1")) == 'I');
    }
}

TEST_CASE("max_client_connections: one more client hears 53300 at once, and a freed place is taken again",
          "[lifecycle]") {
    PgrailProcess pgrail("max_client_connections: 3\n");
    std::vector<Conn> held;
    for (int i = 0; i < 3; ++i) {
        held.emplace_back(PQconnectdb(pgrail.conninfo().c_str()));
        REQUIRE(PQstatus(held.back().get()) == CONNECTION_OK);
    }
    Conn refused(PQconnectdb(pgrail.conninfo().c_str()));
    CHECK(PQstatus(refused.get()) == CONNECTION_BAD);
    CHECK_THAT(PQerrorMessage(refused.get()), Catch::Contains("sorry, too many clients already"));
    CHECK_THAT(pgrail.log(), Catch::Contains("refused 1 client connection(s): max_client_connections reached"));
    // A cancel still gets through when full, as PostgreSQL serves one (review 9).
    REQUIRE(PQsendQuery(held.front().get(), "SELECT pg_sleep(60)") == 1);
    std::this_thread::sleep_for(200ms);  // (the query under way: a cancel before it would be lost either way)
    PGcancel* cancel = PQgetCancel(held.front().get());
    REQUIRE(cancel != nullptr);
    char error[256];
    CHECK(PQcancel(cancel, error, sizeof error) == 1);
    PQfreeCancel(cancel);
    const auto cancelled = drain(held.front().get());
    REQUIRE_FALSE(cancelled.empty());
    CHECK(cancelled.front().sqlstate == "57014");
    held.pop_back();  // its session ends; the place is free once pgrail has seen it go
    REQUIRE(eventually([&] {
        Conn again(PQconnectdb(pgrail.conninfo().c_str()));
        return PQstatus(again.get()) == CONNECTION_OK;
    }, 10s));
}

// --- SIGHUP -------------------------------------------------------------------------------

TEST_CASE("SIGHUP while the migrator's database does not answer: the listener and the sessions go on",
          "[lifecycle]") {
    SilentPort migrator_port;  // refuses connections until listen_silently()
    PgrailProcess pgrail("policy: " + source_dir() + "/policies/default.yaml\n" + "migrations: {dir: " +
                         source_dir() + "/migrations, migrator: \"host=127.0.0.1 port=" +
                         std::to_string(migrator_port.port()) + " dbname=app user=app_owner password=app_owner\"}\n");
    // At start the ledger could not be read (refused): that was quick.
    REQUIRE(eventually([&] { return count_occurrences(pgrail.log(), "cannot read the ledger") == 1; }, 10s));
    auto before = try_connect(pgrail.conninfo());
    REQUIRE(PQstatus(before.get()) == CONNECTION_OK);

    migrator_port.listen_silently();  // from now on the ledger read waits for an answer
    pgrail.reload();
    REQUIRE(eventually([&] { return pgrail.log().find("received SIGHUP: reloading") != std::string::npos; }, 5s));
    const auto start = Clock::now();
    auto fresh = try_connect(pgrail.conninfo());
    REQUIRE(PQstatus(fresh.get()) == CONNECTION_OK);
    CHECK(scalar(fresh.get(), "SELECT 1") == "1");
    CHECK(scalar(before.get(), "SELECT 2") == "2");
    CHECK(seconds_since(start) < 1.0);
    // The reload was still waiting for the database all that time ...
    CHECK(count_occurrences(pgrail.log(), "cannot read the ledger") == 1);
    // ... and a SIGHUP meanwhile is not lost: it runs after it.
    pgrail.reload();
    REQUIRE(eventually([&] { return pgrail.log().find("SIGHUP during a reload") != std::string::npos; }, 5s));
    // The wait is bounded (libpq's connect_timeout, from upstream.connect_timeout_ms: 5 s).
    CHECK(eventually([&] { return count_occurrences(pgrail.log(), "cannot read the ledger") == 3; }, 30s));
    CHECK(scalar(fresh.get(), "SELECT 3") == "3");
}

// --- Shutdown -----------------------------------------------------------------------------

TEST_CASE("SIGTERM: an idle session gets FATAL 57P01 at once and pgrail exits 0", "[lifecycle]") {
    PgrailProcess pgrail("shutdown_timeout: 30s\n");
    RawSocket idle(pgrail.port());
    log_in_plain(idle, Cluster::get().database);
    CHECK(status_of(ask(idle, "SELECT 1")) == 'I');
    const auto start = Clock::now();
    pgrail.signal(SIGTERM);
    check_terminated(last_words(idle));
    CHECK(seconds_since(start) < 5.0);
    CHECK(pgrail.wait_exit(5s) == std::optional<int>(0));
}

TEST_CASE("SIGTERM: a transaction finishes, a running statement is answered, new connections are refused",
          "[lifecycle]") {
    ScratchTable table;
    PgrailProcess pgrail("shutdown_timeout: 30s\n");
    const auto& database = Cluster::get().database;
    RawSocket in_transaction(pgrail.port());
    log_in_plain(in_transaction, database);
    CHECK(status_of(ask(in_transaction, "BEGIN")) == 'T');
    CHECK(status_of(ask(in_transaction, "INSERT INTO " + table.name + " VALUES (1)")) == 'T');
    RawSocket running(pgrail.port());
    log_in_plain(running, database);
    running.send(query_message("SELECT pg_sleep(1.5)"));
    RawSocket idle(pgrail.port());
    log_in_plain(idle, database);
    std::this_thread::sleep_for(200ms);  // the pg_sleep is under way

    pgrail.signal(SIGTERM);
    check_terminated(last_words(idle, 5s));
    CHECK(eventually([&] { return refuses_connections(pgrail.port()); }, 5s));

    // The statement under way is answered, then the session ends.
    const auto slept = read_until_ready(running);
    CHECK(!has_error(slept));
    CHECK(std::any_of(slept.begin(), slept.end(), [](const auto& m) { return m.type == 'D'; }));
    check_terminated(last_words(running, 5s));

    // The transaction goes on to its end, then the session ends.
    CHECK(status_of(ask(in_transaction, "INSERT INTO " + table.name + " VALUES (2)")) == 'T');
    const auto committed = ask(in_transaction, "COMMIT");
    CHECK(!has_error(committed));
    CHECK(status_of(committed) == 'I');
    check_terminated(last_words(in_transaction, 5s));
    CHECK(table.rows() == "2");
    CHECK(pgrail.wait_exit(10s) == std::optional<int>(0));
    CHECK_THAT(pgrail.log(), Catch::Contains("received SIGTERM") && Catch::Contains("exit status 0"));
}

TEST_CASE("SIGTERM: a transaction that outlasts shutdown_timeout is ended at the deadline, exit status 1",
          "[lifecycle]") {
    ScratchTable table;
    PgrailProcess pgrail("shutdown_timeout: 1s\n");
    RawSocket client(pgrail.port());
    log_in_plain(client, Cluster::get().database);
    CHECK(status_of(ask(client, "BEGIN")) == 'T');
    CHECK(status_of(ask(client, "INSERT INTO " + table.name + " VALUES (1)")) == 'T');
    pgrail.signal(SIGTERM);
    CHECK(status_of(ask(client, "SELECT 1")) == 'T');  // still served before the deadline
    check_terminated(last_words(client, 10s));
    CHECK(table.rows() == "0");  // never committed: rolled back
    CHECK(pgrail.wait_exit(10s) == std::optional<int>(1));
}

TEST_CASE("SIGINT: a session inside a transaction gets FATAL 57P01 at once, exit status 1", "[lifecycle]") {
    ScratchTable table;
    PgrailProcess pgrail("shutdown_timeout: 60s\n");
    RawSocket client(pgrail.port());
    log_in_plain(client, Cluster::get().database);
    CHECK(status_of(ask(client, "BEGIN")) == 'T');
    CHECK(status_of(ask(client, "INSERT INTO " + table.name + " VALUES (1)")) == 'T');
    RawSocket busy(pgrail.port());
    log_in_plain(busy, Cluster::get().database);
    busy.send(query_message("SELECT pg_sleep(60)"));
    std::this_thread::sleep_for(200ms);
    const auto start = Clock::now();
    pgrail.signal(SIGINT);
    check_terminated(last_words(client, 5s));
    const auto busy_fields = last_words(busy, 5s);
    check_terminated(busy_fields);
    CHECK(seconds_since(start) < 5.0);
    CHECK(pgrail.wait_exit(10s) == std::optional<int>(1));
    CHECK(table.rows() == "0");
    // The pg_sleep was cancelled on the server, not left running for its minute.
    auto conn = admin();
    CHECK(eventually([&] { return scalar(conn.get(), "SELECT count(*) FROM pg_stat_activity WHERE query = "
                                                     "'SELECT pg_sleep(60)' AND state = 'active'") == "0"; },
                     5s));
}

TEST_CASE("SIGINT with only idle sessions exits 0; SIGINT after SIGTERM hurries the shutdown", "[lifecycle]") {
    SECTION("idle sessions only") {
        PgrailProcess pgrail("");
        RawSocket idle(pgrail.port());
        log_in_plain(idle, Cluster::get().database);
        pgrail.signal(SIGINT);
        check_terminated(last_words(idle, 5s));
        CHECK(pgrail.wait_exit(5s) == std::optional<int>(0));
    }
    SECTION("SIGTERM, then SIGINT") {
        PgrailProcess pgrail("shutdown_timeout: 60s\n");
        RawSocket client(pgrail.port());
        log_in_plain(client, Cluster::get().database);
        CHECK(status_of(ask(client, "BEGIN")) == 'T');
        pgrail.signal(SIGTERM);
        CHECK(status_of(ask(client, "SELECT 1")) == 'T');
        pgrail.signal(SIGINT);
        check_terminated(last_words(client, 5s));
        CHECK(pgrail.wait_exit(5s) == std::optional<int>(1));
    }
}

// --- Shutdown during an in-band migration ---------------------------------------------------

namespace {

// A migration under way: its ALTER waits for a lock another session holds on profiles.
struct MigrationUnderWay {
    SeedDatabase db{"lifecycle_seed_"};
    PgrailProcess pgrail;
    Conn locker;
    RawSocket client;

    MigrationUnderWay()
        : pgrail("policy: " + source_dir() + "/policies/default.yaml\n" + "shutdown_timeout: 30s\n" +
                 "migrations: {dir: " + source_dir() + "/migrations, lock_timeout: 30s, migrator: \"" +
                 db.conninfo_for("app_owner") + "\"}\n"),
          locker(PQconnectdb(db.conninfo_for("app_owner").c_str())),
          client(pgrail.port()) {
        REQUIRE(PQstatus(locker.get()) == CONNECTION_OK);
        REQUIRE(run(locker.get(), "BEGIN; LOCK TABLE profiles IN ACCESS SHARE MODE").back().status ==
                "PGRES_COMMAND_OK");
        log_in_plain(client, db.name);
        client.send(query_message("SELECT * FROM pgrail.migrate_up()"));
        auto observer = admin();
        REQUIRE(eventually(
            [&] {
                return scalar(observer.get(), "SELECT count(*) FROM pg_stat_activity WHERE datname = '" + db.name +
                                                  "' AND wait_event_type = 'Lock' AND query ILIKE '%ALTER TABLE%'") ==
                       "1";
            },
            10s));
    }
};

}  // namespace

TEST_CASE("SIGTERM during an in-band migration: it finishes, its client gets the result, then 57P01, exit 0",
          "[lifecycle]") {
    MigrationUnderWay migration;
    migration.pgrail.signal(SIGTERM);
    std::this_thread::sleep_for(500ms);
    CHECK(migration.pgrail.running());  // waiting for the migration, not cutting it
    CHECK(eventually([&] { return refuses_connections(migration.pgrail.port()); }, 5s));
    REQUIRE(run(migration.locker.get(), "COMMIT").at(0).status == "PGRES_COMMAND_OK");  // the ALTER goes on

    const auto answer = read_until_ready(migration.client);
    CHECK(!has_error(answer));
    CHECK(std::any_of(answer.begin(), answer.end(),
                      [](const auto& m) { return m.type == 'D' && m.body.find("20261125090000") != std::string::npos; }));
    check_terminated(last_words(migration.client, 5s));
    CHECK(migration.db.timezone_columns() == "1");
    CHECK(migration.pgrail.wait_exit(10s) == std::optional<int>(0));
}

TEST_CASE("SIGINT during an in-band migration: it rolls back, its client hears so, then 57P01, exit 1",
          "[lifecycle]") {
    MigrationUnderWay migration;
    migration.pgrail.signal(SIGINT);
    const auto answer = read_until_ready(migration.client);  // without the lock being released
    REQUIRE(has_error(answer));
    const auto error = std::find_if(answer.begin(), answer.end(), [](const auto& m) { return m.type == 'E'; });
    const auto fields = error_fields(error->body);
    CHECK(fields.at('S') == "ERROR");
    CHECK_THAT(fields.at('M') + " " + (fields.count('D') ? fields.at('D') : ""), Catch::Contains("rolled back"));
    check_terminated(last_words(migration.client, 5s));
    CHECK(migration.pgrail.wait_exit(10s) == std::optional<int>(1));
    (void)run(migration.locker.get(), "COMMIT");
    CHECK(migration.db.timezone_columns() == "0");
}

TEST_CASE("max_pending_logins_per_address: silent sockets from one address cannot keep others from logging in",
          "[lifecycle][pending_logins]") {
    PgrailProcess pgrail("max_pending_logins_per_address: 3\n");
    // Three sockets that say nothing hold their address's places for the 60 s a login may take.
    // (PgrailProcess's own probe connection may still hold a place when they arrive: one of them
    // is then past the bound and closed by pgrail 2 s later, and is replaced until three hold.)
    std::vector<std::unique_ptr<RawSocket>> silent;
    const auto top_up = [&] {
        std::erase_if(silent, [](const auto& socket) { return socket->closed_by_peer(); });
        while (silent.size() < 3) silent.push_back(std::make_unique<RawSocket>(pgrail.port()));
    };
    // A login from the same address is refused (after its startup packet), not left to wait.
    std::string last_answer;
    const bool refused = eventually([&] {
        top_up();
        Conn attempt(PQconnectdb(pgrail.conninfo().c_str()));
        last_answer = PQstatus(attempt.get()) == CONNECTION_OK ? "logged in" : PQerrorMessage(attempt.get());
        return last_answer.find("too many connections from this address") != std::string::npos;
    }, 30s);
    INFO("last answer: " << last_answer << "\npgrail's log:\n" << pgrail.log());
    REQUIRE(refused);
    // A logged-in session holds no such place, and a cancel still gets through.
    silent.pop_back();
    Conn held;
    REQUIRE(eventually([&] {
        held = Conn(PQconnectdb(pgrail.conninfo().c_str()));
        return PQstatus(held.get()) == CONNECTION_OK;
    }, 10s));
    silent.push_back(std::make_unique<RawSocket>(pgrail.port()));  // all three places taken again
    REQUIRE(PQsendQuery(held.get(), "SELECT pg_sleep(60)") == 1);
    std::this_thread::sleep_for(200ms);  // (the query under way: a cancel before it would be lost either way)
    PGcancel* cancel = PQgetCancel(held.get());
    REQUIRE(cancel != nullptr);
    char error[256];
    CHECK(PQcancel(cancel, error, sizeof error) == 1);
    PQfreeCancel(cancel);
    const auto cancelled = drain(held.get());
    REQUIRE_FALSE(cancelled.empty());
    CHECK(cancelled.front().sqlstate == "57014");
    // The silent ones leave: the address logs in again.
    silent.clear();
    CHECK(eventually([&] {
        Conn again(PQconnectdb(pgrail.conninfo().c_str()));
        return PQstatus(again.get()) == CONNECTION_OK;
    }, 10s));
}

namespace {

// The timer /proc/net/tcp shows for the IPv4 connection from local port `local` to remote port
// `remote` ("tr": 0 none, 1 retransmit, 2 keepalive, ...), and when it fires (seconds); nullopt:
// no such connection.
std::optional<std::pair<int, double>> tcp_timer(int local, int remote) {
    std::ifstream table("/proc/net/tcp");
    std::string line;
    std::getline(table, line);  // the header
    while (std::getline(table, line)) {
        std::istringstream fields(line);
        std::string slot, local_address, remote_address, state, queues, timer;
        fields >> slot >> local_address >> remote_address >> state >> queues >> timer;
        const auto port_of = [](const std::string& address) {
            return std::stoi(address.substr(address.find(':') + 1), nullptr, 16);
        };
        if (port_of(local_address) != local || port_of(remote_address) != remote) continue;
        const auto colon = timer.find(':');
        return std::pair{std::stoi(timer.substr(0, colon), nullptr, 16),
                         static_cast<double>(std::stol(timer.substr(colon + 1), nullptr, 16)) / 100.0};
    }
    return std::nullopt;
}

int local_port_of(int fd) {
    sockaddr_in address{};
    socklen_t length = sizeof address;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    return ntohs(address.sin_port);
}

}  // namespace

TEST_CASE("both legs' TCP connections carry keepalive probes (tcp_keepalive), and none when it is off",
          "[lifecycle][keepalive]") {
    const bool on = GENERATE(true, false);
    PgrailProcess pgrail(on ? "tcp_keepalive: {idle: 45s, interval: 5s, count: 3}\n" : "tcp_keepalive: off\n");
    Conn conn(PQconnectdb(pgrail.conninfo().c_str()));
    REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
    // The client leg: pgrail's end, from its listening port to this client's port. The server
    // leg: pgrail's end, from the port the backend sees as its client's to PostgreSQL's port.
    const int client_port = local_port_of(PQsocket(conn.get()));
    const int server_leg_port = std::stoi(scalar(conn.get(), "SELECT client_port FROM pg_stat_activity WHERE pid = pg_backend_pid()"));
    for (const auto& [local, remote] : {std::pair{pgrail.port(), client_port}, std::pair{server_leg_port, Cluster::get().pg_port}}) {
        INFO("pgrail's connection from port " << local << " to " << remote);
        REQUIRE(tcp_timer(local, remote).has_value());
        // Once the last answer is acknowledged (until then, the retransmission timer shows).
        const int expected = on ? 2 : 0;  // keepalive, or no timer
        CHECK(eventually([&] { return tcp_timer(local, remote).value_or(std::pair{-1, 0.0}).first == expected; }, 5s));
        if (on) CHECK(tcp_timer(local, remote).value_or(std::pair{-1, 99.0}).second <= 45.0);  // due within the idle time
    }
}

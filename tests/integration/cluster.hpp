// Integration-test access to the throwaway cluster of scripts/test-cluster.sh: connections
// straight to PostgreSQL and through pgrail, result capture for comparison, raw sockets.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <libpq-fe.h>

namespace pgrail::test {

// The values scripts/test-cluster.sh wrote to $PGRAIL_CLUSTER_DIR/env.
struct Cluster {
    std::string host;
    int pg_port = 0;
    int pgrail_port = 0;
    std::string database;
    std::string socket_dir;
    int pgrail_pid = 0;        // 0 when PGRAIL_DIRECT=1 (no pgrail running)
    std::string pgrail_log;
    std::string pg_log;        // PostgreSQL's own log file

    // True when the "through pgrail" route really goes through pgrail.
    [[nodiscard]] bool proxied() const { return pgrail_pid != 0; }

    // Loaded once; throws with a clear message when the fixture did not run.
    static const Cluster& get();
};

enum class Route { direct, pgrail };
inline constexpr Route both_routes[] = {Route::direct, Route::pgrail};
[[nodiscard]] const char* route_name(Route route);
[[nodiscard]] int port_of(Route route);

// Password defaults to the role name (the harness's convention).
[[nodiscard]] std::string conninfo(Route route, std::string_view user = "agent",
                                   std::optional<std::string_view> password = std::nullopt,
                                   std::string_view extra = "");

struct ConnDeleter {
    void operator()(PGconn* conn) const { PQfinish(conn); }
};
struct ResultDeleter {
    void operator()(PGresult* result) const { PQclear(result); }
};
using Conn = std::unique_ptr<PGconn, ConnDeleter>;
using Result = std::unique_ptr<PGresult, ResultDeleter>;

// Connects and fails the test (with libpq's message) unless the connection is usable.
[[nodiscard]] Conn connect(Route route, std::string_view user = "agent",
                           std::string_view extra = "");
// Connects without checking: for tests of refused logins.
[[nodiscard]] Conn try_connect(const std::string& conninfo);
// A superuser connection straight to PostgreSQL, for observing the server.
[[nodiscard]] Conn admin();

// Everything a client can observe of one PGresult, printable for Catch2 comparisons.
struct Outcome {
    std::string status;                 // PQresStatus
    std::string command;                // PQcmdStatus
    std::string sqlstate, severity, message;
    std::vector<std::string> columns;   // name:type oid:format
    std::vector<std::vector<std::optional<std::string>>> rows;
    bool operator==(const Outcome&) const = default;
};
[[nodiscard]] Outcome capture(const PGresult* result);
// Runs a simple Query and captures every result it produced (multi-statement aware).
[[nodiscard]] std::vector<Outcome> run(PGconn* conn, const std::string& sql);
// Collects PQgetResult until NULL (one query's results).
[[nodiscard]] std::vector<Outcome> drain(PGconn* conn);
// Runs a query expected to succeed with one value.
[[nodiscard]] std::string scalar(PGconn* conn, const std::string& sql);

// Runs `sql` as the superuser when the scope ends, a test's failure included: a test's clean-up
// of the objects it made in the shared cluster.
class AdminAtExit {
public:
    explicit AdminAtExit(std::string sql) : sql_(std::move(sql)) {}
    AdminAtExit(const AdminAtExit&) = delete;
    AdminAtExit& operator=(const AdminAtExit&) = delete;
    ~AdminAtExit() {
        auto conn = admin();
        (void)run(conn.get(), sql_);
    }

private:
    std::string sql_;
};

// pgrail's resident memory in KiB (VmRSS), 0 when there is no pgrail process.
[[nodiscard]] long pgrail_rss_kib();

// Raw TCP to pgrail or PostgreSQL, for what libpq never sends.
class RawSocket {
public:
    explicit RawSocket(int port);
    explicit RawSocket(Route route) : RawSocket(port_of(route)) {}
    RawSocket(const RawSocket&) = delete;
    RawSocket& operator=(const RawSocket&) = delete;
    ~RawSocket();

    void send(std::string_view bytes);
    // Reads until EOF or the timeout; eof() tells which.
    [[nodiscard]] std::string read_until_close(std::chrono::milliseconds timeout = std::chrono::seconds(5));
    // Reads exactly n bytes (or fewer at EOF/timeout).
    [[nodiscard]] std::string read_exactly(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(5));
    [[nodiscard]] bool eof() const { return eof_; }
    // Whether the peer has closed (or reset) the connection, without waiting or reading.
    [[nodiscard]] bool closed_by_peer() const;
    // Waits until everything sent has reached the peer's kernel (acknowledged), at most `timeout`;
    // false when some is still unsent (the peer's receive window is full).
    [[nodiscard]] bool all_sent(std::chrono::milliseconds timeout) const;

private:
    int fd_ = -1;
    bool eof_ = false;
};

// Reads a socket someone else owns (e.g. PQsocket) until EOF or the timeout.
[[nodiscard]] std::string read_fd_until_close(int fd, std::chrono::milliseconds timeout, bool* eof = nullptr);
// Writes all bytes to a socket someone else owns; false if the peer closed first.
bool write_fd(int fd, std::string_view bytes);

// Protocol helpers for raw sockets.
[[nodiscard]] std::string be32(std::uint32_t value);
[[nodiscard]] std::uint32_t from_be32(std::string_view bytes);  // the first four bytes
[[nodiscard]] std::string startup_packet(std::uint32_t version, const std::map<std::string, std::string>& params);

struct BackendMessage {
    char type = 0;
    std::string body;
};
// Splits backend bytes into messages; a trailing partial message is returned as type '?'.
[[nodiscard]] std::vector<BackendMessage> split_messages(std::string_view bytes);
// The fields of an ErrorResponse/NoticeResponse body, keyed by field code ('S','V','C','M').
[[nodiscard]] std::map<char, std::string> error_fields(std::string_view body);
// A typed message: the type byte, the length word, the body.
[[nodiscard]] std::string message(char type, std::string_view body);
[[nodiscard]] std::string password_message(std::string_view password);
[[nodiscard]] std::string cancel_request(std::uint32_t pid, std::uint32_t secret);
[[nodiscard]] std::string query_message(std::string_view sql);
// Reads one whole message (fails the test at EOF).
[[nodiscard]] BackendMessage read_message(RawSocket& raw);
// Reads whole messages up to and including the next ReadyForQuery (fails the test at EOF).
[[nodiscard]] std::vector<BackendMessage> read_until_ready(RawSocket& raw);
// Sends plainuser's startup packet and reads the server's request for a cleartext password.
void start_as_plainuser(RawSocket& raw, const std::string& application_name = "");
// Logs in as plainuser (cleartext password) and reads up to the first ReadyForQuery.
void log_in_as_plainuser(RawSocket& raw, const std::string& application_name = "");
// How often `needle` occurs in `text` (lines of a log, say).
[[nodiscard]] std::size_t count_occurrences(std::string_view text, std::string_view needle);

// Polls `done` every 50 ms until it holds or the timeout passes; returns whether it held.
template <class Predicate>
bool eventually(Predicate done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
}

// Catch2 prints an Outcome this way, so a mismatch shows both sides.
std::ostream& operator<<(std::ostream& out, const Outcome& outcome);

}  // namespace pgrail::test

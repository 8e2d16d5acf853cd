// Integration-test access to the throwaway cluster: env file, connections, captures, raw sockets.
#include "cluster.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include <catch2/catch.hpp>

namespace pgrail::test {
namespace {

std::map<std::string, std::string> read_env_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        throw std::runtime_error("cannot read " + path +
                                 ": start the cluster with scripts/test-cluster.sh (CTest fixture `cluster`)");
    }
    std::map<std::string, std::string> values;
    for (std::string line; std::getline(in, line);) {
        const auto eq = line.find('=');
        if (eq == std::string::npos || line.starts_with('#')) continue;
        values[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return values;
}

int to_int(const std::map<std::string, std::string>& env, const std::string& key) {
    const auto it = env.find(key);
    if (it == env.end() || it->second.empty()) return 0;
    return std::stoi(it->second);
}

std::string value_or(const char* value) { return value == nullptr ? std::string{} : std::string{value}; }

// Quotes a conninfo value ('...' with \ and ' escaped).
std::string quoted(std::string_view value) {
    std::string out = "'";
    for (char c : value) {
        if (c == '\'' || c == '\\') out += '\\';
        out += c;
    }
    return out + "'";
}

}  // namespace

const Cluster& Cluster::get() {
    static const Cluster cluster = [] {
        const char* dir = std::getenv("PGRAIL_CLUSTER_DIR");
        if (dir == nullptr) throw std::runtime_error("PGRAIL_CLUSTER_DIR is not set (run through ctest)");
        const auto env = read_env_file(std::string(dir) + "/env");
        Cluster c;
        c.host = env.at("PG_HOST");
        c.pg_port = to_int(env, "PG_PORT");
        c.pgrail_port = to_int(env, "PGRAIL_PORT");
        c.database = env.at("PG_DATABASE");
        c.socket_dir = env.at("PG_SOCKET_DIR");
        c.pgrail_pid = to_int(env, "PGRAIL_PID");
        c.pgrail_log = env.count("PGRAIL_LOG") ? env.at("PGRAIL_LOG") : "";
        c.pg_log = env.count("PG_LOG") ? env.at("PG_LOG") : "";
        return c;
    }();
    return cluster;
}

const char* route_name(Route route) { return route == Route::direct ? "direct" : "pgrail"; }

int port_of(Route route) {
    const auto& c = Cluster::get();
    return route == Route::direct ? c.pg_port : c.pgrail_port;
}

std::string conninfo(Route route, std::string_view user, std::optional<std::string_view> password,
                     std::string_view extra) {
    const auto& c = Cluster::get();
    std::string info = "host=" + c.host + " port=" + std::to_string(port_of(route)) +
                       " dbname=" + c.database + " user=" + quoted(user) +
                       " password=" + quoted(password.value_or(user)) + " connect_timeout=10";
    if (!extra.empty()) info += " " + std::string(extra);
    return info;
}

Conn try_connect(const std::string& info) { return Conn(PQconnectdb(info.c_str())); }

Conn connect(Route route, std::string_view user, std::string_view extra) {
    auto conn = try_connect(conninfo(route, user, std::nullopt, extra));
    if (PQstatus(conn.get()) != CONNECTION_OK) {
        FAIL("connect " << route_name(route) << " as " << user << ": " << PQerrorMessage(conn.get()));
    }
    return conn;
}

Conn admin() {
    const auto& c = Cluster::get();
    auto conn = try_connect("host=" + c.socket_dir + " port=" + std::to_string(c.pg_port) +
                            " dbname=" + c.database + " user=postgres");
    if (PQstatus(conn.get()) != CONNECTION_OK) FAIL("admin connect: " << PQerrorMessage(conn.get()));
    PQsetNoticeProcessor(conn.get(), [](void*, const char*) {}, nullptr);  // DROP ... IF EXISTS chatter
    return conn;
}

Outcome capture(const PGresult* result) {
    Outcome out;
    const auto status = PQresultStatus(result);
    out.status = PQresStatus(status);
    out.command = value_or(PQcmdStatus(const_cast<PGresult*>(result)));
    out.sqlstate = value_or(PQresultErrorField(result, PG_DIAG_SQLSTATE));
    out.severity = value_or(PQresultErrorField(result, PG_DIAG_SEVERITY_NONLOCALIZED));
    out.message = value_or(PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY));
    if (status == PGRES_FATAL_ERROR && out.sqlstate.empty()) {
        out.message = value_or(PQresultErrorMessage(result));  // raised by libpq itself
    }
    for (int col = 0; col < PQnfields(result); ++col) {
        out.columns.push_back(value_or(PQfname(result, col)) + ":" + std::to_string(PQftype(result, col)) +
                              ":" + std::to_string(PQfformat(result, col)));
    }
    for (int row = 0; row < PQntuples(result); ++row) {
        auto& values = out.rows.emplace_back();
        for (int col = 0; col < PQnfields(result); ++col) {
            if (PQgetisnull(result, row, col)) {
                values.emplace_back(std::nullopt);
            } else {
                values.emplace_back(std::string(PQgetvalue(result, row, col),
                                                static_cast<std::size_t>(PQgetlength(result, row, col))));
            }
        }
    }
    return out;
}

std::vector<Outcome> drain(PGconn* conn) {
    std::vector<Outcome> outcomes;
    while (PGresult* raw = PQgetResult(conn)) {
        Result result(raw);
        outcomes.push_back(capture(result.get()));
        if (PQresultStatus(raw) == PGRES_COPY_OUT) {
            // The copied bytes become the outcome's one value.
            std::string data;
            char* buffer = nullptr;
            for (int length; (length = PQgetCopyData(conn, &buffer, 0)) >= 0; PQfreemem(buffer)) {
                data.append(buffer, static_cast<std::size_t>(length));
            }
            outcomes.back().rows.push_back({data});
        } else if (PQresultStatus(raw) == PGRES_COPY_IN) {
            (void)PQputCopyEnd(conn, "no COPY data in this test");
        } else if (PQresultStatus(raw) == PGRES_COPY_BOTH || PQstatus(conn) == CONNECTION_BAD) {
            break;
        }
    }
    return outcomes;
}

std::vector<Outcome> run(PGconn* conn, const std::string& sql) {
    if (PQsendQuery(conn, sql.c_str()) == 0) FAIL("PQsendQuery: " << PQerrorMessage(conn));
    return drain(conn);
}

std::string scalar(PGconn* conn, const std::string& sql) {
    Result result(PQexec(conn, sql.c_str()));
    if (PQresultStatus(result.get()) != PGRES_TUPLES_OK || PQntuples(result.get()) != 1) {
        FAIL(sql << ": " << PQerrorMessage(conn));
    }
    return PQgetvalue(result.get(), 0, 0);
}

long pgrail_rss_kib() {
    const int pid = Cluster::get().pgrail_pid;
    if (pid == 0) return 0;
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);) {
        if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
    }
    throw std::runtime_error("pgrail process " + std::to_string(pid) + " is gone");
}

std::ostream& operator<<(std::ostream& out, const Outcome& o) {
    out << "{" << o.status << " '" << o.command << "'";
    if (!o.sqlstate.empty()) out << " " << o.severity << " " << o.sqlstate << " " << o.message;
    for (const auto& col : o.columns) out << " [" << col << "]";
    for (const auto& row : o.rows) {
        out << " (";
        for (const auto& value : row) out << (value ? *value : "NULL") << ",";
        out << ")";
    }
    return out << "}";
}

RawSocket::RawSocket(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET, Cluster::get().host.c_str(), &addr.sin_addr);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        const std::string error = std::strerror(errno);
        ::close(fd_);
        throw std::runtime_error("connect to port " + std::to_string(port) + ": " + error);
    }
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

RawSocket::~RawSocket() {
    if (fd_ >= 0) ::close(fd_);
}

bool RawSocket::closed_by_peer() const {
    pollfd watched{fd_, POLLRDHUP, 0};
    return ::poll(&watched, 1, 0) == 1 && (watched.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

bool RawSocket::all_sent(std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        int unsent = 0;
        if (::ioctl(fd_, SIOCOUTQ, &unsent) != 0) return false;
        if (unsent == 0) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

void RawSocket::send(std::string_view bytes) { (void)write_fd(fd_, bytes); }

bool write_fd(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const auto sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) continue;
            return false;  // the peer closed: what it answered is still readable
        }
        bytes.remove_prefix(static_cast<std::size_t>(sent));
    }
    return true;
}

std::string read_fd_until_close(int fd, std::chrono::milliseconds timeout, bool* eof) {
    std::string out;
    bool closed = false;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!closed) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        pollfd pfd{fd, POLLIN, 0};
        if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
        char buffer[65536];
        const auto got = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (got > 0) {
            out.append(buffer, static_cast<std::size_t>(got));
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
            closed = true;  // a reset counts as closed too
        }
    }
    if (eof != nullptr) *eof = closed;
    return out;
}

std::string RawSocket::read_exactly(std::size_t n, std::chrono::milliseconds timeout) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out.size() < n && !eof_) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        pollfd pfd{fd_, POLLIN, 0};
        if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
        char buffer[65536];
        const auto want = std::min(sizeof buffer, n - out.size());
        const auto got = ::recv(fd_, buffer, want, 0);
        if (got > 0) {
            out.append(buffer, static_cast<std::size_t>(got));
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
            eof_ = true;  // a reset counts as closed too
        }
    }
    return out;
}

std::string RawSocket::read_until_close(std::chrono::milliseconds timeout) {
    return read_fd_until_close(fd_, timeout, &eof_);
}

std::string be32(std::uint32_t value) {
    const char bytes[4] = {static_cast<char>(value >> 24), static_cast<char>(value >> 16),
                           static_cast<char>(value >> 8), static_cast<char>(value)};
    return std::string(bytes, 4);
}

std::string startup_packet(std::uint32_t version, const std::map<std::string, std::string>& params) {
    std::string body = be32(version);
    for (const auto& [key, value] : params) {
        body += key;
        body += '\0';
        body += value;
        body += '\0';
    }
    body += '\0';
    return be32(static_cast<std::uint32_t>(body.size() + 4)) + body;
}

std::uint32_t from_be32(std::string_view bytes) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

std::vector<BackendMessage> split_messages(std::string_view bytes) {
    std::vector<BackendMessage> messages;
    while (!bytes.empty()) {
        if (bytes.size() < 5) {
            messages.push_back({'?', std::string(bytes)});
            break;
        }
        const std::uint32_t length = from_be32(bytes.substr(1));
        if (length < 4 || length + 1 > bytes.size()) {
            messages.push_back({'?', std::string(bytes)});
            break;
        }
        messages.push_back({bytes[0], std::string(bytes.substr(5, length - 4))});
        bytes.remove_prefix(length + 1);
    }
    return messages;
}

std::string message(char type, std::string_view body) {
    return type + be32(static_cast<std::uint32_t>(4 + body.size())) + std::string(body);
}

std::string password_message(std::string_view password) { return message('p', std::string(password) + '\0'); }

std::string query_message(std::string_view sql) { return message('Q', std::string(sql) + '\0'); }

std::string cancel_request(std::uint32_t pid, std::uint32_t secret) {
    return be32(16) + be32(80877102) + be32(pid) + be32(secret);
}

BackendMessage read_message(RawSocket& raw) {
    const auto header = raw.read_exactly(5);
    REQUIRE(header.size() == 5);
    const std::uint32_t length = from_be32(header.substr(1));
    REQUIRE(length >= 4);
    auto body = raw.read_exactly(length - 4);
    REQUIRE(body.size() == length - 4);
    return {header[0], std::move(body)};
}

std::vector<BackendMessage> read_until_ready(RawSocket& raw) {
    std::vector<BackendMessage> messages;
    do {
        messages.push_back(read_message(raw));
    } while (messages.back().type != 'Z');
    return messages;
}

void start_as_plainuser(RawSocket& raw, const std::string& application_name) {
    std::map<std::string, std::string> parameters{{"user", "plainuser"}, {"database", Cluster::get().database}};
    if (!application_name.empty()) parameters.emplace("application_name", application_name);
    raw.send(startup_packet(0x00030000, parameters));
    REQUIRE(raw.read_exactly(9) == std::string("R\0\0\0\x08\0\0\0\x03", 9));  // AuthenticationCleartextPassword
}

void log_in_as_plainuser(RawSocket& raw, const std::string& application_name) {
    start_as_plainuser(raw, application_name);
    raw.send(password_message("plainuser"));
    REQUIRE(read_until_ready(raw).back().type == 'Z');
}

std::size_t count_occurrences(std::string_view text, std::string_view needle) {
    std::size_t count = 0;
    for (auto at = text.find(needle); at != std::string_view::npos; at = text.find(needle, at + needle.size())) ++count;
    return count;
}

std::map<char, std::string> error_fields(std::string_view body) {
    std::map<char, std::string> fields;
    while (!body.empty() && body[0] != '\0') {
        const char code = body[0];
        const auto end = body.find('\0', 1);
        if (end == std::string_view::npos) break;
        fields[code] = std::string(body.substr(1, end - 1));
        body.remove_prefix(end + 1);
    }
    return fields;
}

}  // namespace pgrail::test

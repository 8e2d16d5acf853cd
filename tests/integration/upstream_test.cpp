// What pgrail does with what a server sends that the test cluster's PostgreSQL will not send on
// demand: SCRAM-SHA-256-PLUS over plain TCP, a known backend key, a close without a word, a
// malformed message. A scripted stand-in server plays each part.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"
#include "scripted_server.hpp"

using namespace pgrail::test;

namespace {


// A startup packet or CancelRequest (no type byte), whole.
std::string receive_startup(int fd) {
    auto bytes = receive_n(fd, 4);
    return bytes + receive_n(fd, from_be32(bytes) - 4);
}

// One typed message, whole.
std::string receive_message(int fd) {
    auto bytes = receive_n(fd, 5);
    return bytes + receive_n(fd, from_be32(bytes.substr(1)) - 4);
}

constexpr std::uint32_t server_pid = 4242;
constexpr std::uint32_t server_secret = 0x5ec2e7a1;
// AuthenticationOk, BackendKeyData with the server's own key, ReadyForQuery.
const std::string login_reply =
    message('R', be32(0)) + message('K', be32(server_pid) + be32(server_secret)) + message('Z', "I");

void start_session(RawSocket& client) {
    client.send(startup_packet(0x00030000, {{"user", "agent"}, {"database", Cluster::get().database}}));
}

// Logs in through `pgrail`, sends a Query and returns what came back until pgrail closed.
std::vector<BackendMessage> answer_to_a_query(const PgrailProcess& pgrail) {
    RawSocket client(pgrail.port());
    start_session(client);
    (void)read_until_ready(client);
    client.send(query_message("SELECT 1"));
    const auto messages = split_messages(client.read_until_close());
    CHECK(client.eof());
    return messages;
}

// Serves one session: the login's answer, then waits for the client's next message and closes.
void log_in_and_close_after_one_message(int fd) {
    receive_startup(fd);
    write_fd(fd, login_reply);
    receive_message(fd);
}

}  // namespace

TEST_CASE("pgrail hides SCRAM-SHA-256-PLUS from the client and passes other mechanism lists as sent",
          "[upstream]") {
    // Channel binding needs one TLS session end to end, which pgrail's two legs never share: a
    // client that picked -PLUS would fail to log in.
    const auto sasl = [](const std::string& mechanisms) { return message('R', be32(10) + mechanisms + '\0'); };
    const std::string plain_and_plus = std::string("SCRAM-SHA-256-PLUS") + '\0' + "SCRAM-SHA-256" + '\0';
    const std::string plain = std::string("SCRAM-SHA-256") + '\0';
    const std::string plain_and_unknown = plain + "FUTURE-MECHANISM" + '\0';
    for (const auto& [offered, expected] :
         {std::pair{plain_and_plus, plain}, std::pair{plain, plain}, std::pair{plain_and_unknown, plain_and_unknown}}) {
        ScriptedServer server([&offered = offered, &sasl](int fd, int) {
            receive_startup(fd);
            write_fd(fd, sasl(offered));
            receive_message(fd);  // until the client gives up
        });
        PgrailProcess pgrail("", "127.0.0.1", server.port());
        RawSocket client(pgrail.port());
        start_session(client);
        const auto request = read_message(client);
        CHECK(request.type == 'R');
        CHECK(message(request.type, request.body) == sasl(expected));
    }
}

TEST_CASE("the client sees its backend's pid with pgrail's secret, and a cancel with it reaches the server with the "
          "server's key",
          "[upstream]") {
    std::mutex mutex;
    std::vector<std::string> cancels;
    ScriptedServer server([&](int fd, int index) {
        if (index == 0) {
            log_in_and_close_after_one_message(fd);
            return;
        }
        const auto request = receive_startup(fd);
        std::lock_guard lock(mutex);
        cancels.push_back(request);
    });
    PgrailProcess pgrail("", "127.0.0.1", server.port());
    RawSocket client(pgrail.port());
    start_session(client);
    const auto messages = read_until_ready(client);
    const auto key = std::find_if(messages.begin(), messages.end(), [](const auto& m) { return m.type == 'K'; });
    REQUIRE(key != messages.end());
    REQUIRE(key->body.size() == 8);
    const auto client_pid = from_be32(key->body);
    const auto client_secret = from_be32(key->body.substr(4));
    CHECK(client_pid == server_pid);  // pg_backend_pid() and the driver agree (issue 17)
    CHECK(client_secret != server_secret);

    // A wrong secret goes nowhere (pgrail logs it); the right one reaches the server, translated.
    RawSocket(pgrail.port()).send(cancel_request(client_pid, client_secret + 1));
    REQUIRE(eventually([&] { return pgrail.log().find("cancel request for unknown key") != std::string::npos; },
                       std::chrono::seconds(5)));
    RawSocket(pgrail.port()).send(cancel_request(client_pid, client_secret));
    REQUIRE(eventually([&] { std::lock_guard lock(mutex); return !cancels.empty(); }, std::chrono::seconds(5)));
    std::lock_guard lock(mutex);
    CHECK(cancels == std::vector<std::string>{cancel_request(server_pid, server_secret)});
    CHECK(server.accepted() == 2);  // the session and the one good cancel
}

TEST_CASE("a server that closes without a word ends the client with FATAL 08006", "[upstream]") {
    ScriptedServer server([](int fd, int) { log_in_and_close_after_one_message(fd); });
    PgrailProcess pgrail("", "127.0.0.1", server.port());
    const auto messages = answer_to_a_query(pgrail);
    REQUIRE(messages.size() == 1);
    REQUIRE(messages[0].type == 'E');
    const auto fields = error_fields(messages[0].body);
    CHECK(fields.at('S') == "FATAL");
    CHECK(fields.at('C') == "08006");
    CHECK(fields.at('M') == "pgrail: the database server closed the connection unexpectedly");
    CHECK(pgrail.running());
}

TEST_CASE("a server message with an impossible length ends the client with FATAL 08P01, nothing of it forwarded",
          "[upstream]") {
    ScriptedServer server([](int fd, int) {
        receive_startup(fd);
        write_fd(fd, login_reply);
        receive_message(fd);
        // A whole RowDescription (of no columns), then a DataRow whose length cannot be (below 4).
        write_fd(fd, message('T', std::string("\0\0", 2)) + 'D' + be32(2) + "garbage");
        receive_message(fd);  // until pgrail hangs up
    });
    PgrailProcess pgrail("", "127.0.0.1", server.port());
    const auto messages = answer_to_a_query(pgrail);
    REQUIRE(messages.size() == 2);
    CHECK(messages[0].type == 'T');
    REQUIRE(messages[1].type == 'E');
    const auto fields = error_fields(messages[1].body);
    CHECK(fields.at('S') == "FATAL");
    CHECK(fields.at('C') == "08P01");
    CHECK_THAT(fields.at('M'), Catch::StartsWith("pgrail: invalid message from the database server"));
    CHECK_THAT(pgrail.log(), Catch::Contains("invalid message from the server"));
    CHECK(pgrail.running());
}

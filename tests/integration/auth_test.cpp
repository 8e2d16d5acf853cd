// Authentication passes through pgrail: SCRAM-SHA-256, md5 and cleartext logins and refusals.
#include <algorithm>
#include <regex>

#include <catch2/catch.hpp>

#include "cluster.hpp"

using namespace pgrail::test;

namespace {

// libpq prefixes its message with the address it tried; the rest must match exactly.
std::string without_address(const std::string& message) {
    return std::regex_replace(message, std::regex(R"(port [0-9]+)"), "port N");
}

std::string parameter(PGconn* conn, const char* name) {
    const char* value = PQparameterStatus(conn, name);
    return value == nullptr ? "(none)" : value;
}

std::vector<Outcome> whoami(PGconn* conn) {
    return run(conn, "SELECT current_user, session_user, current_database(), "
                     "current_setting('server_version_num'), current_setting('client_encoding')");
}

// Logs in with the cleartext password method by hand and returns everything the server sent.
std::string cleartext_login(Route route, const std::string& password) {
    RawSocket socket(route);
    start_as_plainuser(socket);
    socket.send(password_message(password));
    return socket.read_until_close(std::chrono::seconds(3));
}

}  // namespace

TEST_CASE("SCRAM-SHA-256 login gives the same session through pgrail", "[auth]") {
    for (const char* user : {"agent", "app_owner", "postgres", "migrator"}) {
        INFO("user " << user);
        auto direct = connect(Route::direct, user);
        auto proxied = connect(Route::pgrail, user);
        CHECK(PQconnectionUsedPassword(proxied.get()) == 1);
        CHECK(whoami(proxied.get()) == whoami(direct.get()));
        CHECK(PQtransactionStatus(proxied.get()) == PQTRANS_IDLE);
        // ParameterStatus values the client sees at startup.
        for (const char* name : {"server_version", "server_encoding", "client_encoding", "DateStyle",
                                 "integer_datetimes", "standard_conforming_strings", "is_superuser",
                                 "session_authorization"}) {
            CHECK(parameter(proxied.get(), name) == parameter(direct.get(), name));
        }
    }
}

TEST_CASE("SCRAM login works with every channel_binding setting libpq allows without TLS", "[auth]") {
    // pgrail must hide SCRAM-SHA-256-PLUS: the two TCP legs share no TLS session.
    for (const char* setting : {"channel_binding=prefer", "channel_binding=disable", "sslmode=disable",
                                "sslmode=prefer"}) {
        INFO(setting);
        auto conn = connect(Route::pgrail, "agent", setting);
        CHECK(scalar(conn.get(), "SELECT current_user") == "agent");
    }
}

TEST_CASE("md5 login gives the same session through pgrail", "[auth]") {
    auto direct = connect(Route::direct, "md5user");
    auto proxied = connect(Route::pgrail, "md5user");
    CHECK(whoami(proxied.get()) == whoami(direct.get()));
    // The server really asked for md5: AuthenticationMD5Password (code 5) and a 4-byte salt.
    for (const auto route : both_routes) {
        INFO(route_name(route));
        RawSocket socket(route);
        socket.send(startup_packet(0x00030000, {{"user", "md5user"}, {"database", "app"}}));
        const auto request = socket.read_exactly(13);
        CHECK(request.substr(0, 9) == std::string("R\0\0\0\x0c\0\0\0\x05", 9));
        CHECK(request.size() == 13);
    }
}

TEST_CASE("cleartext password login gives the same session through pgrail", "[auth]") {
    auto direct = connect(Route::direct, "plainuser");
    auto proxied = connect(Route::pgrail, "plainuser");
    CHECK(whoami(proxied.get()) == whoami(direct.get()));
}

TEST_CASE("a wrong password is refused with the server's own error", "[auth]") {
    for (const char* user : {"agent", "md5user", "plainuser"}) {
        INFO("user " << user);
        auto direct = try_connect(conninfo(Route::direct, user, "wrong"));
        auto proxied = try_connect(conninfo(Route::pgrail, user, "wrong"));
        REQUIRE(PQstatus(direct.get()) == CONNECTION_BAD);
        REQUIRE(PQstatus(proxied.get()) == CONNECTION_BAD);
        const std::string message = without_address(PQerrorMessage(proxied.get()));
        CHECK(message == without_address(PQerrorMessage(direct.get())));
        CHECK_THAT(message, Catch::Contains("password authentication failed"));
    }
    // Any role that does not exist fails the same way too.
    auto direct = try_connect(conninfo(Route::direct, "nobody", "x"));
    auto proxied = try_connect(conninfo(Route::pgrail, "nobody", "x"));
    CHECK(without_address(PQerrorMessage(proxied.get())) == without_address(PQerrorMessage(direct.get())));
}

TEST_CASE("a wrong password's ErrorResponse is relayed field by field (28P01)", "[auth]") {
    const auto direct = split_messages(cleartext_login(Route::direct, "wrong"));
    const auto proxied = split_messages(cleartext_login(Route::pgrail, "wrong"));
    REQUIRE(direct.size() == 1);
    REQUIRE(proxied.size() == 1);
    REQUIRE(proxied[0].type == 'E');
    const auto fields = error_fields(proxied[0].body);
    CHECK(fields.at('S') == "FATAL");
    CHECK(fields.at('C') == "28P01");
    CHECK(fields.at('M') == "password authentication failed for user \"plainuser\"");
    CHECK(fields == error_fields(direct[0].body));

    // And the right password, by hand, is accepted: AuthenticationOk first, no error on the way
    // to ReadyForQuery.
    RawSocket socket(Route::pgrail);
    start_as_plainuser(socket);
    socket.send(password_message("plainuser"));
    const auto messages = read_until_ready(socket);
    CHECK(messages.front().type == 'R');
    CHECK(messages.front().body == be32(0));
    CHECK(std::none_of(messages.begin(), messages.end(), [](const auto& m) { return m.type == 'E'; }));
}

// The bounds pgrail adds to the migrator's conninfo for its own short reads (the ledger on SIGHUP).
#include <catch2/catch.hpp>

#include <libpq-fe.h>

#include <map>
#include <string>

#include "pgrail/proxy/migration_commands.hpp"

using pgrail::proxy::bounded_conninfo;

namespace {

// What libpq reads from a conninfo: keyword -> value.
std::map<std::string, std::string> parsed(const std::string& conninfo) {
    char* error = nullptr;
    PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
    REQUIRE(options != nullptr);
    std::map<std::string, std::string> out;
    for (auto* option = options; option->keyword != nullptr; ++option)
        if (option->val != nullptr) out[option->keyword] = option->val;
    PQconninfoFree(options);
    return out;
}

}  // namespace

TEST_CASE("bounded_conninfo adds connect_timeout, tcp_user_timeout and statement_timeout") {
    const auto bounded = parsed(bounded_conninfo("host=db port=5433 dbname=app user=owner password='it\\'s'", 5000, 60000));
    CHECK(bounded.at("host") == "db");
    CHECK(bounded.at("port") == "5433");
    CHECK(bounded.at("dbname") == "app");
    CHECK(bounded.at("password") == "it's");
    CHECK(bounded.at("connect_timeout") == "5");
    CHECK(bounded.at("tcp_user_timeout") == "60000");
    CHECK(bounded.at("options") == "-c statement_timeout=60000");
}

TEST_CASE("bounded_conninfo keeps what the conninfo says itself, URIs included") {
    const auto bounded = parsed(bounded_conninfo(
        "postgresql://owner@db:5433/app?connect_timeout=30&options=-c%20search_path%3Dapp", 500, 1000));
    CHECK(bounded.at("user") == "owner");
    CHECK(bounded.at("host") == "db");
    CHECK(bounded.at("connect_timeout") == "30");
    CHECK(bounded.at("options") == "-c search_path=app -c statement_timeout=1000");
    // libpq counts whole seconds and treats 1 as 2: below that, 2.
    CHECK(parsed(bounded_conninfo("host=db", 500, 1000)).at("connect_timeout") == "2");
    CHECK(parsed(bounded_conninfo("host=db", 2500, 1000)).at("connect_timeout") == "3");
}

TEST_CASE("bounded_conninfo leaves text libpq cannot parse as it is, for libpq to report") {
    CHECK(bounded_conninfo("host='unterminated", 5000, 1000) == "host='unterminated");
}

TEST_CASE("pgrail's own connections take the server leg's TLS unless they name their own") {
    pgrail::config::ServerTlsConfig tls;
    CHECK(pgrail::proxy::conninfo_with_server_tls("host=db user=migrator", tls) == "host=db user=migrator");  // disable
    tls.sslmode = pgrail::config::ServerSslMode::verify_full;
    tls.ca_file = "/etc/pgrail/root.crt";
    const auto with = parsed(pgrail::proxy::conninfo_with_server_tls("host=db user=migrator", tls));
    CHECK(with.at("sslmode") == "verify-full");
    CHECK(with.at("sslrootcert") == "/etc/pgrail/root.crt");
    CHECK(with.at("host") == "db");
    // The operator's own sslmode stands; an empty conninfo stays empty.
    CHECK(pgrail::proxy::conninfo_with_server_tls("host=db sslmode=require", tls) == "host=db sslmode=require");
    CHECK(pgrail::proxy::conninfo_with_server_tls("", tls).empty());
    tls.ca_file = "system";
    CHECK(parsed(pgrail::proxy::conninfo_with_server_tls("postgresql://migrator@db/app", tls)).count("sslrootcert") == 0);
}

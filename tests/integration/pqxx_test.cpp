// libpqxx through pgrail: transactions, prepared statements and errors as directly.
#include <pqxx/pqxx>

#include <catch2/catch.hpp>

#include "cluster.hpp"

using namespace pgrail::test;

namespace {

std::vector<std::string> pqxx_session(Route route) {
    std::vector<std::string> seen;
    pqxx::connection conn{conninfo(route)};
    {
        pqxx::work txn{conn};
        txn.exec0("CREATE TEMP TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric)");
        txn.exec_params0("INSERT INTO accounts VALUES ($1, $2, $3)", 1, "alice", "100.50");
        txn.exec_params0("INSERT INTO accounts VALUES ($1, $2, $3)", 2, "bob", "7");
        txn.commit();
    }
    {
        pqxx::work txn{conn};
        txn.exec0("UPDATE accounts SET balance = balance - 50");
        txn.abort();  // rolled back
    }
    conn.prepare("by_owner", "SELECT id, balance FROM accounts WHERE owner = $1");
    conn.prepare("move", "UPDATE accounts SET balance = balance + $2 WHERE id = $1 RETURNING balance");
    {
        pqxx::work txn{conn};
        for (const char* owner : {"alice", "bob", "nobody"}) {
            for (const auto& row : txn.exec_prepared("by_owner", owner)) {
                seen.push_back(std::string(owner) + ": " + row[0].c_str() + " " + row[1].c_str());
            }
        }
        seen.push_back("moved to " + txn.exec_prepared1("move", 2, "0.25")[0].as<std::string>());
        txn.commit();
    }
    try {
        pqxx::work txn{conn};
        txn.exec_params("INSERT INTO accounts VALUES ($1, $2, $3)", 1, "dup", "0");
        seen.push_back("no error");
    } catch (const pqxx::sql_error& e) {
        seen.push_back(std::string("sql_error ") + e.sqlstate());
    }
    try {
        pqxx::work txn{conn};
        txn.exec("SELECT * FROM accounts WHERE");
    } catch (const pqxx::syntax_error& e) {
        seen.push_back(std::string("syntax_error ") + e.sqlstate());
    }
    pqxx::nontransaction read{conn};
    for (const auto& row : read.exec("SELECT id, owner, balance FROM accounts ORDER BY id")) {
        seen.push_back(row[0].as<std::string>() + " " + row[1].as<std::string>() + " " + row[2].as<std::string>());
    }
    seen.push_back("server " + std::to_string(conn.server_version()));
    return seen;
}

}  // namespace

TEST_CASE("libpqxx transactions and prepared statements", "[pqxx]") {
    const auto direct = pqxx_session(Route::direct);
    const auto proxied = pqxx_session(Route::pgrail);
    INFO(Catch::Detail::stringify(direct));
    REQUIRE(direct.size() == 8);
    CHECK(proxied == direct);
}

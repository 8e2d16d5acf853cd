// The policy's lint levels against the real PostgreSQL 15 (docs/lint.md): up refuses, before
// applying anything, a migration with an unwaived finding the policy blocks, naming the rule, the
// line and the waiver; a waiver or a `warn` level lets it apply.
#include <catch2/catch.hpp>

#include <random>

#include <pqxx/pqxx>

#include "cluster.hpp"
#include "pgrail/migrations/error.hpp"
#include "pgrail/migrations/registry.hpp"
#include "pgrail/migrations/runner.hpp"

using namespace pgrail::migrations;

namespace {

std::string server_conninfo(const std::string& database) {
    const auto& c = pgrail::test::Cluster::get();
    return "host=" + c.host + " port=" + std::to_string(c.pg_port) + " dbname=" + database +
           " user=postgres password=postgres connect_timeout=10";
}

// A database of the test's own with a two-row table, dropped at the end.
class LintDatabase {
public:
    LintDatabase() {
        name_ = "lint_test_" + std::to_string(std::random_device()() % 1000000000);
        pqxx::connection conn(server_conninfo("postgres"));
        pqxx::nontransaction(conn).exec0("CREATE DATABASE " + name_);
        pqxx::connection db(conninfo());
        pqxx::nontransaction(db).exec0(
            "CREATE TABLE profiles (id bigint PRIMARY KEY, email text, legacy text); "
            "INSERT INTO profiles VALUES (1, 'a@example.com', 'x'), (2, 'b@example.com', 'y')");
    }
    ~LintDatabase() {
        try {
            pqxx::connection conn(server_conninfo("postgres"));
            pqxx::nontransaction(conn).exec0("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
        } catch (...) {
        }
    }
    LintDatabase(const LintDatabase&) = delete;
    LintDatabase& operator=(const LintDatabase&) = delete;
    [[nodiscard]] std::string conninfo() const { return server_conninfo(name_); }
    [[nodiscard]] std::string columns() const {
        pqxx::connection conn(conninfo());
        pqxx::nontransaction tx(conn);
        return tx.exec("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns "
                       "WHERE table_name = 'profiles'")[0][0]
            .as<std::string>();
    }

private:
    std::string name_;
};

std::shared_ptr<const Registry> registry_of(const std::string& up) {
    return std::make_shared<const Registry>(Registry::from_files(
        "/lint", {{"1_add_note.up.sql", "ALTER TABLE profiles ADD COLUMN note text;\n"},
                  {"1_add_note.down.sql", "ALTER TABLE profiles DROP COLUMN note;\n"},
                  {"2_drop_legacy.up.sql", up},
                  {"2_drop_legacy.down.sql", "ALTER TABLE profiles ADD COLUMN legacy text;\n"}}));
}

}  // namespace

TEST_CASE("up refuses a migration whose finding the policy blocks, until it is waived", "[migrations][lint]") {
    LintDatabase db;
    RunnerOptions options;
    options.conninfo = db.conninfo();
    options.actor = "tester";
    const std::string drop = "-- Nobody reads legacy any more.\nALTER TABLE profiles DROP COLUMN legacy;\n";

    SECTION("default policy: error severity blocks; nothing of the run is applied") {
        Runner runner(registry_of(drop), options);
        try {
            (void)runner.up(std::nullopt);
            FAIL("a DROP COLUMN without a waiver must not apply");
        } catch (const MigrationError& error) {
            CHECK(error.sqlstate() == "55000");
            CHECK_THAT(error.message(), Catch::Contains("2_drop_legacy") && Catch::Contains("drop-column") &&
                                            Catch::Contains("line 2"));
            CHECK_THAT(error.detail(), Catch::Contains("DROP COLUMN profiles.legacy destroys its data"));
            CHECK_THAT(error.hint(), Catch::Contains("-- pgrail:allow drop-column <why this is safe>"));
        }
        CHECK(db.columns() == "id,email,legacy");  // migration 1 did not run either
    }
    SECTION("a waiver with a reason lets it apply") {
        Runner runner(registry_of("-- pgrail:allow drop-column the app stopped reading it in v42\n" + drop), options);
        CHECK(runner.up(std::nullopt).size() == 2);
        CHECK(db.columns() == "id,email,note");
    }
    SECTION("the policy's warn level lets it apply") {
        options.lint.rules["drop-column"] = LintLevel::warn;
        Runner runner(registry_of(drop), options);
        CHECK(runner.up(std::nullopt).size() == 2);
        CHECK(db.columns() == "id,email,note");
    }
    SECTION("the policy's block level stops a warning") {
        options.lint.default_level = LintLevel::block;
        Runner runner(registry_of("-- pgrail:allow drop-column the app stopped reading it\n" + drop +
                                  "CREATE INDEX profiles_email ON profiles (email);\n"),
                      options);
        CHECK_THROWS_WITH(runner.up(std::nullopt), Catch::Contains("index-not-concurrent") && Catch::Contains("line 4"));
        CHECK(db.columns() == "id,email,legacy");
    }
}

// Normalised statement text: what the audit log may show of a statement.
#include <string>

#include <catch2/catch.hpp>

#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/normalize.hpp"

using namespace pgrail::sql;

TEST_CASE("normalised text replaces every literal with $n", "[sql][normalize]") {
    CHECK(normalize("SELECT * FROM users WHERE email = 'alice@example.com' AND pin = 1234") ==
          "SELECT * FROM users WHERE email = $1 AND pin = $2");
    CHECK(normalize("CREATE ROLE agent PASSWORD 'hunter2'").find("hunter2") == std::string::npos);
    CHECK(normalize("SELECT E'\\x41', B'101', X'ff', 1.5e3, U&'d\\0061t'") == "SELECT $1, $2, $3, $4, $5");
    CHECK(normalize("SELECT $$secret$$, $tag$secret$tag$") == "SELECT $1, $2");
    // libpg_query's scanner gives U& literals no length: they must still be replaced.
    CHECK(normalize("SELECT U&'d\\0061t' UESCAPE '\\', U&'x' \n, 1") == "SELECT $1 UESCAPE $2, $3 \n, $4");
}

TEST_CASE("normalised numbering continues after the statement's own parameters", "[sql][normalize]") {
    CHECK(normalize("UPDATE t SET a = $2 WHERE id = 42 AND b = $1") == "UPDATE t SET a = $2 WHERE id = $3 AND b = $1");
}

TEST_CASE("normalised text drops comments", "[sql][normalize]") {
    CHECK(normalize("/* pin 1234 */ SELECT 1 -- pin 1234\n") == "SELECT $1");
    CHECK(normalize("SELECT a, /* why */ b FROM t") == "SELECT a,  b FROM t");
}

TEST_CASE("text that cannot be scanned normalises to nothing", "[sql][normalize]") {
    CHECK(normalize("SELECT 'unterminated secret").empty());
    CHECK(normalize(std::string("SELECT 'a\0b'", 13)).empty());
    CHECK(normalize("").empty());
}

TEST_CASE("each analysed statement's range normalises without its literals", "[sql][normalize]") {
    const std::string sql = "SET lock_timeout = '5s'; UPDATE app.users SET pin = '1234' WHERE id = 7;\n"
                            "INSERT INTO log VALUES ('secret', 3.14)";
    const Analysis analysis = analyze(sql);
    REQUIRE(analysis.statements.size() == 3);
    const std::string expected[] = {"SET lock_timeout = $1", "UPDATE app.users SET pin = $1 WHERE id = $2",
                                    "INSERT INTO log VALUES ($1, $2)"};
    for (std::size_t index = 0; index < 3; ++index) {
        const Statement& statement = analysis.statements[index];
        CHECK(normalize(std::string_view(sql).substr(statement.offset, statement.length)) == expected[index]);
    }
}

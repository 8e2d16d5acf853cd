// pgrail's commands read as relations: which calls the analyzer reports, and their exact bytes.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "../../../src/sql/analyzer_internal.hpp"
#include "pgrail/sql/analyzer.hpp"

using namespace pgrail::sql;

namespace {

// The calls of the query's only statement, checked to be the same on both of the analyzer's
// paths (the whole text parsed at once, and split with the scanner first).
std::vector<PgrailCall> calls_of(const std::string& sql) {
    const Analysis whole = analyze(sql);
    const Analysis split = detail::analyze_split(sql);
    REQUIRE_FALSE(whole.error.has_value());
    REQUIRE(whole.statements.size() == 1);
    REQUIRE(split.statements.size() == 1);
    CHECK(whole.statements[0].pgrail_calls == split.statements[0].pgrail_calls);
    CHECK(whole.statements[0].highest_parameter == split.statements[0].highest_parameter);
    return whole.statements[0].pgrail_calls;
}

std::string text_of(const std::string& sql, const PgrailCall& call) { return sql.substr(call.offset, call.length); }

}  // namespace

TEST_CASE("a pgrail command in FROM is a relation with its exact span", "[sql][pgrail_calls]") {
    const std::string sql = "SELECT version, state FROM pgrail.status() WHERE state = 'pending' ORDER BY 1 LIMIT 3";
    const auto calls = calls_of(sql);
    REQUIRE(calls.size() == 1);
    CHECK(calls[0].function == "status");
    CHECK(calls[0].command == PgrailCommand::status);
    CHECK(calls[0].arguments.empty());
    CHECK(text_of(sql, calls[0]) == "pgrail.status()");
    CHECK_FALSE(calls[0].aliased);
    CHECK_FALSE(calls[0].whole_statement);
    // The statement reads as a plain read: the call is no function reference of it.
    const Statement statement = analyze(sql).statements.at(0);
    CHECK(statement.statement_class == StatementClass::read);
    CHECK(statement.functions.empty());
    CHECK(statement.objects.empty());
}

TEST_CASE("spans hold comments, odd spacing, quoted names and strings with parentheses", "[sql][pgrail_calls]") {
    SECTION("comments and spacing inside the call") {
        const std::string call = "pgrail /* ( */ .\n\t-- ) a comment\n migrate_up ( /* ) */ '2026' -- )\n )";
        const std::string sql = "SELECT * FROM " + call + " AS up";
        const auto calls = calls_of(sql);
        REQUIRE(calls.size() == 1);
        CHECK(calls[0].function == "migrate_up");
        CHECK(calls[0].command == PgrailCommand::migrate_up);
        CHECK(calls[0].arguments == std::vector<std::string>{"2026"});
        CHECK(text_of(sql, calls[0]) == call);
        CHECK(calls[0].aliased);
    }
    SECTION("quoted identifiers") {
        const std::string sql = R"(SELECT * FROM "pgrail"."status"() s (v, n))";
        const auto calls = calls_of(sql);
        REQUIRE(calls.size() == 1);
        CHECK(calls[0].function == "status");
        CHECK(text_of(sql, calls[0]) == R"("pgrail"."status"())");
        CHECK(calls[0].aliased);
        // Quoted, the name keeps its case: "Status" is no command of pgrail's (the policy refuses it).
        const auto upper = calls_of(R"(SELECT * FROM "pgrail"."Status"())");
        REQUIRE(upper.size() == 1);
        CHECK(upper[0].function == "Status");
        CHECK_FALSE(upper[0].command.has_value());
        CHECK(calls_of(R"(SELECT * FROM "PGRAIL".status())").empty());
    }
    SECTION("string arguments holding parentheses and quotes") {
        const std::string sql = "SELECT * FROM pgrail.migrate_up('a)b''(') x, pgrail.plan($$)$$)";
        const auto calls = calls_of(sql);
        REQUIRE(calls.size() == 2);
        CHECK(calls[0].arguments == std::vector<std::string>{"a)b'("});
        CHECK(text_of(sql, calls[0]) == "pgrail.migrate_up('a)b''(')");
        CHECK(calls[1].arguments == std::vector<std::string>{")"});
        CHECK(text_of(sql, calls[1]) == "pgrail.plan($$)$$)");
        CHECK(calls[0].aliased);
        CHECK_FALSE(calls[1].aliased);
    }
    SECTION("numbers and the statement's own offset in the query") {
        const std::string sql = "  /* lead */ SELECT * FROM pgrail.verify(20260101)";
        const auto calls = calls_of(sql);
        REQUIRE(calls.size() == 1);
        CHECK(calls[0].arguments == std::vector<std::string>{"20260101"});
        CHECK(text_of(sql, calls[0]) == "pgrail.verify(20260101)");
    }
}

TEST_CASE("every form of SELECT reads pgrail commands in FROM, in text order", "[sql][pgrail_calls]") {
    const std::string sql =
        "WITH s AS (SELECT * FROM pgrail.status()) SELECT s.version, p.step FROM s JOIN pgrail.plan() p ON true "
        "JOIN profiles ON profiles.id = p.step WHERE s.version IN (SELECT version FROM pgrail.status() t) "
        "UNION ALL SELECT version, 1 FROM LATERAL pgrail.status()";
    const auto calls = calls_of(sql);
    REQUIRE(calls.size() == 4);
    CHECK(calls[0].function == "status");
    CHECK(calls[1].function == "plan");
    CHECK(calls[2].function == "status");
    CHECK(calls[3].function == "status");
    for (std::size_t index = 1; index < calls.size(); ++index) CHECK(calls[index - 1].offset < calls[index].offset);
    for (const auto& call : calls) CHECK(text_of(sql, call) == "pgrail." + call.function + "()");
    CHECK(calls[2].aliased);
    const Statement statement = analyze(sql).statements.at(0);
    CHECK(statement.functions.empty());
    REQUIRE(statement.objects.size() == 1);
    CHECK(statement.objects[0].name == "profiles");
}

TEST_CASE("SELECT pgrail.f() alone is the whole statement", "[sql][pgrail_calls]") {
    const std::string sql = " select PGRAIL.PLAN('7') ";
    const auto calls = calls_of(sql);
    REQUIRE(calls.size() == 1);
    CHECK(calls[0].function == "plan");
    CHECK(calls[0].whole_statement);
    CHECK(text_of(sql, calls[0]) == "select PGRAIL.PLAN('7')");
    CHECK(analyze(sql).statements.at(0).functions.empty());
}

TEST_CASE("pgrail functions anywhere else stay function references", "[sql][pgrail_calls]") {
    for (const std::string sql : {
             "SELECT pgrail.status(), 1",
             "SELECT * FROM profiles WHERE pgrail.status() IS NOT NULL",
             "SELECT * FROM generate_series(1, pgrail.status())",
             "SELECT * FROM pgrail.plan(pgrail.status())",
             "SELECT * FROM pgrail.migrate_up(lower('X'))",
             "SELECT * FROM pgrail.migrate_up($1)",
             "SELECT * FROM pgrail.status() WITH ORDINALITY",
             "SELECT * FROM ROWS FROM (pgrail.status())",
             "SELECT * FROM pgrail.status() AS s(version text)",
             "SELECT * INTO copy FROM pgrail.status()",
             "DELETE FROM profiles USING pgrail.status() s WHERE s.version = profiles.name",
             "UPDATE profiles SET name = s.name FROM pgrail.status() s WHERE true",
             "INSERT INTO profiles (name) SELECT name FROM pgrail.status()",
             "WITH x AS (INSERT INTO profiles (name) SELECT name FROM pgrail.status() RETURNING 1) SELECT * FROM x",
             "EXPLAIN SELECT * FROM pgrail.status()",
             "PREPARE p AS SELECT * FROM pgrail.status()",
             "DECLARE c CURSOR FOR SELECT * FROM pgrail.status()",
             "CREATE VIEW v AS SELECT * FROM pgrail.status()",
             "DO $$BEGIN PERFORM * FROM pgrail.status(); END$$",
             "SELECT query_to_xml('SELECT * FROM pgrail.status()', true, true, '')",
         }) {
        INFO(sql);
        const Analysis analysis = analyze(sql);
        REQUIRE(analysis.statements.size() == 1);
        const Statement& statement = analysis.statements[0];
        CHECK(statement.pgrail_calls.empty());
        bool named = false;
        for (const auto& function : statement.functions) named = named || function.starts_with("pgrail.");
        CHECK(named);
    }
}

TEST_CASE("statements with pgrail calls know their highest parameter", "[sql][pgrail_calls]") {
    CHECK(analyze("SELECT * FROM pgrail.status()").statements.at(0).highest_parameter == 0);
    const std::string sql = "SELECT * FROM pgrail.status() WHERE version = $2 OR name = $10 OR $1 IS NULL";
    calls_of(sql);
    CHECK(analyze(sql).statements.at(0).highest_parameter == 10);
}

TEST_CASE("several statements: each call's span is in the whole query", "[sql][pgrail_calls]") {
    const std::string sql = "SELECT 1; SELECT * FROM pgrail.status(); -- end";
    for (const Analysis& analysis : {analyze(sql), detail::analyze_split(sql)}) {
        REQUIRE(analysis.statements.size() == 2);
        const auto& calls = analysis.statements[1].pgrail_calls;
        REQUIRE(calls.size() == 1);
        CHECK(text_of(sql, calls[0]) == "pgrail.status()");
    }
    // Standard-conforming strings off: a backslash escapes, and the span still ends where the
    // server reads the closing parenthesis.
    Lexing escaped;
    escaped.standard_conforming_strings = false;
    const std::string legacy = R"(SELECT * FROM pgrail.migrate_up('a\')b'))";
    const Analysis analysis = analyze(legacy, escaped);
    REQUIRE(analysis.statements.size() == 1);
    REQUIRE(analysis.statements[0].pgrail_calls.size() == 1);
    CHECK(analysis.statements[0].pgrail_calls[0].arguments == std::vector<std::string>{"a')b"});
    CHECK(text_of(legacy, analysis.statements[0].pgrail_calls[0]) == R"(pgrail.migrate_up('a\')b'))");
}

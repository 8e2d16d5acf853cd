// Analyzer behaviour the corpus does not show: byte ranges,
// structural forms, error positions and pgrail's own calls.
#include <atomic>
#include <optional>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "pgrail/sql/analyzer.hpp"

using namespace pgrail::sql;

namespace {

std::string key_of(const std::string& sql) {
    const Analysis analysis = analyze(sql);
    REQUIRE(analysis.statements.size() == 1);
    REQUIRE_FALSE(analysis.error.has_value());
    REQUIRE_FALSE(analysis.statements[0].structural_form.empty());
    return analysis.statements[0].structural_form;
}

}  // namespace

TEST_CASE("statements carry their byte range in the original text", "[sql][analyzer]") {
    const std::string sql = "  SELECT 'a;b' ; /* c */ DELETE FROM t WHERE x = $$;$$  ;\n-- tail";
    const Analysis analysis = analyze(sql);
    REQUIRE(analysis.statements.size() == 2);
    CHECK(sql.substr(analysis.statements[0].offset, analysis.statements[0].length) == "SELECT 'a;b'");
    CHECK(sql.substr(analysis.statements[1].offset, analysis.statements[1].length) == "DELETE FROM t WHERE x = $$;$$");
}

TEST_CASE("empty text and comments hold no statement", "[sql][analyzer]") {
    CHECK(analyze("").statements.empty());
    CHECK(analyze(" ;; -- nothing\n").statements.empty());
    CHECK_FALSE(analyze("").error.has_value());
}

TEST_CASE("structural form ignores whitespace, comments and keyword case only", "[sql][analyzer]") {
    const std::string base = key_of("ALTER TABLE users ADD COLUMN tz text DEFAULT 'UTC'");
    CHECK(key_of("alter   table users\n add column tz TEXT default 'UTC' -- why\n") == base);
    CHECK(key_of("/* c */ ALTER TABLE users ADD COLUMN tz text DEFAULT 'UTC';") == base);
    CHECK(key_of("ALTER TABLE users ADD COLUMN tz text DEFAULT 'utc'") != base);   // constants count
    CHECK(key_of("ALTER TABLE people ADD COLUMN tz text DEFAULT 'UTC'") != base);  // identifiers count
    CHECK(key_of("ALTER TABLE users ADD COLUMN tz varchar DEFAULT 'UTC'") != base);
    CHECK(key_of("ALTER TABLE \"Users\" ADD COLUMN tz text DEFAULT 'UTC'") != base);  // quoted names keep case
    CHECK(key_of("CREATE TABLE t1 AS SELECT 1") != key_of("CREATE TABLE t1 AS SELECT 2"));
    CHECK(key_of("CREATE TABLE t1 AS SELECT 1.0") != key_of("CREATE TABLE t1 AS SELECT 1"));
    // Only statements that may change the schema carry a form (nothing else is ever matched).
    CHECK(analyze("SELECT 1").statements[0].structural_form.empty());
}

TEST_CASE("text that does not parse reports PostgreSQL's message and position", "[sql][analyzer]") {
    const Analysis analysis = analyze("SELECT 1; SELECT * FRM t");
    REQUIRE(analysis.statements.size() == 2);
    CHECK(analysis.statements[0].statement_class == StatementClass::read);
    const Statement& bad = analysis.statements[1];
    CHECK(bad.statement_class == StatementClass::unknown);
    REQUIRE(bad.error.has_value());
    CHECK(bad.error->message == "syntax error at or near \"FRM\"");
    CHECK(bad.error->cursor == 20);  // 1-based, in the whole text
    REQUIRE(analysis.error.has_value());
    CHECK(*analysis.error == *bad.error);
}

TEST_CASE("error positions count characters, not bytes", "[sql][analyzer]") {
    const Analysis analysis = analyze("SELECT 'äöü'; SELEKT 1");
    REQUIRE(analysis.statements.size() == 2);
    REQUIRE(analysis.statements[1].error.has_value());
    CHECK(analysis.statements[1].error->cursor == 15);
}

TEST_CASE("a NUL byte is refused", "[sql][analyzer]") {
    const Analysis analysis = analyze(std::string("SELECT 1\0; DROP TABLE t", 23));
    REQUIRE(analysis.error.has_value());
    REQUIRE(analysis.statements.size() == 1);
    CHECK(analysis.statements[0].statement_class == StatementClass::unknown);
}

TEST_CASE("long runs of operator characters are refused before PostgreSQL's scanner sees them", "[sql][analyzer]") {
    // 100 KB of "-+" kept PostgreSQL's scanner busy for a minute; now it is refused at once.
    std::string chain = "SELECT 'ä' ";
    for (int i = 0; i < 50000; ++i) chain += "-+";
    chain += " 1";
    const Analysis refused = analyze(chain);
    REQUIRE(refused.error.has_value());
    CHECK_THAT(refused.error->message, Catch::Contains("100000 operator characters"));
    CHECK(refused.error->cursor == 12);  // characters: the run starts after "SELECT 'ä' "
    CHECK(refused.error->limit);         // pgrail's bound, not the grammar
    const Analysis misspelt = analyze("SELECT 1 FORM t");
    REQUIRE(misspelt.error.has_value());
    CHECK_FALSE(misspelt.error->limit);
    CHECK(refused.statements.at(0).statement_class == StatementClass::unknown);

    // Escaped in a DO body the run only appears once PL/pgSQL's text is decoded: still refused.
    std::string escaped = "DO E'BEGIN PERFORM 1 ";
    for (int i = 0; i < 3000; ++i) escaped += "\\x2b\\x2d";
    escaped += " 1; END'";
    CHECK(escaped.find("+-") == std::string::npos);
    const Analysis escaped_analysis = analyze(escaped);
    REQUIRE(escaped_analysis.error.has_value());
    CHECK_THAT(escaped_analysis.error->message, Catch::Contains("6000 operator characters"));
    CHECK(escaped_analysis.error->limit);

    // Short runs, and a few long ones (a banner comment, a chain of signs), are still parsed.
    std::string banner = "/" + std::string(300, '*') + "/\nSELECT 1 " + std::string(200, '-') + "\n";
    std::string signs = "SELECT 1 ";
    for (int i = 0; i < 1500; ++i) signs += "+-";
    signs += " 1";
    for (const auto& allowed : {std::string("SELECT 1 +-+ 2 <= 3 AND a @> b"), banner, signs}) {
        const Analysis analysis = analyze(allowed);
        CHECK_FALSE(analysis.error.has_value());
    }
}

TEST_CASE("a text whose runs of operator characters scan in quadratic time is told apart", "[sql][analyzer]") {
    // What decides whether an I/O thread may analyse a new text (policy_gate.cpp): ordinary
    // operators, banner comments of a line's width and texts without operators scan in linear time.
    for (const std::string& text : std::vector<std::string>{
             "SELECT 1", "SELECT a->>'k', b @> c, d <= e, f || g FROM t WHERE h <> -1 AND i !~~* 'x'",
          "-- " + std::string(78, '-') + "\nSELECT 1 -- " + std::string(78, '=') + "\n", std::string(4096, 'x')})
        CHECK(scans_in_linear_time(text));
    // A chain of signs (each kept alone, the rest of the run scanned again), a long run anywhere
    // (in a comment or a literal too: counted in the raw text), many runs of a few dozen.
    std::string signs = "SELECT 1 ";
    for (int i = 0; i < 100; ++i) signs += "+-";
    std::string many = "SELECT 1";
    for (int i = 0; i < 8; ++i) many += " -- " + std::string(60, '-') + "\n";
    // What the analyzer decodes and scans again: a DO body's escapes, a Unicode escape of its own.
    std::string escaped = "DO E'BEGIN PERFORM 1 ";
    for (int i = 0; i < 100; ++i) escaped += "\\053\\055";
    escaped += "1; END'";
    const std::string uescape = "DO U&'BEGIN PERFORM 1 !002B!002D!002B!002D 1; END' UESCAPE '!'";
    for (const std::string& text :
         std::vector<std::string>{signs + "1", "SELECT '" + std::string(200, '*') + "'", many, escaped, uescape})
        CHECK_FALSE(scans_in_linear_time(text));
    CHECK(scans_in_linear_time("SELECT E'a\\tb', U&'d\\0061t\\+000061'"));
}

TEST_CASE("pgrail calls are recognised only in their exact form", "[sql][analyzer]") {
    const auto call_of = [](const std::string& sql) -> std::optional<PgrailCall> {
        const Analysis analysis = analyze(sql);
        const auto& calls = analysis.statements.at(0).pgrail_calls;
        if (calls.empty()) return std::nullopt;
        return calls.front();
    };
    const auto up = call_of("SELECT * FROM pgrail.migrate_up('20260101')");
    REQUIRE(up.has_value());
    CHECK(up->function == "migrate_up");
    CHECK(up->arguments == std::vector<std::string>{"20260101"});
    CHECK(call_of("select PGRAIL.STATUS()").has_value());  // unquoted names fold to lower case
    CHECK_FALSE(call_of("SELECT * FROM \"PGRAIL\".status()").has_value());
    CHECK(call_of("SELECT * FROM pgrail.status() s").has_value());  // relations (tests/unit/sql/pgrail_calls_test.cpp)
    CHECK_FALSE(call_of("SELECT pgrail.status() WHERE false").has_value());
    CHECK_FALSE(call_of("SELECT * FROM pgrail.migrate_up($1)").has_value());
    CHECK_FALSE(call_of("SELECT * FROM pgrail.migrate_up(NULL)").has_value());
    CHECK_FALSE(call_of("WITH x AS (SELECT 1) SELECT pgrail.plan()").has_value());
    CHECK(call_of("SELECT * FROM pgrail.status(), users").has_value());
}

TEST_CASE("DO blocks: static DDL is DDL, dynamic EXECUTE is ddl-capable", "[sql][analyzer]") {
    const Statement fixed = analyze("DO $$BEGIN ALTER TABLE t ADD c int; END$$").statements.at(0);
    CHECK(fixed.statement_class == StatementClass::ddl);
    CHECK(fixed.tag == "DO");
    CHECK_FALSE(fixed.flags.ddl_capable_dynamic);
    const Statement dynamic = analyze("DO $$BEGIN EXECUTE 'ALTER TABLE t ADD ' || 'c int'; END$$").statements.at(0);
    CHECK(dynamic.statement_class == StatementClass::procedural);
    CHECK(dynamic.flags.ddl_capable_dynamic);
    const Statement nested = analyze("DO $a$BEGIN DO $b$BEGIN EXECUTE format('x'); END$b$; END$a$").statements.at(0);
    CHECK(nested.flags.ddl_capable_dynamic);
    // EXECUTE of a constant runs that constant: it is read as the statement it is.
    const Statement constant = analyze("DO $$BEGIN EXECUTE 'ALTER TABLE t ADD c int'; END$$").statements.at(0);
    CHECK(constant.statement_class == StatementClass::ddl);
    CHECK_FALSE(constant.flags.ddl_capable_dynamic);
    REQUIRE(constant.inner.size() == 1);
    CHECK(constant.inner[0].tag == "ALTER TABLE");
    const Statement select = analyze("DO $$BEGIN EXECUTE 'SELECT 1'; END$$").statements.at(0);
    CHECK(select.statement_class == StatementClass::procedural);
    CHECK_FALSE(select.flags.ddl_capable_dynamic);
}

TEST_CASE("analysis is thread-safe", "[sql][analyzer]") {
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int index = 0; index < 4; ++index) {
        threads.emplace_back([&failures] {
            for (int round = 0; round < 200; ++round) {
                const Analysis analysis = analyze("UPDATE t SET a = 1; DO $$BEGIN DROP TABLE x; END$$");
                if (analysis.statements.size() != 2 || analysis.statements[1].statement_class != StatementClass::ddl) {
                    ++failures;
                }
            }
        });
    }
    for (std::thread& thread : threads) thread.join();
    CHECK(failures == 0);
}

TEST_CASE("long lists of names: each object, function and setting once, as with short ones", "[sql][analyzer]") {
    // Past 32 entries the lists are appended to and made unique at the end (linear, not
    // quadratic): the outcome must be the one entry-by-entry search gives.
    std::string from;
    for (int index = 0; index < 40; ++index) from += (index ? ", t" : "t") + std::to_string(index);
    const std::string text = "WITH d AS (DELETE FROM t5 WHERE id = 1 RETURNING id) SELECT f1(), f2(), " +
                             [] {
                                 std::string calls;
                                 for (int index = 0; index < 40; ++index) calls += "g" + std::to_string(index) + "(), ";
                                 return calls;
                             }() +
                             "f1(), set_config('a.x', '1', false), set_config('a.x', '1', false) FROM " + from +
                             ", t5, public.t5, t7 JOIN d ON true";
    const Analysis analysis = analyze(text);
    REQUIRE_FALSE(analysis.error);
    REQUIRE(analysis.statements.size() == 1);
    const Statement& statement = analysis.statements[0];
    // t0..t39 and public.t5, each once; t5 once, written (the DELETE), where it was first named.
    CHECK(statement.objects.size() == 41);
    std::size_t t5 = 0;
    for (const ObjectRef& object : statement.objects) {
        if (object.name != "t5" || !object.schema.empty()) continue;
        ++t5;
        CHECK(object.role == ObjectRole::written);
    }
    CHECK(t5 == 1);
    // f1, f2, g0..g39, set_config: each once, in the order first named.
    REQUIRE(statement.functions.size() == 43);
    CHECK(statement.functions[0] == "f1");
    CHECK(statement.functions[2] == "g0");
    CHECK(statement.functions.back() == "set_config");
    REQUIRE(statement.settings.size() == 1);
    CHECK(statement.settings[0].name == "a.x");
}

// literal_shape: its scanner must agree with PostgreSQL's wherever it answers (libpg_query's
// scanner is the oracle), and an analysis it shares must hold for every text of the shape.
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "../../../src/sql/nesting.hpp"
#include "corpus_reader.hpp"
#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/literal_shape.hpp"
#include "literal_oracle.hpp"

using namespace pgrail::sql;
using pgrail::sql::testing::oracle_literals;
using pgrail::sql::testing::with_other_values;

namespace {

// Where literal_shape answers, PostgreSQL's scanner must find exactly the same literals.
void require_agrees_with_postgres(const std::string& text) {
    const auto ours = literals_of(text);
    if (!ours) return;
    INFO("text: " << text);
    const auto theirs = oracle_literals(text);
    REQUIRE(theirs.has_value());
    REQUIRE(*ours == *theirs);
}

// What a decision can see: everything but byte positions and structural forms.
void strip_positions(Statement& statement) {
    statement.offset = statement.length = 0;
    statement.structural_form.clear();
    for (Statement& inner : statement.inner) strip_positions(inner);
}

Analysis decision_view(Analysis analysis) {
    for (Statement& statement : analysis.statements) strip_positions(statement);
    return analysis;
}

}  // namespace

TEST_CASE("texts that differ only in literal values share a shape", "[sql][shape]") {
    const auto a = literal_shape("SELECT abalance FROM pgbench_accounts WHERE aid = 1;");
    const auto b = literal_shape("SELECT abalance FROM pgbench_accounts WHERE aid = 99813;");
    REQUIRE(a.has_value());
    CHECK(a == b);
    CHECK(literal_shape("UPDATE t SET name = 'x', price = 1.5 WHERE id = 3") ==
          literal_shape("UPDATE t SET name = 'it''s', price = 10.25 WHERE id = 30000"));
    // Different kinds, names or keywords make different shapes.
    CHECK(literal_shape("SELECT * FROM t WHERE a = 1") != literal_shape("SELECT * FROM t WHERE a = '1'"));
    CHECK(literal_shape("SELECT * FROM t WHERE a = 1") != literal_shape("SELECT * FROM t WHERE a = 1.0"));
    CHECK(literal_shape("SELECT 2147483647") != literal_shape("SELECT 2147483648"));  // ICONST vs FCONST
    CHECK(literal_shape("SELECT * FROM t WHERE a = 1") != literal_shape("SELECT * FROM u WHERE a = 1"));
    CHECK(literal_shape("SELECT * FROM \"T\" WHERE a = 1") != literal_shape("SELECT * FROM t WHERE a = 1"));
    // A shape is never itself a text that has a shape.
    CHECK_FALSE(literal_shape(*a).has_value());
}

TEST_CASE("the shape scanner gives up on an operator PostgreSQL refuses as too long", "[sql][shape]") {
    // Found by scripts/fuzz.sh (tests/fuzz/crashes/literal_shape): 64 operator characters or more.
    CHECK_FALSE(literal_shape("SELECT 1 " + std::string(64, '#') + " 1").has_value());
    CHECK(literal_shape("SELECT 1 " + std::string(63, '#') + " 1").has_value());
}

TEST_CASE("the shape scanner gives up on what it does not know", "[sql][shape]") {
    for (const char* text : {
             "SELECT 1 -- comment", "SELECT /* c */ 1", "SELECT $1", "SELECT $$x$$", "SELECT E'a\\nb'",
             "SELECT 'a\\'", "SELECT B'101'", "SELECT X'ff'", "SELECT N'x'", "SELECT U&'d\\0061t'",
             "SELECT U&\"x\"", "SELECT 1e5", "SELECT .5", "SELECT 1.", "SELECT 1..2", "SELECT 123abc",
             "SELECT 'a'\n'b'", "SELECT 'caf\xc3\xa9'", "SELECT 'unterminated", "SELECT \"unterminated",
             "SELECT\v1", "SELECT {1}", "SELECT a$ FROM t WHERE b = 1 AND c = $2",
         }) {
        INFO(text);
        CHECK_FALSE(literal_shape(text).has_value());
    }
    CHECK(literal_shape("").value().empty());
    CHECK(literal_shape("SELECT a$b, \"we\"\"ird\", 'x''y', 3.14, 42 FROM t").has_value());
}

TEST_CASE("the shape scanner finds PostgreSQL's literals over the whole corpus", "[sql][shape][corpus]") {
    std::size_t answered = 0;
    for (const auto& entry : test::read_corpus()) {
        require_agrees_with_postgres(entry.sql);
        if (literals_of(entry.sql)) ++answered;
    }
    CHECK(answered > 200);  // the corpus is mostly plain SQL: most of it must have a shape
}

// SHAPE_SEED and SHAPE_ROUNDS search further than the default 30,000 texts.
TEST_CASE("the shape scanner agrees with PostgreSQL's on random token soup", "[sql][shape]") {
    // Fragments chosen to sit on the scanner's edges: quotes, dots, digits next to letters,
    // operators that start comments, prefixes of special strings.
    const std::vector<std::string> fragments = {
        "SELECT", " ", "\n", "x", "e", "E", "U", "&", "1", "42", "2147483648", "0", ".", "..", "5", "'",
        "''", "'a'", "\"", "\"q\"", "-", "--", "/", "*", "+", "(", ")", ",", ";", ":", "::", "$", "$1",
        "\\", "1.5", "e5", "_", "=", "<", ">", "!", "~", "|", "@", "#", "%", "^", "`", "?", "[", "]", "\t",
    };
    std::mt19937 random(std::getenv("SHAPE_SEED") ? std::stoul(std::getenv("SHAPE_SEED")) : 20261125);
    std::uniform_int_distribution<std::size_t> pick(0, fragments.size() - 1);
    std::uniform_int_distribution<int> length(1, 12);
    std::size_t answered = 0;
    std::size_t with_literals = 0;
    for (int round = 0; round < (std::getenv("SHAPE_ROUNDS") ? std::stoi(std::getenv("SHAPE_ROUNDS")) : 30000); ++round) {
        std::string text;
        for (int i = length(random); i > 0; --i) text += fragments[pick(random)];
        require_agrees_with_postgres(text);
        if (const auto literals = literals_of(text)) {
            ++answered;
            if (!literals->empty()) ++with_literals;
        }
    }
    CHECK(answered > 3000);
    CHECK(with_literals > 1000);
}

TEST_CASE("an analysis that reads no literal holds for every text of its shape", "[sql][shape][corpus]") {
    std::size_t shared = 0;
    for (const auto& entry : test::read_corpus()) {
        const auto literals = literals_of(entry.sql);
        if (!literals || literals->empty()) continue;
        const Analysis original = analyze(entry.sql);
        if (!literal_independent(original)) continue;
        const std::string variant = with_other_values(entry.sql, *literals);
        INFO("corpus line " << entry.line << ": " << entry.sql << "\nvariant: " << variant);
        REQUIRE(literal_shape(variant) == literal_shape(entry.sql));
        const Analysis other = analyze(variant);
        CHECK(literal_independent(other));
        CHECK(decision_view(other) == decision_view(original));
        ++shared;
    }
    CHECK(shared > 30);
}

TEST_CASE("analyses that read literal values are not shared", "[sql][shape]") {
    CHECK(literal_independent(analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 5")));
    CHECK(literal_independent(analyze("UPDATE t SET a = 'x' WHERE id = 1; DELETE FROM u WHERE id = 2")));
    CHECK(literal_independent(analyze("SELECT DISTINCT a, b FROM t WHERE id = 1")));  // no position in a literal
    for (const char* text : {
             "SELECT set_config('role', 'x', false)",       // the setting is named by a literal
             "SELECT * FROM pgrail.migrate_up('1')",        // arguments are literals
             "EXPLAIN (ANALYZE 0) DELETE FROM t",           // options are literal values
             "SELECT pg_advisory_lock(3)",                  // the key the policy reserves is a literal
             "SELECT 2147483648, 1.5, pg_try_advisory_xact_lock(3)",  // found by literal_shape_fuzz
             "SELECT a, b FROM t ORDER BY 1", "SELECT a FROM t GROUP BY 1",  // a column by position
             "SELECT a, b FROM t GROUP BY ROLLUP(1)", "SELECT a, b FROM t GROUP BY GROUPING SETS ((2, 1))",
             "DO 'BEGIN DROP TABLE t; END'",                // a body in a string literal
             // A query string that holds no statement is read all the same: its shape also
             // stands for query_to_xml('SELECT pg_advisory_lock(...)', ...).
             "SELECT query_to_xml('', true, true, '')", "SELECT query_to_xml(' ; ', true, true, '')",
             "SELECT ts_stat('')", "SELECT ts_rewrite('a'::tsquery, '')",
             "COPY t FROM '/etc/passwd'", "SET search_path = 'x'", "SELECT 1 INTO t2",
             "CREATE TABLE t (a int DEFAULT 1)", "PREPARE p AS SELECT 1", "SELECT FROM", "",
         }) {
        INFO(text);
        CHECK_FALSE(literal_independent(analyze(text)));
    }
}

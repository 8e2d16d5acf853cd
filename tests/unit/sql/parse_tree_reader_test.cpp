// The parse tree read from libpg_query's C nodes (parse_tree_reader.cpp) is the tree its JSON
// output gives, node for node, key for key and text for text, over every text of the corpora:
// the analyzer reads the one where it read the other, and decides the same. (But for negative
// integers, which the JSON loses: see negative_integer_kept.)
#include <catch2/catch.hpp>

#include <pg_query.h>

#include <string>
#include <vector>

#include "../../../src/sql/json_tree.hpp"
#include "../../../src/sql/parse_tree_reader.hpp"
#include "every_corpus_text.hpp"

using namespace pgrail::sql;
using pgrail::sql::detail::JsonNode;
using pgrail::sql::detail::JsonTree;

namespace {

// An Integer's value that libpg_query's JSON leaves out and the reader keeps: a negative one
// (the JSON writes {} for every value <= 0; the reader writes {} for 0 alone, so that -5 is not
// read as 0).
bool negative_integer_kept(JsonNode expected, JsonNode actual) {
    if ((expected.key() != "ival" && expected.key() != "Integer") || expected.size() != 0 || actual.size() != 1)
        return false;
    const JsonNode value = *actual.begin();
    return value.key() == "ival" && value.text().starts_with('-');
}

// Where two trees first differ ("" when they are the same).
std::string difference(JsonNode expected, JsonNode actual, const std::string& path) {
    const std::string here = path + "/" + std::string(expected.key());
    if (negative_integer_kept(expected, actual)) return {};
    if (expected.key() != actual.key()) return here + ": key " + std::string(actual.key());
    if (expected.type() != actual.type()) return here + ": type";
    if (expected.text() != actual.text()) {
        return here + ": '" + std::string(expected.text()) + "' read as '" + std::string(actual.text()) + "'";
    }
    if (expected.size() != actual.size()) {
        std::string keys;
        for (const JsonNode child : actual) keys += " " + std::string(child.key());
        return here + ": " + std::to_string(expected.size()) + " children read as " + std::to_string(actual.size()) +
               " (" + keys + " )";
    }
    auto other = actual.begin();
    for (const JsonNode child : expected) {
        if (std::string found = difference(child, *other, here); !found.empty()) return found;
        ++other;
    }
    return {};
}

struct Outcome {
    std::size_t same = 0;
    std::size_t syntax_errors = 0;
    std::vector<std::string> differences;  // text, then where
    std::vector<std::string> unreadable;
};

void compare(const std::string& sql, Outcome& outcome) {
    PgQueryParseResult parse = pg_query_parse(sql.c_str());
    if (parse.error != nullptr) {
        ++outcome.syntax_errors;
        JsonTree tree;
        const pgrail::sql::detail::ParsedText parsed(sql.c_str(), tree);
        // The same error, from the same parse.
        if (!parsed.error() || *parsed.error() != parse.error->message ||
            parsed.error_cursor() != parse.error->cursorpos) {
            outcome.differences.push_back(sql + "\n    a syntax error read otherwise");
        }
        pg_query_free_parse_result(parse);
        return;
    }
    JsonTree expected;
    REQUIRE(expected.parse(parse.parse_tree));
    JsonTree actual;
    if (!pgrail::sql::detail::read_parse_tree(sql.c_str(), actual)) {
        outcome.unreadable.push_back(sql);
    } else if (std::string found = difference(expected.root(), actual.root(), ""); !found.empty()) {
        outcome.differences.push_back(sql + "\n    " + found);
    } else {
        ++outcome.same;
    }
    pg_query_free_parse_result(parse);
}

}  // namespace

TEST_CASE("the tree read from the C nodes is libpg_query's JSON tree, over every corpus", "[sql][parse_tree_reader]") {
    Outcome outcome;
    const std::vector<std::string> texts = test::every_corpus_text();
    for (const std::string& sql : texts) compare(sql, outcome);
    for (const std::string& found : outcome.differences) UNSCOPED_INFO(found);
    for (const std::string& text : outcome.unreadable) UNSCOPED_INFO("unreadable: " << text);
    INFO(texts.size() << " texts: " << outcome.same << " the same, " << outcome.syntax_errors << " syntax errors");
    CHECK(outcome.differences.empty());
    CHECK(outcome.unreadable.empty());
    CHECK(outcome.same > 3000);
}

TEST_CASE("values the JSON shows in its own way are read as it shows them", "[sql][parse_tree_reader]") {
    Outcome outcome;
    for (const char* sql : {
             // Integers: libpg_query writes only positive values (0 and -5 both as {}).
             "SELECT 0, -5, 5, 2147483648, -2147483648, 1.5, -1.5, true, false, NULL, B'101', X'1F'",
             "SELECT E'a\\nb\"c\\\\d\\x01', '', U&'\\0441', 'é'",
             "CREATE SEQUENCE s INCREMENT BY -1 MINVALUE -10 START -1",
             "SELECT a[-1:2] FROM t LIMIT -3 OFFSET 0",
             "CREATE TABLE t (a varchar(3), b numeric(10, -2), c int[3][], d char)",
             "ALTER FUNCTION f() DEPENDS ON EXTENSION e",
             "SELECT 1; SELECT 2;;  SELECT 3",
             "",
             ";",
             "CREATE TEXT SEARCH CONFIGURATION c (COPY = english); "
             "ALTER TEXT SEARCH CONFIGURATION c ALTER MAPPING FOR word WITH simple, english",
             "SELECT * FROM t FOR UPDATE OF t SKIP LOCKED; SELECT xmlelement(name a, xmlattributes(1 AS b))",
             "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN UPDATE SET b = 1 "
             "WHEN NOT MATCHED THEN INSERT VALUES (1)",
             "CREATE TABLE p (a int) PARTITION BY RANGE (a); "
             "CREATE TABLE c PARTITION OF p FOR VALUES FROM (MINVALUE) TO (10)",
             // libpg_query's own enum order (LimitOption), an A_Const at location -1, a whole
             // CreateStmt inside another node, a long, a field PostgreSQL's header adds (owner),
             // NULL list elements.
             "SELECT * FROM t FETCH FIRST ROW ONLY; SELECT * FROM t ORDER BY a FETCH FIRST 2 ROWS WITH TIES",
             "CREATE FOREIGN TABLE f (a int NOT NULL) SERVER s OPTIONS (x 'y')",
             "FETCH ALL FROM c; MOVE FORWARD 5 IN c",
             "CREATE STATISTICS st (dependencies) ON a, b FROM t",
             "DROP OPERATOR - (NONE, int); CREATE AGGREGATE a(*) (sfunc = f, stype = int)",
             "SELECT 1 +", "SELEC 1",  // syntax errors: the same message and cursor
         }) {
        compare(sql, outcome);
    }
    for (const std::string& found : outcome.differences) UNSCOPED_INFO(found);
    for (const std::string& text : outcome.unreadable) UNSCOPED_INFO("unreadable: " << text);
    CHECK(outcome.differences.empty());
    CHECK(outcome.unreadable.empty());
    CHECK(outcome.syntax_errors == 2);
}

// pgrail reads a text as the server lexes it (standard_conforming_strings, client-only
// encodings), and an analysis is complete or a refusal at every depth (issue 12).
#include <string>

#include <catch2/catch.hpp>

#include "pgrail/sql/analyzer.hpp"

using namespace pgrail::sql;

namespace {

constexpr Lexing conforming{};
constexpr Lexing backslash_escapes{false, false};
constexpr Lexing client_only{true, true, true};
constexpr Lexing converted{true, false, true};

std::vector<std::string> tags(const Analysis& analysis) {
    std::vector<std::string> out;
    for (const Statement& statement : analysis.statements) out.push_back(statement.tag);
    return out;
}

bool refused_as_limit(const Analysis& analysis) { return analysis.error && analysis.error->limit; }

}  // namespace

TEST_CASE("a backslash before a quote is read as the server's standard_conforming_strings reads it", "[sql][lexing]") {
    // On: 'a\' is a whole literal and a CREATE TABLE follows. Off: the backslash escapes the
    // quote, and everything up to the last quote is one literal.
    const std::string text = "SELECT 'a\\'; CREATE TABLE evil (x int); --'";
    CHECK(tags(analyze(text, conforming)) == std::vector<std::string>{"SELECT", "CREATE TABLE"});
    CHECK(tags(analyze(text, backslash_escapes)) == std::vector<std::string>{"SELECT"});

    // The reverse: a DROP that only "off" sees ("on" reads an unterminated literal).
    const std::string hidden = "SELECT 'x\\', ' ; DROP TABLE profiles; SELECT ''";
    const Analysis off = analyze(hidden, backslash_escapes);
    CHECK(tags(off) == std::vector<std::string>{"SELECT", "DROP TABLE", "SELECT"});
    CHECK(analyze(hidden, conforming).error.has_value());

    // Valid only when backslashes escape: an unterminated literal with "on".
    CHECK(tags(analyze("SELECT 'it\\'s'", backslash_escapes)) == std::vector<std::string>{"SELECT"});
    CHECK(analyze("SELECT 'it\\'s'", conforming).error.has_value());

    // E'' strings and dollar quotes read alike either way.
    for (const Lexing lexing : {conforming, backslash_escapes}) {
        CHECK(tags(analyze("SELECT E'a\\'; DROP TABLE t; --'", lexing)) == std::vector<std::string>{"SELECT"});
        CHECK(tags(analyze("SELECT $$a\\$$; SELECT 2", lexing)) == std::vector<std::string>{"SELECT", "SELECT"});
    }
}

TEST_CASE("standard_conforming_strings reaches the large-stack workers and DO bodies", "[sql][lexing]") {
    // Long enough to be split with the scanner, and deep enough to be parsed on a big stack (the
    // thread's own; a worker's in sanitizer builds).
    std::string deep = "SELECT 'a\\'; DROP TABLE t; --', ";
    for (int level = 0; level < 3000; ++level) deep += "(";
    deep += "1";
    for (int level = 0; level < 3000; ++level) deep += ")";
    CHECK(tags(analyze(deep, conforming)).size() == 2);
    CHECK(tags(analyze(deep, backslash_escapes)) == std::vector<std::string>{"SELECT"});

    // In a DO body the PL/pgSQL scanner applies the session's setting too.
    const std::string block = "DO $$BEGIN PERFORM 'a\\'; DROP TABLE t; --'; END$$";
    const Analysis on = analyze(block, conforming);
    REQUIRE(on.statements.size() == 1);
    CHECK(on.statements[0].statement_class != StatementClass::procedural);  // a DROP, or a body that does not parse
    const Analysis off = analyze(block, backslash_escapes);
    REQUIRE(off.statements.size() == 1);
    CHECK(off.statements[0].statement_class == StatementClass::procedural);
}

TEST_CASE("a client-only encoding: non-ASCII text is refused, ASCII text read as always", "[sql][lexing]") {
    // SJIS 0x95 0x5C is one character; read as bytes, its second byte is a backslash.
    const std::string sjis = "SELECT E'\x95\\'; DROP TABLE t; --'";
    CHECK(refused_as_limit(analyze(sjis, client_only)));
    CHECK(analyze(sjis, client_only).statements.size() == 1);
    CHECK(tags(analyze("SELECT 'plain'; SELECT 2", client_only)) == std::vector<std::string>{"SELECT", "SELECT"});
    CHECK_FALSE(analyze("SELECT 'caf\xc3\xa9'", conforming).error.has_value());

    // The server refuses \' in escape strings under these encodings (backslash_quote =
    // safe_encoding): pgrail too.
    CHECK(analyze("SELECT E'a\\'; SELECT 2; --'", client_only).error.has_value());
    CHECK_FALSE(analyze("SELECT E'a\\\\b'", client_only).error.has_value());
    // Any conversion (LATIN1 to UTF8): non-ASCII text is refused, ASCII read as always.
    CHECK(refused_as_limit(analyze("SELECT E'\\xc3\xa0'; SHOW work_mem", converted)));
    CHECK(tags(analyze("SELECT E'\\x41'; SHOW work_mem", converted)) == std::vector<std::string>{"SELECT", "SHOW"});
    // A change of client_encoding on its way, not yet answered: the same, with its own reason.
    Lexing pending;
    pending.encoding_pending = true;
    const auto unanswered = analyze("SELECT 'caf\xc3\xa9'", pending);
    CHECK(refused_as_limit(unanswered));
    CHECK_THAT(unanswered.error->message,
               Catch::Contains("sent before a change of client_encoding is final"));
    CHECK(tags(analyze("SELECT 'plain'; SELECT 2", pending)) == std::vector<std::string>{"SELECT", "SELECT"});

    for (const char* name : {"SJIS", "sjis", "Shift_JIS", "BIG5", "GBK", "UHC", "GB18030", "JOHAB", "SHIFT_JIS_2004",
                             "WIN936"})
        CHECK(is_client_only_encoding(name));
    for (const char* name : {"UTF8", "utf-8", "LATIN1", "EUC_JP", "EUC_CN", "SQL_ASCII", "WIN1252"})
        CHECK_FALSE(is_client_only_encoding(name));
}

TEST_CASE("an analysis is complete or a refusal inside bodies and query strings", "[sql][lexing]") {
    // A PL/pgSQL expression pgrail cannot read refuses the block, not just itself.
    const Analysis unreadable = analyze("DO $$BEGIN CREATE TABLE evil (); PERFORM 1 +; END$$");
    REQUIRE(unreadable.statements.size() == 1);
    CHECK(unreadable.statements[0].statement_class == StatementClass::unknown);
    CHECK(unreadable.error.has_value());

    // A limit deep inside a nested DO refuses the whole text as a limit (54000 in the policy).
    std::string nested_deep = "DO $a$BEGIN DO $b$BEGIN CREATE TABLE evil (); PERFORM ";
    for (int level = 0; level < 17000; ++level) nested_deep += "(";
    nested_deep += "1";
    for (int level = 0; level < 17000; ++level) nested_deep += ")";
    nested_deep += "; END$b$; END$a$";
    CHECK(refused_as_limit(analyze(nested_deep)));

    // DO inside DO beyond the depth pgrail follows.
    std::string blocks = "SELECT 1";
    for (int level = 0; level < 6; ++level) {
        const std::string tag = "$t" + std::to_string(level) + "$";
        blocks = "DO " + tag + "BEGIN " + blocks + "; END" + tag;
    }
    CHECK(refused_as_limit(analyze(blocks)));

    // A query string inside a query string inside ...: followed a few levels, then refused.
    std::string query = "CREATE TABLE evil ()";
    for (int level = 0; level < 6; ++level) {
        std::string quoted;
        for (const char c : query) quoted += c == '\'' ? std::string("''") : std::string(1, c);
        query = "SELECT query_to_xml('" + quoted + "', true, true, '')";
    }
    CHECK(refused_as_limit(analyze(query)));

    // Built-ins that run a query string: the string is read as a statement of its own.
    const Analysis wrapped = analyze("SELECT query_to_xml('CREATE TABLE evil ()', true, true, '')");
    REQUIRE(wrapped.statements.size() == 1);
    CHECK(wrapped.statements[0].statement_class == StatementClass::ddl);
    REQUIRE(wrapped.statements[0].inner.size() == 1);
    CHECK(wrapped.statements[0].inner[0].tag == "CREATE TABLE");
    CHECK(analyze("SELECT ts_stat(format('SELECT %s', 1))").error.has_value());

    // tablefunc's crosstab (an extension: in any schema) runs its one or two query strings.
    const Analysis crosstab = analyze("SELECT * FROM public.crosstab('SELECT 1, 2, 3', 'DELETE FROM t') AS c(a int)");
    REQUIRE(crosstab.statements.size() == 1);
    CHECK(crosstab.statements[0].flags.runs_query_text);
    REQUIRE(crosstab.statements[0].inner.size() == 2);
    CHECK(crosstab.statements[0].inner[1].tag == "DELETE");
    CHECK(analyze("SELECT * FROM crosstab2('SELECT ' || 1)").error.has_value());

    // tablefunc's connectby and xml2's xpath_table splice their arguments, unquoted, into the SQL
    // they run (helper 66: connectby ran lo_create, set_config and dblink_exec past the policy).
    const auto inner_of = [](const char* text) {
        const Analysis analysis = analyze(text);
        REQUIRE(analysis.statements.size() == 1);
        CHECK(analysis.statements[0].flags.runs_query_text);
        return analysis.statements[0].inner;
    };
    const auto by = inner_of("SELECT * FROM connectby('app.tree', 'id', 'parent_id', '1', 0) AS c(k int, p int, l int)");
    REQUIRE(by.size() == 1);
    CHECK(by[0].tag == "SELECT");
    REQUIRE(by[0].objects.size() == 1);
    CHECK(by[0].objects[0].schema == "app");
    CHECK(by[0].objects[0].name == "tree");
    // Six arguments: the fourth is orderby_fld unless the fifth is max_depth (an integer).
    CHECK(inner_of("SELECT * FROM ext.connectby('tree', 'id', 'parent_id', 'pos', $1, 2) AS c(k int, p int, l int, "
                   "s int)")
              .size() == 1);
    CHECK(inner_of("SELECT * FROM connectby('tree', 'id', 'parent_id', $1, 2, '~') AS c(k int, p int, l int, b text)")
              .size() == 1);
    for (const char* spliced : {
             "SELECT * FROM connectby('(SELECT lo_create(0)::text AS a, ''z''::text AS b) s', 'a', 'b', '1', 0) "
             "AS c(k text, p text, l int)",
             "SELECT * FROM connectby('tree', 'id /*', 'parent_id', '*/ 1', 0) AS c(k int, p int, l int)",
             "SELECT * FROM connectby('tree', 'id', 'parent_id', 'pos; DROP TABLE tree', '1', 0) AS c(k int, p int, "
             "l int, s int)",
             "SELECT * FROM connectby('tree', 'id', 'parent_id', $1, '1', 0) AS c(k int, p int, l int, s int)",
             "SELECT * FROM connectby($1, 'id', 'parent_id', '1', 0) AS c(k int, p int, l int)",
             "SELECT * FROM connectby('tree'::varchar(2), 'id', 'parent_id', '1', 0) AS c(k int, p int, l int)",
             "SELECT * FROM connectby('\"Tree\"', 'id', 'parent_id', '1', 0) AS c(k int, p int, l int)",
             "SELECT * FROM xpath_table('id', 'doc', 'docs', '/a', $1) AS x(id int, a text)",
         }) {
        INFO(spliced);
        CHECK(refused_as_limit(analyze(spliced)));
    }
    const auto xpath = inner_of("SELECT * FROM xpath_table('id', 'doc', 'docs', '/a', 'true; DROP TABLE docs') "
                                "AS x(id int, a text)");
    REQUIRE(xpath.size() == 2);
    CHECK(xpath[1].tag == "DROP TABLE");
}

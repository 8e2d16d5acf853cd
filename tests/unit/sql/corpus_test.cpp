// Drives tests/data/sql_corpus.txt: each case is SQL followed by one `=>` line per
// statement with its expected class, tag, objects, functions, settings and flags.
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "../../../src/sql/analyzer_internal.hpp"
#include "corpus_reader.hpp"
#include "every_corpus_text.hpp"
#include "pgrail/sql/analysis_cache.hpp"
#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/json.hpp"

using namespace pgrail::sql;
using pgrail::sql::test::Case;
using pgrail::sql::test::read_corpus;

namespace {

// The one-line summary a corpus entry states for a statement.
std::string render(const Statement& statement) {
    std::ostringstream out;
    out << to_string(statement.statement_class);
    if (!statement.tag.empty()) out << ' ' << statement.tag;
    if (!statement.objects.empty()) {
        out << " | objects:";
        const char* separator = " ";
        for (const ObjectRef& object : statement.objects) {
            out << separator << (object.schema.empty() ? "" : object.schema + ".") << object.name << " ("
                << object.kind << ", " << to_string(object.role) << ")";
            separator = "; ";
        }
    }
    if (!statement.functions.empty()) {
        out << " | functions:";
        const char* separator = " ";
        for (const std::string& function : statement.functions) {
            out << separator << function;
            separator = ", ";
        }
    }
    if (!statement.settings.empty()) {
        out << " | settings:";
        const char* separator = " ";
        for (const SettingChange& setting : statement.settings) {
            out << separator << setting.name << (setting.via_function ? " (set_config)" : "");
            separator = ", ";
        }
    }
    const std::vector<std::string> flags = flag_names(statement.flags);
    if (!flags.empty()) {
        out << " | flags:";
        const char* separator = " ";
        for (const std::string& flag : flags) {
            out << separator << flag;
            separator = ", ";
        }
    }
    if (!statement.pgrail_calls.empty()) {
        out << " | pgrail:";
        const char* call_separator = " ";
        for (const PgrailCall& call : statement.pgrail_calls) {
            out << call_separator << call.function << "(";
            const char* separator = "";
            for (const std::string& argument : call.arguments) {
                out << separator << "'" << argument << "'";
                separator = ", ";
            }
            out << ")";
            call_separator = ", ";
        }
    }
    if (!statement.inner.empty()) {
        out << " | inner:";
        const char* separator = " ";
        for (const Statement& inner : statement.inner) {
            out << separator << to_string(inner.statement_class) << ' ' << inner.tag;
            separator = ", ";
        }
    }
    if (statement.error) out << " | error: " << statement.error->message << " @" << statement.error->cursor;
    return out.str();
}

std::vector<std::string> render(const Analysis& analysis) {
    std::vector<std::string> lines;
    for (const Statement& statement : analysis.statements) lines.push_back(render(statement));
    if (lines.empty()) lines.emplace_back("(none)");
    return lines;
}

// PGRAIL_CORPUS_WRITE=<file> writes the corpus with the current results, for review.
void write_corpus(const std::vector<std::string>& raw_lines, const char* target) {
    std::ofstream out(target);
    std::size_t index = 0;
    while (index < raw_lines.size()) {
        const std::string& line = raw_lines[index];
        if (line.empty() || line.starts_with("#")) {
            out << line << '\n';
            ++index;
            continue;
        }
        std::string sql = line;
        out << line << '\n';
        ++index;
        while (index < raw_lines.size() && !raw_lines[index].empty() && !raw_lines[index].starts_with("#") &&
               !raw_lines[index].starts_with("=>")) {
            sql += "\n" + raw_lines[index];
            out << raw_lines[index] << '\n';
            ++index;
        }
        while (index < raw_lines.size() && raw_lines[index].starts_with("=>")) ++index;
        for (const std::string& rendered : render(analyze(sql))) out << "=> " << rendered << '\n';
    }
}

}  // namespace

TEST_CASE("every corpus statement is read as the corpus says", "[sql][corpus]") {
    std::vector<std::string> raw_lines;
    const std::vector<Case> cases = read_corpus(&raw_lines);
    if (const char* target = std::getenv("PGRAIL_CORPUS_WRITE")) write_corpus(raw_lines, target);
    CHECK(cases.size() >= 300);
    for (const Case& entry : cases) {
        INFO("sql_corpus.txt:" << entry.line << ": " << entry.sql);
        CHECK(render(analyze(entry.sql)) == entry.expected);
    }
}

TEST_CASE("cached and uncached analyses agree over the whole corpus", "[sql][corpus][cache]") {
    AnalysisCache cache(1 << 20);
    for (int round = 0; round < 2; ++round) {
        for (const Case& entry : read_corpus()) {
            INFO(entry.sql);
            const std::shared_ptr<const Analysis> cached = cache.analyze(entry.sql);
            REQUIRE(cached != nullptr);
            CHECK(*cached == analyze(entry.sql));
        }
    }
    CHECK(cache.hits() > 0);
    CHECK(cache.misses() > 0);
}

TEST_CASE("the whole-text fast path and the scanner split agree over the corpus", "[sql][corpus]") {
    // analyze() parses a text whole and takes statement ranges from the parse tree (trimmed of
    // comments with the scanner's tokens when the text may hold some); analyze_split() splits
    // with the scanner and parses each statement. Same results, over every corpus, and again with
    // comments before, after and between the statements.
    std::vector<std::string> texts = test::every_corpus_text();
    for (const char* extra : {"  SELECT 1 ;\n\t ; UPDATE t SET a = 1\r\n", "SELECT 1;;;SELECT 2;", " ; ;", "",
                              "SELECT U&'d\\0061t'", "SELECT U&\"d\\0061t\" FROM t", "SELECT 1; SELEC 2",
                              "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN "
                              "true THEN 1 END; END; SELECT 2",
                              "SELECT $$a;b$$; DO $$BEGIN DROP TABLE t; END$$; SELECT 'x'';y'",
                              "SELECT 1\f;\vSELECT 2", "INSERT INTO t VALUES (1, 'a'), (2, 'b') RETURNING *; COMMIT",
                              "-- only a comment", "/* only */ /* comments */ ;", "SELECT 1 -- no newline",
                              "SELECT '--', '/*' /* a ; b */; /* c */ SELECT 2 -- d ; e\n; -- f",
                              "/* a /* nested */ one */ SELECT 1 /* x */ + /* y */ 2 /* z */",
                              "SELECT 'a' -- continued\n'b'; SELECT U&'x' /* c */ UESCAPE '!'",
                              "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN /* c */ ATOMIC SELECT 1; SELECT 2; "
                              "END; SELECT 3"}) {
        texts.emplace_back(extra);
    }
    std::size_t compared = 0;
    for (const std::string& text : texts) {
        if (text.find('\0') != std::string::npos) continue;
        std::string between;
        for (const char c : text) between += c == ';' ? std::string("; -- next\n") : std::string(1, c);
        for (const std::string& variant : {text, "/* lead */ " + text + " -- tail", between}) {
            INFO(variant);
            CHECK(analyze(variant) == detail::analyze_split(variant));
            ++compared;
        }
    }
    CHECK(compared > 10000);
}

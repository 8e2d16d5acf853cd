// A differential test of statement boundaries against the server (issue 12): generated texts of
// harmless statements, mixed with every lexical construct whose end depends on the session's
// standard_conforming_strings and client_encoding (quotes, backslashes, escape strings, U&
// strings, dollar quotes, line and nested block comments, quoted identifiers, multibyte
// characters whose last byte is 0x5C), each run as one simple Query straight on PostgreSQL and
// analysed by pgrail under the same settings. The statements pgrail believes a text holds must be
// the ones the server executes (count and kind of CommandComplete), or pgrail refuses the text.
//
// Configurations: standard_conforming_strings on and off, times client_encoding UTF8, LATIN1,
// EUC_JP and the client-only SJIS, BIG5, GBK, GB18030 (set on the session before the texts;
// backslash_quote stays at its default, safe_encoding). The same fixed-seed texts for both
// settings of an encoding.
//
// The rule, per text T under one configuration:
//
//   The server (PostgreSQL reads the whole simple Query, converting, lexing and parsing it,
//   before it executes any statement of it; the first SECTION checks that) shows one of:
//     complete  every result succeeded: T holds exactly those statements, all executed.
//     stopped   k >= 0 statements ran, then statement k+1 failed while executing or analysing:
//               T was read; what follows statement k+1 is unobservable. An error after a success,
//               or carrying a CONTEXT (raised in a DO body), is one; so is an error as the first
//               result when T, sent again as a Parse message (the same conversion, lexer and
//               grammar under the same settings, no execution), reads: Parse succeeds, answers
//               "cannot insert multiple commands", or an analysis error (undefined column ...).
//     rejected  otherwise: the server could not read T (encoding conversion, lexer, grammar) and
//               ran nothing.
//   pgrail shows either a refusal (Analysis::error set) or n statements with their tags.
//
//   agree      pgrail accepted, and: complete -> n == k with the same tags in order;
//              stopped -> n > k and its first k tags are the server's.
//   both-rejected  server rejected, pgrail refused.
//   refused    pgrail refused a text the server read (complete or stopped): fail-closed,
//              acceptable, but bounded: under standard_conforming_strings = on and UTF8, fewer
//              than 5% of the texts the server ran completely.
//   DISAGREE   anything else, in four classes: the server ran statements pgrail did not see (fewer,
//              or different ones before the failure); pgrail sees more statements than the text
//              holds; as many, of other kinds; or pgrail accepts as statements a text the server
//              could not even read (its reading differs from the server's, though nothing ran).
//              Zero allowed.
//
// Tags compare by kind: PQcmdStatus without its row counts ("SELECT 3" -> "SELECT").
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "cluster.hpp"
#include "pgrail/sql/analyzer.hpp"

using namespace pgrail::test;

namespace {

constexpr int texts_per_configuration = 4000;

// Printable ASCII as itself (backslash doubled), everything else \n, \r, \t or \xNN.
std::string escaped(std::string_view bytes) {
    std::string out;
    for (const char c : bytes) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (byte >= 0x20 && byte < 0x7f) {
            out += c;
        } else {
            char hex[5];
            std::snprintf(hex, sizeof hex, "\\x%02x", byte);
            out += hex;
        }
    }
    return out;
}

// A command tag without its row counts: "SELECT 3" -> "SELECT", "INSERT 0 1" -> "INSERT".
std::string kind_of_tag(std::string tag) {
    while (true) {
        const auto space = tag.rfind(' ');
        if (space == std::string::npos) return tag;
        const std::string last = tag.substr(space + 1);
        if (last.empty() || last.find_first_not_of("0123456789") != std::string::npos) return tag;
        tag.resize(space);
    }
}

std::string joined(const std::vector<std::string>& tags) {
    std::string out = "[";
    for (std::size_t i = 0; i < tags.size(); ++i) out += (i == 0 ? "" : ", ") + tags[i];
    return out + "]";
}

// ---------------------------------------------------------------------------------------------
// Configurations and their characters

struct Encoding {
    const char* name;
    std::vector<std::string> characters;        // valid in the encoding and convertible to UTF8
    std::vector<std::string> backslash_trails;  // valid characters whose last byte is 0x5C
};

const std::vector<Encoding>& encodings() {
    static const std::vector<Encoding> all = {
        {"UTF8", {"\xc3\xa9", "\xe6\xbc\xa2", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xc2\xa0"}, {}},
        {"LATIN1", {"\xe9", "\xa9", "\xff", "\xc3", "\xa0", "\x85"}, {}},
        {"EUC_JP", {"\xb4\xc1", "\xa4\xa2", "\x8e\xb1", "\xa1\xa2"}, {}},
        // 0x95 0x5C, 0x83 0x5C, 0x94 0x5C, 0x8F 0x5C: the classic "5C problem" characters.
        {"SJIS", {"\x82\xa0", "\x8a\xbf", "\xb1", "\x83\x40"}, {"\x95\x5c", "\x83\x5c", "\x94\x5c", "\x8f\x5c"}},
        {"BIG5", {"\xa4\xa4", "\xa4\x40"}, {"\xa5\x5c", "\xb3\x5c"}},
        {"GBK", {"\xd6\xd0", "\x81\x40"}, {"\x81\x5c", "\x95\x5c"}},
        {"GB18030", {"\xd6\xd0", "\x81\x40", "\x81\x30\x81\x30"}, {"\x81\x5c", "\x95\x5c"}},
    };
    return all;
}

// ---------------------------------------------------------------------------------------------
// The generator. Only std::mt19937_64's raw output is used (its sequence is fixed by the
// standard; the distributions are not), so a seed gives the same texts everywhere.

class Generator {
public:
    Generator(std::uint64_t seed, const Encoding& encoding) : rng_(seed), encoding_(encoding) {}

    struct Text {
        std::string sql;
        bool in_transaction = false;  // creates a temporary function: run between BEGIN and ROLLBACK
    };

    Text text() {
        Text out;
        creates_function_ = false;
        with_high_ = chance(encoding_.name == std::string_view("UTF8") ? 30 : 45);
        std::string sql;
        if (chance(15)) sql += gap();
        const int statements = 1 + below(4);
        for (int i = 0; i < statements; ++i) {
            if (i > 0) sql += separator();
            sql += statement();
        }
        if (chance(40)) sql += pick({";", "; ", ";\n", " ;", ";;"});
        if (chance(10)) sql += pick({" -- end", "\n-- end ; '\n", " /* end */", "/* ' */"});
        if (chance(2)) sql = pick({"", " ", ";", " -- only a comment", "/* ; */ ;", ";;"});
        out.sql = std::move(sql);
        out.in_transaction = creates_function_;
        return out;
    }

private:
    std::uint64_t next() { return rng_(); }
    int below(int n) { return static_cast<int>(next() % static_cast<std::uint64_t>(n)); }
    bool chance(int percent) { return below(100) < percent; }
    template <std::size_t N>
    std::string pick(const char* const (&options)[N]) {
        return options[below(static_cast<int>(N))];
    }
    std::string pick(const std::vector<std::string>& options) { return options[below(static_cast<int>(options.size()))]; }

    // A multibyte (or LATIN1 high) character; under the client-only encodings mostly one whose
    // trail byte is 0x5C.
    std::string high() {
        if (!encoding_.backslash_trails.empty() && chance(70)) return pick(encoding_.backslash_trails);
        return pick(encoding_.characters);
    }
    std::string maybe_high() { return with_high_ && chance(30) ? high() : std::string("a"); }

    // Whitespace between tokens: mostly a space, sometimes comments (nested too) or odd spaces.
    std::string gap() {
        if (chance(75)) return " ";
        switch (below(15)) {
            case 0: return "\n";
            case 1: return "\t";
            case 2: return " /* c */ ";
            case 3: return " -- c\n";
            case 4: return "/**/";
            case 5: return " /* /* nested ; */ ' */ ";
            case 6: return " -- ' ; \" $$ /*\n";
            case 7: return "\r\n";
            case 8: return "\f";
            case 9: return " /* -- ; */ ";
            case 10: return " --" + maybe_high() + "\n";
            case 11: return " /*" + maybe_high() + "'*/ ";
            case 12: return " /* $$ */ ";
            case 13: return chance(50) ? " -- c\r" : "\v";  // \v is no space to PostgreSQL 15
            default: return " /*/**/*/ ";
        }
    }

    std::string separator() {
        switch (below(9)) {
            case 0: return ";";
            case 1: return "; ";
            case 2: return ";\n";
            case 3: return " ; ";
            case 4: return ";;";
            case 5: return "; -- c ; '\n";
            case 6: return "/* ; */;";
            case 7: return ";" + gap();
            default: return gap() + ";" + gap();
        }
    }

    // Content of a standard '...' literal (a backslash is an escape there only when
    // standard_conforming_strings is off).
    std::string plain_content() {
        std::string out;
        const int atoms = below(6);
        for (int i = 0; i < atoms; ++i) {
            switch (below(20)) {
                case 0: out += "a"; break;
                case 1: out += "b c"; break;
                case 2: out += ";"; break;
                case 3: out += "; SELECT 2; "; break;
                case 4: out += "--"; break;
                case 5: out += "/*"; break;
                case 6: out += "*/"; break;
                case 7: out += "\""; break;
                case 8: out += "$$"; break;
                case 9: out += "''"; break;
                case 10: out += "\\"; break;
                case 11: out += "\\\\"; break;
                case 12: out += "\\n"; break;
                case 13: out += "\\x41"; break;
                case 14: out += with_high_ ? high() : "z"; break;
                case 15: out += with_high_ ? high() : "\\t"; break;
                case 16: out += chance(30) ? "\\'" : "y"; break;
                case 17: out += "\n"; break;
                case 18: out += "$a$"; break;
                default: out += "x"; break;
            }
        }
        return out;
    }

    // Content of an E'...' literal.
    std::string escape_content() {
        std::string out;
        const int atoms = below(6);
        for (int i = 0; i < atoms; ++i) {
            switch (below(22)) {
                case 0: out += "a"; break;
                case 1: out += ";"; break;
                case 2: out += "\\'"; break;
                case 3: out += "\\\\"; break;
                case 4: out += "''"; break;
                case 5: out += "\\n"; break;
                case 6: out += "\\x41"; break;
                case 7: out += "\\101"; break;
                case 8: out += "\\u00e9"; break;
                case 9: out += "\\U0001F600"; break;
                case 10: out += "\\xc3\\xa9"; break;
                case 11: out += "--"; break;
                case 12: out += "/*"; break;
                case 13: out += "\""; break;
                case 14: out += "$$"; break;
                case 15: out += with_high_ ? high() : "q"; break;
                case 16: out += with_high_ ? high() : "\\b"; break;
                case 17: out += chance(20) ? "\\xc3" : "\\x7e"; break;  // a lone lead byte: invalid
                case 18: out += "\\"; break;
                case 19: out += "; SHOW work_mem; "; break;
                case 20: out += with_high_ ? "\\" + high() : "\\z"; break;
                default: out += "\\t"; break;
            }
        }
        return out;
    }

    std::string unicode_literal() {
        const bool uescape = chance(20);
        const std::string esc = uescape ? "!" : "\\";
        std::string out = chance(50) ? "U&'" : "u&'";
        const int atoms = below(5);
        for (int i = 0; i < atoms; ++i) {
            switch (below(10)) {
                case 0: out += "a"; break;
                case 1: out += esc + "0041"; break;
                case 2: out += esc + "+00263A"; break;
                case 3: out += esc + esc; break;
                case 4: out += "''"; break;
                case 5: out += ";"; break;
                case 6: out += "--"; break;
                case 7: out += "d" + esc + "0061t"; break;
                case 8: out += with_high_ ? high() : "b"; break;
                default: out += uescape ? "\\" : "/*"; break;
            }
        }
        out += "'";
        if (uescape) out += pick({" UESCAPE '!'", " uescape '!'", "\nUESCAPE\n'!'"});
        return out;
    }

    std::string dollar_literal() {
        const std::string tag = pick({"", "", "a", "tag", "_1", "q"});
        std::string out = "$" + tag + "$";
        const int atoms = below(6);
        for (int i = 0; i < atoms; ++i) {
            switch (below(16)) {
                case 0: out += "'"; break;
                case 1: out += "''"; break;
                case 2: out += "\\"; break;
                case 3: out += "\\'"; break;
                case 4: out += ";"; break;
                case 5: out += "'; SELECT 2; --"; break;
                case 6: out += "--"; break;
                case 7: out += "/*"; break;
                case 8: out += "*/"; break;
                case 9: out += "\""; break;
                case 10: out += "$"; break;
                case 11: out += "$b$"; break;
                case 12: out += "$1"; break;
                case 13: out += with_high_ ? high() : "h"; break;
                case 14: out += "\n"; break;
                default: out += "x"; break;
            }
        }
        return out + "$" + tag + "$";
    }

    // A string literal, sometimes continued on the next line ('a'\n'b' is one literal, in the
    // escape mode of its first part; only a newline, with -- comments, may separate the parts).
    std::string string_literal() {
        std::string out;
        const int kind = below(10);
        if (kind < 4) {
            out = pick({"'", "'", "'", "N'", "n'"}) + plain_content() + "'";
        } else if (kind < 7) {
            out = pick({"E'", "e'"}) + escape_content() + "'";
        } else if (kind < 9) {
            return dollar_literal();
        } else {
            return unicode_literal();
        }
        if (chance(8)) {
            out += pick({"\n", " \n ", " -- c ; '\n", "\r\n", "\n-- x\n", " /* c */\n", "  ", "\r"});
            out += "'" + (chance(50) ? plain_content() : escape_content()) + "'";
        }
        return out;
    }

    std::string literal() {
        switch (below(12)) {
            case 0: return chance(95) ? pick({"1", "42", "1.5", ".5", "1e3", "2.5E-3", "0", "- 1"})
                                      : pick({"0x1F", "1_000", "1e", "1abc"});  // junk to PostgreSQL 15
            case 1: return pick({"B'0101'", "X'1F'", "b'1'", "x'ff'"});
            case 2: return "NULL";
            default: return string_literal();
        }
    }

    std::string identifier() {
        switch (below(13)) {
            case 0: return "x";
            case 1: return "col_1";
            case 2: return "\"a;b\"";
            case 3: return "\"a\"\"b\"";
            case 4: return "\"it's\"";
            case 5: return "\"\\\"";
            case 6: return "\"--\"";
            case 7: return "\"/*\"";
            case 8: return "\"$$\"";
            case 9: return "U&\"d\\0061t\"";
            case 10: return with_high_ ? "\"" + high() + "\"" : "\"q\"";
            case 11: return with_high_ ? "x" + high() : "y";
            default: return "a$$";  // an identifier may contain $: not a dollar quote
        }
    }

    std::string select_item() {
        std::string out = literal();
        if (chance(30)) out += gap() + "AS" + gap() + identifier();
        return out;
    }

    // Hidden-statement payloads: one literal, comment or quote ending differently under a
    // setting turns the statements after it into text (or text into statements).
    std::string trap() {
        const std::string payload = pick({"SELECT 2", "SHOW work_mem", "VALUES (3)"});
        const std::string high_char = with_high_ ? high() : std::string("a");
        switch (below(33)) {
            case 0: return "SELECT 'a\\'; " + payload + "; --'";
            case 1: return "SELECT 'a\\\\'; " + payload + "; --'";
            case 2: return "SELECT E'a\\'; " + payload + "; --'";
            case 3: return "SELECT E'a\\\\'; " + payload + "; --'";
            case 4: return "SELECT 'a\\''; " + payload + "; --'";
            case 5: return "SELECT E'a\\\\\\'; " + payload + "; --'";
            case 6: return "SELECT 'a''\\'; " + payload + "; --'";
            case 7: return "SELECT 1 /* /* */ ; " + payload + "; */";
            case 8: return "SELECT 1 /* */ ; " + payload + "; -- */";
            case 9: return "SELECT $$\\$$; " + payload + "; --$$";
            case 10: return "SELECT $a$ $$ $a$; " + payload;
            case 11: return "SELECT 1 AS a$$; " + payload + "; --$$";
            case 12: return "SELECT 1 AS \"a\\\"; " + payload + "; --\"";
            case 13: return "SELECT E'a'\n'\\'; " + payload + "; --'";
            case 14: return "SELECT 'a' -- c\n'\\'; " + payload + "; --'";
            case 15: return "SELECT N'a\\'; " + payload + "; --'";
            case 16: return "SELECT U&'a\\' UESCAPE '\\'; " + payload + "; --'";
            case 17: return "SELECT 'x" + high_char + "'; " + payload + "; --'";
            case 18: return "SELECT E'x" + high_char + "'; " + payload + "; --'";
            case 19: return "SELECT '" + high_char + "'''; " + payload + "; --'";
            case 20: return "SELECT 1 -" + std::string("- ") + high_char + "\n; " + payload;
            case 21: return "SELECT 1 /*" + high_char + "*/ ; " + payload;
            case 22: return "SELECT 1 +/* c */ 2; " + payload;
            case 23: return "SELECT 'a\\\\\\'; " + payload + "; --'";
            // A lead byte from an escape, then a raw character: valid UTF-8 to a reader of the raw
            // bytes when the character is a LATIN1 byte in 0x80-0xBF, never after conversion.
            case 24: return "SELECT E'\\xc3" + high_char + "'; " + payload;
            case 25: return "SELECT E'a' -- c\n'\\'; " + payload + "; --'";
            case 26: return "SELECT X'1F\\'; " + payload + "; --'";  // no escapes in bit strings
            case 27: return "SELECT B'1\\'; " + payload + "; --'";
            // BEGIN ATOMIC as a column and its label: not a function body.
            case 28: return "SELECT begin atomic FROM (SELECT 1 AS begin) s; " + payload + "; SELECT 3";
            case 29: {
                creates_function_ = true;
                return pick({"CREATE OR REPLACE FUNCTION pg_temp.pgrail_boundary() RETURNS void LANGUAGE sql "
                             "BEGIN ATOMIC SELECT 1 AS end; END; ",
                             "CREATE OR REPLACE FUNCTION pg_temp.pgrail_boundary() RETURNS void LANGUAGE sql "
                             "BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT ';'; END; ",
                             "CREATE OR REPLACE FUNCTION pg_temp.pgrail_boundary() RETURNS void LANGUAGE sql "
                             "BEGIN ATOMIC END; "}) +
                       payload;
            }
            case 30: return "SELECT 1 -- c\r; " + payload;  // \r ends a -- comment too
            case 31: return "SELECT '\\' -- '\n; " + payload;
            default: return "SELECT $a$\\$a$; " + payload + "; --'";
        }
    }

    std::string statement() {
        if (chance(12)) return trap();
        const std::string g = gap();
        switch (below(14)) {
            case 0: return "SELECT 1";
            case 1: return pick({"SHOW work_mem", "SHOW standard_conforming_strings", "show" + g + "client_encoding"});
            case 2: return "VALUES" + g + "(" + literal() + (chance(50) ? ", " + literal() : "") + ")";
            case 3: return "SELECT" + g + literal() + gap() + "WHERE" + gap() + literal() + " IS NOT NULL";
            case 4: return "EXPLAIN" + g + "SELECT " + literal();
            case 5: {
                // PL/pgSQL lexes the body again at execution (an error there carries a CONTEXT).
                std::string body = "BEGIN PERFORM " + literal() + "; END";
                if (body.find("$d$") != std::string::npos) body = "BEGIN PERFORM 1; END";
                return "DO" + g + "$d$" + body + "$d$";
            }
            case 6: {
                if (!chance(35)) return "SELECT " + select_item();
                creates_function_ = true;
                std::string out = "CREATE OR REPLACE FUNCTION pg_temp.pgrail_boundary() RETURNS void LANGUAGE sql" + g +
                                  "BEGIN ATOMIC";
                const int inner = below(3);
                for (int i = 0; i < inner; ++i) out += gap() + "SELECT " + select_item() + ";";
                return out + gap() + "END";
            }
            default: {
                std::string out = "SELECT" + g + select_item();
                const int more = below(3);
                for (int i = 0; i < more; ++i) out += "," + gap() + select_item();
                return out;
            }
        }
    }

    std::mt19937_64 rng_;
    const Encoding& encoding_;
    bool with_high_ = false;
    bool creates_function_ = false;
};

// ---------------------------------------------------------------------------------------------
// The server's view

struct ServerView {
    std::vector<std::string> tags;  // kinds of the statements that completed, in order
    bool failed = false;
    std::string sqlstate, message, context;
    enum class Class { complete, rejected, stopped } verdict = Class::complete;
};

void discard_notice(void*, const char*) {}

// Errors that only the analysis of a statement that did parse raises (never the lexer, the
// grammar or the encoding conversion): a single statement's Parse answers with them too.
bool analysis_error(std::string_view sqlstate) {
    for (const char* code : {"42703", "42P01", "42883", "42804", "42725", "42P18", "42702", "42846", "22P02"}) {
        if (sqlstate == code) return true;
    }
    return false;
}

// Runs `text` as one simple Query and collects what the server executed.
ServerView run_on_server(PGconn* conn, const std::string& text) {
    ServerView view;
    if (PQsendQuery(conn, text.c_str()) != 1) FAIL("PQsendQuery: " << PQerrorMessage(conn));
    while (PGresult* raw = PQgetResult(conn)) {
        const Result result(raw);
        switch (PQresultStatus(raw)) {
            case PGRES_COMMAND_OK:
            case PGRES_TUPLES_OK:
                if (view.failed) FAIL("a result after an error for " << escaped(text));
                view.tags.push_back(kind_of_tag(PQcmdStatus(raw)));
                break;
            case PGRES_EMPTY_QUERY:
                break;
            case PGRES_FATAL_ERROR: {
                view.failed = true;
                const auto field = [raw](int code) {
                    const char* value = PQresultErrorField(raw, code);
                    return std::string(value == nullptr ? "" : value);
                };
                view.sqlstate = field(PG_DIAG_SQLSTATE);
                view.message = field(PG_DIAG_MESSAGE_PRIMARY);
                view.context = field(PG_DIAG_CONTEXT);
                break;
            }
            default:
                FAIL("unexpected result " << PQresStatus(PQresultStatus(raw)) << " for " << escaped(text));
        }
    }
    if (!view.failed) {
        view.verdict = ServerView::Class::complete;
    } else if (!view.tags.empty() || !view.context.empty()) {
        view.verdict = ServerView::Class::stopped;
    } else {
        view.verdict = ServerView::Class::rejected;  // until classify_first_error says otherwise
    }
    return view;
}

// An error as the first result: did the server fail to read the text, or did it read it and
// fail executing its first statement (a value it cannot convert to the client encoding, a
// column that does not exist)? Asks the server to read the text again without executing it:
// a Parse message goes through the same conversion, lexer and grammar, with the same settings.
// It succeeds, or refuses several statements, only when the text reads; a single statement
// that reads but does not analyse answers with an analysis error. Call outside a failed
// transaction.
void classify_first_error(PGconn* conn, const std::string& text, ServerView& view) {
    if (view.verdict != ServerView::Class::rejected) return;
    const Result probe(PQprepare(conn, "", text.c_str(), 0, nullptr));
    const auto status = PQresultStatus(probe.get());
    if (status == PGRES_COMMAND_OK) {
        view.verdict = ServerView::Class::stopped;
        return;
    }
    const char* sqlstate = PQresultErrorField(probe.get(), PG_DIAG_SQLSTATE);
    const char* message = PQresultErrorField(probe.get(), PG_DIAG_MESSAGE_PRIMARY);
    const std::string_view code = sqlstate == nullptr ? "" : sqlstate;
    const std::string_view said = message == nullptr ? "" : message;
    if (said == "cannot insert multiple commands into a prepared statement" || analysis_error(code)) {
        view.verdict = ServerView::Class::stopped;
    }
}

void must_run(PGconn* conn, const std::string& sql) {
    const Result result(PQexec(conn, sql.c_str()));
    const auto status = PQresultStatus(result.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) FAIL(sql << ": " << PQerrorMessage(conn));
}

// ---------------------------------------------------------------------------------------------
// Comparison

enum class Verdict {
    agree,
    both_rejected,
    refused,
    // disagreements
    unread,   // the server could not read the text; pgrail accepted it as statements
    missing,  // the server ran statements pgrail did not see (fewer, or the server ran past them)
    extra,    // pgrail sees more statements than the server's text holds
    kinds,    // as many statements, different kinds
};
constexpr int verdict_count = 7;
const char* const verdict_names[verdict_count] = {
    "agree", "both-rejected", "refused",
    "server rejected the text, pgrail accepted it",
    "the server ran statements pgrail did not see",
    "pgrail sees statements the server's text does not hold",
    "same count, different kinds",
};

std::vector<std::string> tags_of(const pgrail::sql::Analysis& analysis) {
    std::vector<std::string> tags;
    for (const auto& statement : analysis.statements) tags.push_back(statement.tag);
    return tags;
}

Verdict compare(const ServerView& server, const pgrail::sql::Analysis& analysis) {
    if (analysis.error) {
        return server.verdict == ServerView::Class::rejected ? Verdict::both_rejected : Verdict::refused;
    }
    const std::vector<std::string> mine = tags_of(analysis);
    const std::vector<std::string>& ran = server.tags;
    switch (server.verdict) {
        case ServerView::Class::complete:
            if (mine == ran) return Verdict::agree;
            if (mine.size() < ran.size()) return Verdict::missing;
            if (mine.size() > ran.size()) return Verdict::extra;
            return Verdict::kinds;
        case ServerView::Class::stopped:
            // Statement ran.size() + 1 failed: pgrail must see it, and the ones before as they ran.
            if (mine.size() <= ran.size()) return Verdict::missing;
            return std::equal(ran.begin(), ran.end(), mine.begin()) ? Verdict::agree : Verdict::kinds;
        case ServerView::Class::rejected:
            return Verdict::unread;
    }
    return Verdict::unread;
}

std::string describe(const std::string& text, const ServerView& server, const pgrail::sql::Analysis& analysis) {
    std::ostringstream out;
    out << "      text:   \"" << escaped(text) << "\"\n      server: ";
    switch (server.verdict) {
        case ServerView::Class::complete: out << "ran " << joined(server.tags); break;
        case ServerView::Class::rejected: out << "could not read the text"; break;
        case ServerView::Class::stopped: out << "ran " << joined(server.tags) << ", then the next one failed"; break;
    }
    if (server.failed) out << " (" << server.sqlstate << " " << server.message << ")";
    out << "\n      pgrail: ";
    if (analysis.error) {
        out << "refused (" << analysis.error->message << ")";
    } else {
        out << joined(tags_of(analysis));
    }
    return out.str() + "\n";
}

// A server error without its particulars: "22P06 unsafe use of \' in a string literal",
// "42601 syntax error at or near".
std::string error_kind(const std::string& sqlstate, std::string message) {
    if (const auto quote = message.find('"'); quote != std::string::npos) message.resize(quote);
    if (message.size() > 60) message.resize(60);
    while (!message.empty() && message.back() == ' ') message.pop_back();
    return sqlstate.empty() ? message : sqlstate + " " + message;
}

struct Counts {
    int texts = 0, complete = 0, rejected = 0, stopped = 0, multi_statement = 0;
    int verdicts[verdict_count] = {};
    int refused_complete = 0;  // refusals of texts the server ran completely
    std::map<std::string, int> rejections;       // why the server could not read texts
    std::map<std::string, int> false_refusals;   // why pgrail refused texts the server ran
    std::map<std::string, std::string> false_refusal_examples;  // the first of each kind
    std::map<int, std::vector<std::string>> examples;  // per disagreement class, and refusals
    [[nodiscard]] int disagreements() const {
        return verdicts[3] + verdicts[4] + verdicts[5] + verdicts[6];
    }
};

constexpr std::size_t examples_per_class = 3;

}  // namespace

TEST_CASE("statement boundaries: pgrail reads every text as the server does, or refuses it", "[boundaries]") {
    SECTION("the server reads a whole simple Query before it runs any of it, with the settings in force when it arrives") {
        auto conn = connect(Route::direct, "agent");
        PQsetNoticeProcessor(conn.get(), discard_notice, nullptr);
        const std::string bad_second = "SELECT 1; SELEC 2";
        auto view = run_on_server(conn.get(), bad_second);
        classify_first_error(conn.get(), bad_second, view);
        CHECK(view.tags.empty());
        CHECK(view.sqlstate == "42601");
        CHECK(view.verdict == ServerView::Class::rejected);
        // A first statement that reads but fails: the probe tells it from a text that does not read.
        const std::string fails_first = "SELECT no_such_column; SELECT 2";
        view = run_on_server(conn.get(), fails_first);
        classify_first_error(conn.get(), fails_first, view);
        CHECK(view.verdict == ServerView::Class::stopped);
        const std::string fails_alone = "SELECT no_such_column";
        view = run_on_server(conn.get(), fails_alone);
        classify_first_error(conn.get(), fails_alone, view);
        CHECK(view.verdict == ServerView::Class::stopped);
        // A SET in the text does not change how the rest of the same text is lexed.
        const std::string hidden = "SELECT 'a\\'; SELECT 2; --'";
        CHECK(run_on_server(conn.get(), "SET standard_conforming_strings = off; " + hidden).tags ==
              std::vector<std::string>{"SET", "SELECT", "SELECT"});
        CHECK(run_on_server(conn.get(), hidden).tags == std::vector<std::string>{"SELECT"});
    }

    SECTION("generated texts under every standard_conforming_strings and client_encoding") {
        const auto started = std::chrono::steady_clock::now();
        const std::uint64_t seed_base = 0x70677261696c3132ULL;  // "pgrail12"
        std::ostringstream report;
        report << "\nstatement boundaries against PostgreSQL: " << texts_per_configuration
               << " texts per configuration\n"
               << "configuration             texts complete multi stopped rejected |  agree both-rej refused"
                  " (of complete) DISAGREE\n";
        int total_texts = 0;
        for (std::size_t e = 0; e < encodings().size(); ++e) {
            const Encoding& encoding = encodings()[e];
            for (const bool scs : {true, false}) {
                auto conn = connect(Route::direct, "agent");
                PQsetNoticeProcessor(conn.get(), discard_notice, nullptr);  // nonstandard \ warnings
                must_run(conn.get(), std::string("SET standard_conforming_strings = ") + (scs ? "on" : "off"));
                must_run(conn.get(), std::string("SET client_encoding = '") + encoding.name + "'");
                REQUIRE(std::string(PQparameterStatus(conn.get(), "client_encoding")) == encoding.name);
                REQUIRE(std::string(PQparameterStatus(conn.get(), "standard_conforming_strings")) ==
                        (scs ? "on" : "off"));
                // As pgrail's session sets it from ParameterStatus: the server converts the text when
                // client_encoding differs from server_encoding.
                const std::string server_encoding = PQparameterStatus(conn.get(), "server_encoding");
                const pgrail::sql::Lexing lexing{scs, pgrail::sql::is_client_only_encoding(encoding.name),
                                                 server_encoding != encoding.name};

                // The same texts under both settings of one encoding.
                Generator generator(seed_base + e, encoding);
                Counts counts;
                for (int i = 0; i < texts_per_configuration; ++i) {
                    const auto text = generator.text();
                    if (text.in_transaction) must_run(conn.get(), "BEGIN");
                    ServerView server = run_on_server(conn.get(), text.sql);
                    if (PQtransactionStatus(conn.get()) != PQTRANS_IDLE) must_run(conn.get(), "ROLLBACK");
                    classify_first_error(conn.get(), text.sql, server);
                    const auto analysis = pgrail::sql::analyze(text.sql, lexing);

                    ++counts.texts;
                    switch (server.verdict) {
                        case ServerView::Class::complete:
                            ++counts.complete;
                            if (server.tags.size() > 1) ++counts.multi_statement;
                            break;
                        case ServerView::Class::stopped: ++counts.stopped; break;
                        case ServerView::Class::rejected: ++counts.rejections[error_kind(server.sqlstate, server.message)]; ++counts.rejected; break;
                    }
                    const Verdict verdict = compare(server, analysis);
                    ++counts.verdicts[static_cast<int>(verdict)];
                    const bool false_refusal = verdict == Verdict::refused && server.verdict == ServerView::Class::complete;
                    if (false_refusal) {
                        ++counts.refused_complete;
                        const std::string kind = error_kind("", analysis.error->message);
                        if (++counts.false_refusals[kind] == 1) {
                            counts.false_refusal_examples[kind] = describe(text.sql, server, analysis);
                        }
                    }
                    if (verdict >= Verdict::unread) {
                        auto& examples = counts.examples[static_cast<int>(verdict)];
                        if (examples.size() < examples_per_class) examples.push_back(describe(text.sql, server, analysis));
                    }
                }
                total_texts += counts.texts;

                char line[200];
                std::snprintf(line, sizeof line, "%-7s scs=%-3s %-8s %5d %8d %5d %7d %8d | %6d %8d %7d (%5d) %8d\n",
                              encoding.name, scs ? "on" : "off", lexing.client_only_encoding ? "(c-only)" : "",
                              counts.texts, counts.complete, counts.multi_statement, counts.stopped, counts.rejected,
                              counts.verdicts[0], counts.verdicts[1], counts.verdicts[2], counts.refused_complete,
                              counts.disagreements());
                report << line;
                // The most frequent kinds (at least 5% of their total, four at most), with an example.
                const auto show_kinds = [&](const std::map<std::string, int>& kinds, int total, const char* what,
                                            const std::map<std::string, std::string>* examples) {
                    std::vector<std::pair<int, std::string>> sorted;
                    for (const auto& [kind, count] : kinds) sorted.emplace_back(-count, kind);
                    std::sort(sorted.begin(), sorted.end());
                    for (std::size_t k = 0; k < sorted.size() && k < 4; ++k) {
                        if (-sorted[k].first * 20 < total) break;
                        report << "    " << what << " " << -sorted[k].first << ": " << sorted[k].second << "\n";
                        if (examples != nullptr) report << examples->at(sorted[k].second);
                    }
                };
                show_kinds(counts.rejections, counts.rejected, "server could not read", nullptr);
                show_kinds(counts.false_refusals, counts.refused_complete, "pgrail refused, the server ran,",
                           &counts.false_refusal_examples);
                for (const auto& [verdict, examples] : counts.examples) {
                    report << "    DISAGREE " << counts.verdicts[verdict] << ": " << verdict_names[verdict] << ", e.g.\n";
                    for (const auto& example : examples) report << example;
                }

                INFO(encoding.name << " standard_conforming_strings=" << (scs ? "on" : "off"));
                CHECK(counts.disagreements() == 0);
                // Not vacuous: a quarter of the texts run whole, a tenth hold several statements.
                CHECK(counts.complete * 4 >= counts.texts);
                CHECK(counts.multi_statement * 10 >= counts.texts);
                if (scs && encoding.name == std::string_view("UTF8")) {
                    // pgrail must not refuse ordinary valid text.
                    CHECK(counts.refused_complete * 20 < counts.complete);
                }
            }
        }
        const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        report << total_texts << " texts in " << seconds << " s\n";
        std::cout << report.str() << std::flush;
    }
}

#include "pgrail/audit/audit_reader.hpp"

#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

using pgrail::audit::Filter;
using pgrail::audit::LineReader;
using pgrail::audit::parse_time_bound;

namespace {

struct TempDir {
    std::filesystem::path path;
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "pgrail-audit-reader-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

void write(const std::filesystem::path& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
}

void write_gzip(const std::filesystem::path& path, const std::string& text) {
    gzFile out = gzopen(path.c_str(), "wb");
    REQUIRE(out != nullptr);
    REQUIRE(gzwrite(out, text.data(), static_cast<unsigned>(text.size())) == static_cast<int>(text.size()));
    gzclose(out);
}

std::vector<std::string> lines_of(LineReader& reader, bool finish = true) {
    std::vector<std::string> lines;
    for (std::string line; reader.next(line, finish);) lines.push_back(line);
    return lines;
}

std::string record(const std::string& time, const std::string& user, const std::string& decision,
                   const std::string& statement = "DROP TABLE t") {
    return nlohmann::json{{"time", time},   {"event", "statement_refused"}, {"user", user},       {"rule", "agents"},
                          {"class", "ddl"}, {"decision", decision},         {"statement", statement}}
        .dump();
}

}  // namespace

TEST_CASE("audit lines are read from plain and gzip files alike, the last one without a newline too",
          "[audit][reader]") {
    TempDir dir;
    const std::string text = "{\"a\":1}\n{\"b\":2}\n{\"c\":3}";
    write(dir.path / "plain.jsonl", text);
    write_gzip(dir.path / "packed.jsonl.gz", text);
    for (const char* name : {"plain.jsonl", "packed.jsonl.gz"}) {
        LineReader reader(dir.path / name);
        CHECK(reader.compressed() == std::string_view(name).ends_with(".gz"));
        CHECK(lines_of(reader) == std::vector<std::string>{"{\"a\":1}", "{\"b\":2}", "{\"c\":3}"});
    }
    CHECK_THROWS_WITH(LineReader(dir.path / "missing"), Catch::Contains("cannot open") && Catch::Contains("missing"));
}

TEST_CASE("a line longer than the bound is skipped whole and counted, the next one is read", "[audit][reader]") {
    TempDir dir;
    const std::string long_line(3u << 20, 'x');  // three chunks
    write(dir.path / "a.jsonl", "first\n" + long_line + "\nlast\n");
    LineReader reader(dir.path / "a.jsonl", 1u << 20);
    CHECK(lines_of(reader) == std::vector<std::string>{"first", "last"});
    CHECK(reader.skipped_long_lines() == 1);
}

TEST_CASE("following a file: an unfinished line waits, a rotation is noticed", "[audit][reader]") {
    TempDir dir;
    const auto path = dir.path / "audit.jsonl";
    write(path, "one\ntw");
    LineReader reader(path);
    CHECK(lines_of(reader, false) == std::vector<std::string>{"one"});
    {
        std::ofstream(path, std::ios::app) << "o\nthree\n";
    }
    CHECK(lines_of(reader, false) == std::vector<std::string>{"two", "three"});
    CHECK_FALSE(reader.replaced());
    std::filesystem::rename(path, dir.path / "audit.jsonl.1");
    CHECK(reader.replaced());
    write(path, "");
    CHECK(reader.replaced());
}

TEST_CASE("a rotated set is read oldest first: the highest number, then down to the live file",
          "[audit][reader]") {
    TempDir dir;
    const auto base = dir.path / "audit.jsonl";
    for (const char* name : {"audit.jsonl", "audit.jsonl.1", "audit.jsonl.2.gz", "audit.jsonl.10.gz",
                             "audit.jsonl.old", "audit.jsonlx.1", "other.1"})
        write(dir.path / name, "");
    std::vector<std::string> names;
    for (const auto& path : pgrail::audit::rotated_set(base)) names.push_back(path.filename().string());
    CHECK(names == std::vector<std::string>{"audit.jsonl.10.gz", "audit.jsonl.2.gz", "audit.jsonl.1", "audit.jsonl"});
}

TEST_CASE("time bounds: RFC 3339 prefixes and durations before now, in the records' format", "[audit][reader]") {
    using namespace std::chrono;
    const auto now = sys_days{2026y / 12 / 4} + hours(22) + minutes(54) + seconds(7);
    CHECK(parse_time_bound("2026-12-04", now) == "2026-12-04");
    CHECK(parse_time_bound("2026-12-04T22:54", now) == "2026-12-04T22:54");
    CHECK(parse_time_bound("2026-12-04 22:54:07", now) == "2026-12-04T22:54:07");
    CHECK(parse_time_bound("2026-12-04T22:54:07.981490Z", now) == "2026-12-04T22:54:07.981490Z");
    CHECK(parse_time_bound("90s", now) == "2026-12-04T22:52:37.000000Z");
    CHECK(parse_time_bound("2h", now) == "2026-12-04T20:54:07.000000Z");
    CHECK(parse_time_bound("1d", now) == "2026-12-03T22:54:07.000000Z");
    for (const char* bad : {"", "yesterday", "2026-12-4", "2026-12-04T22", "12h30m", "h", "-5m", "2026/12/04"})
        CHECK_FALSE(parse_time_bound(bad, now));
}

TEST_CASE("filters match users, rules, decisions and a half-open time range", "[audit][reader]") {
    Filter filter;
    filter.users = {"agent"};
    filter.decisions = {"deny"};
    filter.since = "2026-12-04";
    filter.until = "2026-12-05";
    // The record views its line: each line lives as long as the check that reads it.
    const auto matches = [&](const Filter& f, const std::string& line) {
        const auto parsed = pgrail::audit::Record::parse(line);
        REQUIRE(parsed);
        return f.matches(*parsed);
    };
    CHECK(matches(filter, record("2026-12-04T00:00:00.000000Z", "agent", "deny")));
    CHECK(matches(filter, record("2026-12-04T23:59:59.999999Z", "agent", "deny")));
    CHECK_FALSE(matches(filter, record("2026-12-05T00:00:00.000000Z", "agent", "deny")));
    CHECK_FALSE(matches(filter, record("2026-12-03T23:59:59.999999Z", "agent", "deny")));
    CHECK_FALSE(matches(filter, record("2026-12-04T12:00:00.000000Z", "owner", "deny")));
    CHECK_FALSE(matches(filter, record("2026-12-04T12:00:00.000000Z", "agent", "allow")));
    // The quick test on the raw line never rules out a line that matches.
    CHECK(filter.may_match(record("2026-12-04T12:00:00.000000Z", "agent", "deny")));
    CHECK_FALSE(filter.may_match(record("2026-12-04T12:00:00.000000Z", "owner", "deny")));
    Filter quoted;
    quoted.users = {"a\"b"};
    CHECK(quoted.may_match(record("2026-12-04T12:00:00.000000Z", "a\"b", "deny")));
    CHECK(matches(quoted, record("2026-12-04T12:00:00.000000Z", "a\"b", "deny")));
}

TEST_CASE("the summary counts refusals per rule and user and ranks refused statements", "[audit][reader]") {
    pgrail::audit::Summary summary;
    for (int i = 0; i < 3; ++i)
        summary.add(*pgrail::audit::Record::parse(
            record("2026-12-04T10:00:0" + std::to_string(i) + ".000000Z", "agent", "deny")));
    summary.add(*pgrail::audit::Record::parse(record("2026-12-04T09:00:00.000000Z", "bot", "deny", "DELETE FROM t")));
    summary.add(
        *pgrail::audit::Record::parse(record("2026-12-04T11:00:00.000000Z", "bot", "allow", "ALTER TABLE t ADD x int")));
    const auto out = summary.to_json(1);
    CHECK(out["records"] == 5);
    CHECK(out["first"] == "2026-12-04T09:00:00.000000Z");
    CHECK(out["last"] == "2026-12-04T11:00:00.000000Z");
    CHECK(out["refusals"] == nlohmann::json::parse(R"([{"rule":"agents","user":"agent","count":3},
                                                       {"rule":"agents","user":"bot","count":1}])"));
    CHECK(out["top_statements"] == nlohmann::json::parse(R"([{"statement":"DROP TABLE t","count":3}])"));
    std::ostringstream text;
    summary.print(text, 5);
    CHECK_THAT(text.str(), Catch::Contains("5 records") && Catch::Contains("rule agents  user agent") &&
                               Catch::Contains("DELETE FROM t"));
}

TEST_CASE("a record prints as one line of text", "[audit][reader]") {
    const std::string text =
        R"({"time":"2026-12-04T10:00:00.000000Z","event":"statement_refused","decision":"deny","rule":"agents",
            "user":"agent","database":"app","message":"pgrail: ad hoc DROP\nrefused","statement":"DROP TABLE t"})";
    auto line = pgrail::audit::format_record(*pgrail::audit::Record::parse(text));
    CHECK(line == "2026-12-04T10:00:00.000000Z  statement_refused deny  rule agents  agent@app: pgrail: ad hoc DROP "
                  "refused");
}

TEST_CASE("a name or statement a client chose cannot forge a line or rewrite the terminal", "[audit][reader]") {
    // Helper 73: a user name with a line break printed a forged second line; a carriage return
    // and ESC [2K in a statement hid the refusal on a terminal.
    nlohmann::json line = {{"time", "2026-12-04T10:00:00.000000Z"},
                           {"event", "statement_refused"},
                           {"decision", "deny"},
                           {"rule", "agents"},
                           {"user", "nobody@app: x\n2026-12-07T12:03:57.000000Z  schema_change_forwarded allow"},
                           {"database", "app"},
                           {"message", "drop table \"a\r2026 command ok \x1b[2K\""}};
    const auto text = pgrail::audit::format_record(*pgrail::audit::Record::parse(line.dump()));
    CHECK(text.find('\n') == std::string::npos);
    CHECK(text.find('\r') == std::string::npos);
    CHECK(text.find('\x1b') == std::string::npos);
    CHECK_THAT(text, Catch::Contains("\\x0d2026 command ok \\x1b[2K"));
    pgrail::audit::Summary summary;
    summary.add(*pgrail::audit::Record::parse(line.dump()));
    std::ostringstream printed;
    summary.print(printed, 5);
    CHECK(printed.str().find('\r') == std::string::npos);
    CHECK(printed.str().find("\nx\n") == std::string::npos);
    CHECK_THAT(printed.str(), Catch::Contains("user nobody@app: x 2026-12-07"));
}

TEST_CASE("the identity filter (auth.mode pgrail) matches a record's identity, never a record without one",
          "[audit][reader]") {
    const auto with_identity = [](const std::string& identity) {
        auto line = nlohmann::json::parse(record("2026-12-04T12:00:00.000000Z", "agent", "deny"));
        if (!identity.empty()) line["identity"] = identity;
        return line.dump();
    };
    const auto matches = [](const Filter& f, const std::string& line) {
        const auto parsed = pgrail::audit::Record::parse(line);
        REQUIRE(parsed);
        return f.matches(*parsed);
    };
    Filter filter;
    filter.identities = {"agent-7", "agent-9"};
    CHECK(matches(filter, with_identity("agent-7")));
    CHECK(matches(filter, with_identity("agent-9")));
    CHECK_FALSE(matches(filter, with_identity("agent-8")));
    CHECK_FALSE(matches(filter, with_identity("")));  // a line without one (the CLI runner's, older lines)
    CHECK(filter.may_match(with_identity("agent-7")));
    CHECK_FALSE(filter.may_match(with_identity("agent-8")));
    CHECK_FALSE(filter.may_match(with_identity("")));
    // The identity is printed beside the role it ran as.
    CHECK_THAT(pgrail::audit::format_record(*pgrail::audit::Record::parse(with_identity("agent-7"))),
               Catch::Contains("agent (identity agent-7): DROP TABLE t"));
    CHECK_THAT(pgrail::audit::format_record(*pgrail::audit::Record::parse(with_identity("agent"))),
               Catch::Contains("  agent: DROP TABLE t"));
}

TEST_CASE("a record reads a line's top-level members as nlohmann's parser would", "[audit][reader]") {
    const nlohmann::json source = {{"s", "plain"},
                                   {"e", "quote \" backslash \\ newline \n tab \t \x01 é \xf0\x9f\x98\x80"},
                                   {"n", 42},
                                   {"f", -1.5},
                                   {"b", true},
                                   {"z", nullptr},
                                   {"o", {{"nested", {1, "two", {{"x", "}]"}}}}}},
                                   {"a", {"[", "{", "\""}}};
    const std::string line = source.dump();
    const auto record = pgrail::audit::Record::parse(line);
    REQUIRE(record);
    CHECK(record->get("s") == "plain");
    CHECK(record->get("e") == source["e"].get<std::string>());
    CHECK(record->get("n") == "42");
    CHECK(record->get("f") == "-1.5");
    CHECK(record->get("b") == "true");
    CHECK(record->get("z") == "null");
    CHECK(record->get("o") == source["o"].dump());
    CHECK(record->get("a") == source["a"].dump());
    CHECK(record->get("missing").empty());
    CHECK_FALSE(record->has("missing"));
    // \u escapes, surrogate pairs included, as a writer other than nlohmann may send them.
    const auto escaped = pgrail::audit::Record::parse(R"({"u":"\u00e9\ud83d\ude00\u0041"})");
    REQUIRE(escaped);
    CHECK(escaped->get("u") == "\xc3\xa9\xf0\x9f\x98\x80" "A");
    for (const char* bad : {"", "[]", "{", "{\"a\"}", "{\"a\":}", "{\"a\":\"x}", "{\"a\":1,}", "{\"a\":1} x",
                            "{\"a\":\"\\q\"}", "{\"a\":{\"b\":1}", "{\"pad\":\"xx"})
        CHECK_FALSE(pgrail::audit::Record::parse(bad));
    CHECK(pgrail::audit::Record::parse("{}"));
}

namespace {

// Lines as pgrail wrote them under auth.mode pgrail (tests/integration/auth_mode_test.cpp's runs):
// identities agent-7 and agent-8 both log in as role agent; owner-1 as app_owner.
const char* const pgrail_mode_lines[] = {
    R"line({"application_name":"","arguments":[],"client_address":"127.0.0.1","command":"pgrail.sessions","database":"app","event":"command","identity":"agent-8","outcome":"ok","rows":2,"session_id":3,"time":"2026-12-05T11:18:19.994460Z","user":"agent"})line",
    R"line({"application_name":"","class":"read","client_address":"127.0.0.1","database":"app","decision":"deny","event":"statement_refused","guard":"migrations","identity":"agent-7","message":"pgrail: pgrail.sessions is not allowed for this session; ask an operator to run it","objects":[],"rule":"everyone","session_id":2,"sqlstate":"42501","statement":"SELECT * FROM pgrail.sessions()","tag":"SELECT","time":"2026-12-05T11:18:19.995918Z","user":"agent"})line",
    R"line({"application_name":"","class":"ddl","client_address":"127.0.0.1","database":"app","decision":"deny","event":"statement_refused","guard":"ddl","identity":"agent-7","message":"pgrail: ad hoc CREATE TABLE refused; propose it as a migration: SELECT * FROM pgrail.propose_migration('create_auth_mode_seven', '<your CREATE TABLE>', 'DROP TABLE auth_mode_seven')","objects":[{"kind":"table","name":"auth_mode_seven","role":"created","schema":""}],"rule":"everyone","session_id":2,"sqlstate":"42501","statement":"CREATE TABLE auth_mode_seven (id int)","tag":"CREATE TABLE","time":"2026-12-05T11:18:19.996535Z","user":"agent"})line",
    R"line({"application_name":"","class":"ddl","client_address":"127.0.0.1","database":"app","decision":"deny","event":"statement_refused","guard":"ddl","identity":"agent-8","message":"pgrail: ad hoc CREATE TABLE refused; propose it as a migration: SELECT * FROM pgrail.propose_migration('create_auth_mode_eight', '<your CREATE TABLE>', 'DROP TABLE auth_mode_eight')","objects":[{"kind":"table","name":"auth_mode_eight","role":"created","schema":""}],"rule":"eights","session_id":3,"sqlstate":"42501","statement":"CREATE TABLE auth_mode_eight (id int)","tag":"CREATE TABLE","time":"2026-12-05T11:18:19.996885Z","user":"agent"})line",
    R"line({"checksum":"903079663a71830a5a4c487b899f5cbed9b293f17c3960192c073efd3c9805d4","duration_ms":14,"event":"applied","identity":"agent-7","name":"create_actor_t","outcome":"ok","time":"2026-12-05T11:18:23.733118Z","type":"migration","user":"agent","version":"1"})line",
    R"line({"application_name":"","client_address":"127.0.0.1","database":"auth_actor_157132773","decision":"allow","event":"schema_change_forwarded","identity":"owner-1","rule":"owners","session_id":4,"statements":[{"class":"ddl","objects":[{"kind":"table","name":"auth_actor_t","role":"created","schema":""}],"statement":"CREATE TABLE auth_actor_t (id int)","tag":"CREATE TABLE"}],"time":"2026-12-05T11:18:24.848864Z","user":"app_owner"})line",
};

pgrail::audit::Summary summary_of(const std::vector<std::string>& lines) {
    pgrail::audit::Summary summary;
    for (const auto& line : lines) {
        const auto parsed = pgrail::audit::Record::parse(line);
        REQUIRE(parsed);
        summary.add(*parsed);
    }
    return summary;
}

}  // namespace

TEST_CASE("the summary counts per identity when identities share a role (auth.mode pgrail)", "[audit][reader]") {
    const auto summary = summary_of({std::begin(pgrail_mode_lines), std::end(pgrail_mode_lines)});
    const auto out = summary.to_json(10);
    CHECK(out["records"] == 6);
    // Refusals of one rule and role stay apart per identity.
    CHECK(out["refusals"] == nlohmann::json::parse(R"([
        {"rule":"everyone","user":"agent","identity":"agent-7","count":2},
        {"rule":"eights","user":"agent","identity":"agent-8","count":1}])"));
    // Each identity's records by event: its refusals, commands and schema changes.
    CHECK(out["identities"] == nlohmann::json::parse(R"([
        {"identity":"agent-7","roles":["agent"],"records":3,"refusals":2,
         "events":{"applied":1,"statement_refused":2}},
        {"identity":"agent-8","roles":["agent"],"records":2,"refusals":1,
         "events":{"command":1,"statement_refused":1}},
        {"identity":"owner-1","roles":["app_owner"],"records":1,"refusals":0,
         "events":{"schema_change_forwarded":1}}])"));

    std::ostringstream text;
    summary.print(text, 10);
    CHECK_THAT(text.str(), Catch::EndsWith("\nrefusals by rule and user\n"
                                           "           2  rule everyone  user agent (identity agent-7)\n"
                                           "           1  rule eights  user agent (identity agent-8)\n"
                                           "\ntop 10 refused statements (literals redacted)\n"
                                           "           1  CREATE TABLE auth_mode_eight (id int)\n"
                                           "           1  CREATE TABLE auth_mode_seven (id int)\n"
                                           "           1  SELECT * FROM pgrail.sessions()\n"
                                           "\nrecords by identity and event (auth.mode pgrail: who logged in, the "
                                           "role it ran as)\n"
                                           "           3  identity agent-7  role agent  refusals 2\n"
                                           "           2    statement_refused\n"
                                           "           1    applied\n"
                                           "           2  identity agent-8  role agent  refusals 1\n"
                                           "           1    command\n"
                                           "           1    statement_refused\n"
                                           "           1  identity owner-1  role app_owner  refusals 0\n"
                                           "           1    schema_change_forwarded\n"));
}

TEST_CASE("the summary of lines whose identity is their user (passthrough mode) reads as it did before identities",
          "[audit][reader]") {
    // The same lines as pgrail writes them in passthrough mode (identity = user), and older lines
    // without an identity: no identity in the refusals, no per-identity table.
    std::vector<std::string> lines;
    for (const char* line : pgrail_mode_lines) {
        auto json = nlohmann::json::parse(line);
        json["identity"] = json["user"];
        lines.push_back(json.dump());
    }
    lines.push_back(record("2026-12-04T10:00:00.000000Z", "bot", "deny", "DELETE FROM t"));
    const auto summary = summary_of(lines);
    const auto out = summary.to_json(2);
    CHECK_FALSE(out.contains("identities"));
    CHECK(out["refusals"] == nlohmann::json::parse(R"([{"rule":"everyone","user":"agent","count":2},
                                                       {"rule":"agents","user":"bot","count":1},
                                                       {"rule":"eights","user":"agent","count":1}])"));
    std::ostringstream text;
    summary.print(text, 2);
    CHECK(text.str() == "7 records, 2026-12-04T10:00:00.000000Z .. 2026-12-05T11:18:24.848864Z\n"
                        "\nevents\n"
                        "           4  statement_refused\n"
                        "           1  applied\n"
                        "           1  command\n"
                        "           1  schema_change_forwarded\n"
                        "\nrefusals by rule and user\n"
                        "           2  rule everyone  user agent\n"
                        "           1  rule agents  user bot\n"
                        "           1  rule eights  user agent\n"
                        "\ntop 2 refused statements (literals redacted)\n"
                        "           1  CREATE TABLE auth_mode_eight (id int)\n"
                        "           1  CREATE TABLE auth_mode_seven (id int)\n");
}

TEST_CASE("the summary keeps at most 10,000 identities apart; the rest count as (other)", "[audit][reader]") {
    pgrail::audit::Summary summary;
    for (int i = 0; i <= 10000; ++i) {
        auto json = nlohmann::json::parse(record("2026-12-04T10:00:00.000000Z", "agent", "deny"));
        json["identity"] = "agent-" + std::to_string(i);
        summary.add(*pgrail::audit::Record::parse(json.dump()));
    }
    const auto out = summary.to_json(1);
    CHECK(out["identities"].size() == 10001);
    CHECK(out["refusals"].size() == 10001);
    bool other = false;
    for (const auto& entry : out["identities"])
        if (entry["identity"] == "(other)") other = entry["records"] == 1;
    CHECK(other);
}

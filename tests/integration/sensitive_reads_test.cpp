// The read-shape corpus of sensitive_columns (tests/data/sensitive/reads.txt): every shape that
// reaches a guarded column is refused (action deny) or refused or masked (action mask), every
// shape that does not is answered exactly as PostgreSQL answers it; in the simple and the extended
// protocol, with text and binary results, through a real pgrail in front of the real PostgreSQL 15.
#include <catch2/catch.hpp>

#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "cluster.hpp"
#include "pgrail/proxy/sensitive_catalog.hpp"
#include "pgrail_process.hpp"
#include "seed_database.hpp"

using namespace pgrail::test;

namespace {

constexpr const char* masked_value = "********";

// The corpus's schema (reads.txt describes it), created by app_owner.
constexpr const char* schema_sql = R"sql(
CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, name text, password_hash text, team int);
INSERT INTO users VALUES
    (1, 'ada@example.com', 'Ada', 'SECRET-ada-1', 1),
    (2, 'grace@example.com', 'Grace', 'SECRET-grace-2', 1),
    (3, 'alan@example.com', 'Alan', 'SECRET-alan-3', 2),
    (4, 'edsger@example.com', 'Edsger', NULL, 2);
CREATE TABLE admins (level int) INHERITS (users);
INSERT INTO admins VALUES (5, 'root@example.com', 'Root', 'SECRET-root-5', 1, 9);
CREATE TABLE people (pid int, name text, ssn text, city text);
INSERT INTO people VALUES (1, 'Ada', 'SECRET-ssn-1', 'London'), (2, 'Grace', 'SECRET-ssn-2', 'New York'),
    (3, 'Alan', NULL, 'Wilmslow');
CREATE TABLE events (id int, at date, ssn text) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO events VALUES (1, '2025-03-01', 'SECRET-ev-1'), (2, '2025-04-01', 'SECRET-ev-2');
CREATE TABLE orders (id int, user_id int, total numeric, note text);
INSERT INTO orders VALUES (1, 1, 10.5, 'first'), (2, 2, 20, 'second'), (3, 1, 5, NULL);
CREATE TABLE old_hashes (id int, password_hash text);
INSERT INTO old_hashes VALUES (1, 'old-1'), (2, 'old-2');
CREATE VIEW user_hashes AS SELECT id, password_hash FROM users;
CREATE VIEW user_public AS SELECT id, email, name FROM users;
CREATE VIEW user_rows AS SELECT row_to_json(u) AS j FROM users u;
CREATE VIEW user_rows_on AS SELECT j FROM user_rows;
CREATE MATERIALIZED VIEW user_hash_mv AS SELECT id, password_hash FROM users;
CREATE FUNCTION all_users() RETURNS SETOF users LANGUAGE sql STABLE AS 'SELECT * FROM users ORDER BY id';
CREATE FUNCTION user_by_id(int) RETURNS users LANGUAGE sql STABLE AS 'SELECT * FROM users WHERE id = $1';
CREATE FUNCTION user_pairs() RETURNS TABLE (id int, u users) LANGUAGE sql STABLE AS 'SELECT u.id, u FROM users u';
CREATE FUNCTION user_list() RETURNS users[] LANGUAGE sql STABLE AS 'SELECT ARRAY(SELECT u FROM users u ORDER BY id)';
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO agent;
ANALYZE users, admins, people, events, orders;
)sql";


struct Case {
    int line = 0;
    std::string expect;  // deny | mask | either | allow
    std::vector<std::string> statements;
    [[nodiscard]] bool guarded() const { return expect != "allow"; }
};

std::string trim(std::string text) {
    const auto begin = text.find_first_not_of(" \t");
    if (begin == std::string::npos) return "";
    const auto end = text.find_last_not_of(" \t\r");
    return text.substr(begin, end - begin + 1);
}

std::vector<Case> read_cases() {
    std::ifstream in(std::string(PGRAIL_TEST_DATA) + "/sensitive/reads.txt");
    REQUIRE(in);
    std::vector<Case> cases;
    int number = 0;
    for (std::string line; std::getline(in, line);) {
        ++number;
        if (trim(line).empty() || trim(line).starts_with('#')) continue;
        const auto bar = line.find('|');
        REQUIRE(bar != std::string::npos);
        Case out;
        out.line = number;
        out.expect = trim(line.substr(0, bar));
        REQUIRE((out.expect == "deny" || out.expect == "mask" || out.expect == "either" || out.expect == "allow"));
        std::string text = line.substr(bar + 1);
        for (std::size_t at; (at = text.find("<NEXT>")) != std::string::npos; text = text.substr(at + 6))
            out.statements.push_back(trim(text.substr(0, at)));
        out.statements.push_back(trim(text));
        cases.push_back(std::move(out));
    }
    return cases;
}

enum class Mode { simple, extended, binary };
constexpr Mode modes[] = {Mode::simple, Mode::extended, Mode::binary};
const char* mode_name(Mode mode) {
    return mode == Mode::simple ? "simple" : mode == Mode::extended ? "extended" : "extended, binary results";
}

struct Column {
    std::string name;
    unsigned type = 0;
    int format = 0;
    unsigned table = 0;
    int number = 0;
    bool operator==(const Column&) const = default;
};

// Everything a client sees of one result.
struct Answer {
    std::string status, sqlstate, message, detail;
    std::vector<Column> columns;
    std::vector<std::vector<std::optional<std::string>>> rows;
    std::string copy_data;
    bool operator==(const Answer&) const = default;
};

std::ostream& operator<<(std::ostream& out, const Answer& answer) {
    out << "{" << answer.status;
    if (!answer.sqlstate.empty()) out << " " << answer.sqlstate << " " << answer.message << " / " << answer.detail;
    for (const auto& column : answer.columns)
        out << " [" << column.name << ":" << column.type << ":" << column.format << " " << column.table << "."
            << column.number << "]";
    for (const auto& row : answer.rows) {
        out << " (";
        for (const auto& value : row) out << (value ? *value : "NULL") << ",";
        out << ")";
    }
    if (!answer.copy_data.empty()) out << " copy:" << answer.copy_data;
    return out << "}";
}

std::string field(const PGresult* result, int code) {
    const char* value = PQresultErrorField(result, code);
    return value != nullptr ? value : "";
}

std::vector<Answer> collect(PGconn* conn) {
    std::vector<Answer> answers;
    while (PGresult* raw = PQgetResult(conn)) {
        Result result(raw);
        Answer answer;
        answer.status = PQresStatus(PQresultStatus(raw));
        answer.sqlstate = field(raw, PG_DIAG_SQLSTATE);
        answer.message = field(raw, PG_DIAG_MESSAGE_PRIMARY);
        answer.detail = field(raw, PG_DIAG_MESSAGE_DETAIL);
        if (PQresultStatus(raw) == PGRES_FATAL_ERROR && answer.sqlstate.empty())
            answer.message = PQresultErrorMessage(raw);
        for (int col = 0; col < PQnfields(raw); ++col)
            answer.columns.push_back({PQfname(raw, col) != nullptr ? PQfname(raw, col) : "", PQftype(raw, col), PQfformat(raw, col), PQftable(raw, col),
                                      PQftablecol(raw, col)});
        for (int row = 0; row < PQntuples(raw); ++row) {
            auto& values = answer.rows.emplace_back();
            for (int col = 0; col < PQnfields(raw); ++col)
                values.push_back(PQgetisnull(raw, row, col)
                                     ? std::nullopt
                                     : std::optional<std::string>(std::string(
                                           PQgetvalue(raw, row, col), static_cast<std::size_t>(PQgetlength(raw, row, col)))));
        }
        if (PQresultStatus(raw) == PGRES_COPY_OUT) {
            char* buffer = nullptr;
            for (int length; (length = PQgetCopyData(conn, &buffer, 0)) >= 0; PQfreemem(buffer))
                answer.copy_data.append(buffer, static_cast<std::size_t>(length));
        }
        answers.push_back(std::move(answer));
        if (PQstatus(conn) == CONNECTION_BAD) break;
    }
    return answers;
}

std::vector<Answer> send(PGconn* conn, const std::string& sql, Mode mode) {
    const int sent = mode == Mode::simple
                         ? PQsendQuery(conn, sql.c_str())
                         : PQsendQueryParams(conn, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr,
                                             mode == Mode::binary ? 1 : 0);
    if (sent == 0) return {Answer{"send failed", "", PQerrorMessage(conn), "", {}, {}, ""}};
    return collect(conn);
}

// A connection and the notices it received (a DO block's RAISE NOTICE is an answer too).
struct Session {
    Conn conn;
    std::vector<std::string> notices;
    explicit Session(const std::string& conninfo) : conn(PQconnectdb(conninfo.c_str())) {
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        PQsetNoticeReceiver(
            conn.get(),
            [](void* into, const PGresult* result) {
                static_cast<std::vector<std::string>*>(into)->push_back(PQresultErrorMessage(result));
            },
            &notices);
    }
};

// One case on `conninfo`: BEGIN, its statements, ROLLBACK; the statements' answers.
struct Run {
    std::vector<Answer> answers;
    std::vector<std::string> notices;
};
Run run_case(const std::string& conninfo, const Case& c, Mode mode) {
    Session session(conninfo);
    Run out;
    (void)send(session.conn.get(), "BEGIN", Mode::simple);
    for (const auto& statement : c.statements) {
        auto answers = send(session.conn.get(), statement, mode);
        out.answers.insert(out.answers.end(), answers.begin(), answers.end());
    }
    (void)send(session.conn.get(), "ROLLBACK", Mode::simple);
    out.notices = session.notices;
    return out;
}

bool contains_secret(std::string_view text) {
    // Plain, and as bytea's hex output of "SECRET-".
    return text.find("SECRET-") != std::string_view::npos || text.find("5345435245542d") != std::string_view::npos;
}

// Whether any answer (rows, COPY data, errors, notices) carries a guarded value.
bool leaks(const Run& run) {
    for (const auto& answer : run.answers) {
        if (contains_secret(answer.message) || contains_secret(answer.detail) || contains_secret(answer.copy_data))
            return true;
        for (const auto& row : answer.rows)
            for (const auto& value : row)
                if (value && contains_secret(*value)) return true;
    }
    for (const auto& notice : run.notices)
        if (contains_secret(notice)) return true;
    return false;
}

// What a refusal may name: a guarded column as `relation.column`, or a guarded relation's whole
// rows as `relation.*` (possibly schema-qualified: these are substrings of that too).
std::vector<std::string> guarded_names(const pgrail::policy::SensitiveSet& set) {
    std::vector<std::string> names;
    for (const auto& relation : set.relations) {
        names.push_back(relation.name + ".*");
        for (const auto& column : relation.columns) names.push_back(relation.name + "." + column);
    }
    return names;
}

// A refusal by pgrail's sensitive_columns: 42501 naming a guarded column.
bool refused(const Run& run, const std::vector<std::string>& names) {
    for (const auto& answer : run.answers) {
        if (answer.sqlstate != "42501") continue;
        const auto text = answer.message + "\n" + answer.detail;
        for (const auto& name : names)
            if (text.find(name) != std::string::npos) return true;
    }
    return false;
}

bool succeeded(const Run& run) {
    for (const auto& answer : run.answers)
        if (answer.status == "PGRES_FATAL_ERROR" || answer.status == "send failed") return false;
    return !run.answers.empty();
}

// The direct answers with the guarded columns' values masked (NULL may stay NULL).
bool masked_as_expected(const Run& direct, const Run& through, const pgrail::policy::SensitiveSet& set,
                        std::string& why) {
    if (direct.answers.size() != through.answers.size()) {
        why = "a different number of results";
        return false;
    }
    bool any_masked = false;
    for (std::size_t at = 0; at < direct.answers.size(); ++at) {
        const auto& expected = direct.answers[at];
        const auto& got = through.answers[at];
        if (expected.status != got.status || expected.sqlstate != got.sqlstate || expected.columns != got.columns ||
            expected.rows.size() != got.rows.size() || expected.copy_data != got.copy_data) {
            why = "result " + std::to_string(at) + " differs beyond the masked values";
            return false;
        }
        for (std::size_t row = 0; row < expected.rows.size(); ++row) {
            for (std::size_t col = 0; col < expected.columns.size(); ++col) {
                const auto& column = expected.columns[col];
                const bool guarded =
                    set.keys.contains({column.table, static_cast<std::int16_t>(column.number)});
                const auto& want = expected.rows[row][col];
                const auto& have = got.rows[row][col];
                if (!guarded) {
                    if (want != have) {
                        why = "column " + column.name + " is not guarded but its value changed";
                        return false;
                    }
                    continue;
                }
                any_masked = true;
                // Method constant: the text in text-like columns (text, varchar, bpchar), NULL in
                // the others (policy.md); a NULL may stay NULL.
                const bool text_like = column.type == 25 || column.type == 1043 || column.type == 1042;
                const std::optional<std::string> mask =
                    text_like ? std::optional<std::string>(masked_value) : std::nullopt;
                if (want ? have != mask : (have && have != mask)) {
                    why = "column " + column.name + " holds " + (have ? *have : "NULL") + ", not the mask";
                    return false;
                }
            }
        }
    }
    if (!any_masked) why = "no guarded column in the answer (a case labelled mask should have one)";
    return any_masked;
}

struct Corpus {
    SeedDatabase database{"sens_reads_"};
    std::vector<Case> cases = read_cases();
    std::string superuser, agent;  // straight to PostgreSQL
    pgrail::policy::SensitiveSet set;  // what the rule guards (tested by [sensitive_catalog])
    std::vector<std::string> names;    // what a refusal may name
    std::set<unsigned> relations;      // the schema's relations (others: a case's temporary ones)
    Corpus() {
        const auto& cluster = Cluster::get();
        superuser = "host=" + cluster.socket_dir + " port=" + std::to_string(cluster.pg_port) +
                    " user=postgres dbname=" + database.name;
        agent = database.conninfo_for("agent");
        Conn owner(PQconnectdb(database.conninfo_for("app_owner").c_str()));
        REQUIRE(PQstatus(owner.get()) == CONNECTION_OK);
        for (const auto& outcome : run(owner.get(), schema_sql)) REQUIRE(outcome.sqlstate == "");
        set = guarded_set();
        names = guarded_names(set);
        const auto oids = run(owner.get(), "SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace");
        for (const auto& row : oids.at(0).rows)
            relations.insert(static_cast<unsigned>(std::stoul(row.at(0).value())));
    }
    // A case's own temporary table has a new OID on every connection: compared as 0.
    void normalise(Run& run) const {
        for (auto& answer : run.answers)
            for (auto& column : answer.columns)
                if (column.table != 0 && !relations.contains(column.table)) column.table = 0;
    }
    [[nodiscard]] Run run_normalised(const std::string& conninfo, const Case& c, Mode mode) const {
        auto out = run_case(conninfo, c, mode);
        normalise(out);
        return out;
    }
    // A pgrail whose one rule guards users.password_hash and *.ssn with `action`.
    [[nodiscard]] std::unique_ptr<PgrailProcess> pgrail(const std::string& action) const {
        const auto dir = PgrailProcess::make_temp_dir();
        const auto policy = dir + "/sensitive_" + action + ".yaml";
        write_file(policy, "version: 1\nmode: enforce\non_parse_error: deny\n"
                           "defaults:\n  allow_classes: [read, write, transaction, session, procedural, copy]\n"
                           "rules:\n  - name: agents\n    sensitive_columns:\n      action: " +
                               action +
                               "\n" + (action == "mask" ? "      method: constant\n      value: \"********\"\n" : "") +
                               "      columns: [users.password_hash, \"*.ssn\"]\n");
        const auto& cluster = Cluster::get();
        const auto catalog = "host=" + cluster.socket_dir + " port=" + std::to_string(cluster.pg_port) +
                             " user=postgres dbname=postgres";
        return std::make_unique<PgrailProcess>("policy: " + policy + "\naudit: {file: " + dir + "/audit_" + action +
                                               ".jsonl}\ncatalog: {conninfo: \"" + catalog + "\"}\n");
    }
    [[nodiscard]] std::string through(const PgrailProcess& process) const {
        return "host=127.0.0.1 port=" + std::to_string(process.port()) + " dbname=" + database.name +
               " user=agent password=agent";
    }
    [[nodiscard]] pgrail::policy::SensitiveSet guarded_set() const {
        pgrail::policy::SensitiveColumns columns;
        columns.patterns = {{"", "users", "password_hash"}, {"", "*", "ssn"}};
        return pgrail::proxy::resolve_sensitive(
            pgrail::proxy::load_catalog(superuser, database.name, std::chrono::seconds(10)), columns);
    }
};

// A write of the guarded column, its value bound as a parameter (extended protocol) too, is
// refused (review 99: a value of the agent's stored beside the real ones reveals them, through an
// index's order or an equal mask); one that leaves the column out runs.
void check_parameter_write(const std::string& conninfo) {
    Session session(conninfo);
    const char* values[] = {"new-hash"};
    for (const char* sql : {"UPDATE users SET password_hash = $1 WHERE id = 1",
                            "UPDATE users SET password_hash = $1 WHERE id = 1 RETURNING id",
                            "INSERT INTO users VALUES (99, $1)"}) {
        INFO(sql);
        REQUIRE(PQsendQueryParams(session.conn.get(), sql, 1, nullptr, values, nullptr, nullptr, 0) == 1);
        const auto answers = collect(session.conn.get());
        REQUIRE(answers.size() == 1);
        CHECK(answers[0].sqlstate == "42501");
        CHECK_THAT(answers[0].message, Catch::Contains("may not be written"));
    }
    (void)send(session.conn.get(), "BEGIN", Mode::simple);
    REQUIRE(PQsendQueryParams(session.conn.get(), "UPDATE users SET name = $1 WHERE id = 1", 1, nullptr, values,
                              nullptr, nullptr, 0) == 1);
    const auto answers = collect(session.conn.get());
    REQUIRE(answers.size() == 1);
    CHECK(answers[0].sqlstate == "");
    (void)send(session.conn.get(), "ROLLBACK", Mode::simple);
}

std::string describe(const Case& c) {
    std::string out = "reads.txt:" + std::to_string(c.line) + " " + c.expect + " |";
    for (const auto& statement : c.statements) out += " " + statement + " ;";
    return out;
}

// Failing cases, one line each, printed at the end so the whole list is in one place.
// An unguarded case through pgrail must answer exactly as a direct connection of the agent does.
void answered_as_direct(const Corpus& corpus, const Case& c, Mode mode, const Run& got, const std::string& where,
                        std::vector<std::string>& failures) {
    const auto direct = corpus.run_normalised(corpus.agent, c, mode);
    if (got.answers == direct.answers) return;
    std::ostringstream answers;
    std::ostringstream expected;
    for (const auto& answer : got.answers) answers << " " << answer;
    for (const auto& answer : direct.answers) expected << " " << answer;
    failures.push_back(where + " answered" + answers.str() + " instead of" + expected.str());
}

void report(const std::vector<std::string>& failures, const char* what) {
    if (failures.empty()) return;
    std::ostringstream out;
    out << failures.size() << " case runs " << what << ":\n";
    for (const auto& failure : failures) out << "  " << failure << "\n";
    FAIL_CHECK(out.str());
}

}  // namespace

TEST_CASE("the read-shape corpus is sound: enough cases, each runs on PostgreSQL itself", "[sensitive_reads]") {
    Corpus corpus;
    std::size_t guarded = 0;
    std::size_t allowed = 0;
    for (const auto& c : corpus.cases) (c.guarded() ? guarded : allowed) += 1;
    CHECK(guarded >= 60);
    CHECK(allowed >= 30);
    std::vector<std::string> failures;
    for (const auto& c : corpus.cases) {
        for (const Mode mode : modes) {
            const auto direct = run_case(corpus.superuser, c, mode);
            if (!succeeded(direct)) {
                std::ostringstream out;
                out << describe(c) << " (" << mode_name(mode) << "):";
                for (const auto& answer : direct.answers) out << " " << answer;
                failures.push_back(out.str());
            }
            // The allowed cases carry no guarded value even directly: the leak check means something.
            if (!c.guarded() && leaks(direct)) failures.push_back(describe(c) + ": an allowed case shows a secret");
        }
    }
    report(failures, "failed on a direct superuser connection");
}

TEST_CASE("action deny: every read of a guarded column is refused, every other read answered as PostgreSQL does",
          "[sensitive_reads]") {
    Corpus corpus;
    const auto process = corpus.pgrail("deny");
    const auto through = corpus.through(*process);
    std::vector<std::string> failures;
    for (const auto& c : corpus.cases) {
        for (const Mode mode : modes) {
            const auto got = corpus.run_normalised(through, c, mode);
            std::ostringstream answers;
            for (const auto& answer : got.answers) answers << " " << answer;
            const auto where = describe(c) + " (" + mode_name(mode) + "):";
            if (c.guarded()) {
                if (!refused(got, corpus.names)) failures.push_back(where + " not refused:" + answers.str());
                if (leaks(got)) failures.push_back(where + " leaked a guarded value:" + answers.str());
            } else {
                answered_as_direct(corpus, c, mode, got, where, failures);
            }
        }
    }
    report(failures, "went wrong under action deny");
    check_parameter_write(through);
}

TEST_CASE("action mask: plain output columns are masked, other reads refused, other reads answered as PostgreSQL",
          "[sensitive_reads]") {
    Corpus corpus;
    REQUIRE(corpus.set.find("public", "users").size() == 1);
    const auto process = corpus.pgrail("mask");
    const auto through = corpus.through(*process);
    std::vector<std::string> failures;
    for (const auto& c : corpus.cases) {
        for (const Mode mode : modes) {
            const auto got = corpus.run_normalised(through, c, mode);
            std::ostringstream answers;
            for (const auto& answer : got.answers) answers << " " << answer;
            const auto where = describe(c) + " (" + mode_name(mode) + "):";
            if (c.guarded() && leaks(got)) failures.push_back(where + " leaked a guarded value:" + answers.str());
            if (c.expect == "deny") {
                if (!refused(got, corpus.names)) failures.push_back(where + " not refused:" + answers.str());
            } else if (c.expect == "either") {
                if (!refused(got, corpus.names) && !succeeded(got))
                    failures.push_back(where + " neither refused by sensitive_columns nor answered:" + answers.str());
            } else if (c.expect == "mask") {
                std::string why;
                if (!masked_as_expected(corpus.run_normalised(corpus.agent, c, mode), got, corpus.set, why))
                    failures.push_back(where + " " + why + ":" + answers.str());
            } else {
                answered_as_direct(corpus, c, mode, got, where, failures);
            }
        }
    }
    report(failures, "went wrong under action mask");
    check_parameter_write(through);
}

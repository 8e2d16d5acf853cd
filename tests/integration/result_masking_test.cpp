// Masking results on the wire (sensitive_columns action mask) and max_rows, against the real
// PostgreSQL 15: simple and extended protocol, text and binary results, pipelines, cursors,
// COPY, and a large result streamed through masking in bounded memory.
#include <arpa/inet.h>

#include <atomic>
#include <thread>

#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include <catch2/catch.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"

using namespace pgrail::test;

namespace {

// A database of the test's own with a table whose columns the rules guard.
struct MaskDb {
    std::string name;
    std::string dir = PgrailProcess::make_temp_dir();
    MaskDb() {
        std::random_device random;
        name = "mask_" + std::to_string(random() % 1000000000);
        auto conn = admin();
        REQUIRE(run(conn.get(), "CREATE DATABASE " + name + " OWNER app_owner").at(0).status == "PGRES_COMMAND_OK");
        auto owner = direct("app_owner");
        const auto setup = run(owner.get(),
                               "CREATE TABLE mt_users (id int PRIMARY KEY, email text, secret text, pin int8, "
                               "token uuid, blob bytea, doc jsonb, nick varchar(20), code char(4));"
                               "INSERT INTO mt_users SELECT g, 'u' || g || '@example.com', 'pw' || (g % 3), g * 1000, "
                               "md5(g::text)::uuid, decode(md5((g % 3)::text), 'hex'), jsonb_build_object('k', g), "
                               "'nick' || g, 'c' || (g % 3) FROM generate_series(1, 30) g;"
                               "INSERT INTO mt_users (id, email) VALUES (100, 'nulls@example.com');"
                               "CREATE TABLE mt_big (id int, secret text, payload text);"
                               "GRANT SELECT ON mt_users, mt_big TO agent, plainuser, migrator");
        REQUIRE(setup.back().status == "PGRES_COMMAND_OK");
        write_file(dir + "/mask.key", "0123456789abcdef-test-masking-key\n");
    }
    ~MaskDb() {
        auto conn = admin();
        (void)run(conn.get(), "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
    }
    MaskDb(const MaskDb&) = delete;
    MaskDb& operator=(const MaskDb&) = delete;

    [[nodiscard]] Conn direct(const std::string& user) const {
        Conn conn(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(Cluster::get().pg_port) + " dbname=" + name +
                               " user=" + user + " password=" + user)
                                  .c_str()));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        return conn;
    }
    [[nodiscard]] Conn through(const PgrailProcess& pgrail, const std::string& user) const {
        Conn conn(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(pgrail.port()) + " dbname=" + name +
                               " user=" + user + " password=" + user)
                                  .c_str()));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        return conn;
    }
    // pgrail with `rules` (YAML list items), the masking key, the catalog and an audit file.
    [[nodiscard]] std::unique_ptr<PgrailProcess> start(const std::string& rules, const std::string& more = "") const {
        write_file(dir + "/policy.yaml", "version: 1\nmasking: {key_file: " + dir + "/mask.key}\nrules:\n" + rules +
                                             "  - name: rest\n");
        return std::make_unique<PgrailProcess>(
            "policy: " + dir + "/policy.yaml\naudit: {file: " + dir +
            "/audit.jsonl}\ncatalog: {conninfo: \"host=127.0.0.1 port=" + std::to_string(Cluster::get().pg_port) +
            " user=app_owner password=app_owner\"}\n" + more);
    }
    [[nodiscard]] std::string audit() const { return read_file(dir + "/audit.jsonl"); }
};

const char* const masked_columns = "[mt_users.secret, mt_users.pin, mt_users.token, mt_users.blob, mt_users.doc, "
                                   "mt_users.nick, mt_users.code, mt_big.secret]";

// agent: hash; plainuser: constant; migrator: null.
std::string masking_rules() {
    return std::string("  - name: hashing\n    match: {users: [agent]}\n    sensitive_columns: {action: mask, method: "
                       "hash, columns: ") +
           masked_columns +
           "}\n  - name: constants\n    match: {users: [plainuser]}\n    sensitive_columns: {action: mask, method: "
           "constant, value: \"[hidden]\", columns: " +
           masked_columns + "}\n  - name: nulls\n    match: {users: [migrator]}\n    sensitive_columns: {action: "
                            "mask, method: null, columns: " +
           masked_columns + "}\n";
}

Outcome params(PGconn* conn, const std::string& sql, int format, const std::vector<std::string>& values = {}) {
    std::vector<const char*> pointers;
    for (const auto& value : values) pointers.push_back(value.c_str());
    Result result(PQexecParams(conn, sql.c_str(), static_cast<int>(values.size()), nullptr, pointers.data(), nullptr,
                               nullptr, format));
    return capture(result.get());
}

const std::string all_columns = "SELECT id, email, secret, pin, token, blob, doc, nick, code FROM mt_users ORDER BY id";

std::string hex(const std::string& bytes) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (const unsigned char c : bytes) {
        out.push_back(digits[c >> 4]);
        out.push_back(digits[c & 0xf]);
    }
    return out;
}

std::int64_t be64(const std::string& bytes) {
    REQUIRE(bytes.size() == 8);
    std::uint64_t bits = 0;
    for (const unsigned char c : bytes) bits = (bits << 8) | c;
    return static_cast<std::int64_t>(bits);
}

struct Notices {
    std::vector<std::pair<std::string, std::string>> seen;  // sqlstate, message
    static void receive(void* self, const PGresult* result) {
        static_cast<Notices*>(self)->seen.emplace_back(PQresultErrorField(result, PG_DIAG_SQLSTATE),
                                                       PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY));
    }
    void attach(PGconn* conn) { PQsetNoticeReceiver(conn, &Notices::receive, this); }
};

// The bound on pgrail's peak resident memory after a large result. An instrumented pgrail
// (scripts/sanitize.sh) keeps freed memory in ASan's quarantine (256 MB by default) besides its
// shadow memory: its bound only shows that the result was not held (that takes more than 1 GB).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr std::size_t hwm_bound_kib = 700 * 1024;
#else
constexpr std::size_t hwm_bound_kib = 200 * 1024;
#endif

std::size_t vm_hwm_kib(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("VmHWM:", 0) == 0) return std::stoul(line.substr(6));
    }
    return 0;
}

}  // namespace

TEST_CASE("masked columns in simple and extended protocol, text and binary, per method", "[masking]") {
    MaskDb db;
    const auto pgrail = db.start(masking_rules());
    auto direct = db.direct("agent");
    auto agent = db.through(*pgrail, "agent");

    const auto simple = run(agent.get(), all_columns).at(0);
    REQUIRE(simple.status == "PGRES_TUPLES_OK");
    REQUIRE(simple.rows.size() == 31);
    const auto plain = run(direct.get(), all_columns).at(0);
    CHECK(simple.columns == plain.columns);

    SECTION("hash: typed, equal for equal values, never the value") {
        for (std::size_t r = 0; r < 30; ++r) {
            const auto& row = simple.rows[r];
            const auto& original = plain.rows[r];
            CHECK(row[0] == original[0]);  // id and email are not masked
            CHECK(row[1] == original[1]);
            REQUIRE(row[2]);
            CHECK(row[2]->size() == 34);
            CHECK(row[2]->rfind("h:", 0) == 0);
            CHECK(row[2] != original[2]);
            CHECK_NOTHROW(std::stoll(*row[3]));
            CHECK(row[3] != original[3]);
            CHECK(row[4]->size() == 36);
            CHECK(row[4] != original[4]);
            CHECK(row[5]->size() == 66);
            CHECK(row[5]->rfind("\\x", 0) == 0);
            CHECK(row[6]->rfind("\"h:", 0) == 0);
            CHECK(row[7]->rfind("h:", 0) == 0);
            CHECK(row[8]->rfind("h:", 0) == 0);
            // Rows with equal secrets (id % 3) hash equally, others differently.
            const auto& twin = simple.rows[(r + 3) % 30];
            const auto& other = simple.rows[(r + 1) % 30];
            CHECK(row[2] == twin[2]);
            CHECK(row[5] == twin[5]);
            CHECK(row[8] == twin[8]);
            CHECK(row[2] != other[2]);
        }
        // NULL stays NULL.
        CHECK(simple.rows[30] == plain.rows[30]);
        // Three distinct secrets, three distinct hashes: counts by the column work on the client.
        std::set<std::string> distinct;
        for (std::size_t r = 0; r < 30; ++r) distinct.insert(*simple.rows[r][2]);
        CHECK(distinct.size() == 3);
    }
    SECTION("extended protocol: text equals simple, binary carries the same hashes") {
        const auto text = params(agent.get(), all_columns, 0);
        CHECK(text.rows == simple.rows);
        const auto binary = params(agent.get(), all_columns, 1);
        REQUIRE(binary.rows.size() == 31);
        for (std::size_t r = 0; r < 30; ++r) {
            const auto& b = binary.rows[r];
            const auto& t = simple.rows[r];
            CHECK(b[2] == t[2]);                                   // text hash, binary format
            CHECK(std::to_string(be64(*b[3])) == *t[3]);           // int8
            std::string uuid_hex = *t[4];
            std::erase(uuid_hex, '-');
            CHECK(hex(*b[4]) == uuid_hex);                         // uuid
            CHECK("\\x" + hex(*b[5]) == *t[5]);                    // bytea
            CHECK(b[6] == std::optional<std::string>("\1" + *t[6]));  // jsonb: version byte
        }
        // A parameterised statement, and a prepared one executed twice.
        const auto one = params(agent.get(), "SELECT secret, email FROM mt_users WHERE id = $1", 0, {"4"});
        CHECK(one.rows.at(0)[0] == simple.rows[3][2]);
        Result prepared(PQprepare(agent.get(), "p1", "SELECT id, secret FROM mt_users WHERE id = $1", 1, nullptr));
        REQUIRE(PQresultStatus(prepared.get()) == PGRES_COMMAND_OK);
        for (const char* id : {"5", "6"}) {
            const char* values[] = {id};
            const int formats[] = {0};
            Result executed(PQexecPrepared(agent.get(), "p1", 1, values, nullptr, formats, 1));
            const auto outcome = capture(executed.get());
            CHECK(outcome.rows.at(0)[1] == simple.rows[std::stoul(id) - 1][2]);
        }
        // The client's own Describe of the portal and statement still reach it.
        Result described(PQdescribePrepared(agent.get(), "p1"));
        CHECK(PQnfields(described.get()) == 2);
    }
    SECTION("unmasked columns are byte-identical to a direct connection") {
        const std::string query = "SELECT id, email, length(email) FROM mt_users ORDER BY id";
        CHECK(run(agent.get(), query) == run(direct.get(), query));
        CHECK(params(agent.get(), query, 1) == params(direct.get(), query, 1));
        CHECK(params(agent.get(), query, 0) == params(direct.get(), query, 0));
    }
    SECTION("constant and null") {
        auto constants = db.through(*pgrail, "plainuser");
        const auto c = run(constants.get(), all_columns).at(0);
        REQUIRE(c.rows.size() == 31);
        CHECK(c.rows[0][1] == plain.rows[0][1]);
        CHECK(c.rows[0][2] == std::optional<std::string>("[hidden]"));
        CHECK(c.rows[0][3] == std::nullopt);  // int8: no text form of the constant
        CHECK(c.rows[0][4] == std::nullopt);
        CHECK(c.rows[0][5] == std::nullopt);
        CHECK(c.rows[0][6] == std::optional<std::string>("\"[hidden]\""));
        CHECK(c.rows[0][7] == std::optional<std::string>("[hidden]"));
        CHECK(c.rows[0][8] == std::optional<std::string>("[hidden]"));
        const auto cb = params(constants.get(), all_columns, 1);
        CHECK(cb.rows[0][2] == std::optional<std::string>("[hidden]"));

        auto nulls = db.through(*pgrail, "migrator");
        const auto n = run(nulls.get(), all_columns).at(0);
        for (const auto& row : n.rows) {
            CHECK(row[1]);
            for (std::size_t col = 2; col < row.size(); ++col) CHECK(row[col] == std::nullopt);
        }
    }
}

TEST_CASE("masking in a pipeline with an error in the middle, and in cursors", "[masking]") {
    MaskDb db;
    const auto pgrail = db.start(masking_rules());
    auto agent = db.through(*pgrail, "agent");
    const auto reference = run(agent.get(), "SELECT id, secret FROM mt_users WHERE id <= 3 ORDER BY id").at(0);
    REQUIRE(reference.rows.size() == 3);
    REQUIRE(reference.rows[0][1]->rfind("h:", 0) == 0);

    SECTION("pipeline") {
        PGconn* conn = agent.get();
        REQUIRE(PQenterPipelineMode(conn) == 1);
        const std::string query = "SELECT id, secret FROM mt_users WHERE id <= 3 ORDER BY id";
        REQUIRE(PQsendQueryParams(conn, query.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
        REQUIRE(PQsendQueryParams(conn, "SELECT 1/0", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
        REQUIRE(PQsendQueryParams(conn, query.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
        REQUIRE(PQpipelineSync(conn) == 1);
        REQUIRE(PQsendQueryParams(conn, query.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 1) == 1);
        REQUIRE(PQsendQueryParams(conn, query.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
        REQUIRE(PQpipelineSync(conn) == 1);
        std::vector<Outcome> seen;
        int syncs = 0;
        while (syncs < 2) {
            Result result(PQgetResult(conn));
            if (!result) continue;
            if (PQresultStatus(result.get()) == PGRES_PIPELINE_SYNC) ++syncs;
            seen.push_back(capture(result.get()));
        }
        REQUIRE(PQexitPipelineMode(conn) == 1);
        REQUIRE(seen.size() == 7);
        CHECK(seen[0].rows == reference.rows);
        CHECK(seen[1].sqlstate == "22012");
        CHECK(seen[2].status == "PGRES_PIPELINE_ABORTED");
        CHECK(seen[3].status == "PGRES_PIPELINE_SYNC");
        CHECK(seen[4].rows.at(0)[1] == reference.rows[0][1]);  // binary: the same text hash
        CHECK(seen[4].columns.at(1) == "secret:25:1");
        CHECK(seen[5].rows == reference.rows);
        CHECK(seen[6].status == "PGRES_PIPELINE_SYNC");
        // The session goes on in step.
        CHECK(run(conn, "SELECT id, secret FROM mt_users WHERE id <= 3 ORDER BY id").at(0).rows == reference.rows);
    }
    SECTION("cursors: DECLARE and FETCH, binary cursors") {
        CHECK(run(agent.get(), "BEGIN").at(0).status == "PGRES_COMMAND_OK");
        const auto declared = run(agent.get(), "DECLARE c CURSOR FOR SELECT id, secret FROM mt_users ORDER BY id");
        REQUIRE(declared.at(0).status == "PGRES_COMMAND_OK");
        const auto first = run(agent.get(), "FETCH 2 FROM c").at(0);
        const auto next = run(agent.get(), "FETCH 1 FROM c").at(0);
        REQUIRE(first.rows.size() == 2);
        CHECK(first.rows[0] == reference.rows[0]);
        CHECK(first.rows[1] == reference.rows[1]);
        CHECK(next.rows.at(0) == reference.rows[2]);
        REQUIRE(run(agent.get(), "DECLARE b BINARY CURSOR FOR SELECT secret FROM mt_users ORDER BY id")
                    .at(0).status == "PGRES_COMMAND_OK");
        const auto binary = run(agent.get(), "FETCH 1 FROM b").at(0);
        CHECK(binary.columns.at(0) == "secret:25:1");
        CHECK(binary.rows.at(0)[0] == reference.rows[0][1]);
        CHECK(run(agent.get(), "COMMIT").at(0).status == "PGRES_COMMAND_OK");
    }
}

// Sorting by a masked column orders the rows by its real values. By position the column is a
// literal (ORDER BY 2): an analysis of ORDER BY 1 must never decide for it (the literal-shape
// cache is off under sensitive_columns, and such an analysis is not literal-independent).
TEST_CASE("ORDER BY the position of a masked column is refused right after ORDER BY another position",
          "[masking]") {
    MaskDb db;
    const auto pgrail = db.start(masking_rules());
    auto agent = db.through(*pgrail, "agent");
    const auto allowed = run(agent.get(), "SELECT id, secret FROM mt_users ORDER BY 1").at(0);
    REQUIRE(allowed.status == "PGRES_TUPLES_OK");
    CHECK(allowed.rows.at(0)[0] == "1");
    for (const char* sort : {"ORDER BY 2", "GROUP BY 1, 2 ORDER BY 2"}) {
        INFO(sort);
        const auto refused = run(agent.get(), std::string("SELECT id, secret FROM mt_users ") + sort).at(0);
        CHECK(refused.sqlstate == "42501");
        CHECK_THAT(refused.message, Catch::Contains("masked"));
    }
    CHECK(run(agent.get(), "SELECT id, secret FROM mt_users ORDER BY 1").at(0).status == "PGRES_TUPLES_OK");
}

TEST_CASE("a session that masks keeps its encoding: the server converts the real values before pgrail masks them",
          "[masking]") {
    // Helper 70: under client_encoding LATIN1 a masked value's character without an equivalent
    // failed its row with the character's bytes in the message (0xe2 0x82 0xac: the euro sign).
    MaskDb db;
    auto owner = db.direct("app_owner");
    REQUIRE(run(owner.get(), "INSERT INTO mt_users (id, email, secret) VALUES (200, 'e@example.com', 'pw\u20ac')")
                .at(0)
                .status == "PGRES_COMMAND_OK");
    auto direct = db.direct("agent");
    (void)run(direct.get(), "SET client_encoding TO 'LATIN1'");
    const auto leak = run(direct.get(), "SELECT id, secret FROM mt_users WHERE id = 200").at(0);
    CHECK(leak.sqlstate == "22P05");  // what PostgreSQL says straight: the value's bytes
    CHECK_THAT(leak.message, Catch::Contains("0xe2 0x82 0xac"));

    const auto pgrail = db.start(masking_rules());
    auto agent = db.through(*pgrail, "agent");
    for (const char* change : {"SET client_encoding TO 'LATIN1'", "SET NAMES 'LATIN1'",
                               "SELECT set_config('client_encoding', 'LATIN1', false)"}) {
        INFO(change);
        const auto refused = run(agent.get(), change).at(0);
        CHECK(refused.sqlstate == "42501");
        CHECK_THAT(refused.message, Catch::Contains("client_encoding may not change"));
    }
    CHECK(run(agent.get(), "SELECT secret FROM mt_users WHERE id = 200").at(0).status == "PGRES_TUPLES_OK");
    // UTF8 again, as libpq's PQsetClientEncoding spells it (Rails on every connect), and RESET: kept.
    for (const char* same : {"SET client_encoding TO 'unicode'", "SET client_encoding TO 'UTF-8'", "RESET client_encoding"})
        CHECK(run(agent.get(), same).at(0).status == "PGRES_COMMAND_OK");
    // A computed setting name may be client_encoding.
    CHECK(run(agent.get(), "SELECT set_config(lower('CLIENT_ENCODING'), 'LATIN1', false)").at(0).sqlstate == "42501");
    // A session that starts converted reads unmasked columns, never masked ones.
    Conn latin1(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(pgrail->port()) + " dbname=" + db.name +
                             " user=agent password=agent client_encoding=LATIN1")
                                .c_str()));
    REQUIRE(PQstatus(latin1.get()) == CONNECTION_OK);
    CHECK(run(latin1.get(), "SELECT email FROM mt_users WHERE id = 200").at(0).status == "PGRES_TUPLES_OK");
    const auto masked = run(latin1.get(), "SELECT id, secret FROM mt_users WHERE id = 200").at(0);
    CHECK(masked.sqlstate == "42501");
    CHECK_THAT(masked.message, Catch::Contains("does not convert"));
    CHECK(masked.message.find("0xe2") == std::string::npos);
}

// GROUP BY 1 of a masked column is refused; so must be its position inside ROLLUP, CUBE and
// GROUPING SETS, and DISTINCT, which group by the real values too: under a constant mask they
// told how many different secrets there are and how many rows share each (found by review).
TEST_CASE("grouping a masked column by a position inside ROLLUP or CUBE or GROUPING SETS or by DISTINCT is refused",
          "[masking]") {
    MaskDb db;
    const auto pgrail = db.start(masking_rules());
    auto direct = db.direct("plainuser");
    REQUIRE(scalar(direct.get(), "SELECT count(DISTINCT secret) FROM mt_users") == "3");
    for (const char* user : {"plainuser", "agent"}) {
        auto masked = db.through(*pgrail, user);
        const auto all = run(masked.get(), "SELECT secret FROM mt_users").at(0);
        REQUIRE(all.status == "PGRES_TUPLES_OK");
        REQUIRE(all.rows.size() > 3);
        for (const char* query : {"SELECT secret, count(*) FROM mt_users GROUP BY ROLLUP(1)",
                                  "SELECT secret, count(*) FROM mt_users GROUP BY GROUPING SETS ((1))",
                                  "SELECT count(*), secret FROM mt_users GROUP BY CUBE((2))",
                                  "SELECT DISTINCT secret FROM mt_users", "SELECT DISTINCT * FROM mt_users"}) {
            INFO(user << ": " << query);
            const auto refused = run(masked.get(), query).at(0);
            CHECK(refused.status == "PGRES_FATAL_ERROR");
            CHECK(refused.sqlstate == "42501");
            CHECK_THAT(refused.message, Catch::Contains("masked"));
        }
        // Grouping by other columns still passes (the masked one masked where it is a result column).
        CHECK(run(masked.get(), "SELECT id, count(*) FROM mt_users GROUP BY ROLLUP(1)").at(0).status == "PGRES_TUPLES_OK");
        CHECK(run(masked.get(), "SELECT DISTINCT ON (1) id, secret FROM mt_users").at(0).status == "PGRES_TUPLES_OK");
    }
}

TEST_CASE("max_rows truncate: rows past the limit are dropped with a notice", "[max_rows]") {
    MaskDb db;
    const auto pgrail = db.start("  - name: capped\n    match: {users: [agent]}\n    max_rows: {limit: 5, action: truncate}\n"
                                 "    sensitive_columns: {action: mask, method: hash, columns: [mt_users.secret]}\n");
    auto agent = db.through(*pgrail, "agent");
    Notices notices;
    notices.attach(agent.get());

    const auto cut = run(agent.get(), "SELECT g FROM generate_series(1, 20) g").at(0);
    CHECK(cut.rows.size() == 5);
    CHECK(cut.rows.back()[0] == std::optional<std::string>("5"));
    CHECK(cut.command == "SELECT 20");  // the server's tag
    REQUIRE(notices.seen.size() == 1);
    CHECK(notices.seen[0].first == "01000");
    CHECK(notices.seen[0].second == "pgrail: result cut at 5 rows by max_rows of rule capped");
    // At the limit: untouched, no notice.
    CHECK(run(agent.get(), "SELECT g FROM generate_series(1, 5) g").at(0).rows.size() == 5);
    CHECK(notices.seen.size() == 1);

    // Extended protocol, binary, with masking on the same result.
    const auto extended = params(agent.get(), "SELECT id, secret FROM mt_users ORDER BY id", 1);
    CHECK(extended.rows.size() == 5);
    CHECK(extended.rows[0][1]->rfind("h:", 0) == 0);
    CHECK(notices.seen.size() == 2);

    // Each statement of a Query is a result of its own.
    const auto two = run(agent.get(), "SELECT g FROM generate_series(1, 7) g; SELECT g FROM generate_series(1, 3) g");
    REQUIRE(two.size() == 2);
    CHECK(two[0].rows.size() == 5);
    CHECK(two[1].rows.size() == 3);
    CHECK(notices.seen.size() == 3);

    // COPY TO STDOUT: a CopyData a row.
    const auto copied = run(agent.get(), "COPY (SELECT g FROM generate_series(1, 50) g) TO STDOUT");
    REQUIRE(copied.at(0).status == "PGRES_COPY_OUT");
    CHECK(copied.at(0).rows.at(0)[0] == std::optional<std::string>("1\n2\n3\n4\n5\n"));
    CHECK(notices.seen.size() == 4);

    // The audit has each cut before the client saw it.
    const auto audit = db.audit();
    std::size_t lines = 0;
    for (std::size_t at = 0; (at = audit.find("\"result_truncated\"", at)) != std::string::npos; ++at) ++lines;
    CHECK(lines == 4);
    CHECK(audit.find("\"limit\":5") != std::string::npos);
}

TEST_CASE("max_rows deny: the statement is canceled and refused with 54000", "[max_rows]") {
    MaskDb db;
    const auto pgrail = db.start("  - name: strict\n    match: {users: [agent]}\n    max_rows: {limit: 5, action: deny}\n");
    auto agent = db.through(*pgrail, "agent");
    // Long enough that the cancel reaches the server while it still sends rows.
    const std::string big = "SELECT g FROM generate_series(1, 5000000) g";

    const auto refused = run(agent.get(), big).at(0);
    CHECK(refused.status == "PGRES_FATAL_ERROR");
    CHECK(refused.sqlstate == "54000");
    CHECK(refused.message == "pgrail: the result has more than 5 rows, the limit of max_rows in rule strict; fetch "
                             "fewer rows (LIMIT 5, FETCH 5 or a narrower WHERE; after ROLLBACK inside a transaction "
                             "block)");
    CHECK(run(agent.get(), "SELECT 1").at(0).rows.at(0)[0] == std::optional<std::string>("1"));

    // In a transaction block: the block fails and ROLLBACK ends it.
    CHECK(run(agent.get(), "BEGIN").at(0).status == "PGRES_COMMAND_OK");
    CHECK(run(agent.get(), big).at(0).sqlstate == "54000");
    CHECK(PQtransactionStatus(agent.get()) == PQTRANS_INERROR);
    CHECK(run(agent.get(), "ROLLBACK").at(0).command == "ROLLBACK");
    CHECK(PQtransactionStatus(agent.get()) == PQTRANS_IDLE);

    // Extended protocol.
    const auto extended = params(agent.get(), big, 1);
    CHECK(extended.sqlstate == "54000");
    CHECK(params(agent.get(), "SELECT 2", 0).rows.at(0)[0] == std::optional<std::string>("2"));
    // At the limit: untouched.
    CHECK(run(agent.get(), "SELECT g FROM generate_series(1, 5) g").at(0).rows.size() == 5);

    // A statement queued behind it in a pipeline: a cancel could hit that one, so none is sent
    // and the result is cut as under truncate.
    Notices notices;
    notices.attach(agent.get());
    PGconn* conn = agent.get();
    REQUIRE(PQenterPipelineMode(conn) == 1);
    REQUIRE(PQsendQueryParams(conn, "SELECT g FROM generate_series(1, 20000) g", 0, nullptr, nullptr, nullptr,
                              nullptr, 0) == 1);
    REQUIRE(PQsendQueryParams(conn, "SELECT 'after'", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
    REQUIRE(PQpipelineSync(conn) == 1);
    std::vector<Outcome> seen;
    while (true) {
        Result result(PQgetResult(conn));
        if (!result) continue;
        seen.push_back(capture(result.get()));
        if (PQresultStatus(result.get()) == PGRES_PIPELINE_SYNC) break;
    }
    REQUIRE(PQexitPipelineMode(conn) == 1);
    REQUIRE(seen.size() == 3);
    CHECK(seen[0].rows.size() == 5);
    CHECK(seen[0].command == "SELECT 20000");
    CHECK(seen[1].rows.at(0)[0] == std::optional<std::string>("after"));
    REQUIRE(notices.seen.size() == 1);
    CHECK(notices.seen[0].first == "01000");

    const auto audit = db.audit();
    CHECK(audit.find("\"result_refused\"") != std::string::npos);
    CHECK(audit.find("\"result_truncated\"") != std::string::npos);
}

namespace {

// A result of about `megabytes` MB through masking: every row's masked column is 1000 bytes
// and an unmasked one 1000 more. pgrail's peak resident memory stays bounded.
void stream_large_result(std::size_t megabytes) {
    MaskDb db;
    auto owner = db.direct("app_owner");
    REQUIRE(run(owner.get(), "INSERT INTO mt_big SELECT g, repeat('s', 990) || g, repeat('p', 990) || g FROM "
                             "generate_series(1, 1000) g; INSERT INTO mt_big VALUES (0, repeat('L', 20000000), 'long')")
                .back()
                .status == "PGRES_COMMAND_OK");
    const auto pgrail = db.start(masking_rules());
    auto agent = db.through(*pgrail, "agent");
    const std::size_t repeats = megabytes * 1000 * 1000 / (1000 * 2000);
    const std::string query = "SELECT b.id, b.secret, b.payload FROM mt_big b, generate_series(1, " +
                              std::to_string(repeats) + ") r WHERE b.id > 0";
    REQUIRE(PQsendQuery(agent.get(), query.c_str()) == 1);
    REQUIRE(PQsetSingleRowMode(agent.get()) == 1);
    std::size_t rows = 0;
    std::size_t bytes = 0;
    bool masked = true;
    while (PGresult* raw = PQgetResult(agent.get())) {
        Result result(raw);
        if (PQresultStatus(raw) == PGRES_SINGLE_TUPLE) {
            ++rows;
            bytes += static_cast<std::size_t>(PQgetlength(raw, 0, 2));
            masked = masked && PQgetlength(raw, 0, 1) == 34;
        } else {
            CHECK(PQresultStatus(raw) == PGRES_TUPLES_OK);
        }
    }
    CHECK(rows == repeats * 1000);
    CHECK(masked);
    CHECK(bytes > repeats * 1000 * 990);
    // One row longer than the standard buffer, masked whole.
    const auto long_row = run(agent.get(), "SELECT secret, payload FROM mt_big WHERE id = 0").at(0);
    CHECK(long_row.rows.at(0)[0]->size() == 34);
    const auto hwm = vm_hwm_kib(pgrail->pid());
    WARN("pgrail VmHWM " << hwm << " kB after a " << megabytes << " MB result");
    CHECK(hwm > 0);
    CHECK(hwm < hwm_bound_kib);
}

}  // namespace

TEST_CASE("a masked row longer than 64 MiB ends the session with FATAL 54000", "[masking]") {
    MaskDb db;
    auto owner = db.direct("app_owner");
    REQUIRE(run(owner.get(), "INSERT INTO mt_big VALUES (-1, repeat('L', 70000000), 'huge')").at(0).status ==
            "PGRES_COMMAND_OK");
    const auto pgrail = db.start(masking_rules());
    auto agent = db.through(*pgrail, "agent");
    // The same row unmasked streams through.
    auto plain = db.through(*pgrail, "app_owner");
    const auto unmasked = run(plain.get(), "SELECT id, secret FROM mt_big WHERE id = -1").at(0);
    REQUIRE(unmasked.rows.size() == 1);
    CHECK(unmasked.rows[0][1]->size() == 70000000);
    const auto ended = run(agent.get(), "SELECT id, secret FROM mt_big WHERE id = -1");
    REQUIRE_FALSE(ended.empty());
    CHECK(ended.back().status == "PGRES_FATAL_ERROR");
    // libpq reports the FATAL, then the closed connection, in one message.
    CHECK_THAT(std::string(PQerrorMessage(agent.get())),
               Catch::Contains("FATAL:  pgrail: a row of 70000017 bytes in a masked or limited result is longer "
                               "than pgrail holds in memory (67108864 bytes)"));
    CHECK(PQstatus(agent.get()) == CONNECTION_BAD);
    CHECK(vm_hwm_kib(pgrail->pid()) < hwm_bound_kib);
}

TEST_CASE("masked rows held whole take their bytes from max_buffered_size", "[masking]") {
    MaskDb db;
    auto owner = db.direct("app_owner");
    REQUIRE(run(owner.get(), "INSERT INTO mt_big VALUES (-2, 'three', repeat('M', 3000000)), "
                             "(-3, 'five', repeat('N', 6000000))")
                .at(0)
                .status == "PGRES_COMMAND_OK");
    // 10 MiB for all sessions' long messages and rows: a row held whole is at most half of it.
    const auto pgrail = db.start(masking_rules(), "max_message_size: 1048576\nmax_buffered_size: 10485760\n");
    auto agent = db.through(*pgrail, "agent");
    // 3 MB fits: masked whole, within the budget.
    const auto fits = run(agent.get(), "SELECT secret, payload FROM mt_big WHERE id = -2").at(0);
    REQUIRE(fits.rows.size() == 1);
    CHECK(fits.rows[0][0]->size() == 34);
    CHECK(fits.rows[0][1]->size() == 3000000);
    // 6 MB would take more than half the budget: the session ends, as for a row past 64 MiB.
    const auto ended = run(agent.get(), "SELECT secret, payload FROM mt_big WHERE id = -3");
    REQUIRE_FALSE(ended.empty());
    CHECK(ended.back().status == "PGRES_FATAL_ERROR");
    CHECK_THAT(std::string(PQerrorMessage(agent.get())),
               Catch::Contains("than pgrail holds in memory (5242880 bytes)"));
    // Four sessions reading 3 MB masked rows at once share the 10 MiB: each is answered in turn.
    std::vector<std::thread> readers;
    std::atomic<int> answered{0};
    for (int i = 0; i < 4; ++i)
        readers.emplace_back([&] {
            auto reader = db.through(*pgrail, "agent");
            for (int round = 0; round < 5; ++round) {
                const auto result = run(reader.get(), "SELECT secret, payload FROM mt_big WHERE id = -2");
                if (!result.empty() && result[0].rows.size() == 1 && result[0].rows[0][0]->size() == 34) ++answered;
            }
        });
    for (auto& reader : readers) reader.join();
    CHECK(answered == 20);
}

TEST_CASE("a client that does not read a masked row held whole is ended after buffered_message_timeout",
          "[masking][budget]") {
    MaskDb db;
    auto owner = db.direct("app_owner");
    REQUIRE(run(owner.get(), "INSERT INTO mt_big VALUES (-4, 'unread', repeat('U', 12000000))").at(0).status ==
            "PGRES_COMMAND_OK");
    const auto pgrail = db.start(masking_rules(), "max_message_size: 1048576\nmax_buffered_size: 67108864\nbuffered_message_timeout: 2s\n");
    // Raw, so that nothing reads: the row (12 MB, more than the sockets' buffers take) holds budget,
    // for 2 s and a second per MiB begun (about 14 s).
    RawSocket raw(pgrail->port());
    raw.send(startup_packet(0x00030000, {{"user", "plainuser"}, {"database", db.name}}));
    (void)read_message(raw);  // the server's request for a cleartext password
    raw.send(password_message("plainuser"));
    const auto login = read_until_ready(raw);
    REQUIRE(login.back().type == 'Z');
    raw.send(query_message("SELECT secret, payload FROM mt_big WHERE id = -4"));
    CHECK(eventually([&] { return pgrail->log().find("did not read a result row held whole within") !=
                                  std::string::npos; },
                     std::chrono::seconds(30)));
    // The session is over (its socket closed: the FIN waits behind the unread bytes).
    CHECK(eventually([&] { return pgrail->log().find(" end: user=plainuser") != std::string::npos; },
                     std::chrono::seconds(5)));
}


TEST_CASE("a 1 GB result streams through masking in bounded memory", "[masking][large]") {
    // About 3 s on a 2-core machine; scale it with stream_large_result's argument.
    stream_large_result(1000);
}

TEST_CASE("Syncs and Flushes among COPY data, and a COPY that fails, leave masking in step", "[masking][copy]") {
    // The server ignores Sync and Flush during COPY FROM STDIN, but answers each Sync once an error
    // has ended the copy: pgrail once counted them either way, and from then on paired answers
    // with the wrong requests (its own Describe's answer reached the client, masked columns came
    // in clear).
    MaskDb db;
    const auto pgrail = db.start(masking_rules());
    const std::string none("\0", 1);
    const auto log_in = [&](RawSocket& raw) {
        raw.send(startup_packet(0x00030000, {{"user", "plainuser"}, {"database", db.name}}));
        REQUIRE(read_message(raw).type == 'R');
        raw.send(password_message("plainuser"));
        REQUIRE(read_until_ready(raw).back().type == 'Z');
        raw.send(query_message("CREATE TEMP TABLE copied (x int)"));
        REQUIRE(read_until_ready(raw).back().type == 'Z');
    };
    const std::string select = "SELECT secret FROM mt_users WHERE id = 1";
    const std::string parse_bind = message('P', none + select + none + std::string(2, '\0')) +
                                   message('B', none + none + std::string(6, '\0'));
    // The masked read, extended (one RowDescription for its Describe) and simple.
    const auto read_masked = [&](RawSocket& raw) {
        raw.send(parse_bind + message('D', "P" + none) + message('E', none + std::string(4, '\0')) +
                 message('S', "") + query_message(select));
        // (What comes before the extended run's ParseComplete answers what was sent before it.)
        for (auto next = read_message(raw); next.type != '1'; next = read_message(raw)) REQUIRE(next.type != 'D');
        for (int run = 0; run < 2; ++run) {
            std::vector<std::string> rows;
            int descriptions = 0;
            for (auto next = read_message(raw); next.type != 'Z'; next = read_message(raw)) {
                if (next.type == 'T') ++descriptions;
                if (next.type == 'D') rows.push_back(next.body);
            }
            INFO((run == 0 ? "extended" : "simple"));
            CHECK(descriptions == 1);
            REQUIRE(rows.size() == 1);
            CHECK_THAT(rows[0], Catch::Contains("[hidden]"));
            CHECK_THAT(rows[0], !Catch::Contains("pw1"));
        }
    };
    RawSocket raw(pgrail->port());
    log_in(raw);
    read_masked(raw);

    // A simple COPY with Syncs and a Flush before and among its data: answered once, as by PostgreSQL.
    raw.send(query_message("COPY copied FROM STDIN"));
    REQUIRE(read_message(raw).type == 'G');
    raw.send(message('S', "") + message('S', "") + message('d', "1\n") + message('H', "") + message('S', "") +
             message('d', "2\n") + message('c', ""));
    const auto copied = read_until_ready(raw);
    REQUIRE(copied.size() == 2);
    CHECK_THAT(copied[0].body, Catch::Contains("COPY 2"));
    read_masked(raw);

    // An extended COPY, its Sync sent at once (as libpq does), whose first row fails: whether the
    // server read that Sync in the copy (and ignored it) or not (a COPY that fails before it reads
    // anything answers it after all) pgrail asks the server (a Sync and an empty Query of its own,
    // their answers hidden): one answer, as by PostgreSQL, and masking stays in step.
    {
        RawSocket synced(pgrail->port());
        log_in(synced);
        const auto copy_with_sync = message('P', none + "COPY copied FROM STDIN" + none + std::string(2, '\0')) +
                                    message('B', none + none + std::string(6, '\0')) +
                                    message('E', none + std::string(4, '\0')) + message('S', "");
        synced.send(copy_with_sync);
        for (auto next = read_message(synced); next.type != 'G'; next = read_message(synced))
            REQUIRE(next.type != 'E');
        synced.send(message('d', "not a number\n") + message('d', "3\n") + message('c', "") + message('S', ""));
        const auto failed = read_until_ready(synced);
        REQUIRE(failed.size() == 2);
        CHECK(error_fields(failed[0].body).at('C') == "22P02");
        read_masked(synced);
        // Syncs among the copy data, sent at once: pgrail does not pass them on (the server
        // ignores them in a copy), so the failed copy's batch ends at the Sync after CopyDone:
        // one answer (PostgreSQL answers each Sync once the copy has failed, and none when it
        // succeeds: a client cannot count on them), and masking stays in step.
        synced.send(copy_with_sync);
        for (auto next = read_message(synced); next.type != 'G'; next = read_message(synced))
            REQUIRE(next.type != 'E');
        std::string stragglers = message('d', "not a number\n");
        for (int i = 0; i < 3; ++i) stragglers += message('S', "") + message('d', "3\n");
        synced.send(stragglers + message('c', "") + message('S', ""));
        const auto failed_again = read_until_ready(synced);
        REQUIRE(failed_again.size() == 2);
        CHECK(error_fields(failed_again[0].body).at('C') == "22P02");
        read_masked(synced);
    }
    read_masked(raw);
    raw.send(query_message("SELECT count(*) FROM copied"));
    const auto counted = read_until_ready(raw);
    REQUIRE(counted.size() == 4);
    CHECK_THAT(counted[1].body, Catch::Contains("2"));

    // An extended COPY with no Sync behind its Execute: the client waits for the server's
    // CopyInResponse, sends its data, then CopyDone and Sync: one answer, as by PostgreSQL.
    raw.send(message('P', none + "COPY copied FROM STDIN" + none + std::string(2, '\0')) +
             message('B', none + none + std::string(6, '\0')) + message('E', none + std::string(4, '\0')));
    for (auto next = read_message(raw); next.type != 'G'; next = read_message(raw)) REQUIRE(next.type != 'E');
    raw.send(message('d', "4\n") + message('c', "") + message('S', ""));
    const auto unsynced = read_until_ready(raw);
    CHECK(unsynced.front().type != 'E');
    read_masked(raw);

    // Copy data sent before the server asked for it (whether it will is unknown while it owes
    // answers): the session ends, as PostgreSQL ends one that sends a Query into a copy.
    RawSocket eager(pgrail->port());
    log_in(eager);
    eager.send(message('P', none + "COPY copied FROM STDIN" + none + std::string(2, '\0')) +
               message('B', none + none + std::string(6, '\0')) + message('E', none + std::string(4, '\0')) +
               message('S', "") + message('d', "1\n") + message('c', "") + message('S', ""));
    const auto messages = split_messages(eager.read_until_close());
    REQUIRE_FALSE(messages.empty());
    REQUIRE(messages.back().type == 'E');
    CHECK(error_fields(messages.back().body).at('C') == "08P01");
}

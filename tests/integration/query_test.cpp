// Simple and extended query protocol, prepared statements and pipelining: through pgrail the
// client sees exactly what PostgreSQL gives directly.
#include <arpa/inet.h>

#include <cstring>
#include <functional>

#include <catch2/catch.hpp>

#include "cluster.hpp"

using namespace pgrail::test;

namespace {

using Scenario = std::function<std::vector<Outcome>(PGconn*)>;

// Runs the scenario on a fresh connection per route and requires identical outcomes.
void same_through_pgrail(const Scenario& scenario, std::string_view user = "agent") {
    auto direct = connect(Route::direct, user);
    auto proxied = connect(Route::pgrail, user);
    const auto expected = scenario(direct.get());
    const auto actual = scenario(proxied.get());
    REQUIRE_FALSE(expected.empty());
    CHECK(actual == expected);
}

Outcome transaction_status(PGconn* conn) {
    Outcome o;
    o.status = "transaction status " + std::to_string(static_cast<int>(PQtransactionStatus(conn)));
    return o;
}

std::string int4(std::int32_t value) {
    const auto network = htonl(static_cast<std::uint32_t>(value));
    std::string bytes(4, '\0');
    std::memcpy(bytes.data(), &network, 4);
    return bytes;
}

}  // namespace

TEST_CASE("simple queries", "[query]") {
    const char* queries[] = {
        "SELECT 1 AS one, 'x'::text AS t, NULL::int AS n, 1.5::numeric AS num, true AS b",
        "SELECT g, g * 2 AS twice, md5(g::text) FROM generate_series(1, 5000) AS g",
        "SELECT repeat('x', 8 * 1024 * 1024) AS big",                       // one 8 MB value
        "SELECT '{1,2,3}'::int[], '{\"a\": [1, null]}'::jsonb, 'é ü 漢'::text",
        "SELEC 1",                                                         // 42601
        "SELECT * FROM no_such_table",                                     // 42P01
        "SELECT 1 / 0",                                                    // 22012
        "",                                                                // EmptyQueryResponse
        "SHOW server_version_num",
        "SET application_name = 'pgrail-test'",
        "SHOW application_name",
    };
    for (const char* query : queries) {
        INFO(query);
        same_through_pgrail([&](PGconn* conn) {
            auto outcomes = run(conn, query);
            outcomes.push_back(transaction_status(conn));
            return outcomes;
        });
    }
}

TEST_CASE("multi-statement queries, transactions and errors in the middle", "[query]") {
    same_through_pgrail([](PGconn* conn) {
        std::vector<Outcome> all;
        auto add = [&](const std::string& sql) {
            for (auto& o : run(conn, sql)) all.push_back(std::move(o));
            all.push_back(transaction_status(conn));
        };
        add("CREATE TEMP TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b');"
            "UPDATE t SET v = 'c' WHERE id = 2; DELETE FROM t WHERE id = 1; SELECT * FROM t ORDER BY id");
        add("SELECT 1; SELECT 1 / 0; SELECT 2");                 // stops at the error
        add("BEGIN; INSERT INTO t VALUES (3, 'd'); SELECT x");  // leaves a failed transaction
        add("SELECT 1");                                          // 25P02
        add("COMMIT");                                            // answers ROLLBACK
        add("SELECT count(*) FROM t");
        add("BEGIN; INSERT INTO t VALUES (4, 'e'); COMMIT; SELECT count(*) FROM t");
        add(";;; SELECT 'after empty statements';");
        add("INSERT INTO t VALUES (4, 'dup')");                   // 23505
        add("DO $$ BEGIN RAISE EXCEPTION 'custom % error', 42 USING ERRCODE = 'P0001'; END $$");
        return all;
    });
}

TEST_CASE("extended protocol with text parameters", "[query][extended]") {
    same_through_pgrail([](PGconn* conn) {
        std::vector<Outcome> all;
        const char* values[] = {"41", "1", nullptr, "it's", "2024-02-29"};
        Result r(PQexecParams(conn, "SELECT $1::int + $2::int, $3::text IS NULL, $4::text, $5::date + 1",
                              5, nullptr, values, nullptr, nullptr, 0));
        all.push_back(capture(r.get()));
        const char* bad[] = {"not a number"};
        Result error(PQexecParams(conn, "SELECT $1::int", 1, nullptr, bad, nullptr, nullptr, 0));
        all.push_back(capture(error.get()));  // 22P02
        Result after(PQexecParams(conn, "SELECT $1::text || '!'", 1, nullptr, values + 3, nullptr, nullptr, 0));
        all.push_back(capture(after.get()));
        return all;
    });
}

TEST_CASE("extended protocol with binary parameters and results", "[query][extended]") {
    same_through_pgrail([](PGconn* conn) {
        const std::string number = int4(-123456);
        const std::string blob("\0\x01\xff\0binary\0", 11);
        const Oid types[] = {23, 17};  // int4, bytea
        const char* values[] = {number.data(), blob.data()};
        const int lengths[] = {4, static_cast<int>(blob.size())};
        const int formats[] = {1, 1};
        Result binary(PQexecParams(conn, "SELECT $1 + 1, $2, length($2)", 2, types, values, lengths, formats, 1));
        Result text(PQexecParams(conn, "SELECT $1 + 1, $2, length($2)", 2, types, values, lengths, formats, 0));
        // 1 MB of binary parameter bytes.
        const std::string large(1 << 20, '\x7f');
        const char* large_values[] = {large.data()};
        const int large_lengths[] = {static_cast<int>(large.size())};
        const int large_formats[] = {1};
        Result echoed(PQexecParams(conn, "SELECT md5($1), length($1)", 1, types + 1, large_values, large_lengths,
                                   large_formats, 0));
        return std::vector<Outcome>{capture(binary.get()), capture(text.get()), capture(echoed.get())};
    });
}

TEST_CASE("prepared statements", "[query][extended]") {
    same_through_pgrail([](PGconn* conn) {
        std::vector<Outcome> all;
        Result prepared(PQprepare(conn, "double_it", "SELECT $1::int * 2 AS doubled, $2::text AS label", 2, nullptr));
        all.push_back(capture(prepared.get()));
        for (int i = 0; i < 50; ++i) {
            const std::string number = std::to_string(i);
            const char* values[] = {number.c_str(), "label"};
            Result r(PQexecPrepared(conn, "double_it", 2, values, nullptr, nullptr, 0));
            all.push_back(capture(r.get()));
        }
        Result described(PQdescribePrepared(conn, "double_it"));
        Outcome description = capture(described.get());
        description.command = "nparams=" + std::to_string(PQnparams(described.get())) +
                              " type0=" + std::to_string(PQparamtype(described.get(), 0));
        all.push_back(description);
        Result duplicate(PQprepare(conn, "double_it", "SELECT 1", 0, nullptr));
        all.push_back(capture(duplicate.get()));  // 42P05
        Result broken(PQprepare(conn, "broken", "SELECT FROM WHERE", 0, nullptr));
        all.push_back(capture(broken.get()));     // 42601
        for (auto& o : run(conn, "DEALLOCATE double_it")) all.push_back(std::move(o));
        Result gone(PQexecPrepared(conn, "double_it", 0, nullptr, nullptr, nullptr, 0));
        all.push_back(capture(gone.get()));       // 26000
        for (auto& o : run(conn, "PREPARE p(int) AS SELECT $1 + 1; EXECUTE p(41)")) all.push_back(std::move(o));
        return all;
    });
}

namespace {

// Collects pipeline results until `syncs` PGRES_PIPELINE_SYNC were seen.
std::vector<Outcome> pipeline_results(PGconn* conn, int syncs) {
    std::vector<Outcome> all;
    for (int guard = 0; syncs > 0 && guard < 100000; ++guard) {
        PGresult* raw = PQgetResult(conn);
        if (raw == nullptr) {
            Outcome end;
            end.status = "end of query";
            all.push_back(end);
            continue;
        }
        Result result(raw);
        if (PQresultStatus(raw) == PGRES_PIPELINE_SYNC) --syncs;
        all.push_back(capture(raw));
    }
    return all;
}

}  // namespace

TEST_CASE("pipeline mode with an error in the middle", "[query][pipeline]") {
    same_through_pgrail([](PGconn* conn) {
        REQUIRE(PQenterPipelineMode(conn) == 1);
        auto send = [&](const char* sql) {
            REQUIRE(PQsendQueryParams(conn, sql, 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
        };
        send("CREATE TEMP TABLE p (id int)");
        send("INSERT INTO p VALUES (1)");
        send("SELECT 1 / 0");                  // fails: the rest up to Sync is aborted
        send("INSERT INTO p VALUES (2)");
        send("SELECT 'not run'");
        REQUIRE(PQpipelineSync(conn) == 1);
        send("SELECT count(*) FROM p");        // the failed segment was rolled back: no table
        REQUIRE(PQpipelineSync(conn) == 1);
        send("CREATE TEMP TABLE q (id int)");
        send("INSERT INTO q SELECT generate_series(1, 100)");
        send("SELECT sum(id) FROM q");
        REQUIRE(PQpipelineSync(conn) == 1);
        auto all = pipeline_results(conn, 3);
        REQUIRE(PQexitPipelineMode(conn) == 1);
        all.push_back(transaction_status(conn));
        return all;
    });
}

TEST_CASE("a long pipeline of small queries", "[query][pipeline]") {
    same_through_pgrail([](PGconn* conn) {
        REQUIRE(PQenterPipelineMode(conn) == 1);
        for (int i = 0; i < 2000; ++i) {
            const std::string value = std::to_string(i);
            const char* values[] = {value.c_str()};
            REQUIRE(PQsendQueryParams(conn, "SELECT $1::int * 3", 1, nullptr, values, nullptr, nullptr, 0) == 1);
            if (i % 500 == 499) REQUIRE(PQpipelineSync(conn) == 1);
        }
        auto all = pipeline_results(conn, 4);
        REQUIRE(PQexitPipelineMode(conn) == 1);
        return all;
    });
}

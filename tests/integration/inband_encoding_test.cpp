// pgrail's in-band answers are substituted into the client's own Query, which the server reads in
// the client's encoding: a value must read back byte for byte in a client-only encoding too
// (SJIS, where a UTF-8 byte followed by a backslash is one character), and never end its string.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

#include "cluster.hpp"
#include "pgrail/migrations/commands.hpp"
#include "pgrail/proxy/inband_relations.hpp"

using namespace pgrail::test;

TEST_CASE("an in-band answer reads back the same in SJIS, and a backslash after a UTF-8 byte ends no string",
          "[inband][encoding]") {
    // "ā" is C4 81, and 81 5C is one SJIS character: quoted byte for byte with its backslash
    // doubled, the second backslash would escape the quote and the rest would run as SQL.
    const std::string value = "\xc4\x81\\'; SELECT 'injected'; --";
    pgrail::migrations::ResultTable table;
    table.columns = {"statements"};
    table.types = {pgrail::migrations::oid_text};
    table.rows = {{value}};
    const std::string sql = pgrail::proxy::result_set_sql(table);
    CHECK(std::all_of(sql.begin(), sql.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }));

    auto conn = admin();
    const char* const parameters[] = {value.c_str()};
    Result expected(
        PQexecParams(conn.get(), "SELECT md5(convert_to($1, 'UTF8'))", 1, nullptr, parameters, nullptr, nullptr, 0));
    REQUIRE(PQresultStatus(expected.get()) == PGRES_TUPLES_OK);
    REQUIRE(run(conn.get(), "SET client_encoding = 'SJIS'").at(0).status == "PGRES_COMMAND_OK");
    const auto answers = run(conn.get(), "SELECT md5(convert_to(statements, 'UTF8')) FROM (" + sql + ") AS answer");
    REQUIRE(answers.size() == 1);
    REQUIRE(answers[0].status == "PGRES_TUPLES_OK");
    REQUIRE(answers[0].rows.size() == 1);
    CHECK(answers[0].rows[0][0] == std::string(PQgetvalue(expected.get(), 0, 0)));
}

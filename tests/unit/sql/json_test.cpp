// The JSON shape `pgrail classify` prints and the audit log reuses.
#include <catch2/catch.hpp>

#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/json.hpp"

using namespace pgrail::sql;

TEST_CASE("a statement renders as one JSON object", "[sql][json]") {
    const std::string sql = "SELECT 1; UPDATE app.users SET pin = '1234'";
    const Analysis analysis = analyze(sql);
    REQUIRE(analysis.statements.size() == 2);
    const nlohmann::json out = to_json(analysis.statements[1], sql);
    CHECK(out["class"] == "write");
    CHECK(out["tag"] == "UPDATE");
    CHECK(out["text"] == "UPDATE app.users SET pin = '1234'");
    CHECK(out["offset"] == 10);
    CHECK(out["objects"] == nlohmann::json::parse(R"([{"schema":"app","name":"users","kind":"table","role":"written"}])"));
    CHECK(out["flags"] == nlohmann::json::parse(R"(["update_or_delete_without_where"])"));
    CHECK(out["normalized"] == "UPDATE app.users SET pin = $1");
    CHECK_FALSE(out.contains("structural_form_bytes"));  // not a schema change
    CHECK_FALSE(out.contains("error"));
}

TEST_CASE("without the query text no literal is rendered", "[sql][json]") {
    const Analysis analysis = analyze("UPDATE users SET password = 'hunter2' WHERE id = 1");
    const std::string rendered = to_json(analysis).dump();
    CHECK(rendered.find("hunter2") == std::string::npos);
}

TEST_CASE("errors, pgrail calls and wrapped statements render", "[sql][json]") {
    const nlohmann::json bad = to_json(analyze("SELEC 1"));
    CHECK(bad["error"]["message"] == "syntax error at or near \"SELEC\"");
    CHECK(bad["error"]["cursor"] == 1);
    CHECK(bad["statements"][0]["class"] == "unknown");
    const nlohmann::json call = to_json(analyze("SELECT * FROM pgrail.migrate_up('20260101')").statements.at(0));
    CHECK(call["pgrail_calls"][0]["function"] == "migrate_up");
    CHECK(call["pgrail_calls"][0]["arguments"] == nlohmann::json::parse(R"(["20260101"])"));
    CHECK(call["pgrail_calls"][0]["offset"] == 14);
    CHECK(call["pgrail_calls"][0]["length"] == 29);
    const nlohmann::json explain = to_json(analyze("EXPLAIN ANALYZE DELETE FROM t").statements.at(0));
    CHECK(explain["inner"][0]["tag"] == "DELETE");
    CHECK(explain["class"] == "write");
}

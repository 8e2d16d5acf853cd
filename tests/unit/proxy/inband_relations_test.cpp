// The texts the server runs in place of a statement that reads pgrail commands as relations.
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "pgrail/policy/loader.hpp"
#include "pgrail/protocol/frontend.hpp"
#include "pgrail/proxy/inband_commands.hpp"
#include "pgrail/proxy/inband_relations.hpp"
#include "pgrail/proxy/policy_gate.hpp"

using namespace pgrail;

namespace {

proxy::InbandCall call_at(const std::string& sql, const std::string& text, sql::PgrailCommand command,
                          bool aliased = false) {
    proxy::InbandCall call;
    call.command = command;
    call.offset = sql.find(text);
    REQUIRE(call.offset != std::string::npos);
    call.length = text.size();
    call.aliased = aliased;
    return call;
}

migrations::ResultTable small_table() {
    return {{"version", "ok"}, {migrations::oid_text, migrations::oid_bool}, {{"1", "t"}, {"it's", std::nullopt}}};
}

}  // namespace

TEST_CASE("a call becomes a VALUES relation, aliased by its command unless the client named it", "[proxy][relations]") {
    const std::string sql = "SELECT version FROM pgrail.status() WHERE ok -- pgrail.status()";
    const auto text =
        proxy::text_with_answers(sql, {call_at(sql, "pgrail.status()", sql::PgrailCommand::status)}, {small_table()});
    CHECK(text == "SELECT version FROM (SELECT * FROM (VALUES (E'1'::pg_catalog.text, E't'::boolean), (E'it''s'::pg_catalog.text, "
                  "NULL::boolean)) AS pgrail_result(\"version\", \"ok\")) AS \"status\" WHERE ok -- pgrail.status()");

    const std::string aliased = "SELECT * FROM pgrail.plan() p, pgrail.status()";
    const auto two =
        proxy::text_with_answers(aliased,
                                 {call_at(aliased, "pgrail.plan()", sql::PgrailCommand::plan, true),
                                  call_at(aliased, "pgrail.status()", sql::PgrailCommand::status)},
                                 {migrations::ResultTable{{"step"}, {migrations::oid_int8}, {}}, small_table()});
    CHECK(two.starts_with("SELECT * FROM (SELECT * FROM (VALUES (NULL::bigint)) AS pgrail_result(\"step\") WHERE false) p, "
                          "(SELECT * FROM (VALUES "));
    CHECK(two.ends_with(") AS \"status\""));

    // The whole-statement form becomes the bare query.
    const std::string whole = "SELECT pgrail.status()";
    proxy::InbandCall call = call_at(whole, whole, sql::PgrailCommand::status);
    call.whole_statement = true;
    CHECK(proxy::text_with_answers(whole, {call}, {small_table()}).starts_with("SELECT * FROM (VALUES (E'1'::pg_catalog.text"));
}

TEST_CASE("for the extended protocol a call reads its rows from an added json parameter", "[proxy][relations]") {
    const std::string sql = "SELECT state FROM pgrail.status() WHERE version = $1";
    const auto text =
        proxy::text_with_parameters(sql, {call_at(sql, "pgrail.status()", sql::PgrailCommand::status)}, 2);
    CHECK(text == "SELECT state FROM (SELECT * FROM pg_catalog.json_to_recordset($2::pg_catalog.json) AS pgrail_result(\"version\" pg_catalog.text, "
                  "\"name\" pg_catalog.text, \"state\" pg_catalog.text, \"checksum\" pg_catalog.text, \"applied_at\" pg_catalog.timestamptz, \"has_rollback\" "
                  "boolean, \"lint_findings\" pg_catalog.text, \"detail\" pg_catalog.text, \"backstop\" pg_catalog.text)) AS \"status\" WHERE version = $1");
    const std::string up = "SELECT * FROM pgrail.migrate_up('7') u";
    CHECK(proxy::text_with_parameters(up, {call_at(up, "pgrail.migrate_up('7')", sql::PgrailCommand::migrate_up, true)},
                                      1) ==
          "SELECT * FROM (SELECT * FROM pg_catalog.json_to_recordset($1::pg_catalog.json) AS pgrail_result(\"version\" pg_catalog.text, \"name\" pg_catalog.text, "
          "\"checksum\" pg_catalog.text, \"action\" pg_catalog.text, \"duration_ms\" bigint)) u");
}

TEST_CASE("answers as JSON rows: text values, nulls, ASCII only", "[proxy][relations]") {
    migrations::ResultTable table = small_table();
    table.rows.push_back({"caf\xc3\xa9 \"q\" \\", "f"});
    table.rows.push_back({"\xff", "t"});  // not UTF-8
    const std::string json = proxy::answer_json(table);
    for (const char c : json) CHECK(static_cast<unsigned char>(c) < 0x80);
    const auto rows = nlohmann::json::parse(json);
    REQUIRE(rows.size() == 4);
    CHECK(rows[0] == nlohmann::json({{"version", "1"}, {"ok", "t"}}));
    CHECK(rows[1]["ok"].is_null());
    CHECK(rows[2]["version"] == "caf\xc3\xa9 \"q\" \\");
    CHECK(rows[3]["version"] == "\xef\xbf\xbd");
    CHECK(proxy::answer_json(migrations::ResultTable{{"a"}, {migrations::oid_text}, {}}) == "[]");
}

TEST_CASE("a Bind gets each command's answer as the text parameter pgrail added for it", "[proxy][relations]") {
    // The Bind message pgrail sends, and what it reads as (views into the message).
    const auto rebound = [](const std::string& message) {
        auto parsed = protocol::parse_bind(std::string_view(message).substr(5));
        REQUIRE(parsed);
        return *parsed;
    };
    protocol::BindMessage bind;
    bind.statement = "s";
    bind.parameters = {std::string_view("\0\0\0\7", 4)};
    bind.parameter_formats = {1};  // one code for all: binary
    bind.result_formats = std::string_view("\0\0", 2);
    const std::string binary_message = proxy::bind_with_answers(bind, {small_table()});
    const auto binary = rebound(binary_message);
    CHECK(binary.statement == "s");
    CHECK(binary.parameter_formats == std::vector<std::int16_t>{1, 0});
    REQUIRE(binary.parameters.size() == 2);
    CHECK(binary.parameters[0] == std::string_view("\0\0\0\7", 4));
    CHECK(binary.parameters[1] == proxy::answer_json(small_table()));
    bind.parameter_formats = {};  // all text: pgrail's is text too
    const std::string text_message = proxy::bind_with_answers(bind, {small_table()});
    const auto text = rebound(text_message);
    CHECK(text.parameter_formats.empty());
    CHECK(text.parameters.size() == 2);
}

TEST_CASE("the call that changes something, and why it may not run in a transaction", "[proxy][relations]") {
    proxy::InbandCall status;
    status.command = sql::PgrailCommand::status;
    proxy::InbandCall up;
    up.command = sql::PgrailCommand::migrate_up;
    CHECK(proxy::changing_call({status}) == nullptr);
    const std::vector<proxy::InbandCall> calls = {status, up};
    CHECK(proxy::changing_call(calls) == &calls[1]);
    const auto in_block = proxy::outside_transaction_error(up, false);
    CHECK(in_block.sqlstate == "25001");
    CHECK_THAT(in_block.message, Catch::StartsWith("pgrail: pgrail.migrate_up cannot run inside a transaction block; "));
    CHECK(proxy::outside_transaction_error(up, true).message ==
          "pgrail: pgrail.migrate_up cannot be executed within a pipeline; send it on its own, outside the pipeline");
}

TEST_CASE("the gate's verdict carries each call's span and whether it changes something", "[proxy][relations]") {
    const auto audit_path =
        std::filesystem::temp_directory_path() / ("pgrail-relations-test-" + std::to_string(::getpid()) + ".jsonl");
    proxy::PolicyGate gate(policy::load_policy_string("version: 1\nrules:\n  - name: all\n    migrations: [status, "
                                                      "plan, migrate_up]\n",
                                                      "test.yaml"),
                           std::make_shared<audit::AuditLog>(audit_path.string(), audit::FsyncMode::never), true,
                           4u << 20);
    proxy::SessionContext session;
    session.user = "agent";
    const std::string sql = "SELECT * FROM pgrail.status() s JOIN pgrail.migrate_up('1') USING (version) WHERE $3 > 0";
    const auto verdict = gate.check(session, sql);
    REQUIRE(verdict.kind == proxy::GateVerdict::Kind::intercept);
    REQUIRE(verdict.calls.size() == 2);
    CHECK(sql.substr(verdict.calls[0].offset, verdict.calls[0].length) == "pgrail.status()");
    CHECK(verdict.calls[0].aliased);
    CHECK(verdict.calls[0].command == sql::PgrailCommand::status);
    CHECK(sql.substr(verdict.calls[1].offset, verdict.calls[1].length) == "pgrail.migrate_up('1')");
    CHECK_FALSE(verdict.calls[1].aliased);
    CHECK(verdict.calls[1].command == sql::PgrailCommand::migrate_up);
    CHECK(verdict.highest_parameter == 3);

    // DEALLOCATE and DISCARD ALL make the session forget what it prepared (also through the
    // cache of shapes, which answers the second text).
    CHECK(gate.check(session, "DEALLOCATE s1").forgets_prepared);
    CHECK(gate.check(session, "DEALLOCATE s2").forgets_prepared);
    CHECK(gate.check(session, "DISCARD ALL").forgets_prepared);
    CHECK_FALSE(gate.check(session, "SELECT 1").forgets_prepared);
    std::filesystem::remove(audit_path);
}

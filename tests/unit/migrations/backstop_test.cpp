// The backstop's pure parts: the key file, the status's verdict, the dump filter for verify.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "pgrail/migrations/backstop.hpp"
#include "pgrail/migrations/error.hpp"

using namespace pgrail::migrations;

namespace {

const std::string key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

std::filesystem::path temp_file(const std::string& name, const std::string& text) {
    const auto path = std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
    std::ofstream(path, std::ios::binary) << text;
    return path;
}

std::string sqlstate_of_reading(const std::filesystem::path& path) {
    try {
        (void)read_backstop_key(path);
    } catch (const MigrationError& error) {
        return error.sqlstate();
    }
    return "none";
}

BackstopStatus healthy_status() {
    BackstopStatus status;
    status.installed = true;
    status.installed_version = PGRAIL_VERSION;
    status.allows_temporary = true;
    for (const auto& event : backstop_events()) status.triggers.push_back({"pgrail_backstop_" + event, event, 'O'});
    return status;
}

}  // namespace

TEST_CASE("a key is 64 hex digits; whitespace around it is allowed, case is folded") {
    CHECK(parse_backstop_key(key) == key);
    CHECK(parse_backstop_key(key + "\n") == key);
    CHECK(parse_backstop_key("  " + key + " \r\n") == key);
    std::string upper = key;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK(parse_backstop_key(upper) == key);
    CHECK_FALSE(parse_backstop_key(key.substr(1)).has_value());
    CHECK_FALSE(parse_backstop_key(key + "0").has_value());
    CHECK_FALSE(parse_backstop_key(key.substr(0, 63) + "g").has_value());
    CHECK_FALSE(parse_backstop_key(key.substr(0, 32) + " " + key.substr(32, 31)).has_value());
    CHECK_FALSE(parse_backstop_key("").has_value());
}

TEST_CASE("reading the key file: missing, malformed and good files") {
    const auto good = temp_file("backstop_key_good", key + "\n");
    CHECK(read_backstop_key(good) == key);
    const auto bad = temp_file("backstop_key_bad", "not a key\n");
    CHECK(sqlstate_of_reading(bad) == "22023");
    const auto long_file = temp_file("backstop_key_long", std::string(1000, 'a'));
    CHECK(sqlstate_of_reading(long_file) == "22023");
    CHECK(sqlstate_of_reading("/nonexistent/pgrail/backstop.key") == "58P01");
    std::filesystem::remove(good);
    std::filesystem::remove(bad);
    std::filesystem::remove(long_file);
}

TEST_CASE("the status is healthy only when installed by this version with every trigger firing") {
    CHECK(healthy_status().healthy());
    CHECK_THAT(healthy_status().summary(), Catch::StartsWith("installed by pgrail " PGRAIL_VERSION " (this version)"));

    BackstopStatus missing;
    CHECK_FALSE(missing.healthy());
    CHECK_THAT(missing.summary(), Catch::StartsWith("not installed"));

    auto old = healthy_status();
    old.installed_version = "0.0.1";
    CHECK_FALSE(old.version_matches());
    CHECK_THAT(old.summary(), Catch::Contains("installed by pgrail 0.0.1") && Catch::Contains("install` again"));

    auto disabled = healthy_status();
    disabled.triggers[1].enabled = 'D';
    CHECK_THAT(disabled.summary(), Catch::Contains("disabled"));
    auto replica_only = healthy_status();
    replica_only.triggers[0].enabled = 'R';
    CHECK_FALSE(replica_only.healthy());
    auto always = healthy_status();
    always.triggers[0].enabled = 'A';
    CHECK(always.healthy());
    auto gone = healthy_status();
    gone.triggers.pop_back();
    CHECK_THAT(gone.summary(), Catch::Contains("pgrail_backstop_table_rewrite is missing"));

    auto wrong_key = healthy_status();
    wrong_key.key_matches = false;
    CHECK_THAT(wrong_key.summary(), Catch::Contains("key file does not match"));
    BackstopStatus unreadable;
    unreadable.error = "connection refused";
    CHECK_THAT(unreadable.summary(), Catch::Contains("cannot read it: connection refused"));
}

TEST_CASE("a scratch copy's dump leaves out what calls into the backstop") {
    const std::string dump =
        "SET statement_timeout = 0;\n"
        "\n"
        "--\n-- Name: \"t\"; Type: TABLE; Schema: public; Owner: app\n--\n\n"
        "CREATE TABLE \"public\".\"t\" (\"id\" integer);\n\n"
        "--\n-- Name: \"schema_migrations\" \"pgrail_backstop_guard\"; Type: TRIGGER; Schema: pgrail; Owner: app\n--\n\n"
        "CREATE TRIGGER \"pgrail_backstop_guard\" BEFORE INSERT ON \"pgrail\".\"schema_migrations\" FOR EACH STATEMENT "
        "EXECUTE FUNCTION \"pgrail_backstop\".\"guard_ledger\"();\n\n"
        "--\n-- Name: pgrail_backstop_sql_drop; Type: EVENT TRIGGER; Schema: -; Owner: postgres\n--\n\n"
        "CREATE EVENT TRIGGER \"pgrail_backstop_sql_drop\" ON \"sql_drop\"\n"
        "   EXECUTE FUNCTION \"pgrail_backstop\".\"on_sql_drop\"();\n\n\n"
        "ALTER EVENT TRIGGER \"pgrail_backstop_sql_drop\" OWNER TO \"postgres\";\n\n"
        "--\n-- Name: other_trigger; Type: EVENT TRIGGER; Schema: -; Owner: postgres\n--\n\n"
        "CREATE EVENT TRIGGER \"other_trigger\" ON \"ddl_command_end\" EXECUTE FUNCTION \"public\".\"audit\"();\n\n"
        "--\n-- PostgreSQL database dump complete\n--\n";
    const auto kept = without_backstop(dump);
    CHECK_THAT(kept, Catch::StartsWith("SET statement_timeout = 0;"));
    CHECK_THAT(kept, Catch::Contains("CREATE TABLE \"public\".\"t\""));
    CHECK_THAT(kept, Catch::Contains("CREATE EVENT TRIGGER \"other_trigger\""));
    CHECK_THAT(kept, Catch::EndsWith("-- PostgreSQL database dump complete\n--\n"));
    CHECK(kept.find("pgrail_backstop") == std::string::npos);
    // A dump without the backstop is left as it is.
    const std::string plain = "SET x = 1;\n--\n-- Name: t; Type: TABLE; Schema: public; Owner: a\n--\nCREATE TABLE t();\n";
    CHECK(without_backstop(plain) == plain);
    CHECK(without_backstop("") == "");
}

TEST_CASE("the runner's error says to configure the key only for the backstop's own refusal") {
    const std::string refusal = std::string("migration 1_a failed: ") + std::string(backstop_refusal_message);
    CHECK_THAT(backstop_refusal_hint("42501", refusal), Catch::Contains("backstop_key_file"));
    CHECK(backstop_refusal_hint("42501", "permission denied for table t").empty());
    CHECK(backstop_refusal_hint("XX000", refusal).empty());
}

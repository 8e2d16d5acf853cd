// sensitive_columns over a session's life, against the real PostgreSQL 15: the catalog read again
// after a migration pgrail applies and on SIGHUP, a refusal fail-closed while the catalog cannot be
// read, and the audit lines that name the rule and the columns but never a value. (The read shapes
// themselves: sensitive_reads_test.cpp; the masked values: result_masking_test.cpp.)
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"
#include "seed_database.hpp"

namespace pgrail::test {
namespace {

std::vector<nlohmann::json> audit_of(const std::string& path) {
    std::vector<nlohmann::json> lines;
    std::istringstream in(read_file(path));
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
    return lines;
}

std::string policy_text(const std::string& columns) {
    return "version: 1\n"
           "masking: {key_env: PGRAIL_TEST_MASK_KEY}\n"
           "rules:\n"
           "  - name: owner\n"
           "    match: {users: [app_owner]}\n"
           "    migrations: [status, plan, migrate_up, migrate_down]\n"
           "  - name: maskers\n"
           "    match: {users: [plainuser]}\n"
           "    sensitive_columns: {action: mask, columns: [" + columns + "]}\n"
           "  - name: agents\n"
           "    sensitive_columns: {action: deny, columns: [" + columns + "]}\n";
}

struct Setup {
    SeedDatabase db{"sensitive_"};
    std::string dir = PgrailProcess::make_temp_dir();
    std::string audit_path = dir + "/audit.jsonl";
    std::string policy_path = dir + "/policy.yaml";
    std::string migrations = dir + "/migrations";
    PgrailProcess process;

    explicit Setup(const std::string& catalog_conninfo = "")
        : process(prepared(dir, migrations, policy_path) + "policy: " + policy_path + "\naudit: {file: " +
                      audit_path + ", fsync: always}\nmigrations: {dir: " + migrations + ", migrator: \"" +
                      db.conninfo_for("app_owner") + "\"}\n" +
                      (catalog_conninfo.empty() ? std::string() : "catalog: {conninfo: \"" + catalog_conninfo + "\"}\n"),
                  "127.0.0.1", 0, "", {{"PGRAIL_TEST_MASK_KEY", "a test key of twenty bytes"}}) {
        Conn owner(PQconnectdb(db.conninfo_for("app_owner").c_str()));
        (void)run(owner.get(), "GRANT SELECT ON ALL TABLES IN SCHEMA public TO plainuser");
    }

    static std::string prepared(const std::string& dir, const std::string& migrations, const std::string& policy_path) {
        (void)shell("mkdir -p " + migrations);
        write_file(migrations + "/20261201000000_profile_emails.up.sql",
                   "CREATE VIEW profile_emails AS SELECT id, email FROM profiles;\n"
                   "GRANT SELECT ON profile_emails TO agent;\n");
        write_file(migrations + "/20261201000000_profile_emails.down.sql", "DROP VIEW profile_emails;\n");
        write_file(policy_path, policy_text("profiles.email"));
        (void)dir;
        return "";
    }
};

}  // namespace

TEST_CASE("sensitive_columns: a view that a migration creates is guarded from the next statement on",
          "[sensitive_columns]") {
    Setup setup;
    auto agent = setup.db.connect_through(setup.process, "agent");
    CHECK(scalar(agent.get(), "SELECT count(display_name) FROM profiles") == "4");
    const auto refused = run(agent.get(), "SELECT email FROM profiles");
    CHECK(refused.at(0).sqlstate == "42501");
    CHECK_THAT(refused.at(0).message, Catch::Contains("public.profiles.email"));
    // Before the migration the view does not exist: the server says so, pgrail has nothing to guard.
    CHECK(run(agent.get(), "SELECT * FROM profile_emails").at(0).sqlstate == "42P01");

    auto owner = setup.db.connect_through(setup.process, "app_owner");
    REQUIRE(run(owner.get(), "SELECT * FROM pgrail.migrate_up()").at(0).status == "PGRES_TUPLES_OK");
    // The view reads the guarded column: every column of it is guarded now, in the same session.
    const auto through_view = run(agent.get(), "SELECT id FROM profile_emails");
    CHECK(through_view.at(0).sqlstate == "42501");
    CHECK_THAT(through_view.at(0).message, Catch::Contains("profile_emails"));
    CHECK(scalar(agent.get(), "SELECT count(*) FROM profiles") == "4");

    // The audit line names the rule and the columns, never a value of them.
    bool named = false;
    for (const auto& line : audit_of(setup.audit_path)) {
        if (line.value("guard", "") != "sensitive_columns" || line.value("event", "") != "statement_refused") continue;
        CHECK(line["rule"] == "agents");
        REQUIRE(line.contains("columns"));
        named = named || line["columns"].dump().find("public.profiles.email") != std::string::npos;
        CHECK(line.dump().find("ada@example.com") == std::string::npos);
    }
    CHECK(named);
}

TEST_CASE("sensitive_columns: SIGHUP with other columns guards them in live sessions", "[sensitive_columns]") {
    Setup setup;
    auto agent = setup.db.connect_through(setup.process, "agent");
    CHECK(scalar(agent.get(), "SELECT min(display_name) FROM profiles") == "Ada Lovelace");
    write_file(setup.policy_path, policy_text("profiles.display_name"));
    setup.process.reload();
    REQUIRE(eventually([&] { return run(agent.get(), "SELECT min(display_name) FROM profiles").at(0).sqlstate == "42501"; },
                       std::chrono::seconds(5)));
    CHECK(scalar(agent.get(), "SELECT count(email) FROM profiles") == "4");
}

TEST_CASE("sensitive_columns: without a readable catalog, statements that read relations are refused",
          "[sensitive_columns]") {
    // A catalog connection to a port where nothing listens: pgrail cannot tell what is guarded.
    Setup setup("host=127.0.0.1 port=1 dbname=postgres user=app_owner connect_timeout=2");
    auto agent = setup.db.connect_through(setup.process, "agent");
    const auto refused = run(agent.get(), "SELECT display_name FROM profiles");
    CHECK(refused.at(0).sqlstate == "55000");
    CHECK_THAT(refused.at(0).message, Catch::Contains("catalog"));
    CHECK(scalar(agent.get(), "SELECT 1") == "1");  // reads no relation
    CHECK(PQstatus(agent.get()) == CONNECTION_OK);
}

TEST_CASE("sensitive_columns: a masked read is audited with its columns, its literals redacted",
          "[sensitive_columns]") {
    Setup setup;
    auto masker = setup.db.connect_through(setup.process, "plainuser");
    const auto answer = run(masker.get(), "SELECT id, email FROM profiles WHERE display_name = 'Ada Lovelace'");
    REQUIRE(answer.at(0).status == "PGRES_TUPLES_OK");
    bool audited = false;
    for (const auto& line : audit_of(setup.audit_path)) {
        if (line.value("event", "") != "statement_masked") continue;
        audited = true;
        CHECK(line["rule"] == "maskers");
        CHECK(line["columns"] == nlohmann::json::array({"public.profiles.email"}));
        CHECK(line["statement"].get<std::string>().find("Ada") == std::string::npos);
    }
    CHECK(audited);
    // Anything but a plain result column is refused under mask.
    CHECK(run(masker.get(), "SELECT id FROM profiles WHERE email LIKE 'a%'").at(0).sqlstate == "42501");
}

}  // namespace pgrail::test

// The agent's loop over SQL alone (issue 15): a refused ALTER, a proposed migration, its approval
// (by the policy's auto_approve, or by the owner in-band or on the CLI), migrate_up, migrate_down.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cluster.hpp"
#include "pgrail/migrations/registry.hpp"
#include "node_packages.hpp"
#include "pgrail_process.hpp"
#include "seed_database.hpp"

using namespace pgrail::test;

namespace {

// propose_migration verifies on a scratch database created by the migrator connection's role.
struct CreatedbForAppOwner {
    CreatedbForAppOwner() { (void)run(admin().get(), "ALTER ROLE app_owner CREATEDB"); }
    ~CreatedbForAppOwner() { (void)run(admin().get(), "ALTER ROLE app_owner NOCREATEDB"); }
};

// The shipped default policy, optionally with the agents' rule approving clean proposals at once.
std::string policy_file(const std::string& dir, bool auto_approve) {
    std::string policy = read_file(source_dir() + "/policies/default.yaml");
    if (auto_approve) {
        const std::string agents = "    migrations: [status, plan, migrate_up, propose_migration]";
        const auto at = policy.rfind(agents);
        REQUIRE(at != std::string::npos);
        policy.replace(at, agents.size(),
                       "    migrations: {commands: [status, plan, migrate_up, propose_migration], auto_approve: clean}");
    }
    const std::string path = dir + "/policy.yaml";
    write_file(path, policy);
    return path;
}

// Creates `dir`; "" (for a member initializer).
std::string made(const std::string& dir) {
    std::filesystem::create_directories(dir);
    return {};
}

// A pgrail in front of a seed database, with an empty migrations directory of its own: the agent's
// change is new, so its refusal proposes it.
struct AgentLoop {
    CreatedbForAppOwner createdb;
    SeedDatabase db{"agent_loop_"};
    std::string dir = PgrailProcess::make_temp_dir();
    std::string migrations = dir + "/migrations";
    std::string audit_path = dir + "/audit.jsonl";
    PgrailProcess process;

    // `migrations_extra`: more of the migrations section (", key: value ...").
    explicit AgentLoop(bool auto_approve, const std::string& migrations_extra = "")
        : process(made(migrations) + "policy: " + policy_file(dir, auto_approve) + "\naudit: {file: " + audit_path +
                  ", fsync: always}\n" + "migrations: {dir: " + migrations + ", migrator: \"" +
                  db.conninfo_for("app_owner") + "\"" + migrations_extra + "}\n") {}

    [[nodiscard]] Conn connect(const std::string& user) const { return db.connect_through(process, user); }
    [[nodiscard]] Conn direct() const {
        Conn conn(PQconnectdb(db.conninfo_for("app_owner").c_str()));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        return conn;
    }
    [[nodiscard]] std::vector<nlohmann::json> audit() const {
        std::vector<nlohmann::json> lines;
        std::istringstream in(read_file(audit_path));
        for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
        return lines;
    }
};

std::string quote(const std::string& text) {
    std::string out = "'";
    for (const char c : text) {
        if (c == '\'') out.push_back('\'');
        out.push_back(c);
    }
    return out + "'";
}

std::string propose_sql(const std::string& name, const std::string& up, const std::string& down) {
    return "SELECT * FROM pgrail.propose_migration(" + quote(name) + ", " + quote(up) + ", " + quote(down) + ")";
}

// The proposal row by column name.
std::map<std::string, std::string> row_of(const Outcome& outcome) {
    std::map<std::string, std::string> out;
    REQUIRE(outcome.status == "PGRES_TUPLES_OK");
    REQUIRE(outcome.rows.size() == 1);
    for (std::size_t c = 0; c < outcome.columns.size(); ++c)
        out[outcome.columns[c].substr(0, outcome.columns[c].find(':'))] = outcome.rows[0][c].value_or("<null>");
    return out;
}

// Where every row of profiles physically is, and which transaction wrote it.
std::string row_versions(PGconn* conn) {
    return scalar(conn, "SELECT string_agg(ctid::text || '/' || xmin::text, ',' ORDER BY id) FROM profiles");
}

const std::string add_timezone = "ALTER TABLE profiles ADD COLUMN timezone text";
const std::string drop_timezone = "ALTER TABLE profiles DROP COLUMN timezone";

}  // namespace

TEST_CASE("the seed scenario over SQL alone: refused, proposed, approved at once, applied, rolled back",
          "[agent_loop]") {
    AgentLoop loop(true);
    auto agent = loop.connect("agent");
    auto direct = loop.direct();

    // 1. The ad hoc ALTER is refused; its MESSAGE alone names the call that proposes it.
    Result refused(PQexec(agent.get(), add_timezone.c_str()));
    CHECK(std::string(PQresultErrorField(refused.get(), PG_DIAG_SQLSTATE)) == "42501");
    CHECK_THAT(PQresultErrorField(refused.get(), PG_DIAG_MESSAGE_PRIMARY),
               Catch::Contains("pgrail.propose_migration("));

    // 2. The agent proposes it, with its rollback; clean, so the agents' rule approves it at once.
    const auto before = row_versions(direct.get());
    const auto filenode = scalar(direct.get(), "SELECT pg_relation_filenode('profiles')");
    const auto proposed = row_of(run(agent.get(), propose_sql("add_profiles_timezone", add_timezone, drop_timezone)).at(0));
    const std::string version = proposed.at("version");
    CHECK(version.size() == 14);
    CHECK(proposed.at("name") == "add_profiles_timezone");
    CHECK(proposed.at("state") == "approved");
    CHECK(proposed.at("verification") == "passed");
    CHECK(proposed.at("findings") == "[]");
    CHECK(proposed.at("checksum") == pgrail::migrations::migration_checksum(add_timezone, drop_timezone));
    CHECK_THAT(proposed.at("next_step"), Catch::Contains("SELECT * FROM pgrail.migrate_up('" + version + "')"));
    CHECK(scalar(direct.get(), "SELECT string_agg(event || ':' || by, ',' ORDER BY id) FROM pgrail.migration_events "
                               "WHERE version = '" + version + "' AND event <> 'verified'") ==
          "proposed:agent,approved:pgrail (auto_approve: clean)");
    // The same proposal again: the stored row, no duplicate.
    CHECK(row_of(run(agent.get(), propose_sql("add_profiles_timezone", add_timezone, drop_timezone)).at(0))
              .at("version") == version);
    CHECK(scalar(direct.get(), "SELECT count(*) FROM pgrail.migration_proposals") == "1");

    // 3. An approved proposal is a registered migration: status lists it, migrate_up applies it.
    const auto status = run(agent.get(), "SELECT version, state FROM pgrail.status()");
    CHECK(status.at(0).rows.size() == 1);
    const auto applied = run(agent.get(), "SELECT * FROM pgrail.migrate_up('" + version + "')");
    REQUIRE(applied.at(0).status == "PGRES_TUPLES_OK");
    CHECK(applied[0].rows.at(0)[0] == version);
    CHECK(loop.db.timezone_columns() == "1");
    // No existing row was rewritten: same places, same writing transactions, same file.
    CHECK(row_versions(direct.get()) == before);
    CHECK(scalar(direct.get(), "SELECT pg_relation_filenode('profiles')") == filenode);
    CHECK(scalar(direct.get(), "SELECT count(*) FROM profiles WHERE timezone IS NULL") == "4");

    // 4. The owner rolls it back.
    auto owner = loop.connect("app_owner");
    const auto rolled_back = run(owner.get(), "SELECT * FROM pgrail.migrate_down('" + version + "')");
    REQUIRE(rolled_back.at(0).status == "PGRES_TUPLES_OK");
    CHECK(loop.db.timezone_columns() == "0");

    // 5. A DROP COLUMN is destructive: proposed, never approved automatically.
    const auto drop = row_of(run(agent.get(), propose_sql("drop_profiles_display_name",
                                                          "ALTER TABLE profiles DROP COLUMN display_name",
                                                          "ALTER TABLE profiles ADD COLUMN display_name text"))
                                 .at(0));
    CHECK(drop.at("state") == "proposed");
    CHECK_THAT(drop.at("findings"), Catch::Contains("\"rule\":\"destructive\""));
    CHECK_THAT(drop.at("next_step"), Catch::Contains("pgrail.approve_migration('" + drop.at("version") + "')"));
    CHECK(drop.at("version") > version);

    // 6. A rollback script that does not parse is refused; nothing is stored.
    const auto bad = run(agent.get(), propose_sql("add_profiles_locale", "ALTER TABLE profiles ADD COLUMN locale text",
                                                  "ALTER TABLE profiles DROP COLUMN locale,,"));
    CHECK(bad.at(0).sqlstate == "42601");
    CHECK_THAT(bad.at(0).message, Catch::Contains("rollback"));
    CHECK(run(agent.get(), propose_sql("add_profiles_locale", "ALTER TABLE profiles ADD COLUMN locale text", ""))
              .at(0)
              .sqlstate == "22023");
    CHECK(run(agent.get(), propose_sql("Bad Name", add_timezone, drop_timezone)).at(0).sqlstate == "22023");
    CHECK(scalar(direct.get(), "SELECT count(*) FROM pgrail.migration_proposals") == "2");

    // 7. Inside a transaction block (as MCP servers send it): recorded all the same.
    CHECK(run(agent.get(), "BEGIN TRANSACTION READ ONLY").at(0).status == "PGRES_COMMAND_OK");
    const auto in_tx = run(agent.get(), propose_sql("add_profiles_locale", "ALTER TABLE profiles ADD COLUMN locale text",
                                                    "ALTER TABLE profiles DROP COLUMN locale"));
    CHECK(row_of(in_tx.at(0)).at("state") == "approved");
    CHECK(run(agent.get(), "ROLLBACK").at(0).status == "PGRES_COMMAND_OK");
    CHECK(scalar(direct.get(), "SELECT count(*) FROM pgrail.migration_proposals WHERE name = 'add_profiles_locale'") ==
          "1");

    // 8. The audit: who and what, by checksum and statement tags, never the scripts' text.
    int proposals = 0;
    for (const auto& line : loop.audit()) {
        const auto text = line.dump();
        INFO(text);
        const auto event = line.value("event", "");
        if (event == "command" || event == "proposed" || event == "approved" || event == "rejected") {
            CHECK(text.find("ADD COLUMN") == std::string::npos);
            CHECK(text.find("DROP COLUMN") == std::string::npos);
        }
        if (line.value("event", "") == "proposed") {
            ++proposals;
            CHECK(line.value("user", "") == "agent");
            CHECK(line.contains("checksum"));
        }
    }
    CHECK(proposals == 3);
}

namespace {

// What an agent's script could change outside the scratch copy, read as the superuser: the two
// databases' owners, privileges, limits, comments and settings, and the roles' settings.
std::string shared_state(const std::string& db, const std::string& victim) {
    auto conn = admin();
    const std::string names = "('" + db + "', '" + victim + "')";
    return scalar(
        conn.get(),
        "SELECT concat_ws(' | ', (SELECT string_agg(datname || ':' || datdba::regrole || ':' || "
        "coalesce(datacl::text, '-') || ':' || datconnlimit, ',' ORDER BY datname) FROM pg_database "
        "WHERE datname IN " +
            names +
            "), (SELECT string_agg(coalesce(d.description, '-'), ',') FROM "
            "pg_database b LEFT JOIN pg_shdescription d ON d.objoid = b.oid WHERE b.datname IN " +
            names +
            "), (SELECT coalesce(string_agg(coalesce(s.setdatabase::text, '-') || '/' || s.setrole::regrole || "
            "'=' || s.setconfig::text, ','), '-') FROM pg_db_role_setting s WHERE s.setrole IN "
            "('app_owner'::regrole, 'agent'::regrole) OR s.setdatabase IN (SELECT oid FROM pg_database WHERE "
            "datname IN " +
            names + ")))");
}

}  // namespace

TEST_CASE("an agent's proposal never runs beyond the scratch copy: shared catalogs, other databases, functions",
          "[agent_loop][scratch]") {
    AgentLoop loop(true);
    auto agent = loop.connect("agent");
    auto direct = loop.direct();
    const std::string db = loop.db.name;
    const std::string victim = db + "_victim";
    REQUIRE(run(admin().get(), "CREATE DATABASE " + victim + " OWNER app_owner").at(0).status == "PGRES_COMMAND_OK");
    const std::string before = shared_state(db, victim);
    REQUIRE_THAT(before, Catch::Contains(victim));

    // A clean additive change still gets its rollback proof (pg_catalog's functions run).
    const auto clean = row_of(run(agent.get(), propose_sql("add_note",
                                                           "ALTER TABLE profiles ADD COLUMN note text "
                                                           "DEFAULT lower('X')",
                                                           "ALTER TABLE profiles DROP COLUMN note"))
                                  .at(0));
    CHECK(clean.at("verification") == "passed");

    // While the scripts run, nobody but the migrator may connect to the scratch copy: an agent
    // connected there could plant a function that a later statement runs as the migrator.
    auto slow = std::async(std::launch::async, [&] {
        auto proposer = loop.connect("agent");
        return row_of(run(proposer.get(), propose_sql("add_waited",
                                                      "ALTER TABLE profiles ADD COLUMN waited int; "
                                                      "SELECT pg_sleep(2)",
                                                      "ALTER TABLE profiles DROP COLUMN waited"))
                          .at(0));
    });
    std::string scratch;
    REQUIRE(eventually(
        [&] {
            scratch = scalar(admin().get(),
                             "SELECT coalesce(max(datname), '') FROM pg_database WHERE datname LIKE "
                             "'pgrail_verify_%' AND datallowconn");
            return !scratch.empty();
        },
        std::chrono::seconds(20)));
    Conn intruder(PQconnectdb((loop.db.conninfo_for("agent") + " dbname=" + scratch).c_str()));
    CHECK(PQstatus(intruder.get()) == CONNECTION_BAD);
    CHECK_THAT(PQerrorMessage(intruder.get()), Catch::Contains("permission denied for database"));
    CHECK(slow.get().at("verification") == "passed");

    // The ways out the review found (the migrator has CREATEDB and owns both databases), in the up
    // script and behind a harmless up in the down script: none runs, none is approved.
    const std::vector<std::pair<std::string, std::string>> escapes = {
        {"COMMENT ON DATABASE " + db + " IS 'pwned-by-agent'", "SELECT 1"},
        {"CREATE TABLE t_ok (a int)", "DROP TABLE t_ok; COMMENT ON DATABASE " + db + " IS 'via-down'"},
        {"ALTER DATABASE " + db + " SET search_path = pgrail, public; GRANT ALL ON DATABASE " + db +
             " TO PUBLIC; ALTER ROLE app_owner SET statement_timeout = 1",
         "SELECT 1"},
        {"-- pgrail:no-transaction\nDROP DATABASE " + victim + " WITH (FORCE)", "SELECT 1"},
        {"CREATE TABLE t_ok (a int); ALTER DATABASE " + victim + " RENAME TO " + victim + "_moved", "DROP TABLE t_ok"},
    };
    int n = 0;
    for (const auto& [up, down] : escapes) {
        INFO(up << " / " << down);
        const auto row = row_of(run(agent.get(), propose_sql("escape_" + std::to_string(++n), up, down)).at(0));
        CHECK_THAT(row.at("verification"), Catch::StartsWith("skipped: pgrail does not run these scripts before a "
                                                             "person approves them"));
        CHECK(row.at("state") == "proposed");
        CHECK(shared_state(db, victim) == before);
    }

    // A function of the application's named like a built-in: the scratch copy's catalog is read
    // before anything runs, and this one would comment on the database as the migrator.
    Conn owner(PQconnectdb(loop.db.conninfo_for("app_owner").c_str()));
    REQUIRE(run(owner.get(), "CREATE FUNCTION public.lower(x int) RETURNS int LANGUAGE sql AS $$ COMMENT ON DATABASE " +
                                 db + " IS 'via-function'; SELECT 1 $$")
                .at(0)
                .status == "PGRES_COMMAND_OK");
    const auto shadowed = row_of(run(agent.get(), propose_sql("add_rank",
                                                              "ALTER TABLE profiles ADD COLUMN rank int; "
                                                              "SELECT lower(1)",
                                                              "ALTER TABLE profiles DROP COLUMN rank"))
                                     .at(0));
    CHECK_THAT(shadowed.at("verification"), Catch::Contains("public.lower"));
    CHECK_THAT(shadowed.at("verification"), Catch::StartsWith("skipped: "));
    CHECK(shared_state(db, victim) == before);

    // A script's error can be as long as the server lets it be: the answer (and the ledger) keeps 16 KB.
    const auto long_error = row_of(run(agent.get(), propose_sql("add_long",
                                                                "ALTER TABLE profiles ADD COLUMN z text; "
                                                                "SELECT repeat('x', 200000)::int",
                                                                "ALTER TABLE profiles DROP COLUMN z"))
                                       .at(0));
    CHECK_THAT(long_error.at("verification"), Catch::StartsWith("failed: "));
    CHECK_THAT(long_error.at("verification"), Catch::Contains("bytes more)"));
    CHECK(long_error.at("verification").size() < 17 * 1024);

    // An extension's functions are the server's: citext's max(citext) does not stop max(id).
    REQUIRE(run(owner.get(), "CREATE EXTENSION citext").at(0).status == "PGRES_COMMAND_OK");
    const auto with_extension = row_of(run(agent.get(), propose_sql("add_handle",
                                                                    "ALTER TABLE profiles ADD COLUMN "
                                                                    "handle citext; SELECT max(id) FROM "
                                                                    "profiles",
                                                                    "ALTER TABLE profiles DROP COLUMN handle"))
                                           .at(0));
    CHECK(with_extension.at("verification") == "passed");
    // The application's code that runs without a call naming it (here a trigger, as the migrator,
    // on any INSERT into profiles): no proposal of this schema runs unread.
    REQUIRE(run(owner.get(),
                "CREATE FUNCTION public.stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN EXECUTE "
                "format('COMMENT ON DATABASE " +
                    db +
                    " IS %L', NEW.display_name); RETURN NEW; END $$; "
                    "CREATE TRIGGER stamp BEFORE INSERT ON profiles FOR EACH ROW EXECUTE FUNCTION stamp()")
                .back()
                .status == "PGRES_COMMAND_OK");
    const auto triggered =
        row_of(run(agent.get(), propose_sql("add_badge",
                                            "ALTER TABLE profiles ADD COLUMN badge text; INSERT INTO "
                                            "profiles (email, display_name) VALUES ('t@example.com', "
                                            "'via-trigger')",
                                            "ALTER TABLE profiles DROP COLUMN badge"))
                   .at(0));
    CHECK_THAT(triggered.at("verification"), Catch::StartsWith("skipped: "));
    CHECK_THAT(triggered.at("verification"), Catch::Contains("public.stamp() through a trigger"));
    CHECK(shared_state(db, victim) == before);
    // No scratch database was left behind, the victim is still there, and the real settings hold.
    CHECK(scalar(direct.get(), "SELECT count(*) FROM pg_database WHERE datname = '" + victim + "'") == "1");
    // A database or role setting reaches sessions that start after it: a new one reads them.
    CHECK(scalar(loop.direct().get(), "SHOW search_path") == "\"$user\", public");
    CHECK(scalar(loop.direct().get(), "SHOW statement_timeout") == "0");
    (void)run(admin().get(), "DROP DATABASE IF EXISTS " + victim + " WITH (FORCE)");
}

TEST_CASE("under the default policy a proposal waits for the owner: in-band, on the CLI, reject, export",
          "[agent_loop]") {
    AgentLoop loop(false);
    auto agent = loop.connect("agent");
    auto owner = loop.connect("app_owner");
    auto direct = loop.direct();

    const auto proposed = row_of(run(agent.get(), propose_sql("add_profiles_timezone", add_timezone, drop_timezone)).at(0));
    const std::string version = proposed.at("version");
    CHECK(proposed.at("state") == "proposed");
    CHECK(proposed.at("verification") == "passed");
    CHECK_THAT(proposed.at("next_step"), Catch::Contains("pgrail migrate approve " + version));

    // Not registered yet: migrate_up does not know it; the agent may not approve it.
    CHECK(run(agent.get(), "SELECT * FROM pgrail.migrate_up('" + version + "')").at(0).sqlstate == "22023");
    CHECK(run(agent.get(), "SELECT * FROM pgrail.approve_migration('" + version + "')").at(0).sqlstate == "42501");

    // The owner approves in-band; the agent applies it.
    const auto approved = row_of(run(owner.get(), "SELECT * FROM pgrail.approve_migration('" + version + "')").at(0));
    CHECK(approved.at("state") == "approved");
    CHECK(scalar(direct.get(), "SELECT by FROM pgrail.migration_events WHERE event = 'approved'") == "app_owner");
    REQUIRE(run(agent.get(), "SELECT * FROM pgrail.migrate_up('" + version + "')").at(0).status == "PGRES_TUPLES_OK");
    CHECK(loop.db.timezone_columns() == "1");
    REQUIRE(run(owner.get(), "SELECT * FROM pgrail.migrate_down('" + version + "')").at(0).status ==
            "PGRES_TUPLES_OK");
    CHECK(loop.db.timezone_columns() == "0");

    // A second proposal, approved on the command line.
    const auto second = row_of(run(agent.get(), propose_sql("add_profiles_locale",
                                                            "ALTER TABLE profiles ADD COLUMN locale text",
                                                            "ALTER TABLE profiles DROP COLUMN locale"))
                                   .at(0));
    const std::string second_version = second.at("version");
    const std::string cli = "migrate --dir " + loop.migrations + " --dsn '" + loop.db.conninfo_for("app_owner") + "' ";
    const auto [approve_status, approve_output] = pgrail_cli(cli + "approve " + second_version);
    INFO(approve_output);
    CHECK(approve_status == 0);
    CHECK_THAT(approve_output, Catch::Contains("approved"));
    CHECK(row_of(run(agent.get(), propose_sql("add_profiles_locale", "ALTER TABLE profiles ADD COLUMN locale text",
                                              "ALTER TABLE profiles DROP COLUMN locale"))
                     .at(0))
              .at("state") == "approved");

    // A third, rejected with a reason.
    const auto third = row_of(run(agent.get(), propose_sql("drop_profiles_display_name",
                                                           "ALTER TABLE profiles DROP COLUMN display_name",
                                                           "ALTER TABLE profiles ADD COLUMN display_name text"))
                                  .at(0));
    const auto [reject_status, reject_output] =
        pgrail_cli(cli + "reject " + third.at("version") + " --reason 'display_name is still read by the app'");
    INFO(reject_output);
    CHECK(reject_status == 0);
    CHECK(scalar(direct.get(), "SELECT state || ': ' || reason FROM pgrail.migration_proposals WHERE version = '" +
                                   third.at("version") + "'") == "rejected: display_name is still read by the app");
    CHECK(scalar(direct.get(), "SELECT detail FROM pgrail.migration_events WHERE event = 'rejected'") ==
          "reason: display_name is still read by the app");

    // Export: files the registry reads with the proposals' own checksums; the running pgrail
    // then sees the same migrations in its directory (the file wins, checksums agree).
    const auto [export_status, export_output] = pgrail_cli(cli + "export");
    INFO(export_output);
    CHECK(export_status == 0);
    const auto registry = pgrail::migrations::Registry::load(loop.migrations);
    REQUIRE(registry.migrations().size() == 2);
    REQUIRE(registry.find(version) != nullptr);
    CHECK(registry.find(version)->checksum == proposed.at("checksum"));
    CHECK(registry.find(second_version)->checksum == second.at("checksum"));
    CHECK(registry.invalid_files().empty());
    const auto status = run(agent.get(), "SELECT version, state FROM pgrail.status() ORDER BY version");
    REQUIRE(status.at(0).status == "PGRES_TUPLES_OK");
    CHECK(status[0].rows.size() == 2);

    // A file that differs from an approved proposal of its version is an error, not a choice.
    std::ofstream(loop.migrations + "/" + second_version + "_add_profiles_locale.down.sql")
        << "ALTER TABLE profiles DROP COLUMN locale CASCADE;\n";
    const auto conflict = run(agent.get(), "SELECT * FROM pgrail.status()");
    CHECK(conflict.at(0).sqlstate == "55000");
    CHECK_THAT(conflict.at(0).message, Catch::Contains(second_version));
}

TEST_CASE("a rejection and a waiting migrate_up take turns: the ledger and the proposal never disagree",
          "[agent_loop]") {
    AgentLoop loop(false);
    auto agent = loop.connect("agent");
    auto owner = loop.connect("app_owner");
    const auto proposed = row_of(run(agent.get(), propose_sql("add_profiles_timezone", add_timezone, drop_timezone)).at(0));
    const std::string version = proposed.at("version");
    REQUIRE(row_of(run(owner.get(), "SELECT * FROM pgrail.approve_migration('" + version + "')").at(0)).at("state") ==
            "approved");

    // Someone else holds the migration lock: the agent's migrate_up reads the approved set, then
    // waits; the owner's rejection waits for the lock too. (Once the rejection came before the
    // lock and the apply went on regardless: applied in the ledger, rejected in the proposals.)
    Conn holder(PQconnectdb(loop.db.conninfo_for("postgres").c_str()));
    REQUIRE(PQstatus(holder.get()) == CONNECTION_OK);
    const std::string key = "8099568217555234151";
    REQUIRE(scalar(holder.get(), "SELECT pg_try_advisory_lock(" + key + ")") == "t");
    const auto waiting_for_lock = [&](int sessions) {
        for (int i = 0; i < 600; ++i) {
            if (std::stoi(scalar(holder.get(), "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app_owner' AND "
                                               "query LIKE '%pg_try_advisory_lock(" + key + ")%' AND pid <> "
                                               "pg_backend_pid()")) >= sessions)
                return;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    };
    auto applying = std::async(std::launch::async, [&] {
        return run(agent.get(), "SELECT * FROM pgrail.migrate_up('" + version + "')").at(0);
    });
    waiting_for_lock(1);
    auto rejecting = std::async(std::launch::async, [&] {
        return run(owner.get(), "SELECT * FROM pgrail.reject_migration('" + version + "', 'not now')").at(0);
    });
    waiting_for_lock(2);
    REQUIRE(scalar(holder.get(), "SELECT pg_advisory_unlock(" + key + ")") == "t");

    const Outcome applied = applying.get();
    const Outcome rejected = rejecting.get();
    INFO(applied.message << " / " << rejected.message);
    auto direct = loop.direct();
    const std::string ledger =
        scalar(direct.get(), "SELECT count(*) FROM pgrail.schema_migrations WHERE version = '" + version + "'");
    const std::string state =
        scalar(direct.get(), "SELECT state FROM pgrail.migration_proposals WHERE version = '" + version + "'");
    if (applied.sqlstate.empty()) {
        // The apply took the lock first: the rejection then found it applied.
        CHECK(rejected.sqlstate == "55000");
        CHECK_THAT(rejected.message, Catch::Contains("is applied"));
        CHECK(ledger == "1");
        CHECK(state == "approved");
        CHECK(loop.db.timezone_columns() == "1");
    } else {
        // The rejection took it first: the apply found it no longer approved, and did nothing.
        CHECK(rejected.sqlstate.empty());
        CHECK(applied.sqlstate == "55000");
        CHECK_THAT(applied.message, Catch::Contains("no longer approved: it is rejected"));
        CHECK(ledger == "0");
        CHECK(state == "rejected");
        CHECK(loop.db.timezone_columns() == "0");
    }
}

TEST_CASE("the audit keeps no value of a proposal's script: parse errors, failed verifications", "[agent_loop]") {
    AgentLoop loop(false);
    auto agent = loop.connect("agent");
    // Does not parse: libpg_query quotes the token near the error.
    CHECK(run(agent.get(), propose_sql("p1", "ALTER TABLE profiles ADD COLUMN x text DEFAULT 'a' 'SECRETtok1'",
                                       "ALTER TABLE profiles DROP COLUMN x"))
              .at(0)
              .sqlstate == "42601");
    // Parses, fails in the scratch copy: the server quotes the input, and its DETAIL the row.
    const auto failed = row_of(run(agent.get(), propose_sql("p6", "ALTER TABLE profiles ADD COLUMN y int DEFAULT 'SECRETnum6'",
                                                            "ALTER TABLE profiles DROP COLUMN y"))
                                   .at(0));
    CHECK_THAT(failed.at("verification"), Catch::StartsWith("failed"));
    const auto detail = row_of(run(agent.get(), propose_sql("p7", "CREATE TABLE t7 (a int CHECK (a <> 0)); INSERT INTO t7 VALUES (0) /* SECRET7 */",
                                                            "DROP TABLE t7"))
                                   .at(0));
    CHECK_THAT(detail.at("verification"), Catch::StartsWith("failed"));
    // Approved, applied to the live rows, failing there with a value the server's message does not
    // quote (helper 73: a RAISE of a row's value or an unquoted number reached the audit).
    const auto live = row_of(run(agent.get(), propose_sql("p8",
                                                          "CREATE TABLE t8 (c text); INSERT INTO t8 SELECT CASE WHEN "
                                                          "count(*) > 0 THEN chr(31337000 + count(*)::int) END FROM profiles",
                                                          "DROP TABLE t8"))
                                 .at(0));
    REQUIRE(live.at("verification") == "passed");
    auto owner = loop.connect("app_owner");
    REQUIRE(run(owner.get(), "SELECT * FROM pgrail.approve_migration('" + live.at("version") + "')").at(0).status ==
            "PGRES_TUPLES_OK");
    const auto applied = run(agent.get(), "SELECT * FROM pgrail.migrate_up('" + live.at("version") + "')").at(0);
    CHECK(applied.status == "PGRES_FATAL_ERROR");
    const std::string audit = read_file(loop.audit_path);
    CHECK(audit.find("verified") != std::string::npos);
    CHECK(audit.find("SECRET") == std::string::npos);
    CHECK(audit.find("\"failed\"") != std::string::npos);
    CHECK(audit.find("31337004") == std::string::npos);  // profiles has 4 rows
}

TEST_CASE("a proposal's proof is bounded: its time, each statement, the scratch's size, one at a time",
          "[agent_loop][proof_bounds]") {
    // Review 62: a proposal's scripts run before anyone reads them, on the production server.
    AgentLoop loop(false, ", proposal_proof_timeout: 3s, proposal_statement_timeout: 2500ms, "
                          "proposal_max_scratch_size: 41943040");
    auto agent = loop.connect("agent");
    // Two seconds each: the third starts with about one second of the proof's three left.
    const auto slow = row_of(run(agent.get(), propose_sql("slow", "CREATE TABLE s1 (a int); SELECT pg_sleep(2); "
                                                                  "SELECT pg_sleep(2); SELECT pg_sleep(2)",
                                                          "DROP TABLE s1"))
                                 .at(0));
    CHECK_THAT(slow.at("verification"), Catch::StartsWith("failed") && Catch::Contains("ran out of time"));
    // Cut inside the third statement (no clock in the test: the failure names where it stopped).
    CHECK_THAT(slow.at("verification"), Catch::Contains("statement 3 of"));
    const auto one = row_of(run(agent.get(), propose_sql("one", "CREATE TABLE s2 (a int); SELECT pg_sleep(3)",
                                                         "DROP TABLE s2"))
                                .at(0));
    CHECK_THAT(one.at("verification"), Catch::StartsWith("failed") && Catch::Contains("statement timeout"));
    // 40 MiB: an empty database is about 8; this table grows past it.
    const auto big = row_of(run(agent.get(), propose_sql("big", "CREATE TABLE s3 AS SELECT repeat('x', 2000) AS v "
                                                                "FROM generate_series(1, 30000)",
                                                         "DROP TABLE s3"))
                                .at(0));
    CHECK_THAT(big.at("verification"), Catch::StartsWith("failed") && Catch::Contains("scratch database grew"));
    // A SELECT of 200 MB runs in the proof (under EXPLAIN ANALYZE): its rows never reach pgrail.
    const auto rows = row_of(run(agent.get(), propose_sql("rows", "CREATE TABLE s6 (a int); SELECT repeat('x', "
                                                                  "10000000) FROM generate_series(1, 20)",
                                                          "DROP TABLE s6"))
                                 .at(0));
    CHECK(rows.at("verification") == "passed");
    // Another proof under way (its lock held elsewhere): refused at once, nothing recorded.
    auto holder = loop.direct();
    REQUIRE(scalar(holder.get(), "SELECT pg_try_advisory_lock(8099568217555234152)") == "t");
    const auto busy = run(agent.get(), propose_sql("busy", "CREATE TABLE s4 (a int)", "DROP TABLE s4")).at(0);
    CHECK(busy.sqlstate == "55P03");
    CHECK_THAT(busy.message, Catch::Contains("proves 1 at a time"));
    (void)run(holder.get(), "SELECT pg_advisory_unlock(8099568217555234152)");
    const auto after = row_of(run(agent.get(), propose_sql("after", "CREATE TABLE s5 (a int)", "DROP TABLE s5")).at(0));
    CHECK(after.at("verification") == "passed");
    CHECK(scalar(loop.direct().get(), "SELECT count(*) FROM pgrail.migration_proposals WHERE name = 'busy'") == "0");
}

// Review 84: an agent proposing in a loop from two sessions took every turn for the proof, and
// every proposal of the owner's was refused for minutes. A login refused for want of a turn is
// served before one that asks again after its own proof.
TEST_CASE("proofs take turns among logins: one that waited goes before one that was just served",
          "[agent_loop][proof_bounds]") {
    AgentLoop loop(false);
    auto agent = loop.connect("agent");
    auto owner = loop.connect("app_owner");
    const auto propose = [](const Conn& conn, const std::string& name) {
        return run(conn.get(), propose_sql(name, "CREATE TABLE " + name + " (a int)", "DROP TABLE " + name)).at(0);
    };
    auto holder = loop.direct();  // another process's proof under way
    REQUIRE(scalar(holder.get(), "SELECT pg_try_advisory_lock(8099568217555234152)") == "t");
    CHECK(propose(agent, "t_agent_1").sqlstate == "55P03");  // the agent waits first
    const auto behind = propose(owner, "t_owner_1");
    CHECK(behind.sqlstate == "55P03");
    CHECK_THAT(behind.message, Catch::Contains("another login's proposal waits for its turn"));
    (void)run(holder.get(), "SELECT pg_advisory_unlock(8099568217555234152)");
    CHECK(propose(owner, "t_owner_2").sqlstate == "55P03");  // the agent waited longer
    CHECK(row_of(propose(agent, "t_agent_2")).at("verification") == "passed");
    // The agent asks again at once: the owner, refused meanwhile, goes first.
    const auto again = propose(agent, "t_agent_3");
    CHECK(again.sqlstate == "55P03");
    CHECK_THAT(again.message, Catch::Contains("another login's proposal waits for its turn"));
    CHECK(row_of(propose(owner, "t_owner_3")).at("verification") == "passed");
    CHECK(row_of(propose(agent, "t_agent_4")).at("verification") == "passed");
}

// Review 84: every proposal is stored with its scripts, and an agent proposing in a loop grew the
// ledger by 46 proposals of 400 KB in 40 s. A proposer's waiting proposals are bounded.
TEST_CASE("a proposer's proposals waiting for a decision are bounded", "[agent_loop][proof_bounds]") {
    AgentLoop loop(false, ", proposals_waiting_per_proposer: 2");
    auto agent = loop.connect("agent");
    auto owner = loop.connect("app_owner");
    const auto propose = [](const Conn& conn, const std::string& name) {
        return run(conn.get(), propose_sql(name, "CREATE TABLE " + name + " (a int)", "DROP TABLE " + name)).at(0);
    };
    REQUIRE(propose(agent, "w_one").status == "PGRES_TUPLES_OK");
    const auto two = row_of(propose(agent, "w_two"));
    const auto third = propose(agent, "w_three");
    CHECK(third.sqlstate == "54000");
    CHECK_THAT(third.message, Catch::Contains("2 proposals of yours wait for a decision already"));
    // Another proposer is not counted with the agent; a decision makes room.
    CHECK(propose(owner, "w_owner").status == "PGRES_TUPLES_OK");
    REQUIRE(run(owner.get(), "SELECT * FROM pgrail.reject_migration('" + two.at("version") + "', 'not now')").at(0).status ==
            "PGRES_TUPLES_OK");
    CHECK(propose(agent, "w_three").status == "PGRES_TUPLES_OK");
}

TEST_CASE("auto_approve reads the new columns' types where the proof made them: domains and row types wait",
          "[agent_loop][column_types]") {
    // Review 64 and helper 65: the syntax cannot tell `text` from a domain over it. A domain's
    // NOT NULL, CHECK and default (any function, run as the runner) apply to every existing row
    // when a column of it is added, and the proof's scratch copy has no rows to fail on; a column
    // of a row type binds its table to another's shape. The types are read in the scratch copy's
    // catalog after the up script (after the pending migrations too, as PostgreSQL resolved them).
    AgentLoop loop(true);
    auto agent = loop.connect("agent");
    auto direct = loop.direct();
    for (const char* made :
         {"CREATE DOMAIN strict_text AS text NOT NULL", "CREATE TYPE mood AS ENUM ('calm', 'busy')",
          "CREATE TYPE pair AS (a int, b int)", "CREATE SCHEMA extra",
          "CREATE DOMAIN extra.\"Shouting\" AS int CHECK (VALUE > 0)", "CREATE DOMAIN row_domain AS profiles",
          "CREATE DOMAIN over_domain AS strict_text",
          // Helper 75: a computed field (attribute notation) and names of another schema.
          "CREATE FUNCTION is_admin(p profiles) RETURNS boolean LANGUAGE sql STABLE AS 'SELECT false'",
          "CREATE TABLE extra.ledger_lines (id int)", "CREATE TYPE extra.shade AS ENUM ('dark')",
          "CREATE TABLE extra.trail (id int)"})
        REQUIRE(run(direct.get(), made).at(0).status == "PGRES_COMMAND_OK");
    // What PostgreSQL does with the first on a table that has rows (and what the proof cannot see).
    const auto on_rows = run(direct.get(), "BEGIN; ALTER TABLE profiles ADD COLUMN s strict_text; ROLLBACK");
    CHECK(on_rows.at(1).sqlstate == "23502");
    (void)run(direct.get(), "ROLLBACK");  // (the error skipped the text's own)

    struct Case {
        std::string name, up, down, why;  // why: in the findings or the verification; "" when approved at once
    };
    const std::vector<Case> cases = {
        {"domain_not_null", "ALTER TABLE profiles ADD COLUMN s strict_text", "ALTER TABLE profiles DROP COLUMN s",
         "column s is of a domain (strict_text)"},
        {"domain_quoted", "ALTER TABLE profiles ADD COLUMN q extra.\"Shouting\"", "ALTER TABLE profiles DROP COLUMN q",
         "is of a domain (extra.\\\"Shouting\\\")"},
        {"domain_array", "ALTER TABLE profiles ADD COLUMN a _strict_text", "ALTER TABLE profiles DROP COLUMN a",
         "is of a domain (strict_text[])"},
        {"domain_of_domain", "ALTER TABLE profiles ADD b over_domain, ADD c int", "ALTER TABLE profiles DROP b, DROP c",
         "column b is of a domain"},
        {"row_type", "ALTER TABLE profiles ADD COLUMN p pair", "ALTER TABLE profiles DROP COLUMN p",
         "column p is of a row type (pair)"},
        {"table_row_type", "CREATE TABLE snapshots (id int, copy profiles)", "DROP TABLE snapshots",
         "column copy is of a row type (profiles)"},
        {"row_domain_in_new_table", "CREATE TABLE snapshots (id int, copy row_domain[])", "DROP TABLE snapshots",
         "is of a row type (row_domain[])"},
        {"typed_table", "CREATE TABLE pairs OF pair", "DROP TABLE pairs", "typed table (OF pair)"},
        // A temporary table's row type would shadow mood for the runner's session (and vanish
        // with it, taking the new column along).
        {"temporary_shadow", "CREATE TEMP TABLE mood (a int); ALTER TABLE profiles ADD COLUMN m mood",
         "ALTER TABLE profiles DROP COLUMN m; DROP TABLE mood", "a temporary table vanishes"},
        {"unknown_type", "ALTER TABLE profiles ADD COLUMN u no_such_type", "ALTER TABLE profiles DROP COLUMN u",
         "failed: "},
        // profiles.is_admin called is_admin(profiles); the column would answer instead.
        {"captures_function", "ALTER TABLE profiles ADD COLUMN is_admin boolean DEFAULT true",
         "ALTER TABLE profiles DROP COLUMN is_admin", "takes the name of function is_admin(profiles)"},
        {"shadows_table", "CREATE TABLE ledger_lines (id int)", "DROP TABLE ledger_lines",
         "ledger_lines is also the name of a relation or type in another schema"},
        {"shadows_type", "CREATE TABLE shade (id int)", "DROP TABLE shade", "shade is also the name"},
        {"index_shadows", "CREATE INDEX ledger_lines ON profiles (display_name)", "DROP INDEX ledger_lines",
         "ledger_lines is also the name"},
        // It commits as it goes: a lock timeout on the live table leaves an INVALID index.
        {"no_transaction", "-- pgrail:no-transaction\nCREATE INDEX CONCURRENTLY profiles_name ON profiles (display_name)",
         "-- pgrail:no-transaction\nDROP INDEX CONCURRENTLY profiles_name", "pgrail:no-transaction script commits"},
        // What stays approved at once: enums, ranges, arrays of scalars, serials, a domain in a
        // new (empty) table. (A range type of the application's own blocks every proof: its
        // multirange's constructor is a function the scratch copy would run.)
        {"enum", "ALTER TABLE profiles ADD COLUMN m mood", "ALTER TABLE profiles DROP COLUMN m", ""},
        {"array_range", "ALTER TABLE profiles ADD COLUMN tags text[], ADD COLUMN seen timestamptz, ADD r int4range",
         "ALTER TABLE profiles DROP COLUMN tags, DROP COLUMN seen, DROP r", ""},
        {"new_table", "CREATE TABLE notes (id bigserial PRIMARY KEY, body strict_text, kind mood)", "DROP TABLE notes",
         ""},
        // A column named like a built-in aggregate or function captures nothing of the application's.
        {"builtin_names", "ALTER TABLE profiles ADD COLUMN count int, ADD COLUMN to_json text",
         "ALTER TABLE profiles DROP COLUMN count, DROP COLUMN to_json", ""},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        const auto row = row_of(run(agent.get(), propose_sql(c.name, c.up, c.down)).at(0));
        if (c.why.empty()) {
            CHECK(row.at("state") == "approved");  // (bigserial has an info of the lint: advice only)
            CHECK_THAT(row.at("findings"), !Catch::Contains("needs_review"));
        } else {
            CHECK(row.at("state") == "proposed");
            CHECK_THAT(row.at("findings") + row.at("verification"), Catch::Contains(c.why));
        }
    }
    // Read after the pending migrations: an approved proposal, not applied, makes the type.
    const auto badges = row_of(run(agent.get(), propose_sql("badges", "CREATE TABLE badges (id int)",
                                                            "DROP TABLE badges")).at(0));
    REQUIRE(badges.at("state") == "approved");
    const auto pending = row_of(run(agent.get(), propose_sql("badge_column", "ALTER TABLE profiles ADD b badges",
                                                             "ALTER TABLE profiles DROP b")).at(0));
    CHECK(pending.at("verification") == "passed");
    CHECK(pending.at("state") == "proposed");
    CHECK_THAT(pending.at("findings"), Catch::Contains("column b is of a row type (badges)"));

    // The proof resolves names under the target's search_path, which a database default gives
    // and the schema dump does not hold (helper 75: the table was not found in the scratch copy).
    REQUIRE(run(direct.get(), "ALTER DATABASE " + loop.db.name + " SET search_path = extra, public").at(0).status ==
            "PGRES_COMMAND_OK");
    const auto elsewhere = row_of(run(agent.get(), propose_sql("extra_column", "ALTER TABLE trail ADD note text",
                                                               "ALTER TABLE trail DROP note")).at(0));
    CHECK(elsewhere.at("verification") == "passed");
    CHECK(elsewhere.at("state") == "approved");
}

TEST_CASE("a failed apply does not show the agent the rows it failed on", "[agent_loop]") {
    // Review 9: a proposal whose expression fails on a row made the server quote that row's value
    // (an email the agent may not read) in migrate_up's error, and in the ledger.
    AgentLoop loop(false);
    auto agent = loop.connect("agent");
    auto owner = loop.connect("app_owner");
    auto direct = loop.direct();
    const std::string email = scalar(direct.get(), "SELECT email FROM profiles ORDER BY id LIMIT 1");
    REQUIRE_FALSE(email.empty());
    const auto proposed = row_of(run(agent.get(), propose_sql("profiles_email_number",
                                                              "ALTER TABLE profiles ADD COLUMN n int; "
                                                              "UPDATE profiles SET n = email::int",
                                                              "ALTER TABLE profiles DROP COLUMN n"))
                                     .at(0));
    const std::string version = proposed.at("version");
    CHECK_THAT(proposed.at("findings"), Catch::Contains("destructive"));
    REQUIRE(row_of(run(owner.get(), "SELECT * FROM pgrail.approve_migration('" + version + "')").at(0)).at("state") ==
            "approved");
    const auto failed = run(agent.get(), "SELECT * FROM pgrail.migrate_up('" + version + "')").at(0);
    CHECK(failed.sqlstate == "22P02");
    CHECK_THAT(failed.message, Catch::Contains("invalid input syntax for type integer"));
    CHECK(failed.message.find(email) == std::string::npos);
    CHECK(scalar(direct.get(), "SELECT count(*) FROM pgrail.migration_events WHERE event = 'failed' AND detail LIKE '%' || "
                               "(SELECT email FROM profiles ORDER BY id LIMIT 1) || '%'") == "0");
    CHECK(read_file(loop.audit_path).find(email) == std::string::npos);
}

namespace {

// The reference MCP server for PostgreSQL, pinned, installed once per machine from npm.
const std::string mcp_package = "@modelcontextprotocol/server-postgres@0.6.2";
const std::string mcp_dir = "/tmp/pgrail-test-mcp-server-postgres-0.6.2";
const std::string mcp_entry = mcp_dir + "/node_modules/@modelcontextprotocol/server-postgres/dist/index.js";

std::string mcp_unavailable() {
    return node_packages_unavailable(mcp_dir, {mcp_package});
}

// Each SQL text through the MCP server's `query` tool, as an agent's host calls it; the JSON-RPC
// responses in order.
std::vector<nlohmann::json> mcp_queries(const std::string& database_url, const std::vector<std::string>& queries) {
    std::vector<std::string> arguments{"node", source_dir() + "/tests/integration/mcp/mcp_call.mjs", mcp_entry,
                                       database_url};
    arguments.insert(arguments.end(), queries.begin(), queries.end());
    std::vector<char*> argv;
    for (auto& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);
    int out[2];
    REQUIRE(::pipe(out) == 0);
    const pid_t child = ::fork();
    if (child == 0) {
        ::dup2(out[1], 1);
        ::close(out[0]);
        ::close(out[1]);
        ::execvp("node", argv.data());
        ::_exit(127);
    }
    ::close(out[1]);
    std::string output;
    char buffer[4096];
    for (ssize_t n; (n = ::read(out[0], buffer, sizeof buffer)) > 0;) output.append(buffer, static_cast<std::size_t>(n));
    ::close(out[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    std::vector<nlohmann::json> responses;
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);) responses.push_back(nlohmann::json::parse(line));
    REQUIRE(responses.size() == queries.size());
    return responses;
}

// The rows a successful `query` call returned (the tool answers them as JSON text).
nlohmann::json mcp_rows(const nlohmann::json& response) {
    INFO(response.dump());
    REQUIRE(response.contains("result"));
    return nlohmann::json::parse(response["result"]["content"][0]["text"].get<std::string>());
}

// The message of a failed call: all that this server passes on to the model.
std::string mcp_error(const nlohmann::json& response) {
    INFO(response.dump());
    REQUIRE(response.contains("error"));
    return response["error"]["message"].get<std::string>();
}

}  // namespace

TEST_CASE("the loop through a real MCP server from npm: its model sees only MESSAGE, and that is enough",
          "[agent_loop][mcp]") {
    if (const auto why = mcp_unavailable(); !why.empty()) {
        WARN("skipped: " << why);
        return;
    }
    AgentLoop loop(true);
    auto direct = loop.direct();
    const std::string url = "postgresql://agent:agent@127.0.0.1:" + std::to_string(loop.process.port()) + "/" +
                            loop.db.name;

    // The refusal's primary message names the next call; the agent makes it through the same tool
    // (which wraps every query in BEGIN TRANSACTION READ ONLY ... ROLLBACK).
    auto responses = mcp_queries(url, {add_timezone, propose_sql("add_profiles_timezone", add_timezone, drop_timezone)});
    CHECK_THAT(mcp_error(responses[0]), Catch::Contains("pgrail.propose_migration("));
    const auto proposal = mcp_rows(responses[1]);
    REQUIRE(proposal.size() == 1);
    CHECK(proposal[0]["state"] == "approved");
    const std::string version = proposal[0]["version"].get<std::string>();

    // A read-only tool does not change the schema: applying it is refused there, and nothing ran.
    responses = mcp_queries(url, {"SELECT * FROM pgrail.migrate_up('" + version + "')"});
    CHECK_THAT(mcp_error(responses[0]), Catch::Contains("transaction"));
    CHECK(loop.db.timezone_columns() == "0");

    // Applied over a read-write connection of the same agent; the tool then reads the ledger as a relation.
    auto agent = loop.connect("agent");
    const auto rows_before = row_versions(direct.get());
    REQUIRE(run(agent.get(), "SELECT * FROM pgrail.migrate_up('" + version + "')").at(0).status == "PGRES_TUPLES_OK");
    CHECK(loop.db.timezone_columns() == "1");
    CHECK(row_versions(direct.get()) == rows_before);
    responses = mcp_queries(url, {"SELECT version, state FROM pgrail.status() WHERE version = '" + version + "'"});
    const auto status = mcp_rows(responses[0]);
    REQUIRE(status.size() == 1);
    CHECK(status[0]["state"] == "applied");
}

TEST_CASE("a proposal, approval or rejection runs only where PostgreSQL would run the statement",
          "[agent_loop][inband]") {
    // In a failed transaction block and after an error earlier in an extended-protocol batch the
    // server runs nothing: pgrail's commands that leave a record once ran there anyway, while
    // their client heard 25P02 or nothing.
    AgentLoop loop(false);
    auto agent = loop.connect("agent");
    auto owner = loop.connect("app_owner");
    auto direct = loop.direct();
    const auto proposals = [&] {  // (the table is made with the first proposal)
        if (scalar(direct.get(), "SELECT to_regclass('pgrail.migration_proposals') IS NULL") == "t") return std::string("0");
        return scalar(direct.get(), "SELECT count(*) FROM pgrail.migration_proposals");
    };

    // A failed transaction block: 25P02, as the server answers, and nothing proposed.
    REQUIRE(run(agent.get(), "BEGIN").at(0).status == "PGRES_COMMAND_OK");
    CHECK(run(agent.get(), "SELECT 1/0").at(0).sqlstate == "22012");
    CHECK(run(agent.get(), propose_sql("add_profiles_timezone", add_timezone, drop_timezone)).at(0).sqlstate == "25P02");
    REQUIRE(run(agent.get(), "ROLLBACK").at(0).status == "PGRES_COMMAND_OK");
    CHECK(proposals() == "0");

    // A pipeline whose first statement fails: the server skips the proposal, and so does pgrail.
    REQUIRE(PQenterPipelineMode(agent.get()) == 1);
    REQUIRE(PQsendQueryParams(agent.get(), "SELECT 1/0", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
    const std::string propose = propose_sql("add_profiles_timezone", add_timezone, drop_timezone);
    REQUIRE(PQsendQueryParams(agent.get(), propose.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
    REQUIRE(PQpipelineSync(agent.get()) == 1);
    CHECK(drain(agent.get()).at(0).sqlstate == "22012");
    CHECK(drain(agent.get()).at(0).status == "PGRES_PIPELINE_ABORTED");
    Result sync(PQgetResult(agent.get()));
    CHECK(PQresultStatus(sync.get()) == PGRES_PIPELINE_SYNC);
    REQUIRE(PQexitPipelineMode(agent.get()) == 1);
    CHECK(proposals() == "0");

    // Outside them it runs, inside a healthy transaction block too (a ROLLBACK does not undo it).
    const auto proposed = row_of(run(agent.get(), propose).at(0));
    const std::string version = proposed.at("version");
    CHECK(proposals() == "1");

    // The owner's approval in a failed block: 25P02, the proposal still waits; then it runs.
    REQUIRE(run(owner.get(), "BEGIN").at(0).status == "PGRES_COMMAND_OK");
    CHECK(run(owner.get(), "SELECT 1/0").at(0).sqlstate == "22012");
    CHECK(run(owner.get(), "SELECT * FROM pgrail.approve_migration('" + version + "')").at(0).sqlstate == "25P02");
    REQUIRE(run(owner.get(), "ROLLBACK").at(0).status == "PGRES_COMMAND_OK");
    CHECK(scalar(direct.get(), "SELECT state FROM pgrail.migration_proposals") == "proposed");
    bool refused_on_record = false;
    for (const auto& line : loop.audit())
        if (line.value("command", "") == "pgrail.approve_migration" && line.value("sqlstate", "") == "25P02")
            refused_on_record = true;
    CHECK(refused_on_record);
    REQUIRE(run(owner.get(), "BEGIN").at(0).status == "PGRES_COMMAND_OK");
    CHECK(row_of(run(owner.get(), "SELECT * FROM pgrail.approve_migration('" + version + "')").at(0)).at("state") ==
          "approved");
    REQUIRE(run(owner.get(), "ROLLBACK").at(0).status == "PGRES_COMMAND_OK");
    CHECK(scalar(direct.get(), "SELECT state FROM pgrail.migration_proposals") == "approved");
}

TEST_CASE("the admin view answers while proposals' proofs hold every blocking thread", "[agent_loop][admin_view]") {
    // Two logins, two proofs each: the four threads of the blocking pool are taken for a minute.
    // pgrail.sessions() is answered from memory and waited behind them (review 8's 40 s); it now
    // waits only for its audit line. (Proofs bounded loosely enough here for four of a minute.)
    AgentLoop loop(false, ", proposal_proofs_at_once: 4, proposal_statement_timeout: 120s, proposal_proof_timeout: 120s");
    std::vector<Conn> proposers;
    for (const char* user : {"agent", "agent", "plainuser", "plainuser"}) proposers.push_back(loop.connect(user));
    for (std::size_t i = 0; i < proposers.size(); ++i) {
        const std::string table = "slow_" + std::to_string(i);
        const std::string sql =
            propose_sql(table, "CREATE TABLE " + table + " (id int);\nSELECT pg_sleep(60);", "DROP TABLE " + table + ";");
        REQUIRE(PQsendQuery(proposers[i].get(), sql.c_str()) == 1);
    }
    auto watcher = admin();
    const auto sleeping = [&] {
        return scalar(watcher.get(), "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' "
                                     "AND state = 'active' AND pid <> pg_backend_pid()");
    };
    REQUIRE(eventually([&] { return sleeping() == "4"; }, std::chrono::seconds(60)));
    auto owner = loop.connect("app_owner");
    CHECK(run(owner.get(), "SELECT count(*) FROM pgrail.sessions()").at(0).status == "PGRES_TUPLES_OK");
    CHECK(sleeping() == "4");  // answered while the four proofs still ran
    proposers.clear();  // the proposers leave: their proofs stop
    CHECK(eventually([&] { return sleeping() == "0"; }, std::chrono::seconds(60)));
}

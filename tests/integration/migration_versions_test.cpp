// In-band migrations by exact version (pgrail.migrate_up('V') applies V alone, and only as the
// next pending one), the policy's migrations.require_version, a registry that follows its
// directory without a signal, and what an agent reads in a refusal (issue 15, items 1, 4, 5).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <optional>

#include "cluster.hpp"
#include "pgrail_process.hpp"
#include "seed_database.hpp"

using namespace pgrail::test;

namespace {

// A database, a migrations directory and (once started) a pgrail of the test's own.
struct VersionsProxy {
    SeedDatabase db{"versions_"};
    std::string dir = PgrailProcess::make_temp_dir() + "/migrations";
    std::string audit_path = PgrailProcess::make_temp_dir() + "/audit.jsonl";
    std::optional<PgrailProcess> process;

    VersionsProxy() { std::filesystem::create_directory(dir); }

    void add(const std::string& version, const std::string& name, const std::string& up, const std::string& down) const {
        write_file(dir + "/" + version + "_" + name + ".up.sql", up);
        write_file(dir + "/" + version + "_" + name + ".down.sql", down);
    }

    void start(const std::string& policy = source_dir() + "/policies/default.yaml") {
        process.emplace("policy: " + policy + "\naudit: {file: " + audit_path + "}\nmigrations: {dir: " + dir +
                        ", migrator: \"" + db.conninfo_for("app_owner") + "\"}\n");
    }

    [[nodiscard]] Conn connect(const std::string& user) const { return db.connect_through(*process, user); }

    // Whether a table exists, asked of PostgreSQL directly.
    [[nodiscard]] bool has_table(const std::string& name) const {
        Conn owner(PQconnectdb(db.conninfo_for("app_owner").c_str()));
        return scalar(owner.get(), "SELECT to_regclass('public." + name + "') IS NOT NULL") == "t";
    }
};

std::vector<std::string> versions_of(const Outcome& outcome) {
    std::vector<std::string> out;
    for (const auto& row : outcome.rows) out.push_back(row.at(0).value_or(""));
    return out;
}

}  // namespace

TEST_CASE("migrate_up('V') applies V alone and only as the next pending migration", "[inband][versions]") {
    VersionsProxy proxy;
    proxy.add("1", "create_a", "CREATE TABLE a_t (id int);\n", "DROP TABLE a_t;\n");
    proxy.add("2", "create_b", "CREATE TABLE b_t (id int);\n", "DROP TABLE b_t;\n");
    proxy.start();
    auto owner = proxy.connect("app_owner");

    // B while A is pending before it: refused, naming A; nothing applied.
    const auto skipped = run(owner.get(), "SELECT * FROM pgrail.migrate_up('2')");
    CHECK(skipped.at(0).sqlstate == "55000");
    CHECK(skipped[0].message == "migration 2 is not the next pending migration: 1 is pending before it: 1; apply 1 "
                                "first: SELECT * FROM pgrail.migrate_up('1') (or every pending one: SELECT * FROM "
                                "pgrail.migrate_up())");
    CHECK_FALSE(proxy.has_table("a_t"));
    CHECK_FALSE(proxy.has_table("b_t"));
    CHECK(run(owner.get(), "SELECT * FROM pgrail.plan('2')").at(0).sqlstate == "55000");
    CHECK(versions_of(run(owner.get(), "SELECT * FROM pgrail.plan('1')").at(0)) == std::vector<std::string>{"1"});

    // A applies A alone.
    const auto first = run(owner.get(), "SELECT * FROM pgrail.migrate_up('1')");
    REQUIRE(first.at(0).status == "PGRES_TUPLES_OK");
    CHECK(versions_of(first[0]) == std::vector<std::string>{"1"});
    CHECK(proxy.has_table("a_t"));
    CHECK_FALSE(proxy.has_table("b_t"));
    const auto again = run(owner.get(), "SELECT * FROM pgrail.migrate_up('1')");
    CHECK(again.at(0).sqlstate == "55000");
    CHECK(again[0].message == "migration 1 is already applied");
    CHECK(run(owner.get(), "SELECT * FROM pgrail.migrate_up('9')").at(0).sqlstate == "22023");
    CHECK(versions_of(run(owner.get(), "SELECT * FROM pgrail.migrate_up('2')").at(0)) == std::vector<std::string>{"2"});

    // migrate_down('V'): V alone, and only the latest applied.
    const auto not_latest = run(owner.get(), "SELECT * FROM pgrail.migrate_down('1')");
    CHECK(not_latest.at(0).sqlstate == "55000");
    CHECK(not_latest[0].message == "migration 1 is not the latest applied one; the latest is 2 (create_b)");
    CHECK(proxy.has_table("a_t"));
    CHECK(versions_of(run(owner.get(), "SELECT * FROM pgrail.migrate_down('2')").at(0)) == std::vector<std::string>{"2"});
    CHECK_FALSE(proxy.has_table("b_t"));
    CHECK(proxy.has_table("a_t"));
    // Without a version: the latest applied (as before).
    CHECK(versions_of(run(owner.get(), "SELECT * FROM pgrail.migrate_down()").at(0)) == std::vector<std::string>{"1"});
    CHECK_FALSE(proxy.has_table("a_t"));
    // migrate_up() applies every pending migration, in order.
    CHECK(versions_of(run(owner.get(), "SELECT * FROM pgrail.migrate_up()").at(0)) ==
          std::vector<std::string>{"1", "2"});
    CHECK(proxy.has_table("a_t"));
    CHECK(proxy.has_table("b_t"));
}

TEST_CASE("migrations.require_version restricts a rule to the explicit forms", "[inband][versions][policy]") {
    VersionsProxy proxy;
    proxy.add("1", "create_a", "CREATE TABLE a_t (id int);\n", "DROP TABLE a_t;\n");
    const auto policy = PgrailProcess::make_temp_dir() + "/policy.yaml";
    write_file(policy, "version: 1\n"
                       "defaults:\n"
                       "  migrations: {commands: [status, plan, migrate_up, migrate_down], require_version: true}\n"
                       "rules:\n"
                       "  - name: everyone\n");
    proxy.start(policy);
    auto agent = proxy.connect("agent");
    const auto all = run(agent.get(), "SELECT * FROM pgrail.migrate_up()");
    CHECK(all.at(0).sqlstate == "42501");
    CHECK(all[0].message == "pgrail: pgrail.migrate_up() without a version is not allowed for this session; name the "
                            "migration: SELECT * FROM pgrail.migrate_up('<version>')");
    CHECK_FALSE(proxy.has_table("a_t"));
    CHECK(versions_of(run(agent.get(), "SELECT * FROM pgrail.migrate_up('1')").at(0)) == std::vector<std::string>{"1"});
    CHECK(run(agent.get(), "SELECT * FROM pgrail.migrate_down()").at(0).sqlstate == "42501");
    CHECK(proxy.has_table("a_t"));
    CHECK(versions_of(run(agent.get(), "SELECT * FROM pgrail.migrate_down('1')").at(0)) ==
          std::vector<std::string>{"1"});
    CHECK(run(agent.get(), "SELECT * FROM pgrail.plan()").at(0).status == "PGRES_TUPLES_OK");
}

TEST_CASE("the registry follows its directory before every pgrail command, without a signal",
          "[inband][registry_follow]") {
    VersionsProxy proxy;
    proxy.add("1", "create_a", "CREATE TABLE a_t (id int);\n", "DROP TABLE a_t;\n");
    proxy.start();
    auto owner = proxy.connect("app_owner");
    CHECK(run(owner.get(), "SELECT * FROM pgrail.status()").at(0).rows.size() == 1);

    // A new migration is seen by the next command.
    proxy.add("2", "create_b", "CREATE TABLE b_t (id int);\n", "DROP TABLE b_t;\n");
    auto status = run(owner.get(), "SELECT * FROM pgrail.status()");
    REQUIRE(status.at(0).rows.size() == 2);
    CHECK(status[0].rows[1][0] == "2");
    CHECK(status[0].rows[1][2] == "pending");
    const auto checksum = status[0].rows[1][3];

    // A file rewritten at once, with the same size and its modification time put back: seen too.
    const auto up = proxy.dir + "/2_create_b.up.sql";
    struct stat before {};
    REQUIRE(::stat(up.c_str(), &before) == 0);
    write_file(up, "CREATE TABLE c_t (id int);\n");
    const timespec times[2] = {before.st_atim, before.st_mtim};
    REQUIRE(::utimensat(AT_FDCWD, up.c_str(), times, 0) == 0);
    status = run(owner.get(), "SELECT * FROM pgrail.status()");
    REQUIRE(status.at(0).rows.size() == 2);
    CHECK(status[0].rows[1][3] != checksum);

    // The migrator's statements match the registry the commands see. (Rolled back: a committed
    // run of the whole script would be recorded as applied, docs/migrations.md.)
    CHECK(run(owner.get(), "BEGIN").at(0).status == "PGRES_COMMAND_OK");
    CHECK(run(owner.get(), "CREATE TABLE c_t (id int)").at(0).status == "PGRES_COMMAND_OK");
    CHECK(run(owner.get(), "ROLLBACK").at(0).status == "PGRES_COMMAND_OK");
    CHECK(run(owner.get(), "CREATE TABLE b_t (id int)").at(0).sqlstate == "42501");

    // A broken new migration file: every command names it, nothing runs, and the registry read
    // before stays in force until the file is fixed.
    write_file(proxy.dir + "/3_create_d.up.sql", "CREATE TABLE d_t (id int);\n");
    for (const char* command : {"SELECT * FROM pgrail.status()", "SELECT * FROM pgrail.migrate_up()"}) {
        const auto refused = run(owner.get(), command);
        CHECK(refused.at(0).sqlstate == "55000");
        CHECK_THAT(refused[0].message, Catch::Contains("3_create_d.up.sql") &&
                                           Catch::Contains("no rollback script: 3_create_d.down.sql is missing"));
    }
    CHECK_FALSE(proxy.has_table("a_t"));
    write_file(proxy.dir + "/3_create_d.down.sql", "DROP TABLE d_t;\n");
    status = run(owner.get(), "SELECT * FROM pgrail.status()");
    REQUIRE(status.at(0).status == "PGRES_TUPLES_OK");
    CHECK(versions_of(status[0]) == std::vector<std::string>{"1", "2", "3"});

    proxy.add("4", "bad", "CREATE TABLE (;\n", "SELECT 1;\n");
    const auto unparsed = run(owner.get(), "SELECT * FROM pgrail.plan()");
    CHECK(unparsed.at(0).sqlstate == "55000");
    CHECK_THAT(unparsed[0].message, Catch::Contains("4_bad.up.sql") && Catch::Contains("does not parse"));
    std::filesystem::remove(proxy.dir + "/4_bad.up.sql");
    std::filesystem::remove(proxy.dir + "/4_bad.down.sql");
    CHECK(run(owner.get(), "SELECT * FROM pgrail.status()").at(0).rows.size() == 3);

    // A file that is no migration (no version) never blocks.
    write_file(proxy.dir + "/README.md", "Migrations of the app.\n");
    CHECK(run(owner.get(), "SELECT * FROM pgrail.status()").at(0).status == "PGRES_TUPLES_OK");

    // An unreadable directory fails the command; its return is seen.
    std::filesystem::rename(proxy.dir, proxy.dir + ".moved");
    const auto gone = run(owner.get(), "SELECT * FROM pgrail.status()");
    CHECK(gone.at(0).sqlstate == "58030");
    CHECK_THAT(gone[0].message, Catch::Contains("cannot read the migrations directory"));
    std::filesystem::rename(proxy.dir + ".moved", proxy.dir);
    CHECK(run(owner.get(), "SELECT * FROM pgrail.status()").at(0).status == "PGRES_TUPLES_OK");

    // SIGHUP still adopts the directory as it is: a lone up script is then an invalid entry.
    write_file(proxy.dir + "/5_lonely.up.sql", "CREATE TABLE e_t (id int);\n");
    CHECK(run(owner.get(), "SELECT * FROM pgrail.status()").at(0).sqlstate == "55000");
    proxy.process->reload();
    std::vector<Outcome> after;
    REQUIRE(eventually([&] {
        after = run(owner.get(), "SELECT * FROM pgrail.status()");
        return after.at(0).status == "PGRES_TUPLES_OK";
    }, std::chrono::seconds(5)));
    bool lonely_invalid = false;
    for (const auto& row : after[0].rows) lonely_invalid = lonely_invalid || (row[0] == "5" && row[2] == "invalid");
    CHECK(lonely_invalid);
    // Applying everything applies the registered ones in order, never the invalid one.
    CHECK(versions_of(run(owner.get(), "SELECT * FROM pgrail.migrate_up()").at(0)) ==
          std::vector<std::string>{"1", "2", "3"});
}

TEST_CASE("a refusal's message tells the agent the next step, and the audit keeps no literal", "[inband][agent_messages]") {
    VersionsProxy proxy;
    for (const char* suffix : {".up.sql", ".down.sql"}) {
        const std::string name = std::string("20261125090000_add_profiles_timezone") + suffix;
        write_file(proxy.dir + "/" + name, read_file(source_dir() + "/migrations/" + name));
    }
    proxy.start();
    auto agent = proxy.connect("agent");

    Result refused(PQexec(agent.get(), "ALTER TABLE profiles ADD COLUMN locale text NOT NULL DEFAULT 'secret-default-42'"));
    CHECK(std::string(PQresultErrorField(refused.get(), PG_DIAG_SQLSTATE)) == "42501");
    CHECK(std::string(PQresultErrorField(refused.get(), PG_DIAG_MESSAGE_PRIMARY)) ==
          "pgrail: ad hoc ALTER TABLE refused; propose it as a migration: SELECT * FROM "
          "pgrail.propose_migration('add_profiles_locale', '<your ALTER TABLE>', 'ALTER TABLE profiles DROP COLUMN "
          "locale')");
    CHECK_THAT(PQresultErrorField(refused.get(), PG_DIAG_MESSAGE_HINT), Catch::Contains("pgrail.propose_migration"));

    // The registered migration's own statement: apply the migration instead.
    const auto registered = run(agent.get(), "ALTER TABLE profiles ADD COLUMN timezone text");
    CHECK(registered.at(0).sqlstate == "42501");
    CHECK_THAT(registered[0].message, Catch::Contains("SELECT * FROM pgrail.migrate_up('20261125090000')"));

    const auto audit = read_file(proxy.audit_path);
    CHECK_THAT(audit, Catch::Contains("pgrail.propose_migration('add_profiles_locale'"));
    CHECK(audit.find("secret-default-42") == std::string::npos);
}

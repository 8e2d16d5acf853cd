// verify against a real PostgreSQL 15 with the seed's profiles table and its rows: what it
// measures (tables rewritten, locks, time), the opt-in row sample, and require_verified.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <pqxx/pqxx>

#include "cluster.hpp"
#include "pgrail_process.hpp"
#include "pgrail/migrations/commands.hpp"
#include "pgrail/migrations/error.hpp"
#include "pgrail/migrations/registry.hpp"
#include "pgrail/migrations/runner.hpp"

using namespace pgrail::migrations;
using pgrail::test::Cluster;
using pgrail::test::pgrail_cli;

namespace {

std::string server_conninfo(const std::string& database) {
    const auto& c = Cluster::get();
    return "host=" + c.host + " port=" + std::to_string(c.pg_port) + " dbname=" + database +
           " user=postgres password=postgres connect_timeout=10";
}

// The seed's profiles table (four rows) in a database of the test's own, dropped at the end.
class SeededDatabase {
public:
    SeededDatabase() {
        std::random_device random;
        name_ = "verify_test_" + std::to_string(random() % 1000000000);
        pqxx::connection conn(server_conninfo("postgres"));
        pqxx::nontransaction(conn).exec0("CREATE DATABASE " + name_);
        exec(pgrail::test::read_file(pgrail::test::source_dir() + "/examples/seed.sql"));
    }
    ~SeededDatabase() {
        try {
            pqxx::connection conn(server_conninfo("postgres"));
            pqxx::nontransaction(conn).exec0("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
        } catch (...) {
        }
    }
    SeededDatabase(const SeededDatabase&) = delete;
    SeededDatabase& operator=(const SeededDatabase&) = delete;

    [[nodiscard]] std::string conninfo() const { return server_conninfo(name_); }
    [[nodiscard]] std::string query(const std::string& sql) const {
        pqxx::connection conn(conninfo());
        pqxx::nontransaction tx(conn);
        const auto result = tx.exec(sql);
        if (result.empty()) return "<none>";
        return result[0][0].is_null() ? "<null>" : result[0][0].as<std::string>();
    }
    void exec(const std::string& sql) const {
        pqxx::connection conn(conninfo());
        pqxx::nontransaction(conn).exec(sql);
    }

private:
    std::string name_;
};

struct AuditCapture {
    std::vector<nlohmann::json> records;
    AuditSink sink() {
        return [this](const nlohmann::json& record) {
            if (!record.value("event", "").ends_with("_started")) records.push_back(record);
            return true;
        };
    }
};

std::shared_ptr<const Registry> registry_of(std::map<std::string, std::string> files) {
    return std::make_shared<const Registry>(Registry::from_files("/test", files));
}

RunnerOptions options_for(const SeededDatabase& db, std::int64_t sample_rows = 0) {
    RunnerOptions options;
    options.conninfo = db.conninfo();
    options.actor = "tester";
    options.verify_sample_rows = sample_rows;
    return options;
}

VerifyResult verify_one(std::shared_ptr<const Registry> registry, const std::string& version,
                        RunnerOptions options) {
    Runner runner(std::move(registry), std::move(options));
    const auto results = runner.verify(version);
    REQUIRE(results.size() == 1);
    return results[0];
}

std::string lock_on(const VerifyResult& result, const std::string& table) {
    for (const auto& lock : result.measurement.locks)
        if (lock.table == table) return lock.mode;
    return "<none>";
}

const std::string seed_version = "20261125090000";

std::string scratch_databases(const SeededDatabase& db) {
    return db.query("SELECT count(*) FROM pg_database WHERE datname LIKE 'pgrail\\_verify\\_%'");
}

}  // namespace

TEST_CASE("verify measures rewrites, locks and time: the seed's nullable column rewrites nothing, a type change "
          "rewrites profiles under ACCESS EXCLUSIVE",
          "[migrations][verify]") {
    SeededDatabase db;
    const std::string before = scratch_databases(db);

    SECTION("the seed migration: no table rewritten, in the ledger, the audit line and pgrail.verify()") {
        auto registry = std::make_shared<const Registry>(
            Registry::load(std::filesystem::path(pgrail::test::source_dir()) / "migrations"));
        AuditCapture audit;
        RunnerOptions options = options_for(db, 10);
        options.audit = audit.sink();
        Runner runner(registry, options);
        const auto table = verify_table(runner, seed_version);
        REQUIRE(table.rows.size() == 1);
        const auto& row = table.rows[0];
        INFO(row[5].value_or(""));
        CHECK(row[3] == "passed");
        REQUIRE(table.columns.size() == 12);
        CHECK(table.columns[5] == "detail");
        CHECK(table.columns[6] == "rewrites");
        CHECK(row[6] == "no table rewritten");
        CHECK(row[7] == "profiles ACCESS EXCLUSIVE");  // ADD COLUMN takes it, however briefly
        for (const std::size_t c : {8, 9, 10}) {
            REQUIRE(row[c].has_value());
            CHECK(std::stoll(*row[c]) >= 0);
        }
        CHECK(row[11] == "4 rows in 1 table (at most 10 per table)");
        const std::string detail =
            db.query("SELECT detail FROM pgrail.migration_events WHERE event = 'verified' AND outcome = 'ok'");
        CHECK_THAT(detail, Catch::StartsWith("no table rewritten; locks: profiles ACCESS EXCLUSIVE; up ") &&
                               Catch::Contains("sample: 4 rows in 1 table"));
        REQUIRE(audit.records.size() == 1);
        const auto& measured = audit.records[0]["measured"];
        CHECK(measured["rewrites"] == nlohmann::json::array());
        CHECK(measured["locks"] == nlohmann::json{{"profiles", "ACCESS EXCLUSIVE"}});
        CHECK(measured["sample"]["rows"] == 4);
        CHECK(measured["up_ms"].is_number());
        // The target itself was never touched.
        CHECK(db.query("SELECT count(*) FROM information_schema.columns WHERE column_name = 'timezone'") == "0");
    }
    SECTION("a column type change rewrites profiles; its down (binary-compatible) does not") {
        auto registry = registry_of(
            {{"1_narrow.up.sql", "ALTER TABLE profiles ALTER COLUMN display_name TYPE varchar(64);"},
             {"1_narrow.down.sql", "ALTER TABLE profiles ALTER COLUMN display_name TYPE text;"}});
        const auto result = verify_one(registry, "1", options_for(db));
        INFO(result.detail);
        CHECK(result.passed);
        CHECK(result.measurement.rewrites == std::vector<std::string>{"profiles"});
        CHECK(result.measurement.down_rewrites.empty());
        CHECK(rewrites_text(result) == "rewrites profiles");
        CHECK(lock_on(result, "profiles") == "ACCESS EXCLUSIVE");
        CHECK(result.measurement.locks_measured);
        CHECK(sample_text(result.sample) == "schema only");
        CHECK_THAT(db.query("SELECT detail FROM pgrail.migration_events WHERE event = 'verified'"),
                   Catch::StartsWith("rewrites profiles; locks: profiles ACCESS EXCLUSIVE;"));
    }
    SECTION("a new table is neither rewritten nor a lock on an existing table; a weaker lock is named as taken") {
        auto registry = registry_of(
            {{"1_notes.up.sql", "CREATE TABLE notes (id bigint PRIMARY KEY, body text);\n"
                                "CREATE INDEX profiles_created_at ON profiles (created_at);"},
             {"1_notes.down.sql", "DROP INDEX profiles_created_at;\nDROP TABLE notes;"}});
        const auto result = verify_one(registry, "1", options_for(db));
        INFO(result.detail);
        CHECK(result.passed);
        CHECK(result.measurement.rewrites.empty());
        // CREATE INDEX without CONCURRENTLY: SHARE (writes wait), and notes is not listed.
        REQUIRE(result.measurement.locks.size() == 1);
        CHECK(lock_on(result, "profiles") == "SHARE");
    }
    SECTION("a no-transaction script: locks not measured, rewrites and time still are") {
        auto registry = registry_of(
            {{"1_idx.up.sql", "-- pgrail:no-transaction\nCREATE INDEX CONCURRENTLY profiles_name ON profiles "
                              "(display_name);"},
             {"1_idx.down.sql", "-- pgrail:no-transaction\nDROP INDEX CONCURRENTLY profiles_name;"}});
        const auto result = verify_one(registry, "1", options_for(db));
        INFO(result.detail);
        CHECK(result.passed);
        CHECK_FALSE(result.measurement.locks_measured);
        CHECK(locks_text(result) == "not measured: no-transaction script");
        CHECK(rewrites_text(result) == "no table rewritten");
        CHECK(result.measurement.up_ms >= 0);
    }
    CHECK(scratch_databases(db) == before);
}

TEST_CASE("ADD COLUMN NOT NULL without a default passes on the schema alone and fails with sample rows",
          "[migrations][verify]") {
    SeededDatabase db;
    auto registry = registry_of({{"1_age.up.sql", "ALTER TABLE profiles ADD COLUMN age int NOT NULL;"},
                                 {"1_age.down.sql", "ALTER TABLE profiles DROP COLUMN age;"}});
    const std::string checksum = registry->find("1")->checksum;

    const auto schema_only = verify_one(registry, "1", options_for(db));
    INFO(schema_only.detail);
    CHECK(schema_only.passed);
    CHECK(schema_only.sample.rows == 0);
    {
        Runner runner(registry, options_for(db));
        CHECK(runner.has_passing_verify("1", checksum));
    }

    const auto with_rows = verify_one(registry, "1", options_for(db, 2));
    CHECK_FALSE(with_rows.passed);
    CHECK(with_rows.sample.rows == 2);
    CHECK(with_rows.sample.tables == 1);
    CHECK_THAT(with_rows.detail, Catch::Contains("contains null values"));
    CHECK(rewrites_text(with_rows) == "not measured: up did not finish");
    CHECK_THAT(db.query("SELECT detail FROM pgrail.migration_events WHERE event = 'verified' ORDER BY id DESC LIMIT 1"),
               Catch::Contains("contains null values") &&
                   Catch::Contains("\nin the scratch copy: up did not finish: nothing measured; sample: 2 rows") &&
                   Catch::Contains("sample: 2 rows in 1 table"));

    // The latest verify of this text failed: require_verified refuses it, although an earlier
    // schema-only verify passed.
    RunnerOptions options = options_for(db);
    options.require_verified = true;
    Runner runner(registry, options);
    CHECK_FALSE(runner.has_passing_verify("1", checksum));
    try {
        (void)runner.up(std::nullopt);
        FAIL("a migration whose latest verify failed must be refused");
    } catch (const MigrationError& error) {
        CHECK(error.sqlstate() == "55000");
        CHECK_THAT(error.message(), Catch::Contains("no passing verify of checksum " + checksum));
    }
    CHECK(db.query("SELECT count(*) FROM information_schema.columns WHERE column_name = 'age'") == "0");
}

TEST_CASE("the sample never reads excluded columns, follows foreign keys and says what it left out",
          "[migrations][verify]") {
    SeededDatabase db;
    // Every live created_at is before June 2026: the check fails on copied values, and passes on
    // the column's default (now()) when the column is excluded.
    auto registry = registry_of(
        {{"1_recent.up.sql", "ALTER TABLE profiles ADD CONSTRAINT profiles_recent CHECK (created_at > '2026-06-01');"},
         {"1_recent.down.sql", "ALTER TABLE profiles DROP CONSTRAINT profiles_recent;"}});

    SECTION("copied: the check meets the live values") {
        const auto result = verify_one(registry, "1", options_for(db, 100));
        CHECK_FALSE(result.passed);
        CHECK_THAT(result.detail, Catch::Contains("is violated by some row"));
    }
    SECTION("excluded: left at the default, said in the notes") {
        RunnerOptions options = options_for(db, 100);
        options.verify_exclude_columns = {"public.profiles.created_at"};
        const auto result = verify_one(registry, "1", options);
        INFO(result.detail);
        CHECK(result.passed);
        CHECK(result.sample.rows == 4);
        CHECK(result.sample.notes ==
              std::vector<std::string>{"profiles: excluded column created_at left NULL or at the default"});
    }
    SECTION("an excluded NOT NULL column without a default: the table gets no rows, and says so") {
        RunnerOptions options = options_for(db, 100);
        options.verify_exclude_columns = {"public.profiles.display_name"};
        auto age = registry_of({{"1_age.up.sql", "ALTER TABLE profiles ADD COLUMN age int NOT NULL;"},
                                {"1_age.down.sql", "ALTER TABLE profiles DROP COLUMN age;"}});
        const auto result = verify_one(age, "1", options);
        CHECK(result.passed);  // no rows reached the scratch copy
        CHECK(result.sample.rows == 0);
        CHECK(sample_text(result.sample) ==
              "0 rows in 0 tables (at most 100 per table); profiles: no rows (excluded column display_name is NOT "
              "NULL without a default)");
    }
    SECTION("a child table's sample keeps rows whose parent is not in the parent's sample") {
        db.exec("CREATE TABLE posts (id bigint PRIMARY KEY, profile_id bigint NOT NULL REFERENCES profiles, "
                "title text NOT NULL);"
                "INSERT INTO posts SELECT 10 + id, id, 'post ' || id FROM profiles;");
        auto title = registry_of({{"1_title.up.sql", "ALTER TABLE posts ADD COLUMN subtitle text NOT NULL;"},
                                  {"1_title.down.sql", "ALTER TABLE posts DROP COLUMN subtitle;"}});
        const auto result = verify_one(title, "1", options_for(db, 1));
        CHECK_FALSE(result.passed);  // posts has a row in the copy
        CHECK_THAT(result.detail, Catch::Contains("contains null values"));
        CHECK(result.sample.rows == 2);
        CHECK(result.sample.tables == 2);
        CHECK(result.sample.notes.empty());  // a superuser: foreign keys do not fire while loading
    }
}

TEST_CASE("require_verified: the checksum binds the verified text to the applied text", "[migrations][verify]") {
    SeededDatabase db;
    const std::map<std::string, std::string> files = {
        {"1_tz.up.sql", "ALTER TABLE profiles ADD COLUMN tz text;"},
        {"1_tz.down.sql", "ALTER TABLE profiles DROP COLUMN tz;"}};
    auto verified = registry_of(files);
    {
        Runner runner(verified, options_for(db));
        const auto results = runner.verify(std::nullopt);
        REQUIRE(results.size() == 1);
        CHECK(results[0].passed);
    }
    // The up file changed after the verify: same version, another checksum.
    auto changed_files = files;
    changed_files["1_tz.up.sql"] = "ALTER TABLE profiles ADD COLUMN tz text NOT NULL DEFAULT 'UTC';";
    auto changed = registry_of(changed_files);
    REQUIRE(changed->find("1")->checksum != verified->find("1")->checksum);
    RunnerOptions options = options_for(db);
    options.require_verified = true;
    {
        Runner runner(changed, options);
        try {
            (void)runner.up(std::nullopt);
            FAIL("a changed file must not ride on the verify of the old text");
        } catch (const MigrationError& error) {
            CHECK(error.sqlstate() == "55000");
            CHECK_THAT(error.message(), Catch::Contains(changed->find("1")->checksum));
            CHECK_THAT(error.hint(), Catch::Contains("pgrail migrate verify 1"));
        }
        CHECK(db.query("SELECT count(*) FROM information_schema.columns WHERE column_name = 'tz'") == "0");
    }
    // The verified text itself applies.
    Runner runner(verified, options);
    CHECK(runner.up(std::nullopt).size() == 1);
    CHECK(db.query("SELECT count(*) FROM information_schema.columns WHERE column_name = 'tz'") == "1");
}

TEST_CASE("the CLI: migrate verify --sample-rows reports what it measured and fails on data", "[migrations][verify]") {
    SeededDatabase db;
    const std::string dir = "/tmp/pgrail_verify_cli_" + std::to_string(std::random_device()() % 1000000000);
    std::filesystem::create_directories(dir);
    pgrail::test::write_file(dir + "/1_age.up.sql", "ALTER TABLE profiles ADD COLUMN age int NOT NULL;\n");
    pgrail::test::write_file(dir + "/1_age.down.sql", "ALTER TABLE profiles DROP COLUMN age;\n");
    const std::string common = "migrate --dir " + dir + " --dsn '" + db.conninfo() + "' verify";

    const auto [schema_code, schema_out] = pgrail_cli(common);
    INFO(schema_out);
    CHECK(schema_code == 0);
    CHECK_THAT(schema_out, Catch::Contains("rewrites") && Catch::Contains("1 passed: no table rewritten; locks: "
                                                                          "profiles ACCESS EXCLUSIVE; sample: schema "
                                                                          "only"));

    const auto [rows_code, rows_out] = pgrail_cli(common + " --sample-rows 3 --exclude-column public.profiles.created_at");
    INFO(rows_out);
    CHECK(rows_code == 1);
    CHECK_THAT(rows_out, Catch::Contains("contains null values") &&
                             Catch::Contains("3 rows in 1 table (at most 3 per table); profiles: excluded column "
                                             "created_at left NULL or at the default"));

    const auto [bad_code, bad_out] = pgrail_cli(common + " --exclude-column profiles.email");
    CHECK(bad_code != 0);
    CHECK_THAT(bad_out, Catch::Contains("schema.table.column"));
    std::filesystem::remove_all(dir);
}

TEST_CASE("without a superuser the sample loads parents before children, and says what it could not load",
          "[migrations][verify]") {
    // A role that may create the scratch database but not set session_replication_role, with a
    // database of its own; both dropped whatever happens.
    struct OwnRole {
        std::string role = "verify_owner_" + std::to_string(std::random_device()() % 1000000000);
        std::string database = role + "_db";
        OwnRole() {
            pqxx::connection admin(server_conninfo("postgres"));
            pqxx::nontransaction(admin).exec0("CREATE ROLE " + role + " LOGIN CREATEDB PASSWORD '" + role + "'");
            pqxx::nontransaction(admin).exec0("CREATE DATABASE " + database + " OWNER " + role);
        }
        ~OwnRole() {
            try {
                pqxx::connection admin(server_conninfo("postgres"));
                pqxx::nontransaction(admin).exec0("DROP DATABASE IF EXISTS " + database + " WITH (FORCE)");
                pqxx::nontransaction(admin).exec0("DROP ROLE IF EXISTS " + role);
            } catch (...) {
            }
        }
    } own;
    const std::string& role = own.role;
    const std::string& database = own.database;
    const auto& c = Cluster::get();
    const std::string conninfo = "host=" + c.host + " port=" + std::to_string(c.pg_port) + " dbname=" + database +
                                 " user=" + role + " password=" + role + " connect_timeout=10";
    {
        pqxx::connection owner(conninfo);
        pqxx::nontransaction(owner).exec(
            pgrail::test::read_file(pgrail::test::source_dir() + "/examples/seed.sql") +
            "CREATE TABLE posts (id bigint PRIMARY KEY, profile_id bigint NOT NULL REFERENCES profiles, title text);"
            "INSERT INTO posts VALUES (1, 4, 'by Edsger');");
    }
    auto registry = registry_of({{"1_title.up.sql", "ALTER TABLE posts ADD COLUMN subtitle text NOT NULL;"},
                                 {"1_title.down.sql", "ALTER TABLE posts DROP COLUMN subtitle;"}});
    RunnerOptions options;
    options.conninfo = conninfo;
    options.verify_sample_rows = 10;
    const std::string enforced =
        "foreign keys and triggers enforced (session_replication_role = replica needs a superuser on the scratch "
        "server)";

    SECTION("posts (first by name) waits for profiles, then loads") {
        Runner runner(registry, options);
        const auto results = runner.verify(std::nullopt);
        REQUIRE(results.size() == 1);
        CHECK_FALSE(results[0].passed);  // posts has its row in the copy
        CHECK_THAT(results[0].detail, Catch::Contains("contains null values"));
        CHECK(results[0].sample.rows == 5);
        CHECK(results[0].sample.tables == 2);
        CHECK(results[0].sample.notes == std::vector<std::string>{enforced});
    }
    SECTION("a parent without rows: the child's rows are left out, and the notes say why") {
        options.verify_exclude_columns = {"public.profiles.display_name"};
        Runner runner(registry, options);
        const auto results = runner.verify(std::nullopt);
        REQUIRE(results.size() == 1);
        INFO(results[0].detail);
        CHECK(results[0].passed);  // no rows reached posts
        CHECK(results[0].sample.rows == 0);
        REQUIRE(results[0].sample.notes.size() == 3);
        CHECK(results[0].sample.notes[0] == enforced);
        CHECK_THAT(results[0].sample.notes[1], Catch::StartsWith("profiles: no rows (excluded column display_name"));
        CHECK_THAT(results[0].sample.notes[2],
                   Catch::StartsWith("posts: no rows (") && Catch::Contains("violates foreign key constraint"));
    }
}

TEST_CASE("in-band pgrail.verify() samples rows as pgrail's configuration says, and answers the measurements",
          "[migrations][verify][inband]") {
    SeededDatabase db;
    const std::string dir = pgrail::test::PgrailProcess::make_temp_dir() + "/migrations";
    std::filesystem::create_directories(dir);
    pgrail::test::write_file(dir + "/1_age.up.sql", "ALTER TABLE profiles ADD COLUMN age int NOT NULL;\n");
    pgrail::test::write_file(dir + "/1_age.down.sql", "ALTER TABLE profiles DROP COLUMN age;\n");
    pgrail::test::PgrailProcess proxy(
        "policy: " + pgrail::test::source_dir() + "/policies/default.yaml\n" + "audit: {file: " +
        pgrail::test::PgrailProcess::make_temp_dir() + "/verify-audit.jsonl}\n" + "migrations: {dir: " + dir +
        ", migrator: \"" + db.conninfo() +
        "\", verify: {sample_rows: 3, exclude_columns: [public.profiles.created_at]}}\n");
    const std::string database = db.conninfo().substr(db.conninfo().find("dbname=") + 7);
    pgrail::test::Conn owner(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(proxy.port()) + " dbname=" +
                                          database.substr(0, database.find(' ')) +
                                          " user=app_owner password=app_owner")
                                             .c_str()));
    REQUIRE(PQstatus(owner.get()) == CONNECTION_OK);
    const auto outcome = pgrail::test::run(owner.get(), "SELECT outcome, rewrites, locks, sample FROM pgrail.verify()");
    REQUIRE(outcome.size() == 1);
    INFO(outcome[0].message);
    REQUIRE(outcome[0].rows.size() == 1);
    const auto& row = outcome[0].rows[0];
    CHECK(row[0] == "failed");  // three rows of profiles met NOT NULL without a default
    CHECK(row[1] == "not measured: up did not finish");
    CHECK(row[3] == "3 rows in 1 table (at most 3 per table); profiles: excluded column created_at left NULL or at "
                    "the default");
}

// Review 84: pg_dump's output was read without a bound of time or size. A proof's dumps stop at
// the proof's time (and at 256 MiB of output), and the proof fails with why.
TEST_CASE("a proof's schema dump is bounded by the proof's time", "[migrations][verify]") {
    const SeededDatabase db;
    const auto dir = pgrail::test::PgrailProcess::make_temp_dir();
    const std::string stalled = dir + "/pg_dump";
    pgrail::test::write_file(stalled, "#!/bin/sh\nexec sleep 30\n");
    std::filesystem::permissions(stalled, std::filesystem::perms::owner_all);
    auto options = options_for(db);
    options.pg_dump = stalled;
    options.proof_bounds = RunnerOptions::ProofBounds{std::chrono::milliseconds(0), std::chrono::milliseconds(500), 0};
    const auto registry =
        registry_of({{seed_version + "_add_profiles_timezone.up.sql", "ALTER TABLE profiles ADD COLUMN timezone text;"},
                     {seed_version + "_add_profiles_timezone.down.sql", "ALTER TABLE profiles DROP COLUMN timezone;"}});
    std::string message;
    try {
        (void)verify_one(registry, seed_version, options);
    } catch (const MigrationError& error) {
        message = error.what();
    }
    CHECK_THAT(message, Catch::Contains("pg_dump --schema-only of the live schema did not end within the proof's time"));
    CHECK(scratch_databases(db) == "0");
}

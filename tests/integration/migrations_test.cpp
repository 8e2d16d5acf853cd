// Migrations against a real PostgreSQL 15: apply, ledger, lock, failure, drift, rollback, verify.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

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

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

std::string server_conninfo(const std::string& database) {
    const auto& c = Cluster::get();
    return "host=" + c.host + " port=" + std::to_string(c.pg_port) + " dbname=" + database +
           " user=postgres password=postgres connect_timeout=10";
}

// A database of its own for each test, dropped at the end.
class TestDatabase {
public:
    TestDatabase() {
        std::random_device random;
        name_ = "mig_test_" + std::to_string(random() % 1000000000);
        pqxx::connection conn(server_conninfo("postgres"));
        pqxx::nontransaction(conn).exec0("CREATE DATABASE " + name_);
    }
    ~TestDatabase() {
        try {
            pqxx::connection conn(server_conninfo("postgres"));
            pqxx::nontransaction(conn).exec0("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
        } catch (...) {
        }
    }
    [[nodiscard]] std::string conninfo() const { return server_conninfo(name_); }
    // First value of the first row ("<null>" for NULL, "<none>" without rows).
    std::string query(const std::string& sql) const {
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

// The runner's audit records: outcomes in `records`, the intent written before each script runs
// in `intents`. `fail_from`: the sink refuses from that record on (a full disk).
struct AuditCapture {
    std::mutex mutex;
    std::vector<nlohmann::json> records;
    std::vector<nlohmann::json> intents;
    std::size_t fail_from = static_cast<std::size_t>(-1);
    AuditSink sink() {
        return [this](const nlohmann::json& record) {
            std::lock_guard lock(mutex);
            if (records.size() + intents.size() >= fail_from) return false;
            const auto event = record.value("event", "");
            (event.ends_with("_started") ? intents : records).push_back(record);
            return true;
        };
    }
};

std::shared_ptr<const Registry> registry_of(std::map<std::string, std::string> files) {
    return std::make_shared<const Registry>(Registry::from_files("/test", files));
}

Runner runner_for(const TestDatabase& db, std::shared_ptr<const Registry> registry, AuditCapture* audit = nullptr) {
    RunnerOptions options;
    options.conninfo = db.conninfo();
    options.actor = "tester";
    if (audit != nullptr) options.audit = audit->sink();
    return Runner(std::move(registry), options);
}

const std::filesystem::path source_dir = PGRAIL_SOURCE_DIR;
const std::string seed_version = "20261125090000";

std::string scratch_databases(const TestDatabase& db) {
    return db.query("SELECT count(*) FROM pg_database WHERE datname LIKE 'pgrail_verify_%'");
}

}  // namespace

TEST_CASE("the seed migration applies without rewriting profiles and rolls back", "[migrations]") {
    TestDatabase db;
    db.exec(read_file(source_dir / "examples" / "seed.sql"));
    const std::string filenode = db.query("SELECT pg_relation_filenode('profiles')");
    AuditCapture audit;
    auto registry = std::make_shared<const Registry>(Registry::load(source_dir / "migrations"));
    Runner runner = runner_for(db, registry, &audit);

    auto status = runner.snapshot();
    CHECK_FALSE(status->ledger().exists);
    REQUIRE(status->status().size() == 1);
    CHECK(status->status()[0].state == State::pending);
    REQUIRE(runner.plan(std::nullopt).size() == 1);

    const auto applied = runner.up(std::nullopt);
    REQUIRE(applied.size() == 1);
    CHECK(applied[0].version == seed_version);
    CHECK(db.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'profiles' AND "
                   "column_name = 'timezone'") == "1");
    CHECK(db.query("SELECT count(*) FROM profiles WHERE timezone IS NULL") == "4");
    CHECK(db.query("SELECT pg_relation_filenode('profiles')") == filenode);  // no table rewrite
    CHECK(db.query("SELECT checksum || ' ' || applied_by FROM pgrail.schema_migrations WHERE version = '" +
                   seed_version + "'") == registry->find(seed_version)->checksum + " tester");
    CHECK(db.query("SELECT string_agg(event || ':' || outcome, ',' ORDER BY id) FROM pgrail.migration_events") ==
          "applied:ok");
    status = runner.snapshot();
    CHECK(status->status()[0].state == State::applied);
    CHECK(status->status()[0].applied_at.has_value());
    CHECK(runner.up(std::nullopt).empty());  // nothing pending any more

    const auto table = status_table(*status);
    CHECK(table.columns[2] == "state");
    CHECK(table.rows[0][2] == "applied");
    CHECK(table.rows[0][5] == "t");

    SECTION("down with the wrong version is refused, with the latest it rolls back") {
        CHECK_THROWS_AS(runner.down(std::string("1")), MigrationError);
        const auto rolled = runner.down(seed_version);
        REQUIRE(rolled.size() == 1);
        CHECK(rolled[0].direction == Direction::down);
        CHECK(db.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'profiles' AND "
                       "column_name = 'timezone'") == "0");
        CHECK(db.query("SELECT count(*) FROM profiles") == "4");
        CHECK(db.query("SELECT count(*) FROM pgrail.schema_migrations") == "0");
        CHECK(db.query("SELECT string_agg(event, ',' ORDER BY id) FROM pgrail.migration_events") ==
              "applied,rolled_back");
        try {
            (void)runner.down(std::nullopt);
            FAIL("down without applied migrations must fail");
        } catch (const MigrationError& error) {
            CHECK(error.sqlstate() == "55000");
        }
        REQUIRE(audit.records.size() == 2);
        CHECK(audit.records[1]["event"] == "rolled_back");
        CHECK(audit.records[1]["user"] == "tester");
        CHECK(audit.records[1]["checksum"] == registry->find(seed_version)->checksum);
        CHECK(audit.records[1].contains("duration_ms"));
    }
}

TEST_CASE("two concurrent runs apply a migration exactly once", "[migrations]") {
    TestDatabase db;
    auto registry = registry_of({{"1_slow.up.sql", "CREATE TABLE once (id int);\nSELECT pg_sleep(1);"},
                                 {"1_slow.down.sql", "DROP TABLE once;"}});
    std::atomic<int> steps{0};
    std::atomic<int> errors{0};
    const auto apply = [&] {
        try {
            Runner runner = runner_for(db, registry);
            steps += static_cast<int>(runner.up(std::nullopt).size());
        } catch (const std::exception&) {
            ++errors;
        }
    };
    std::thread first(apply);
    std::thread second(apply);
    first.join();
    second.join();
    CHECK(errors == 0);
    CHECK(steps == 1);
    CHECK(db.query("SELECT count(*) FROM pgrail.schema_migrations") == "1");
    CHECK(db.query("SELECT count(*) FROM pgrail.migration_events WHERE event = 'applied'") == "1");

    SECTION("a run that cannot get the lock in time fails cleanly") {
        pqxx::connection holder(db.conninfo());
        pqxx::nontransaction(holder).exec("SELECT pg_advisory_lock(" + std::to_string(advisory_lock_key) + ")");
        RunnerOptions options;
        options.conninfo = db.conninfo();
        options.lock_wait = std::chrono::milliseconds(200);
        Runner runner(registry, options);
        try {
            (void)runner.up(std::nullopt);
            FAIL("expected a lock timeout");
        } catch (const MigrationError& error) {
            CHECK(error.sqlstate() == "55P03");
            CHECK_THAT(error.what(), Catch::Contains("pid " + std::to_string(holder.backendpid())));
        }
    }
}

namespace {

std::string lock_sql(const std::string& function) {
    return "SELECT " + function + "(" + std::to_string(advisory_lock_key) + ")";
}

// Runs `run` and returns the MigrationError it throws, if any (no assertions: threads use it).
template <class Run>
std::optional<MigrationError> caught(Run run) {
    try {
        run();
    } catch (const MigrationError& error) {
        return error;
    }
    return std::nullopt;
}

// Runs `run` and returns the MigrationError it throws (fails the test if it throws none).
template <class Run>
MigrationError error_of(Run run) {
    auto error = caught(run);
    if (!error) FAIL("expected a MigrationError");
    return *error;
}

double seconds_since(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

TEST_CASE("a session holding pgrail's lock key: status and plan answer, up fails naming it, then applies",
          "[migrations][lock]") {
    TestDatabase db;
    auto registry = registry_of({{"1_a.up.sql", "CREATE TABLE a (id int);"}, {"1_a.down.sql", "DROP TABLE a;"}});
    pqxx::connection holder(db.conninfo());
    pqxx::nontransaction(holder).exec(lock_sql("pg_advisory_lock"));
    const std::string pid = std::to_string(holder.backendpid());
    RunnerOptions options;
    options.conninfo = db.conninfo();
    options.lock_wait = std::chrono::milliseconds(500);
    Runner runner(registry, options);

    // The read-only commands never touch the advisory lock (they would block for good here).
    CHECK(runner.snapshot()->status().at(0).state == State::pending);
    CHECK(runner.plan(std::nullopt).size() == 1);

    // up waits about lock_wait, then names the holder and how to end it.
    const auto started = std::chrono::steady_clock::now();
    const auto error = error_of([&] { (void)runner.up(std::nullopt); });
    const auto waited = seconds_since(started);
    CHECK(error.sqlstate() == "55P03");
    CHECK_THAT(error.message(), Catch::Contains("within 500 ms") && Catch::Contains("pid " + pid));
    CHECK_THAT(error.detail(), Catch::Contains("backend pid " + pid) && Catch::Contains("user postgres"));
    CHECK_THAT(error.hint(), Catch::Contains("pg_terminate_backend(" + pid + ")"));
    CHECK(waited >= 0.45);
    CHECK(waited < 10);
    CHECK(db.query("SELECT to_regclass('a')") == "<null>");
    // down and resolve take the same lock and fail the same way.
    CHECK(error_of([&] { (void)runner.down(std::nullopt); }).sqlstate() == "55P03");

    // A shared hold blocks a run just as well, and is named too.
    pqxx::nontransaction(holder).exec(lock_sql("pg_advisory_unlock"));
    pqxx::nontransaction(holder).exec(lock_sql("pg_advisory_lock_shared"));
    const auto shared = error_of([&] { (void)runner.up(std::nullopt); });
    CHECK(shared.sqlstate() == "55P03");
    CHECK_THAT(shared.message(), Catch::Contains("pid " + pid));
    CHECK_THAT(shared.detail(), Catch::Contains("ShareLock"));

    // Released: the same run applies.
    pqxx::nontransaction(holder).exec(lock_sql("pg_advisory_unlock_shared"));
    REQUIRE(runner.up(std::nullopt).size() == 1);
    CHECK(db.query("SELECT count(*) FROM pgrail.schema_migrations") == "1");
}

TEST_CASE("a run that waits for another pgrail run says so", "[migrations][lock]") {
    TestDatabase db;
    auto registry = registry_of({{"1_slow.up.sql", "CREATE TABLE slow (id int);\nSELECT pg_sleep(3);"},
                                 {"1_slow.down.sql", "DROP TABLE slow;"}});
    std::optional<MigrationError> first_error;
    std::thread first([&] { first_error = caught([&] { (void)runner_for(db, registry).up(std::nullopt); }); });
    // Until the first run holds the lock (its connection names itself pgrail-migrate).
    REQUIRE(pgrail::test::eventually(
        [&] {
            return db.query("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.locktype = "
                            "'advisory' AND l.granted AND a.application_name = 'pgrail-migrate' AND "
                            "a.datname = current_database()") == "1";
        },
        std::chrono::seconds(10)));
    RunnerOptions options;
    options.conninfo = db.conninfo();
    options.lock_wait = std::chrono::milliseconds(200);
    Runner second(registry, options);
    const auto error = error_of([&] { (void)second.up(std::nullopt); });
    first.join();
    CHECK_FALSE(first_error);
    CHECK(error.sqlstate() == "55P03");
    CHECK_THAT(error.detail(), Catch::Contains("\"pgrail-migrate\""));
    CHECK_THAT(error.hint(), Catch::Contains("Another pgrail migration run is in progress"));
    CHECK(db.query("SELECT count(*) FROM pgrail.schema_migrations") == "1");
}

TEST_CASE("an abandoned run never applies afterwards", "[migrations][abandon]") {
    TestDatabase db;
    auto abandoned = std::make_shared<std::atomic<bool>>(false);
    auto abandonable = [&](std::shared_ptr<const Registry> registry, std::chrono::milliseconds lock_wait) {
        RunnerOptions options;
        options.conninfo = db.conninfo();
        options.lock_wait = lock_wait;
        options.abandoned = abandoned;
        return Runner(std::move(registry), options);
    };

    SECTION("abandoned while it waits for the lock: it stops waiting, and applies nothing once the lock is free") {
        auto registry = registry_of({{"1_a.up.sql", "CREATE TABLE a (id int);"}, {"1_a.down.sql", "DROP TABLE a;"}});
        pqxx::connection holder(db.conninfo());
        pqxx::nontransaction(holder).exec(lock_sql("pg_advisory_lock"));
        std::optional<MigrationError> error;
        double took = 0;
        std::thread run([&] {
            Runner runner = abandonable(registry, std::chrono::seconds(60));
            const auto started = std::chrono::steady_clock::now();
            error = caught([&] { (void)runner.up(std::nullopt); });
            took = seconds_since(started);
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        abandoned->store(true);
        run.join();
        REQUIRE(error);
        CHECK(error->sqlstate() == "57014");
        CHECK_THAT(error->message(), Catch::Contains("abandoned while it waited for the migration lock"));
        CHECK(error->detail() == "nothing was applied or rolled back");
        CHECK(took < 10);  // not the 60 s lock wait
        pqxx::nontransaction(holder).exec(lock_sql("pg_advisory_unlock"));
        std::this_thread::sleep_for(std::chrono::seconds(1));
        CHECK(db.query("SELECT to_regclass('a')") == "<null>");
        CHECK(db.query("SELECT to_regclass('pgrail.schema_migrations')") == "<null>");
    }

    SECTION("abandoned before it starts: the lock is free, nothing is applied") {
        auto registry = registry_of({{"1_a.up.sql", "CREATE TABLE a (id int);"}, {"1_a.down.sql", "DROP TABLE a;"}});
        abandoned->store(true);
        Runner runner = abandonable(registry, std::chrono::seconds(5));
        CHECK(error_of([&] { (void)runner.up(std::nullopt); }).sqlstate() == "57014");
        CHECK(error_of([&] { (void)runner.down(std::nullopt); }).sqlstate() == "57014");
        CHECK(db.query("SELECT to_regclass('a')") == "<null>");
    }

    SECTION("abandoned while a migration runs: it rolls back and the next one never starts") {
        auto registry = registry_of({{"1_a.up.sql", "CREATE TABLE a (id int);"},
                                     {"1_a.down.sql", "DROP TABLE a;"},
                                     {"2_slow.up.sql", "CREATE TABLE slow (id int);\nSELECT pg_sleep(30);"},
                                     {"2_slow.down.sql", "DROP TABLE slow;"},
                                     {"3_c.up.sql", "CREATE TABLE c (id int);"},
                                     {"3_c.down.sql", "DROP TABLE c;"}});
        std::optional<MigrationError> error;
        double took = 0;
        std::thread run([&] {
            Runner runner = abandonable(registry, std::chrono::seconds(5));
            const auto started = std::chrono::steady_clock::now();
            error = caught([&] { (void)runner.up(std::nullopt); });
            took = seconds_since(started);
        });
        REQUIRE(pgrail::test::eventually(
            [&] {
                return db.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgrail-migrate' "
                                "AND query LIKE '%pg_sleep(30)%' AND state = 'active'") == "1";
            },
            std::chrono::seconds(10)));
        abandoned->store(true);
        run.join();
        REQUIRE(error);
        CHECK(error->sqlstate() == "57014");
        CHECK_THAT(error->message(), Catch::Contains("during migration of 2_slow"));
        CHECK_THAT(error->detail(), Catch::Contains("applied 1_a"));
        CHECK(took < 20);  // the sleep was cancelled, not waited out
        CHECK(db.query("SELECT string_agg(version, ',' ORDER BY version) FROM pgrail.schema_migrations") == "1");
        CHECK(db.query("SELECT to_regclass('slow')") == "<null>");  // rolled back
        CHECK(db.query("SELECT to_regclass('c')") == "<null>");     // never started
        CHECK(db.query("SELECT count(*) FROM pgrail.migration_events WHERE version = '2' AND event = 'failed'") ==
              "1");
    }
}

TEST_CASE("the CLI: status and plan answer while the lock is held, up fails naming the holder", "[migrations][lock]") {
    TestDatabase db;
    const auto dir = std::filesystem::temp_directory_path() / ("pgrail_cli_lock_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "1_a.up.sql") << "CREATE TABLE a (id int);\n";
    std::ofstream(dir / "1_a.down.sql") << "DROP TABLE a;\n";
    pqxx::connection holder(db.conninfo());
    pqxx::nontransaction(holder).exec(lock_sql("pg_advisory_lock"));
    const std::string pid = std::to_string(holder.backendpid());
    const std::string common = "migrate --dir " + dir.string() + " --dsn '" + db.conninfo() + "' --lock-wait 500ms ";

    const auto [status_code, status_out] = pgrail_cli(common + "status");
    CHECK(status_code == 0);
    CHECK_THAT(status_out, Catch::Contains("pending"));
    const auto [plan_code, plan_out] = pgrail_cli(common + "plan");
    CHECK(plan_code == 0);
    CHECK_THAT(plan_out, Catch::Contains("(1 row)"));

    const auto [up_code, up_out] = pgrail_cli(common + "up");
    CHECK(up_code == 1);
    CHECK_THAT(up_out, Catch::Contains("[55P03]") && Catch::Contains("pid " + pid) &&
                           Catch::Contains("pg_terminate_backend(" + pid + ")"));
    CHECK(db.query("SELECT to_regclass('a')") == "<null>");

    pqxx::nontransaction(holder).exec(lock_sql("pg_advisory_unlock"));
    const auto [applied_code, applied_out] = pgrail_cli(common + "up");
    CHECK(applied_code == 0);
    CHECK(db.query("SELECT count(*) FROM pgrail.schema_migrations") == "1");
    std::filesystem::remove_all(dir);
}

TEST_CASE("a failure in the middle records nothing as applied and leaves the schema unchanged", "[migrations]") {
    TestDatabase db;
    AuditCapture audit;
    auto registry = registry_of({{"1_ok.up.sql", "CREATE TABLE ok_table (id int);"},
                                 {"1_ok.down.sql", "DROP TABLE ok_table;"},
                                 {"2_bad.up.sql", "CREATE TABLE half (id int);\n-- oops\nALTER TABLE missing ADD COLUMN x int;\n"
                                                  "CREATE TABLE never (id int);"},
                                 {"2_bad.down.sql", "DROP TABLE never;\nDROP TABLE half;"}});
    Runner runner = runner_for(db, registry, &audit);
    try {
        (void)runner.up(std::nullopt);
        FAIL("expected the second migration to fail");
    } catch (const MigrationError& error) {
        CHECK(error.sqlstate() == "42P01");
        CHECK_THAT(error.what(), Catch::Contains("2_bad") && Catch::Contains("statement 2 of 2_bad.up.sql") &&
                                     Catch::Contains("line 3") && Catch::Contains("ALTER TABLE missing") &&
                                     Catch::Contains("relation \"missing\" does not exist"));
        CHECK_THAT(error.detail(), Catch::Contains("rolled back"));
    }
    CHECK(db.query("SELECT string_agg(version, ',') FROM pgrail.schema_migrations") == "1");
    CHECK(db.query("SELECT to_regclass('half')") == "<null>");
    CHECK(db.query("SELECT to_regclass('ok_table')") == "ok_table");
    CHECK(db.query("SELECT string_agg(version || ':' || event, ',' ORDER BY id) FROM pgrail.migration_events") ==
          "1:applied,2:failed");
    REQUIRE(audit.records.size() == 2);
    CHECK(audit.records[1]["event"] == "failed");
    CHECK(audit.records[1]["outcome"] == "failed");
    CHECK(runner.snapshot()->status()[1].state == State::pending);
}

TEST_CASE("statement_timeout and lock_timeout apply to each migration", "[migrations]") {
    TestDatabase db;
    auto registry = registry_of({{"1_sleepy.up.sql", "SELECT pg_sleep(2);"}, {"1_sleepy.down.sql", "SELECT 1;"}});
    RunnerOptions options;
    options.conninfo = db.conninfo();
    options.statement_timeout = std::chrono::milliseconds(300);
    Runner runner(registry, options);
    try {
        (void)runner.up(std::nullopt);
        FAIL("expected a statement timeout");
    } catch (const MigrationError& error) {
        CHECK(error.sqlstate() == "57014");
    }
    CHECK(db.query("SELECT count(*) FROM pgrail.schema_migrations") == "0");
}

TEST_CASE("drift blocks applying until resolved", "[migrations]") {
    TestDatabase db;
    const std::map<std::string, std::string> original = {{"1_a.up.sql", "CREATE TABLE a (id int);"},
                                                         {"1_a.down.sql", "DROP TABLE a;"}};
    REQUIRE(runner_for(db, registry_of(original)).up(std::nullopt).size() == 1);

    SECTION("changed file") {
        auto changed = original;
        changed["1_a.up.sql"] = "CREATE TABLE a (id bigint);";
        changed["2_b.up.sql"] = "CREATE TABLE b (id int);";
        changed["2_b.down.sql"] = "DROP TABLE b;";
        Runner runner = runner_for(db, registry_of(changed));
        const auto snapshot = runner.snapshot();
        CHECK(snapshot->drift());
        CHECK(snapshot->status()[0].state == State::drifted);
        CHECK_THAT(snapshot->status()[0].detail, Catch::Contains("files changed"));
        try {
            (void)runner.up(std::nullopt);
            FAIL("drift must block up");
        } catch (const MigrationError& error) {
            CHECK(error.sqlstate() == "55000");
            CHECK_THAT(error.detail(), Catch::Contains("1 a: files changed"));
            CHECK_THAT(error.hint(), Catch::Contains("pgrail migrate resolve"));
        }
        CHECK_THROWS_AS(runner.plan(std::nullopt), MigrationError);
        CHECK_THROWS_AS(runner.down(std::nullopt), MigrationError);
        CHECK(db.query("SELECT to_regclass('b')") == "<null>");
        runner.resolve("1");
        CHECK_FALSE(runner.snapshot()->drift());
        CHECK(runner.up(std::nullopt).size() == 1);
        CHECK(db.query("SELECT string_agg(event, ',' ORDER BY id) FROM pgrail.migration_events") ==
              "applied,resolved,applied");
    }
    SECTION("vanished files") {
        Runner runner = runner_for(db, registry_of({{"2_b.up.sql", "CREATE TABLE b (id int);"},
                                                    {"2_b.down.sql", "DROP TABLE b;"}}));
        const auto snapshot = runner.snapshot();
        REQUIRE(snapshot->status().size() == 2);
        CHECK(snapshot->status()[0].state == State::drifted);
        CHECK_THAT(snapshot->status()[0].detail, Catch::Contains("vanished"));
        CHECK_THROWS_AS(runner.up(std::nullopt), MigrationError);
        runner.resolve("1");
        CHECK(db.query("SELECT count(*) FROM pgrail.schema_migrations") == "0");
        CHECK(db.query("SELECT to_regclass('a')") == "a");  // resolve never touches the schema
        CHECK(runner.up(std::nullopt).size() == 1);
    }
}

TEST_CASE("a migration without a rollback script is never applicable", "[migrations]") {
    TestDatabase db;
    auto registry = registry_of({{"1_fine.up.sql", "CREATE TABLE fine (id int);"},
                                 {"1_fine.down.sql", "DROP TABLE fine;"},
                                 {"2_no_down.up.sql", "CREATE TABLE no_down (id int);"},
                                 {"3_empty_down.up.sql", "CREATE TABLE empty_down (id int);"},
                                 {"3_empty_down.down.sql", "-- nothing\n"}});
    Runner runner = runner_for(db, registry);
    for (const char* target : {"2", "3"}) {
        try {
            (void)runner.up(std::string(target));
            FAIL("an invalid target must be refused");
        } catch (const MigrationError& error) {
            CHECK(error.sqlstate() == "22023");
            CHECK_THAT(error.what(), Catch::Contains("invalid and can never be applied"));
        }
    }
    CHECK(runner.up(std::nullopt).size() == 1);
    CHECK(db.query("SELECT to_regclass('no_down')") == "<null>");
    CHECK(db.query("SELECT to_regclass('empty_down')") == "<null>");
    CHECK(db.query("SELECT string_agg(version, ',') FROM pgrail.schema_migrations") == "1");
}

TEST_CASE("down --to rolls back newest first; no-transaction scripts run outside a transaction", "[migrations]") {
    TestDatabase db;
    auto registry = registry_of({{"1_t.up.sql", "CREATE TABLE t (id int, c text);"},
                                 {"1_t.down.sql", "DROP TABLE t;"},
                                 {"2_idx.up.sql", "-- pgrail:no-transaction\nCREATE INDEX CONCURRENTLY t_c ON t (c);"},
                                 {"2_idx.down.sql", "-- pgrail:no-transaction\nDROP INDEX CONCURRENTLY t_c;"},
                                 {"3_u.up.sql", "BEGIN;\nCREATE TABLE u (id int);\nCOMMIT;"},
                                 {"3_u.down.sql", "DROP TABLE u;"}});
    Runner runner = runner_for(db, registry);
    REQUIRE(runner.up(std::string("2")).size() == 2);
    CHECK(db.query("SELECT to_regclass('t_c')") == "t_c");
    CHECK(runner.up(std::nullopt).size() == 1);
    const auto rolled = runner.down_to("1");
    REQUIRE(rolled.size() == 2);
    CHECK(rolled[0].version == "3");
    CHECK(rolled[1].version == "2");
    CHECK(db.query("SELECT to_regclass('t_c')") == "<null>");
    CHECK(db.query("SELECT to_regclass('t')") == "t");
    CHECK(runner.down_to("0").size() == 1);
    CHECK(db.query("SELECT count(*) FROM pgrail.schema_migrations") == "0");
}

TEST_CASE("verify proves the seed rollback and catches one that does not restore the schema", "[migrations]") {
    TestDatabase db;
    db.exec(read_file(source_dir / "examples" / "seed.sql"));
    const std::string before = scratch_databases(db);

    SECTION("the seed migration passes; require_verified then allows it") {
        auto registry = std::make_shared<const Registry>(Registry::load(source_dir / "migrations"));
        AuditCapture audit;
        RunnerOptions options;
        options.conninfo = db.conninfo();
        options.require_verified = true;
        options.audit = audit.sink();
        Runner runner(registry, options);
        const std::string checksum = registry->find(seed_version)->checksum;
        CHECK_FALSE(runner.has_passing_verify(seed_version, checksum));
        try {
            (void)runner.up(std::nullopt);
            FAIL("an unverified migration must be refused");
        } catch (const MigrationError& error) {
            CHECK_THAT(error.hint(), Catch::Contains("pgrail migrate verify " + seed_version));
        }
        const auto results = runner.verify(std::nullopt);
        REQUIRE(results.size() == 1);
        INFO(results[0].detail);
        CHECK(results[0].passed);
        CHECK(runner.has_passing_verify(seed_version, checksum));
        CHECK_FALSE(runner.has_passing_verify(seed_version, "other"));
        CHECK(db.query("SELECT to_regclass('pgrail.schema_migrations') IS NOT NULL AND "
                       "(SELECT count(*) FROM information_schema.columns WHERE column_name = 'timezone') = 0") == "t");
        CHECK(runner.up(std::nullopt).size() == 1);
        REQUIRE(audit.records.size() == 2);
        CHECK(audit.records[0]["event"] == "verified");
        CHECK(audit.records[0]["outcome"] == "ok");
        // An applied migration can be verified too.
        const auto again = runner.verify(seed_version);
        REQUIRE(again.size() == 1);
        CHECK(again[0].passed);
    }
    SECTION("a down script that leaves an index behind fails with a diff") {
        auto registry = registry_of({{"1_tz.up.sql", "ALTER TABLE profiles ADD COLUMN tz text;\n"
                                                     "CREATE INDEX profiles_tz ON profiles (tz);"},
                                     {"1_tz.down.sql", "DROP INDEX profiles_tz;"}});
        Runner runner = runner_for(db, registry);
        const auto table = verify_table(runner, std::string("1"));
        REQUIRE(table.rows.size() == 1);
        CHECK(table.rows[0][3] == "failed");
        REQUIRE(table.rows[0][5].has_value());
        CHECK_THAT(*table.rows[0][5], Catch::Contains("does not restore the schema") &&
                                          Catch::Contains("--- schema before up") && Catch::Contains("+") &&
                                          Catch::Contains("tz"));
        CHECK(db.query("SELECT outcome FROM pgrail.migration_events WHERE event = 'verified'") == "failed");
        CHECK_FALSE(runner.has_passing_verify("1", registry->find("1")->checksum));
        CHECK(db.query("SELECT to_regclass('profiles_tz')") == "<null>");  // the target was never touched
    }
    CHECK(scratch_databases(db) == before);  // scratch databases are always dropped
}

TEST_CASE("in-band command dispatch", "[migrations]") {
    TestDatabase db;
    auto registry = registry_of({{"1_a.up.sql", "CREATE TABLE a (id int);"}, {"1_a.down.sql", "DROP TABLE a;"}});
    Runner runner = runner_for(db, registry);
    CHECK(run_command(runner, pgrail::sql::PgrailCommand::status, {}).rows.size() == 1);
    CHECK(run_command(runner, pgrail::sql::PgrailCommand::plan, {}).rows.size() == 1);
    const auto up = run_command(runner, pgrail::sql::PgrailCommand::migrate_up, {"1"});
    REQUIRE(up.rows.size() == 1);
    CHECK(up.rows[0][3] == "applied");
    CHECK(run_command(runner, pgrail::sql::PgrailCommand::migrate_down, {"1"}).rows[0][3] == "rolled_back");
    try {
        (void)run_command(runner, pgrail::sql::PgrailCommand::stats, {});
        FAIL("the admin view's commands are not the migrations module's");
    } catch (const MigrationError& error) {
        CHECK(error.sqlstate() == "42883");
    }
    CHECK_THROWS_AS(run_command(runner, pgrail::sql::PgrailCommand::status, {"x"}), MigrationError);
}

// Issue 13, failure 9: a no-transaction migration that fails halfway.
namespace {

// 2_idx: a no-transaction script whose second statement fails (no column `missing` yet).
std::map<std::string, std::string> partial_files() {
    return {{"1_t.up.sql", "CREATE TABLE t (id int, c text);"},
            {"1_t.down.sql", "DROP TABLE t;"},
            {"2_idx.up.sql", "-- pgrail:no-transaction\n"
                             "CREATE INDEX CONCURRENTLY t_a ON t (id);\n"
                             "CREATE INDEX CONCURRENTLY t_b ON t (missing);\n"
                             "CREATE INDEX CONCURRENTLY t_c ON t (c);\n"},
            {"2_idx.down.sql", "-- pgrail:no-transaction\n"
                               "DROP INDEX CONCURRENTLY IF EXISTS t_c;\n"
                               "DROP INDEX CONCURRENTLY IF EXISTS t_b;\n"
                               "DROP INDEX CONCURRENTLY IF EXISTS t_a;\n"}};
}

const StatusEntry& status_of(const Snapshot& snapshot, const std::string& version) {
    for (const auto& entry : snapshot.status())
        if (entry.version == version) return entry;
    FAIL("no status row for " << version);
    throw;
}

std::string indexes(const TestDatabase& db) {
    return db.query("SELECT coalesce(string_agg(indexname, ',' ORDER BY indexname), '') FROM pg_indexes "
                    "WHERE tablename = 't'");
}

std::string events(const TestDatabase& db) {
    return db.query("SELECT string_agg(version || ':' || event, ',' ORDER BY id) FROM pgrail.migration_events");
}

}  // namespace

TEST_CASE("a no-transaction migration that fails halfway is partial: reported, never retried, resolved by hand",
          "[migrations][partial]") {
    TestDatabase db;
    AuditCapture audit;
    auto registry = registry_of(partial_files());
    Runner runner = runner_for(db, registry, &audit);

    // The failure itself: precise, never "rolled back".
    const auto failure = error_of([&] { (void)runner.up(std::nullopt); });
    CHECK(failure.sqlstate() == "42703");
    CHECK_THAT(failure.message(), Catch::Contains("migration 2_idx failed at statement 2 of 2_idx.up.sql (line 3") &&
                                      Catch::Contains("column \"missing\" does not exist"));
    CHECK_THAT(failure.detail(), Catch::Contains("no-transaction script: statement 1 of 3 ran and was not "
                                                 "undone; statement 2 failed, statement 3 did not run") &&
                                     Catch::Contains("not recorded as applied") &&
                                     Catch::Contains("shows it as partial"));
    CHECK_THAT(failure.detail(), !Catch::Contains("rolled back"));
    CHECK_THAT(failure.hint(), Catch::Contains("pgrail migrate resolve 2 --as applied") &&
                                   Catch::Contains("pgrail migrate resolve 2 --as pending"));
    CHECK(indexes(db) == "t_a");  // statement 1 stayed done
    CHECK(db.query("SELECT string_agg(version, ',') FROM pgrail.schema_migrations") == "1");
    CHECK(events(db) == "1:applied,2:failed");
    CHECK(db.query("SELECT outcome || ' | ' || detail FROM pgrail.migration_events WHERE event = 'failed'")
              .starts_with("failed | up, no-transaction: statements 1..1 of 3 ran and were not undone; migration 2_idx "
                           "failed at statement 2"));
    REQUIRE(audit.records.size() == 2);
    CHECK(audit.records[1]["event"] == "failed");
    CHECK(audit.records[1]["statements_ran"] == 1);
    CHECK(audit.records[1]["statements_total"] == 3);

    // Status: partial, naming what ran and what did not.
    const auto snapshot = runner.snapshot();
    REQUIRE(snapshot->ledger().partial.size() == 1);
    const auto& row = status_of(*snapshot, "2");
    CHECK(row.state == State::partial);
    CHECK_THAT(row.detail, Catch::Contains("statement 1 of 3 ran and was not undone") &&
                               Catch::Contains("ran:\n  1 (line 2): CREATE INDEX CONCURRENTLY t_a ON t (id)") &&
                               Catch::Contains("failed or did not run:\n  2 (line 3)") &&
                               Catch::Contains("3 (line 4): CREATE INDEX CONCURRENTLY t_c") &&
                               // The ledger keeps the server's words without what they quote (a value
                               // of a row, as readily as a name): the CLI's error shows them whole.
                               Catch::Contains("column \"?\" does not exist"));
    const auto table = status_table(*snapshot);
    REQUIRE(table.rows.size() == 2);
    CHECK(table.rows[1][2] == "partial");
    CHECK(run_command(runner, pgrail::sql::PgrailCommand::status, {}).rows[1][2] == "partial");

    // A retry, plan, down and verify refuse: statement 1 is never run again.
    for (const auto& [what, attempt] : std::vector<std::pair<std::string, std::function<void()>>>{
             {"up", [&] { (void)runner.up(std::nullopt); }},
             {"up 2", [&] { (void)runner.up(std::string("2")); }},
             {"plan", [&] { (void)runner.plan(std::nullopt); }},
             {"migrate_up", [&] { (void)run_command(runner, pgrail::sql::PgrailCommand::migrate_up, {}); }},
             {"down", [&] { (void)runner.down(std::nullopt); }},
             {"verify", [&] { (void)runner.verify(std::nullopt); }}}) {
        INFO(what);
        const auto refused = error_of(attempt);
        CHECK(refused.sqlstate() == "55000");
        CHECK_THAT(refused.message(), Catch::Contains("no-transaction script of 2_idx stopped partway") &&
                                          Catch::Contains("not run again"));
        CHECK_THAT(refused.detail(), Catch::Contains("statement 1 of 3 ran and was not undone"));
        CHECK_THAT(refused.detail(), !Catch::Contains("rolled back"));
        CHECK_THAT(refused.hint(), Catch::Contains("pgrail migrate resolve 2 --as applied") &&
                                       Catch::Contains("pgrail migrate resolve 2 --as pending"));
    }
    CHECK(events(db) == "1:applied,2:failed");  // nothing ran, nothing was recorded
    CHECK(indexes(db) == "t_a");

    // resolve needs to be told how the operator left it; --as is only for partial migrations.
    const auto unsaid = error_of([&] { runner.resolve("2"); });
    CHECK(unsaid.sqlstate() == "22023");
    CHECK_THAT(unsaid.message(), Catch::Contains("--as applied or --as pending"));
    CHECK(error_of([&] { runner.resolve("1", Resolution::applied); }).sqlstate() == "22023");

    SECTION("undone by hand, resolved as pending: a retry runs the whole (fixed) script") {
        db.exec("DROP INDEX t_a");
        db.exec("ALTER TABLE t ADD COLUMN missing int");  // what statement 2 needed
        runner.resolve("2", Resolution::pending);
        CHECK(status_of(*runner.snapshot(), "2").state == State::pending);
        CHECK(runner.plan(std::nullopt).size() == 1);
        REQUIRE(runner.up(std::nullopt).size() == 1);
        CHECK(indexes(db) == "t_a,t_b,t_c");
        CHECK(events(db) == "1:applied,2:failed,2:resolved,2:applied");
        CHECK_THAT(db.query("SELECT detail FROM pgrail.migration_events WHERE event = 'resolved'"),
                   Catch::Contains("partial up run (1 of 3 statements of the no-transaction up script had run) "
                                   "undone by hand: pending again"));
        CHECK(audit.records.back()["event"] == "applied");
        CHECK(audit.records[audit.records.size() - 2]["event"] == "resolved");
    }
    SECTION("finished by hand, resolved as applied: then it rolls back like any other") {
        db.exec("ALTER TABLE t ADD COLUMN missing int");
        db.exec("CREATE INDEX CONCURRENTLY t_b ON t (missing)");
        db.exec("CREATE INDEX CONCURRENTLY t_c ON t (c)");
        runner.resolve("2", Resolution::applied);
        const auto resolved = runner.snapshot();
        CHECK(status_of(*resolved, "2").state == State::applied);
        CHECK(resolved->ledger().partial.empty());
        CHECK(db.query("SELECT applied_by || ' ' || execution_ms FROM pgrail.schema_migrations WHERE version = '2'") ==
              "tester 0");
        CHECK(runner.up(std::nullopt).empty());
        REQUIRE(runner.down(std::string("2")).size() == 1);
        CHECK(indexes(db) == "");
        CHECK(events(db) == "1:applied,2:failed,2:resolved,2:rolled_back");
    }
    SECTION("still the same files and no fix: a retry after resolving fails again, and says so precisely") {
        db.exec("DROP INDEX t_a");
        runner.resolve("2", Resolution::pending);
        const auto again = error_of([&] { (void)runner.up(std::nullopt); });
        CHECK(again.sqlstate() == "42703");
        CHECK_THAT(again.detail(), Catch::Contains("statement 1 of 3 ran and was not undone"));
        CHECK_THAT(again.detail(), !Catch::Contains("rolled back"));
        CHECK(status_of(*runner.snapshot(), "2").state == State::partial);
    }
}

TEST_CASE("a no-transaction rollback that fails halfway is partial and still applied", "[migrations][partial]") {
    TestDatabase db;
    auto files = partial_files();
    files["2_idx.up.sql"] = "-- pgrail:no-transaction\nCREATE INDEX CONCURRENTLY t_a ON t (id);\n"
                            "CREATE INDEX CONCURRENTLY t_c ON t (c);\n";
    files["2_idx.down.sql"] = "-- pgrail:no-transaction\nDROP INDEX CONCURRENTLY t_c;\n"
                              "DROP INDEX CONCURRENTLY t_missing;\nDROP INDEX CONCURRENTLY t_a;\n";
    Runner runner = runner_for(db, registry_of(files));
    REQUIRE(runner.up(std::nullopt).size() == 2);

    const auto failure = error_of([&] { (void)runner.down(std::nullopt); });
    CHECK(failure.sqlstate() == "42704");
    CHECK_THAT(failure.message(), Catch::Contains("rollback of 2_idx failed at statement 2 of 2_idx.down.sql"));
    CHECK_THAT(failure.detail(), Catch::Contains("statement 1 of 3 ran and was not undone") &&
                                     Catch::Contains("still recorded as applied"));
    CHECK_THAT(failure.detail(), !Catch::Contains("rolled back;"));
    CHECK(indexes(db) == "t_a");

    const auto snapshot = runner.snapshot();
    CHECK(status_of(*snapshot, "2").state == State::partial);
    CHECK(status_of(*snapshot, "2").applied_at.has_value());
    CHECK_THAT(status_of(*snapshot, "2").detail, Catch::Contains("down (rollback) script 2_idx.down.sql") &&
                                                     Catch::Contains("1 (line 2): DROP INDEX CONCURRENTLY t_c"));
    const auto refused = error_of([&] { (void)runner.down(std::nullopt); });
    CHECK(refused.sqlstate() == "55000");
    CHECK_THAT(refused.hint(), Catch::Contains("finish the rollback by hand (run statements 2..3 of the down script "
                                               "yourself), then run `pgrail migrate resolve 2 --as pending`"));
    CHECK(error_of([&] { (void)runner.down_to("0"); }).sqlstate() == "55000");
    CHECK(indexes(db) == "t_a");

    db.exec("DROP INDEX t_a");  // the rest of the rollback, by hand
    runner.resolve("2", Resolution::pending);
    CHECK(status_of(*runner.snapshot(), "2").state == State::pending);
    CHECK(db.query("SELECT string_agg(version, ',') FROM pgrail.schema_migrations") == "1");
    REQUIRE(runner.up(std::nullopt).size() == 1);
    CHECK(indexes(db) == "t_a,t_c");
}

TEST_CASE("a no-transaction migration whose backend is terminated halfway is recorded as partial",
          "[migrations][partial]") {
    TestDatabase db;
    auto registry = registry_of({{"1_t.up.sql", "-- pgrail:no-transaction\nCREATE TABLE t (id int);\n"
                                                "SELECT pg_sleep(30);\nCREATE TABLE never (id int);"},
                                 {"1_t.down.sql", "DROP TABLE IF EXISTS never;\nDROP TABLE t;"}});
    Runner runner = runner_for(db, registry);
    std::optional<MigrationError> error;
    std::thread apply([&] { error = caught([&] { (void)runner.up(std::nullopt); }); });
    const bool terminated = pgrail::test::eventually(
        [&] {
            return db.query("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND query LIKE 'SELECT pg_sleep(30)%'") == "1";
        },
        std::chrono::seconds(10));
    apply.join();
    REQUIRE(terminated);
    REQUIRE(error);
    CHECK_THAT(error->detail(), Catch::Contains("statement 1 of 3 ran and was not undone"));
    CHECK_THAT(error->detail(), !Catch::Contains("rolled back"));
    CHECK(db.query("SELECT to_regclass('t')") == "t");
    CHECK(db.query("SELECT to_regclass('never')") == "<null>");
    // The failure was recorded (on a new connection if the old one was gone): status knows.
    const auto snapshot = runner.snapshot();
    CHECK(status_of(*snapshot, "1").state == State::partial);
    if (error->sqlstate() == "08006")  // no answer came for statement 2: it may have taken effect
        CHECK_THAT(status_of(*snapshot, "1").detail,
                   Catch::Contains("statement 2 was interrupted (whether it took effect is unknown)"));
    CHECK(error_of([&] { (void)runner.up(std::nullopt); }).sqlstate() == "55000");
}

namespace {

std::string write_partial_dir(const std::string& tag) {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("pgrail_partial_" + tag + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    for (const auto& [name, text] : partial_files()) std::ofstream(dir / name) << text;
    return dir.string();
}

}  // namespace

TEST_CASE("the CLI: status shows a partial migration (exit 2), up refuses, resolve --as clears it",
          "[migrations][partial]") {
    TestDatabase db;
    const auto dir = write_partial_dir("cli");
    const std::string common = "migrate --dir " + dir + " --dsn '" + db.conninfo() + "' ";

    const auto [up_code, up_out] = pgrail_cli(common + "up");
    CHECK(up_code == 1);
    CHECK_THAT(up_out, Catch::Contains("[42703]") && Catch::Contains("statement 1 of 3 ran and was not undone") &&
                           Catch::Contains("HINT:") && Catch::Contains("pgrail migrate resolve 2 --as"));
    CHECK_THAT(up_out, !Catch::Contains("rolled back"));

    const auto [status_code, status_out] = pgrail_cli(common + "status");
    CHECK(status_code == 2);
    CHECK_THAT(status_out, Catch::Contains("| partial |") &&
                               Catch::Contains("1 (line 2): CREATE INDEX CONCURRENTLY t_a ON t (id)"));

    const auto [retry_code, retry_out] = pgrail_cli(common + "up");
    CHECK(retry_code == 1);
    CHECK_THAT(retry_out, Catch::Contains("[55000]") && Catch::Contains("stopped partway") &&
                              Catch::Contains("pgrail migrate resolve 2 --as pending"));
    CHECK_THAT(retry_out, !Catch::Contains("rolled back") && !Catch::Contains("already exists"));

    const auto [bad_code, bad_out] = pgrail_cli(common + "resolve 2 --as sideways");
    CHECK(bad_code != 0);
    db.exec("DROP INDEX t_a");
    const auto [resolve_code, resolve_out] = pgrail_cli(common + "resolve 2 --as pending");
    CHECK(resolve_code == 0);
    CHECK_THAT(resolve_out, Catch::Contains("resolved partial migration 2: now pending"));
    const auto [after_code, after_out] = pgrail_cli(common + "status");
    CHECK(after_code == 0);
    CHECK_THAT(after_out, !Catch::Contains("partial"));
    std::filesystem::remove_all(dir);
}

TEST_CASE("in-band: the failure, pgrail.status() and a retry of a partial migration through pgrail",
          "[migrations][partial][inband]") {
    TestDatabase db;
    const auto dir = write_partial_dir("inband");
    pgrail::test::PgrailProcess proxy("policy: " + pgrail::test::source_dir() + "/policies/default.yaml\n" +
                                      "audit: {file: " + pgrail::test::PgrailProcess::make_temp_dir() +
                                      "/partial-audit.jsonl}\n" + "migrations: {dir: " + dir + ", migrator: \"" +
                                      db.conninfo() + "\"}\n");
    const std::string database = db.conninfo().substr(db.conninfo().find("dbname=") + 7);
    pgrail::test::Conn agent(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(proxy.port()) + " dbname=" +
                                          database.substr(0, database.find(' ')) + " user=agent password=agent")
                                             .c_str()));
    REQUIRE(PQstatus(agent.get()) == CONNECTION_OK);
    const auto error_field = [](const PGresult* result, int field) {
        const char* value = PQresultErrorField(result, field);
        return std::string(value == nullptr ? "" : value);
    };

    pgrail::test::Result up(PQexec(agent.get(), "SELECT * FROM pgrail.migrate_up()"));
    REQUIRE(PQresultStatus(up.get()) == PGRES_FATAL_ERROR);
    CHECK(error_field(up.get(), PG_DIAG_SQLSTATE) == "42703");
    CHECK_THAT(error_field(up.get(), PG_DIAG_MESSAGE_DETAIL),
               Catch::Contains("statement 1 of 3 ran and was not undone") && Catch::Contains("pgrail.status()"));
    CHECK_THAT(error_field(up.get(), PG_DIAG_MESSAGE_DETAIL), !Catch::Contains("rolled back"));
    CHECK_THAT(error_field(up.get(), PG_DIAG_MESSAGE_HINT), Catch::Contains("pgrail migrate resolve 2 --as"));

    const auto status = pgrail::test::run(agent.get(), "SELECT * FROM pgrail.status()");
    REQUIRE(status.size() == 1);
    INFO(status[0]);
    REQUIRE(status[0].rows.size() == 2);
    CHECK(status[0].rows[1][0] == "2");
    CHECK(status[0].rows[1][2] == "partial");
    REQUIRE(status[0].rows[1][7].has_value());
    CHECK_THAT(*status[0].rows[1][7], Catch::Contains("statement 1 of 3 ran and was not undone") &&
                                          Catch::Contains("CREATE INDEX CONCURRENTLY t_a"));

    for (const char* command : {"SELECT * FROM pgrail.migrate_up()", "SELECT * FROM pgrail.plan()"}) {
        INFO(command);
        pgrail::test::Result retry(PQexec(agent.get(), command));
        REQUIRE(PQresultStatus(retry.get()) == PGRES_FATAL_ERROR);
        CHECK(error_field(retry.get(), PG_DIAG_SQLSTATE) == "55000");
        CHECK_THAT(error_field(retry.get(), PG_DIAG_MESSAGE_PRIMARY), Catch::Contains("stopped partway"));
        CHECK_THAT(error_field(retry.get(), PG_DIAG_MESSAGE_DETAIL), !Catch::Contains("rolled back"));
        CHECK_THAT(error_field(retry.get(), PG_DIAG_MESSAGE_HINT), Catch::Contains("pgrail migrate resolve 2"));
    }
    CHECK(indexes(db) == "t_a");
    CHECK(events(db) == "1:applied,2:failed");
    std::filesystem::remove_all(dir);
}

TEST_CASE("a migration runs only once its intent is on record, and a committed one is never reported failed",
          "[migrations][audit]") {
    // Issue 13: a full disk must not let a schema change through unrecorded, nor tell the client
    // "failed" for a change that committed.
    TestDatabase db;
    const auto registry = registry_of({{"1_a.up.sql", "CREATE TABLE audited_a (id int);"},
                                       {"1_a.down.sql", "DROP TABLE audited_a;"}});
    {
        AuditCapture audit;
        audit.fail_from = 0;  // not even the intent can be written
        Runner runner = runner_for(db, registry, &audit);
        CHECK_THROWS_AS(runner.up(std::nullopt), MigrationError);
        CHECK(db.query("SELECT to_regclass('audited_a')") == "<null>");
    }
    {
        AuditCapture audit;
        audit.fail_from = 1;  // the intent is written, the outcome's line is not
        Runner runner = runner_for(db, registry, &audit);
        CHECK(runner.up(std::nullopt).size() == 1);  // committed: reported as done
        CHECK(db.query("SELECT to_regclass('audited_a')") == "audited_a");
        REQUIRE(audit.intents.size() == 1);
        CHECK(audit.intents[0]["event"] == "apply_started");
        CHECK(audit.intents[0]["version"] == "1");
    }
}

// Review 97: the runner's connection took the database's defaults, which no event trigger sees
// (ALTER DATABASE ... SET): with standard_conforming_strings off a string literal hid a second
// statement from pgrail's reading of the script, and with search_path = pg_temp, public a
// registered CREATE TABLE made a temporary table, recorded as applied. The runner reads as
// pgrail does now, and refuses a search_path that puts pg_temp first.
TEST_CASE("the runner reads its script as pgrail does, whatever the database's defaults", "[migrations]") {
    TestDatabase db;
    db.exec("CREATE TABLE profiles (id int PRIMARY KEY, email text)");
    const std::string database = db.query("SELECT current_database()");
    // In pgrail's reading: one ALTER TABLE whose DEFAULT is two adjacent string constants. With
    // standard_conforming_strings off, the server would end the string at the second line's quote
    // and drop the primary key.
    auto registry = registry_of({{"1_nick.up.sql", "ALTER TABLE profiles ADD COLUMN nickname text DEFAULT 'anon\\'\n"
                                                   "', DROP CONSTRAINT profiles_pkey -- ';\n"},
                                 {"1_nick.down.sql", "ALTER TABLE profiles DROP COLUMN nickname;"},
                                 {"2_notes.up.sql", "CREATE TABLE notes (id int);"},
                                 {"2_notes.down.sql", "DROP TABLE notes;"}});
    REQUIRE(registry->migrations().size() == 2);
    db.exec("ALTER DATABASE " + database + " SET standard_conforming_strings = off");
    Runner runner = runner_for(db, registry);
    (void)runner.up(std::string("1"));
    CHECK(db.query("SELECT count(*) FROM pg_constraint WHERE conname = 'profiles_pkey'") == "1");
    db.exec("ALTER DATABASE " + database + " RESET standard_conforming_strings");
    // (Read back with standard_conforming_strings on again: the constant as pgrail read it.)
    CHECK(db.query("SELECT column_default FROM information_schema.columns WHERE table_name = 'profiles' AND "
                   "column_name = 'nickname'") == "'anon\\, DROP CONSTRAINT profiles_pkey -- '::text");
    // A search_path that creates unqualified tables in pg_temp: refused, nothing recorded (also
    // where the schemas before pg_temp do not exist: review 98).
    for (const char* path : {"pg_temp, public", "pg_temp", "\"$user\", pg_temp", "nosuch, pg_temp"}) {
        INFO(path);
        db.exec("ALTER DATABASE " + database + " SET search_path = " + path);
        Runner again = runner_for(db, registry);
        try {
            (void)again.up(std::nullopt);
            FAIL("expected the runner to refuse its search_path");
        } catch (const MigrationError& error) {
            CHECK_THAT(error.what(), Catch::Contains("creates unqualified names in a temporary schema"));
        }
    }
    db.exec("ALTER DATABASE " + database + " RESET search_path");
    CHECK(db.query("SELECT string_agg(version, ',') FROM pgrail.schema_migrations") == "1");
    CHECK(db.query("SELECT to_regclass('public.notes')") == "<null>");
}

// Review 98: a statement of the script may change how the server reads the next one where no
// analysis of the text sees it (UPDATE pg_settings calls set_config; so may a function or a
// trigger). The runner checks its reading before each next statement: the run stops, rolled back.
TEST_CASE("a script that changes the reading under the runner is stopped before its next statement", "[migrations]") {
    TestDatabase db;
    db.exec("CREATE TABLE victim (id int); CREATE TABLE profiles (id int)");
    auto registry = registry_of(
        {{"1_note.up.sql", "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings';\n"
                           "ALTER TABLE profiles ADD COLUMN note text DEFAULT 'x\\' || '; DROP TABLE victim; --';\n"},
         {"1_note.down.sql", "ALTER TABLE profiles DROP COLUMN note;"}});
    REQUIRE(registry->migrations().size() == 1);
    Runner runner = runner_for(db, registry);
    try {
        (void)runner.up(std::nullopt);
        FAIL("expected the run to stop");
    } catch (const MigrationError& error) {
        CHECK_THAT(error.what(), Catch::Contains("after statement 1 of 1_note.up.sql") &&
                                     Catch::Contains("standard_conforming_strings off"));
    }
    CHECK(db.query("SELECT to_regclass('victim')") == "victim");
    CHECK(db.query("SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'") == "0");
    CHECK(db.query("SELECT count(*) FROM pgrail.schema_migrations") == "0");
}

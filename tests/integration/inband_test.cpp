// pgrail's in-band commands through the wire, and the seed scenario end to end: the ad hoc
// ALTER refused with its hint, the registered migration applied and rolled back in-band.
#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"
#include "seed_database.hpp"

using namespace pgrail::test;

namespace {


struct MigratingProxy {
    SeedDatabase db{"inband_"};
    std::string audit_path = PgrailProcess::make_temp_dir() + "/audit.jsonl";
    PgrailProcess process;

    // `migrations_extra`: more keys of the `migrations` map, e.g. ", lock_wait: 500ms";
    // `config_extra`: more of the configuration (e.g. a tls section).
    explicit MigratingProxy(const std::string& migrations_extra = "", const std::string& config_extra = "")
        : process("policy: " + source_dir() + "/policies/default.yaml\n" + "audit: {file: " + audit_path +
                  ", fsync: always}\n" + "migrations: {dir: " + source_dir() + "/migrations, migrator: \"" +
                  db.conninfo_for("app_owner") + "\"" + migrations_extra + "}\n" + config_extra) {}

    [[nodiscard]] Conn connect(const std::string& user) const { return db.connect_through(process, user); }
};

const std::string seed_version = "20261125090000";

std::string column_count(PGconn* conn) {
    return scalar(conn, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'profiles' "
                        "AND column_name = 'timezone'");
}

}  // namespace

TEST_CASE("the seed scenario end to end through pgrail", "[inband]") {
    MigratingProxy proxy;
    auto agent = proxy.connect("agent");
    auto direct = admin();

    // 1. The ad hoc change is refused with a message that names the way: it is the statement of
    // the registered (pending) migration, which the agent applies instead.
    Result refused(PQexec(agent.get(), "ALTER TABLE profiles ADD COLUMN timezone text"));
    CHECK(std::string(PQresultErrorField(refused.get(), PG_DIAG_SQLSTATE)) == "42501");
    CHECK_THAT(PQresultErrorField(refused.get(), PG_DIAG_MESSAGE_PRIMARY),
               Catch::Contains("SELECT * FROM pgrail.migrate_up('" + seed_version + "')"));
    CHECK_THAT(PQresultErrorField(refused.get(), PG_DIAG_MESSAGE_HINT), Catch::Contains("pgrail.status()"));

    // 2. status(): the registered migration, pending, with its rollback.
    const auto status = run(agent.get(), "SELECT * FROM pgrail.status()");
    REQUIRE(status.size() == 1);
    REQUIRE(status[0].rows.size() == 1);
    const auto& columns = status[0].columns;
    CHECK(columns.at(0).starts_with("version:"));
    CHECK(status[0].rows[0][0] == seed_version);
    CHECK(status[0].rows[0][2] == "pending");
    CHECK(status[0].rows[0][5] == "t");

    // The same through the extended protocol (what drivers and ORMs send).
    Result extended(PQexecParams(agent.get(), "SELECT * FROM pgrail.status()", 0, nullptr, nullptr, nullptr, nullptr, 0));
    REQUIRE(PQresultStatus(extended.get()) == PGRES_TUPLES_OK);
    CHECK(PQntuples(extended.get()) == 1);
    CHECK(std::string(PQgetvalue(extended.get(), 0, 0)) == seed_version);

    // 3. Apply in-band: the column appears, the old rows are untouched (no rewrite).
    Conn owner_direct(PQconnectdb(proxy.db.conninfo_for("app_owner").c_str()));
    const auto relfilenode_before = scalar(owner_direct.get(), "SELECT pg_relation_filenode('profiles')");
    const auto applied = run(agent.get(), "SELECT * FROM pgrail.migrate_up()");
    REQUIRE(applied.at(0).status == "PGRES_TUPLES_OK");
    CHECK(applied[0].rows.at(0)[0] == seed_version);
    CHECK(column_count(owner_direct.get()) == "1");
    CHECK(scalar(owner_direct.get(), "SELECT count(*) FROM profiles WHERE timezone IS NULL") == "4");
    CHECK(scalar(owner_direct.get(), "SELECT pg_relation_filenode('profiles')") == relfilenode_before);
    CHECK(scalar(owner_direct.get(), "SELECT applied_by FROM pgrail.schema_migrations") == "agent");
    CHECK(run(agent.get(), "SELECT * FROM pgrail.status()").at(0).rows.at(0)[2] == "applied");

    // 4. The agent may not roll back (default policy); the schema owner may.
    Result agent_down(PQexec(agent.get(), ("SELECT * FROM pgrail.migrate_down('" + seed_version + "')").c_str()));
    CHECK(std::string(PQresultErrorField(agent_down.get(), PG_DIAG_SQLSTATE)) == "42501");
    auto owner = proxy.connect("app_owner");
    const auto rolled_back = run(owner.get(), "SELECT * FROM pgrail.migrate_down('" + seed_version + "')");
    REQUIRE(rolled_back.at(0).status == "PGRES_TUPLES_OK");
    CHECK(column_count(owner_direct.get()) == "0");
    CHECK(scalar(owner_direct.get(), "SELECT count(*) FROM pgrail.migration_events WHERE event = 'rolled_back'") == "1");

    // 5. Every command and schema change is on record.
    std::vector<nlohmann::json> lines;
    std::ifstream in(proxy.audit_path);
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    auto count = [&](const std::string& event) {
        return std::count_if(lines.begin(), lines.end(), [&](const auto& line) { return line.value("event", "") == event; });
    };
    CHECK(count("statement_refused") == 2);  // the ALTER and the agent's migrate_down
    CHECK(count("command") >= 5);
    CHECK(count("applied") == 1);
    CHECK(count("rolled_back") == 1);
}

TEST_CASE("a migrator's DDL passes only when it equals a registered statement", "[inband]") {
    MigratingProxy proxy;
    auto owner = proxy.connect("app_owner");
    // Spelled differently, structurally equal to the pending up script: allowed.
    CHECK(run(owner.get(), "alter table   PROFILES add column timezone TEXT -- via a migration tool").at(0).status ==
          "PGRES_COMMAND_OK");
    // Anything else is still an ad hoc change.
    const auto other = run(owner.get(), "ALTER TABLE profiles ADD COLUMN locale text");
    CHECK(other.at(0).sqlstate == "42501");
    // The agent is no migrator: even the registered statement is refused.
    auto agent = proxy.connect("agent");
    CHECK(run(agent.get(), "ALTER TABLE profiles DROP COLUMN timezone").at(0).sqlstate == "42501");

    // The schema change that passed is on record (it was written before the server ran it),
    // redacted like every statement; pgrail.* arguments that are no version are redacted too.
    CHECK(run(agent.get(), "SELECT * FROM pgrail.migrate_up('secret-token-42')").at(0).status == "PGRES_FATAL_ERROR");
    const auto audit = read_file(proxy.audit_path);
    std::vector<nlohmann::json> forwarded;
    std::istringstream lines(audit);
    for (std::string line; std::getline(lines, line);) {
        const auto event = nlohmann::json::parse(line);
        if (event.value("event", "") == "schema_change_forwarded") forwarded.push_back(event);
    }
    REQUIRE(forwarded.size() == 1);
    CHECK(forwarded[0]["user"] == "app_owner");
    CHECK(forwarded[0]["rule"] == "owner");
    CHECK(forwarded[0]["statements"].at(0)["tag"] == "ALTER TABLE");
    CHECK(forwarded[0]["statements"].at(0)["statement"] == "alter table   PROFILES add column timezone TEXT");
    CHECK(audit.find("secret-token-42") == std::string::npos);
}

TEST_CASE("SIGHUP reloads the migrations directory; files without a rollback stay unapplicable", "[inband][reload]") {
    SeedDatabase db{"inband_"};
    const auto dir = PgrailProcess::make_temp_dir();
    for (const char* suffix : {".up.sql", ".down.sql"}) {
        const std::string name = seed_version + "_add_profiles_timezone" + suffix;
        write_file(dir + "/" + name, read_file(source_dir() + "/migrations/" + name));
    }
    // The audit file lives elsewhere: every file in the migrations directory is reported.
    PgrailProcess process("policy: " + source_dir() + "/policies/default.yaml\n" + "audit: {file: " +
                          PgrailProcess::make_temp_dir() + "/audit.jsonl}\n" + "migrations: {dir: " + dir + ", migrator: \"" +
                          db.conninfo_for("app_owner") + "\"}\n");
    Conn agent(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(process.port()) + " dbname=" + db.name +
                            " user=agent password=agent")
                               .c_str()));
    REQUIRE(PQstatus(agent.get()) == CONNECTION_OK);
    CHECK(run(agent.get(), "SELECT * FROM pgrail.status()").at(0).rows.size() == 1);

    write_file(dir + "/20261126000000_add_profiles_locale.up.sql", "ALTER TABLE profiles ADD COLUMN locale text;\n");
    write_file(dir + "/20261126000000_add_profiles_locale.down.sql", "ALTER TABLE profiles DROP COLUMN locale;\n");
    write_file(dir + "/20261127000000_no_rollback.up.sql", "ALTER TABLE profiles ADD COLUMN nickname text;\n");
    process.reload();
    std::vector<Outcome> status;
    REQUIRE(eventually([&] {
        status = run(agent.get(), "SELECT * FROM pgrail.status()");
        return status.at(0).rows.size() == 3;
    }, std::chrono::seconds(5)));
    const auto& rows = status[0].rows;
    CHECK(rows[1][0] == "20261126000000");
    CHECK(rows[1][2] == "pending");
    CHECK(rows[2][0] == "20261127000000");
    CHECK(rows[2][2] == "invalid");
    CHECK(PQstatus(agent.get()) == CONNECTION_OK);  // the session lived through the reload

    // Applying everything applies the two registered migrations, never the one without a rollback.
    const auto applied = run(agent.get(), "SELECT * FROM pgrail.migrate_up()");
    REQUIRE(applied.at(0).status == "PGRES_TUPLES_OK");
    CHECK(applied[0].rows.size() == 2);
    Conn owner(PQconnectdb(db.conninfo_for("app_owner").c_str()));
    CHECK(scalar(owner.get(), "SELECT count(*) FROM information_schema.columns WHERE table_name = 'profiles' "
                              "AND column_name IN ('timezone', 'locale', 'nickname')") == "2");
}

namespace {

using namespace std::chrono_literals;

const std::string lock_key = "8099568217555234151";  // pgrail::migrations::advisory_lock_key

// Waits up to `timeout` for the query sent on `conn` to finish; true when its results are in.
bool finishes_within(PGconn* conn, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        if (PQconsumeInput(conn) == 0 || PQisBusy(conn) == 0) return true;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left <= 0ms) return false;
        pollfd wait{PQsocket(conn), POLLIN, 0};
        (void)::poll(&wait, 1, static_cast<int>(std::min(left, 50ms).count()));
    }
}

// The first result of the query sent on `conn`; the rest are drained.
Result first_result(PGconn* conn) {
    Result first(PQgetResult(conn));
    while (Result more{PQgetResult(conn)}) {
    }
    return first;
}

std::string field(const PGresult* result, int code) {
    const char* value = PQresultErrorField(result, code);
    return value == nullptr ? "" : value;
}

double seconds_since(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// How many of pgrail's runner connections are open on the database (they name themselves).
std::string runner_connections(PGconn* observer) {
    return scalar(observer, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgrail-migrate' "
                            "AND datname = current_database()");
}

}  // namespace

TEST_CASE("pgrail's lock key held by another session: status and plan answer, migrate_up fails naming the holder",
          "[inband][lock]") {
    MigratingProxy proxy(", lock_wait: 4s");
    Conn holder(PQconnectdb(proxy.db.conninfo_for("postgres").c_str()));
    REQUIRE(PQstatus(holder.get()) == CONNECTION_OK);
    const auto pid = scalar(holder.get(), "SELECT pg_backend_pid()");
    REQUIRE(run(holder.get(), "SELECT pg_advisory_lock(" + lock_key + ")").at(0).status == "PGRES_TUPLES_OK");

    // One session's migrate_up waits for the lock ...
    auto waiting = proxy.connect("agent");
    const auto sent = std::chrono::steady_clock::now();
    REQUIRE(PQsendQuery(waiting.get(), "SELECT * FROM pgrail.migrate_up()") == 1);
    std::this_thread::sleep_for(200ms);

    // ... while another session's read-only commands answer at once (issue 13 item 8).
    auto reader = proxy.connect("agent");
    for (const char* command : {"SELECT * FROM pgrail.status()", "SELECT * FROM pgrail.plan()"}) {
        INFO(command);
        REQUIRE(PQsendQuery(reader.get(), command) == 1);
        REQUIRE(finishes_within(reader.get(), 1500ms));  // well under the 4 s lock wait
        const auto answer = first_result(reader.get());
        REQUIRE(PQresultStatus(answer.get()) == PGRES_TUPLES_OK);
        CHECK(PQntuples(answer.get()) == 1);
        CHECK(std::string(PQgetvalue(answer.get(), 0, PQfnumber(answer.get(), "version"))) == seed_version);
    }
    CHECK_FALSE(finishes_within(waiting.get(), 0ms));  // the apply is still waiting

    // The apply gives up after about lock_wait, naming the holder and how to end it.
    REQUIRE(finishes_within(waiting.get(), 15s));
    const auto waited = seconds_since(sent);
    const auto refused = first_result(waiting.get());
    CHECK(PQresultStatus(refused.get()) == PGRES_FATAL_ERROR);
    CHECK(field(refused.get(), PG_DIAG_SQLSTATE) == "55P03");
    CHECK_THAT(field(refused.get(), PG_DIAG_MESSAGE_PRIMARY), Catch::Contains("pid " + pid));
    CHECK_THAT(field(refused.get(), PG_DIAG_MESSAGE_DETAIL), Catch::Contains("user postgres"));
    CHECK_THAT(field(refused.get(), PG_DIAG_MESSAGE_HINT), Catch::Contains("pg_terminate_backend(" + pid + ")"));
    CHECK(waited >= 3.9);
    CHECK(waited < 15);
    CHECK(PQstatus(waiting.get()) == CONNECTION_OK);  // an ordinary error: the session goes on
    CHECK(run(waiting.get(), "SELECT * FROM pgrail.status()").at(0).rows.at(0)[2] == "pending");

    // Released: migrate_up applies.
    REQUIRE(run(holder.get(), "SELECT pg_advisory_unlock(" + lock_key + ")").at(0).rows.at(0)[0] == "t");
    const auto applied = run(waiting.get(), "SELECT * FROM pgrail.migrate_up()");
    REQUIRE(applied.at(0).status == "PGRES_TUPLES_OK");
    CHECK(applied[0].rows.at(0)[0] == seed_version);
    CHECK(column_count(holder.get()) == "1");
}

// The analysis cache shares an analysis between texts that differ only in literal values; the
// lock key is a literal value, so a key seen before must not open the way for pgrail's own.
// (5000000000 is lexed as pgrail's key is, past int4: the same shape.)
TEST_CASE("pgrail's lock key is refused even right after other keys of the same shape", "[inband][lock]") {
    MigratingProxy proxy;
    auto agent = proxy.connect("agent");
    for (const char* key : {"1", "5000000000"}) {
        REQUIRE(run(agent.get(), std::string("SELECT pg_advisory_lock(") + key + ")").at(0).status ==
                "PGRES_TUPLES_OK");
        REQUIRE(run(agent.get(), std::string("SELECT pg_advisory_unlock(") + key + ")").at(0).rows.at(0)[0] == "t");
    }
    for (const std::string function : {"pg_advisory_lock", "pg_try_advisory_lock"}) {
        INFO(function);
        const auto refused = run(agent.get(), "SELECT " + function + "(" + lock_key + ")").at(0);
        CHECK(refused.sqlstate == "42501");
        CHECK_THAT(refused.message, Catch::Contains("pgrail's migration lock"));
    }
    auto observer = admin();
    CHECK(scalar(observer.get(), "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = " +
                                     std::to_string(std::stoull(lock_key) & 0xffffffffULL)) == "0");
    CHECK(run(agent.get(), "SELECT 1").at(0).status == "PGRES_TUPLES_OK");
}

TEST_CASE("an in-band migrate_up whose client disconnects while it waits for the lock is never applied",
          "[inband][abandon]") {
    // Over TLS the client's Terminate and close_notify are encrypted: pgrail reads them through
    // the leg's TLS, not from the socket.
    const bool tls = GENERATE(false, true);
    INFO("client leg TLS: " << tls);
    std::string tls_config;
    if (tls) {
        const auto certs = PgrailProcess::make_temp_dir() + "/certs";
        REQUIRE(shell(source_dir() + "/scripts/test-certs.sh " + certs + " 2>&1").first == 0);
        tls_config = "tls:\n  client:\n    mode: require\n    cert_file: " + certs + "/server.crt\n    key_file: " +
                     certs + "/server.key\n";
    }
    MigratingProxy proxy(", lock_wait: 20s", tls_config);
    Conn holder(PQconnectdb(proxy.db.conninfo_for("postgres").c_str()));
    REQUIRE(PQstatus(holder.get()) == CONNECTION_OK);
    REQUIRE(run(holder.get(), "SELECT pg_advisory_lock(" + lock_key + ")").at(0).status == "PGRES_TUPLES_OK");

    Conn client(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(proxy.process.port()) + " dbname=" +
                             proxy.db.name + " user=agent password=agent sslmode=" + (tls ? "require" : "disable"))
                                .c_str()));
    REQUIRE(PQstatus(client.get()) == CONNECTION_OK);
    CHECK(PQsslInUse(client.get()) == (tls ? 1 : 0));
    REQUIRE(PQsendQuery(client.get(), "SELECT * FROM pgrail.migrate_up()") == 1);
    // pgrail's runner is waiting for the lock on a connection of its own.
    REQUIRE(eventually([&] { return runner_connections(holder.get()) == "1"; }, 10s));

    SECTION("the client's connection drops") {
        ::shutdown(PQsocket(client.get()), SHUT_RDWR);
        client.reset();
    }
    SECTION("the client says Terminate and closes (PQfinish)") {
        client.reset();
    }

    // The runner stops waiting (it does not sit out the 20 s) ...
    CHECK(eventually([&] { return runner_connections(holder.get()) == "0"; }, 10s));
    // ... and once the lock is free nothing is applied, not even a few seconds later.
    REQUIRE(run(holder.get(), "SELECT pg_advisory_unlock(" + lock_key + ")").at(0).rows.at(0)[0] == "t");
    std::this_thread::sleep_for(3s);
    CHECK(column_count(holder.get()) == "0");
    // The runner creates the ledger only once it holds the lock: it never did.
    CHECK(scalar(holder.get(), "SELECT to_regclass('pgrail.schema_migrations') IS NULL") == "t");
    CHECK(eventually([&] { return read_file(proxy.audit_path).find("\"sqlstate\":\"57014\"") != std::string::npos; },
                     5s));

    // pgrail serves on, and the migration is still there to apply.
    auto agent = proxy.connect("agent");
    CHECK(run(agent.get(), "SELECT * FROM pgrail.status()").at(0).rows.at(0)[2] == "pending");
}

TEST_CASE("a session whose server leaves while pgrail works for it does not take pgrail down", "[inband][crash]") {
    // Issue 13: the server closes the session (idle_session_timeout) while an in-band command
    // runs on the blocking pool, or a long new text is analysed on the analysis pool: that
    // session ends, and pgrail, with every other session, stays up.
    MigratingProxy proxy;
    auto bystander = proxy.connect("agent");
    std::string long_text = "SELECT count(*) FROM generate_series(1, 3) AS g(id) WHERE id IN (";
    for (int value = 1; value <= 8000; ++value) long_text += (value > 1 ? "," : "") + std::to_string(value);
    long_text += ")";
    for (int attempt = 0; attempt < 5; ++attempt) {
        for (const std::string& work : {std::string("SELECT * FROM pgrail.status()"),
                                        long_text + " AND " + std::to_string(attempt) + " = " + std::to_string(attempt)}) {
            // Sent at once after the SET: the backend, idle while pgrail works on the text or the
            // command, times out 5 ms later, in the middle of that work.
            auto victim = proxy.connect("agent");
            (void)run(victim.get(), "SET idle_session_timeout = '5ms'; SELECT 1; " + work);
            (void)run(victim.get(), work);  // an error or a closed connection: either is the session's own end
        }
    }
    REQUIRE(proxy.process.running());
    CHECK(scalar(bystander.get(), "SELECT 1") == "1");
    auto fresh = proxy.connect("agent");
    CHECK(scalar(fresh.get(), "SELECT 2") == "2");
}

namespace {

// Restarts the cluster's PostgreSQL (pg_ctl restart, as the postgres OS user when root) and
// waits until it answers again.
void restart_postgres(const std::string& mode) {
    const char* dir = std::getenv("PGRAIL_CLUSTER_DIR");
    REQUIRE(dir != nullptr);
    std::string data, bin, log;
    std::istringstream env(read_file(std::string(dir) + "/env"));
    for (std::string line; std::getline(env, line);) {
        const auto eq = line.find('=');
        if (eq == std::string::npos) continue;
        const auto key = line.substr(0, eq), value = line.substr(eq + 1);
        if (key == "PG_DATA") data = value;
        if (key == "PG_BIN") bin = value;
        if (key == "PG_LOG") log = value;
    }
    const std::string as_postgres = geteuid() == 0 ? "runuser -u postgres -- " : "";
    const std::string command = as_postgres + bin + "/pg_ctl -D " + data + " -l " + log + " -m " + mode +
                                " -w -t 60 restart >/dev/null 2>&1";
    CHECK(std::system(command.c_str()) == 0);
    CHECK(eventually([] { return PQstatus(try_connect(conninfo(Route::direct, "postgres")).get()) == CONNECTION_OK; },
                     std::chrono::seconds(30)));
}

}  // namespace

TEST_CASE("chaos: pgrail stays up and its audit whole while backends, clients and the server fail", "[inband][chaos]") {
    // Issue 13: for a bounded time, sessions run allowed statements, long new texts, refusals,
    // pgrail commands and migrations, while backends are terminated, sessions get tiny
    // idle_session_timeouts, clients vanish mid-message, and PostgreSQL restarts (fast, then
    // immediate). Every failure is some session's own end; pgrail stays up and serves new ones.
    MigratingProxy proxy;
    std::atomic<bool> stop{false};
    std::atomic<int> actions{0}, failures{0};
    const auto worker = [&](unsigned seed) {
        std::mt19937 random(seed);
        while (!stop.load()) {
            const int action = static_cast<int>(random() % 7);
            Conn conn(PQconnectdb(proxy.process.conninfo(action == 6 ? "app_owner" : "agent").c_str()));
            if (PQstatus(conn.get()) != CONNECTION_OK) {
                ++failures;
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
                continue;
            }
            PQsetNoticeProcessor(conn.get(), [](void*, const char*) {}, nullptr);
            const auto exec = [&](const std::string& sql) {
                Result result(PQexec(conn.get(), sql.c_str()));
                if (PQresultStatus(result.get()) == PGRES_FATAL_ERROR) ++failures;
            };
            switch (action) {
                case 0: exec("SELECT count(*) FROM profiles WHERE id > 0"); break;
                case 1: {  // a new text of 1 KiB (its I/O thread's while the budget lasts) or 5 KiB (the pool's)
                    std::string text = "SELECT " + std::to_string(random()) + " WHERE 1 IN (";
                    const int values = random() % 2 ? 300 : 1300;
                    for (int value = 0; value < values; ++value) text += (value ? "," : "") + std::to_string(value);
                    exec(text + ")");
                    break;
                }
                case 2: exec("ALTER TABLE profiles ADD COLUMN chaos_" + std::to_string(random() % 1000) + " int"); break;
                case 3: exec(random() % 2 ? "SELECT * FROM pgrail.status()" : "SELECT * FROM pgrail.plan()"); break;
                case 4:
                    exec("SET idle_session_timeout = '5ms'");
                    std::this_thread::sleep_for(std::chrono::milliseconds(random() % 20));
                    exec(random() % 2 ? "SELECT * FROM pgrail.status()" : "SELECT 1");
                    break;
                case 5: {  // half a Query message, then gone
                    const std::string partial = query_message("SELECT 1").substr(0, 1 + random() % 8);
                    (void)write_fd(PQsocket(conn.get()), partial);
                    break;
                }
                case 6:
                    exec(random() % 2 ? "SELECT * FROM pgrail.migrate_up()"
                                      : "SELECT * FROM pgrail.migrate_down('" + seed_version + "')");
                    break;
            }
            ++actions;
        }
    };
    std::vector<std::thread> workers;
    for (unsigned index = 0; index < 6; ++index) workers.emplace_back(worker, 1000 + index);

    // The faults, in a fixed order with pauses between them.
    const auto pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(1500)); };
    for (int round = 0; round < 3; ++round) {
        pause();
        auto direct = admin();
        (void)run(direct.get(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                                "AND datname = '" + proxy.db.name + "'");
    }
    pause();
    restart_postgres("fast");
    pause();
    restart_postgres("immediate");
    pause();
    stop.store(true);
    for (auto& thread : workers) thread.join();

    INFO("actions " << actions.load() << ", failed " << failures.load());
    CHECK(actions.load() > 50);
    REQUIRE(proxy.process.running());
    CHECK(eventually([&] {
        Conn conn(PQconnectdb(proxy.process.conninfo("agent").c_str()));
        if (PQstatus(conn.get()) != CONNECTION_OK) return false;
        Result result(PQexec(conn.get(), "SELECT 1"));
        return PQresultStatus(result.get()) == PGRES_TUPLES_OK;
    }, std::chrono::seconds(30)));
    // Every audit line is whole.
    std::istringstream audit(read_file(proxy.audit_path));
    std::size_t lines = 0;
    for (std::string line; std::getline(audit, line); ++lines) {
        INFO("audit line " << lines + 1 << ": " << line);
        CHECK(nlohmann::json::accept(line));
    }
    CHECK(lines > 0);
    CHECK(proxy.process.log().find("terminate called") == std::string::npos);
}

// The audit trail through a running pgrail, as an operator's machine treats it: rotation by mv,
// rm and a real logrotate run, a full disk, and a slow disk under `fsync: always`.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"
#include "seed_database.hpp"

using namespace pgrail::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string refused_statement = "ALTER TABLE profiles ADD COLUMN nickname text";

// Every line of an audit file, parsed (fails the test on a line that is not whole JSON).
std::vector<nlohmann::json> audit_lines(const std::string& path) {
    std::vector<nlohmann::json> lines;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        INFO(path << ": " << line);
        REQUIRE(nlohmann::json::accept(line));
        lines.push_back(nlohmann::json::parse(line));
    }
    return lines;
}

std::size_t refusals_in(const std::string& path) {
    std::size_t count = 0;
    for (const auto& line : audit_lines(path)) count += line.value("event", "") == "statement_refused";
    return count;
}

// Sends a startup packet from `source` (a loopback address of its own: libpq cannot choose one)
// and reads the answer until pgrail closes the connection.
std::string startup_from(const char* source, int port, const std::string& parameters) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    REQUIRE(::inet_pton(AF_INET, source, &local.sin_addr) == 1);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) == 0);
    sockaddr_in remote{};
    remote.sin_family = AF_INET;
    remote.sin_port = htons(static_cast<std::uint16_t>(port));
    REQUIRE(::inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr) == 1);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof remote) == 0);
    std::string packet(8, '\0');
    packet += parameters;
    packet += '\0';
    const auto put32 = [&](std::size_t at, std::uint32_t value) {
        for (int i = 0; i < 4; ++i) packet[at + i] = static_cast<char>(value >> (24 - 8 * i));
    };
    put32(0, static_cast<std::uint32_t>(packet.size()));
    put32(4, 196608);  // protocol 3.0
    REQUIRE(::write(fd, packet.data(), packet.size()) == static_cast<ssize_t>(packet.size()));
    std::string answer;
    char buffer[4096];
    for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) answer.append(buffer, static_cast<std::size_t>(n));
    ::close(fd);
    return answer;
}

std::string sqlstate_of(PGconn* conn, const std::string& sql) {
    Result result(PQexec(conn, sql.c_str()));
    const char* state = PQresultErrorField(result.get(), PG_DIAG_SQLSTATE);
    return state == nullptr ? "" : state;
}

// pgrail in front of a seed database, its audit file at `audit_path`, its migrations the
// repository's (the seed migration), applied in-band by the owner's connection.
struct AuditedProxy {
    SeedDatabase db{"audit_"};
    std::string audit_path;
    PgrailProcess process;

    // `audit_settings`: more of the audit map (", refusal_burst_bytes: 16384").
    AuditedProxy(std::string path, std::map<std::string, std::string> environment = {},
                 const std::string& audit_settings = "")
        : audit_path(std::move(path)),
          process("policy: " + source_dir() + "/policies/default.yaml\n" + "audit: {file: " + audit_path +
                      ", fsync: always" + audit_settings + "}\n" + "migrations: {dir: " + source_dir() +
                      "/migrations, migrator: \"" +
                      db.conninfo_for("app_owner") + "\"}\n",
                  "127.0.0.1", 0, "", std::move(environment)) {}

    [[nodiscard]] Conn connect(const std::string& user) const { return db.connect_through(process, user); }

    void refuse(PGconn* agent, int times) const {
        for (int i = 0; i < times; ++i) REQUIRE(sqlstate_of(agent, refused_statement) == "42501");
    }

    // Waits until pgrail has reloaded `count` times in all (its log says so).
    void wait_for_reloads(std::size_t count) const {
        REQUIRE(eventually([&] { return count_occurrences(process.log(), "reloaded") >= count; }, 10s));
    }
};

// A small tmpfs of the test's own (root only): a disk that fills up on demand.
class SmallDisk {
public:
    explicit SmallDisk(const std::string& dir) : dir_(dir) {
        fs::create_directories(dir_);
        mounted_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=256k") == 0;
    }
    ~SmallDisk() {
        if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    }
    SmallDisk(const SmallDisk&) = delete;
    SmallDisk& operator=(const SmallDisk&) = delete;

    [[nodiscard]] bool mounted() const { return mounted_; }
    // Fills the disk: a filler file takes every free page, then a whole JSON line of padding
    // takes the rest of `log`'s last page (tmpfs allocates pages: appending into a page the
    // file already has needs no free space).
    void fill(const std::string& log) const {
        std::ofstream filler(dir_ + "/filler", std::ios::binary);
        const std::string block(4096, 'x');
        while (filler.write(block.data(), static_cast<std::streamsize>(block.size())) && filler.flush()) {
        }
        const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        const std::size_t slack = (page - fs::file_size(log) % page) % page;
        const std::string empty_line = "{\"pad\":\"\"}\n";
        if (slack >= empty_line.size()) {
            std::ofstream out(log, std::ios::app | std::ios::binary);
            out << "{\"pad\":\"" << std::string(slack - empty_line.size(), 'x') << "\"}\n";
        }
    }
    void free_space() const { fs::remove(dir_ + "/filler"); }

private:
    std::string dir_;
    bool mounted_ = false;
};

}  // namespace

TEST_CASE("rotation through a running pgrail: mv, SIGHUP and rm lose no line", "[audit]") {
    const auto dir = PgrailProcess::make_temp_dir();
    AuditedProxy proxy(dir + "/audit.jsonl");
    auto agent = proxy.connect("agent");

    proxy.refuse(agent.get(), 3);
    fs::rename(dir + "/audit.jsonl", dir + "/audit.jsonl.1");
    proxy.refuse(agent.get(), 3);  // into the moved file until SIGHUP (docs/audit.md)
    proxy.process.reload();
    proxy.wait_for_reloads(1);
    proxy.refuse(agent.get(), 3);  // after SIGHUP: the file at the path
    const std::size_t at_path_after_reload = refusals_in(dir + "/audit.jsonl");
    CHECK(at_path_after_reload == 3);
    CHECK(refusals_in(dir + "/audit.jsonl.1") == 6);

    fs::remove(dir + "/audit.jsonl");
    proxy.refuse(agent.get(), 3);  // made again at the path
    CHECK(refusals_in(dir + "/audit.jsonl") == 3);

    CHECK(at_path_after_reload + refusals_in(dir + "/audit.jsonl.1") == 9);
}

TEST_CASE("rotation by a real logrotate run with the shipped settings loses no line", "[audit]") {
    const auto dir = PgrailProcess::make_temp_dir();
    AuditedProxy proxy(dir + "/audit.jsonl");
    auto agent = proxy.connect("agent");

    // packaging/logrotate/pgrail's rotation settings, with this test's path, owner and signal.
    write_file(dir + "/logrotate.conf", dir + "/audit.jsonl {\n    rotate 3\n    compress\n    delaycompress\n" +
                                            "    missingok\n    notifempty\n    create 0640 root root\n" +
                                            "    postrotate\n        kill -HUP " + std::to_string(proxy.process.pid()) +
                                            "\n    endscript\n}\n");
    const std::string logrotate = "logrotate -f -s " + dir + "/logrotate.state " + dir + "/logrotate.conf";
    if (std::system("command -v logrotate >/dev/null") != 0) {
        WARN("skipped: logrotate is not installed");
        return;
    }

    // Sessions refuse while logrotate runs twice: whatever interleaves, every line is somewhere.
    std::atomic<bool> rotating{true};
    std::atomic<int> refused{0};
    std::thread writer([&] {
        auto conn = proxy.connect("agent");
        while (rotating) {
            if (sqlstate_of(conn.get(), refused_statement) == "42501") ++refused;
        }
    });
    proxy.refuse(agent.get(), 2);
    CHECK(std::system(logrotate.c_str()) == 0);
    proxy.wait_for_reloads(1);
    proxy.refuse(agent.get(), 2);
    CHECK(std::system(logrotate.c_str()) == 0);  // audit.jsonl.1 is compressed now, .jsonl.1 new
    proxy.wait_for_reloads(2);
    rotating = false;
    writer.join();
    proxy.refuse(agent.get(), 2);

    std::size_t found = refusals_in(dir + "/audit.jsonl") + refusals_in(dir + "/audit.jsonl.1");
    REQUIRE(fs::exists(dir + "/audit.jsonl.2.gz"));
    REQUIRE(std::system(("gunzip -k " + dir + "/audit.jsonl.2.gz").c_str()) == 0);
    found += refusals_in(dir + "/audit.jsonl.2");
    CHECK(found == static_cast<std::size_t>(6 + refused.load()));
}

TEST_CASE("a full disk: refusals and reads fail closed, no migration runs unrecorded, no half line", "[audit]") {
    const auto dir = PgrailProcess::make_temp_dir() + "/disk";
    SmallDisk disk(dir);
    if (!disk.mounted()) {
        WARN("skipped: mounting a tmpfs needs root");
        return;
    }
    AuditedProxy proxy(dir + "/audit.jsonl");
    auto agent = proxy.connect("agent");
    proxy.refuse(agent.get(), 1);

    disk.fill(proxy.audit_path);
    // The refusal is still a refusal, with 58030 saying why it cannot be recorded.
    CHECK(sqlstate_of(agent.get(), refused_statement) == "58030");
    // A read command is not answered without its line; nor is a command that fails (helper 73:
    // its error was answered without a line).
    CHECK(sqlstate_of(agent.get(), "SELECT * FROM pgrail.status()") == "58030");
    CHECK(sqlstate_of(agent.get(), "SELECT * FROM pgrail.plan('20991231000000')") == "58030");
    // The migration does not run: its intent cannot be written first.
    CHECK(sqlstate_of(agent.get(), "SELECT * FROM pgrail.migrate_up()") == "58030");
    CHECK(proxy.db.timezone_columns() == "0");
    {
        Conn owner(PQconnectdb(proxy.db.conninfo_for("app_owner").c_str()));
        if (scalar(owner.get(), "SELECT to_regclass('pgrail.schema_migrations') IS NOT NULL") == "t")
            CHECK(scalar(owner.get(), "SELECT count(*) FROM pgrail.schema_migrations") == "0");
    }
    // A proposal is recorded before its audit line: the client hears that it is, not that nothing
    // ran (review 100: answered 58030 "not run" while the ledger held it, later approved and applied).
    {
        (void)run(admin().get(), "ALTER ROLE app_owner CREATEDB");
        const AdminAtExit no_createdb("ALTER ROLE app_owner NOCREATEDB");
        Result proposed(PQexec(agent.get(), "SELECT * FROM pgrail.propose_migration('full_disk_note', "
                                            "'CREATE TABLE full_disk_notes (id int)', 'DROP TABLE full_disk_notes')"));
        REQUIRE(PQresultStatus(proposed.get()) == PGRES_FATAL_ERROR);
        CHECK(std::string(PQresultErrorField(proposed.get(), PG_DIAG_SQLSTATE)) == "58030");
        CHECK_THAT(PQresultErrorField(proposed.get(), PG_DIAG_MESSAGE_PRIMARY), Catch::Contains("is recorded"));
        Conn owner(PQconnectdb(proxy.db.conninfo_for("app_owner").c_str()));
        CHECK(scalar(owner.get(), "SELECT count(*) FROM pgrail.migration_proposals WHERE name = 'full_disk_note'") ==
              "1");
    }
    // The session goes on: what needs no audit line still runs.
    CHECK(scalar(agent.get(), "SELECT count(*) FROM profiles") == "4");

    disk.free_space();
    proxy.refuse(agent.get(), 1);
    Result applied(PQexec(agent.get(), "SELECT * FROM pgrail.migrate_up()"));
    CHECK(PQresultStatus(applied.get()) == PGRES_TUPLES_OK);
    CHECK(proxy.db.timezone_columns() == "1");

    // Every line whole: the two refusals answered 42501, and the migration's intent and outcome.
    const auto lines = audit_lines(proxy.audit_path);
    CHECK(refusals_in(proxy.audit_path) == 2);
    std::size_t started = 0, applied_lines = 0;
    for (const auto& line : lines) {
        started += line.value("event", "") == "apply_started";
        applied_lines += line.value("event", "") == "applied";
    }
    CHECK(started == 1);
    CHECK(applied_lines == 1);
}

TEST_CASE("invalid UTF-8 in a name or an application_name: the refusal is answered and on record", "[audit]") {
    // Helper 73: the size of the refusal's line was measured with a strict JSON dump, which threw;
    // the client's pump died unanswered and the server's kept its backend open for good.
    const auto dir = PgrailProcess::make_temp_dir();
    AuditedProxy proxy(dir + "/audit.jsonl");
    Conn agent(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(proxy.process.port()) + " dbname=" +
                            proxy.db.name + " user=agent password=agent application_name='\xff" "bot'")
                               .c_str()));
    REQUIRE(PQstatus(agent.get()) == CONNECTION_OK);
    CHECK(sqlstate_of(agent.get(), refused_statement) == "42501");
    auto plain = proxy.connect("agent");
    CHECK(sqlstate_of(plain.get(), "DROP TABLE \"\xed\xa0\x80x\"") == "42501");
    CHECK(scalar(plain.get(), "SELECT 1") == "1");
    CHECK(refusals_in(proxy.audit_path) == 2);
}

TEST_CASE("a file size limit: the line is cut back and refused with 58030, pgrail stays up", "[audit]") {
    // Helper 73: SIGXFSZ killed pgrail mid-line; the next pgrail then appended to the half line.
    const auto dir = PgrailProcess::make_temp_dir();
    const auto path = dir + "/audit.jsonl";
    {
        std::ofstream fragment(path, std::ios::binary);
        fragment << "{\"event\":\"statement_refused\",\"stat";  // what a killed writer leaves
    }
    AuditedProxy proxy(path);
    auto agent = proxy.connect("agent");
    proxy.refuse(agent.get(), 1);
    const auto size = fs::file_size(path);
    const rlimit limit{static_cast<rlim_t>(size + 100), RLIM_INFINITY};
    REQUIRE(::prlimit(proxy.process.pid(), RLIMIT_FSIZE, &limit, nullptr) == 0);
    CHECK(sqlstate_of(agent.get(), refused_statement) == "58030");
    CHECK(fs::file_size(path) == size);  // nothing of the line is left
    CHECK(scalar(agent.get(), "SELECT 1") == "1");
    const rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
    REQUIRE(::prlimit(proxy.process.pid(), RLIMIT_FSIZE, &unlimited, nullptr) == 0);
    proxy.refuse(agent.get(), 1);
    // The fragment stands on a line of its own; every other line is whole.
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    REQUIRE(lines.size() == 3);
    CHECK_FALSE(nlohmann::json::accept(lines[0]));
    for (std::size_t i = 1; i < lines.size(); ++i) {
        INFO(lines[i]);
        REQUIRE(nlohmann::json::accept(lines[i]));
        CHECK(nlohmann::json::parse(lines[i]).value("event", "") == "statement_refused");
    }
}

TEST_CASE("fsync: always on a slow disk: a session that refuses waits for its sync, nobody else does",
          "[audit]") {
    const auto dir = PgrailProcess::make_temp_dir();
    // Every fdatasync takes 3 s, as on an overloaded disk.
    AuditedProxy proxy(dir + "/audit.jsonl", {{"LD_PRELOAD", PGRAIL_SLOW_SYNC_SHIM},
                                              {"PGRAIL_TEST_SYNC_DELAY_MS", "3000"},
                                              {"ASAN_OPTIONS", std::string(std::getenv("ASAN_OPTIONS") != nullptr
                                                                               ? std::getenv("ASAN_OPTIONS")
                                                                               : "") +
                                                                   ":verify_asan_link_order=0"}});
    // Four sessions send a refusal each (on both of pgrail's I/O threads, whichever they are
    // given) and wait for its sync.
    std::vector<Conn> refusing;
    for (int i = 0; i < 4; ++i) {
        refusing.push_back(proxy.connect("agent"));
        REQUIRE(PQsendQuery(refusing.back().get(), refused_statement.c_str()) == 1);
    }
    // A refused login (a replication connection) waits for its line's sync too.
    const std::string refused_login = "host=127.0.0.1 port=" + std::to_string(proxy.process.port()) + " dbname=" +
                                      proxy.db.name + " user=agent password=agent replication=database";
    Conn refused_connection(PQconnectStart(refused_login.c_str()));
    REQUIRE(refused_connection != nullptr);
    for (int turns = 0; turns < 4; ++turns) (void)PQconnectPoll(refused_connection.get());  // sends its startup
    // Meanwhile another session's work goes on, and new sessions log in: none of it waits for
    // the sync. Ordering, not timing: all of this is done before the first refusal is answered.
    auto other = proxy.connect("agent");
    for (int i = 0; i < 20; ++i) CHECK(scalar(other.get(), "SELECT count(*) FROM profiles") == "4");
    auto newcomer = proxy.connect("agent");
    CHECK(scalar(newcomer.get(), "SELECT 1") == "1");
    for (auto& conn : refusing) {
        REQUIRE(PQconsumeInput(conn.get()) == 1);
        CHECK(PQisBusy(conn.get()) == 1);  // still waiting for the sync
    }

    PostgresPollingStatusType login = PGRES_POLLING_WRITING;
    while (login != PGRES_POLLING_FAILED && login != PGRES_POLLING_OK) {
        pollfd ready{PQsocket(refused_connection.get()), login == PGRES_POLLING_READING ? short(POLLIN) : short(POLLOUT), 0};
        (void)::poll(&ready, 1, 10000);
        login = PQconnectPoll(refused_connection.get());
    }
    CHECK(login == PGRES_POLLING_FAILED);
    CHECK_THAT(PQerrorMessage(refused_connection.get()), Catch::Contains("pgrail"));
    for (auto& conn : refusing) {
        const auto results = drain(conn.get());
        REQUIRE(results.size() == 1);
        CHECK(results[0].sqlstate == "42501");
    }
    CHECK(refusals_in(proxy.audit_path) == 4);
    std::size_t refused_logins = 0;
    for (const auto& line : audit_lines(proxy.audit_path)) refused_logins += line.value("event", "") == "connection_refused";
    CHECK(refused_logins == 1);
}

TEST_CASE("pgrail audit reads a rotated, compressed set back: filters, summary, follow", "[audit][audit_cli]") {
    const auto dir = PgrailProcess::make_temp_dir();
    AuditedProxy proxy(dir + "/audit.jsonl");
    auto agent = proxy.connect("agent");
    auto owner = proxy.connect("app_owner");
    proxy.refuse(agent.get(), 2);
    fs::rename(dir + "/audit.jsonl", dir + "/audit.jsonl.1");
    proxy.process.reload();
    proxy.wait_for_reloads(1);
    REQUIRE(shell("gzip " + dir + "/audit.jsonl.1").first == 0);  // as logrotate's delaycompress leaves it
    proxy.refuse(agent.get(), 1);
    REQUIRE(sqlstate_of(owner.get(), "DROP TABLE profiles") == "42501");

    const auto [status, text] = pgrail_cli("audit --rotated " + dir + "/audit.jsonl --event statement_refused");
    CHECK(status == 0);
    CHECK(count_occurrences(text, "statement_refused deny") == 4);
    CHECK(count_occurrences(text, "agent@") == 3);
    const auto [summary_status, summary] =
        pgrail_cli("audit --rotated " + dir + "/audit.jsonl --summary --json --user agent 2>/dev/null");
    CHECK(summary_status == 0);
    const auto counts = nlohmann::json::parse(summary);
    CHECK(counts["refusals"] == nlohmann::json::parse(R"([{"rule":"agents","user":"agent","count":3}])"));
    CHECK(counts["top_statements"][0]["count"] == 3);
    // Literals were redacted in the file; the summary groups the redacted text.
    CHECK_THAT(counts["top_statements"][0]["statement"].get<std::string>(), Catch::Contains("ALTER TABLE profiles"));

    CHECK(pgrail_cli("audit " + dir + "/audit.jsonl --since yesterday").first != 0);
    CHECK(pgrail_cli("audit " + dir + "/missing.jsonl").first != 0);

    // --follow prints lines written after it started, across a rotation.
    const auto followed = dir + "/followed.txt";
    const char* binary = std::getenv("PGRAIL_BIN");
    REQUIRE(binary != nullptr);
    REQUIRE(shell(std::string(binary) + " audit -f " + dir + "/audit.jsonl --user agent > " + followed +
                  " 2>&1 & echo $! > " + dir + "/follow.pid")
                .first == 0);
    REQUIRE(eventually([&] { return count_occurrences(read_file(followed), "agent@") == 1; }, 10s));
    proxy.refuse(agent.get(), 1);
    fs::rename(dir + "/audit.jsonl", dir + "/audit.jsonl.2");
    proxy.process.reload();
    proxy.wait_for_reloads(2);
    proxy.refuse(agent.get(), 1);
    CHECK(eventually([&] { return count_occurrences(read_file(followed), "agent@") == 3; }, 10s));
    (void)shell("kill $(cat " + dir + "/follow.pid)");
}

TEST_CASE("what a client can make pgrail write is bounded: unauthenticated refusals, long refusals, 25001",
          "[audit][audit_bounds]") {
    const std::string dir = PgrailProcess::make_temp_dir();
    AuditedProxy proxy(dir + "/audit.jsonl");
    const auto count_of = [&](const std::string& event) {
        std::size_t n = 0;
        for (const auto& line : audit_lines(proxy.audit_path))
            if (line.value("event", "") == event) ++n;
        return n;
    };

    SECTION("a flood of refused startup packets, nobody authenticated: a burst, then counted") {
        // replication=database is refused by the default policy before the server is reached:
        // no password is checked, so the user is only a claim.
        const std::string conninfo = "host=127.0.0.1 port=" + std::to_string(proxy.process.port()) +
                                     " dbname=" + proxy.db.name + " user=postgres password=wrong replication=database";
        for (int i = 0; i < 400; ++i) {
            Conn conn(PQconnectdb(conninfo.c_str()));
            REQUIRE(PQstatus(conn.get()) == CONNECTION_BAD);
        }
        const std::size_t written = count_of("connection_refused");
        INFO(written);
        CHECK(written >= 20);   // the address's burst
        CHECK(written < 100);   // and then 1 a second: 400 connections take far less than 80 s
        // The flood spent its address's budget, not everyone's: a client from another address is
        // on record at once (one global budget left it out too), and its line carries how many
        // were left out before it.
        const std::string parameters = std::string("user\0postgres\0database\0", 23) + proxy.db.name +
                                       std::string("\0replication\0database\0", 22);
        CHECK(startup_from("127.0.0.2", proxy.process.port(), parameters).find("FATAL") != std::string::npos);
        {
            const auto lines = audit_lines(proxy.audit_path);
            REQUIRE_FALSE(lines.empty());
            const auto& last = lines.back();
            CHECK(last.value("client_address", "") == "127.0.0.2");
            CHECK(last.value("event", "") == "connection_refused");
            CHECK(last.value("authenticated", true) == false);
            CHECK(last.value("unaudited_before", 0) > 0);
        }
        // A quiet second gives the flooding address a line back.
        std::this_thread::sleep_for(std::chrono::milliseconds(1100));
        Conn one_more(PQconnectdb(conninfo.c_str()));
        REQUIRE(PQstatus(one_more.get()) == CONNECTION_BAD);
        const auto lines = audit_lines(proxy.audit_path);
        REQUIRE_FALSE(lines.empty());
        CHECK(lines.back().value("client_address", "") == "127.0.0.1");
        CHECK(lines.back().value("event", "") == "connection_refused");
        // Every refusal is a line or counted in the next line's unaudited_before.
        std::size_t accounted = 0;
        for (const auto& line : lines)
            if (line.value("event", "") == "connection_refused") accounted += 1 + line.value("unaudited_before", 0);
        CHECK(accounted == 402);
    }

    SECTION("a refusal of a long statement costs a bounded line") {
        auto agent = proxy.connect("agent");
        std::string names;
        for (int i = 0; i < 4000; ++i) names += (i ? ", " : "") + std::string("\"t") + std::to_string(i) + std::string(50, 'x') + "\"";
        REQUIRE(sqlstate_of(agent.get(), "DROP TABLE " + names) == "42501");
        const auto lines = audit_lines(proxy.audit_path);
        REQUIRE_FALSE(lines.empty());
        const auto& refusal = lines.back();
        CHECK(refusal.value("event", "") == "statement_refused");
        CHECK(refusal["objects"].size() == 32);
        CHECK(refusal.value("objects_omitted", 0) == 4000 - 32);
        CHECK(refusal.value("statement_bytes", 0) > 200000);
        CHECK(refusal.dump().size() < 16 * 1024);
    }

    SECTION("a command's error that quotes its argument is answered, the argument redacted once") {
        // The redaction once searched again where it had put "$1" and found the "1" in it, for ever.
        auto agent = proxy.connect("agent");
        for (const char* argument : {"1", "$"}) {
            const auto answer = run(agent.get(), std::string("SELECT * FROM pgrail.plan('") + argument + "')").at(0);
            CHECK_FALSE(answer.sqlstate.empty());
            const auto lines = audit_lines(proxy.audit_path);
            REQUIRE_FALSE(lines.empty());
            CHECK(lines.back().value("command", "") == "pgrail.plan");
            CHECK(lines.back().value("outcome", "") == "error");
            CHECK(lines.back()["arguments"] == nlohmann::json::array({"$1"}));
        }
    }

    SECTION("migrate_up refused inside a transaction block is on record before the client hears it") {
        auto agent = proxy.connect("agent");
        REQUIRE(run(agent.get(), "BEGIN").at(0).status == "PGRES_COMMAND_OK");
        const auto refused = run(agent.get(), "SELECT * FROM pgrail.migrate_up()").at(0);
        CHECK(refused.sqlstate == "25001");
        const auto lines = audit_lines(proxy.audit_path);
        REQUIRE_FALSE(lines.empty());
        const auto& line = lines.back();
        CHECK(line.value("event", "") == "command");
        CHECK(line.value("command", "") == "pgrail.migrate_up");
        CHECK(line.value("outcome", "") == "error");
        CHECK(line.value("sqlstate", "") == "25001");
    }
}

TEST_CASE("a login refused in a loop is answered later, every refusal on record, other logins untouched",
          "[audit][audit_bounds]") {
    const std::string dir = PgrailProcess::make_temp_dir();
    AuditedProxy proxy(dir + "/audit.jsonl", {}, ", refusal_bytes_per_second: 20000, refusal_burst_bytes: 16384");
    auto agent = proxy.connect("agent");
    proxy.refuse(agent.get(), 40);  // each answered 42501 (a line of ~0.6 KB), the last ~15 after their turn
    CHECK(refusals_in(proxy.audit_path) == 40);
    CHECK(eventually([&] { return count_occurrences(proxy.process.log(), "role agent is refused faster") > 0; }, 10s));
    // plainuser's budget is its own: its refusal is answered at once, and not logged as paced.
    auto other = proxy.connect("plainuser");
    proxy.refuse(other.get(), 1);
    CHECK(refusals_in(proxy.audit_path) == 41);
    CHECK(count_occurrences(proxy.process.log(), "role plainuser is refused faster") == 0);
    // The session is usable as after any refusal.
    CHECK(sqlstate_of(agent.get(), "SELECT 1").empty());
}

TEST_CASE("a client that leaves while its refusal is paced ends its session at once, not after the pace",
          "[audit][audit_bounds]") {
    const std::string dir = PgrailProcess::make_temp_dir();
    // About 30 refusal lines (~0.6 KB each) spend the burst; past it, each is owed ~6 s at 100 bytes/s.
    AuditedProxy proxy(dir + "/audit.jsonl", {}, ", refusal_bytes_per_second: 100, refusal_burst_bytes: 16384");
    auto agent = proxy.connect("agent");
    const std::string pid = scalar(agent.get(), "SELECT pg_backend_pid()");
    const auto in_burst = [&] { return count_occurrences(proxy.process.log(), "role agent is refused faster") == 0; };
    int refused = 0;
    while (in_burst() && refused < 100) {
        REQUIRE(sqlstate_of(agent.get(), refused_statement) == "42501");
        ++refused;
    }
    REQUIRE_FALSE(in_burst());  // the last of those was paced (by up to 6 s)
    // 20 more, pipelined (each its own batch): two minutes of pace owed.
    REQUIRE(PQenterPipelineMode(agent.get()) == 1);
    for (int i = 0; i < 20; ++i) {
        REQUIRE(PQsendQueryParams(agent.get(), refused_statement.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
        REQUIRE(PQpipelineSync(agent.get()) == 1);
    }
    REQUIRE(PQflush(agent.get()) == 0);
    REQUIRE(eventually([&] { return refusals_in(proxy.audit_path) == refused + 1; }, 10s));
    agent.reset();  // Terminate and close, unread behind the paced refusal
    auto observer = admin();
    CHECK(eventually([&] { return scalar(observer.get(), "SELECT count(*) FROM pg_stat_activity WHERE pid = " + pid) == "0"; },
                     20s));
    CHECK(refusals_in(proxy.audit_path) == refused + 1);  // the paced one is on record all the same
}

// listen.unix_socket_dir: pgrail also listens on <dir>/.s.PGSQL.<port>, as PostgreSQL does;
// psql reaches it with -h <dir>, the policy applies as over TCP, the client is "[local]" in the
// log and the audit, the file's mode and group are configurable, a crashed run's socket is
// replaced and a live one is never taken (the lock file holds the owner's pid).
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include <catch2/catch.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"

using namespace pgrail::test;
namespace fs = std::filesystem;

namespace {

// A command line's exit status and its output (stdout and stderr together).
std::pair<int, std::string> run_command(const std::string& command) {
    FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
    REQUIRE(pipe != nullptr);
    std::string output;
    char buffer[4096];
    while (const auto n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
    const int status = ::pclose(pipe);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// psql as `user` (password = the role name) to `host` (an address or a socket directory).
std::pair<int, std::string> psql(const std::string& host, int port, const std::string& sql,
                                 const std::string& user = "agent") {
    return run_command("PGPASSWORD=" + user + " PGCONNECT_TIMEOUT=10 psql -X -At -v ON_ERROR_STOP=1 -h " + host +
                       " -p " + std::to_string(port) + " -U " + user + " -d " + Cluster::get().database + " -c \"" +
                       sql + "\"");
}

std::string socket_file(const std::string& dir, int port) { return dir + "/.s.PGSQL." + std::to_string(port); }

// A socket directory of the test's own, removed at the end.
struct SocketDir {
    std::string path = PgrailProcess::make_temp_dir();
    SocketDir() { fs::permissions(path, fs::perms::all); }
    ~SocketDir() { fs::remove_all(path); }
};

// `pgrail serve` on a configuration the test writes in full (a port the test chooses).
class ServeProcess {
public:
    ServeProcess(const std::string& dir, const std::string& yaml) : log_(dir + "/serve.log") {
        const auto config = dir + "/serve.yaml";
        write_file(config, yaml);
        const char* binary = std::getenv("PGRAIL_BIN");
        REQUIRE(binary != nullptr);
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            ::execl(binary, binary, "serve", "--config", config.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
    }
    ~ServeProcess() {
        if (pid_ > 0) {
            ::kill(pid_, SIGINT);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    ServeProcess(const ServeProcess&) = delete;
    ServeProcess& operator=(const ServeProcess&) = delete;

    [[nodiscard]] pid_t pid() const { return pid_; }
    [[nodiscard]] std::string log() const { return read_file(log_); }
    // SIGTERM and the exit status.
    int stop() {
        ::kill(pid_, SIGTERM);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = 0;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

private:
    std::string log_;
    pid_t pid_ = 0;
};

std::string serve_yaml(const std::string& host, int port, const std::string& socket_dir) {
    return "listen: {host: " + host + ", port: " + std::to_string(port) + ", unix_socket_dir: " + socket_dir +
           "}\nupstream: {host: 127.0.0.1, port: " + std::to_string(Cluster::get().pg_port) +
           "}\nlog: {level: info, format: text}\n";
}

}  // namespace

TEST_CASE("psql over pgrail's Unix socket is served under the same policy as over TCP", "[unix_socket]") {
    SocketDir sockets;
    const auto proxy_dir = PgrailProcess::make_temp_dir();
    const auto audit_path = proxy_dir + "/audit.jsonl";
    std::string socket_path;
    {
        PgrailProcess proxy("policy: " + source_dir() + "/policies/default.yaml\naudit: {file: " + audit_path + "}\n",
                            "127.0.0.1", 0, "", {}, ", unix_socket_dir: " + sockets.path);
        socket_path = socket_file(sockets.path, proxy.port());
        struct stat info {};
        REQUIRE(::stat(socket_path.c_str(), &info) == 0);
        CHECK(S_ISSOCK(info.st_mode));
        CHECK((info.st_mode & 07777) == 0777);  // the default, as PostgreSQL's unix_socket_permissions
        // The lock file beside it names its owner, as PostgreSQL's does.
        CHECK(read_file(socket_path + ".lock").starts_with(std::to_string(proxy.pid()) + "\n"));

        const auto [ok_status, ok_output] = psql(sockets.path, proxy.port(), "SELECT 'over the socket'");
        INFO(ok_output);
        CHECK(ok_status == 0);
        CHECK(ok_output == "over the socket\n");

        // A schema change refused for the agent over the socket exactly as over TCP.
        const std::string ddl = "CREATE TABLE unix_socket_refused (id int)";
        const auto over_socket = psql(sockets.path, proxy.port(), ddl);
        const auto over_tcp = psql("127.0.0.1", proxy.port(), ddl);
        INFO(over_socket.second);
        CHECK(over_socket.first != 0);
        CHECK_THAT(over_socket.second, Catch::Contains("ERROR:") && Catch::Contains("pgrail"));
        CHECK(over_socket == over_tcp);
        auto admin_conn = admin();
        CHECK(scalar(admin_conn.get(), "SELECT count(*) FROM pg_class WHERE relname = 'unix_socket_refused'") == "0");

        // libpq over the socket: the real backend pid too.
        auto conn = try_connect("host=" + sockets.path + " port=" + std::to_string(proxy.port()) +
                                " user=agent password=agent dbname=" + Cluster::get().database);
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        CHECK(PQbackendPID(conn.get()) == std::stoi(scalar(conn.get(), "SELECT pg_backend_pid()")));
        conn.reset();

        // No peer address: the log and the audit say "[local]", as PostgreSQL's log does.
        CHECK(eventually([&] { return proxy.log().find("client=[local]") != std::string::npos; },
                         std::chrono::seconds(5)));
        CHECK_THAT(read_file(audit_path), Catch::Contains("\"client_address\":\"[local]\""));
        CHECK_THAT(proxy.log(), Catch::Contains("listening on Unix socket " + socket_path));
    }
    // Shut down: both files are gone.
    CHECK_FALSE(fs::exists(socket_path));
    CHECK_FALSE(fs::exists(socket_path + ".lock"));
    fs::remove_all(proxy_dir);
}

TEST_CASE("listen.unix_socket_mode and unix_socket_group set the socket file's access", "[unix_socket]") {
    SocketDir sockets;
    const struct group* postgres_group = ::getgrnam("postgres");
    const bool can_chown = ::geteuid() == 0 && postgres_group != nullptr;
    const gid_t gid = postgres_group != nullptr ? postgres_group->gr_gid : 0;
    PgrailProcess proxy("", "127.0.0.1", 0, "", {},
                        ", unix_socket_dir: " + sockets.path + ", unix_socket_mode: \"0770\"" +
                            (can_chown ? std::string(", unix_socket_group: postgres") : std::string()));
    struct stat info {};
    REQUIRE(::stat(socket_file(sockets.path, proxy.port()).c_str(), &info) == 0);
    CHECK((info.st_mode & 07777) == 0770);
    if (can_chown) CHECK(info.st_gid == gid);
    const auto [status, output] = psql(sockets.path, proxy.port(), "SELECT 1");
    INFO(output);
    CHECK(status == 0);
}

TEST_CASE("a crashed pgrail's socket is replaced; a live pgrail's is never taken", "[unix_socket]") {
    SocketDir sockets;
    int port = 0;
    std::string socket_path;
    {
        PgrailProcess crashed("", "127.0.0.1", 0, "", {}, ", unix_socket_dir: " + sockets.path);
        port = crashed.port();
        socket_path = socket_file(sockets.path, port);
        crashed.signal(SIGKILL);
        REQUIRE(crashed.wait_exit(std::chrono::seconds(10)));
    }
    // What a crash leaves: the socket file and a lock naming a process that is gone.
    REQUIRE(fs::exists(socket_path));
    REQUIRE(fs::exists(socket_path + ".lock"));
    CHECK(psql(sockets.path, port, "SELECT 1").first != 0);  // nobody listens there

    const auto work = PgrailProcess::make_temp_dir();
    {
        ServeProcess replacement(work, serve_yaml("127.0.0.1", port, sockets.path));
        REQUIRE(eventually([&] { return psql(sockets.path, port, "SELECT 'replaced'").second == "replaced\n"; },
                           std::chrono::seconds(20)));
        CHECK(read_file(socket_path + ".lock").starts_with(std::to_string(replacement.pid()) + "\n"));

        // Another pgrail (on another address, so its TCP bind succeeds) with the same directory and
        // port: refused at start, naming the owner; the first keeps its socket.
        const char* binary = std::getenv("PGRAIL_BIN");
        const auto second_dir = work + "/second";
        fs::create_directories(second_dir);
        write_file(second_dir + "/serve.yaml", serve_yaml("127.0.0.2", port, sockets.path));
        const auto [status, output] =
            run_command(std::string("timeout 20 ") + binary + " serve --config " + second_dir + "/serve.yaml");
        INFO(output);
        CHECK(status != 0);
        CHECK(status != 124);  // it failed at start, it was not left running
        CHECK_THAT(output, Catch::Contains("held by process " + std::to_string(replacement.pid())));
        CHECK(psql(sockets.path, port, "SELECT 'still mine'").second == "still mine\n");
        CHECK(read_file(socket_path + ".lock").starts_with(std::to_string(replacement.pid()) + "\n"));

        CHECK(replacement.stop() == 0);
        CHECK_FALSE(fs::exists(socket_path));
        CHECK_FALSE(fs::exists(socket_path + ".lock"));
    }
    fs::remove_all(work);
}

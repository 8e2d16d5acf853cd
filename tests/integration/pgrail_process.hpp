// A pgrail process of a test's own, with a configuration the test writes (policy, audit, ...).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <utility>

namespace pgrail::test {

class PgrailProcess {
public:
    // Writes `extra_yaml` after listen/upstream/log keys into a fresh config, starts
    // `pgrail serve` on a free port in front of the cluster's PostgreSQL and waits until
    // it accepts connections. The directory holds config, log and anything the test adds.
    // `upstream_host`: an address, or a directory holding the server's Unix socket;
    // `upstream_port` 0: the cluster's PostgreSQL. `upstream_extra`: more keys of the `upstream`
    // map, e.g. ", connect_timeout_ms: 500". `environment`: variables set (or replaced) in
    // pgrail's environment, e.g. LD_PRELOAD. `listen_extra`: more keys of the `listen` map, e.g.
    // ", unix_socket_dir: /tmp/x".
    explicit PgrailProcess(const std::string& extra_yaml, const std::string& upstream_host = "127.0.0.1",
                           int upstream_port = 0, const std::string& upstream_extra = "",
                           std::map<std::string, std::string> environment = {}, std::string listen_extra = "");
    ~PgrailProcess();
    PgrailProcess(const PgrailProcess&) = delete;
    PgrailProcess& operator=(const PgrailProcess&) = delete;

    [[nodiscard]] int port() const { return port_; }
    [[nodiscard]] pid_t pid() const { return pid_; }
    [[nodiscard]] const std::string& dir() const { return dir_; }
    [[nodiscard]] std::string log() const;
    // libpq conninfo through this pgrail; the password defaults to the role name.
    [[nodiscard]] std::string conninfo(const std::string& user = "agent") const;
    void reload() const;  // SIGHUP
    [[nodiscard]] bool running() const;
    void signal(int number) const;  // kill(2) while it runs
    // The exit status once the process has exited within `timeout` (-1: ended by a signal);
    // nullopt while it still runs.
    [[nodiscard]] std::optional<int> wait_exit(std::chrono::milliseconds timeout) const;

    // A directory for the test's files (policies, migrations), created once per test run.
    static std::string make_temp_dir();

private:
    // Starts pgrail on a fresh port; false when that port turned out to be taken.
    bool start(const std::string& extra_yaml, const std::string& upstream_host, int upstream_port,
               const std::string& upstream_extra);

    std::string dir_;
    std::map<std::string, std::string> environment_;
    std::string listen_extra_;
    int port_ = 0;
    mutable pid_t pid_ = 0;                   // 0 once the process has been waited for
    mutable std::optional<int> exit_status_;  // its status then
};

// `pgrail <arguments>` (a shell command line) with the binary under test: its exit status and
// its stdout and stderr together.
[[nodiscard]] std::pair<int, std::string> pgrail_cli(const std::string& arguments);
// A shell command line's exit status (-1: ended by a signal) and its stdout.
[[nodiscard]] std::pair<int, std::string> shell(const std::string& command);

void write_file(const std::string& path, const std::string& text);
[[nodiscard]] std::string read_file(const std::string& path);
// The source tree (for policies/default.yaml and the like).
[[nodiscard]] std::string source_dir();

}  // namespace pgrail::test

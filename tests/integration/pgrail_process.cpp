// Starting and stopping a test's own pgrail process.
#include "pgrail_process.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

#include "cluster.hpp"

namespace pgrail::test {

namespace {

// Below Linux's ephemeral range (32768+), so no outgoing connection holds the port.
int free_port() {
    std::random_device device;
    for (int attempt = 0; attempt < 100; ++attempt) {
        const int port = 20000 + static_cast<int>(device() % 12000);
        try {
            RawSocket probe(port);  // connects: in use
        } catch (const std::exception&) {
            return port;
        }
    }
    throw std::runtime_error("no free port");
}

}  // namespace

std::string source_dir() { return PGRAIL_SOURCE_DIR; }

void write_file(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

std::string PgrailProcess::make_temp_dir() {
    char pattern[] = "/tmp/pgrail-it.XXXXXX";
    if (mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    return pattern;
}

PgrailProcess::PgrailProcess(const std::string& extra_yaml, const std::string& upstream_host, int upstream_port,
                             const std::string& upstream_extra, std::map<std::string, std::string> environment,
                             std::string listen_extra)
    : dir_(make_temp_dir()), environment_(std::move(environment)), listen_extra_(std::move(listen_extra)) {
    // A port can be taken between the probe and the bind: a few attempts, each on a fresh port.
    for (int attempt = 1;; ++attempt) {
        if (start(extra_yaml, upstream_host, upstream_port, upstream_extra)) return;
        if (attempt == 3) throw std::runtime_error("pgrail could not bind a port: " + log());
    }
}

bool PgrailProcess::start(const std::string& extra_yaml, const std::string& upstream_host, int upstream_port,
                          const std::string& upstream_extra) {
    const auto& cluster = Cluster::get();
    port_ = free_port();
    const auto config = dir_ + "/pgrail.yaml";
    write_file(config, "listen: {host: 127.0.0.1, port: " + std::to_string(port_) + listen_extra_ + "}\n" +
                           "upstream: {host: " + upstream_host +
                           ", port: " + std::to_string(upstream_port != 0 ? upstream_port : cluster.pg_port) +
                           upstream_extra + "}\n" +
                           "log: {level: info, format: text}\n" + extra_yaml);
    const char* binary = std::getenv("PGRAIL_BIN");
    if (binary == nullptr) throw std::runtime_error("PGRAIL_BIN is not set (run through ctest)");
    const auto log_path = dir_ + "/pgrail.log";
    // The environment is built before fork: the child of a threaded process may not allocate.
    std::vector<std::string> variables;
    for (char** variable = environ; *variable != nullptr; ++variable) {
        const std::string_view entry(*variable);
        if (!environment_.contains(std::string(entry.substr(0, entry.find('='))))) variables.emplace_back(entry);
    }
    for (const auto& [name, value] : environment_) variables.push_back(name + "=" + value);
    std::vector<char*> envp;
    for (auto& variable : variables) envp.push_back(variable.data());
    envp.push_back(nullptr);
    const char* argv[] = {binary, "serve", "--config", config.c_str(), nullptr};
    pid_ = fork();
    if (pid_ == 0) {
        const auto fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execve(binary, const_cast<char* const*>(argv), envp.data());
        _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
        if (!running()) {
            if (log().find("Address already in use") != std::string::npos) return false;
            throw std::runtime_error("pgrail exited at start: " + log());
        }
        try {
            RawSocket probe(port_);
            return true;
        } catch (const std::exception&) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
    throw std::runtime_error("pgrail did not start listening: " + log());
}

PgrailProcess::~PgrailProcess() {
    if (pid_ > 0) {
        // SIGINT ends every session at once (SIGTERM would wait for open transactions).
        kill(pid_, SIGINT);
        int status = 0;
        waitpid(pid_, &status, 0);
    }
    std::filesystem::remove_all(dir_);
}

std::pair<int, std::string> pgrail_cli(const std::string& arguments) {
    const char* binary = std::getenv("PGRAIL_BIN");
    if (binary == nullptr) throw std::runtime_error("PGRAIL_BIN is not set (run through ctest)");
    return shell(std::string(binary) + " " + arguments + " 2>&1");
}

std::pair<int, std::string> shell(const std::string& command) {
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) throw std::runtime_error("popen failed");
    std::string output;
    char buffer[4096];
    while (const auto n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
    const int status = ::pclose(pipe);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

std::string PgrailProcess::log() const { return read_file(dir_ + "/pgrail.log"); }

std::string PgrailProcess::conninfo(const std::string& user) const {
    return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=" + Cluster::get().database + " user=" + user +
           " password=" + user + " connect_timeout=10";
}

void PgrailProcess::reload() const { signal(SIGHUP); }

bool PgrailProcess::running() const {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == 0) return true;
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    pid_ = 0;
    return false;
}

void PgrailProcess::signal(int number) const {
    if (pid_ > 0) kill(pid_, number);
}

std::optional<int> PgrailProcess::wait_exit(std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (running()) {
        if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return exit_status_;
}

}  // namespace pgrail::test

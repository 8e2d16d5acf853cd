// A stand-in PostgreSQL server for integration tests: it plays a script on each connection, for
// what PostgreSQL will not send on demand (a silent server, a known backend key, bad lengths).
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace pgrail::test {

// Listens on a port of its own and runs `script` on each connection it accepts (with the
// connection's index in order of arrival), each on a thread of its own.
class ScriptedServer {
public:
    using Script = std::function<void(int fd, int index)>;

    explicit ScriptedServer(Script script) : script_(std::move(script)) { start(); }
    // A script that needs no index.
    explicit ScriptedServer(std::function<void(int fd)> script)
        : script_([script = std::move(script)](int fd, int) { script(fd); }) {
        start();
    }
    ~ScriptedServer() {
        shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
        thread_.join();
        for (auto& connection : connections_) connection.join();
        close(listen_fd_);
    }
    ScriptedServer(const ScriptedServer&) = delete;
    ScriptedServer& operator=(const ScriptedServer&) = delete;

    [[nodiscard]] int port() const { return port_; }
    [[nodiscard]] int accepted() const { return accepted_; }

private:
    void start() {
        listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t size = sizeof address;
        if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), size) != 0 ||
            listen(listen_fd_, 8) != 0 || getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
            if (listen_fd_ >= 0) close(listen_fd_);
            throw std::runtime_error("the scripted server cannot listen");
        }
        port_ = ntohs(address.sin_port);
        thread_ = std::thread([this] { serve(); });
    }

    void serve() {
        for (int index = 0;; ++index) {
            const int fd = accept(listen_fd_, nullptr, nullptr);
            if (fd < 0 && (errno == EINTR || errno == ECONNABORTED)) continue;
            if (fd < 0) return;  // shut down
            ++accepted_;
            connections_.emplace_back([this, fd, index] {
                try {
                    script_(fd, index);
                } catch (const std::exception&) {
                    // The script's peer went away early: the test's own checks tell.
                }
                close(fd);
            });
        }
    }

    Script script_;
    int listen_fd_ = -1;
    int port_ = 0;
    std::atomic<int> accepted_{0};
    std::thread thread_;
    std::vector<std::thread> connections_;  // serve()'s own until it returns
};

// Exactly n bytes from the scripted server's client (pgrail), or throws: at EOF, or after a
// minute of silence (a script waits as long as its test may need; the test's end closes it).
// Not RawSocket's reads: scripts run on threads of their own, where Catch2 must not assert.
inline std::string receive_n(int fd, std::size_t n) {
    std::string bytes;
    while (bytes.size() < n) {
        pollfd ready{fd, POLLIN, 0};
        if (poll(&ready, 1, 60000) <= 0) throw std::runtime_error("the scripted server waited in vain");
        char chunk[4096];
        const auto got = recv(fd, chunk, std::min(sizeof chunk, n - bytes.size()), 0);
        if (got <= 0) throw std::runtime_error("the scripted server's peer closed");
        bytes.append(chunk, static_cast<std::size_t>(got));
    }
    return bytes;
}

}  // namespace pgrail::test

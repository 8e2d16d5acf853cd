// The floor under any forwarding proxy on this machine: a byte relay that parses nothing, on one
// level-triggered epoll loop per thread (no speculative reads, one recv and one send per
// message). Not pgrail: bench/run.sh runs it beside pgrail and PgBouncer when it is built, to tell
// how much of a proxy's cost is forwarding itself (the kernel's share), whatever the proxy does.
//
//   relay_floor_bench LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT [THREADS]
// An UPSTREAM_HOST that starts with '/' is a directory holding PostgreSQL's Unix socket
// (.s.PGSQL.UPSTREAM_PORT), as libpq reads it: bench/run.sh's UPSTREAM=unix.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

// One direction of a connection pair: bytes read from `from` that `to` has not taken yet.
struct Leg {
    int from = -1;
    int to = -1;
    std::array<char, 65536> pending{};
    std::size_t start = 0;
    std::size_t end = 0;
};

struct Pair;

// One registration per descriptor: the leg it feeds (read from it) and the leg it drains (write to it).
struct Endpoint {
    Pair* pair = nullptr;
    int fd = -1;
    Leg* reads = nullptr;
    Leg* writes = nullptr;
    std::uint32_t events = EPOLLIN;
};

struct Pair {
    Leg up;    // client -> server
    Leg down;  // server -> client
    Endpoint client;
    Endpoint server;
    bool closed = false;
};

void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Where PostgreSQL listens: an IPv4 address or a Unix socket.
struct Upstream {
    sockaddr_storage address{};
    socklen_t length = 0;
};

int connect_upstream(const Upstream& upstream) {
    const int family = upstream.address.ss_family;
    const int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (connect(fd, reinterpret_cast<const sockaddr*>(&upstream.address), upstream.length) != 0) {
        close(fd);
        return -1;
    }
    if (family == AF_INET) set_nodelay(fd);  // a Unix socket has no Nagle to turn off
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

void watch(int epoll_fd, Endpoint& endpoint, std::uint32_t events, int op = EPOLL_CTL_MOD) {
    endpoint.events = events;
    epoll_event event{};
    event.events = events;
    event.data.ptr = &endpoint;
    epoll_ctl(epoll_fd, op, endpoint.fd, &event);
}

Endpoint& endpoint_of(Pair& pair, int fd) { return pair.client.fd == fd ? pair.client : pair.server; }

// Closed now, freed after the current batch of events (a later event of it may name the pair).
void close_pair(Pair& pair, std::vector<Pair*>& closed) {
    if (pair.closed) return;
    pair.closed = true;
    close(pair.client.fd);  // closing removes them from epoll
    close(pair.server.fd);
    closed.push_back(&pair);
}

// Sends what the leg holds; false when the peer is gone.
bool flush(Leg& leg) {
    while (leg.start < leg.end) {
        const auto sent = send(leg.to, leg.pending.data() + leg.start, leg.end - leg.start, MSG_NOSIGNAL);
        if (sent < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
        leg.start += static_cast<std::size_t>(sent);
    }
    return true;
}

void run_loop(int listen_fd, Upstream upstream) {
    const int epoll_fd = epoll_create1(0);
    epoll_event listen_event{};
    listen_event.events = EPOLLIN | EPOLLEXCLUSIVE;
    listen_event.data.ptr = nullptr;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &listen_event);
    std::array<epoll_event, 64> events{};
    std::vector<Pair*> closed;
    while (true) {
        for (Pair* pair : closed) delete pair;
        closed.clear();
        const int ready = epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()), -1);
        for (int i = 0; i < ready; ++i) {
            const auto& event = events[static_cast<std::size_t>(i)];
            auto* endpoint = static_cast<Endpoint*>(event.data.ptr);
            if (endpoint == nullptr) {
                const int client = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK);
                if (client < 0) continue;
                const int server = connect_upstream(upstream);
                if (server < 0) {
                    close(client);
                    continue;
                }
                set_nodelay(client);
                auto* pair = new Pair;
                pair->up.from = pair->down.to = client;
                pair->up.to = pair->down.from = server;
                pair->client = Endpoint{pair, client, &pair->up, &pair->down};
                pair->server = Endpoint{pair, server, &pair->down, &pair->up};
                watch(epoll_fd, pair->client, EPOLLIN, EPOLL_CTL_ADD);
                watch(epoll_fd, pair->server, EPOLLIN, EPOLL_CTL_ADD);
                continue;
            }
            Pair& pair = *endpoint->pair;
            if (pair.closed) continue;
            if ((event.events & EPOLLOUT) != 0) {
                // The peer takes more: send the rest, then read its source again.
                Leg& leg = *endpoint->writes;
                if (!flush(leg)) {
                    close_pair(pair, closed);
                    continue;
                }
                if (leg.start < leg.end) continue;
                watch(epoll_fd, *endpoint, endpoint->events & ~std::uint32_t{EPOLLOUT});
                Endpoint& source = endpoint_of(pair, leg.from);
                watch(epoll_fd, source, source.events | EPOLLIN);
            }
            if ((event.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) == 0 || (endpoint->events & EPOLLIN) == 0) continue;
            Leg& leg = *endpoint->reads;
            const auto got = recv(leg.from, leg.pending.data(), leg.pending.size(), 0);
            if (got <= 0) {
                if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
                close_pair(pair, closed);
                continue;
            }
            leg.start = 0;
            leg.end = static_cast<std::size_t>(got);
            if (!flush(leg)) {
                close_pair(pair, closed);
                continue;
            }
            if (leg.start < leg.end) {
                // Backpressure: stop reading this side until its peer has taken the rest.
                watch(epoll_fd, *endpoint, endpoint->events & ~std::uint32_t{EPOLLIN});
                Endpoint& peer = endpoint_of(pair, leg.to);
                watch(epoll_fd, peer, peer.events | EPOLLOUT);
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_HOST|SOCKET_DIR UPSTREAM_PORT [THREADS]\n", argv[0]);
        return 2;
    }
    sockaddr_in listen_address{};
    listen_address.sin_family = AF_INET;
    listen_address.sin_port = htons(static_cast<std::uint16_t>(std::atoi(argv[1])));
    inet_pton(AF_INET, "127.0.0.1", &listen_address.sin_addr);
    Upstream upstream;
    if (argv[2][0] == '/') {
        const std::string path = std::string(argv[2]) + "/.s.PGSQL." + argv[3];
        sockaddr_un unix_address{};
        if (path.size() >= sizeof unix_address.sun_path) {
            std::fprintf(stderr, "upstream socket path longer than %zu bytes\n", sizeof unix_address.sun_path - 1);
            return 2;
        }
        unix_address.sun_family = AF_UNIX;
        path.copy(unix_address.sun_path, path.size());
        std::memcpy(&upstream.address, &unix_address, sizeof unix_address);
        upstream.length = sizeof unix_address;
    } else {
        sockaddr_in tcp_address{};
        tcp_address.sin_family = AF_INET;
        tcp_address.sin_port = htons(static_cast<std::uint16_t>(std::atoi(argv[3])));
        if (inet_pton(AF_INET, argv[2], &tcp_address.sin_addr) != 1) {
            std::fprintf(stderr, "upstream host must be an IPv4 address or a socket directory\n");
            return 2;
        }
        std::memcpy(&upstream.address, &tcp_address, sizeof tcp_address);
        upstream.length = sizeof tcp_address;
    }
    const int threads = argc > 4 ? std::atoi(argv[4]) : 1;
    const int listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listen_fd, reinterpret_cast<const sockaddr*>(&listen_address), sizeof listen_address) != 0 ||
        listen(listen_fd, 1024) != 0) {
        std::perror("listen");
        return 1;
    }
    std::vector<std::thread> loops;
    for (int i = 1; i < threads; ++i) loops.emplace_back(run_loop, listen_fd, upstream);
    run_loop(listen_fd, upstream);
}

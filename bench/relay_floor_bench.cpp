// The floor under any forwarding proxy on this machine: a byte relay that parses nothing, on one
// level-triggered epoll loop per thread (no speculative reads, one recv and one send per
// message). Not pgrail: bench/run.sh runs it beside pgrail and PgBouncer when it is built, to tell
// how much of a proxy's cost is forwarding itself (the kernel's share), whatever the proxy does.
//
//   relay_floor_bench LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT [THREADS] [epoll|uring]
// An UPSTREAM_HOST that starts with '/' is a directory holding PostgreSQL's Unix socket
// (.s.PGSQL.UPSTREAM_PORT), as libpq reads it: bench/run.sh's UPSTREAM=unix.
//
// `uring` (built when liburing is found) runs the same relay on one io_uring per thread instead,
// the fewest system calls a relay can make: multishot accepts, receives into a ring of provided
// buffers (at most 4 waiting per direction: backpressure, as the epoll loop's one buffer), each
// buffer sent as it is and handed back when its send completes, an end of file passed on once
// all before it is sent, and one io_uring_enter per loop turn that submits every receive and send
// the turn produced and waits for the next completions (DEFER_TASKRUN: the kernel's completion
// work runs in that call, not by interrupt).
// Issue 21 asks whether such a loop spends less CPU per message than an epoll one.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef PGRAIL_BENCH_URING
#include <liburing.h>

#include <deque>
#endif

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

// The server side of an accepted client: its descriptor, or -1 with the client closed.
int pair_with_upstream(int client, const Upstream& upstream) {
    const int server = connect_upstream(upstream);
    if (server < 0) {
        close(client);
        return -1;
    }
    set_nodelay(client);
    return server;
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
                const int server = pair_with_upstream(client, upstream);
                if (server < 0) continue;
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


#ifdef PGRAIL_BENCH_URING
// The io_uring loop. Every operation's user_data is its pair's address with the operation in the
// low bits (a Pair is 8-aligned); the listening socket's accepts carry no pair.
namespace uring {

enum Op : std::uint64_t { accept_op = 0, receive = 1, send = 2, ignored = 3 };
constexpr std::uint64_t op_mask = 7;  // the low bits of a Side's address (8-aligned) hold the Op
constexpr unsigned buffer_count = 1024;  // a power of two, as a buffer ring must be
constexpr unsigned buffer_size = 16384;
constexpr std::size_t max_queued = 4;  // chunks one direction may hold before its source waits
constexpr int group = 0;

// A received buffer waiting for (or in) its send: bytes [offset, length) of buffer `id`.
struct Chunk {
    unsigned id;
    unsigned offset;
    unsigned length;
};

struct Pair;

// One socket of a pair: what it received, queued for its peer, sent one send at a time (bytes
// stay in order), and its one receive at a time (re-armed while its peer's queue is short).
struct Side {
    Pair* pair = nullptr;
    Side* peer = nullptr;
    int fd = -1;
    std::deque<Chunk> queue;  // received here, to send to peer
    bool receiving = false;
    bool sending = false;       // a send of peer->queue's front to this socket
    bool ended = false;         // end of file received here
    bool shut = false;          // this socket shut for writing (its peer ended and was drained)
};

struct Pair {
    Side client;
    Side server;
    int in_flight = 0;  // operations whose completion has not arrived (a starved receive counts)
    bool closing = false;
};

class Loop {
public:
    Loop(int listen_fd, Upstream upstream) : listen_fd_(listen_fd), upstream_(upstream) {
        io_uring_params params{};
        params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
        if (io_uring_queue_init_params(4096, &ring_, &params) != 0) {
            std::perror("io_uring_queue_init_params");
            std::exit(1);
        }
        void* memory = nullptr;
        if (posix_memalign(&memory, 4096, buffer_count * sizeof(io_uring_buf)) != 0) std::exit(1);
        buffers_ring_ = static_cast<io_uring_buf_ring*>(memory);
        io_uring_buf_ring_init(buffers_ring_);
        io_uring_buf_reg registration{};
        registration.ring_addr = reinterpret_cast<std::uint64_t>(buffers_ring_);
        registration.ring_entries = buffer_count;
        registration.bgid = group;
        if (io_uring_register_buf_ring(&ring_, &registration, 0) != 0) {
            std::fprintf(stderr, "io_uring_register_buf_ring failed\n");
            std::exit(1);
        }
        storage_.resize(static_cast<std::size_t>(buffer_count) * buffer_size);
        for (unsigned id = 0; id < buffer_count; ++id) give_back(id);
        arm_accept();
    }

    void run() {
        while (true) {
            io_uring_submit_and_wait(&ring_, 1);
            io_uring_cqe* cqe = nullptr;
            unsigned head = 0;
            unsigned seen = 0;
            io_uring_for_each_cqe(&ring_, head, cqe) {
                handle(*cqe);
                ++seen;
            }
            io_uring_cq_advance(&ring_, seen);
        }
    }

private:
    io_uring_sqe* sqe() {
        io_uring_sqe* entry = io_uring_get_sqe(&ring_);
        while (entry == nullptr) {
            io_uring_submit(&ring_);
            entry = io_uring_get_sqe(&ring_);
        }
        return entry;
    }

    static std::uint64_t tag(Side* side, Op op) { return reinterpret_cast<std::uint64_t>(side) | op; }

    char* buffer(unsigned id) { return storage_.data() + static_cast<std::size_t>(id) * buffer_size; }

    void give_back(unsigned id) {
        io_uring_buf_ring_add(buffers_ring_, buffer(id), buffer_size, static_cast<unsigned short>(id),
                              io_uring_buf_ring_mask(buffer_count), 0);
        io_uring_buf_ring_advance(buffers_ring_, 1);
    }

    void arm_accept() {
        io_uring_sqe* entry = sqe();
        io_uring_prep_multishot_accept(entry, listen_fd_, nullptr, nullptr, SOCK_NONBLOCK);
        io_uring_sqe_set_data64(entry, tag(nullptr, accept_op));
    }

    // One receive into a provided buffer, unless one is under way, the side ended, or its peer
    // has not taken what came before (backpressure: the kernel's socket buffer holds the rest).
    void arm_receive(Side& side) {
        if (side.receiving || side.ended || side.pair->closing || side.queue.size() >= max_queued) return;
        io_uring_sqe* entry = sqe();
        io_uring_prep_recv(entry, side.fd, nullptr, 0, 0);
        entry->flags |= IOSQE_BUFFER_SELECT;
        entry->buf_group = group;
        io_uring_sqe_set_data64(entry, tag(&side, receive));
        side.receiving = true;
        ++side.pair->in_flight;
    }

    // Sends the front of what `from` received to its peer; once `from` ended and all is sent,
    // the peer is shut for writing (the end of file passed on).
    void send_next(Side& from) {
        Side& to = *from.peer;
        if (to.sending || from.pair->closing) return;
        if (from.queue.empty()) {
            if (from.ended && !to.shut) {
                to.shut = true;
                shutdown(to.fd, SHUT_WR);
            }
            return;
        }
        const Chunk& chunk = from.queue.front();
        io_uring_sqe* entry = sqe();
        io_uring_prep_send(entry, to.fd, buffer(chunk.id) + chunk.offset, chunk.length - chunk.offset, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(entry, tag(&to, send));
        to.sending = true;
        ++from.pair->in_flight;
    }

    void accepted(int client) {
        const int server = pair_with_upstream(client, upstream_);
        if (server < 0) return;
        auto* pair = new Pair;
        pair->client.pair = pair->server.pair = pair;
        pair->client.peer = &pair->server;
        pair->server.peer = &pair->client;
        pair->client.fd = client;
        pair->server.fd = server;
        arm_receive(pair->client);
        arm_receive(pair->server);
    }

    // On an error: cancels what is queued on both sockets; freed when the last completion arrives.
    void close_pair(Pair& pair) {
        if (pair.closing) return;
        pair.closing = true;
        for (const Side* side : {&pair.client, &pair.server}) {
            io_uring_sqe* entry = sqe();
            io_uring_prep_cancel_fd(entry, side->fd, IORING_ASYNC_CANCEL_ALL);
            io_uring_sqe_set_data64(entry, tag(nullptr, ignored));
            shutdown(side->fd, SHUT_RDWR);  // a send the peer never drains must end too
        }
    }

    // One completion of the pair's has arrived: the pair ends once both directions ended and
    // were passed on, or it is closing, and nothing of it is under way.
    void settle(Pair& pair) {
        --pair.in_flight;
        const bool done = pair.client.ended && pair.server.ended && pair.client.queue.empty() &&
                          pair.server.queue.empty() && pair.client.shut && pair.server.shut;
        if (done) pair.closing = true;
        if (!pair.closing || pair.in_flight > 0) return;
        for (Side* side : {&pair.client, &pair.server}) {
            for (const Chunk& chunk : side->queue) give_back(chunk.id);
            side->queue.clear();
            close(side->fd);
        }
        delete &pair;
        rearm_starved();
    }

    // Receives that found no free buffer wait here (their in_flight count held) until sends free one.
    void rearm_starved() {
        std::deque<Side*> waiting;
        waiting.swap(starved_);
        for (Side* side : waiting) {
            side->receiving = false;
            arm_receive(*side);
            settle(*side->pair);
        }
    }

    void handle(const io_uring_cqe& cqe) {
        const Op op = static_cast<Op>(cqe.user_data & op_mask);
        auto* side = reinterpret_cast<Side*>(cqe.user_data & ~op_mask);
        switch (op) {
        case ignored:
            return;
        case accept_op:
            if (cqe.res >= 0) accepted(cqe.res);
            if ((cqe.flags & IORING_CQE_F_MORE) == 0) arm_accept();
            return;
        case receive: {
            Pair& pair = *side->pair;
            if (cqe.res == -ENOBUFS && !pair.closing) {
                starved_.push_back(side);  // still receiving, its count held
                return;
            }
            side->receiving = false;
            if ((cqe.flags & IORING_CQE_F_BUFFER) != 0) {
                const unsigned id = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
                if (cqe.res > 0 && !pair.closing) {
                    side->queue.push_back(Chunk{id, 0, static_cast<unsigned>(cqe.res)});
                } else {
                    give_back(id);
                }
            }
            if (cqe.res == 0) side->ended = true;
            if (cqe.res < 0) close_pair(pair);
            send_next(*side);
            arm_receive(*side);
            settle(pair);
            return;
        }
        case send: {
            Side& from = *side->peer;
            Pair& pair = *side->pair;
            side->sending = false;
            if (cqe.res <= 0 || pair.closing) {
                close_pair(pair);
                settle(pair);
                return;
            }
            Chunk& chunk = from.queue.front();
            chunk.offset += static_cast<unsigned>(cqe.res);
            if (chunk.offset == chunk.length) {
                give_back(chunk.id);
                from.queue.pop_front();
                arm_receive(from);
            }
            send_next(from);
            settle(pair);
            if (!starved_.empty()) rearm_starved();
            return;
        }
        }
    }

    int listen_fd_;
    Upstream upstream_;
    io_uring ring_{};
    io_uring_buf_ring* buffers_ring_ = nullptr;
    std::vector<char> storage_;
    std::deque<Side*> starved_;
};

}  // namespace uring

void run_uring_loop(int listen_fd, Upstream upstream) { uring::Loop(listen_fd, upstream).run(); }
#endif

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_HOST|SOCKET_DIR UPSTREAM_PORT [THREADS] [epoll|uring]\n",
                     argv[0]);
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
    const std::string io = argc > 5 ? argv[5] : "epoll";
    auto loop = run_loop;
#ifdef PGRAIL_BENCH_URING
    if (io == "uring") loop = run_uring_loop;
#endif
    if (io != "epoll" && io != "uring") {
        std::fprintf(stderr, "%s: unknown loop %s (epoll or uring)\n", argv[0], io.c_str());
        return 2;
    }
    if (io == "uring" && loop == run_loop) {
        std::fprintf(stderr, "%s: no io_uring loop in this build (liburing-dev not found)\n", argv[0]);
        return 2;
    }
    const int listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listen_fd, reinterpret_cast<const sockaddr*>(&listen_address), sizeof listen_address) != 0 ||
        listen(listen_fd, 1024) != 0) {
        std::perror("listen");
        return 1;
    }
    std::vector<std::thread> loops;
    for (int i = 1; i < threads; ++i) loops.emplace_back(loop, listen_fd, upstream);
    loop(listen_fd, upstream);
}

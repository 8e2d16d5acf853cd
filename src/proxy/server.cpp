// The listener and the worker threads: one io_context per thread, sessions handed out in turn.
#include "pgrail/proxy/server.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "admin_commands.hpp"
#include "pgrail/protocol/backend.hpp"
#include "pgrail/protocol/bytes.hpp"
#include "pgrail/protocol/frontend.hpp"
#include "health_http.hpp"
#include "session.hpp"
#include "unix_socket_file.hpp"

namespace pgrail::proxy {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

namespace {

// What a client over max_client_connections hears (PostgreSQL's words when max_connections is
// reached): after its startup packet, or at once when pgrail cannot wait for it.
std::string too_many_clients() {
    std::string bytes;
    protocol::encode_error_response(
        bytes, protocol::ErrorMessage{"FATAL", "53300", "sorry, too many clients already",
                                      "pgrail serves at most max_client_connections clients at once", {}});
    return bytes;
}

// The open-file limit raised to its hard value; the connections it leaves room for (a client
// and a server descriptor each, 64 kept for listeners, logs, pools and catalog connections).
std::uint32_t connections_the_fd_limit_allows() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1000;
    if (limit.rlim_cur < limit.rlim_max) {
        rlimit raised = limit;
        raised.rlim_cur = limit.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
    }
    const rlim_t usable = limit.rlim_cur > 64 + 2 ? (limit.rlim_cur - 64) / 2 : 1;
    return static_cast<std::uint32_t>(std::min<rlim_t>(usable, 1000000));
}

std::string random_marker() {
    std::random_device device;
    std::uniform_int_distribution<std::uint64_t> distribution;
    return fmt::format("pgrail_refused_{:016x}_", distribution(device));
}

}  // namespace

void ServerShared::shut_down_sessions(ShutdownMode mode) {
    std::vector<std::shared_ptr<Session>> live;
    {
        std::lock_guard lock(sessions_mutex);
        if (mode <= shutdown_mode) return;
        shutdown_mode = mode;
        for (const auto& weak : sessions)
            if (auto session = weak.lock()) live.push_back(std::move(session));
    }
    // Each session's state belongs to its thread: the request is handed to it there (and the
    // reference with it, so a session never ends on this thread).
    for (auto& session : live) {
        auto executor = session->executor();
        asio::post(executor, [session = std::move(session), mode] { session->request_shutdown(mode); });
    }
}

struct Server::Impl {
    explicit Impl(config::ServeConfig config) : shared(std::move(config)) {}
    ServerShared shared;
    // Refusals of clients over max_client_connections under way (refuse_after_startup). Declared
    // before the workers: a refusal's coroutine still pending when their io_contexts are
    // destroyed counts itself out on the way.
    std::atomic<int> refusing{0};
    std::function<void()> on_reload;
    // Each worker runs its own single-threaded io_context: a session never changes
    // thread, so it needs no strand and no locks on its own state.
    std::vector<std::unique_ptr<asio::io_context>> workers;
    std::size_t next_worker = 0;
    asio::io_context main_context{1};
    // SIGHUP's reloads run here, one at a time, never on the listener's or a worker's thread:
    // a reload reads files and the migration ledger (the database may be slow or gone).
    asio::thread_pool reload_pool{1};
    std::atomic<bool> reload_busy{false};
    bool reload_again = false;  // main_context's: a SIGHUP came during a reload

    void start_reload() {
        reload_busy = true;
        asio::post(reload_pool, [this] {
            try {
                reload_tls();
                reload_identities();
                if (on_reload) on_reload();
            } catch (const std::exception& e) {
                spdlog::error("reload failed: {}", e.what());
            } catch (...) {
                spdlog::error("reload failed");
            }
            reload_busy = false;
            asio::post(main_context, [this] {
                if (!reload_again) return;
                reload_again = false;
                spdlog::info("reloading again for the SIGHUP that came during the last reload");
                start_reload();
            });
        });
    }

    // The certificates and keys read again (rotated files): new sessions use them; sessions that
    // began before keep theirs. A file that no longer loads keeps the current ones.
    void reload_tls() {
        if (!shared.tls) return;
        const auto error = shared.tls->reload(shared.config.tls, shared.config.upstream_host);
        if (error.empty()) {
            spdlog::info("TLS certificates reloaded");
        } else {
            spdlog::error("TLS reload refused, the current certificates stay in force: {}", error);
        }
    }

    // auth.mode pgrail: the identities file read again. New logins meet it at once; live sessions
    // whose identity is gone (or whose verifier or role changed) are ended. A file that no longer
    // loads keeps the identities in force.
    void reload_identities() {
        if (!shared.identities) return;
        const auto error = shared.identities->reload();
        if (!error.empty()) {
            spdlog::error("identities reload refused, the current identities stay in force: {}", error);
            return;
        }
        const auto current = shared.identities->current();
        spdlog::info("identities reloaded from {} ({} identities)", shared.identities->path(), current->identities.size());
        shared.recheck_identities(current);
    }

    asio::io_context& pick_worker() {
        auto& worker = *workers[next_worker];
        next_worker = (next_worker + 1) % workers.size();
        return worker;
    }

    std::uint32_t max_clients = 1000;  // run() sets it
    std::chrono::steady_clock::time_point last_accept_error_log{};
    int spare_fd = -1;                 // given up to answer one client when descriptors run out
    std::chrono::steady_clock::time_point last_refusal_log{};
    std::uint64_t refused_since_log = 0;

    // Counts a refused client; a flood logs a line a second. (On the accept loop's thread.)
    void note_refusal(const char* why) {
        ++refused_since_log;
        const auto now = std::chrono::steady_clock::now();
        if (now - last_refusal_log >= std::chrono::seconds(1)) {
            spdlog::warn("refused {} client connection(s): {}", refused_since_log, why);
            refused_since_log = 0;
            last_refusal_log = now;
        }
    }

    // A client pgrail will not serve, told so at once (best effort, never waited for) and closed.
    void refuse_client(int fd, const char* why) {
        static const std::string answer = too_many_clients();
        (void)::send(fd, answer.data(), answer.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        ::close(fd);
        if (why != nullptr) note_refusal(why);
    }

    // As PostgreSQL refuses a client over max_connections: after its startup packet, an SSLRequest
    // or GSSENCRequest before it answered 'N', so that libpq shows the message. A CancelRequest is
    // still carried out, as PostgreSQL serves cancels when full (a client stopping a runaway query
    // must not be turned away by the load it causes). At most `max_refusing` at once, each for at
    // most two seconds.
    static constexpr int max_refusing = 64;

    asio::awaitable<void> refuse_after_startup(Stream socket) {
        ++refusing;
        struct Done {
            std::atomic<int>& count;
            ~Done() { --count; }
        } done{refusing};
        asio::steady_timer deadline(co_await asio::this_coro::executor, std::chrono::seconds(2));
        std::array<char, 8> head{};
        for (int turn = 0; turn < 2; ++turn) {
            auto read = co_await (asio::async_read(socket, asio::buffer(head), asio::as_tuple(asio::use_awaitable)) ||
                                  deadline.async_wait(asio::as_tuple(asio::use_awaitable)));
            if (read.index() == 1 || std::get<0>(std::get<0>(read))) co_return;
            const auto code = protocol::read_u32(head.data() + 4);
            if (code == protocol::cancel_request_code && protocol::read_u32(head.data()) == 16) {
                std::array<char, 8> key_bytes{};
                auto key_read = co_await (
                    asio::async_read(socket, asio::buffer(key_bytes), asio::as_tuple(asio::use_awaitable)) ||
                    deadline.async_wait(asio::as_tuple(asio::use_awaitable)));
                if (key_read.index() == 1 || std::get<0>(std::get<0>(key_read))) co_return;
                const protocol::BackendKey key{static_cast<std::int32_t>(protocol::read_u32(key_bytes.data())),
                                               static_cast<std::int32_t>(protocol::read_u32(key_bytes.data() + 4))};
                const auto upstream_key = shared.cancel_registry.find(key);
                if (!upstream_key) co_return;  // answered with nothing, as PostgreSQL does
                shared.cancel_registry.abandon(key);  // an in-band command, if one runs
                // (Named first: GCC 12 mishandles a conditional inside a co_await expression.)
                std::shared_ptr<const TlsContextSet> tls;
                if (shared.tls) tls = shared.tls->current();
                const auto executor = socket.get_executor();
                co_await send_cancel_request(executor, shared.config, tls, *upstream_key);
                co_return;
            }
            if (code != protocol::ssl_request_code && code != protocol::gssenc_request_code) break;
            const auto [ec, written] =
                co_await asio::async_write(socket, asio::buffer("N", 1), asio::as_tuple(asio::use_awaitable));
            if (ec || written != 1) co_return;
        }
        static const std::string answer = too_many_clients();
        (void)co_await (asio::async_write(socket, asio::buffer(answer), asio::as_tuple(asio::use_awaitable)) ||
                        deadline.async_wait(asio::as_tuple(asio::use_awaitable)));
    }

    // Out of descriptors: the spare one makes room to accept a waiting client and refuse it, so
    // clients hear 53300 instead of waiting unanswered in the listen backlog.
    template <class Acceptor>
    void refuse_with_spare(Acceptor& acceptor) {
        if (spare_fd < 0) return;
        ::close(spare_fd);
        spare_fd = -1;
        const int fd = ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) refuse_client(fd, "out of file descriptors");
        spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    }

    // A TCP or a Unix-socket acceptor: either accepts into the stream type both legs share.
    template <class Acceptor>
    asio::awaitable<void> accept_loop(Acceptor& acceptor) {
        while (acceptor.is_open()) {
            // Accepted straight into the stream type both legs share, registered with its worker.
            Stream socket(pick_worker());
            auto [ec] = co_await acceptor.async_accept(socket, asio::as_tuple(asio::use_awaitable));
            if (ec) {
                if (ec == asio::error::operation_aborted) co_return;
                if (ec == asio::error::no_descriptors || ec.value() == ENFILE) refuse_with_spare(acceptor);
                // Out of file descriptors and the like: log (at most a line a second), breathe, go on serving.
                const auto now = std::chrono::steady_clock::now();
                if (now - last_accept_error_log >= std::chrono::seconds(1)) {
                    spdlog::error("accept failed: {}", ec.message());
                    last_accept_error_log = now;
                }
                asio::steady_timer pause(main_context, std::chrono::milliseconds(50));
                co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
                continue;
            }
            if (shared.active_sessions.load() >= max_clients) {
                note_refusal("max_client_connections reached");
                if (refusing.load() >= max_refusing) {
                    refuse_client(socket.release(), nullptr);  // a flood: told at once, unread
                } else {
                    auto executor = socket.get_executor();
                    asio::co_spawn(executor, refuse_after_startup(std::move(socket)), asio::detached);
                }
                continue;
            }
            std::shared_ptr<Session> session;
            try {
                session = std::make_shared<Session>(std::move(socket), shared);
            } catch (const std::exception& e) {
                // One connection lost (no memory, epoll full): the listener keeps serving.
                spdlog::error("could not start a session: {}", e.what());
                continue;
            }
            auto executor = session->executor();
            asio::co_spawn(executor, [session]() { return session->run(); }, [](std::exception_ptr error) {
                if (!error) return;
                try {
                    std::rethrow_exception(error);
                } catch (const std::exception& e) {
                    spdlog::error("session ended with an error: {}", e.what());
                }
            });
        }
    }
};

Server::Server(config::ServeConfig config, std::shared_ptr<StatementGate> gate, std::shared_ptr<InbandCommands> inband,
               std::function<void()> on_reload, std::shared_ptr<audit::AuditLog> audit_log)
    : impl_(std::make_unique<Impl>(std::move(config))) {
    impl_->shared.gate = std::move(gate);
    // The admin view answers from the server's own state, with or without migrations.
    auto admin = std::make_shared<AdminCommands>(impl_->shared.directory, std::move(audit_log), recent_refusals());
    impl_->shared.inband = std::make_shared<InbandDispatch>(std::move(admin), std::move(inband));
    impl_->shared.refusal_marker = random_marker();
    const auto& tls = impl_->shared.config.tls;
    if (tls.client.enabled() || tls.server.enabled()) {
        auto built = build_tls_contexts(tls, impl_->shared.config.upstream_host);
        if (!built.contexts) throw std::runtime_error(built.error);
        impl_->shared.tls = std::make_shared<TlsContexts>(std::move(built.contexts));
    }
    // A bad identities file fails the start with its file:line:column (config::ConfigError).
    if (impl_->shared.config.auth_mode == config::ServeConfig::AuthMode::pgrail)
        impl_->shared.identities = std::make_shared<IdentityStore>(impl_->shared.config.identities_file);
    impl_->on_reload = std::move(on_reload);
}

Server::~Server() = default;

int Server::run() {
    auto& impl = *impl_;
    const auto& config = impl.shared.config;
    auto worker_count = config.workers != 0 ? config.workers : std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 0; i < worker_count; ++i) impl.workers.push_back(std::make_unique<asio::io_context>(1));
    const auto fd_room = connections_the_fd_limit_allows();
    impl.max_clients = config.max_client_connections != 0 ? config.max_client_connections : fd_room;
    if (impl.max_clients > fd_room)
        spdlog::warn("max_client_connections {} is more than the open-file limit leaves room for ({})",
                     impl.max_clients, fd_room);
    impl.spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    spdlog::info("serving at most {} client connections at once (max_client_connections{})", impl.max_clients,
                 config.max_client_connections != 0 ? "" : ": from the open-file limit");

    tcp::resolver resolver(impl.main_context);
    const auto endpoints = resolver.resolve(config.listen_host, std::to_string(config.listen_port));
    std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
    for (const auto& entry : endpoints) {
        auto acceptor = std::make_unique<tcp::acceptor>(impl.main_context);
        acceptor->open(entry.endpoint().protocol());
        acceptor->set_option(tcp::acceptor::reuse_address(true));
        acceptor->bind(entry.endpoint());
        acceptor->listen(asio::socket_base::max_listen_connections);
        spdlog::info("pgrail {} listening on {}:{} (upstream {}:{}, {} workers)", PGRAIL_VERSION,
                     entry.endpoint().address().to_string(), entry.endpoint().port(), config.upstream_host,
                     config.upstream_port, worker_count);
        acceptors.push_back(std::move(acceptor));
    }
    // listen.unix_socket_dir: PostgreSQL's socket name, lock file and permissions. Read at start
    // only (as every listen.* key: SIGHUP reloads the policy and migrations, not the listeners).
    UnixSocketFile unix_socket_file;  // released (both files removed) when run() returns or throws
    std::unique_ptr<asio::local::stream_protocol::acceptor> unix_acceptor;
    if (!config.unix_socket_dir.empty()) {
        const auto path = config.unix_socket_path();
        if (auto why = unix_socket_file.claim(path); !why.empty())
            throw std::runtime_error("listen.unix_socket_dir: " + why);
        unix_acceptor = std::make_unique<asio::local::stream_protocol::acceptor>(impl.main_context);
        const asio::local::stream_protocol::endpoint endpoint(path);
        unix_acceptor->open(endpoint.protocol());
        boost::system::error_code ec;
        unix_acceptor->bind(endpoint, ec);
        if (ec) throw std::runtime_error(fmt::format("listen.unix_socket_dir: could not bind {}: {}", path, ec.message()));
        if (auto why = unix_socket_file.set_access(config.unix_socket_mode, config.unix_socket_group); !why.empty())
            throw std::runtime_error(why);
        unix_acceptor->listen(asio::socket_base::max_listen_connections);
        spdlog::info("pgrail {} listening on Unix socket {} (mode {:04o}{})", PGRAIL_VERSION, path,
                     config.unix_socket_mode,
                     config.unix_socket_group.empty() ? "" : ", group " + config.unix_socket_group);
    }
    // http: /metrics, /healthz, /readyz on a listener of its own (off unless http.port is set).
    std::unique_ptr<HealthHttp> http;
    if (config.http_port != 0) {
        http = std::make_unique<HealthHttp>(impl.main_context, config, [&impl]() -> std::string {
            return !impl.shared.config.policy_file.empty() && !impl.shared.gate ? "no policy loaded" : "";
        });
        http->start();
    }
    for (auto& acceptor : acceptors) asio::co_spawn(impl.main_context, impl.accept_loop(*acceptor), asio::detached);
    if (unix_acceptor) asio::co_spawn(impl.main_context, impl.accept_loop(*unix_acceptor), asio::detached);

    // Shutdown. SIGTERM (graceful): the listeners close, each session ends with FATAL 57P01 once
    // it is at rest (idle, nothing outstanding), at the latest at shutdown_timeout_ms; SIGINT (or
    // the deadline): each session ends now, a running pgrail.* command first abandoned and
    // answered. Whatever has not ended last_words later is left behind: the process exits.
    constexpr auto last_words = std::chrono::seconds(10);
    ShutdownMode mode = ShutdownMode::none;
    bool forced = false;  // the deadline or last_words ended sessions
    bool stuck = false;   // sessions (or pool work) that did not end at all
    asio::steady_timer deadline(impl.main_context);
    asio::steady_timer poll(impl.main_context);
    const auto stop_everything = [&] {
        for (auto& worker : impl.workers) worker->stop();
        impl.main_context.stop();
    };
    std::function<void(const boost::system::error_code&)> wait_for_sessions = [&](const boost::system::error_code& ec) {
        if (ec) return;
        if (impl.shared.active_sessions.load() == 0) {
            spdlog::info("every session has ended: exiting");
            stop_everything();
            return;
        }
        poll.expires_after(std::chrono::milliseconds(50));
        poll.async_wait(wait_for_sessions);
    };
    const auto end_now = [&] {
        impl.shared.shut_down_sessions(ShutdownMode::immediate);
        deadline.expires_after(last_words);
        deadline.async_wait([&](const boost::system::error_code& ec) {
            if (ec) return;
            spdlog::error("{} sessions did not end within {} s of being told to: exiting without them",
                          impl.shared.active_sessions.load(), last_words.count());
            forced = true;
            stuck = true;
            stop_everything();
        });
    };
    const auto shut_down = [&](int signal) {
        const auto requested = signal == SIGINT ? ShutdownMode::immediate : ShutdownMode::graceful;
        if (requested <= mode) return;
        const bool first = mode == ShutdownMode::none;
        mode = requested;
        if (first) {
            for (auto& acceptor : acceptors) {
                boost::system::error_code ignored;
                acceptor->close(ignored);  // new connections are refused from here on
            }
            if (http) http->stop();  // a load balancer sees "not ready" as connection refused from here on
            if (unix_acceptor) {
                boost::system::error_code ignored;
                unix_acceptor->close(ignored);
                unix_socket_file.remove_socket();  // gone, as PostgreSQL's at shutdown; the lock stays to the exit
            }
        }
        const auto open = impl.shared.active_sessions.load();
        if (requested == ShutdownMode::graceful) {
            spdlog::info("received SIGTERM: shutting down: no new connections; {} sessions end once idle, "
                         "at most in {} ms (shutdown_timeout)",
                         open, config.shutdown_timeout_ms);
            impl.shared.shut_down_sessions(ShutdownMode::graceful);
            deadline.expires_after(std::chrono::milliseconds(config.shutdown_timeout_ms));
            deadline.async_wait([&](const boost::system::error_code& ec) {
                if (ec) return;
                const auto left = impl.shared.active_sessions.load();
                if (left == 0) return;
                spdlog::warn("shutdown_timeout ({} ms) reached: ending the {} sessions still busy",
                             config.shutdown_timeout_ms, left);
                forced = true;
                mode = ShutdownMode::immediate;
                end_now();
            });
        } else {
            spdlog::info("received SIGINT: shutting down: no new connections; ending {} sessions now", open);
            end_now();
        }
        if (first) wait_for_sessions({});
    };
    asio::signal_set stop_signals(impl.main_context, SIGINT, SIGTERM);
    std::function<void(const boost::system::error_code&, int)> on_stop = [&](const boost::system::error_code& ec,
                                                                             int signal) {
        if (ec) return;
        shut_down(signal);
        stop_signals.async_wait(on_stop);  // SIGINT after SIGTERM hurries the shutdown
    };
    stop_signals.async_wait(on_stop);

    asio::signal_set reload_signal(impl.main_context, SIGHUP);
    std::function<void(const boost::system::error_code&, int)> on_hup = [&](const boost::system::error_code& ec, int) {
        if (ec) return;
        if (impl.reload_busy) {
            spdlog::info("received SIGHUP during a reload: reloading again after it");
            impl.reload_again = true;
        } else {
            spdlog::info("received SIGHUP: reloading");
            impl.start_reload();
        }
        reload_signal.async_wait(on_hup);
    };
    reload_signal.async_wait(on_hup);

    std::vector<std::thread> threads;
    for (auto& worker : impl.workers) {
        threads.emplace_back([&context = *worker] {
            auto guard = asio::make_work_guard(context);
            context.run();
        });
    }
    impl.main_context.run();
    for (auto& thread : threads) thread.join();
    const auto cut = impl.shared.sessions_cut.load();
    // A session ended at rest lost nothing; one cut inside a transaction or statement (by SIGINT
    // or the deadline), or left behind, did.
    const int status = cut > 0 || stuck ? 1 : 0;
    spdlog::info("pgrail stopped: {} sessions cut inside a transaction or statement{}; exit status {}", cut,
                 forced ? " (the shutdown deadline forced the end)" : "", status);
    if (stuck || impl.reload_busy) {
        // Work blocked in the database (a command, a reload) would keep the pools from joining:
        // leave it behind (the process is about to exit) rather than hang.
        if (impl.reload_busy) spdlog::warn("a reload is still running (the database does not answer): not waiting");
        // Exit here, without running static destructors: the work left behind still uses the
        // logger, the metrics and OpenSSL, and would crash on them as they are torn down. Every
        // audit line is already written (write(2)); only the logs need a flush.
        spdlog::default_logger()->flush();
        std::fflush(nullptr);
        std::_Exit(status);
    }
    // Work still running on the pools posts its result to a worker: finish it before the
    // workers go.
    impl.shared.analysis_pool.join();
    impl.shared.blocking_pool.join();
    impl.shared.audit_pool.join();  // its work guards name the workers' io_contexts
    return status;
}

}  // namespace pgrail::proxy

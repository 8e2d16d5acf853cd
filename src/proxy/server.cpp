// The listener and the worker threads: one io_context per thread, sessions handed out in turn.
#include "pgrail/proxy/server.hpp"

#include <random>
#include <thread>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "session.hpp"

namespace pgrail::proxy {

namespace asio = boost::asio;

namespace {

std::string random_marker() {
    std::random_device device;
    std::uniform_int_distribution<std::uint64_t> distribution;
    return fmt::format("pgrail_refused_{:016x}_", distribution(device));
}

}  // namespace

struct Server::Impl {
    explicit Impl(config::ServeConfig config) : shared(std::move(config)) {}
    ServerShared shared;
    std::function<void()> on_reload;
    // Each worker runs its own single-threaded io_context: a session never changes
    // thread, so it needs no strand and no locks on its own state.
    std::vector<std::unique_ptr<asio::io_context>> workers;
    std::size_t next_worker = 0;
    asio::io_context main_context{1};

    asio::io_context& pick_worker() {
        auto& worker = *workers[next_worker];
        next_worker = (next_worker + 1) % workers.size();
        return worker;
    }

    asio::awaitable<void> accept_loop(tcp::acceptor& acceptor) {
        while (acceptor.is_open()) {
            // Accepted straight into the stream type both legs share, registered with its worker.
            Stream socket(pick_worker());
            auto [ec] = co_await acceptor.async_accept(socket, asio::as_tuple(asio::use_awaitable));
            if (ec) {
                if (ec == asio::error::operation_aborted) co_return;
                // Out of file descriptors and the like: log, breathe, go on serving.
                spdlog::error("accept failed: {}", ec.message());
                asio::steady_timer pause(main_context, std::chrono::milliseconds(50));
                co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
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
               std::function<void()> on_reload)
    : impl_(std::make_unique<Impl>(std::move(config))) {
    impl_->shared.gate = std::move(gate);
    impl_->shared.inband = std::move(inband);
    impl_->shared.refusal_marker = random_marker();
    impl_->on_reload = std::move(on_reload);
}

Server::~Server() = default;

void Server::run() {
    auto& impl = *impl_;
    const auto& config = impl.shared.config;
    auto worker_count = config.workers != 0 ? config.workers : std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 0; i < worker_count; ++i) impl.workers.push_back(std::make_unique<asio::io_context>(1));

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
    for (auto& acceptor : acceptors) asio::co_spawn(impl.main_context, impl.accept_loop(*acceptor), asio::detached);

    asio::signal_set stop_signals(impl.main_context, SIGINT, SIGTERM);
    stop_signals.async_wait([&](const boost::system::error_code& ec, int signal) {
        if (ec) return;
        spdlog::info("received signal {}: shutting down ({} sessions open)", signal, impl.shared.active_sessions.load());
        for (auto& acceptor : acceptors) acceptor->close();
        for (auto& worker : impl.workers) worker->stop();
        impl.main_context.stop();
    });
    asio::signal_set reload_signal(impl.main_context, SIGHUP);
    std::function<void(const boost::system::error_code&, int)> on_hup = [&](const boost::system::error_code& ec, int) {
        if (ec) return;
        spdlog::info("received SIGHUP: reloading");
        if (impl.on_reload) impl.on_reload();
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
    // Work still running on the pools posts its result to a worker: finish it before the
    // workers go.
    impl.shared.analysis_pool.join();
    impl.shared.blocking_pool.join();
}

}  // namespace pgrail::proxy

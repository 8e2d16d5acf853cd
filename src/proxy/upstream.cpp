// The database server's end of a session (upstream.hpp).
#include "upstream.hpp"

#include "drained_receive.hpp"

#include "leg.hpp"
#include "tcp_keepalive.hpp"

#include <chrono>
#include <tuple>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "pgrail/protocol/frontend.hpp"
#include "pgrail/proxy/metrics.hpp"

namespace pgrail::proxy {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using boost::system::error_code;
using asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

asio::awaitable<std::tuple<error_code, std::vector<Endpoint>>> resolve(const config::ServeConfig& config) {
    error_code ec;
    if (config.upstream_is_socket()) {
        co_return std::tuple{ec, std::vector<Endpoint>{asio::local::stream_protocol::endpoint(config.upstream_socket_path())}};
    }
    // A numeric address needs no resolver (whose lookups run on a thread of their own).
    const auto address = asio::ip::make_address(config.upstream_host, ec);
    if (!ec) co_return std::tuple{ec, std::vector<Endpoint>{tcp::endpoint{address, config.upstream_port}}};
    tcp::resolver resolver(co_await asio::this_coro::executor);
    auto [resolve_ec, results] =
        co_await resolver.async_resolve(config.upstream_host, std::to_string(config.upstream_port), use_tuple);
    std::vector<Endpoint> endpoints;
    for (const auto& entry : results) endpoints.emplace_back(entry.endpoint());
    co_return std::tuple{resolve_ec, std::move(endpoints)};
}

}  // namespace

std::string upstream_address(const config::ServeConfig& config) {
    return config.upstream_is_socket() ? config.upstream_socket_path()
                                       : fmt::format("{}:{}", config.upstream_host, config.upstream_port);
}

asio::awaitable<std::string> connect_to_upstream(Stream& socket, const config::ServeConfig& config) {
    asio::steady_timer deadline(socket.get_executor(), std::chrono::milliseconds(config.connect_timeout_ms));
    auto resolved = co_await (resolve(config) || deadline.async_wait(use_tuple));
    if (resolved.index() == 1) {
        metrics().count_timeout(Timeout::upstream_connect);  // metrics
        co_return "timed out resolving the host";
    }
    auto [ec, endpoints] = std::get<0>(resolved);
    if (ec) co_return ec.message();
    auto connected = co_await (asio::async_connect(socket, endpoints, use_tuple) || deadline.async_wait(use_tuple));
    if (connected.index() == 1) {
        metrics().count_timeout(Timeout::upstream_connect);  // metrics
        co_return fmt::format("timed out after {} ms", config.connect_timeout_ms);
    }
    if (auto connect_ec = std::get<0>(std::get<0>(connected)); connect_ec) co_return connect_ec.message();
    error_code ignored;
    if (!config.upstream_is_socket()) socket.set_option(tcp::no_delay(true), ignored);
    set_tcp_keepalive(socket.native_handle(), config);
    prepare_for_drained_receive(socket, Leg::drained_receives());
    co_return std::string();
}

asio::awaitable<std::string> start_server_tls(Leg& leg, const TlsContextSet* tls, const config::ServeConfig& config) {
    using config::ServerSslMode;
    if (tls == nullptr || !tls->server_leg || config.upstream_is_socket()) co_return std::string();
    const auto mode = tls->settings.server.sslmode;
    if (mode == ServerSslMode::disable || mode == ServerSslMode::allow) co_return std::string();
    asio::steady_timer deadline(leg.get_executor(), std::chrono::milliseconds(config.connect_timeout_ms));
    std::string request;
    protocol::encode_ssl_request(request);
    char answer = 0;
    auto exchange = [&]() -> asio::awaitable<error_code> {
        auto [write_ec, written] = co_await leg.async_write(asio::buffer(request), use_tuple);
        if (write_ec) co_return write_ec;
        auto [read_ec, read] = co_await asio::async_read(leg.socket(), asio::buffer(&answer, 1), use_tuple);
        co_return read_ec;
    };
    auto asked = co_await (exchange() || deadline.async_wait(use_tuple));
    if (asked.index() == 1) co_return fmt::format("timed out after {} ms asking for TLS", config.connect_timeout_ms);
    if (const auto ec = std::get<0>(asked)) co_return ec.message();
    if (answer != 'S') {
        // 'N' (or an old server's error): the server does not do TLS.
        if (mode == ServerSslMode::prefer) co_return std::string();
        co_return fmt::format("the server does not support SSL, but tls.server.sslmode is {}", config::to_string(mode));
    }
    SSL* ssl = leg.begin_tls(tls->server_leg);
    if (ssl == nullptr) co_return "cannot start TLS: out of memory";
    if (!prepare_server_leg(ssl, *tls)) co_return fmt::format("cannot send {} as the TLS server name", tls->server_name);
    auto shaken = co_await (leg.handshake(asio::ssl::stream_base::client) || deadline.async_wait(use_tuple));
    if (shaken.index() == 1) co_return fmt::format("the TLS handshake timed out after {} ms", config.connect_timeout_ms);
    if (const auto ec = std::get<0>(shaken)) co_return "TLS: " + describe_tls_error(ec, ssl);
    co_return std::string();
}

asio::awaitable<void> send_cancel_request(Stream::executor_type executor, const config::ServeConfig& config,
                                          std::shared_ptr<const TlsContextSet> tls, protocol::BackendKey key) {
    Leg upstream{Stream(executor)};
    auto failure = co_await connect_to_upstream(upstream.socket(), config);
    if (failure.empty()) failure = co_await start_server_tls(upstream, tls.get(), config);
    if (!failure.empty()) {
        spdlog::warn("cannot send a cancel request for backend {} to {}: {}", key.pid, upstream_address(config),
                     failure);
        co_return;
    }
    std::string request;
    protocol::encode_cancel_request(request, key.pid, key.secret);
    co_await upstream.async_write(asio::buffer(request), use_tuple);
    // PostgreSQL closes the cancel connection once it has acted on it.
    asio::steady_timer deadline(executor, std::chrono::milliseconds(config.connect_timeout_ms));
    char ignored[1];
    co_await (upstream.async_read_some(asio::buffer(ignored), use_tuple) || deadline.async_wait(use_tuple));
}

}  // namespace pgrail::proxy

// The database server's end of a session (upstream.hpp).
#include "upstream.hpp"

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
    socket.non_blocking(true, ignored);
    co_return std::string();
}

asio::awaitable<void> send_cancel_request(Stream::executor_type executor, const config::ServeConfig& config,
                                          protocol::BackendKey key) {
    Stream upstream(executor);
    if (const auto failure = co_await connect_to_upstream(upstream, config); !failure.empty()) {
        spdlog::warn("cannot send a cancel request for backend {} to {}: {}", key.pid, upstream_address(config),
                     failure);
        co_return;
    }
    std::string request;
    protocol::encode_cancel_request(request, key.pid, key.secret);
    co_await asio::async_write(upstream, asio::buffer(request), use_tuple);
    // PostgreSQL closes the cancel connection once it has acted on it.
    asio::steady_timer deadline(executor, std::chrono::milliseconds(config.connect_timeout_ms));
    char ignored[1];
    co_await (upstream.async_read_some(asio::buffer(ignored), use_tuple) || deadline.async_wait(use_tuple));
}

}  // namespace pgrail::proxy

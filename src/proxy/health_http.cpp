// The operator's HTTP listener: /metrics, /healthz, /readyz (Boost.Beast, one request per connection).
#include "health_http.hpp"

#include <list>
#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "pgrail/proxy/metrics.hpp"

namespace pgrail::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr auto request_timeout = std::chrono::seconds(5);
constexpr std::uint64_t max_request_bytes = 8192;
// Answered at once: a probe or scrape is one short request. At most this many are open at a time
// (each up to request_timeout), so that no caller can take the process's descriptors; past it, the
// connection that has waited longest for its request is closed to make room, so that callers who
// send nothing cannot keep the orchestrator's probes out.
constexpr std::size_t max_open_connections = 64;

}  // namespace

struct HealthHttp::Impl {
    asio::io_context& context;
    const config::ServeConfig& config;
    std::function<std::string()> policy_state;
    tcp::acceptor acceptor;
    std::size_t open_connections = 0;  // (main_context runs on one thread)
    // Connections still reading their request, oldest first; an evicted one's flag turns false.
    std::list<std::pair<beast::tcp_stream*, bool*>> reading;

    Impl(asio::io_context& io, const config::ServeConfig& serve, std::function<std::string()> state)
        : context(io), config(serve), policy_state(std::move(state)), acceptor(io) {}

    // Whether a connection to the server succeeds within connect_timeout_ms (at most 2 s): "" or why not.
    asio::awaitable<std::string> upstream_state() {
        const auto timeout = std::chrono::milliseconds(std::min<std::uint32_t>(config.connect_timeout_ms, 2000));
        asio::steady_timer deadline(context, timeout);
        boost::system::error_code ec;
        if (config.upstream_is_socket()) {
            asio::local::stream_protocol::socket socket(context);
            const asio::local::stream_protocol::endpoint endpoint(config.upstream_socket_path());
            auto result = co_await (socket.async_connect(endpoint, use_tuple) || deadline.async_wait(use_tuple));
            if (result.index() == 1) co_return "timed out connecting to the server";
            ec = std::get<0>(std::get<0>(result));
        } else {
            tcp::resolver resolver(context);
            const std::string port = std::to_string(config.upstream_port);
            auto resolved =
                co_await (resolver.async_resolve(config.upstream_host, port, use_tuple) || deadline.async_wait(use_tuple));
            if (resolved.index() == 1) co_return "timed out resolving the server's host";
            auto [resolve_ec, endpoints] = std::get<0>(resolved);
            if (resolve_ec) co_return "cannot resolve the server's host: " + resolve_ec.message();
            tcp::socket socket(context);
            auto result = co_await (asio::async_connect(socket, endpoints, use_tuple) || deadline.async_wait(use_tuple));
            if (result.index() == 1) co_return "timed out connecting to the server";
            ec = std::get<0>(std::get<0>(result));
        }
        if (ec) co_return "cannot connect to the server: " + ec.message();
        co_return "";
    }

    // Each probe is a connection, and for PostgreSQL a fork of a backend: probes answer from one
    // taken less than a second ago, and while one is under way others answer from the last.
    // (Everything here runs on the main context's one thread.)
    std::chrono::steady_clock::time_point probed_at{};
    std::optional<std::string> last_probe;
    bool probing = false;

    asio::awaitable<std::string> cached_upstream_state() {
        const auto now = std::chrono::steady_clock::now();
        if (last_probe && (probing || now - probed_at < std::chrono::seconds(1))) co_return *last_probe;
        probing = true;
        std::string state = co_await upstream_state();
        probing = false;
        probed_at = std::chrono::steady_clock::now();
        last_probe = state;
        co_return state;
    }

    asio::awaitable<void> answer(tcp::socket socket) {
        struct Counted {  // counted in by accept_loop, out here
            std::size_t& open;
            explicit Counted(std::size_t& count) : open(count) {}
            Counted(const Counted&) = delete;
            Counted& operator=(const Counted&) = delete;
            ~Counted() { --open; }
        } counted(open_connections);
        beast::tcp_stream stream(std::move(socket));
        stream.expires_after(request_timeout);
        beast::flat_buffer buffer(max_request_bytes);
        http::request_parser<http::empty_body> parser;
        parser.header_limit(max_request_bytes);
        parser.body_limit(0);
        bool listed = true;
        const auto place = reading.insert(reading.end(), {&stream, &listed});
        auto [read_ec, read_bytes] = co_await http::async_read(stream, buffer, parser, use_tuple);
        (void)read_bytes;
        if (listed) reading.erase(place);
        if (read_ec) co_return;
        const auto& request = parser.get();
        http::response<http::string_body> response;
        response.version(request.version());
        response.keep_alive(false);
        response.set(http::field::server, "pgrail");
        response.set(http::field::content_type, "text/plain; charset=utf-8");
        const auto target = std::string_view(request.target().data(), request.target().size());
        const auto path = target.substr(0, target.find('?'));
        if (request.method() != http::verb::get && request.method() != http::verb::head) {
            response.result(http::status::method_not_allowed);
            response.set(http::field::allow, "GET, HEAD");
            response.body() = "GET or HEAD\n";
        } else if (path == "/metrics") {
            response.result(http::status::ok);
            response.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
            response.body() = metrics().render();
        } else if (path == "/healthz") {
            response.result(http::status::ok);
            response.body() = "ok\n";
        } else if (path == "/readyz") {
            std::string why = policy_state ? policy_state() : std::string();
            if (why.empty()) why = co_await cached_upstream_state();
            response.result(why.empty() ? http::status::ok : http::status::service_unavailable);
            response.body() = why.empty() ? "ready\n" : "not ready: " + why + "\n";
        } else {
            response.result(http::status::not_found);
            response.body() = "not found: /metrics, /healthz, /readyz\n";
        }
        if (request.method() == http::verb::head) {
            response.content_length(response.body().size());
            response.body().clear();
        } else {
            response.prepare_payload();
        }
        stream.expires_after(request_timeout);
        co_await http::async_write(stream, response, use_tuple);
        boost::system::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }

    asio::awaitable<void> accept_loop() {
        while (acceptor.is_open()) {
            auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
            if (ec) {
                if (ec == asio::error::operation_aborted) co_return;
                spdlog::warn("http: accept failed: {}", ec.message());
                asio::steady_timer pause(context, std::chrono::milliseconds(50));
                co_await pause.async_wait(use_tuple);
                continue;
            }
            if (open_connections >= max_open_connections) {
                if (reading.empty()) {  // all are being answered (each within request_timeout)
                    boost::system::error_code ignored;
                    socket.close(ignored);
                    continue;
                }
                // The oldest caller still sending nothing makes room (its read ends at once).
                auto [stream, listed] = reading.front();
                reading.pop_front();
                *listed = false;
                stream->close();
            }
            ++open_connections;
            asio::co_spawn(context, answer(std::move(socket)), asio::detached);
        }
    }
};

HealthHttp::HealthHttp(asio::io_context& context, const config::ServeConfig& config,
                       std::function<std::string()> policy_state)
    : impl_(std::make_unique<Impl>(context, config, std::move(policy_state))) {}

HealthHttp::~HealthHttp() = default;

void HealthHttp::start() {
    auto& impl = *impl_;
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(impl.config.http_host, ec);
    if (ec) throw std::runtime_error(fmt::format("http.host: not an IP address: {}", impl.config.http_host));
    const tcp::endpoint endpoint(address, impl.config.http_port);
    impl.acceptor.open(endpoint.protocol());
    impl.acceptor.set_option(tcp::acceptor::reuse_address(true));
    impl.acceptor.bind(endpoint, ec);
    if (ec)
        throw std::runtime_error(fmt::format("http: cannot listen on {}:{}: {}", impl.config.http_host,
                                             impl.config.http_port, ec.message()));
    impl.acceptor.listen(asio::socket_base::max_listen_connections);
    spdlog::info("http: /metrics, /healthz and /readyz on {}:{}", impl.config.http_host, impl.config.http_port);
    asio::co_spawn(impl.context, impl.accept_loop(), asio::detached);
}

void HealthHttp::stop() {
    boost::system::error_code ignored;
    impl_->acceptor.close(ignored);
}

}  // namespace pgrail::proxy

// The leg's receive that tells the reactor when the socket is empty (drained_receive.hpp), over
// real loopback TCP: nothing it reads is lost or late, an end of stream that came with the last
// bytes is seen, and an awaitable operator can cancel it.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <thread>
#include <vector>
#include <optional>
#include <string>
#include <variant>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "../../../src/proxy/drained_receive.hpp"

using namespace pgrail::proxy;
namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// A connected pair on loopback: `leg` reads what `peer` writes.
struct Pair {
    asio::io_context io;
    tcp::socket peer{io};
    std::optional<Stream> stream;
    Pair() {
        tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
        peer.connect(acceptor.local_endpoint());
        tcp::socket accepted = acceptor.accept();
        stream.emplace(io, asio::generic::stream_protocol(AF_INET, IPPROTO_TCP), accepted.release());
        prepare_for_drained_receive(*stream, true);
    }
    // Reads once, or gives up after `limit`: the bytes, "<eof>", "<timeout>" or the error.
    asio::awaitable<std::string> read_once(std::chrono::milliseconds limit) {
        std::array<char, 512> into{};
        asio::steady_timer timer(io, limit);
        auto read = async_drained_receive(*stream, reactor_of(*stream), asio::buffer(into), use_tuple);
        auto result = co_await (std::move(read) || timer.async_wait(use_tuple));
        if (result.index() == 1) co_return "<timeout>";
        auto [ec, n] = std::get<0>(result);
        if (ec == asio::error::eof) co_return "<eof>";
        if (ec) co_return "<" + ec.message() + ">";
        co_return std::string(into.data(), n);
    }
    void run(asio::awaitable<void> body) {
        asio::co_spawn(io, std::move(body), [](std::exception_ptr error) {
            if (error) std::rethrow_exception(error);
        });
        io.run();
    }
};

}  // namespace

TEST_CASE("a drained receive sees the end of stream that came with the last bytes", "[drained]") {
    // The bytes and the FIN are both in the socket when the read that empties it runs: epoll
    // reported them once, and reports nothing after. That read must not let the next one wait.
    Pair pair;
    std::vector<std::string> reads;
    asio::steady_timer later(pair.io);
    pair.run([&]() -> asio::awaitable<void> {
        later.expires_after(30ms);
        later.async_wait([&](boost::system::error_code) {
            asio::write(pair.peer, asio::buffer(std::string("hello")));
            pair.peer.shutdown(tcp::socket::shutdown_send);
        });
        reads.push_back(co_await pair.read_once(2s));  // waiting when both arrive
        reads.push_back(co_await pair.read_once(2s));
    }());
    CHECK(reads == std::vector<std::string>{"hello", "<eof>"});
}

TEST_CASE("a drained receive waits for data that comes later, in order, and for a later end of stream", "[drained]") {
    Pair pair;
    std::vector<std::string> reads;
    asio::steady_timer later(pair.io);
    pair.run([&]() -> asio::awaitable<void> {
        asio::write(pair.peer, asio::buffer(std::string("one")));
        reads.push_back(co_await pair.read_once(2s));  // takes all there is: the queue is empty now
        // Nothing there: this one waits on the reactor, and a timer cancels it (the || operator).
        reads.push_back(co_await pair.read_once(50ms));
        // Data after the wait began wakes the next read.
        later.expires_after(30ms);
        later.async_wait([&](boost::system::error_code) { asio::write(pair.peer, asio::buffer(std::string("two"))); });
        reads.push_back(co_await pair.read_once(2s));
        later.expires_after(30ms);
        later.async_wait([&](boost::system::error_code) { pair.peer.shutdown(tcp::socket::shutdown_send); });
        reads.push_back(co_await pair.read_once(2s));
    }());
    CHECK(reads == std::vector<std::string>{"one", "<timeout>", "two", "<eof>"});
}

TEST_CASE("a drained receive into a full buffer reads the rest without waiting", "[drained]") {
    Pair pair;
    const std::string sent(2000, 'x');
    asio::write(pair.peer, asio::buffer(sent));
    std::this_thread::sleep_for(50ms);
    std::string received;
    pair.run([&]() -> asio::awaitable<void> {
        while (received.size() < sent.size()) {
            const std::string piece = co_await pair.read_once(2s);
            if (piece.starts_with("<")) break;
            received += piece;
        }
    }());
    CHECK(received == sent);
}

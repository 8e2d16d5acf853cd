// One leg of a session (client to pgrail, or pgrail to the server): its socket, and TLS over that
// socket once a handshake made it so. The pumps read and write through it the same either way.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

#include "upstream.hpp"

namespace pgrail::proxy {

class Leg {
public:
    using executor_type = Stream::executor_type;  // an AsyncReadStream, for asio::async_read
    explicit Leg(Stream socket) : socket_(std::move(socket)) {}
    Leg(const Leg&) = delete;
    Leg& operator=(const Leg&) = delete;

    // The socket underneath (TCP or Unix): options, shutdown, cancel, close, readiness.
    [[nodiscard]] Stream& socket() { return socket_; }
    [[nodiscard]] Stream::executor_type get_executor() { return socket_.get_executor(); }
    [[nodiscard]] bool tls() const { return tls_ != nullptr; }
    // Decrypted bytes TLS holds that no read has taken yet (they are not in the socket).
    [[nodiscard]] std::size_t tls_pending() const;

    // TLS from here on, over `context` (kept alive with the leg: a reload makes new ones for new
    // sessions): the stream, to be prepared (SNI) before handshake() runs.
    SSL* begin_tls(std::shared_ptr<boost::asio::ssl::context> context);
    // The handshake, as the server (the client's leg) or as the client (the server's leg).
    boost::asio::awaitable<boost::system::error_code> handshake(boost::asio::ssl::stream_base::handshake_type type);
    [[nodiscard]] SSL* native_tls() { return tls_ ? tls_->native_handle() : nullptr; }

    template <class Buffers, class Token>
    auto async_read_some(const Buffers& buffers, Token&& token) {
        if (tls_) return tls_->async_read_some(buffers, std::forward<Token>(token));
        return socket_.async_read_some(buffers, std::forward<Token>(token));
    }
    // All of `buffers`.
    template <class Buffers, class Token>
    auto async_write(const Buffers& buffers, Token&& token) {
        if (tls_) return boost::asio::async_write(*tls_, buffers, std::forward<Token>(token));
        return boost::asio::async_write(socket_, buffers, std::forward<Token>(token));
    }
    // What a write that never waits takes now (the socket is non-blocking): on TLS nothing, as
    // OpenSSL cannot take back a record half-written to a full socket; the caller then waits.
    template <class Buffers>
    std::size_t try_write(const Buffers& buffers, boost::system::error_code& ec) {
        if (tls_) return 0;
        return socket_.write_some(buffers, ec);
    }

private:
    Stream socket_;
    std::shared_ptr<boost::asio::ssl::context> context_;
    std::unique_ptr<boost::asio::ssl::stream<Stream&>> tls_;
};

}  // namespace pgrail::proxy

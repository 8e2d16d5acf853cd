// One leg of a session (client to pgrail, or pgrail to the server): its socket, and TLS over that
// socket once a handshake made it so. The pumps read and write through it the same either way.
//
// TLS is OpenSSL over a BIO of the leg's own, not Asio's ssl::stream: that stream keeps 34 KiB
// of buffers a connection and finishes every write through a handler of the reactor, so a write
// could never complete without suspending. Here OpenSSL writes to the socket directly (send), so
// a write that the socket takes completes at once; it reads what the leg received with Asio's
// receive (or drained_receive.hpp's, when switched on), into a 512-byte doorbell while idle.
// OpenSSL's buffers go back while a connection idles (RELEASE_BUFFERS).
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "drained_receive.hpp"
#include "upstream.hpp"

namespace pgrail::proxy {

class Leg {
public:
    // What every read and write of a leg completes with (Asio's as_tuple(use_awaitable) shape).
    using Transfer = boost::asio::awaitable<std::tuple<boost::system::error_code, std::size_t>>;
    using Token = boost::asio::as_tuple_t<boost::asio::use_awaitable_t<>>;

    explicit Leg(Stream socket);
    ~Leg();
    Leg(const Leg&) = delete;
    Leg& operator=(const Leg&) = delete;

    // The socket underneath (TCP or Unix): options, shutdown, cancel, close, readiness.
    [[nodiscard]] Stream& socket() { return socket_; }
    [[nodiscard]] Stream::executor_type get_executor() { return socket_.get_executor(); }
    [[nodiscard]] bool tls() const { return tls_ != nullptr; }
    // The peer's address as PostgreSQL's log_connections says it: "[local]" for a Unix socket.
    [[nodiscard]] std::string peer_address() const;
    // Nonzero when TLS holds bytes no read has taken yet (decrypted or read ahead, no longer in
    // the socket): the next read finds data without waiting.
    [[nodiscard]] std::size_t tls_pending() const;

    // TLS from here on, over `context` (kept alive with the leg: a reload makes new ones for new
    // sessions): the connection, to be prepared (SNI) before handshake() runs. Null when OpenSSL
    // cannot make one (out of memory).
    SSL* begin_tls(std::shared_ptr<boost::asio::ssl::context> context);
    // The handshake, as the server (the client's leg) or as the client (the server's leg).
    boost::asio::awaitable<boost::system::error_code> handshake(boost::asio::ssl::stream_base::handshake_type type);
    [[nodiscard]] SSL* native_tls();

    // Whether legs read with async_drained_receive instead of Asio's receive: only with
    // PGRAIL_DRAINED_RECEIVE=1 in pgrail's environment. It saves two system calls a transaction but,
    // measured again after the per-message cuts, no CPU, and 2-5% of TPS went with it
    // (bench/RESULTS.md, "The drained receive, measured again").
    static bool drained_receives();
    // Shuts the socket down both ways while its reads may go on: they then end with eof. (Later
    // receives try the socket first, as Asio's do: a local shutdown is not in TCP's count of bytes
    // left, so a drained receive would otherwise rely on the wake-up the shutdown causes.)
    void shutdown() {
        boost::system::error_code ignored;
        socket_.shutdown(Stream::shutdown_both, ignored);
        drained_ = false;
    }
    // Whether async_read_some is Asio's receive on the socket as it is (no TLS, no drained
    // receive): the pumps then await that receive directly.
    [[nodiscard]] bool receives_plainly() const { return !tls_ && !drained_; }
    // Some bytes (at least one), or an error (eof: the peer closed).
    Transfer async_read_some(boost::asio::mutable_buffer into, Token token) {
        if (!tls_) {
            if (drained_) return async_drained_receive(socket_, reactor_, into, token);
            return socket_.async_read_some(into, token);
        }
        return tls_read_some(into);
    }
    // All of `into`.
    Transfer read_exactly(boost::asio::mutable_buffer into);
    // All of `bytes`.
    Transfer async_write(std::span<const boost::asio::const_buffer> bytes, Token token) {
        if (!tls_) return boost::asio::async_write(socket_, bytes, token);
        return tls_write({bytes.begin(), bytes.end()});
    }
    Transfer async_write(boost::asio::const_buffer bytes, Token token) {
        if (!tls_) return boost::asio::async_write(socket_, bytes, token);
        return tls_write({bytes});
    }
    // The first bytes the peer sent that no read has taken, left for the next read (decrypted on
    // TLS), without waiting: their count; 0 with `ec` eof when the peer closed (on TLS also by
    // close_notify) or another error; 0 without an error when nothing (whole) is there yet.
    // Never call it while a read of the leg is pending: on TLS it takes bytes from the socket.
    std::size_t peek(std::span<char> into, boost::system::error_code& ec);
    // What a write that never waits takes now (the socket is non-blocking): 0 and would_block
    // when it takes nothing. On TLS a record OpenSSL could not finish stays with it, and the
    // next write must begin with the bytes that were not taken (as write_out's does).
    std::size_t try_write(std::span<const boost::asio::const_buffer> bytes, boost::system::error_code& ec) {
        if (!tls_) return socket_.write_some(bytes, ec);
        return tls_try_write(bytes, ec);
    }
    std::size_t try_write(boost::asio::const_buffer bytes, boost::system::error_code& ec) {
        return try_write(std::span<const boost::asio::const_buffer>(&bytes, 1), ec);
    }

private:
    enum class Wait { none, read, write };
    Transfer tls_read_some(boost::asio::mutable_buffer into);
    std::size_t tls_try_write(std::span<const boost::asio::const_buffer> bytes, boost::system::error_code& ec);
    // (The pieces' list is the coroutine's own: the caller's may be gone once it suspends.)
    Transfer tls_write(std::vector<boost::asio::const_buffer> pieces);
    // OpenSSL's answer to a call that returned `result`: nothing to wait for (and `ec` set when
    // the call failed for good), or what to wait for before calling again.
    Wait tls_outcome(int result, boost::system::error_code& ec);
    // Wait::read: the next bytes from the socket for OpenSSL (Asio's receive); Wait::write: the
    // socket writable again.
    boost::asio::awaitable<boost::system::error_code> wait_for(Wait wait);
    // The next receive into the doorbell (the operation itself: no coroutine of its own).
    Transfer receive_for_tls();
    // After a receive of `n` bytes into the doorbell: they go to `received`, with what more the
    // socket holds now (a full doorbell), a few records at most.
    void take_received(std::size_t n);
    // The BIO's ends (leg.cpp): what OpenSSL reads from `received`, what it writes to the socket.
    friend struct LegBio;

    // A TLS leg's state, allocated by begin_tls: a plain leg carries one pointer.
    struct Tls {
        ~Tls();
        std::shared_ptr<boost::asio::ssl::context> context;
        SSL* ssl = nullptr;
        int descriptor = -1;
        std::string received;           // bytes from the socket that OpenSSL has yet to read
        std::size_t received_head = 0;  // how many of them it read
        std::array<char, 512> doorbell{};
        std::string gathered;  // a write's pieces as one record's worth of bytes
    };
    Stream socket_;
    boost::asio::detail::reactor& reactor_;  // the socket's, for async_drained_receive
    bool drained_ = drained_receives();      // read once: asked at every receive
    std::unique_ptr<Tls> tls_;
};

}  // namespace pgrail::proxy

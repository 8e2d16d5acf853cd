// One leg of a session: its socket, and TLS over it (leg.hpp).
#include "leg.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <sys/socket.h>

#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>

namespace pgrail::proxy {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// Pieces are gathered into one SSL_write up to a record's payload: one record, one system call.
constexpr std::size_t max_record_payload = 16384;

}  // namespace

Leg::~Leg() {
    // The descriptor is the socket's (SSL_set_fd does not own it): only OpenSSL's state goes.
    if (ssl_) SSL_free(ssl_);
}

std::string Leg::peer_address() const {
    error_code ec;
    const Endpoint endpoint = socket_.remote_endpoint(ec);
    if (ec) return "unknown";
    const int family = endpoint.protocol().family();
    // A Unix-socket client has no address: "[local]", as PostgreSQL's log_connections says it
    // (policy rules match it only with `clients: ::/0`).
    if (family == AF_UNIX) return "[local]";
    if ((family != AF_INET && family != AF_INET6) || endpoint.size() > boost::asio::ip::tcp::endpoint().capacity())
        return "local";
    boost::asio::ip::tcp::endpoint address;
    std::memcpy(address.data(), endpoint.data(), endpoint.size());
    address.resize(endpoint.size());
    return address.address().to_string();
}

std::size_t Leg::tls_pending() const {
    if (!ssl_) return 0;
    const int pending = SSL_pending(ssl_);
    return pending > 0 ? static_cast<std::size_t>(pending) : 0;
}

SSL* Leg::begin_tls(std::shared_ptr<asio::ssl::context> context) {
    context_ = std::move(context);
    ssl_ = SSL_new(context_->native_handle());
    if (!ssl_) return nullptr;
    error_code ignored;
    socket_.non_blocking(true, ignored);  // OpenSSL's reads and writes must never block the thread
    SSL_set_fd(ssl_, static_cast<int>(socket_.native_handle()));
    // Partial writes: SSL_write returns once a record is out (write_out keeps the rest); a retry
    // may come from another address with the same bytes; idle connections give the buffers back.
    SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    return ssl_;
}

Leg::Wait Leg::tls_outcome(int result, error_code& ec) {
    switch (SSL_get_error(ssl_, result)) {
        case SSL_ERROR_NONE:
            return Wait::none;
        case SSL_ERROR_WANT_READ:
            return Wait::read;
        case SSL_ERROR_WANT_WRITE:
            return Wait::write;
        case SSL_ERROR_ZERO_RETURN:  // the peer's close_notify
            ec = asio::error::eof;
            return Wait::none;
        case SSL_ERROR_SYSCALL:
            // errno 0: the peer closed without close_notify (PostgreSQL and libpq often do).
            ec = errno != 0 ? error_code(errno, boost::system::system_category()) : error_code(asio::error::eof);
            return Wait::none;
        default: {
            // An OpenSSL error (a bad record, a failed verification): its code, as Asio's ssl
            // category names it (describe_tls_error reads it).
            const auto code = ERR_get_error();
            ec = error_code(static_cast<int>(code), asio::error::get_ssl_category());
            // OpenSSL 3 says so when the peer closed without close_notify mid-record.
            if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) ec = asio::ssl::error::stream_truncated;
            if (!ec) ec = asio::ssl::error::unexpected_result;
            return Wait::none;
        }
    }
}

asio::awaitable<error_code> Leg::wait_for(Wait wait) {
    auto [ec] = co_await socket_.async_wait(wait == Wait::read ? Stream::wait_read : Stream::wait_write, use_tuple);
    co_return ec;
}

asio::awaitable<error_code> Leg::handshake(asio::ssl::stream_base::handshake_type type) {
    if (!ssl_) co_return error_code(asio::error::no_memory);  // begin_tls could not make one
    if (type == asio::ssl::stream_base::server)
        SSL_set_accept_state(ssl_);
    else
        SSL_set_connect_state(ssl_);
    while (true) {
        ERR_clear_error();
        errno = 0;
        const int result = SSL_do_handshake(ssl_);
        if (result == 1) co_return error_code{};
        error_code ec;
        const Wait wait = tls_outcome(result, ec);
        if (wait == Wait::none) co_return ec ? ec : error_code(asio::ssl::error::unexpected_result);
        if (auto wait_ec = co_await wait_for(wait)) co_return wait_ec;
    }
}

Leg::Transfer Leg::tls_read_some(asio::mutable_buffer into) {
    if (into.size() == 0) co_return std::tuple(error_code{}, std::size_t{0});
    const int size = static_cast<int>(std::min<std::size_t>(into.size(), 1u << 30));
    while (true) {
        ERR_clear_error();
        errno = 0;
        const int result = SSL_read(ssl_, into.data(), size);
        if (result > 0) co_return std::tuple(error_code{}, static_cast<std::size_t>(result));
        error_code ec;
        const Wait wait = tls_outcome(result, ec);
        if (wait == Wait::none) co_return std::tuple(ec ? ec : error_code(asio::error::eof), std::size_t{0});
        // WANT_READ: the socket was empty just now (its next data wakes the reactor's wait).
        if (auto wait_ec = co_await wait_for(wait)) co_return std::tuple(wait_ec, std::size_t{0});
    }
}

Leg::Transfer Leg::read_exactly(asio::mutable_buffer into) {
    std::size_t total = 0;
    while (total < into.size()) {
        auto [ec, n] = co_await async_read_some(into + total, use_tuple);
        total += n;
        if (ec) co_return std::tuple(ec, total);
    }
    co_return std::tuple(error_code{}, total);
}

std::size_t Leg::try_write(std::span<const asio::const_buffer> bytes, error_code& ec) {
    ec.clear();
    if (!ssl_) return socket_.write_some(bytes, ec);
    std::size_t taken = 0;
    std::size_t piece = 0;
    std::size_t offset = 0;  // into bytes[piece]
    while (piece < bytes.size()) {
        if (offset == bytes[piece].size()) {
            ++piece;
            offset = 0;
            continue;
        }
        // One piece as it is, or the next pieces gathered up to a record.
        const char* data = static_cast<const char*>(bytes[piece].data()) + offset;
        std::size_t size = bytes[piece].size() - offset;
        if (size < max_record_payload && piece + 1 < bytes.size()) {
            gathered_.assign(data, size);
            for (std::size_t next = piece + 1; next < bytes.size() && gathered_.size() < max_record_payload; ++next) {
                const auto take = std::min(bytes[next].size(), max_record_payload - gathered_.size());
                gathered_.append(static_cast<const char*>(bytes[next].data()), take);
            }
            data = gathered_.data();
            size = gathered_.size();
        }
        ERR_clear_error();
        errno = 0;
        const int result = SSL_write(ssl_, data, static_cast<int>(std::min<std::size_t>(size, 1u << 30)));
        if (result <= 0) {
            if (tls_outcome(result, ec) != Wait::none) ec = asio::error::would_block;
            // A few bytes taken are a success; would_block only when nothing was.
            if (taken > 0 && ec == asio::error::would_block) ec.clear();
            return taken;
        }
        // Advance over what the record took, across pieces.
        auto written = static_cast<std::size_t>(result);
        taken += written;
        while (written > 0) {
            const auto step = std::min(written, bytes[piece].size() - offset);
            offset += step;
            written -= step;
            if (offset == bytes[piece].size() && written > 0) {
                ++piece;
                offset = 0;
            }
        }
    }
    return taken;
}

Leg::Transfer Leg::tls_write(std::vector<asio::const_buffer> pieces) {
    std::size_t total = 0;
    while (!pieces.empty()) {
        error_code ec;
        auto written = try_write(pieces, ec);
        total += written;
        // Drop what was taken: the retry begins with the first byte OpenSSL did not take.
        auto first = pieces.begin();
        while (first != pieces.end() && written >= first->size()) {
            written -= first->size();
            ++first;
        }
        pieces.erase(pieces.begin(), first);
        if (!pieces.empty()) pieces.front() += written;
        if (pieces.empty()) break;
        if (ec && ec != asio::error::would_block) co_return std::tuple(ec, total);
        if (!ec) continue;
        // Which readiness OpenSSL waits for (WANT_WRITE, or WANT_READ mid-renegotiation).
        const Wait wait = SSL_want_read(ssl_) ? Wait::read : Wait::write;
        if (auto wait_ec = co_await wait_for(wait)) co_return std::tuple(wait_ec, total);
    }
    co_return std::tuple(error_code{}, total);
}

}  // namespace pgrail::proxy

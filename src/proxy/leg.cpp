// One leg of a session: its socket, and TLS over it (leg.hpp).
#include "leg.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <tuple>

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
// What one wait for data takes from the socket at most past the doorbell: 4 records.
constexpr std::size_t max_record = 16384 + 256;
constexpr std::size_t max_rounds = 4;

}  // namespace

// The BIO under a leg's TLS: reads come from what the leg received (nothing there: "retry", and
// the leg receives more), writes go to the socket at once (full: "retry", and the leg waits).
struct LegBio {
    static int read(BIO* bio, char* out, std::size_t size, std::size_t* taken) {
        auto& leg = *static_cast<Leg*>(BIO_get_data(bio));
        BIO_clear_retry_flags(bio);
        const std::size_t available = leg.tls_->received.size() - leg.tls_->received_head;
        if (available == 0) {
            BIO_set_retry_read(bio);
            return 0;
        }
        *taken = std::min(size, available);
        std::memcpy(out, leg.tls_->received.data() + leg.tls_->received_head, *taken);
        leg.tls_->received_head += *taken;
        if (leg.tls_->received_head == leg.tls_->received.size()) {
            leg.tls_->received_head = 0;
            leg.tls_->received.clear();
            if (leg.tls_->received.capacity() > 4096) leg.tls_->received.shrink_to_fit();  // a burst's room goes back
        }
        return 1;
    }
    static int write(BIO* bio, const char* data, std::size_t size, std::size_t* written) {
        auto& leg = *static_cast<Leg*>(BIO_get_data(bio));
        BIO_clear_retry_flags(bio);
        const ssize_t sent = ::send(leg.tls_->descriptor, data, size, MSG_NOSIGNAL);
        if (sent >= 0) {
            *written = static_cast<std::size_t>(sent);
            return 1;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) BIO_set_retry_write(bio);
        return 0;  // else errno tells why (SSL_ERROR_SYSCALL)
    }
    static long control(BIO*, int command, long, void*) { return command == BIO_CTRL_FLUSH ? 1 : 0; }
    static int create(BIO* bio) {
        BIO_set_init(bio, 1);
        return 1;
    }
    static BIO_METHOD* method() {
        static BIO_METHOD* const made = [] {
            BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pgrail leg");
            BIO_meth_set_read_ex(m, &LegBio::read);
            BIO_meth_set_write_ex(m, &LegBio::write);
            BIO_meth_set_ctrl(m, &LegBio::control);
            BIO_meth_set_create(m, &LegBio::create);
            return m;
        }();
        return made;
    }
};

bool Leg::drained_receives() {
    static const bool on = [] {
        const char* setting = std::getenv("PGRAIL_DRAINED_RECEIVE");
        return setting != nullptr && std::string_view(setting) == "1";
    }();
    return on;
}

Leg::Leg(Stream socket) : socket_(std::move(socket)), reactor_(reactor_of(socket_)) {}
Leg::~Leg() = default;

// The descriptor is the socket's: only OpenSSL's state goes (its BIO with it).
Leg::Tls::~Tls() {
    if (ssl) SSL_free(ssl);
}

SSL* Leg::native_tls() {
    return tls_ ? tls_->ssl : nullptr;
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
    if (!tls_) return 0;
    // Read ahead, bytes of records not yet decrypted count too (SSL_pending would not see them),
    // and so do bytes received that OpenSSL has yet to read.
    if (tls_->received_head < tls_->received.size()) return tls_->received.size() - tls_->received_head;
    if (SSL_has_pending(tls_->ssl) != 1) return 0;
    const int pending = SSL_pending(tls_->ssl);
    return pending > 0 ? static_cast<std::size_t>(pending) : 1;
}

SSL* Leg::begin_tls(std::shared_ptr<asio::ssl::context> context) {
    auto tls = std::make_unique<Tls>();
    tls->context = std::move(context);
    BIO* bio = BIO_new(LegBio::method());
    if (!bio) return nullptr;
    tls->ssl = SSL_new(tls->context->native_handle());
    if (!tls->ssl) {
        BIO_free(bio);
        return nullptr;
    }
    BIO_set_data(bio, this);
    SSL_set_bio(tls->ssl, bio, bio);  // (one reference: SSL_free frees it)
    error_code ignored;
    socket_.non_blocking(true, ignored);  // a write to a full socket must never block the thread
    tls->descriptor = static_cast<int>(socket_.native_handle());
    // Partial writes: SSL_write returns once a record is out (write_out keeps the rest); a retry
    // may come from another address with the same bytes; idle connections give the buffers back.
    SSL_set_mode(tls->ssl,
                 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    // OpenSSL takes all the leg received at once, not a record's 5-byte header and then its body.
    SSL_set_read_ahead(tls->ssl, 1);
    tls_ = std::move(tls);
    return tls_->ssl;
}

Leg::Wait Leg::tls_outcome(int result, error_code& ec) {
    switch (SSL_get_error(tls_->ssl, result)) {
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
    if (wait == Wait::write) {
        auto [ec] = co_await socket_.async_wait(Stream::wait_write, use_tuple);
        co_return ec;
    }
    auto [ec, n] = co_await receive_for_tls();
    if (!ec) take_received(n);
    co_return ec;
}

Leg::Transfer Leg::receive_for_tls() {
    // Asio's receive tries at once and then waits on the reactor's standing registration (or
    // the drained receive, when switched on: drained_receive.hpp).
    const auto doorbell = asio::buffer(tls_->doorbell);
    if (drained_) return async_drained_receive(socket_, reactor_, doorbell, use_tuple);
    return socket_.async_read_some(doorbell, use_tuple);
}

void Leg::take_received(std::size_t n) {
    tls_->received.append(tls_->doorbell.data(), n);
    // A full doorbell: more is probably there, taken now without waiting, a few records at most
    // (the socket's next bytes wait for the next call).
    for (std::size_t round = 0; n == tls_->doorbell.size() && round < max_rounds; ++round) {
        const auto before = tls_->received.size();
        tls_->received.resize(before + max_record);
        error_code more_ec;  // would_block, or eof (the next receive sees it again)
        const auto more = socket_.read_some(asio::buffer(tls_->received.data() + before, max_record), more_ec);
        tls_->received.resize(before + more);
        if (more < max_record) break;
    }
}

asio::awaitable<error_code> Leg::handshake(asio::ssl::stream_base::handshake_type type) {
    if (!tls_) co_return error_code(asio::error::no_memory);  // begin_tls could not make one
    if (type == asio::ssl::stream_base::server)
        SSL_set_accept_state(tls_->ssl);
    else
        SSL_set_connect_state(tls_->ssl);
    while (true) {
        ERR_clear_error();
        errno = 0;
        const int result = SSL_do_handshake(tls_->ssl);
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
    // Nothing received and nothing buffered in OpenSSL: SSL_read could only fail (WANT_READ), at
    // the price of an error-queue round trip; receive first. (Here rather than through wait_for:
    // this is every read's path, and a coroutine less.)
    bool receive = tls_->received_head == tls_->received.size() && SSL_has_pending(tls_->ssl) != 1;
    while (true) {
        if (receive) {
            auto [ec, n] = co_await receive_for_tls();
            if (ec) co_return std::tuple(ec, std::size_t{0});
            take_received(n);
        }
        ERR_clear_error();
        errno = 0;
        const int result = SSL_read(tls_->ssl, into.data(), size);
        if (result > 0) co_return std::tuple(error_code{}, static_cast<std::size_t>(result));
        error_code ec;
        const Wait wait = tls_outcome(result, ec);
        if (wait == Wait::none) co_return std::tuple(ec ? ec : error_code(asio::error::eof), std::size_t{0});
        // WANT_READ: all received is taken, and a record is not whole yet.
        receive = wait == Wait::read;
        if (wait == Wait::write) {
            if (auto wait_ec = co_await wait_for(wait)) co_return std::tuple(wait_ec, std::size_t{0});
        }
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

std::size_t Leg::peek(std::span<char> into, error_code& ec) {
    ec.clear();
    if (!tls_) {
        const ssize_t peeked = ::recv(socket_.native_handle(), into.data(), into.size(), MSG_PEEK | MSG_DONTWAIT);
        if (peeked > 0) return static_cast<std::size_t>(peeked);
        if (peeked == 0) ec = asio::error::eof;
        if (peeked < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            ec = error_code(errno, boost::system::system_category());
        return 0;
    }
    // What the socket holds goes to `received` (bounded: a peer sending without end is still
    // peeked at its first records), where the next read finds it.
    bool closed = false;
    for (std::size_t round = 0; round < max_rounds; ++round) {
        const auto before = tls_->received.size();
        tls_->received.resize(before + max_record);
        error_code read_ec;
        const auto taken = socket_.read_some(asio::buffer(tls_->received.data() + before, max_record), read_ec);
        tls_->received.resize(before + taken);
        closed = read_ec && read_ec != asio::error::would_block && read_ec != asio::error::try_again;
        if (taken < max_record) break;
    }
    ERR_clear_error();
    errno = 0;
    const int result = SSL_peek(tls_->ssl, into.data(), static_cast<int>(std::min<std::size_t>(into.size(), 1u << 30)));
    if (result > 0) return static_cast<std::size_t>(result);
    const Wait wait = tls_outcome(result, ec);
    if (wait != Wait::none && closed) ec = asio::error::eof;  // part of a record, and no more coming
    return 0;
}

std::size_t Leg::tls_try_write(std::span<const asio::const_buffer> bytes, error_code& ec) {
    ec.clear();
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
            tls_->gathered.assign(data, size);
            for (std::size_t next = piece + 1; next < bytes.size() && tls_->gathered.size() < max_record_payload;
                 ++next) {
                const auto take = std::min(bytes[next].size(), max_record_payload - tls_->gathered.size());
                tls_->gathered.append(static_cast<const char*>(bytes[next].data()), take);
            }
            data = tls_->gathered.data();
            size = tls_->gathered.size();
        }
        ERR_clear_error();
        errno = 0;
        const int result = SSL_write(tls_->ssl, data, static_cast<int>(std::min<std::size_t>(size, 1u << 30)));
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
        auto written = tls_try_write(pieces, ec);
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
        // WANT_WRITE. (A write never waits to read: renegotiation is off, and the leg's reader
        // alone receives, so two receives never share the doorbell.)
        if (auto wait_ec = co_await wait_for(Wait::write)) co_return std::tuple(wait_ec, total);
    }
    co_return std::tuple(error_code{}, total);
}

}  // namespace pgrail::proxy

// One leg of a session: its socket, and TLS over it (leg.hpp).
#include "leg.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace pgrail::proxy {

namespace asio = boost::asio;
using boost::system::error_code;

std::size_t Leg::tls_pending() const {
    if (!tls_) return 0;
    const int pending = SSL_pending(const_cast<asio::ssl::stream<Stream&>&>(*tls_).native_handle());
    return pending > 0 ? static_cast<std::size_t>(pending) : 0;
}

SSL* Leg::begin_tls(std::shared_ptr<asio::ssl::context> context) {
    context_ = std::move(context);
    tls_ = std::make_unique<asio::ssl::stream<Stream&>>(socket_, *context_);
    return tls_->native_handle();
}

asio::awaitable<error_code> Leg::handshake(asio::ssl::stream_base::handshake_type type) {
    auto [ec] = co_await tls_->async_handshake(type, asio::as_tuple(asio::use_awaitable));
    co_return ec;
}

}  // namespace pgrail::proxy

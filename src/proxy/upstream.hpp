// The database server's end of a session: where it is, and connections to it within
// upstream.connect_timeout_ms (a session's own, and the short ones that carry cancel requests).
#pragma once

#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/generic/stream_protocol.hpp>

#include "pgrail/config/serve_config.hpp"
#include "pgrail/protocol/backend.hpp"
#include "tls_context.hpp"

namespace pgrail::proxy {

// Either leg is TCP, or for the server also a Unix socket (PostgreSQL on the same host).
using Stream = boost::asio::generic::stream_protocol::socket;
using Endpoint = boost::asio::generic::stream_protocol::endpoint;
class Leg;

// "host:port", or the Unix socket's path: for messages.
[[nodiscard]] std::string upstream_address(const config::ServeConfig& config);

// Connects `socket` to the server (resolving its host name, if it has one) within
// connect_timeout_ms, and makes it non-blocking with TCP_NODELAY. Returns why it failed, or "".
boost::asio::awaitable<std::string> connect_to_upstream(Stream& socket, const config::ServeConfig& config);

// TLS on a connected server leg, as libpq's sslmode says (tls.server): an SSLRequest, then the
// handshake if the server answers 'S' (verify-ca / verify-full check its certificate); 'N' goes on in
// plain text unless the mode requires TLS. Nothing for a Unix socket, disable or allow (allow is
// libpq's first attempt: without TLS). Returns why it failed, or "".
boost::asio::awaitable<std::string> start_server_tls(Leg& leg, const TlsContextSet* tls,
                                                     const config::ServeConfig& config);

// A CancelRequest for the server's `key`, on a connection of its own, with TLS as the session's
// (PostgreSQL answers nothing: it closes that connection once it has acted on it). Failures are
// only logged.
boost::asio::awaitable<void> send_cancel_request(Stream::executor_type executor, const config::ServeConfig& config,
                                                 std::shared_ptr<const TlsContextSet> tls, protocol::BackendKey key);

}  // namespace pgrail::proxy

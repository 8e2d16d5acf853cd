// One client connection: startup, upstream connect, and the two pumps.
#include "session.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <tuple>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "pgrail/protocol/bytes.hpp"
#include "pgrail/protocol/frame.hpp"
#include "pgrail/proxy/inband_relations.hpp"
#include "pgrail/proxy/metrics.hpp"
#include "pgrail/sql/analyzer.hpp"

namespace pgrail::proxy {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using boost::system::error_code;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

// A client that opens a socket and never finishes its startup packet is dropped
// after this long (PostgreSQL's authentication_timeout default).
constexpr auto startup_timeout = std::chrono::seconds(60);
constexpr auto farewell_timeout = std::chrono::seconds(5);

std::string endpoint_text(const Stream& socket) {
    error_code ec;
    const Endpoint endpoint = socket.remote_endpoint(ec);
    if (ec) return "unknown";
    const int family = endpoint.protocol().family();
    // A Unix-socket client has no address: "[local]", as PostgreSQL's log_connections says it
    // (policy rules match it only with `clients: ::/0`).
    if (family == AF_UNIX) return "[local]";
    if ((family != AF_INET && family != AF_INET6) || endpoint.size() > tcp::endpoint().capacity()) return "local";
    tcp::endpoint address;
    std::memcpy(address.data(), endpoint.data(), endpoint.size());
    address.resize(endpoint.size());
    return address.address().to_string();
}

// Frames pgrail must read whole; everything else streams through.
bool inspect_from_client(char tag, std::size_t) {
    using namespace protocol::frontend_tag;
    // A Describe is a few bytes: each of a statement is counted (its ParameterDescription may
    // hide pgrail's own parameters).
    return tag == query || tag == parse || tag == function_call || tag == describe;
}

// An ErrorResponse is read whole to spot FATAL and pgrail's stand-in errors, which are short;
// a long one (the server quoting a huge value) streams through like a DataRow.
constexpr std::size_t inspected_error_max = 64 * 1024;

bool inspect_from_server(char tag, std::size_t total_size) {
    using namespace protocol::backend_tag;
    if (tag == error_response) return total_size <= inspected_error_max;
    return tag == authentication || tag == backend_key_data || tag == ready_for_query || tag == parameter_status ||
           tag == parameter_description;
}

// Before the server has authenticated the client, only the authentication exchange passes,
// one frame at a time, each no longer than PostgreSQL reads one (PG_MAX_AUTH_TOKEN_LENGTH: the
// length word, which counts itself, at most 65535).
bool allowed_before_authentication(char tag) {
    return tag == protocol::frontend_tag::password || tag == protocol::frontend_tag::terminate;
}
constexpr std::uint32_t max_authentication_length = 65535;

std::string invalid_length(const protocol::FrameHeader& header) {
    return fmt::format("invalid message length {} for message type \"{}\"", header.length, header.tag);
}

bool is_copy_in_message(char tag) {
    using namespace protocol::frontend_tag;
    return tag == copy_data || tag == copy_done || tag == copy_fail;
}

bool counts_as_sync(char tag) {
    using namespace protocol::frontend_tag;
    return tag == query || tag == sync || tag == function_call;  // each earns a ReadyForQuery
}

// Extended-protocol messages: the server owes their outcome until the next Sync's ReadyForQuery.
bool awaits_sync(char tag) {
    using namespace protocol::frontend_tag;
    return tag == parse || tag == bind || tag == execute || tag == describe || tag == close || tag == flush;
}

// An authentication request the client must answer: the login's turn passes to the client.
// (0 AuthenticationOk and 12 SASLFinal leave the turn with the server.)
bool asks_the_client(std::int32_t code) {
    return code != 0 && code != 12;
}

const char* const administrator_command = "terminating connection due to administrator command";

// Runs `work` (which owns what it uses) on `pool` and resumes the calling coroutine on its own
// executor with the result, or with the exception it threw. Not co_spawn onto the pool: a
// session that ends while the work runs cancels its coroutines, and Asio 1.81 then throws from
// the spawned coroutine's hand-back on the pool's thread, where nothing catches it and the whole
// process terminates. Here the cancellation is not forwarded: the work finishes, its result
// returns to the session's executor (kept running by a work guard), and the session ends normally.
// `work` is taken from a named variable of the caller: GCC 12 destroys temporaries of a co_await
// expression twice (its bug 100611), which corrupted a lambda's captures here.
template <class Result, class Work>
awaitable<Result> run_on_pool(asio::thread_pool& pool, Work& work) {
    auto initiate = [&pool](auto handler, Work owned) {
        auto home = asio::get_associated_executor(handler);
        asio::post(pool, [work = std::move(owned), handler = std::move(handler),
                          guard = asio::make_work_guard(home)]() mutable {
            Result result{};
            std::exception_ptr failure;
            try {
                result = work();
            } catch (...) {
                failure = std::current_exception();
            }
            auto executor = guard.get_executor();
            asio::post(executor, [handler = std::move(handler), failure, result = std::move(result)]() mutable {
                std::move(handler)(failure, std::move(result));
            });
            guard.reset();
        });
    };
    return asio::async_initiate<decltype(asio::use_awaitable), void(std::exception_ptr, Result)>(
        initiate, asio::use_awaitable, std::move(work));
}

// `SELECT '<why>'::pg_catalog.int4`: the server's log line reads `ERROR: invalid input syntax for
// type integer: "pgrail: rule ... refused ...; <marker><id>"`. The reason keeps to characters that
// mean the same under any standard_conforming_strings and client_encoding (no quote, no backslash,
// ASCII only) and to a bounded length.
std::string refusal_stand_in(const protocol::ErrorMessage& error, std::string_view marker, std::uint64_t id) {
    constexpr std::size_t max_reason = 240;
    const std::string_view why = error.detail.empty() ? std::string_view(error.message) : error.detail;
    std::string reason;
    for (const char c : why.substr(0, max_reason)) {
        const auto u = static_cast<unsigned char>(c);
        reason.push_back(u >= 0x20 && u < 0x7f && c != '\'' && c != '\\' ? c : '?');
    }
    return fmt::format("SELECT 'pgrail: {}; {}{}'::pg_catalog.int4", reason, marker, id);
}

}  // namespace

void ServerShared::shut_down_sessions(ShutdownMode mode) {
    std::vector<std::shared_ptr<Session>> live;
    {
        std::lock_guard lock(sessions_mutex);
        if (mode <= shutdown_mode) return;
        shutdown_mode = mode;
        for (const auto& weak : sessions)
            if (auto session = weak.lock()) live.push_back(std::move(session));
    }
    // Each session's state belongs to its thread: the request is handed to it there (and the
    // reference with it, so a session never ends on this thread).
    for (auto& session : live) {
        auto executor = session->executor();
        asio::post(executor, [session = std::move(session), mode] { session->request_shutdown(mode); });
    }
}

Session::Session(Stream client, ServerShared& shared)
    : shared_(shared), client_(std::move(client)), server_(client_.get_executor()),
      started_(std::chrono::steady_clock::now()),
      first_ready_signal_(client_.get_executor(), asio::steady_timer::time_point::max()),
      ready_signal_(client_.get_executor()), login_timer_(client_.get_executor()) {
    context_.session_id = shared_.next_session_id.fetch_add(1);
    context_.client_address = endpoint_text(client_);
    ++shared_.active_sessions;
    metrics().sessions_open.fetch_add(1, std::memory_order_relaxed);
    metrics().sessions_total.fetch_add(1, std::memory_order_relaxed);
}

Session::~Session() {
    if (has_client_key_) shared_.cancel_registry.remove(client_key_);
    if (registered_) {
        std::lock_guard lock(shared_.sessions_mutex);
        shared_.sessions.erase(registration_);
    }
    --shared_.active_sessions;
    metrics().sessions_open.fetch_sub(1, std::memory_order_relaxed);
}

awaitable<void> Session::run() {
    ShutdownMode shutdown_mode = ShutdownMode::none;
    {
        std::lock_guard lock(shared_.sessions_mutex);
        registration_ = shared_.sessions.insert(shared_.sessions.end(), weak_from_this());
        registered_ = true;
        shutdown_mode = shared_.shutdown_mode;
    }
    if (shutdown_mode != ShutdownMode::none) request_shutdown(shutdown_mode);
    error_code ignored;
    client_.set_option(tcp::no_delay(true), ignored);
    if (!co_await read_startup()) co_return;
    if (shutdown_ != ShutdownMode::none) {
        // Accepted just before the listener closed: answered as PostgreSQL answers a login
        // during its shutdown.
        co_await send_fatal("57P03", "the database system is shutting down");
        co_return;
    }
    // A refusal's audit line may wait for an fsync: written on the audit pool (as a statement's).
    GateVerdict admission = shared_.gate->check_startup(context_, startup_parameters_);
    if (admission.write_audit) co_await settle_audit_elsewhere(admission);
    if (admission.kind == GateVerdict::Kind::refuse) {
        auto refusal = std::move(admission.error);
        refusal.severity = "FATAL";
        spdlog::warn("session {}: connection refused for user={} database={}: {}", context_.session_id, context_.user,
                     context_.database, refusal.message);
        std::string bytes;
        protocol::encode_error_response(bytes, refusal);
        co_await send_to_client(std::move(bytes));
        co_return;
    }
    if (!co_await connect_upstream()) co_return;

    spdlog::info("session {} start: user={} database={} application_name={} client={}", context_.session_id,
                 context_.user, context_.database, context_.application_name, context_.client_address);

    // The startup packet goes upstream as the client sent it (as 3.0 without `_pq_.` options).
    Outbound startup;
    startup.forward(startup_bytes_);
    bool server_ended = false;
    pumping_ = true;
    server_turn_begins();
    asio::co_spawn(client_.get_executor(), watch_login(), asio::detached);
    if (auto ec = co_await write_out(server_, startup); !ec) {
        auto ended = co_await (client_to_server() || server_to_client());
        server_ended = ended.index() == 1;
    }
    pumping_ = false;
    login_watch_done_ = true;
    login_timer_.cancel();
    server_.close(ignored);
    from_client_.buffer.release();  // its budget and place in line, before the farewell's seconds
    // An error of pgrail's own only between frames: inside a half-sent one it would be garbage.
    const bool between_frames = from_server_.passthrough_remaining == 0 && !client_write_cut_;
    if (!between_frames) {
        spdlog::info("session {}: closing the client mid-message", context_.session_id);
    } else if (ending_) {
        co_await send_fatal(ending_->sqlstate, ending_->message);
    } else if (server_ended && !server_sent_fatal_ && !client_terminated_) {
        // The server went away without saying why: tell the client instead of a bare EOF.
        co_await send_fatal("08006", "pgrail: the database server closed the connection unexpectedly");
    }
    client_.close(ignored);
    const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    spdlog::info("session {} end: user={} database={} application_name={} client={} duration={:.3f}s "
                 "bytes_from_client={} bytes_from_server={}",
                 context_.session_id, context_.user, context_.database, context_.application_name,
                 context_.client_address, elapsed, from_client_.bytes, from_server_.bytes);
}

awaitable<bool> Session::read_startup() {
    asio::steady_timer deadline(client_.get_executor(), startup_timeout);
    // As PostgreSQL 15's ProcessStartupPacket: each encryption request is answered once; a second
    // one is read as a StartupMessage of protocol 1234.5679 (or .5680) and refused as such.
    bool ssl_done = false;
    bool gss_done = false;
    while (true) {
        char length_bytes[4];
        auto read_length = asio::async_read(client_, asio::buffer(length_bytes), use_tuple);
        auto result = co_await (std::move(read_length) || deadline.async_wait(use_tuple));
        if (result.index() == 1) co_return false;  // timed out
        auto [ec, n] = std::get<0>(result);
        if (ec) {
            // Gone before saying anything (a port probe, a client that refused our 'N'): nothing
            // to log, as PostgreSQL. Part of a length word: logged, nothing said to the client.
            if (n > 0 && !ssl_done && !gss_done)
                spdlog::warn("session {}: incomplete startup packet from {} ({} of 4 length bytes, then {})",
                             context_.session_id, context_.client_address, n, ec.message());
            co_return false;
        }
        const auto header = protocol::read_startup_header({length_bytes, 4});
        if (header.status != protocol::FrameStatus::complete) {
            // PostgreSQL logs this (COMMERROR) and closes without a word to the client: a client
            // that sends Terminate before its startup packet, or garbage, hears nothing back.
            spdlog::warn("session {}: invalid length of startup packet from {}: {} (header {}); closing without "
                         "a message, as PostgreSQL does",
                         context_.session_id, context_.client_address, header.reason,
                         protocol::hex_dump({length_bytes, 4}));
            co_return false;
        }
        std::string packet(length_bytes, 4);
        packet.resize(header.length);
        auto read_body = asio::async_read(client_, asio::buffer(packet.data() + 4, packet.size() - 4), use_tuple);
        auto body_result = co_await (std::move(read_body) || deadline.async_wait(use_tuple));
        if (body_result.index() == 1) co_return false;  // timed out
        if (const auto body_ec = std::get<0>(std::get<0>(body_result)); body_ec) {
            spdlog::warn("session {}: incomplete startup packet from {} (length {}, then {}); closing without a "
                         "message, as PostgreSQL does",
                         context_.session_id, context_.client_address, header.length, body_ec.message());
            co_return false;
        }
        from_client_.bytes += packet.size();

        const auto parsed = protocol::parse_startup_packet(packet);
        if (!parsed) {
            spdlog::warn("session {}: malformed startup packet from {} ({})", context_.session_id,
                         context_.client_address, protocol::hex_dump(packet));
            co_await send_fatal("08P01", "invalid startup packet layout: expected terminator as last byte");
            co_return false;
        }
        switch (parsed->kind) {
            case protocol::StartupKind::ssl_request:
            case protocol::StartupKind::gssenc_request: {
                bool& done = parsed->kind == protocol::StartupKind::ssl_request ? ssl_done : gss_done;
                if (done) break;  // a repeated request: refused below as an unknown protocol version
                done = true;
                // No TLS or GSS encryption yet: 'N' makes clients continue in plain text
                // (or give up, if they require encryption), as PostgreSQL does.
                auto [wec, wn] = co_await asio::async_write(client_, asio::buffer("N", 1), use_tuple);
                if (wec) co_return false;
                continue;
            }
            case protocol::StartupKind::cancel_request:
                co_await handle_cancel(*parsed);
                co_return false;
            case protocol::StartupKind::startup:
                break;
        }
        const auto major = parsed->code >> 16;
        const auto minor = parsed->code & 0xffff;
        if (major < 3) {
            // A pre-3.0 client reads errors in the old format: 'E' and a C string.
            auto old_style = fmt::format("EFATAL:  unsupported frontend protocol {}.{}: server supports 3.0 to 3.0\n", major, minor);
            old_style.push_back('\0');
            co_await send_to_client(std::move(old_style));
            co_return false;
        }
        if (major != 3) {
            co_await send_fatal("0A000", fmt::format("unsupported frontend protocol {}.{}: server supports 3.0 to 3.0",
                                                     major, minor));
            co_return false;
        }
        // pgrail speaks 3.0 and knows no protocol options (`_pq_.*`): like PostgreSQL 15 it says
        // so with NegotiateProtocolVersion and goes on in 3.0, so the server always sees a 3.0
        // startup and answers in 3.0 (BackendKeyData and CancelRequest of 3.0's size).
        StartupParameters parameters;
        std::vector<std::string> options;
        for (const auto& parameter : parsed->parameters) {
            if (parameter.first.starts_with("_pq_.")) {
                options.push_back(parameter.first);
            } else {
                parameters.push_back(parameter);
            }
        }
        if (minor > 0 || !options.empty()) {
            std::string negotiate;
            protocol::encode_negotiate_protocol_version(negotiate, protocol::protocol_version_3, options);
            auto [wec, wn] = co_await asio::async_write(client_, asio::buffer(negotiate), use_tuple);
            if (wec) co_return false;
            packet.clear();
            protocol::encode_startup_message(packet, protocol::protocol_version_3, parameters);
        }
        // A key given twice reaches the policy as it came (evaluate_startup refuses it, audited).
        context_.user = parsed->parameter("user");
        context_.database = parsed->parameter("database");
        if (context_.database.empty()) context_.database = context_.user;
        context_.application_name = parsed->parameter("application_name");
        startup_parameters_ = std::move(parameters);
        startup_bytes_ = std::move(packet);
        co_return true;
    }
}

awaitable<void> Session::handle_cancel(const protocol::StartupPacket& packet) {
    // Like PostgreSQL, answer nothing: the client closes after sending its request.
    const auto upstream_key = shared_.cancel_registry.find({packet.cancel_pid, packet.cancel_secret});
    if (!upstream_key) {
        spdlog::warn("session {}: cancel request for unknown key pid={} from {}", context_.session_id,
                     packet.cancel_pid, context_.client_address);
        co_return;
    }
    shared_.cancel_registry.abandon({packet.cancel_pid, packet.cancel_secret});  // an in-band command, if one runs
    co_await send_cancel(*upstream_key);
}

awaitable<void> Session::send_cancel(protocol::BackendKey upstream_key) {
    const auto& config = shared_.config;
    auto [rec, endpoints] = co_await resolve_upstream();
    if (rec) co_return;
    Stream upstream(client_.get_executor());
    asio::steady_timer deadline(client_.get_executor(), std::chrono::milliseconds(config.connect_timeout_ms));
    auto result = co_await (asio::async_connect(upstream, endpoints, use_tuple) || deadline.async_wait(use_tuple));
    if (result.index() == 1 || std::get<0>(std::get<0>(result))) co_return;
    std::string request;
    protocol::encode_cancel_request(request, upstream_key.pid, upstream_key.secret);
    co_await asio::async_write(upstream, asio::buffer(request), use_tuple);
    // PostgreSQL closes the cancel connection once it has acted on it.
    char ignored[1];
    co_await (upstream.async_read_some(asio::buffer(ignored), use_tuple) || deadline.async_wait(use_tuple));
    spdlog::info("session {}: sent cancel request for backend {}", context_.session_id, upstream_key.pid);
}

awaitable<std::tuple<error_code, std::vector<Endpoint>>> Session::resolve_upstream() {
    const auto& config = shared_.config;
    error_code ec;
    if (config.upstream_is_socket()) {
        co_return std::tuple{ec, std::vector<Endpoint>{asio::local::stream_protocol::endpoint(config.upstream_socket_path())}};
    }
    // A numeric address needs no resolver (whose lookups run on a thread of their own).
    const auto address = asio::ip::make_address(config.upstream_host, ec);
    if (!ec) co_return std::tuple{ec, std::vector<Endpoint>{tcp::endpoint{address, config.upstream_port}}};
    tcp::resolver resolver(client_.get_executor());
    auto [resolve_ec, results] =
        co_await resolver.async_resolve(config.upstream_host, std::to_string(config.upstream_port), use_tuple);
    std::vector<Endpoint> endpoints;
    for (const auto& entry : results) endpoints.emplace_back(entry.endpoint());
    co_return std::tuple{resolve_ec, std::move(endpoints)};
}

awaitable<bool> Session::connect_upstream() {
    const auto& config = shared_.config;
    const auto where = config.upstream_is_socket() ? config.upstream_socket_path()
                                                   : fmt::format("{}:{}", config.upstream_host, config.upstream_port);
    asio::steady_timer deadline(client_.get_executor(), std::chrono::milliseconds(config.connect_timeout_ms));
    auto resolved = co_await (resolve_upstream() || deadline.async_wait(use_tuple));
    std::string failure;
    if (resolved.index() == 1) {
        failure = "timed out resolving the host";
    } else if (auto [ec, endpoints] = std::get<0>(resolved); ec) {
        failure = ec.message();
    } else {
        auto connected = co_await (asio::async_connect(server_, endpoints, use_tuple) || deadline.async_wait(use_tuple));
        if (connected.index() == 1) {
            failure = fmt::format("timed out after {} ms", config.connect_timeout_ms);
        } else if (auto connect_ec = std::get<0>(std::get<0>(connected)); connect_ec) {
            failure = connect_ec.message();
        }
    }
    if (shutdown_ != ShutdownMode::none) {
        co_await send_fatal("57P03", "the database system is shutting down");
        co_return false;
    }
    if (!failure.empty()) {
        metrics().upstream_connect_failures.fetch_add(1, std::memory_order_relaxed);
        spdlog::error("session {}: cannot connect to upstream {}: {}", context_.session_id, where, failure);
        co_await send_fatal("08006", fmt::format("pgrail: could not connect to the database server at {}: {}", where,
                                                 failure));
        co_return false;
    }
    error_code ignored;
    if (!config.upstream_is_socket()) server_.set_option(tcp::no_delay(true), ignored);
    server_.non_blocking(true, ignored);
    client_.non_blocking(true, ignored);
    co_return true;
}

// The login's timeouts. The server has connect_timeout_ms for each of its turns: from pgrail
// forwarding the startup packet or a client's authentication message until the server asks the
// client for the next one (or finishes with ReadyForQuery, or an error). The client's turns are
// not bounded on their own (a person may type a password), only the whole login is: 60 s from
// the connection, PostgreSQL's authentication_timeout.
void Session::server_turn_begins() {
    if (ready_received_ > 0) return;
    const auto timeout = std::chrono::milliseconds(shared_.config.connect_timeout_ms);
    server_turn_deadline_ = std::chrono::steady_clock::now() + timeout;
    login_timer_.cancel();  // the watch re-arms for the nearer deadline
}

awaitable<void> Session::watch_login() {
    auto self = shared_from_this();
    const auto login_deadline = started_ + startup_timeout;
    while (!login_watch_done_ && ready_received_ == 0) {
        login_timer_.expires_at(std::min(server_turn_deadline_, login_deadline));
        (void)co_await login_timer_.async_wait(use_tuple);
        if (login_watch_done_ || ready_received_ > 0 || ending_) co_return;
        const auto now = std::chrono::steady_clock::now();
        const bool server_late = now >= server_turn_deadline_;
        if (!server_late && now < login_deadline) continue;  // woken to re-arm
        const auto& config = shared_.config;
        const auto where = config.upstream_is_socket()
                               ? config.upstream_socket_path()
                               : fmt::format("{}:{}", config.upstream_host, config.upstream_port);
        if (server_late) {
            spdlog::error("session {}: upstream {} did not answer within {} ms during the login of user={}",
                          context_.session_id, where, config.connect_timeout_ms, context_.user);
            end_session("08006", fmt::format("pgrail: the database server at {} did not answer the login within {} ms "
                                             "(upstream.connect_timeout_ms)",
                                             where, config.connect_timeout_ms));
        } else {
            spdlog::warn("session {}: login of user={} not complete after {} s: ending it", context_.session_id,
                         context_.user, startup_timeout.count());
            end_session("57014", fmt::format("pgrail: canceling authentication due to timeout (the login did not "
                                             "complete within {} s)",
                                             startup_timeout.count()));
        }
        if (server_sent_fatal_) ending_.reset();  // the server said why already
        close_server_and_wake_pumps();
        co_return;
    }
}

bool Session::at_rest() {
    if (!(pumping_ && ready_received_ > 0 && syncs_sent_ == ready_received_ && transaction_status_ == 'I' &&
          !unsynced_ && !inband_abandoned_ && !server_write_pending_ && from_client_.passthrough_remaining == 0 &&
          from_client_.buffer.empty() && from_server_.passthrough_remaining == 0 && !server_in_copy_in_))
        return false;
    // Nor has the client sent something pgrail has yet to read (a next query is served first).
    char next = 0;
    return ::recv(client_.native_handle(), &next, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
}

void Session::request_shutdown(ShutdownMode mode) {
    if (mode <= shutdown_) return;
    shutdown_ = mode;
    if (!pumping_) {
        // Before the server heard of the session: a graceful shutdown lets the client finish its
        // startup packet (it then hears 57P03); an immediate one stops waiting for it. After the
        // pumps: only the farewell is left, which an immediate shutdown does not wait for.
        if (mode == ShutdownMode::immediate) {
            error_code ignored;
            client_.cancel(ignored);
            server_.cancel(ignored);
        }
        return;
    }
    if (ended_for_shutdown_) return;
    if (ready_received_ == 0 || at_rest()) {
        end_for_shutdown();
        return;
    }
    if (mode == ShutdownMode::immediate) {
        if (inband_abandoned_) {
            // A running pgrail.* command is not cut: abandoned, a migration stops and rolls back,
            // and its client gets that outcome before the FATAL (server_to_client ends it then).
            spdlog::info("session {}: shutting down: abandoning its running in-band command", context_.session_id);
            inband_abandoned_->store(true);
            cut_ = true;
            return;
        }
        end_for_shutdown();
    }
    // Graceful: server_to_client ends it once a ReadyForQuery leaves it at rest.
}

void Session::end_for_shutdown() {
    if (ended_for_shutdown_) return;
    ended_for_shutdown_ = true;
    const bool logged_in = ready_received_ > 0;
    if (logged_in && !at_rest()) cut_ = true;
    if (cut_) ++shared_.sessions_cut;
    spdlog::info("session {}: {} for the shutdown", context_.session_id,
                 !logged_in ? "login ended" : cut_ ? "cut inside a transaction or statement" : "ended at rest");
    end_session("57P01", administrator_command);
    const bool statement_running = logged_in && syncs_sent_ > ready_received_;
    if (logged_in && !statement_running && !server_write_pending_ && from_client_.passthrough_remaining == 0) {
        // Between messages: a Terminate ends the backend as a client's would (in a transaction
        // block, PostgreSQL rolls it back).
        std::string terminate;
        protocol::encode_terminate(terminate);
        error_code ignored;
        server_.write_some(asio::buffer(terminate), ignored);  // a few bytes on a non-blocking socket
    }
    if (statement_running && has_client_key_) {
        // A backend busy with a statement would not notice its closed connection until the
        // statement ends: cancel it (its transaction then rolls back as the connection is gone).
        asio::co_spawn(client_.get_executor(),
                       [self = shared_from_this(), key = upstream_key_] { return self->send_cancel(key); },
                       asio::detached);
    }
    close_server_and_wake_pumps();
}

void Session::close_server_and_wake_pumps() {
    server_closed_by_pgrail_ = true;
    error_code ignored;
    server_.shutdown(Stream::shutdown_both, ignored);
    server_.cancel(ignored);
    client_.cancel(ignored);
    first_ready_signal_.cancel();
    ready_signal_.cancel();
}

void Session::count_bytes(const Inbound& in, std::size_t n) const {
    auto& counter = &in == &from_client_ ? metrics().bytes_from_clients : metrics().bytes_from_server;
    counter.fetch_add(n, std::memory_order_relaxed);
}

awaitable<error_code> Session::read_more(Inbound& in) {
    // Reads, never waits for readiness: Asio re-arms epoll (epoll_ctl) for every wait, while
    // a read that finds the socket empty costs one failed recv and leaves the socket's
    // edge-triggered registration as it is.
    if (in.buffer.empty() && (!in.last_read_filled || in.buffer.large())) {
        // Probably idle: give the pooled buffer back and wait by reading into the doorbell.
        // (A large buffer, held for one long message, never waits: the budget wants it back.)
        in.buffer.release();
        auto [ec, n] = co_await in.socket.async_read_some(asio::buffer(in.doorbell), use_tuple);
        if (ec) co_return ec;
        if (!co_await make_room(in, std::max(in.needed, n))) co_return asio::error::operation_aborted;
        std::memcpy(in.buffer.write_position(), in.doorbell.data(), n);
        in.buffer.commit(n);
        in.bytes += n;
        count_bytes(in, n);
        in.last_read_filled = n == in.doorbell.size();
        co_return ec;
    }
    if (!co_await make_room(in, in.needed)) co_return asio::error::operation_aborted;
    const auto space = in.buffer.write_space();
    const auto into = asio::buffer(in.buffer.write_position(), space);
    error_code ec;
    std::size_t n = 0;
    if (!in.buffer.holds_budget()) {
        std::tie(ec, n) = co_await in.socket.async_read_some(into, use_tuple);
    } else {
        // Budget that others may wait for is held for this message: its client must keep sending.
        const auto timeout = buffered_message_timeout();
        asio::steady_timer stall(client_.get_executor(), timeout);
        auto result = co_await (in.socket.async_read_some(into, use_tuple) || stall.async_wait(use_tuple));
        if (result.index() == 1) {
            end_session("08P01", fmt::format("pgrail: a message of {} bytes stalled: {} bytes received, none for {} ms",
                                             in.needed, in.buffer.pending().size(), timeout.count()));
            co_return asio::error::timed_out;
        }
        std::tie(ec, n) = std::get<0>(result);
    }
    if (ec) co_return ec;
    in.buffer.commit(n);
    in.bytes += n;
    count_bytes(in, n);
    in.last_read_filled = n == space;
    co_return ec;
}

// Room in the buffer for `total` bytes. A message longer than the standard buffer waits until
// the budget shared by all sessions can hold it (it always can once the others are done:
// max_buffered_size > max_message_size), at most buffered_message_timeout: then the session
// ends with out_of_memory, as no wait may last forever. False when the session must end.
void Session::end_session(std::string sqlstate, std::string message) {
    if (!ending_) ending_ = Ending{std::move(sqlstate), std::move(message)};
}

awaitable<bool> Session::make_room(Inbound& in, std::size_t total) {
    if (in.buffer.prepare(total)) co_return true;
    const auto& budget = shared_.client_buffers;
    spdlog::warn("session {}: a message of {} bytes waits for buffer space ({} of max_buffered_size {} bytes held)",
                 context_.session_id, total, budget.used(), budget.limit());
    const auto timeout = buffered_message_timeout();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    asio::steady_timer retry(client_.get_executor());
    while (!in.buffer.prepare(total)) {
        if (std::chrono::steady_clock::now() > deadline) {
            end_session("53200", fmt::format("pgrail: out of buffer space: a message of {} bytes waited {} ms for "
                                             "max_buffered_size ({} bytes, all sessions together)",
                                             total, timeout.count(), budget.limit()));
            co_return false;
        }
        retry.expires_after(std::chrono::milliseconds(10));
        if (auto [ec] = co_await retry.async_wait(use_tuple); ec) co_return false;
    }
    co_return true;
}

awaitable<error_code> Session::write_out(Stream& socket, Outbound& out) {
    if (out.empty()) co_return error_code{};
    // Most writes fit in the socket buffer: try once without suspending, and only
    // wait for the rest when the peer reads slower than we write (backpressure).
    error_code ec;
    auto written = socket.write_some(out.pieces(), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
        ec.clear();
        written = 0;
    }
    if (!ec && written < asio::buffer_size(out.pieces())) {
        std::vector<asio::const_buffer> rest;
        for (const auto& piece : out.pieces()) {
            if (written >= piece.size()) {
                written -= piece.size();
                continue;
            }
            rest.push_back(piece + written);
            written = 0;
        }
        const bool to_server = &socket == &server_;
        if (to_server) server_write_pending_ = true;
        auto [write_ec, n] = co_await asio::async_write(socket, rest, use_tuple);
        if (to_server) server_write_pending_ = false;
        ec = write_ec;
    }
    if (ec && &socket == &client_) client_write_cut_ = true;
    out.clear();
    co_return ec;
}

awaitable<void> Session::send_to_client(std::string bytes) {
    // pgrail's own last words: a client that does not read them within this time goes
    // without them (its session must not stay open on its account).
    asio::steady_timer deadline(client_.get_executor(), farewell_timeout);
    co_await (asio::async_write(client_, asio::buffer(bytes), use_tuple) || deadline.async_wait(use_tuple));
}

awaitable<void> Session::send_fatal(std::string sqlstate, std::string message) {
    std::string bytes;
    protocol::encode_error_response(bytes, {"FATAL", std::move(sqlstate), std::move(message), {}, {}});
    co_await send_to_client(std::move(bytes));
}

awaitable<void> Session::client_to_server() {
    auto& in = from_client_;
    const auto max_size = shared_.config.max_message_size;
    const auto on_header = [this](char tag) {
        if (counts_as_sync(tag)) ++syncs_sent_;
        if (is_copy_in_message(tag)) {
            // Copy data right after a Sync, the server in copy-in mode: that Sync followed the
            // Execute of COPY FROM STDIN and the server ignores it; only the one after CopyDone
            // earns a ReadyForQuery.
            if (last_client_tag_ == protocol::frontend_tag::sync && server_in_copy_in_) --syncs_sent_;
            if (tag != protocol::frontend_tag::copy_data) server_in_copy_in_ = false;
        }
        if (tag == protocol::frontend_tag::terminate) client_terminated_ = true;
        if (tag == protocol::frontend_tag::sync) {
            unsynced_ = false;
        } else if (awaits_sync(tag)) {
            unsynced_ = true;
        }
        if (tag == protocol::frontend_tag::execute) {
            executed_since_sync_ = true;
            ++executes_sent_;
        }
        // What the rule does to results (ResultGuard) is asked per statement: it follows reloads.
        if (tag == protocol::frontend_tag::query || tag == protocol::frontend_tag::execute) refresh_guard();
        if (tag == protocol::frontend_tag::sync || tag == protocol::frontend_tag::query) executed_since_sync_ = false;
        last_client_tag_ = tag;
    };
    // Until the server has authenticated the client every frame is read whole, so that the
    // check below sees each one's header before anything of it moves.
    // Binds and Closes are read whole only while a prepared statement reads pgrail commands.
    const auto inspect = [this](char tag, std::size_t size) {
        return ready_received_ == 0 || inspect_from_client(tag, size) ||
               (!deferred_.empty() && (tag == protocol::frontend_tag::bind || tag == protocol::frontend_tag::close)) ||
               (guarding_ && tag == protocol::frontend_tag::execute);  // a Describe goes before it
    };
    while (true) {
        if (auto ec = co_await read_more(in)) {
            // The client went away without Terminate. A backend busy with a query would not
            // notice a closed socket until the query ends: cancel it first, then end it.
            // (Not when pgrail itself closed the server's connection: it did that already.)
            if (!client_terminated_ && !server_closed_by_pgrail_) {
                if (has_client_key_ && syncs_sent_ > ready_received_) co_await send_cancel(upstream_key_);
                // Inside a half-forwarded frame a Terminate would be read as its payload: the
                // socket's close ends that backend anyway.
                if (in.passthrough_remaining == 0) {
                    std::string terminate;
                    protocol::encode_terminate(terminate);
                    co_await asio::async_write(server_, asio::buffer(terminate), use_tuple);
                }
            }
            co_return;
        }
        while (true) {
            if (ready_received_ == 0) {
                if (!co_await hold_until_authenticated(in)) co_return;
            }
            const auto next = next_frame(in, to_server_, max_size, inspect, on_header);
            if (next.kind == NextFrame::Kind::need_more) break;
            if (next.kind == NextFrame::Kind::invalid) {
                spdlog::warn("session {}: refused message from {}: {} (header {})", context_.session_id,
                             context_.client_address, next.header.reason, protocol::hex_dump(in.buffer.pending().substr(0, 5)));
                end_session("08P01", invalid_length(next.header.header));
                // Nothing of the bad frame is forwarded; what came before it still is.
                co_await write_out(server_, to_server_);
                co_return;
            }
            const char tag = next.header.header.tag;
            if (tag == protocol::frontend_tag::function_call) {
                co_await on_function_call(next.frame, to_server_);
            } else if (tag == protocol::frontend_tag::bind && !deferred_.empty() && ready_received_ > 0) {
                co_await on_bind(next.frame, to_server_);
            } else if (tag == protocol::frontend_tag::describe && ready_received_ > 0) {
                on_describe(next.frame);
                to_server_.forward(next.frame);
            } else if (tag == protocol::frontend_tag::execute && guarding_ && ready_received_ > 0) {
                describe_before_execute(next.frame, to_server_);
            } else if (tag == protocol::frontend_tag::close && !deferred_.empty() && ready_received_ > 0) {
                on_close(next.frame);
                to_server_.forward(next.frame);
            } else if (tag != protocol::frontend_tag::query && tag != protocol::frontend_tag::parse) {
                to_server_.forward(next.frame);  // read whole only while authentication holds frames
                if (ready_received_ == 0 && tag == protocol::frontend_tag::password) server_turn_begins();
            } else if (const auto statement = statement_of(tag, next.frame)) {
                // Most texts are checked here; a long new one elsewhere (see check_elsewhere).
                // (Not a conditional expression: GCC 12 miscompiles co_await inside one.)
                GateVerdict verdict;
                if (shared_.gate->quick(statement->sql)) {
                    verdict = shared_.gate->check_deferred(context_, statement->kind, statement->sql);
                    // An audit line may wait for an fsync: written on the audit pool, so that
                    // one session's refusals do not stall this thread's other sessions.
                    if (verdict.write_audit) co_await settle_audit_elsewhere(verdict);
                } else {
                    verdict = co_await check_elsewhere(*statement);
                }
                // A Query drops the unnamed prepared statement (as PostgreSQL does).
                if (tag == protocol::frontend_tag::query && !deferred_.empty()) deferred_.erase(std::string());
                if (verdict.kind == GateVerdict::Kind::intercept) {
                    // What came before goes first, so the answer keeps its place in the stream.
                    if (co_await write_out(server_, to_server_)) co_return;
                    co_await run_intercept(verdict, tag, next.frame, *statement, to_server_);
                } else {
                    // A statement prepared again (or refused) under a name no longer reads pgrail
                    // commands; DEALLOCATE and DISCARD ALL may drop any.
                    if (tag == protocol::frontend_tag::parse && !deferred_.empty())
                        deferred_.erase(std::string(statement->parse_name));
                    if (verdict.forgets_prepared) deferred_.clear();
                    if (verdict.kind == GateVerdict::Kind::forward && !verdict.migrator_statements.empty())
                        migrator_runs_.on_forwarded(verdict.migrator_statements);
                    apply(verdict, tag, next.frame, *statement, to_server_);
                }
            }
            if (ending_) {
                co_await write_out(server_, to_server_);
                co_return;
            }
            in.consume_frame(next.frame.size());
        }
        if (auto ec = co_await write_out(server_, to_server_)) co_return;
    }
}

// pgrail reads no SQL from a client the server has not authenticated yet: a frame other than
// the authentication exchange waits, unread, at the front of the buffer for the first
// ReadyForQuery, as PostgreSQL would read it only then. False when the pump must stop.
awaitable<bool> Session::hold_until_authenticated(Inbound& in) {
    const auto header = protocol::read_header(in.buffer.pending(), shared_.config.max_message_size);
    if (header.status != protocol::FrameStatus::complete) co_return true;  // next_frame's to judge
    if (!allowed_before_authentication(header.header.tag)) {
        if (co_await write_out(server_, to_server_)) co_return false;
        // (The ReadyForQuery may have come while that write was under way.)
        if (ready_received_ == 0) co_await first_ready_signal_.async_wait(use_tuple);
        co_return ready_received_ > 0;
    }
    if (header.header.length > max_authentication_length) {
        end_session("08P01", invalid_length(header.header));
        co_await write_out(server_, to_server_);
        co_return false;
    }
    co_return true;
}

awaitable<void> Session::on_function_call(std::string_view frame, Outbound& out) {
    const auto body = frame.substr(protocol::header_size);
    if (body.size() < 4) {
        end_session("08P01", "invalid FunctionCall message format");
        co_return;
    }
    GateVerdict verdict = shared_.gate->check_function_call(context_, protocol::read_u32(body.data()));
    if (verdict.write_audit) co_await settle_audit_elsewhere(verdict);
    if (verdict.kind == GateVerdict::Kind::refuse) {
        refuse(verdict, protocol::frontend_tag::function_call, {}, {}, {}, out);
    } else {
        out.forward(frame);
    }
}

std::optional<ClientStatement> Session::statement_of(char tag, std::string_view frame) {
    const auto body = frame.substr(protocol::header_size);
    ClientStatement statement;
    if (tag == protocol::frontend_tag::query) {
        const auto query = protocol::parse_query(body);
        if (!query) {
            end_session("08P01", "invalid Query message: missing terminator");
            return std::nullopt;
        }
        statement.kind = MessageKind::simple_query;
        statement.sql = *query;
    } else {
        const auto parse = protocol::parse_parse(body);
        if (!parse) {
            end_session("08P01", "invalid Parse message format");
            return std::nullopt;
        }
        statement.kind = MessageKind::parse;
        statement.sql = parse->query;
        statement.parse_name = parse->statement_name;
        statement.parse_types = parse->parameter_types;
    }
    return statement;
}

awaitable<void> Session::settle_audit_elsewhere(GateVerdict& verdict) {
    auto write = [write_audit = std::move(verdict.write_audit)] { return write_audit(); };
    const bool written = co_await run_on_pool<bool>(shared_.audit_pool, write);
    settle_audit(verdict, written);
}

// The end of a result max_rows cut (session_results.cpp): its audit line first (it may wait for
// an fsync: on the audit pool), then the client hears of it. Deny whose cancel won the race: the
// server's cancel error becomes pgrail's refusal; otherwise (no cancel sent, or the result ended
// first) a notice goes before the result's end, whose tag stays the server's.
awaitable<Session::ResultStep> Session::finish_result(char tag, std::string_view frame, Outbound& out) {
    const auto guard = result_.guard;
    const auto limit = guard->max_rows.limit;
    const auto dropped = result_.dropped;
    const bool refused = result_frame_ == ResultFrame::error && tag == protocol::backend_tag::error_response &&
                         error_sqlstate(frame.substr(protocol::header_size)) == "57014";
    result_ = {};
    ResultEvent event;
    event.kind = refused ? ResultEvent::Kind::refused : ResultEvent::Kind::truncated;
    event.rule = guard->rule;
    event.limit = limit;
    event.rows_sent = limit;
    auto write = [gate = shared_.gate, context = context_, event = std::move(event)] {
        return gate->audit_result_event(context, event);
    };
    const bool written = co_await run_on_pool<bool>(shared_.audit_pool, write);
    if (!written)
        spdlog::error("session {}: the audit line of a result cut by max_rows of rule {} could not be written",
                      context_.session_id, guard->rule);
    spdlog::info("session {}: result {} by max_rows of rule {} after {} rows ({} not sent)", context_.session_id,
                 refused ? "refused" : "cut", guard->rule, limit, dropped);
    std::string message;
    if (refused) {
        protocol::encode_error_response(message, refused_error(guard->rule, limit));
        out.inject(std::move(message));
        co_return ResultStep::done;
    }
    encode_notice(message, truncated_notice(guard->rule, limit, dropped));
    out.inject(std::move(message));
    co_return ResultStep::pass;
}

// A long new text is analysed on the analysis pool, so this thread's other sessions keep moving.
awaitable<GateVerdict> Session::check_elsewhere(const ClientStatement& statement) {
    auto analyse = [gate = shared_.gate, context = context_, kind = statement.kind, sql = std::string(statement.sql)] {
        return gate->check(context, kind, sql);
    };
    co_return co_await run_on_pool<GateVerdict>(shared_.analysis_pool, analyse);
}

void Session::apply(const GateVerdict& verdict, char tag, std::string_view frame, const ClientStatement& statement,
                    Outbound& out) {
    switch (verdict.kind) {
        case GateVerdict::Kind::forward:
            out.forward(frame);
            break;
        case GateVerdict::Kind::refuse:
            refuse(verdict, tag, statement.sql, statement.parse_name, statement.parse_types, out);
            break;
        case GateVerdict::Kind::substitute:
            substitute(tag, frame, verdict.substitute_sql, out);
            break;
        case GateVerdict::Kind::intercept:
            break;  // the caller runs it
    }
}

// The server answers in pgrail's place: a Query or Parse with other text, same name and types.
void Session::substitute(char tag, std::string_view frame, std::string_view sql, Outbound& out) {
    std::string replacement;
    if (tag == protocol::frontend_tag::parse) {
        const auto parse = protocol::parse_parse(frame.substr(protocol::header_size));
        protocol::encode_parse(replacement, parse->statement_name, sql, parse->parameter_types);
    } else {
        protocol::encode_query(replacement, sql);
    }
    out.inject(std::move(replacement));
}

// In-band commands run on the blocking pool; their answers reach the client through the server,
// as relations of the client's own statement (inband_relations.hpp), so simple and extended
// protocol, Describe, pipelining and the session's transaction are PostgreSQL's own.
awaitable<void> Session::run_intercept(const GateVerdict& verdict, char tag, std::string_view frame,
                                       const ClientStatement& statement, Outbound& out) {
    GateVerdict refusal;
    refusal.kind = GateVerdict::Kind::refuse;
    if (!shared_.inband) {
        refusal.error = {"ERROR", "55000", "pgrail: in-band migration commands are not configured on this pgrail",
                         {}, "Set migrations.dir and migrations.migrator in pgrail's configuration."};
    } else if (tag == protocol::frontend_tag::parse) {
        // Nothing runs at Parse: the server prepares a text whose pgrail relations read one
        // added json parameter each; the commands run when the client binds it (on_bind).
        auto types = protocol::parse_parameter_types(statement.parse_types).value_or(std::vector<std::uint32_t>{});
        const std::size_t client_parameters = std::max(types.size(), verdict.highest_parameter);
        constexpr std::size_t max_parameters = 65535;  // the protocol's int16 count
        if (client_parameters + verdict.calls.size() > max_parameters) {
            refusal.error = {"ERROR", "54000",
                             "pgrail: too many parameters for a statement that reads pgrail commands", {},
                             "pgrail adds one parameter per pgrail command to the statement."};
        } else {
            std::string text;
            try {
                text = text_with_parameters(statement.sql, verdict.calls, client_parameters + 1);
            } catch (const std::exception& e) {
                refusal.error = {"ERROR", "42883", fmt::format("pgrail: {}", e.what()), {}, {}};
            }
            if (!text.empty()) {
                types.resize(client_parameters, 0);
                types.insert(types.end(), verdict.calls.size(), oid_json);
                deferred_[std::string(statement.parse_name)] = DeferredStatement{verdict.calls, client_parameters};
                std::string replacement;
                protocol::encode_parse(replacement, statement.parse_name, text, protocol::encode_parameter_types(types));
                out.inject(std::move(replacement));
                co_return;
            }
        }
    } else {
        // A Query: its own ReadyForQuery is counted already; the server's answers to everything
        // before it tell the transaction status the command meets.
        std::vector<migrations::ResultTable> answers;
        auto error = co_await refuse_in_transaction(verdict.calls, syncs_sent_ - 1);
        if (!error) error = co_await run_commands(verdict.calls, answers);
        if (!error) {
            substitute(tag, frame, text_with_answers(statement.sql, verdict.calls, answers), out);
            co_return;
        }
        refusal.error = std::move(*error);
    }
    deferred_.erase(std::string(statement.parse_name));
    refuse(refusal, tag, statement.sql, statement.parse_name, statement.parse_types, out);
}

awaitable<std::optional<protocol::ErrorMessage>> Session::run_commands(const std::vector<InbandCall>& calls,
                                                                       std::vector<migrations::ResultTable>& answers) {
    if (!shared_.inband) {
        co_return protocol::ErrorMessage{"ERROR", "55000",
                                         "pgrail: in-band migration commands are not configured on this pgrail", {},
                                         "Set migrations.dir and migrations.migrator in pgrail's configuration."};
    }
    // If the client leaves while the commands run, a migration it asked for must not apply
    // afterwards: a watcher raises the flag when the client's socket reads as closed.
    auto abandoned = std::make_shared<std::atomic<bool>>(false);
    auto finished = std::make_shared<std::atomic<bool>>(false);
    asio::co_spawn(client_.get_executor(), watch_for_departure(abandoned, finished), asio::detached);
    if (has_client_key_) shared_.cancel_registry.set_abandon_flag(client_key_, abandoned);
    inband_abandoned_ = abandoned;  // an immediate shutdown abandons it too
    // Reads first, then the command that changes something (at most one: the policy's): when a
    // read fails, nothing has changed.
    std::vector<std::size_t> order;
    for (std::size_t index = 0; index < calls.size(); ++index)
        if (!calls[index].changes) order.push_back(index);
    for (std::size_t index = 0; index < calls.size(); ++index)
        if (calls[index].changes) order.push_back(index);
    struct Answers {
        std::vector<migrations::ResultTable> tables;
        std::optional<protocol::ErrorMessage> error;
    };
    auto work = [inband = shared_.inband, context = context_, calls, order, abandoned] {
        Answers result;
        result.tables.resize(calls.size());
        for (const std::size_t index : order) {
            auto outcome = inband->run(context, calls[index].command, calls[index].arguments, abandoned);
            if (!outcome.ok) {
                result.error = std::move(outcome.error);
                break;
            }
            result.tables[index] = std::move(outcome.table);
        }
        return result;
    };
    Answers result = co_await run_on_pool<Answers>(shared_.blocking_pool, work);
    finished->store(true);  // the watcher's wait ends with the client's next message, or its close
    inband_abandoned_.reset();
    // Its answer is complete with this ReadyForQuery (a Parse's or Bind's comes with the next Sync).
    inband_answer_ready_ = syncs_sent_ + (unsynced_ ? 1 : 0);
    if (result.error && shutdown_ == ShutdownMode::immediate && abandoned->load()) {
        if (!result.error->detail.empty()) result.error->detail += '\n';
        result.error->detail += "pgrail is shutting down (SIGINT, or shutdown_timeout reached) and abandoned the run";
    }
    if (has_client_key_) shared_.cancel_registry.set_abandon_flag(client_key_, {});
    answers = std::move(result.tables);
    co_return std::move(result.error);
}

awaitable<std::optional<protocol::ErrorMessage>> Session::refuse_in_transaction(const std::vector<InbandCall>& calls,
                                                                                std::uint64_t answered) {
    const auto changing = std::find_if(calls.begin(), calls.end(), [](const InbandCall& call) { return call.changes; });
    if (changing == calls.end()) co_return std::nullopt;
    const std::string name = "pgrail." + changing->command;
    const auto refused = [&](std::string message) {
        return protocol::ErrorMessage{
            "ERROR", "25001", std::move(message),
            "pgrail runs its commands on a connection of its own, never in the session's transaction: a ROLLBACK "
            "would not undo it.",
            fmt::format("Send SELECT * FROM {}(...) outside a transaction block (after COMMIT or ROLLBACK), as a "
                        "statement of its own (in the extended protocol: followed by Sync).",
                        name)};
    };
    // Like PostgreSQL's CREATE DATABASE: after another Execute of the same pipeline, the server
    // may roll back what ran before it, but not the command.
    if (executed_since_sync_) co_return refused(fmt::format("pgrail: {} cannot be executed within a pipeline", name));
    if (!co_await wait_for_server(answered)) {
        co_return protocol::ErrorMessage{"ERROR", "57P01", "pgrail: the session ended before the command ran", {}, {}};
    }
    if (transaction_status_ != 'I')
        co_return refused(fmt::format("pgrail: {} cannot run inside a transaction block", name));
    co_return std::nullopt;
}

awaitable<bool> Session::wait_for_server(std::uint64_t count, bool probe) {
    const auto done = [&] { return ready_received_ >= count && (!probe || probe_ != Probe::waiting); };
    if (done()) co_return true;
    // What came before must reach the server for it to answer.
    if (co_await write_out(server_, to_server_)) co_return false;
    while (!done()) {
        if (ending_ || server_closed_by_pgrail_) co_return false;
        waiting_for_server_ = true;
        ready_signal_.expires_at(asio::steady_timer::time_point::max());
        (void)co_await ready_signal_.async_wait(use_tuple);
        waiting_for_server_ = false;
        const auto state = co_await asio::this_coro::cancellation_state;
        if (state.cancelled() != asio::cancellation_type::none) co_return false;
    }
    co_return true;
}

awaitable<bool> Session::probe_statement(std::string_view name, Outbound& out) {
    // (The caller waited for the batches before this one: an error now is this batch's.)
    if (batch_failed_) co_return false;
    std::string probe;
    protocol::encode_describe(probe, 'S', name);
    protocol::encode_flush(probe);
    parameter_trims_.push_back(ParameterTrim{syncs_sent_, 0, true});
    describe_answers_.push_back(DescribeAnswer{syncs_sent_, false, 0});
    probe_ = Probe::waiting;
    out.inject(std::move(probe));
    const bool waited = co_await wait_for_server(0, true);
    const bool answered = waited && probe_ == Probe::answered;
    probe_ = Probe::none;
    co_return answered;
}

awaitable<void> Session::on_bind(std::string_view frame, Outbound& out) {
    const auto bind = protocol::parse_bind(frame.substr(protocol::header_size));
    if (!bind) {
        end_session("08P01", "invalid Bind message format");
        co_return;
    }
    const auto found = deferred_.find(std::string(bind->statement));
    if (found == deferred_.end()) {
        out.forward(frame);
        co_return;
    }
    const DeferredStatement deferred = found->second;  // a copy: the map may change while commands run
    GateVerdict refusal;
    refusal.kind = GateVerdict::Kind::refuse;
    const std::size_t given = bind->parameters.size();
    const std::size_t formats = bind->parameter_formats.size();
    if (given != deferred.client_parameters || (formats > 1 && formats != given)) {
        // As PostgreSQL answers such a Bind, before anything runs.
        refusal.error = {"ERROR", "08P01",
                         formats > 1 && formats != given
                             ? fmt::format("bind message has {} parameter formats but {} parameters", formats, given)
                             : fmt::format("bind message supplies {} parameters, but prepared statement \"{}\" "
                                           "requires {}",
                                           given, bind->statement, deferred.client_parameters),
                         {}, {}};
    } else {
        std::vector<migrations::ResultTable> answers;
        // The Bind's Sync is not counted yet: everything before it is.
        auto error = co_await refuse_in_transaction(deferred.calls, syncs_sent_);
        const bool changes = std::any_of(deferred.calls.begin(), deferred.calls.end(),
                                         [](const InbandCall& call) { return call.changes; });
        // A command that changes something runs only for a statement the server holds, with
        // nothing before it in the batch failed (a Parse the server refused, a statement
        // DEALLOCATEd): otherwise the server skips this Bind, and the command must not run.
        // (The co_await stands alone: GCC 12 mishandles one inside a larger expression.)
        bool server_holds_it = true;
        if (!error && changes) server_holds_it = co_await probe_statement(bind->statement, out);
        if (!server_holds_it) {
            out.forward(frame);
            co_return;
        }
        if (!error) error = co_await run_commands(deferred.calls, answers);
        if (!error) {
            // The client's Bind with each command's answer as the parameter pgrail added for it.
            std::vector<std::string> rows;
            rows.reserve(answers.size());
            for (const auto& answer : answers) rows.push_back(answer_json(answer));
            protocol::BindMessage rewritten = *bind;
            if (formats == 1 && rewritten.parameter_formats.front() != 0)
                rewritten.parameter_formats.assign(given, rewritten.parameter_formats.front());
            if (rewritten.parameter_formats.size() == given && given > 0)
                rewritten.parameter_formats.insert(rewritten.parameter_formats.end(), rows.size(), 0);
            for (const auto& row : rows) rewritten.parameters.emplace_back(row);
            std::string replacement;
            protocol::encode_bind(replacement, rewritten);
            out.inject(std::move(replacement));
            co_return;
        }
        refusal.error = std::move(*error);
    }
    // Refused like a failing Parse (of a statement of pgrail's own name, so that no statement of
    // the client's is touched): the server skips to the Sync, and answers the refusal.
    refuse(refusal, protocol::frontend_tag::parse, {}, "pgrail_refused_bind", std::string_view("\0\0", 2), out);
}

void Session::on_describe(std::string_view frame) {
    const auto target = protocol::parse_describe_target(frame.substr(protocol::header_size));
    if (target) describe_answers_.push_back(DescribeAnswer{syncs_sent_, false, 0});  // its RowDescription or NoData
    if (!target || target->kind != 'S') return;  // a portal's Describe has no ParameterDescription
    const auto found = deferred_.find(std::string(target->name));
    parameter_trims_.push_back(ParameterTrim{syncs_sent_, found == deferred_.end() ? 0 : found->second.calls.size()});
}

void Session::on_close(std::string_view frame) {
    const auto target = protocol::parse_describe_target(frame.substr(protocol::header_size));
    if (target && target->kind == 'S') deferred_.erase(std::string(target->name));
}

// Waits while an in-band command runs: the client's socket becoming readable with nothing to
// read (it closed or reset), or with a Terminate (libpq's PQfinish) means the command's answer
// is no longer wanted. Other pipelined data ends the watch (it stays unread for the pump; a
// departure behind it goes unseen).
awaitable<void> Session::watch_for_departure(std::shared_ptr<std::atomic<bool>> abandoned,
                                             std::shared_ptr<std::atomic<bool>> finished) {
    auto self = shared_from_this();
    auto [ec] = co_await client_.async_wait(Stream::wait_read, use_tuple);
    if (ec || finished->load()) co_return;
    std::array<char, 5> head{};
    const auto peeked = ::recv(client_.native_handle(), head.data(), head.size(), MSG_PEEK | MSG_DONTWAIT);
    constexpr std::array<char, 5> terminate = {'X', 0, 0, 0, 4};
    const bool terminating = peeked == static_cast<ssize_t>(head.size()) && head == terminate;
    if (peeked == 0 || terminating || (peeked < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        spdlog::info("session {}: the client left while an in-band command ran: abandoning it", context_.session_id);
        abandoned->store(true);
    }
}

// The refused statement is replaced by one that fails in the server's parse analysis (a text
// cast to integer), so the server itself fails at that point: the transaction, pipeline and Sync
// semantics are PostgreSQL's own. The text says in the server's log that pgrail refused it and
// why; the error is rewritten into the policy's error on the way back.
void Session::refuse(const GateVerdict& verdict, char tag, std::string_view sql, std::string_view parse_name,
                     std::string_view parse_types, Outbound& out) {
    const auto id = next_refusal_id_++;
    // A Query's (or FunctionCall's) own ReadyForQuery is already counted; a Parse's comes
    // with the next Sync.
    const bool own_ready = tag == protocol::frontend_tag::query || tag == protocol::frontend_tag::function_call;
    const auto ready_index = own_ready ? syncs_sent_ - 1 : syncs_sent_;
    refusals_[id] = PendingRefusal{verdict.error, ready_index};
    const auto stand_in = refusal_stand_in(verdict.error, shared_.refusal_marker, id);
    std::string replacement;
    if (tag == protocol::frontend_tag::parse) {
        protocol::encode_parse(replacement, parse_name, stand_in, parse_types);
    } else {
        // Statements before the refused one run, as they would before a failing statement.
        // A FunctionCall becomes a Query: both are answered by an error and ReadyForQuery.
        const auto prefix = sql.substr(0, std::min(verdict.refused_offset, sql.size()));
        protocol::encode_query(replacement, fmt::format("{};{}", prefix, stand_in));
    }
    out.inject(std::move(replacement));
}

awaitable<void> Session::server_to_client() {
    auto& in = from_server_;
    // The server is trusted, but its lengths are still bounded: PostgreSQL's own 1 GiB.
    constexpr std::uint32_t max_size = 1u << 30;
    while (true) {
        if (auto ec = co_await read_more(in)) co_return;
        while (true) {
            // The probe's RowDescription is read whole, to be dropped.
            const auto inspect = [this](char tag, std::size_t size) {
                return inspect_from_server(tag, size) ||
                       (tag == protocol::backend_tag::command_complete && migrator_runs_.watching()) ||
                       (hide_row_description_ &&
                        (tag == protocol::backend_tag::row_description || tag == protocol::backend_tag::no_data)) ||
                       (result_frame_ != ResultFrame::pass && result_inspects(size));
            };
            const auto next = next_frame(in, to_client_, max_size, inspect, [this](char tag) {
                if (tag == protocol::backend_tag::copy_in_response) server_in_copy_in_ = true;
                if (watching_results()) on_result_header(tag);
                if (tag == protocol::backend_tag::error_response) {
                    // The server skips the rest of this batch, a probe of pgrail's included.
                    batch_failed_ = true;
                    migrator_runs_.on_error();
                    if (probe_ == Probe::waiting) {
                        probe_ = Probe::skipped;
                        if (waiting_for_server_) ready_signal_.cancel();
                    }
                }
            });
            if (result_row_too_long_) {  // not read: the session ends (FATAL 54000)
                flush_rows(to_client_);
                co_await write_out(client_, to_client_);
                co_return;
            }
            if (next.kind == NextFrame::Kind::need_more) break;
            if (next.kind == NextFrame::Kind::invalid) {
                spdlog::error("session {}: invalid message from the server: {} (header {})", context_.session_id,
                              next.header.reason, protocol::hex_dump(in.buffer.pending().substr(0, 5)));
                end_session("08P01",
                            fmt::format("pgrail: invalid message from the database server: {}", next.header.reason));
                co_await write_out(client_, to_client_);
                co_return;
            }
            auto step = ResultStep::pass;
            if (result_frame_ != ResultFrame::pass) {
                step = on_result_frame(next.header.header.tag, next.frame, to_client_);
                if (step == ResultStep::finish) {
                    step = co_await finish_result(next.header.header.tag, next.frame, to_client_);
                }
                result_frame_ = ResultFrame::pass;
                if (step == ResultStep::stop) {
                    co_await write_out(client_, to_client_);
                    co_return;
                }
            }
            if (step == ResultStep::pass) on_server_frame(next.header.header.tag, next.frame, to_client_);
            in.consume_frame(next.frame.size());
            // A registered migration's script run to its end: in the ledger before the client
            // hears that its transaction is over (so its next status or step sees it).
            if (migrator_runs_.has_committed()) co_await record_migrator_runs();
        }
        flush_rows(to_client_);
        if (auto ec = co_await write_out(client_, to_client_)) co_return;
        // Shutting down: the session ends once what it was doing is done and answered.
        if (shutdown_ != ShutdownMode::none && !ended_for_shutdown_ && ready_received_ > 0 &&
            (at_rest() || (shutdown_ == ShutdownMode::immediate && !inband_abandoned_ &&
                           ready_received_ >= inband_answer_ready_))) {
            end_for_shutdown();
            co_return;
        }
    }
}

awaitable<void> Session::record_migrator_runs() {
    auto committed = migrator_runs_.take_committed();
    if (!shared_.inband) co_return;
    // Blocking (the ledger, under the migration lock): on the pool, as in-band commands run.
    auto work = [inband = shared_.inband, context = context_, committed = std::move(committed),
                 progress = &migrator_progress_]() mutable {
        inband->record_migrator_commit(context, committed, *progress);
        return true;
    };
    const bool done = co_await run_on_pool<bool>(shared_.blocking_pool, work);
    (void)done;
}

void Session::on_server_frame(char tag, std::string_view frame, Outbound& out) {
    const auto body = frame.substr(protocol::header_size);
    switch (tag) {
        case protocol::backend_tag::ready_for_query: {
            if (const auto status = protocol::parse_ready_for_query(body)) {
                transaction_status_ = *status;
                migrator_runs_.on_ready(*status);
            }
            if (++ready_received_ == 1) {
                first_ready_signal_.cancel();
                login_timer_.cancel();  // the login's watch ends
            }
            // Refusals answered before this point can no longer come back.
            std::erase_if(refusals_, [&](const auto& entry) { return entry.second.ready_index < ready_received_; });
            // Nor can the ParameterDescriptions of Describes an error made the server skip.
            while (!parameter_trims_.empty() && parameter_trims_.front().ready_index < ready_received_)
                parameter_trims_.pop_front();
            if (watching_results()) forget_results_at_ready();
            batch_failed_ = false;
            if (probe_ == Probe::waiting) probe_ = Probe::skipped;
            if (waiting_for_server_) ready_signal_.cancel();
            break;
        }
        case protocol::backend_tag::command_complete:
            // Read whole only while registered migrations' statements are on their way.
            if (migrator_runs_.watching() && frame.size() > protocol::header_size)
                migrator_runs_.on_command_complete(std::string_view(body.data(), body.size() - 1));
            break;
        case protocol::backend_tag::parameter_description: {
            // The answer to the oldest Describe of a statement: hide pgrail's own parameters.
            if (parameter_trims_.empty()) break;
            const auto [ready_index, trim, probe] = parameter_trims_.front();
            parameter_trims_.pop_front();
            if (probe) {
                // pgrail's probe: the statement exists and what came before it succeeded.
                hide_row_description_ = true;
                if (probe_ == Probe::waiting) probe_ = Probe::answered;
                if (waiting_for_server_) ready_signal_.cancel();
                return;
            }
            if (trim == 0) break;
            auto types = protocol::parse_parameter_description(body);
            if (!types || types->size() < trim) break;
            types->resize(types->size() - trim);
            std::string replacement;
            protocol::encode_parameter_description(replacement, *types);
            out.inject(std::move(replacement));
            return;
        }
        case protocol::backend_tag::parameter_status: {
            // The settings that decide how the server lexes this session's texts: pgrail reads
            // them as it does. A client-only encoding, once reported, counts for the rest of the
            // session (a RESET may return to it while a pipelined text is on its way).
            const auto status = protocol::parse_parameter_status(body);
            if (!status) break;
            if (status->name == "standard_conforming_strings") {
                context_.lexing.standard_conforming_strings = status->value == "on";
            } else if (status->name == "client_encoding" || status->name == "server_encoding") {
                (status->name == "client_encoding" ? client_encoding_ : server_encoding_) = status->value;
                if (sql::is_client_only_encoding(client_encoding_)) context_.lexing.client_only_encoding = true;
                // The server converts between different encodings (SQL_ASCII on either side: not).
                context_.lexing.converted = client_encoding_ != server_encoding_ && client_encoding_ != "SQL_ASCII" &&
                                            server_encoding_ != "SQL_ASCII" && !server_encoding_.empty();
            }
            break;
        }
        case protocol::backend_tag::backend_key_data: {
            const auto key = protocol::parse_backend_key_data(body);
            if (!key) break;
            if (has_client_key_) shared_.cancel_registry.remove(client_key_);
            upstream_key_ = *key;
            client_key_ = shared_.cancel_registry.add(*key);
            has_client_key_ = true;
            std::string replacement;
            protocol::encode_backend_key_data(replacement, client_key_);
            out.inject(std::move(replacement));
            return;
        }
        case protocol::backend_tag::authentication: {
            const auto auth = protocol::parse_authentication(body);
            if (auth && ready_received_ == 0 && asks_the_client(auth->code))
                server_turn_deadline_ = std::chrono::steady_clock::time_point::max();  // the client's turn
            if (!auth || auth->code != protocol::auth_sasl) break;
            // Channel binding needs one TLS session end to end; the client's and the
            // server's legs never share one through pgrail, so never offer -PLUS.
            std::vector<std::string_view> mechanisms;
            for (auto mechanism : auth->sasl_mechanisms)
                if (mechanism != "SCRAM-SHA-256-PLUS") mechanisms.push_back(mechanism);
            if (mechanisms.size() == auth->sasl_mechanisms.size()) break;
            std::string replacement;
            protocol::encode_authentication_sasl(replacement, mechanisms);
            out.inject(std::move(replacement));
            return;
        }
        case protocol::backend_tag::row_description:
        case protocol::backend_tag::no_data:
            if (!hide_row_description_) break;
            hide_row_description_ = false;  // the rest of the probe's answer
            return;
        case protocol::backend_tag::error_response: {
            const auto fields = protocol::parse_error_fields(body);
            if (!fields) break;
            if (protocol::error_field(*fields, 'V') == "FATAL" || protocol::error_field(*fields, 'S') == "FATAL")
                server_sent_fatal_ = true;
            if (refusals_.empty()) break;
            const auto message = protocol::error_field(*fields, 'M');
            const auto marker = message.find(shared_.refusal_marker);
            if (marker == std::string_view::npos) break;
            const auto digits = message.substr(marker + shared_.refusal_marker.size());
            std::uint64_t id = 0;
            std::from_chars(digits.data(), digits.data() + digits.size(), id);
            const auto it = refusals_.find(id);
            if (it == refusals_.end()) break;
            std::string replacement;
            protocol::encode_error_response(replacement, it->second.error);
            refusals_.erase(it);
            out.inject(std::move(replacement));
            return;
        }
        default:
            break;
    }
    out.forward(frame);
}

}  // namespace pgrail::proxy

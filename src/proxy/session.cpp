// One client connection: startup, upstream connect, and the two pumps.
#include "session.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <tuple>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "pgrail/protocol/bytes.hpp"
#include "pgrail/protocol/frame.hpp"
#include "pgrail/protocol/sqlstate.hpp"
#include "pgrail/proxy/audit_budget.hpp"
#include "pgrail/proxy/inband_relations.hpp"
#include "log_budget.hpp"
#include "pgrail/proxy/metrics.hpp"
#include "pgrail/sql/pgrail_command.hpp"
#include "run_on_pool.hpp"
#include "tcp_keepalive.hpp"
#include "upstream.hpp"

namespace pgrail::proxy {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using boost::system::error_code;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// An operation awaited as it is (no coroutine frame of its own, unlike use_awaitable's).
constexpr auto deferred_tuple = asio::as_tuple(asio::deferred);

namespace {

// A client that opens a socket and never finishes its startup packet is dropped
// after this long (PostgreSQL's authentication_timeout default).
constexpr auto startup_timeout = std::chrono::seconds(60);
// A connection past its address's max_pending_logins_per_address: time enough to send a cancel.
constexpr auto startup_timeout_past_bound = std::chrono::seconds(2);
constexpr auto farewell_timeout = std::chrono::seconds(5);

// Whether a Parse declares each of these parameters an integer (int2, int4, int8) or leaves its
// type to the server (0: a lone lock key's is int8).
bool integer_parameters(std::string_view parse_types, const std::vector<std::uint16_t>& numbers) {
    const auto types = protocol::parse_parameter_types(parse_types).value_or(std::vector<std::uint32_t>{});
    return std::all_of(numbers.begin(), numbers.end(), [&](std::uint16_t number) {
        if (number > types.size()) return true;
        const std::uint32_t type = types[number - 1u];
        return type == 0 || type == 20 || type == 21 || type == 23;
    });
}

// A name for the log as the server reads it: at most 63 bytes (a client may send kilobytes).
std::string_view shown(std::string_view name) { return name.substr(0, 63); }

// Before the server has authenticated the client, only the authentication exchange passes,
// one frame at a time, each no longer than PostgreSQL reads one (PG_MAX_AUTH_TOKEN_LENGTH: the
// length word, which counts itself, at most 65535).
bool allowed_before_authentication(char tag) {
    return tag == protocol::frontend_tag::password || tag == protocol::frontend_tag::terminate;
}
constexpr std::uint32_t max_authentication_length = 65535;

// A startup parameter that sets nothing a policy guards (who, where, how to print): the ones
// libpq, JDBC and drivers send. Any other (options, search_path, ...) sets a setting for the
// session's life (SessionContext::holds_checked_work).
bool plain_startup_parameter(std::string_view name) {
    static constexpr std::array<std::string_view, 9> plain{
        "user", "database", "application_name", "client_encoding", "datestyle", "timezone", "extra_float_digits",
        "intervalstyle", "fallback_application_name"};
    std::string lower(name);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return std::find(plain.begin(), plain.end(), lower) != plain.end();
}

std::string invalid_length(const protocol::FrameHeader& header) {
    return fmt::format("invalid message length {} for message type \"{}\"", header.length, header.tag);
}

}  // namespace

Session::Session(Stream client, ServerShared& shared)
    : shared_(shared), client_(std::move(client)), server_(Stream(client_.get_executor())),
      // A row held whole comes out of max_buffered_size (with the client's long messages): one
      // that could never fit it ends the session at once rather than after a wait.
      protocol_(*this, shared.gate, shared.cancel_registry, shared.refusal_marker,
                std::min<std::size_t>(SessionProtocol::default_max_result_row, shared.config.max_buffered_size / 2)),
      started_(std::chrono::steady_clock::now()),
      first_ready_signal_(client_.get_executor(), asio::steady_timer::time_point::max()),
      ready_signal_(client_.get_executor()), login_timer_(client_.get_executor()),
      pace_timer_(client_.get_executor()) {
    context_.session_id = shared_.next_session_id.fetch_add(1);
    context_.client_address = client_.peer_address();
    if (shared_.tls) tls_ = shared_.tls->current();
    if (tls_ && tls_->client_leg)
        protocol_.offer_tls(tls_->settings.client.mode == config::ClientTlsMode::require);
    ++shared_.active_sessions;
    metrics().sessions_open.fetch_add(1, std::memory_order_relaxed);
    metrics().sessions_total.fetch_add(1, std::memory_order_relaxed);
}

Session::~Session() {
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
    client_.socket().set_option(tcp::no_delay(true), ignored);
    set_tcp_keepalive(client_.socket().native_handle(), shared_.config);
    // Past its address's places, a connection has a short while to say what it is: a cancel is
    // carried out (as when pgrail is full), a login is refused.
    pending_place_ = shared_.pending_logins->enter(context_.client_address);
    if (!co_await read_startup()) co_return;
    if (!pending_place_) {
        static AuditBudget log_budget(1.0, 10.0);
        if (const auto left_out = log_budget.take())
            spdlog::warn("session {}: {} has max_pending_logins_per_address connections logging in already: refused{}",
                         context_.session_id, context_.client_address,
                         *left_out > 0 ? fmt::format(" ({} more not logged before it)", *left_out) : std::string());
        co_await send_fatal(sqlstate::too_many_connections,
                            "pgrail: too many connections from this address are logging in at once");
        co_return;
    }
    if (shutdown_ != ShutdownMode::none) {
        // Accepted just before the listener closed: answered as PostgreSQL answers a login
        // during its shutdown.
        co_await send_fatal(sqlstate::cannot_connect_now, "the database system is shutting down");
        co_return;
    }
    if (context_.user.empty()) {  // PostgreSQL's answer, before any password is asked for
        co_await send_fatal(sqlstate::invalid_authorization_specification,
                            "no PostgreSQL user name specified in startup packet");
        co_return;
    }
    // auth.mode pgrail: the client proves who it is to pgrail before the server is reached, and the
    // policy then sees the identity's role as user (and the identity).
    if (shared_.identities) {
        const bool authenticated = co_await client_login();
        if (!authenticated) co_return;
    }
    (void)shared_.gate->rule_changed(context_, policy_hold_);  // records the policy deciding it
    // Settings of the startup packet (options, a search_path) stay for the session, as a SET's do.
    for (const auto& [name, value] : protocol_.startup_parameters())
        if (!plain_startup_parameter(name)) context_.holds_checked_work = true;
    // A refusal's audit line may wait for an fsync: written on the audit pool (as a statement's).
    GateVerdict admission = shared_.gate->check_startup(context_, protocol_.startup_parameters());
    if (admission.write_audit) co_await settle_audit_elsewhere(admission);
    if (admission.kind != GateVerdict::Kind::refuse && !shared_.identities) {
        // Passthrough: the server connection this login holds while the server authenticates it
        // counts among its rule's places (review 93: 100 logins that never finished took every
        // server connection, the owner's too). A later login may take it over (evict_login).
        auto evict = [weak = weak_from_this(), executor = executor()] {
            asio::post(executor, [weak] {
                if (const auto self = weak.lock()) self->evict_login();
            });
        };
        admission = shared_.gate->take_login_place(context_, std::move(evict));
        if (admission.write_audit) co_await settle_audit_elsewhere(admission);
        login_place_ = std::move(admission.session_place);
    }
    if (admission.kind == GateVerdict::Kind::refuse) {
        auto refusal = std::move(admission.error);
        refusal.severity = "FATAL";
        if (!shared_.identities) {
            // Passthrough: the server has not authenticated this client yet. The rule is for the
            // audit log, not for anyone who reaches the port (the hints name none then).
            refusal.detail = "pgrail checks the startup packet before the server authenticates the client; the "
                             "audit log names the rule that refused it.";
        }
        // Anyone who reaches the port can cause these: the log takes them as the audit does (a
        // burst, then 10 a second, the count of those left out said with the next line).
        static AuditBudget log_budget(10.0, 100.0);
        if (const auto left_out = log_budget.take())
            spdlog::warn("session {}: connection refused for user={} database={}: {}{}", context_.session_id,
                         shown(context_.user), shown(context_.database), refusal.message,
                         *left_out > 0 ? fmt::format(" ({} more refused connections not logged before it)", *left_out)
                                       : std::string());
        std::string bytes;
        protocol::encode_error_response(bytes, refusal);
        co_await send_to_client(std::move(bytes));
        co_return;
    }
    session_place_ = std::move(admission.session_place);  // (its rule's max_connections)
    directory_entry_ = shared_.directory->add(context_);  // directory
    if (!co_await connect_upstream()) co_return;
    if (const auto& ending = protocol_.ending(); ending && !pumping_) {  // evicted meanwhile
        co_await send_fatal(ending->sqlstate, ending->message);
        co_return;
    }

    bool server_ended = false;
    pumping_ = true;
    protocol_.start();
    login_turn(true);
    asio::co_spawn(client_.get_executor(), watch_login(), asio::detached);
    // auth.mode pgrail: pgrail logs in as the role itself; passthrough: the client's exchange.
    bool sent = false;
    if (login_verifier_) {
        sent = co_await server_login();
    } else {
        // The startup packet goes upstream as the client sent it (as 3.0 without `_pq_.` options).
        to_server_.forward(protocol_.startup_bytes());
        const auto ec = co_await write_out(server_, to_server_);
        sent = !ec;
    }
    if (sent) {
        auto client_pump = ending_on_exception(client_to_server(), "reading the client");
        auto server_pump = ending_on_exception(server_to_client(), "reading the server");
        auto ended = co_await (std::move(client_pump) || std::move(server_pump));
        server_ended = ended.index() == 1;
    }
    pumping_ = false;
    login_watch_done_ = true;
    login_timer_.cancel();
    server_.socket().close(ignored);
    from_client_.buffer.release();  // its budget and place in line, before the farewell's seconds
    from_server_.buffer.release();
    // An error of pgrail's own only between frames: inside a half-sent one it would be garbage.
    const bool between_frames = from_server_.passthrough_remaining == 0 && !client_write_cut_;
    if (!between_frames) {
        spdlog::info("session {}: closing the client mid-message", context_.session_id);
    } else if (const auto& ending = protocol_.ending()) {
        if (login_admission_.write_audit) co_await settle_audit_elsewhere(login_admission_);
        co_await send_fatal(ending->sqlstate, ending->message, ending->detail, ending->hint);
    } else if (server_ended && !protocol_.server_sent_fatal() && !protocol_.client_terminated()) {
        // The server went away without saying why: tell the client instead of a bare EOF.
        co_await send_fatal(sqlstate::connection_failure,
                            "pgrail: the database server closed the connection unexpectedly");
    }
    client_.socket().close(ignored);
    const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    // One that never logged in is anyone who reached the port: its line is budgeted (review 93: a
    // loop of unfinished logins wrote a megabyte a second).
    const bool logged_in = protocol_.logged_in();
    const auto budgeted = logged_in ? std::optional<std::string>(std::string()) : unauthenticated_log_budget().take();
    if (budgeted)
        spdlog::info("session {} end{}: user={} identity={} database={} application_name={} client={} "
                     "duration={:.3f}s bytes_from_client={} bytes_from_server={}{}",
                     context_.session_id, logged_in ? "" : " before logging in", shown(context_.user),
                     shown(context_.identity.empty() ? context_.user : context_.identity), shown(context_.database),
                     shown(context_.application_name), context_.client_address, elapsed, from_client_.bytes,
                     from_server_.bytes, *budgeted);
}

awaitable<void> Session::ending_on_exception(awaitable<void> pump, const char* name) {
    try {
        co_await std::move(pump);
    } catch (const std::exception& error) {
        // Cancelled because the other pump ended first (`||` cancels it): that is no failure.
        if (const auto* system = dynamic_cast<const boost::system::system_error*>(&error);
            system != nullptr && system->code() == asio::error::operation_aborted)
            throw;
        spdlog::error("session {}: {} failed: {}; the session ends", context_.session_id, name, error.what());
        protocol_.end(sqlstate::internal_error, "pgrail: internal error; the session ends");
    }
}

awaitable<bool> Session::read_startup() {
    asio::steady_timer deadline(client_.get_executor(), pending_place_ ? startup_timeout : startup_timeout_past_bound);
    bool answered = false;  // an encryption request was answered
    while (true) {
        char length_bytes[4];
        auto read_length = client_.read_exactly(asio::buffer(length_bytes));
        auto result = co_await (std::move(read_length) || deadline.async_wait(use_tuple));
        if (result.index() == 1) metrics().count_timeout(Timeout::startup_packet);  // metrics
        if (result.index() == 1) co_return false;  // timed out
        auto [ec, n] = std::get<0>(result);
        if (ec) {
            // Gone before saying anything (a port probe, a client that refused our 'N'): nothing
            // to log, as PostgreSQL. Part of a length word: logged, nothing said to the client.
            if (n > 0 && !answered)
                if (const auto more = unauthenticated_log_budget().take())
                    spdlog::warn("session {}: incomplete startup packet from {} ({} of 4 length bytes, then {}){}",
                                 context_.session_id, context_.client_address, n, ec.message(), *more);
            co_return false;
        }
        const auto header = protocol::read_startup_header({length_bytes, 4});
        if (header.status != protocol::FrameStatus::complete) {
            // PostgreSQL logs this (COMMERROR) and closes without a word to the client: a client
            // that sends Terminate before its startup packet, or garbage, hears nothing back.
            if (const auto more = unauthenticated_log_budget().take())
                spdlog::warn("session {}: invalid length of startup packet from {}: {} (header {}); closing without "
                             "a message, as PostgreSQL does{}",
                             context_.session_id, context_.client_address, header.reason,
                             protocol::hex_dump({length_bytes, 4}), *more);
            co_return false;
        }
        std::string packet(length_bytes, 4);
        packet.resize(header.length);
        auto read_body = client_.read_exactly(asio::buffer(packet.data() + 4, packet.size() - 4));
        auto body_result = co_await (std::move(read_body) || deadline.async_wait(use_tuple));
        if (body_result.index() == 1) metrics().count_timeout(Timeout::startup_packet);  // metrics
        if (body_result.index() == 1) co_return false;  // timed out
        if (const auto body_ec = std::get<0>(std::get<0>(body_result)); body_ec) {
            if (const auto more = unauthenticated_log_budget().take())
                spdlog::warn("session {}: incomplete startup packet from {} (length {}, then {}); closing without a "
                             "message, as PostgreSQL does{}",
                             context_.session_id, context_.client_address, header.length, body_ec.message(), *more);
            co_return false;
        }
        from_client_.bytes += packet.size();

        auto step = protocol_.on_startup_packet(std::move(packet));
        if (step.kind == StartupStep::Kind::cancel) {
            co_await handle_cancel(step.cancel_key);
            co_return false;
        }
        if (step.kind == StartupStep::Kind::refuse) {
            if (!step.audit_reason.empty()) {
                GateVerdict audit;
                audit.write_audit = [gate = shared_.gate, context = context_, reason = step.audit_reason] {
                    return gate->audit_auth_event(context, "login_refused", reason);
                };
                co_await settle_audit_elsewhere(audit);
            }
            co_await send_to_client(std::move(step.reply));
            co_return false;
        }
        if (!step.reply.empty()) {
            auto [wec, wn] = co_await client_.async_write(asio::buffer(step.reply), use_tuple);
            if (wec) co_return false;
        }
        if (step.kind == StartupStep::Kind::accept) co_return true;
        answered = true;  // an 'N' or 'S': the client goes on with a startup packet
        if (step.kind != StartupStep::Kind::start_tls) continue;
        SSL* ssl = client_.begin_tls(tls_->client_leg);
        auto shaken = co_await (client_.handshake(asio::ssl::stream_base::server) || deadline.async_wait(use_tuple));
        if (shaken.index() == 1) co_return false;  // timed out: as a silent client
        if (const auto handshake_ec = std::get<0>(shaken)) {
            // As PostgreSQL: logged, the connection closed (the client hears TLS's alert).
            if (const auto more = unauthenticated_log_budget().take())
                spdlog::warn("session {}: could not accept a TLS connection from {}: {}{}", context_.session_id,
                             context_.client_address, describe_tls_error(handshake_ec, ssl), *more);
            co_return false;
        }
        protocol_.tls_started();
    }
}

awaitable<void> Session::handle_cancel(protocol::BackendKey key) {
    // Like PostgreSQL, answer nothing: the client closes after sending its request.
    const auto upstream_key = shared_.cancel_registry.find(key);
    if (!upstream_key) {
        if (const auto more = unauthenticated_log_budget().take())
            spdlog::warn("session {}: cancel request for unknown key pid={} from {}{}", context_.session_id, key.pid,
                         context_.client_address, *more);
        co_return;
    }
    shared_.cancel_registry.abandon(key);  // an in-band command, if one runs
    co_await send_cancel(*upstream_key);
}

awaitable<void> Session::send_cancel(protocol::BackendKey upstream_key) {
    co_await send_cancel_request(client_.get_executor(), shared_.config, tls_, upstream_key);
    spdlog::info("session {}: sent cancel request for backend {}", context_.session_id, upstream_key.pid);
}

awaitable<bool> Session::connect_upstream() {
    auto failure = co_await connect_to_upstream(server_.socket(), shared_.config);
    if (failure.empty()) failure = co_await start_server_tls(server_, tls_.get(), shared_.config);
    if (shutdown_ != ShutdownMode::none) {
        co_await send_fatal(sqlstate::cannot_connect_now, "the database system is shutting down");
        co_return false;
    }
    if (!failure.empty()) {
        const auto where = upstream_address(shared_.config);
        metrics().upstream_connect_failures.fetch_add(1, std::memory_order_relaxed);
        spdlog::error("session {}: cannot connect to upstream {}: {}", context_.session_id, where, failure);
        co_await send_fatal(sqlstate::connection_failure,
                            fmt::format("pgrail: could not connect to the database server at {}: {}", where, failure));
        co_return false;
    }
    prepare_for_drained_receive(client_.socket(), Leg::drained_receives());
    co_return true;
}

// The login's timeouts. The server has connect_timeout_ms for each of its turns: from pgrail
// forwarding the startup packet or a client's authentication message until the server asks the
// client for the next one (or finishes with ReadyForQuery, or an error). The client's turns are
// not bounded on their own (a person may type a password), only the whole login is: 60 s from
// the connection, PostgreSQL's authentication_timeout.
void Session::login_turn(bool server) {
    if (protocol_.logged_in()) return;
    if (!server) {
        server_turn_deadline_ = std::chrono::steady_clock::time_point::max();  // the client's turn
        return;
    }
    const auto timeout = std::chrono::milliseconds(shared_.config.connect_timeout_ms);
    server_turn_deadline_ = std::chrono::steady_clock::now() + timeout;
    login_timer_.cancel();  // the watch re-arms for the nearer deadline
}

bool Session::logged_in() {
    pending_place_.reset();  // its address's place is free for the next login
    login_place_.reset();    // ... and its rule's: admit_session takes one of a session
    spdlog::info("session {} start: user={} identity={} database={} application_name={} client={}",
                 context_.session_id, shown(context_.user),
                 shown(context_.identity.empty() ? context_.user : context_.identity), shown(context_.database),
                 shown(context_.application_name), context_.client_address);
    if (!shared_.identities) {
        // Passthrough: the server has authenticated the client; now it takes a place among its
        // rule's max_connections (PostgreSQL checks a role's CONNECTION LIMIT here too).
        login_admission_ = shared_.gate->admit_session(context_);
        session_place_ = std::move(login_admission_.session_place);
        if (login_admission_.kind == GateVerdict::Kind::refuse) {
            const auto& error = login_admission_.error;
            protocol_.end(error.sqlstate, error.message, error.detail, error.hint);
            return false;  // its audit line is written before the FATAL (run)
        }
        if (login_admission_.write_audit)  // audit_only: the session goes on, the line is written beside it
            asio::co_spawn(client_.get_executor(),
                           [self = shared_from_this()] { return self->settle_audit_elsewhere(self->login_admission_); },
                           asio::detached);
    }
    // max_buffered_size is shared per login: whose messages and result rows this session's hold.
    // (A client that pipelines a long message behind a statement whose masked rows wait for that
    // message's share holds both until buffered_message_timeout: its own session's doing.)
    const auto login = context_.identity.empty() ? "role " + context_.user : "identity " + context_.identity;
    from_client_.buffer.set_login(login);
    from_server_.buffer.set_login(login);
    first_ready_signal_.cancel();
    login_timer_.cancel();  // the login's watch ends
    return true;
}

void Session::evict_login() {
    if (protocol_.logged_in() || protocol_.ending()) return;
    if (const auto more = unauthenticated_log_budget().take())
        spdlog::info("session {}: login from {} ended: its rule's max_connections are taken, and its address had "
                     "the most logins in progress{}",
                     context_.session_id, context_.client_address, *more);
    end_session(sqlstate::too_many_connections,
                "pgrail: too many connections for this login's rule are logging in at once; this one gave way "
                "(try again)");
    if (pumping_) close_server_and_wake_pumps();
}

void Session::server_answered() {
    if (waiting_for_server_) ready_signal_.cancel();
    if (directory_entry_ && !protocol_.statement_running())
        directory_entry_->on_ready(protocol_.transaction_status());  // directory
}

void Session::cancel_statement() {
    const auto key = protocol_.upstream_key();
    if (!key) return;
    asio::co_spawn(client_.get_executor(), [self = shared_from_this(), key = *key] { return self->send_cancel(key); },
                   asio::detached);
}

void Session::audit_result(ResultEvent event) {
    asio::post(shared_.audit_pool, [gate = shared_.gate, context = context_, event = std::move(event)] {
        if (!gate->audit_result_event(context, event))
            spdlog::error("session {}: the audit line of a backstop masking could not be written", context.session_id);
    });
}

awaitable<void> Session::watch_login() {
    auto self = shared_from_this();
    const auto login_deadline = started_ + startup_timeout;
    while (!login_watch_done_ && !protocol_.logged_in()) {
        login_timer_.expires_at(std::min(server_turn_deadline_, login_deadline));
        (void)co_await login_timer_.async_wait(use_tuple);
        if (login_watch_done_ || protocol_.logged_in() || protocol_.ending()) co_return;
        const auto now = std::chrono::steady_clock::now();
        const bool server_late = now >= server_turn_deadline_;
        if (!server_late && now < login_deadline) continue;  // woken to re-arm
        const auto& config = shared_.config;
        const auto where = upstream_address(config);
        metrics().count_timeout(server_late ? Timeout::upstream_login : Timeout::login);  // metrics
        if (server_late) {
            spdlog::error("session {}: upstream {} did not answer within {} ms during the login of user={}",
                          context_.session_id, where, config.connect_timeout_ms, context_.user);
            end_session(sqlstate::connection_failure,
                        fmt::format("pgrail: the database server at {} did not answer the login within {} ms "
                                    "(upstream.connect_timeout_ms)",
                                    where, config.connect_timeout_ms));
        } else {
            spdlog::warn("session {}: login of user={} not complete after {} s: ending it", context_.session_id,
                         context_.user, startup_timeout.count());
            end_session(sqlstate::query_canceled,
                        fmt::format("pgrail: canceling authentication due to timeout (the login did not "
                                    "complete within {} s)",
                                    startup_timeout.count()));
        }
        if (protocol_.server_sent_fatal()) protocol_.forget_ending();  // the server said why already
        close_server_and_wake_pumps();
        co_return;
    }
}

bool Session::at_rest() {
    if (!(pumping_ && protocol_.at_rest() && !inband_abandoned_ && !server_write_pending_ &&
          from_client_.passthrough_remaining == 0 && from_client_.buffer.empty() &&
          from_server_.passthrough_remaining == 0))
        return false;
    // Nor has the client sent something pgrail has yet to read (a next query is served first).
    char next = 0;
    return client_.tls_pending() == 0 &&
           ::recv(client_.socket().native_handle(), &next, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
}

void Session::request_shutdown(ShutdownMode mode) {
    if (mode <= shutdown_) return;
    shutdown_ = mode;
    pace_timer_.cancel();  // a paced refusal is answered now: pgrail is going
    if (!pumping_) {
        // Before the server heard of the session: a graceful shutdown lets the client finish its
        // startup packet (it then hears 57P03); an immediate one stops waiting for it. After the
        // pumps: only the farewell is left, which an immediate shutdown does not wait for.
        if (mode == ShutdownMode::immediate) {
            error_code ignored;
            client_.socket().cancel(ignored);
            server_.socket().cancel(ignored);
        }
        return;
    }
    if (ended_for_shutdown_) return;
    if (!protocol_.logged_in() || at_rest()) {
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
    const bool logged_in = protocol_.logged_in();
    if (logged_in && !at_rest()) cut_ = true;
    if (cut_) ++shared_.sessions_cut;
    spdlog::info("session {}: {} for the shutdown", context_.session_id,
                 !logged_in ? "login ended" : cut_ ? "cut inside a transaction or statement" : "ended at rest");
    end_session(sqlstate::admin_shutdown, "terminating connection due to administrator command");
    close_server_and_wake_pumps();
}

void Session::close_server_and_wake_pumps() {
    if (protocol_.logged_in() && protocol_.statement_running()) {
        // A backend busy with a statement would not notice its closed connection until the
        // statement ends: cancel it (its transaction then rolls back as the connection is gone).
        cancel_statement();
    } else if (protocol_.logged_in() && !server_write_pending_ && from_client_.passthrough_remaining == 0) {
        // Between messages: a Terminate ends the backend as a client's would (in a transaction
        // block, PostgreSQL rolls it back). A few bytes on a non-blocking socket (TLS: none).
        error_code ignored;
        server_.try_write(asio::buffer(protocol::terminate_message), ignored);
    }
    server_closed_by_pgrail_ = true;
    error_code ignored;
    server_.shutdown();
    server_.socket().cancel(ignored);
    client_.socket().cancel(ignored);
    first_ready_signal_.cancel();
    ready_signal_.cancel();
}

void Session::received(Inbound& in, std::size_t n, bool filled) {
    in.buffer.commit(n);
    in.bytes += n;
    in.last_read_filled = filled;
    auto& counter = &in == &from_client_ ? metrics().bytes_from_clients : metrics().bytes_from_server;
    counter.add(n);
    if (directory_entry_) directory_entry_->add_bytes(&in == &from_client_, n);  // directory
}

awaitable<error_code> Session::read_more(Inbound& in) {
    // Reads, never waits for readiness (Asio re-arms epoll with an epoll_ctl for every wait); a
    // read after one that emptied the socket waits without a failed recv (drained_receive.hpp).
    if (in.buffer.empty() && (!in.last_read_filled || in.buffer.large())) {
        // Probably idle: give the pooled buffer back and wait by reading into the doorbell.
        // (A large buffer, held for one long message, never waits: the budget wants it back.)
        in.buffer.release();
        error_code ec;
        std::size_t n = 0;
        if (in.socket.receives_plainly()) {  // (awaited without a coroutine frame of its own)
            auto receive = in.socket.socket().async_read_some(asio::buffer(in.doorbell), deferred_tuple);
            std::tie(ec, n) = co_await std::move(receive);
        } else {
            std::tie(ec, n) = co_await in.socket.async_read_some(asio::buffer(in.doorbell), use_tuple);
        }
        if (ec) co_return ec;
        const std::size_t total = std::max(in.needed, n);
        if (!in.buffer.prepare(total)) {
            const bool room = co_await make_room(in, total);
            if (!room) co_return asio::error::operation_aborted;
        }
        std::memcpy(in.buffer.write_position(), in.doorbell.data(), n);
        received(in, n, n == in.doorbell.size());
        co_return ec;
    }
    if (!in.buffer.prepare(in.needed)) {
        const bool room = co_await make_room(in, in.needed);
        if (!room) co_return asio::error::operation_aborted;
    }
    const auto space = in.buffer.write_space();
    const auto into = asio::buffer(in.buffer.write_position(), space);
    error_code ec;
    std::size_t n = 0;
    if (!in.buffer.holds_budget() && in.socket.receives_plainly()) {
        auto receive = in.socket.socket().async_read_some(into, deferred_tuple);
        std::tie(ec, n) = co_await std::move(receive);
    } else if (!in.buffer.holds_budget()) {
        std::tie(ec, n) = co_await in.socket.async_read_some(into, use_tuple);
    } else {
        // Budget that others may wait for is held for this message: its client must keep sending,
        // and at a pace: no read waits longer than buffered_message_timeout, and the whole message
        // may take that long and a second per MiB begun more (a byte every few seconds would
        // otherwise hold the budget for ever, and a few such clients all of it).
        const auto now = std::chrono::steady_clock::now();
        const std::uint64_t message_start = in.bytes - in.buffer.pending().size();
        if (message_start != in.held_message_start) {
            in.held_message_start = message_start;
            in.held_since = now;
        }
        const auto timeout = buffered_message_timeout();
        const auto whole_deadline = in.held_since + timeout + std::chrono::seconds((in.needed >> 20) + 1);
        const auto stall_after = std::min<std::chrono::steady_clock::duration>(timeout, whole_deadline - now);
        asio::steady_timer stall(client_.get_executor(), stall_after);
        auto result = co_await (in.socket.async_read_some(into, use_tuple) || stall.async_wait(use_tuple));
        if (result.index() == 1) {
            metrics().count_timeout(Timeout::buffered_message);  // metrics
            const auto received = in.buffer.pending().size();
            const auto taken =
                std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - in.held_since);
            const char* whose = &in == &from_server_ ? "the server's message" : "a message";
            end_session(sqlstate::protocol_violation,
                        stall_after < timeout
                            ? fmt::format("pgrail: {} of {} bytes came too slowly: {} bytes received in {} ms", whose,
                                          in.needed, received, taken.count())
                            : fmt::format("pgrail: {} of {} bytes stalled: {} bytes received, none for {} ms", whose,
                                          in.needed, received, timeout.count()));
            co_return asio::error::timed_out;
        }
        std::tie(ec, n) = std::get<0>(result);
    }
    if (ec) co_return ec;
    received(in, n, n == space);
    co_return ec;
}

// Room in the buffer for `total` bytes. A message longer than the standard buffer waits until
// the budget shared by all sessions can hold it (it always can once the others are done:
// max_buffered_size > max_message_size), at most buffered_message_timeout: then the session
// ends with out_of_memory, as no wait may last forever. False when the session must end.
awaitable<bool> Session::make_room(Inbound& in, std::size_t total) {
    if (in.buffer.prepare(total)) co_return true;
    const auto& budget = shared_.held_messages;
    spdlog::warn("session {}: a message of {} bytes waits for buffer space ({} of max_buffered_size {} bytes held)",
                 context_.session_id, total, budget.used(), budget.limit());
    const auto timeout = buffered_message_timeout();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    asio::steady_timer retry(client_.get_executor());
    while (!in.buffer.prepare(total)) {
        if (std::chrono::steady_clock::now() > deadline) {
            metrics().count_timeout(Timeout::buffer_wait);  // metrics
            end_session(sqlstate::out_of_memory,
                        fmt::format("pgrail: out of buffer space: a message of {} bytes waited {} ms for "
                                    "max_buffered_size ({} bytes, all sessions together)",
                                    total, timeout.count(), budget.limit()));
            co_return false;
        }
        retry.expires_after(std::chrono::milliseconds(10));
        if (auto [ec] = co_await retry.async_wait(use_tuple); ec) co_return false;
    }
    co_return true;
}

bool Session::write_now(Leg& socket, Outbound& out, error_code& ec) {
    if (out.empty()) return true;
    // Most writes fit in the socket buffer: tried once without suspending; the rest waits for
    // the peer to read (backpressure, write_out).
    const auto written = socket.try_write(out.pieces(), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
        ec.clear();
        return false;
    }
    if (!ec && written < asio::buffer_size(out.pieces())) {
        out.drop_front(written);
        return false;
    }
    if (ec && &socket == &client_) client_write_cut_ = true;
    out.clear();
    return true;
}

awaitable<error_code> Session::write_out(Leg& socket, Outbound& out) {
    error_code ec;
    if (write_now(socket, out, ec)) co_return ec;
    ec = co_await write_rest(socket, out);
    co_return ec;
}

awaitable<error_code> Session::write_rest(Leg& socket, Outbound& out) {
    error_code ec;
    const bool to_server = &socket == &server_;
    if (to_server) server_write_pending_ = true;
    const std::vector<asio::const_buffer> rest = out.pieces();  // (the write's own: it outlives a suspension)
    std::tie(ec, std::ignore) = co_await socket.async_write(rest, use_tuple);
    if (to_server) server_write_pending_ = false;
    if (ec && &socket == &client_) client_write_cut_ = true;
    out.clear();
    co_return ec;
}

awaitable<void> Session::send_to_client(std::string bytes) {
    // pgrail's own last words: a client that does not read them within this time goes
    // without them (its session must not stay open on its account).
    asio::steady_timer deadline(client_.get_executor(), farewell_timeout);
    co_await (client_.async_write(asio::buffer(bytes), use_tuple) || deadline.async_wait(use_tuple));
}

awaitable<void> Session::send_fatal(std::string sqlstate, std::string message, std::string detail, std::string hint) {
    std::string bytes;
    protocol::encode_error_response(bytes,
                                    {"FATAL", std::move(sqlstate), std::move(message), std::move(detail), std::move(hint)});
    co_await send_to_client(std::move(bytes));
}

awaitable<void> Session::client_to_server() {
    auto& in = from_client_;
    const auto max_size = shared_.config.max_message_size;
    const auto inspect = [this](char tag, std::size_t size) { return protocol_.client_inspects(tag, size); };
    const auto on_header = [this](char tag) { protocol_.on_client_header(tag); };
    const auto hold = [this] { return protocol_.holding_client(); };
    while (true) {
        // A settle marker that came due while this pump wrote (the server's could not send it)
        // goes before it waits for the client, who may wait for its answers.
        if (protocol_.settle_marker_due() && in.passthrough_remaining == 0 && !in.header_seen) {
            protocol_.send_settle_marker(to_server_);
            if (co_await write_out(server_, to_server_)) co_return;
        }
        client_reading_ = true;  // (parked between messages, or inside one)
        const auto read_ec = co_await read_more(in);
        client_reading_ = false;
        if (read_ec) {
            co_await client_gone(in);
            co_return;
        }
        while (true) {
            if (!protocol_.logged_in()) {
                if (!co_await hold_until_authenticated(in)) co_return;
            }
            // pgrail keeps a little for each batch the server owes a ReadyForQuery: past this many,
            // it reads no more of the client until the server has answered some (a client may
            // pipeline Syncs without end, as PostgreSQL lets it).
            constexpr std::uint64_t max_unanswered_batches = 4096;
            if (protocol_.requested() - protocol_.answered() >= max_unanswered_batches) {
                const std::uint64_t enough = protocol_.requested() - max_unanswered_batches + 1;
                if (!co_await wait_for_server(enough)) {
                    if (client_hung_up()) co_await client_gone(in);
                    co_return;
                }
            }
            // A reload that changed how this session is decided ends it if it holds what was
            // checked under the old rule (a statement, a portal, a cursor, a deferred pgrail
            // command, a setting, a temporary object, a copy under way), whose Bind, Execute,
            // EXECUTE, FETCH or CopyData is not checked again. (Before the frame is read: CopyData
            // streams through unread.)
            if (protocol_.logged_in() && shared_.gate->rule_changed(context_, policy_hold_)) [[unlikely]] {
                spdlog::info("session {}: the reloaded policy decides this session's statements otherwise: the "
                             "session ends",
                             context_.session_id);
                // Its next message is not run: audited as a refusal is, before the client hears it.
                GateVerdict audit;
                audit.write_audit = [gate = shared_.gate, context = context_] {
                    return gate->audit_auth_event(context, "session_ended",
                                                  "the policy was reloaded and decides this session's statements "
                                                  "otherwise");
                };
                co_await settle_audit_elsewhere(audit);
                end_session(sqlstate::admin_shutdown,
                            "pgrail: the policy was reloaded and decides this session's statements otherwise now; "
                            "connect again to continue under it (a transaction still open is rolled back; "
                            "statements whose answers did not arrive may have run)");
                co_await write_out(server_, to_server_);  // what came before this frame
                co_return;
            }
            const auto next = next_frame(in, to_server_, max_size, inspect, on_header, hold);
            if (next.kind == NextFrame::Kind::held) {
                if (!co_await settle_copy()) {
                    if (client_hung_up()) co_await client_gone(in);
                    co_return;
                }
                continue;
            }
            if (next.kind == NextFrame::Kind::need_more) break;
            if (next.kind == NextFrame::Kind::invalid) {
                spdlog::warn("session {}: refused message from {}: {} (header {})", context_.session_id,
                             context_.client_address, next.header.reason,
                             protocol::hex_dump(in.buffer.pending().substr(0, 5)));
                end_session(sqlstate::protocol_violation, invalid_length(next.header.header));
                // Nothing of the bad frame is forwarded; what came before it still is.
                co_await write_out(server_, to_server_);
                co_return;
            }
            const auto step = protocol_.on_client_frame(next.header.header.tag, next.frame, to_server_);
            switch (step.kind) {
                case ClientStep::Kind::done:
                case ClientStep::Kind::end:
                    break;
                case ClientStep::Kind::check_function_call: {
                    GateVerdict verdict = shared_.gate->check_function_call(context_, step.function_oid);
                    // (Forwarded, under audit_only: a function's effect, a setting among them, unread.)
                    if (verdict.kind == GateVerdict::Kind::forward) context_.holds_checked_work = true;
                    bool client_stays = true;
                    if (needs_settling(verdict)) client_stays = co_await settle_verdict(verdict);
                    if (!client_stays) {
                        co_await client_gone(in);
                        co_return;
                    }
                    protocol_.apply(verdict, step.statement, to_server_);
                    break;
                }
                case ClientStep::Kind::check_lock_keys: {
                    bool refused = false;
                    for (const std::string& key : step.lock_keys) {
                        GateVerdict verdict = shared_.gate->check_bound_lock_key(context_, key);
                        bool client_stays = true;
                        if (needs_settling(verdict)) client_stays = co_await settle_verdict(verdict);
                        if (!client_stays) {
                            co_await client_gone(in);
                            co_return;
                        }
                        if (verdict.kind != GateVerdict::Kind::refuse) continue;
                        protocol_.refuse_bind(verdict.error, to_server_);
                        refused = true;
                        break;
                    }
                    if (refused) break;
                    if (step.deferred.calls.empty()) {  // (a DeferredStatement has a call at least)
                        to_server_.forward(step.statement.frame);
                        break;
                    }
                    co_await on_bind(step, to_server_);
                    break;
                }
                case ClientStep::Kind::bind_deferred:
                    co_await on_bind(step, to_server_);
                    break;
                case ClientStep::Kind::check_statement: {
                    // Active from here: a text waiting for an analysis thread is this session's
                    // work too (review 101: pgrail.sessions() showed such sessions idle).
                    if (directory_entry_) directory_entry_->on_statement(step.statement.sql, context_.lexing);
                    // Most texts are decided here, without a coroutine of their own.
                    auto decided = shared_.gate->check_here(context_, step.statement.sql);
                    if (!decided) {
                        GateVerdict elsewhere = co_await analyse_elsewhere(step.statement);
                        decided.emplace(std::move(elsewhere));
                    }
                    GateVerdict& verdict = *decided;
                    if (!verdict.bound_lock_keys.empty() &&
                        !integer_parameters(step.statement.parse_types, verdict.bound_lock_keys)) {
                        // The server would read the key from a value of another type (numeric,
                        // text, bit): pgrail reads Binds as int8in and int8recv do (review 95).
                        GateVerdict typed = shared_.gate->check_bound_lock_key(context_, "*", "Parse");
                        if (typed.kind == GateVerdict::Kind::refuse) verdict = std::move(typed);
                    }
                    bool client_stays = true;
                    if (needs_settling(verdict)) client_stays = co_await settle_verdict(verdict);
                    if (!client_stays) {
                        co_await client_gone(in);
                        co_return;
                    }
                    protocol_.apply(verdict, step.statement, to_server_);
                    if (verdict.kind != GateVerdict::Kind::intercept) break;
                    // What came before goes first, so the answer keeps its place in the stream.
                    if (co_await write_out(server_, to_server_)) co_return;
                    co_await run_intercept(verdict, step.statement, to_server_);
                    break;
                }
            }
            if (protocol_.ending()) {
                co_await write_out(server_, to_server_);
                co_return;
            }
            in.consume_frame(next.frame.size());
        }
        error_code write_ec;
        if (!write_now(server_, to_server_, write_ec)) write_ec = co_await write_rest(server_, to_server_);
        if (write_ec) co_return;
    }
}

// The client went away without Terminate. A backend busy with a query would not notice a closed
// socket until the query ends: cancel it first, then end it. (Not when pgrail itself closed the
// server's connection: it did that already.)
awaitable<void> Session::client_gone(Inbound& in) {
    if (protocol_.client_terminated() || server_closed_by_pgrail_) co_return;
    if (const auto key = protocol_.upstream_key(); key && protocol_.statement_running()) co_await send_cancel(*key);
    // Inside a half-forwarded frame a Terminate would be read as its payload, and beside a write
    // of the server's pump (a settle marker) it could interleave with it: the socket's close ends
    // that backend anyway.
    if (in.passthrough_remaining == 0 && !server_write_pending_)
        co_await server_.async_write(asio::buffer(protocol::terminate_message), use_tuple);
}

// The client closed its side (or reset): gone even with messages of its own still unread, which
// a read would have to take first (POLLRDHUP).
bool Session::client_hung_up() {
    pollfd peer{client_.socket().native_handle(), POLLRDHUP, 0};
    return ::poll(&peer, 1, 0) > 0 && (peer.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

// pgrail reads no SQL from a client the server has not authenticated yet: a frame other than
// the authentication exchange waits, unread, at the front of the buffer for the first
// ReadyForQuery, as PostgreSQL would read it only then. False when the pump must stop.
awaitable<bool> Session::hold_until_authenticated(Inbound& in) {
    const auto header = protocol::read_header(in.buffer.pending(), shared_.config.max_message_size);
    if (header.status != protocol::FrameStatus::complete) co_return true;  // next_frame's to judge
    // (auth.mode pgrail: the client's exchange was with pgrail, and is over.)
    if (!allowed_before_authentication(header.header.tag) ||
        (login_verifier_ && header.header.tag != protocol::frontend_tag::terminate)) {
        if (co_await write_out(server_, to_server_)) co_return false;
        // (The ReadyForQuery may have come while that write was under way.)
        if (!protocol_.logged_in()) co_await first_ready_signal_.async_wait(use_tuple);
        co_return protocol_.logged_in();
    }
    if (header.header.length > max_authentication_length) {
        end_session(sqlstate::protocol_violation, invalid_length(header.header));
        co_await write_out(server_, to_server_);
        co_return false;
    }
    co_return true;
}

awaitable<void> Session::settle_audit_elsewhere(GateVerdict& verdict) {
    auto write = [write_audit = std::move(verdict.write_audit)] { return write_audit(); };
    const bool written = co_await run_on_pool<bool>(shared_.audit_pool, write);
    settle_audit(verdict, written);
}

// A verdict's audit line written, and a refusal paced; false when the client left meanwhile.
awaitable<bool> Session::settle_verdict(GateVerdict& verdict) {
    if (verdict.write_audit) co_await settle_audit_elsewhere(verdict);
    if (verdict.kind != GateVerdict::Kind::refuse) co_return true;
    co_return co_await pace_refusal(verdict.audit_bytes);
}

// A refusal beyond its login's budget is answered later (refusal_pacer.hpp): nothing more of the
// client's is read meanwhile, so neither this session nor its login's others write the audit
// faster than the budget's rate, whatever they send. The client is not read while it waits: its
// departure is looked for each second instead (false: it left).
awaitable<bool> Session::pace_refusal(std::size_t audit_bytes) {
    if (audit_bytes == 0) co_return true;  // no line was written (the audit failed closed)
    const auto wait = shared_.refusal_pacer.reserve(pool_owner(), audit_bytes);
    if (wait <= std::chrono::steady_clock::duration::zero()) co_return true;
    metrics().refusals_paced.fetch_add(1, std::memory_order_relaxed);
    static AuditBudget log_budget(1.0, 10.0);
    if (const auto left_out = log_budget.take())
        spdlog::warn("session {}: {} is refused faster than audit.refusal_bytes_per_second: answered after {} ms{}",
                     context_.session_id, pool_owner(),
                     std::chrono::duration_cast<std::chrono::milliseconds>(wait).count(),
                     *left_out > 0 ? fmt::format(" ({} more paced refusals not logged before it)", *left_out)
                                   : std::string());
    co_return co_await wait_paced(wait);
}

// Waits `wait` (a pacer's), looking for the client's departure each second: false when it left.
awaitable<bool> Session::wait_paced(std::chrono::steady_clock::duration wait) {
    const auto until = std::chrono::steady_clock::now() + wait;
    while (shutdown_ == ShutdownMode::none && std::chrono::steady_clock::now() < until) {
        pace_timer_.expires_at(std::min(until, std::chrono::steady_clock::now() + std::chrono::seconds(1)));
        co_await pace_timer_.async_wait(use_tuple);
        if (client_hung_up()) co_return false;
    }
    co_return true;
}

// Whose turn a job of this session takes on a shared pool (FairPool): its login's.
std::string Session::pool_owner() const {
    return context_.identity.empty() ? "role " + context_.user : "identity " + context_.identity;
}

// Most texts are checked on the session's thread (client_to_server); a long new one on the
// analysis pool, so this thread's other sessions keep moving, its audit line written there too.
// An audit line may wait for an fsync: written on the audit pool (settle_audit_elsewhere).
awaitable<GateVerdict> Session::analyse_elsewhere(const ClientStatement& statement) {
    auto analyse = [gate = shared_.gate, context = context_, sql = std::string(statement.sql)] {
        return gate->check(context, sql);
    };
    // Each login (identity, else role) takes its turn: one agent's many connections cannot queue
    // the pool's threads away from everyone else.
    const std::string owner = pool_owner();  // named: GCC 12 destroys a co_await expression's temporaries twice
    metrics().pool_checks.fetch_add(1, std::memory_order_relaxed);
    co_return co_await run_on_pool<GateVerdict>(shared_.analysis_pool, owner, analyse);
}

// In-band commands run on the blocking pool; their answers reach the client through the server,
// as relations of the client's own statement (inband_relations.hpp), so simple and extended
// protocol, Describe, pipelining and the session's transaction are PostgreSQL's own.
awaitable<void> Session::run_intercept(const GateVerdict& verdict, const ClientStatement& statement,
                                       Outbound& out) {
    std::optional<protocol::ErrorMessage> error;
    if (statement.tag == protocol::frontend_tag::parse) {
        error = protocol_.defer(verdict, statement, out);
    } else {
        // A Query: its own ReadyForQuery is counted already; the server's answers to everything
        // before it tell the transaction status the command meets.
        std::vector<migrations::ResultTable> answers;
        error = co_await refuse_in_transaction(verdict.calls, protocol_.requested() - 1);
        if (!error) error = co_await run_commands(verdict.calls, answers);
        if (!error) protocol_.substitute_query(text_with_answers(statement.sql, verdict.calls, answers), out);
    }
    if (error) protocol_.refuse(*error, statement, out);
}

awaitable<std::optional<protocol::ErrorMessage>> Session::run_commands(const std::vector<InbandCall>& calls,
                                                                       std::vector<migrations::ResultTable>& answers) {
    // The admin view (sessions, stats, refusals) is answered from pgrail's memory: it waits for its
    // audit line only, as a refusal does, never behind proposals' proofs and migrations that hold
    // the blocking pool for minutes (the operator's view of a pgrail they load).
    const bool admin_only = std::all_of(calls.begin(), calls.end(),
                                        [](const InbandCall& call) { return sql::is_admin_command(call.command); });
    if (!admin_only) {
        // Paced (ServerShared::command_pacer); a wait of more than 5 s is refused instead, taking
        // nothing, so that a login's sessions that leave while they wait pile no debt on the others.
        const auto wait = shared_.command_pacer.reserve_within(pool_owner(), calls.size(), std::chrono::seconds(5));
        if (!wait)
            co_return protocol::ErrorMessage{"ERROR", sqlstate::configuration_limit_exceeded,
                                             "pgrail: this login runs pgrail commands faster than 10 a second; try "
                                             "again in a few seconds",
                                             {},
                                             "Each pgrail command that reads the database opens a server connection: "
                                             "poll pgrail.status() and the like a few times a minute, not in a loop."};
        bool stays = true;
        if (*wait > std::chrono::steady_clock::duration::zero()) stays = co_await wait_paced(*wait);
        if (!stays)
            co_return protocol::ErrorMessage{"ERROR", sqlstate::query_canceled,
                                             "pgrail: the client left; the pgrail commands were not run", {}, {}};
    }
    // If the client leaves while the commands run, a migration it asked for must not apply
    // afterwards: a watcher raises the flag when the client's socket reads as closed.
    auto abandoned = std::make_shared<std::atomic<bool>>(false);
    auto finished = std::make_shared<std::atomic<bool>>(false);
    asio::co_spawn(client_.get_executor(), watch_for_departure(abandoned, finished), asio::detached);
    const auto client_key = protocol_.client_key();
    if (client_key) shared_.cancel_registry.set_abandon_flag(*client_key, abandoned);
    inband_abandoned_ = abandoned;  // an immediate shutdown abandons it too
    auto work = [inband = shared_.inband, context = context_, calls, abandoned] {
        return run_calls(*inband, context, calls, abandoned);
    };
    InbandAnswers result;
    if (admin_only) {
        result = co_await run_on_pool<InbandAnswers>(shared_.audit_pool, work);
    } else {
        const std::string owner = pool_owner();  // named: GCC 12 destroys a co_await expression's temporaries twice
        result = co_await run_on_pool<InbandAnswers>(shared_.blocking_pool, owner, work);
    }
    finished->store(true);  // the watcher's wait ends with the client's next message, or its close
    inband_abandoned_.reset();
    // Its answer is complete with this ReadyForQuery (a Parse's or Bind's comes with the next Sync).
    inband_answer_ready_ = protocol_.requested() + (protocol_.unsynced() ? 1 : 0);
    if (result.error && shutdown_ == ShutdownMode::immediate && abandoned->load()) {
        if (!result.error->detail.empty()) result.error->detail += '\n';
        result.error->detail += "pgrail is shutting down (SIGINT, or shutdown_timeout reached) and abandoned the run";
    }
    if (client_key) shared_.cancel_registry.set_abandon_flag(*client_key, {});
    answers = std::move(result.tables);
    co_return std::move(result.error);
}

awaitable<std::optional<protocol::ErrorMessage>> Session::refuse_in_transaction(const std::vector<InbandCall>& calls,
                                                                                std::uint64_t answered) {
    const InbandCall* recording = recording_call(calls);
    if (!recording) co_return std::nullopt;
    const InbandCall* changing = changing_call(calls);  // a migration: outside any transaction block
    std::optional<protocol::ErrorMessage> refusal;
    if (changing && protocol_.executed_since_sync()) {
        refusal = outside_transaction_error(*changing, true);
    } else if (!co_await wait_for_server(answered)) {
        co_return protocol::ErrorMessage{
            "ERROR", sqlstate::admin_shutdown, "pgrail: the session ended before the command ran", {}, {}};
    } else if (changing && protocol_.transaction_status() != 'I') {
        refusal = outside_transaction_error(*changing, false);
    } else if (protocol_.transaction_status() == 'E') {
        // PostgreSQL would run nothing here: neither does pgrail (and says what the server says).
        refusal = failed_transaction_error();
        changing = recording;
    }
    if (!refusal) co_return std::nullopt;
    // On record before the client hears it, as every refusal.
    GateVerdict audit;
    audit.write_audit = [gate = shared_.gate, context = context_, call = *changing, error = *refusal] {
        return gate->audit_command_refused(context, call, error);
    };
    co_await settle_audit_elsewhere(audit);
    if (audit.kind == GateVerdict::Kind::refuse) co_return std::move(audit.error);  // the audit failed: 58030
    co_return refusal;
}

awaitable<bool> Session::wait_for_server(std::uint64_t count, bool probe) {
    std::function<bool()> done = [this, count, probe] {
        return protocol_.answered() >= count && (!probe || protocol_.probe() != Probe::waiting);
    };
    const bool waited = co_await wait_until(std::move(done));  // (alone: GCC 12 and temporaries in co_await)
    co_return waited;
}

awaitable<bool> Session::settle_copy() {
    while (protocol_.holding_client()) {
        if (protocol_.settle_marker_due()) protocol_.send_settle_marker(to_server_);
        std::function<bool()> settled = [this] { return !protocol_.holding_client() || protocol_.settle_marker_due(); };
        // A client that sent CopyDone, Sync and Terminate and closed is not gone yet: what it sent
        // waits only for the server's answer (without the Sync, its copy would not commit).
        const bool waited = co_await wait_until(std::move(settled), false);
        if (!waited) co_return false;
    }
    co_return true;
}

awaitable<void> Session::send_settle_marker_now() {
    // The client's pump sends it before the client's next message; one parked between messages (a
    // client that waits for the answers PostgreSQL would have sent at once) would wait for ever.
    const auto& in = from_client_;
    if (!protocol_.settle_marker_due() || !client_reading_ || server_write_pending_ || !to_server_.empty() ||
        in.passthrough_remaining != 0 || in.header_seen)
        co_return;
    Outbound marker;  // (the client's pump, held by the protocol core from now on, writes nothing meanwhile)
    protocol_.send_settle_marker(marker);
    (void)co_await write_out(server_, marker);
}

awaitable<bool> Session::wait_until(std::function<bool()> done, bool notice_client_gone) {
    if (done()) co_return true;
    // What came before must reach the server for it to answer.
    if (co_await write_out(server_, to_server_)) co_return false;
    // The client is not read meanwhile: its departure is looked for each second instead.
    while (!done()) {
        if (protocol_.ending() || server_closed_by_pgrail_ || (notice_client_gone && client_hung_up())) co_return false;
        waiting_for_server_ = true;
        ready_signal_.expires_after(std::chrono::seconds(1));
        (void)co_await ready_signal_.async_wait(use_tuple);
        waiting_for_server_ = false;
        const auto state = co_await asio::this_coro::cancellation_state;
        if (state.cancelled() != asio::cancellation_type::none) co_return false;
    }
    co_return true;
}

awaitable<bool> Session::probe_statement(std::string_view name, Outbound& out) {
    // (The caller waited for the batches before this one: an error now is this batch's.)
    if (protocol_.batch_failed()) co_return false;
    protocol_.send_probe(name, out);
    const bool waited = co_await wait_for_server(0, true);
    const bool answered = waited && protocol_.probe() == Probe::answered;
    protocol_.end_probe();
    co_return answered;
}

awaitable<void> Session::on_bind(const ClientStep& step, Outbound& out) {
    const auto& calls = step.deferred.calls;
    // The Bind's Sync is not counted yet: everything before it is.
    auto error = co_await refuse_in_transaction(calls, protocol_.requested());
    // A command that changes something runs only for a statement the server holds, with
    // nothing before it in the batch failed (a Parse the server refused, a statement
    // DEALLOCATEd): otherwise the server skips this Bind, and the command must not run.
    // (The co_await stands alone: GCC 12 mishandles one inside a larger expression.)
    bool server_holds_it = true;
    if (!error && recording_call(calls)) server_holds_it = co_await probe_statement(step.bind->statement, out);
    if (!server_holds_it) {
        out.forward(step.statement.frame);
        co_return;
    }
    std::vector<migrations::ResultTable> answers;
    if (!error) error = co_await run_commands(calls, answers);
    if (error) {
        protocol_.refuse_bind(*error, out);
    } else {
        out.inject(bind_with_answers(*step.bind, answers));
    }
}

// Waits while an in-band command runs: the client's socket becoming readable with nothing to
// read (it closed or reset, or said close_notify over TLS), or with a Terminate (libpq's
// PQfinish) means the command's answer is no longer wanted. Other pipelined data ends the watch
// (it stays unread for the pump; a departure behind it goes unseen).
awaitable<void> Session::watch_for_departure(std::shared_ptr<std::atomic<bool>> abandoned,
                                             std::shared_ptr<std::atomic<bool>> finished) {
    auto self = shared_from_this();
    std::array<char, 5> head{};
    std::size_t peeked = 0;
    error_code ec;
    while (!ec && peeked < head.size()) {
        auto [wait_ec] = co_await client_.socket().async_wait(Stream::wait_read, use_tuple);
        // Finished: the pump reads again (a peek now could take its bytes from under it).
        if (wait_ec || finished->load()) co_return;
        peeked = client_.peek(head, ec);
        if (peeked > 0 && peeked < head.size()) co_return;  // a message shorter than a header: not Terminate
    }
    if (ec || std::string_view(head.data(), head.size()) == protocol::terminate_message) {
        spdlog::info("session {}: the client left while an in-band command ran: abandoning it", context_.session_id);
        abandoned->store(true);
    }
}

awaitable<void> Session::server_to_client() {
    auto& in = from_server_;
    // The server is trusted, but its lengths are still bounded: PostgreSQL's own 1 GiB.
    constexpr std::uint32_t max_size = 1u << 30;
    const auto inspect = [this](char tag, std::size_t size) { return protocol_.server_inspects(tag, size); };
    const auto on_header = [this](char tag) { protocol_.on_server_header(tag, to_client_); };
    while (true) {
        if (auto ec = co_await read_more(in)) co_return;
        while (true) {
            const auto next = next_frame(in, to_client_, max_size, inspect, on_header);
            if (protocol_.row_too_long()) {  // not read: the session ends (FATAL 54000)
                protocol_.flush_rows(to_client_);
                co_await write_out(client_, to_client_);
                co_return;
            }
            if (next.kind == NextFrame::Kind::need_more) break;
            if (next.kind == NextFrame::Kind::invalid) {
                spdlog::error("session {}: invalid message from the server: {} (header {})", context_.session_id,
                              next.header.reason, protocol::hex_dump(in.buffer.pending().substr(0, 5)));
                end_session(sqlstate::protocol_violation,
                            fmt::format("pgrail: invalid message from the database server: {}", next.header.reason));
                co_await write_out(client_, to_client_);
                co_return;
            }
            const char tag = next.header.header.tag;
            const auto step = protocol_.on_server_frame(tag, next.frame, to_client_);
            if (step == ServerStep::stop) {
                co_await write_out(client_, to_client_);
                co_return;
            }
            if (step == ServerStep::cut) {
                // Its audit line first (it may wait for an fsync: on the audit pool), then the
                // client hears of it.
                auto write = [gate = shared_.gate, context = context_, event = protocol_.cut_event()] {
                    return gate->audit_result_event(context, event);
                };
                const bool written = co_await run_on_pool<bool>(shared_.audit_pool, write);
                protocol_.finish_cut(tag, next.frame, written, to_client_);
            }
            in.consume_frame(next.frame.size());
            // A registered migration's script run to its end: in the ledger before the client
            // hears that its transaction is over (so its next status or step sees it).
            if (protocol_.migrator_runs().has_committed()) co_await record_migrator_runs();
        }
        protocol_.flush_rows(to_client_);
        if (protocol_.settle_marker_due()) co_await send_settle_marker_now();
        if (from_server_.buffer.holds_budget()) {
            // A row held whole holds budget that others may wait for: its client must take it
            // within buffered_message_timeout and a second per MiB begun (as a message's sender).
            const auto allowed = buffered_message_timeout() +
                                 std::chrono::seconds((asio::buffer_size(to_client_.pieces()) >> 20) + 1);
            asio::steady_timer deadline(client_.get_executor(), allowed);
            auto written = co_await (write_out(client_, to_client_) || deadline.async_wait(use_tuple));
            if (written.index() == 1) {
                metrics().count_timeout(Timeout::buffered_message);  // metrics
                const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(allowed).count();
                spdlog::warn("session {}: the client did not read a result row held whole within {} ms: ending the "
                             "session",
                             context_.session_id, waited);
                client_write_cut_ = true;  // (inside a frame: no farewell after it)
                end_session(sqlstate::out_of_memory,
                            fmt::format("pgrail: a result row held whole was not read within {} ms", waited));
                co_return;
            }
            if (std::get<0>(written)) co_return;
        } else {
            error_code write_ec;
            if (!write_now(client_, to_client_, write_ec)) write_ec = co_await write_rest(client_, to_client_);
            if (write_ec) co_return;
        }
        // Shutting down: the session ends once what it was doing is done and answered.
        if (shutdown_ != ShutdownMode::none && !ended_for_shutdown_ && protocol_.logged_in() &&
            (at_rest() || (shutdown_ == ShutdownMode::immediate && !inband_abandoned_ &&
                           protocol_.answered() >= inband_answer_ready_))) {
            end_for_shutdown();
            co_return;
        }
    }
}

awaitable<void> Session::record_migrator_runs() {
    auto committed = protocol_.migrator_runs().take_committed();
    // Blocking (the ledger, under the migration lock): on the pool, as in-band commands run.
    auto work = [inband = shared_.inband, context = context_, committed = std::move(committed),
                 progress = &migrator_progress_]() mutable {
        inband->record_migrator_commit(context, committed, *progress);
        return true;
    };
    const std::string owner = pool_owner();  // named: GCC 12 destroys a co_await expression's temporaries twice
    (void)co_await run_on_pool<bool>(shared_.blocking_pool, owner, work);
}

}  // namespace pgrail::proxy

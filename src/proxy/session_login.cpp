// auth.mode pgrail: pgrail authenticates the client itself (SCRAM-SHA-256, -PLUS over the client
// leg's TLS) against the identities file, then logs into the server as the identity's role with
// credentials only pgrail holds. The I/O of both exchanges; their protocol logic is src/auth's.
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include "pgrail/auth/scram_client.hpp"
#include "pgrail/auth/scram_server.hpp"
#include "pgrail/protocol/bytes.hpp"
#include "pgrail/protocol/frame.hpp"
#include "pgrail/protocol/sqlstate.hpp"
#include "pgrail/proxy/audit_budget.hpp"
#include "run_on_pool.hpp"
#include "session.hpp"
#include "tls_context.hpp"

// GCC 12 reports Asio's coroutine frame (allocated and freed by awaitable_frame_base's own
// operator new/delete) as a mismatched new/delete for these two long coroutines: a false positive
// of its coroutine lowering, not seen with other compilers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace pgrail::proxy {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using boost::system::error_code;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// The whole login, client's and server's turns, as PostgreSQL's authentication_timeout.
constexpr auto login_timeout = std::chrono::seconds(60);
// A client's SASL message: the SCRAM message plus the mechanism name and length words.
constexpr std::uint32_t max_client_auth_length = auth::max_scram_message_length + 128;
// The server's login messages (an ErrorResponse may carry a long detail).
constexpr std::uint32_t max_server_login_length = 1u << 20;

constexpr std::int32_t auth_ok = 0;
constexpr std::int32_t auth_cleartext = 3;
constexpr std::int32_t auth_md5 = 5;
constexpr std::int32_t auth_sasl_continue = 11;
constexpr std::int32_t auth_sasl_final = 12;

std::string authentication_message(std::int32_t code, std::string_view data) {
    std::string out;
    protocol::MessageWriter(out, protocol::backend_tag::authentication).i32(code).raw(data).finish();
    return out;
}

std::string password_message(std::string_view text) {
    std::string out;
    protocol::MessageWriter(out, protocol::frontend_tag::password).cstring(text).finish();
    return out;
}

std::string sasl_initial_response(std::string_view mechanism, std::string_view data) {
    std::string out;
    protocol::MessageWriter(out, protocol::frontend_tag::password)
        .cstring(mechanism)
        .i32(static_cast<std::int32_t>(data.size()))
        .raw(data)
        .finish();
    return out;
}

std::string sasl_response(std::string_view data) {
    std::string out;
    protocol::MessageWriter(out, protocol::frontend_tag::password).raw(data).finish();
    return out;
}

const char* sqlstate_of(auth::ScramFailure failure) {
    switch (failure) {
        case auth::ScramFailure::protocol_violation:
            return sqlstate::protocol_violation;
        case auth::ScramFailure::feature_not_supported:
            return sqlstate::feature_not_supported;
        default:
            return sqlstate::invalid_password;
    }
}

// The tls-server-end-point of the server leg's certificate, as libpq computes it for -PLUS.
std::string server_end_point(Leg& leg) {
    SSL* ssl = leg.native_tls();
    if (ssl == nullptr) return {};
    X509* certificate = SSL_get1_peer_certificate(ssl);
    if (certificate == nullptr) return {};
    const auto hash = tls_server_end_point(certificate);
    X509_free(certificate);
    return {hash.begin(), hash.end()};
}

}  // namespace

void ServerShared::recheck_identities(const std::shared_ptr<const auth::Identities>& reloaded) {
    std::vector<std::shared_ptr<Session>> live;
    {
        std::lock_guard lock(sessions_mutex);
        for (const auto& weak : sessions)
            if (auto session = weak.lock()) live.push_back(std::move(session));
    }
    for (auto& session : live) {
        auto executor = session->executor();
        asio::post(executor, [session = std::move(session), reloaded] { session->recheck_identity(reloaded); });
    }
}

void Session::recheck_identity(const std::shared_ptr<const auth::Identities>& identities) {
    if (!login_verifier_ || revoked_ || ended_for_shutdown_) return;
    const auto* identity = identities->find(context_.identity);
    std::string why;
    if (identity == nullptr) {
        why = "the identity was removed from the identities file";
    } else if (!(identity->verifier == *login_verifier_)) {
        why = "the identity's password (verifier) changed";
    } else if (identity->role != login_role_) {
        why = "the identity now maps to another role";
    } else {
        return;
    }
    revoked_ = true;
    spdlog::warn("session {}: identity {} revoked by reload ({}): ending the session", context_.session_id,
                 context_.identity, why);
    asio::post(shared_.audit_pool, [gate = shared_.gate, context = context_, why] {
        if (!gate->audit_auth_event(context, "identity_revoked", why))
            spdlog::error("session {}: the audit line of a revoked identity could not be written", context.session_id);
    });
    // A running pgrail.* command (a migration) stops and rolls back, as when its client leaves:
    // the identity that asked for it no longer may.
    if (inband_abandoned_) inband_abandoned_->store(true);
    // 28000, not 57P01: 57P01 tells pools and drivers the server restarts and to reconnect, which
    // would only meet 28P01; the authorization itself is gone.
    end_session(sqlstate::invalid_authorization_specification,
                fmt::format("pgrail: identity \"{}\" is no longer authorized (revoked by reload)", context_.identity));
    if (!pumping_) return;  // the login's own reads end it
    close_server_and_wake_pumps();
}

awaitable<std::optional<std::string>> Session::read_login_frame(Leg& leg, std::uint32_t max_length,
                                                                std::string& error) {
    error.clear();
    asio::steady_timer deadline(client_.get_executor(), started_ + login_timeout);
    std::string frame(protocol::header_size, '\0');
    auto read_header = leg.read_exactly(asio::buffer(frame));
    auto header_result = co_await (std::move(read_header) || deadline.async_wait(use_tuple));
    if (header_result.index() == 1) {
        error = "timeout";
        co_return std::nullopt;
    }
    if (std::get<0>(std::get<0>(header_result))) co_return std::nullopt;
    const auto length = protocol::read_u32(frame.data() + 1);
    if (length < 4 || length > max_length) {
        error = fmt::format("invalid message length {} for message type \"{}\"", length, frame[0]);
        co_return std::nullopt;
    }
    frame.resize(1 + std::size_t{length});
    auto read_body = leg.read_exactly(asio::buffer(frame.data() + protocol::header_size, length - 4));
    auto body_result = co_await (std::move(read_body) || deadline.async_wait(use_tuple));
    if (body_result.index() == 1) {
        error = "timeout";
        co_return std::nullopt;
    }
    if (std::get<0>(std::get<0>(body_result))) co_return std::nullopt;
    (&leg == &client_ ? from_client_ : from_server_).bytes += frame.size();
    co_return frame;
}

awaitable<void> Session::refuse_login(std::string code, std::string message, std::string reason) {
    // Anyone who reaches the port can cause these: logged as a refused startup packet is (a burst,
    // then 10 a second, the count of those left out said with the next line).
    static AuditBudget log_budget(10.0, 100.0);
    if (const auto left_out = log_budget.take())
        spdlog::warn("session {}: login of identity \"{}\" from {} refused: {}{}", context_.session_id, context_.user,
                     context_.client_address, reason,
                     *left_out > 0 ? fmt::format(" ({} more refused logins not logged before it)", *left_out)
                                   : std::string());
    GateVerdict audit;
    audit.write_audit = [gate = shared_.gate, context = context_, reason] {
        return gate->audit_auth_event(context, "login_refused", reason);
    };
    co_await settle_audit_elsewhere(audit);
    co_await send_fatal(std::move(code), std::move(message));
}


awaitable<bool> Session::client_login() {
    const auto identities = shared_.identities->current();
    const std::string name = context_.user;  // the identity's name, as the client sent it as user
    // PostgreSQL's words for every failed password login, whatever the reason.
    const std::string failed = fmt::format("password authentication failed for user \"{}\"", name);
    std::string channel_binding;
    if (protocol_.tls_in_use() && tls_) channel_binding.assign(tls_->end_point.begin(), tls_->end_point.end());
    const auto* identity = name.size() <= auth::max_identity_name_length ? identities->find(name) : nullptr;
    // An unknown name gets a salt of its own (from the whole name: a salt shared with its 63-byte
    // prefix would tell whether that prefix is an identity) and the identities' usual count.
    auto server = identity != nullptr ? auth::ScramServer::for_verifier(identity->verifier, channel_binding)
                                      : auth::ScramServer::mock(name, shared_.identities->mock_secret(),
                                                                channel_binding, identities->usual_iterations);
    std::string request;
    protocol::encode_authentication_sasl(request, server.mechanisms());
    if (auto [ec, n] = co_await client_.async_write(asio::buffer(request), use_tuple); ec) co_return false;

    std::string error;
    bool first = true;
    while (true) {
        auto frame = co_await read_login_frame(client_, max_client_auth_length, error);
        if (!frame) {
            if (error == "timeout") {
                co_await refuse_login(sqlstate::query_canceled, "canceling authentication due to timeout",
                                      "the client did not finish the SCRAM exchange within 60 s");
            } else if (!error.empty()) {
                co_await refuse_login(sqlstate::protocol_violation, error, error);
            }
            // EOF: libpq closes after AuthenticationSASL to ask its user for a password.
            co_return false;
        }
        if ((*frame)[0] != protocol::frontend_tag::password) {
            if ((*frame)[0] == protocol::frontend_tag::terminate) co_return false;
            const auto message =
                fmt::format("expected SASL response, got message type {}", static_cast<int>((*frame)[0]));
            co_await refuse_login(sqlstate::protocol_violation, message, message);
            co_return false;
        }
        const std::string_view body = std::string_view(*frame).substr(protocol::header_size);
        auth::ScramStep step;
        if (first) {
            // SASLInitialResponse: mechanism, then the data's length (-1: none) and the data.
            protocol::ByteReader reader(body);
            const auto mechanism = reader.cstring();
            const auto length = reader.i32();
            std::optional<std::string_view> data;
            if (length && *length >= 0) data = reader.bytes(static_cast<std::size_t>(*length));
            if (!mechanism || !data || !reader.complete()) {
                co_await refuse_login(sqlstate::protocol_violation, "malformed SASLInitialResponse message",
                                      "malformed SASLInitialResponse message");
                co_return false;
            }
            step = server.client_first(*mechanism, *data);
            first = false;
        } else {
            step = server.client_final(body);
        }
        if (step.status == auth::ScramStep::Status::failure) {
            const bool wrong = step.failure == auth::ScramFailure::authentication_failed;
            const std::string reason = identity == nullptr ? "no such identity in " + identities->source
                                       : step.detail.empty() ? step.error
                                                             : step.detail;
            co_await refuse_login(sqlstate_of(step.failure), wrong ? failed : step.error, reason);
            co_return false;
        }
        if (step.status == auth::ScramStep::Status::next) {
            const auto reply = authentication_message(auth_sasl_continue, step.message);
            if (auto [ec, n] = co_await client_.async_write(asio::buffer(reply), use_tuple); ec) co_return false;
            continue;
        }
        if (identity == nullptr) co_return false;  // (the mock never succeeds)
        // A reload during the exchange that removed the identity (or changed its verifier or role)
        // wins: sessions are rechecked only once they hold a verifier.
        const auto now = shared_.identities->current();
        const auto* still = now->find(name);
        if (still == nullptr || !(still->verifier == identity->verifier) || still->role != identity->role) {
            co_await refuse_login(sqlstate::invalid_password, failed, "the identity was revoked by a reload during its login");
            co_return false;
        }
        login_verifier_ = identity->verifier;  // from here on a reload rechecks this session
        login_role_ = identity->role;
        protocol_.log_in_as(identity->name, identity->role);
        // SASLFinal, and AuthenticationOk with it: the server's login is pgrail's own business.
        std::string reply = authentication_message(auth_sasl_final, step.message);
        reply += authentication_message(auth_ok, {});
        if (auto [ec, n] = co_await client_.async_write(asio::buffer(reply), use_tuple); ec) co_return false;
        break;
    }
    spdlog::info("session {}: identity {} authenticated by pgrail (role {})", context_.session_id, identity->name,
                 identity->role);
    co_return true;
}

awaitable<bool> Session::server_login() {
    // The client had pgrail's AuthenticationOk (client_login): the server's is consumed here, and
    // its ParameterStatus, BackendKeyData and ReadyForQuery pass through the pumps as ever.
    if (revoked_) co_return false;  // revoked while the server's connection was made: ending() says so
    const auto identities = shared_.identities->current();
    const auto* credentials = identities->credentials(login_role_);
    const auto fail = [&](std::string reason) {
        spdlog::error("session {}: pgrail could not log into the server as role {} for identity {}: {}",
                      context_.session_id, login_role_, context_.identity, reason);
        end_session(sqlstate::connection_failure,
                    fmt::format("pgrail: could not log into the database server as role \"{}\": {}", login_role_,
                                reason));
    };
    if (credentials == nullptr) {
        fail("the identities file holds no credentials for the role");
        co_return false;
    }
    {
        std::string startup = protocol_.startup_bytes();
        if (auto [ec, n] = co_await server_.async_write(asio::buffer(startup), use_tuple); ec) {
            fail(ec.message());
            co_return false;
        }
    }
    std::optional<auth::ScramClient> scram;
    bool server_signed = false;  // the SCRAM exchange's SASLFinal was read and its signature checked
    std::string method;  // what pgrail answered, for the log
    std::string error;
    while (true) {
        auto frame = co_await read_login_frame(server_, max_server_login_length, error);
        if (!frame) {
            // The login watch (connect_timeout_ms) or a revocation closed the connection: its ending stands.
            if (!protocol_.ending()) fail(error.empty() ? "the server closed the connection" : error);
            co_return false;
        }
        const char tag = (*frame)[0];
        const std::string_view body = std::string_view(*frame).substr(protocol::header_size);
        if (tag == protocol::backend_tag::error_response || tag == protocol::backend_tag::notice_response) {
            // The server's own words reach the client as they came (an error ends the login).
            std::string words = *frame;
            co_await send_to_client(std::move(words));
            if (tag == protocol::backend_tag::notice_response) continue;
            spdlog::warn("session {}: the server refused pgrail's login as role {} for identity {}",
                         context_.session_id, login_role_, context_.identity);
            co_return false;
        }
        if (tag != protocol::backend_tag::authentication) {
            fail(fmt::format("unexpected message type \"{}\" before AuthenticationOk", tag));
            co_return false;
        }
        protocol::ByteReader reader(body);
        const auto code = reader.i32();
        if (!code) {
            fail("malformed authentication request");
            co_return false;
        }
        std::string reply;
        switch (*code) {
            case auth_ok:
                // Once SCRAM has begun, only its end (SASLFinal, the server's signature checked)
                // may precede AuthenticationOk: a server that skips it has not shown that it
                // knows the role's verifier (helper 68).
                if (scram && !server_signed) {
                    fail("the server ended the SCRAM exchange without its signature (AuthenticationOk before "
                         "SASLFinal)");
                    co_return false;
                }
                spdlog::info("session {}: pgrail logged into the server as role {} for identity {} ({})",
                             context_.session_id, login_role_, context_.identity, method.empty() ? "trust" : method);
                co_return true;
            case auth_cleartext: {
                const auto text = auth::cleartext_password_response(credentials->password);
                if (!text) {
                    fail("the role's password contains a NUL byte, which the cleartext exchange cannot carry");
                    co_return false;
                }
                reply = password_message(*text);
                method = "password";
                break;
            }
            case auth_md5: {
                const auto salt = reader.bytes(4);
                if (!salt) {
                    fail("malformed AuthenticationMD5Password");
                    co_return false;
                }
                std::array<unsigned char, 4> bytes{};
                std::memcpy(bytes.data(), salt->data(), 4);
                reply = password_message(auth::md5_password_response(login_role_, credentials->password, bytes));
                method = "md5";
                break;
            }
            case protocol::auth_sasl: {
                const auto parsed = protocol::parse_authentication(body);
                if (!parsed) {
                    fail("malformed AuthenticationSASL");
                    co_return false;
                }
                // -PLUS only over the server leg's own TLS, bound to the server's certificate.
                scram.emplace(credentials->password, server_end_point(server_));
                const auto mechanism = scram->choose_mechanism(parsed->sasl_mechanisms);
                if (!mechanism) {
                    fail(scram->error());
                    co_return false;
                }
                reply = sasl_initial_response(*mechanism, scram->client_first());
                method = std::string(*mechanism);
                break;
            }
            case auth_sasl_continue:
            case auth_sasl_final: {
                if (!scram) {
                    fail("SASL message before AuthenticationSASL");
                    co_return false;
                }
                const auto data = body.substr(4);
                auth::ScramClientStep step;
                if (*code == auth_sasl_continue) {
                    // PBKDF2 with the server's iteration count (a hostile server, or one in the middle
                    // below verify-ca, may ask for millions): off the I/O thread, whose other sessions
                    // would wait for it. The exchange's state goes there and comes back with the step.
                    using Derived = std::pair<std::optional<auth::ScramClient>, auth::ScramClientStep>;
                    auto derive = [client = *scram, message = std::string(data)]() mutable {
                        auto next = client.server_first(message);
                        return Derived{std::move(client), std::move(next)};
                    };
                    const std::string owner = pool_owner();  // named: GCC 12 bug 100611, as above
                    auto derived = co_await run_on_pool<Derived>(shared_.blocking_pool, owner, derive);
                    scram = std::move(derived.first);
                    step = std::move(derived.second);
                } else {
                    step = scram->server_final(data);
                }
                if (!step.ok) {
                    fail(step.error);
                    co_return false;
                }
                if (*code == auth_sasl_final) {
                    server_signed = true;
                    continue;  // AuthenticationOk follows
                }
                reply = sasl_response(step.message);
                break;
            }
            default:
                fail(fmt::format("the server asks for an authentication pgrail does not answer (request {}); give "
                                 "the role scram-sha-256, md5 or password in pg_hba.conf",
                                 *code));
                co_return false;
        }
        if (auto [ec, n] = co_await server_.async_write(asio::buffer(reply), use_tuple); ec) {
            fail(ec.message());
            co_return false;
        }
    }
}

}  // namespace pgrail::proxy

// One client connection: startup, upstream connect, and the two pumps.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "buffer.hpp"
#include "fair_pool.hpp"
#include "frame_stream.hpp"
#include "session_protocol.hpp"
#include "leg.hpp"
#include "upstream.hpp"
#include "session_directory.hpp"  // directory
#include "pending_logins.hpp"
#include "identity_store.hpp"
#include "pgrail/auth/scram.hpp"
#include "pgrail/config/serve_config.hpp"
#include "pgrail/protocol/backend.hpp"
#include "pgrail/protocol/frame.hpp"
#include "pgrail/protocol/frontend.hpp"
#include "pgrail/proxy/cancel_registry.hpp"
#include "pgrail/proxy/inband_commands.hpp"
#include "pgrail/proxy/refusal_pacer.hpp"
#include "pgrail/proxy/statement_gate.hpp"

namespace pgrail::proxy {

using boost::asio::awaitable;
using boost::asio::ip::tcp;

class Session;

// How the server is shutting down (SIGTERM: graceful, SIGINT or its deadline: immediate).
enum class ShutdownMode : std::uint8_t { none, graceful, immediate };

// What every session shares; lives as long as the server.
struct ServerShared {
    explicit ServerShared(config::ServeConfig serve_config)
        : config(std::move(serve_config)), held_messages(config.max_buffered_size),
          refusal_pacer(config.audit_refusal_bytes_per_second, config.audit_refusal_burst_bytes) {}
    config::ServeConfig config;
    std::shared_ptr<StatementGate> gate;
    std::shared_ptr<InbandCommands> inband;  // pgrail.* commands (InbandDispatch: never null)
    std::shared_ptr<TlsContexts> tls;         // null: no TLS on either leg
    std::shared_ptr<IdentityStore> identities;  // auth.mode pgrail (null: passthrough)
    std::shared_ptr<SessionDirectory> directory = std::make_shared<SessionDirectory>();  // directory
    // Database work of in-band commands (a proposal's proof may run for minutes): each login in
    // turn, and none on more than two of the four threads, so others always find one.
    FairPool blocking_pool{4, 2};
    // Analyses too slow for an I/O thread (long new texts), each role in turn and on one thread at
    // most: another role always finds the other free (review 101: one login held both for minutes).
    FairPool analysis_pool{2, 1};
    boost::asio::thread_pool audit_pool{4};     // audit lines that wait for fsync (group commit batches them)
    CancelRegistry cancel_registry;
    BufferBudget held_messages;  // whole messages held for inspection (a client's, a result row), by all sessions
    RefusalPacer refusal_pacer;   // each login's refusals, answered at most so fast (refusal_pacer.hpp)
    // Each login's in-band commands that reach the database (each makes a server connection or
    // two): run at most 10 a second after a burst of 30, later beyond (review 93: one agent's
    // loop of pgrail.status() made 170 server logins a second). The admin view is pgrail's memory.
    RefusalPacer command_pacer{10.0, 30.0};
    std::shared_ptr<PendingLogins> pending_logins =
        std::make_shared<PendingLogins>(config.max_pending_logins_per_address);
    std::string refusal_marker;  // "pgrail_refused_<random>_": names the failing stand-in statement
    std::atomic<std::uint64_t> next_session_id{1};
    std::atomic<std::uint64_t> active_sessions{0};

    // Live sessions, for the shutdown: each registers while its run() runs.
    std::mutex sessions_mutex;
    std::list<std::weak_ptr<Session>> sessions;
    ShutdownMode shutdown_mode = ShutdownMode::none;  // under sessions_mutex
    std::atomic<std::uint64_t> sessions_cut{0};       // ended inside a transaction or statement
    // Tells every live session (on its own thread) that the server shuts down in this mode;
    // sessions that start later learn it when they register.
    void shut_down_sessions(ShutdownMode mode);
    // After a reload of the identities file: every live session checks, on its own thread, that
    // its identity still exists with the verifier it logged in with (else it is ended).
    void recheck_identities(const std::shared_ptr<const auth::Identities>& identities);
};

// One direction's read side: the socket and its frame reader, and what the pump knows of it.
struct Inbound : FrameReader {
    Inbound(Leg& s, BufferBudget* budget) : FrameReader(budget), socket(s) {}
    Leg& socket;
    std::uint64_t bytes = 0;
    bool last_read_filled = false;          // more is probably waiting in the socket (COPY, big results)
    // The message holding budget now: where it starts in `bytes`, and since when it is read.
    std::uint64_t held_message_start = ~std::uint64_t{0};
    std::chrono::steady_clock::time_point held_since{};
    // An idle connection waits with a read into this small buffer instead of a pooled one:
    // it keeps no 64 KiB buffer while idle, yet waits by reading (see Session::read_more).
    std::array<char, 512> doorbell{};
};

// The I/O shell of one session: sockets, buffers, timers and thread hops. Its pumps read frames,
// hand them to the protocol core (protocol_, session_protocol.hpp) and carry out what it asks.
class Session : public std::enable_shared_from_this<Session>, private SessionEvents {
public:
    Session(Stream client, ServerShared& shared);
    ~Session();
    awaitable<void> run();
    [[nodiscard]] Stream::executor_type executor() { return client_.get_executor(); }
    // On the session's thread: graceful ends the session once it is at rest (at once if it is),
    // immediate ends it now (after a running in-band command, which it abandons).
    void request_shutdown(ShutdownMode mode);
    // On the session's thread, after a reload of the identities file (auth.mode pgrail): a session
    // whose identity was removed, or whose verifier or role changed, is ended (FATAL 28000).
    void recheck_identity(const std::shared_ptr<const auth::Identities>& identities);
    // A later login took over this login's place among its rule's (RuleSessions): unless the
    // server has authenticated it meanwhile, it ends (53300).
    void evict_login();

private:
    // SessionEvents: what the protocol core asks besides bytes.
    bool logged_in() override;
    void server_answered() override;
    void login_turn(bool server) override;
    void cancel_statement() override;
    void audit_result(ResultEvent event) override;

    // Idle between transactions with nothing outstanding in either direction (only while shutting
    // down: it looks into the client's socket).
    [[nodiscard]] bool at_rest();
    // Ends the session with FATAL 57P01 (close_server_and_wake_pumps).
    void end_for_shutdown();
    // Tells a logged-in server the session ends (a Terminate between messages, a cancel when a
    // statement runs), shuts its connection and cancels what both pumps wait for: they end, and
    // run() sends the client the FATAL of the protocol's ending().
    void close_server_and_wake_pumps();
    // Before the first ReadyForQuery: bounds the server's turns of the login by
    // connect_timeout_ms and the whole login by the startup timeout.
    awaitable<void> watch_login();
    // Startup phase: returns false when the connection ends here (cancel, refusal, EOF).
    awaitable<bool> read_startup();
    awaitable<bool> connect_upstream();
    // auth.mode pgrail (session_login.cpp). client_login: pgrail authenticates the client with
    // SCRAM-SHA-256(-PLUS) against the identities file, before any server connection; false when
    // the connection ends (refused: FATAL 28P01, audited). server_login: sends the startup packet
    // (as the identity's role) and answers the server's authentication itself with the role's
    // credentials, up to AuthenticationOk (consumed: the client had pgrail's); false when the
    // login failed (the server's ErrorResponse forwarded, or the ending set).
    awaitable<bool> client_login();
    awaitable<bool> server_login();
    // One tagged frame from `leg`, whole, at most `max_length` (its length word): nullopt on EOF,
    // cancellation or a bad length (`error` then says which, empty for EOF).
    awaitable<std::optional<std::string>> read_login_frame(Leg& leg, std::uint32_t max_length, std::string& error);
    awaitable<void> refuse_login(std::string sqlstate, std::string message, std::string reason);
    awaitable<void> handle_cancel(protocol::BackendKey key);
    awaitable<void> send_cancel(protocol::BackendKey upstream_key);
    awaitable<void> client_to_server();
    awaitable<void> server_to_client();
    // `pump` (one of the two above), ending the session when it throws as when it returns: `||`
    // completes on the first operand that finishes without an exception, so a pump that threw
    // would leave the other running for good (its client unanswered, its backend held open).
    awaitable<void> ending_on_exception(awaitable<void> pump, const char* name);
    // Records in the ledger the registered migrations' scripts this session has now run to their
    // end and committed (MigratorRunTracker), before the client sees that ReadyForQuery.
    awaitable<void> record_migrator_runs();
    awaitable<boost::system::error_code> read_more(Inbound& in);
    // `n` bytes read into `in`'s buffer (`filled`: all the room the read had), counted for /metrics.
    void received(Inbound& in, std::size_t n, bool filled);
    awaitable<bool> make_room(Inbound& in, std::size_t total);
    // Stops the pumps at their next check, with a FATAL of this SQLSTATE and message.
    void end_session(std::string sqlstate, std::string message) { protocol_.end(std::move(sqlstate), std::move(message)); }
    [[nodiscard]] std::chrono::milliseconds buffered_message_timeout() const {
        return std::chrono::milliseconds(shared_.config.buffered_message_timeout_ms);
    }
    // Writes `out` to `socket`, waiting while the peer does not read. In two steps where it counts
    // (the pumps): write_now writes what the socket takes at once, true when that was all (or it
    // failed: `ec`); when it was not, write_rest waits to write the rest.
    awaitable<boost::system::error_code> write_out(Leg& socket, Outbound& out);
    bool write_now(Leg& socket, Outbound& out, boost::system::error_code& ec);
    awaitable<boost::system::error_code> write_rest(Leg& socket, Outbound& out);
    awaitable<void> send_to_client(std::string bytes);
    awaitable<void> send_fatal(std::string sqlstate, std::string message, std::string detail = {},
                               std::string hint = {});
    // Before the first ReadyForQuery: holds a client frame that is not part of the login.
    awaitable<bool> hold_until_authenticated(Inbound& in);

    // The gate's verdict on a statement the gate does not decide on this thread (StatementGate::check_here),
    // from the analysis pool, its audit line written (settle_audit).
    awaitable<GateVerdict> analyse_elsewhere(const ClientStatement& statement);
    // Writes a verdict's audit line on the audit pool and settles the verdict (settle_audit).
    awaitable<void> settle_audit_elsewhere(GateVerdict& verdict);
    awaitable<bool> settle_verdict(GateVerdict& verdict);   // false: the client left meanwhile
    static bool needs_settling(const GateVerdict& verdict) {  // (most do not: no coroutine for them)
        return verdict.write_audit || verdict.kind == GateVerdict::Kind::refuse;
    }
    awaitable<bool> pace_refusal(std::size_t audit_bytes);  // false: the client left meanwhile
    awaitable<bool> wait_paced(std::chrono::steady_clock::duration wait);  // (false: the client left)
    awaitable<void> client_gone(Inbound& in);
    [[nodiscard]] bool client_hung_up();
    [[nodiscard]] std::string pool_owner() const;
    // A statement that reads pgrail commands: a Query runs them and sends the text with their
    // answers; a Parse sends a text that takes them as parameters, and they run at its Bind.
    awaitable<void> run_intercept(const GateVerdict& verdict, const ClientStatement& statement, Outbound& out);
    // A Bind of a statement that reads pgrail commands: runs them, and binds their answers.
    awaitable<void> on_bind(const ClientStep& step, Outbound& out);
    // Runs the commands (reads first, then the one that changes something) on the blocking pool;
    // `answers[i]` is calls[i]'s. The error of the first that failed (the rest did not run).
    awaitable<std::optional<protocol::ErrorMessage>> run_commands(const std::vector<InbandCall>& calls,
                                                                  std::vector<migrations::ResultTable>& answers);
    // A command that changes something runs only where PostgreSQL would run CREATE DATABASE: not
    // inside a transaction block, not after another Execute of the same pipeline (SQLSTATE 25001).
    // Waits for the server's answers to the `answered` messages before, which tell the status.
    awaitable<std::optional<protocol::ErrorMessage>> refuse_in_transaction(const std::vector<InbandCall>& calls,
                                                                           std::uint64_t answered);
    // Waits until the server has answered `count` ReadyForQuery-earning messages and, with
    // `probe`, answered or skipped the probe (false: the session ends first).
    awaitable<bool> wait_for_server(std::uint64_t count, bool probe = false);
    // Until `done` holds (asked at each answer of the server, and each second): false when the
    // session must end meanwhile (the client or the server gone, or cancelled).
    awaitable<bool> wait_until(std::function<bool()> done, bool notice_client_gone = true);
    // While the protocol core holds the client (a COPY's Syncs being settled): its marker sent
    // when due, until it lets go. False when the session must end meanwhile.
    awaitable<bool> settle_copy();
    // The settle marker sent from the server's pump, when the client's is parked in a read.
    awaitable<void> send_settle_marker_now();
    // Before a command that changes something runs at a Bind: whether the server holds the
    // statement, with everything before the Bind in its batch done (a Describe and a Flush of
    // pgrail's own, their answers hidden from the client). False: an error made the server skip
    // it, and will make it skip the Bind too.
    awaitable<bool> probe_statement(std::string_view name, Outbound& out);
    awaitable<void> watch_for_departure(std::shared_ptr<std::atomic<bool>> abandoned,
                                        std::shared_ptr<std::atomic<bool>> finished);

    ServerShared& shared_;
    Leg client_;
    Leg server_;
    SessionProtocol protocol_;
    SessionContext& context_ = protocol_.context();
    std::shared_ptr<const TlsContextSet> tls_;  // the generation current when the session began (null: none)
    std::shared_ptr<SessionDirectory::Entry> directory_entry_;  // directory
    std::shared_ptr<void> session_place_;  // among its rule's max_connections, while the session lives
    std::shared_ptr<void> login_place_;    // ... while the server authenticates it (passthrough)
    GateVerdict login_admission_;  // passthrough: the place asked for once the server authenticated the client
    std::chrono::steady_clock::time_point started_;
    Inbound from_client_{client_, &shared_.held_messages};
    // The server's frames held whole (a masked or limited result's rows, up to 64 MiB) come out
    // of the same budget as the client's long messages.
    Inbound from_server_{server_, &shared_.held_messages};
    Outbound to_server_;
    Outbound to_client_;

    boost::asio::steady_timer first_ready_signal_;  // cancelled when the first ReadyForQuery arrives
    migrations::ExternalProgress migrator_progress_;  // how far this session ran each script
    bool client_write_cut_ = false;      // a write to the client failed or was cancelled mid-way
    // Lifecycle: shutdown, the login watch.
    std::list<std::weak_ptr<Session>>::iterator registration_;
    bool registered_ = false;
    bool pumping_ = false;               // the pumps run (the startup packet went to the server)
    PolicyHold policy_hold_;             // the policy this session's statements were decided under
    ShutdownMode shutdown_ = ShutdownMode::none;
    bool ended_for_shutdown_ = false;
    bool cut_ = false;                   // the shutdown ended it inside a transaction or statement
    bool server_closed_by_pgrail_ = false;
    bool server_write_pending_ = false;  // a write to the server is under way
    bool client_reading_ = false;        // the client's pump waits in read_more()
    std::shared_ptr<std::atomic<bool>> inband_abandoned_;  // set while an in-band command runs
    bool waiting_for_server_ = false;   // wait_for_server() waits on ready_signal_
    boost::asio::steady_timer ready_signal_;  // cancelled when the server answers while someone waits
    std::uint64_t inband_answer_ready_ = 0;  // the ReadyForQuery that completes the last one's answer
    boost::asio::steady_timer login_timer_;
    boost::asio::steady_timer pace_timer_;  // a refusal answered later (pace_refusal)
    std::unique_ptr<PendingLogins::Place> pending_place_;  // held until logged in
    std::chrono::steady_clock::time_point server_turn_deadline_ = std::chrono::steady_clock::time_point::max();
    bool login_watch_done_ = false;
    // auth.mode pgrail: the verifier and role the client logged in with (nullopt: passthrough, or
    // not logged in yet): a reload that changes either ends the session.
    std::optional<auth::ScramVerifier> login_verifier_;
    std::string login_role_;
    bool revoked_ = false;
};

}  // namespace pgrail::proxy

// The PostgreSQL protocol's meaning for one session, free of I/O.
//
// Frames come in from either side (their headers first, as they stream, then the frames pgrail
// reads whole); bytes go out as Outbound pieces (forwarded as they came, or written by pgrail);
// what is neither (ask the gate, run pgrail commands, cancel, audit, end) goes back to the I/O
// shell (Session, session.cpp) as a ClientStep or a ServerStep or through SessionEvents. The
// state is one Phase and one queue of outstanding batches (what each ReadyForQuery the server
// owes ends, and which of its answers pgrail rewrites or hides). Tested over byte strings in
// tests/unit/proxy/session_protocol_test.cpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "frame_stream.hpp"
#include "result_masking.hpp"
#include "pgrail/migrations/commands.hpp"
#include "pgrail/protocol/backend.hpp"
#include "pgrail/protocol/frontend.hpp"
#include "pgrail/proxy/cancel_registry.hpp"
#include "pgrail/proxy/migrator_runs.hpp"
#include "pgrail/proxy/statement_gate.hpp"

namespace pgrail::proxy {

// Where the session stands in the protocol.
enum class Phase : std::uint8_t {
    startup,         // the startup packet has not gone to the server
    authenticating,  // until the first ReadyForQuery: only the login's messages pass
    ready,           // logged in
    copy_in,         // the server sent CopyInResponse; the client's CopyDone or CopyFail ends it
    copy_in_failed,  // an error ended it on the server: the client's stragglers pass until its CopyDone or CopyFail
    copy_out,        // the server sent CopyOutResponse; its CopyDone (or an error) ends it
    ending,          // pgrail ends the session: ending() says why
};

// Why pgrail ends a session: the FATAL its client hears.
struct Ending {
    std::string sqlstate;
    std::string message;
    std::string detail;  // (a policy's refusal: its rule, and what to do instead)
    std::string hint;
};

// What the core asks of the shell besides bytes (as Envoy's decoder callbacks).
class SessionEvents {
public:
    virtual ~SessionEvents() = default;
    // The first ReadyForQuery; false: the session may not go on (the shell called end() with why).
    virtual bool logged_in() = 0;
    virtual void server_answered() = 0;    // a ReadyForQuery, or the probe's fate: wake who waits
    virtual void login_turn(bool server) = 0;  // the login's turn passes to the server or the client
    virtual void cancel_statement() = 0;   // max_rows deny: cancel what the server runs now
    virtual void audit_result(ResultEvent event) = 0;  // not awaited (a backstop masking)
};

// What the shell does with a packet of the startup phase.
struct StartupStep {
    enum class Kind : std::uint8_t {
        reply,   // send `reply` (an encryption request's 'N'), then read the next packet
        start_tls,  // send `reply` ('S'), make the TLS handshake, tls_started(), read the next packet
        cancel,  // a CancelRequest for `cancel_key`: the client hears nothing
        refuse,  // send `reply` (an error) and close
        accept,  // send `reply` if any (NegotiateProtocolVersion), then log in with startup_bytes()
    };
    Kind kind = Kind::refuse;
    std::string reply;
    protocol::BackendKey cancel_key{};
    // refuse: the policy's reason, audited as a refused login before the reply goes out (empty:
    // a malformed packet, which is no login).
    std::string audit_reason;
};

// The statement a Query or Parse carries, parsed once (views into the frame).
struct ClientStatement {
    char tag = 0;
    std::string_view frame;
    std::string_view sql;
    std::string_view parse_name;   // Parse only
    std::string_view parse_types;  // Parse only: raw parameter type count and OIDs
};

// A prepared statement whose text reads pgrail commands: the server holds it with one json
// parameter per command after the client's own; pgrail runs the commands at each Bind.
struct DeferredStatement {
    std::vector<InbandCall> calls;
    std::size_t client_parameters = 0;  // the client's own parameters (before pgrail's)
};

// What the shell does with a client frame the core read whole.
struct ClientStep {
    enum class Kind : std::uint8_t {
        done,                  // handled: its bytes (if any) are in the Outbound
        check_statement,       // ask the gate about `statement`, then apply() the verdict
        check_function_call,   // ask the gate about `function_oid`, then apply() the verdict
        bind_deferred,         // a matching Bind of a DeferredStatement: run its commands (or refuse)
        check_lock_keys,       // a Bind that gives advisory lock keys: ask the gate about each of
                               // `lock_keys`, then as bind_deferred if `deferred` has calls, else forward
        end,                   // malformed: ending() says why
    };
    Kind kind = Kind::done;
    ClientStatement statement;
    std::uint32_t function_oid = 0;
    std::optional<protocol::BindMessage> bind;
    DeferredStatement deferred;
    std::vector<std::string> lock_keys;  // check_lock_keys: as the server reads them (bound_lock_key)
};

// What the shell does after a server frame.
enum class ServerStep : std::uint8_t {
    done,  // handled
    cut,   // a result max_rows cut ends: audit cut_event(), then finish_cut()
    stop,  // the session ends (ending())
};

// pgrail's own Describe before a Bind that runs a command (Session::probe_statement).
enum class Probe : std::uint8_t { none, waiting, answered, skipped };

class SessionProtocol {
public:
    // `max_result_row`: the longest row of a masked or limited result pgrail holds whole.
    SessionProtocol(SessionEvents& events, std::shared_ptr<StatementGate> gate, CancelRegistry& cancel_registry,
                    std::string refusal_marker, std::size_t max_result_row = default_max_result_row);
    static constexpr std::size_t default_max_result_row = 64u << 20;  // 64 MiB
    ~SessionProtocol();
    SessionProtocol(const SessionProtocol&) = delete;
    SessionProtocol& operator=(const SessionProtocol&) = delete;

    [[nodiscard]] SessionContext& context() { return context_; }
    [[nodiscard]] const SessionContext& context() const { return context_; }
    [[nodiscard]] Phase phase() const { return phase_; }
    [[nodiscard]] bool logged_in() const { return answered_ > 0; }
    // A whole packet of the startup phase (its length word included), as PostgreSQL 15's
    // ProcessStartupPacket reads it. Accepted, the context has its user, database and application.
    [[nodiscard]] StartupStep on_startup_packet(std::string packet);
    // TLS on the client's leg (tls.client.mode): an SSLRequest is answered 'S'; `required` also
    // refuses a StartupMessage that came without it, as PostgreSQL does for a hostssl-only server.
    void offer_tls(bool required) {
        tls_offered_ = true;
        tls_required_ = required;
    }
    void tls_started() { tls_in_use_ = true; }
    [[nodiscard]] bool tls_in_use() const { return tls_in_use_; }
    // The StartupMessage for the server (3.0, without `_pq_.` options) and its parameters.
    [[nodiscard]] const std::string& startup_bytes() const { return startup_bytes_; }
    [[nodiscard]] const StartupParameters& startup_parameters() const { return startup_parameters_; }
    // auth.mode pgrail, after pgrail authenticated the client as `identity`: the server is asked
    // for `role` instead (the startup packet's user replaced; a database left out defaults to the
    // role, as the server would default it), and the context says both.
    void log_in_as(const std::string& identity, const std::string& role);
    // The startup packet goes to the server: its ReadyForQuery is the first one owed.
    void start();
    // Ends the session with a FATAL of this SQLSTATE and message; the first reason wins.
    void end(std::string sqlstate, std::string message, std::string detail = {}, std::string hint = {});
    [[nodiscard]] const std::optional<Ending>& ending() const { return ending_; }
    void forget_ending() { ending_.reset(); }  // the server said why already

    // The client's frames.
    [[nodiscard]] bool client_inspects(char tag, std::size_t total_size) const;
    void on_client_header(char tag);
    [[nodiscard]] ClientStep on_client_frame(char tag, std::string_view frame, Outbound& out);
    // A verdict on a check_statement or check_function_call step: forward or refuse (an
    // intercept is the shell's: run_intercept).
    void apply(const GateVerdict& verdict, const ClientStatement& statement, Outbound& out);
    // The statement is refused with `error`: from `refused_offset` on for a Query (what came
    // before runs, as before a failing statement).
    void refuse(const protocol::ErrorMessage& error, const ClientStatement& statement, Outbound& out,
                std::size_t refused_offset = 0);
    // In-band commands (Session::run_intercept, on_bind).
    // A Parse of a text that reads pgrail commands: the server gets a text taking their answers as
    // parameters. Returns the error to refuse it with instead, if any.
    [[nodiscard]] std::optional<protocol::ErrorMessage> defer(const GateVerdict& verdict,
                                                              const ClientStatement& statement, Outbound& out);
    // A Query whose commands ran: the server gets `text` (their answers in place) instead.
    void substitute_query(std::string_view text, Outbound& out);
    // A Bind of a DeferredStatement whose commands failed (a Bind that does not match the
    // statement's parameters is refused in on_client_frame, as PostgreSQL refuses it).
    void refuse_bind(const protocol::ErrorMessage& error, Outbound& out);
    // pgrail's Describe and Flush for the statement (the shell waits for probe() to settle).
    // Only when !batch_failed(): after an error the server would skip it.
    void send_probe(std::string_view statement_name, Outbound& out);
    [[nodiscard]] bool batch_failed() const { return batch_failed_; }
    [[nodiscard]] Probe probe() const { return probe_; }
    void end_probe() { probe_ = Probe::none; }

    // The server's frames.
    [[nodiscard]] bool server_inspects(char tag, std::size_t total_size);
    // Each server frame's header, as it streams: `out` gets the masked rows gathered so far.
    void on_server_header(char tag, Outbound& out);
    [[nodiscard]] ServerStep on_server_frame(char tag, std::string_view frame, Outbound& out);
    // The audit event of the cut result (after ServerStep::cut), then its end to the client.
    [[nodiscard]] ResultEvent cut_event() const;
    void finish_cut(char tag, std::string_view frame, bool audited, Outbound& out);
    // A masked result's rows gathered so far go out (before anything else reaches the client).
    void flush_rows(Outbound& out);
    [[nodiscard]] bool row_too_long() const { return result_row_too_long_; }

    // An extended-protocol COPY FROM STDIN with Syncs sent behind its Execute (libpq's
    // PQexecParams sends them at once): the server reads them in the copy and ignores them, unless
    // the copy fails before it reads anything (COPY ... (FREEZE), a BEFORE trigger, a cancel), and
    // then it answers them after all. So that pgrail knows which, it reads no more of the client
    // while `holding_client()`: from the client's CopyDone or CopyFail (followed by a Flush of
    // pgrail's) until the copy's CommandComplete or error, and from an error until the server has
    // answered pgrail's marker (`send_settle_marker()`, when due: a Sync, a Close of a statement
    // no one has, a Sync): the ReadyForQuery messages before the Close's answer but the last (its
    // Sync's) answer the client's Syncs, and go on to the client. None: the server had read them,
    // and skipped to pgrail's Sync where it would have skipped to the client's next: pgrail then
    // drops what the client sends until that Sync (skip_to_sync_).
    [[nodiscard]] bool holding_client() const { return copy_settle_ != CopySettle::none; }
    [[nodiscard]] bool settle_marker_due() const { return copy_settle_ == CopySettle::marker_due; }
    void send_settle_marker(Outbound& out);

    // What the shell's waits and the shutdown read.
    [[nodiscard]] std::uint64_t answered() const { return answered_; }    // ReadyForQuery received
    [[nodiscard]] std::uint64_t requested() const;                        // ReadyForQuery owed, in all
    [[nodiscard]] bool statement_running() const { return requested() > answered_; }
    [[nodiscard]] bool unsynced() const { return open_batch().extended; }
    [[nodiscard]] bool executed_since_sync() const { return open_batch().executed; }
    [[nodiscard]] char transaction_status() const { return transaction_status_; }
    // Logged in, idle outside a transaction, nothing owed or half-sent in the protocol.
    [[nodiscard]] bool at_rest() const;
    [[nodiscard]] bool client_terminated() const { return client_terminated_; }
    [[nodiscard]] bool server_sent_fatal() const { return server_sent_fatal_; }
    [[nodiscard]] std::optional<protocol::BackendKey> upstream_key() const { return upstream_key_; }
    [[nodiscard]] std::optional<protocol::BackendKey> client_key() const { return client_key_; }
    [[nodiscard]] MigratorRunTracker& migrator_runs() { return migrator_runs_; }

private:
    // Each Describe whose answer is still to come.
    struct DescribeAnswer {
        bool statement = false;       // of a statement: a ParameterDescription comes first
        std::size_t hidden_parameters = 0;  // pgrail's own, at the end of that ParameterDescription
        bool probe = false;           // pgrail's probe: its whole answer is hidden
        bool mine = false;            // pgrail's own before an Execute: its answer plans the rows
        std::uint64_t execute = 0;    // mine: the Execute it precedes (executes_sent_)
    };
    struct PendingRefusal {
        std::uint64_t id = 0;
        protocol::ErrorMessage error;
    };
    // What the server answers up to one ReadyForQuery, and what pgrail does to those answers.
    // The queue's back is open (the client's messages since its last Query, Sync or FunctionCall);
    // the others are closed and owed a ReadyForQuery each, the front's being answered now.
    struct Batch {
        bool extended = false;  // extended-protocol messages (awaiting a Sync)
        bool executed = false;  // an Execute among them (a pipeline, for PostgreSQL)
        // (A vector read from `head`: an empty std::deque allocates, and a batch begins with each
        // Query or Sync.)
        struct Describes {
            std::vector<DescribeAnswer> answers;
            std::size_t head = 0;
            [[nodiscard]] bool empty() const { return head == answers.size(); }
            [[nodiscard]] const DescribeAnswer& front() const { return answers[head]; }
            void pop_front() {
                // All answered: the queue starts over, so that a long pipeline does not keep them.
                if (++head == answers.size()) {
                    answers.clear();
                    head = 0;
                }
            }
            [[nodiscard]] std::size_t owed() const { return answers.size() - head; }
            void push_back(const DescribeAnswer& answer) { answers.push_back(answer); }
        } describes;
        std::vector<PendingRefusal> refusals;
        bool changes_encoding = false;  // it may change client_encoding (GateVerdict::changes_encoding)
        bool has_messages = false;      // the client sent it more than the Sync that closes it
        bool closed_by_sync = false;    // (not a Query or FunctionCall, whose answer is its own)
        char last_message = 0;          // the tag of its last message but Syncs, Flushes and copy data
        // The migrator route: each statement of a Query, and each Execute, ends in one completion
        // (CommandComplete, EmptyQueryResponse or PortalSuspended) or an error that ends the
        // batch. The registered statements it runs, by the completion that answers them
        // (MigratorStatement::index: the statement's place in the Query, or the Execute's).
        std::uint32_t executes_sent = 0;
        std::uint32_t completions_seen = 0;
        std::vector<MigratorStatement> registered;
        std::uint64_t serial = 0;  // batch_serial_ while it was open
        // Names of encoding_statements_ this batch prepared again as another text or closed:
        // forgotten when it is answered without an error.
        std::vector<std::string> replaced_encoding_statements;
        // Empty again for reuse, keeping a small queue's memory (a batch begins with each Query or
        // Sync: no allocation per transaction).
        void clear() {
            extended = executed = changes_encoding = has_messages = closed_by_sync = false;
            last_message = 0;
            executes_sent = completions_seen = 0;
            registered.clear();
            replaced_encoding_statements.clear();
            constexpr std::size_t kept = 64;
            if (describes.answers.capacity() > kept) describes.answers = {};
            describes.answers.clear();
            describes.head = 0;
            if (refusals.capacity() > kept) refusals = {};
            refusals.clear();
        }
    };
    // The batches the server owes a ReadyForQuery, oldest first, the open one last: a vector read
    // from `head`, its answered front cut off once it is half of it, so that popping the front
    // costs O(1) amortised (a client may pipeline a million Syncs; erasing the front of a vector
    // each time was quadratic and held an I/O thread for minutes).
    struct BatchQueue {
        std::vector<Batch> items;
        std::size_t head = 0;
        [[nodiscard]] std::size_t size() const { return items.size() - head; }
        [[nodiscard]] Batch& front() { return items[head]; }
        [[nodiscard]] const Batch& front() const { return items[head]; }
        [[nodiscard]] Batch& back() { return items.back(); }
        [[nodiscard]] const Batch& back() const { return items.back(); }
        [[nodiscard]] Batch& operator[](std::size_t index) { return items[head + index]; }
        void push_back(Batch&& batch) { items.push_back(std::move(batch)); }
        void emplace_back() { items.emplace_back(); }
        void pop_back() { items.pop_back(); }
        Batch pop_front() {
            Batch first = std::move(items[head++]);
            if (head >= 32 && head * 2 >= items.size()) {
                items.erase(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(head));
                head = 0;
            }
            return first;
        }
    };
    [[nodiscard]] Batch& open_batch() { return batches_.back(); }
    [[nodiscard]] const Batch& open_batch() const { return batches_.back(); }
    void close_batch(char tag) {
        open_batch().closed_by_sync = tag == protocol::frontend_tag::sync;
        ++batch_serial_;
        if (spare_batches_.empty()) {
            batches_.emplace_back();
        } else {
            batches_.push_back(std::move(spare_batches_.back()));
            spare_batches_.pop_back();
        }
        open_batch().serial = batch_serial_;
    }
    // The batch a Query's or FunctionCall's refusal belongs to: the one its own message closed.
    [[nodiscard]] Batch& batch_of(char tag);

    // false: the login was refused at its end (SessionEvents::logged_in): the frame is not forwarded.
    [[nodiscard]] bool on_ready_for_query(std::string_view body);
    [[nodiscard]] bool enter_copy_in();
    bool stop_after_frame_ = false;  // the server's frame ended the session (ServerStep::stop)
    // A statement that may change client_encoding runs in the open batch: texts read until its
    // batch is answered are read as if the encoding were unknown (Lexing::encoding_pending).
    void expect_encoding_change(Batch& batch) {
        if (!batch.changes_encoding) ++batches_changing_encoding_;
        batch.changes_encoding = true;
        context_.lexing.encoding_pending = true;
    }
    // A batch that may have changed client_encoding is answered; `settled` when the session is
    // outside a transaction block. Inside one the change is not final: COMMIT (of SET LOCAL),
    // ROLLBACK, ROLLBACK TO and any error there put the old value back, which the server reports
    // only at that later batch's ReadyForQuery, after pgrail may have read texts sent behind it.
    void encoding_change_answered(bool changed, bool settled) {
        if (changed) {
            --batches_changing_encoding_;
            if (!settled) encoding_change_in_transaction_ = true;
        }
        if (settled) encoding_change_in_transaction_ = false;
        context_.lexing.encoding_pending = batches_changing_encoding_ > 0 || encoding_change_in_transaction_;
    }
public:
    // A batch that may change client_encoding is still unanswered (beside a change answered in
    // the open transaction block, the other half of Lexing::encoding_pending).
    [[nodiscard]] bool encoding_change_on_its_way() const { return batches_changing_encoding_ > 0; }

private:
    // Rewrites or hides a server frame; false: forward it as it came.
    bool rewrite_server_frame(char tag, std::string_view frame, Outbound& out);

    // Results under the rule's ResultGuard (masked columns, max_rows): session_results.cpp.
    enum class ResultFrame : std::uint8_t { pass, plan, hide_plan, hide, mask, drop, end, error };
    void refresh_guard();  // at each Query and Execute
    void describe_before_execute(std::string_view frame, Outbound& out);
    void on_result_header(char tag);
    [[nodiscard]] bool result_inspects(std::size_t total_size);
    // nullopt: the frame is not the result's to change (rewrite_server_frame's, then).
    std::optional<ServerStep> on_result_frame(std::string_view frame, Outbound& out);
    void begin_result(std::shared_ptr<const ResultGuard> guard, std::optional<ResultPlan> plan, bool copy);
    [[nodiscard]] bool watching_results() const {
        return guarding_ || result_.guard != nullptr || (answering_ && answering_->mine);
    }

    SessionEvents& events_;
    std::shared_ptr<StatementGate> gate_;
    CancelRegistry& cancel_registry_;
    const std::string refusal_marker_;  // "pgrail_refused_<random>_": names the failing stand-in
    const std::size_t max_result_row_;
    SessionContext context_;
    Phase phase_ = Phase::startup;
    bool ssl_answered_ = false;  // each encryption request is answered once
    bool tls_offered_ = false;
    bool tls_required_ = false;
    bool tls_in_use_ = false;
    bool gss_answered_ = false;
    std::string startup_bytes_;
    StartupParameters startup_parameters_;
    std::optional<Ending> ending_;
    BatchQueue batches_;  // a queue of one or two, mostly
    // The client's frame whose header was read last: a Sync or Flush during COPY FROM STDIN, which
    // pgrail does not pass on; a message that would break the count of answers owed (the session ends).
    bool frame_dropped_ = false;
    bool frame_breaks_copy_ = false;
    std::size_t batches_changing_encoding_ = 0;  // of batches_, those with changes_encoding
    bool encoding_change_in_transaction_ = false;  // answered inside the transaction block still open
    std::vector<Batch> spare_batches_;  // answered batches, cleared, for close_batch to reuse
    std::uint64_t answered_ = 0;
    std::uint64_t next_refusal_id_ = 1;
    char transaction_status_ = 'I';
    bool client_terminated_ = false;
    bool server_sent_fatal_ = false;
    // SCRAM-SHA-256-PLUS was taken out of the server's offer: its SASLInitialResponse is next.
    bool channel_binding_withheld_ = false;
    bool batch_failed_ = false;  // an ErrorResponse since the last ReadyForQuery
    Probe probe_ = Probe::none;
    std::optional<DescribeAnswer> answering_;  // the Describe the current RowDescription/NoData answers
    std::unordered_map<std::string, DeferredStatement> deferred_;  // by statement name
    std::optional<protocol::BackendKey> upstream_key_;
    std::optional<protocol::BackendKey> client_key_;  // in the cancel registry while set
    MigratorRunTracker migrator_runs_;  // registered migrations' statements, to their commit
    // As the server reports them (ParameterStatus): whether it converts the client's text.
    std::string server_encoding_;
    // Prepared statements whose text may change client_encoding, by name: each Bind of one
    // expects the change, and so does every SQL EXECUTE. A name prepared again as another text,
    // closed, or (the unnamed one) dropped by a Query is forgotten only once the batch that did it
    // was answered without an error (review 92: a Parse or Close the server skipped after an
    // error, or refused, leaves the statement there); in that batch, its later Binds are the new
    // statement's. Past a bound, every Bind expects the change.
    struct EncodingStatement {
        std::string name;
        std::uint64_t batch = 0;  // the serial of the batch of its Parse
    };
    std::vector<EncodingStatement> encoding_statements_;
    [[nodiscard]] bool binds_encoding_statement(std::string_view name) const;
    void follow_encoding_statement(std::string_view name);
    void forget_encoding_statement_after(std::string_view name, Batch& batch);  // (once it is answered)
    bool every_bind_may_change_encoding_ = false;
    // The portals bound from them: an Execute of one in a later batch (a row limit, in a
    // transaction) runs on and may change client_encoding there.
    std::vector<std::string> encoding_portals_;
    bool every_execute_may_change_encoding_ = false;
    // The migrator route's prepared statements and portals that hold a registered migration's
    // statement. One runs only in the batch it was prepared in, and only while nothing has
    // changed where the session's names resolve since its Parse (resolution_epoch_: a temporary
    // relation or type made, a search_path set), as the gate checked it: a later Bind is refused,
    // a later Execute ends the session. Bounded like the names above.
    struct RegisteredPrepared {
        std::string name;
        MigratorStatement statement;
        std::uint64_t batch = 0;  // batch_serial_ of its Parse (of its Bind, for a portal)
        std::uint64_t epoch = 0;
    };
    std::vector<RegisteredPrepared> registered_statements_;
    std::vector<RegisteredPrepared> registered_portals_;
    // Once the session prepared a statement that takes an advisory lock by parameter
    // (SessionContext::prepared_lock_keys), every Bind's values are read as keys: by name, pgrail
    // could not know which statement the server holds (a Parse or Close it skipped after an
    // error, or refused, leaves the old one). Only pgrail's own keys are refused: no other value
    // is one, whatever it is a parameter of.
    [[nodiscard]] std::vector<std::string> bound_lock_keys(const protocol::BindMessage& bind) const;
    bool copy_took_syncs_ = false;  // enter_copy_in() took Syncs sent behind a COPY FROM STDIN
    bool copy_settles_ = false;     // ... behind an Execute: a failure is settled (holding_client)
    std::size_t syncs_taken_ = 0;   // how many
    enum class CopySettle : std::uint8_t { none, outcome_pending, marker_due, marker_sent, marker_answered };
    CopySettle copy_settle_ = CopySettle::none;
    // After a settled copy whose Syncs the server all read in the copy: it skipped to pgrail's
    // Sync where PostgreSQL would skip to the client's next, so pgrail drops what the client sends
    // until then (the server would have skipped it, and answered none of it).
    bool skip_to_sync_ = false;
    std::vector<std::string> settle_answers_;  // ReadyForQuery messages while settling, in order
    void settle_copy_frame(char tag, std::string_view frame, Outbound& out);
    std::uint64_t batch_serial_ = 0;       // the open batch's
    std::uint64_t resolution_epoch_ = 0;
    [[nodiscard]] bool following_registered() const {
        return !registered_statements_.empty() || !registered_portals_.empty();
    }
    // A Bind of a registered statement: its portal followed, or the Bind refused (false).
    bool bind_registered(const protocol::BindMessage& bind, Outbound& out);
    [[nodiscard]] static protocol::ErrorMessage names_moved_error();
    static constexpr std::size_t max_followed_names = 64;  // each Bind or Execute looks them up
    void follow_encoding_portal(std::string_view portal) {
        if (std::find(encoding_portals_.begin(), encoding_portals_.end(), portal) != encoding_portals_.end()) return;
        if (encoding_portals_.size() < max_followed_names) {
            encoding_portals_.emplace_back(portal);
        } else {
            every_execute_may_change_encoding_ = true;
        }
    }
    [[nodiscard]] bool following_encoding_statements() const {
        return every_bind_may_change_encoding_ || !encoding_statements_.empty() || !encoding_portals_.empty() ||
               every_execute_may_change_encoding_;
    }

    // Results under a ResultGuard.
    std::shared_ptr<const ResultGuard> guard_;  // as of the client's last Query or Execute
    bool guarding_ = false;                      // guard_ masks or limits
    std::uint64_t executes_sent_ = 0;
    // The result the server is sending, while a guard watches it.
    struct WatchedResult {
        std::shared_ptr<const ResultGuard> guard;  // null: none
        std::optional<ResultPlan> plan;            // masked columns (none for COPY)
        bool copy = false;                         // COPY TO STDOUT: CopyData rows
        std::uint64_t rows = 0;                    // rows the server sent
        std::uint64_t dropped = 0;                 // rows beyond max_rows
        std::uint64_t execute = 0;                 // executes_sent_ when it began
        bool cancel_sent = false;                  // max_rows deny: the server was asked to cancel
    };
    WatchedResult result_;
    ResultFrame result_frame_ = ResultFrame::pass;  // for the frame whose header came last
    bool hide_frame_ = false;                       // the probe's RowDescription or NoData
    bool cut_refused_ = false;                      // the cut result ends in the cancel's error
    bool result_row_too_long_ = false;
    // A masked result's rows, gathered so they leave in one piece rather than one write each.
    std::string row_batch_;
};

}  // namespace pgrail::proxy

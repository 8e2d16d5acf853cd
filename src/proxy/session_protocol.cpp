// The PostgreSQL protocol's meaning for one session, free of I/O (session_protocol.hpp).
#include "session_protocol.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "pgrail/migrations/lock.hpp"
#include "pgrail/protocol/bytes.hpp"
#include "pgrail/protocol/frame.hpp"
#include "pgrail/protocol/sqlstate.hpp"
#include "pgrail/proxy/audit_budget.hpp"
#include "pgrail/proxy/inband_relations.hpp"
#include "log_budget.hpp"
#include "pgrail/sql/analyzer.hpp"

namespace pgrail::proxy {

namespace {

namespace front = protocol::frontend_tag;
namespace back = protocol::backend_tag;

// An ErrorResponse is read whole to spot FATAL and pgrail's stand-in errors, which are short;
// a long one (the server quoting a huge value) streams through like a DataRow.
constexpr std::size_t inspected_error_max = 64 * 1024;

bool is_copy_in_message(char tag) {
    return tag == front::copy_data || tag == front::copy_done || tag == front::copy_fail;
}

// Each earns a ReadyForQuery: it closes a batch.
bool closes_batch(char tag) { return tag == front::query || tag == front::sync || tag == front::function_call; }

// Extended-protocol messages: the server owes their outcome until the next Sync's ReadyForQuery.
// (Not Flush, which cannot fail when well formed: a Query after Parse, Flush, Sync, Flush is its
// own batch. One with a body fails, and the server would then skip to a Sync: refused.)
bool awaits_sync(char tag) {
    return tag == front::parse || tag == front::bind || tag == front::execute || tag == front::describe ||
           tag == front::close;
}

// An authentication request the client must answer: the login's turn passes to the client.
// (0 AuthenticationOk and 12 SASLFinal leave the turn with the server.)
bool asks_the_client(std::int32_t code) { return code != 0 && code != 12; }

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

constexpr std::size_t pgrail_key_digits = 19;
static_assert(migrations::advisory_lock_key >= 1'000'000'000'000'000'000 &&
              migrations::proof_lock_last_key > migrations::advisory_lock_key);  // (below 2^63: 19 digits)

// A Bind's value as an advisory lock key, as the server reads one: a text as int8in does (spaces
// around, a sign, digits; normalised here), a binary bigint's eight bytes. Empty when it can be no
// key pgrail owns: NULL (a strict function takes no lock), an int2's or int4's (or oid's) bytes,
// digits beyond bigint, and anything int8in, int4in, oidin or int8recv refuse (the server fails
// such a Bind of a lock's key, and takes no lock).
std::string bound_lock_key(const std::optional<std::string_view>& value, std::int16_t format) {
    if (!value) return {};
    if (format == 1) {
        if (value->size() != 8) return {};
        std::uint64_t bits = 0;
        for (const char byte : *value) bits = bits << 8 | static_cast<unsigned char>(byte);
        return std::to_string(static_cast<std::int64_t>(bits));
    }
    if (format != 0) return {};
    std::string_view text = *value;
    const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
    while (!text.empty() && space(text.front())) text.remove_prefix(1);
    while (!text.empty() && space(text.back())) text.remove_suffix(1);
    std::string key;
    if (!text.empty() && (text.front() == '-' || text.front() == '+')) {
        if (text.front() == '-') key = "-";
        text.remove_prefix(1);
    }
    if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos) return {};
    while (text.size() > 1 && text.front() == '0') text.remove_prefix(1);
    if (text.size() > 19) return {};  // beyond bigint: the server refuses it
    key += text;
    return key;
}

// Names of prepared statements and portals are converted from client_encoding, then cut at 63
// bytes, by the server; pgrail cuts them as they come. In ASCII the two agree in every encoding
// (and a name with a byte above 0x7f before its 63rd names nothing ASCII): the names pgrail
// follows are ASCII, and a Parse or followed Bind of another is refused (review 92: under LATIN1
// two names pgrail told apart were one statement to the server).
bool ascii(std::string_view name) {
    return std::all_of(name.begin(), name.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

protocol::ErrorMessage non_ascii_name_error() {
    return {"ERROR", sqlstate::feature_not_supported,
            "pgrail: prepared statement and portal names must be ASCII through pgrail", {},
            "Name prepared statements and portals in ASCII (drivers' generated names are)."};
}

// A Bind that does not match its statement's parameters: PostgreSQL's error for it.
std::optional<protocol::ErrorMessage> bind_mismatch(const protocol::BindMessage& bind,
                                                    const DeferredStatement& deferred) {
    const std::size_t given = bind.parameters.size();
    const std::size_t formats = bind.parameter_formats.size();
    if (given == deferred.client_parameters && (formats <= 1 || formats == given)) return std::nullopt;
    // As PostgreSQL answers such a Bind, before anything runs.
    return protocol::ErrorMessage{
        "ERROR", sqlstate::protocol_violation,
        formats > 1 && formats != given
            ? fmt::format("bind message has {} parameter formats but {} parameters", formats, given)
            : fmt::format("bind message supplies {} parameters, but prepared statement \"{}\" requires {}", given,
                          bind.statement, deferred.client_parameters),
        {}, {}};
}

// Whether a SASLInitialResponse's SCRAM client-first message starts with the GS2 flag "y": the
// client supports channel binding and believes the server does not (RFC 5802, 6).
bool expects_channel_binding(std::string_view body) {
    const auto end_of_mechanism = body.find('\0');
    if (end_of_mechanism == std::string_view::npos || body.substr(0, end_of_mechanism) != "SCRAM-SHA-256") return false;
    const auto data = body.substr(end_of_mechanism + 1);
    return data.size() > 4 + 1 && data[4] == 'y' && data[5] == ',';
}

}  // namespace

SessionProtocol::SessionProtocol(SessionEvents& events, std::shared_ptr<StatementGate> gate,
                                 CancelRegistry& cancel_registry, std::string refusal_marker,
                                 std::size_t max_result_row)
    : events_(events), gate_(std::move(gate)), cancel_registry_(cancel_registry),
      refusal_marker_(std::move(refusal_marker)), max_result_row_(max_result_row) {
    batches_.emplace_back();
}

SessionProtocol::~SessionProtocol() {
    if (client_key_) cancel_registry_.remove(*client_key_);
}

StartupStep SessionProtocol::on_startup_packet(std::string packet) {
    StartupStep step;
    const auto refuse = [&step](const char* code, std::string message) {
        protocol::encode_error_response(step.reply, {"FATAL", code, std::move(message), {}, {}});
        return step;
    };
    const auto parsed = protocol::parse_startup_packet(packet);
    if (!parsed) {
        // Anyone who reaches the port sends this: budgeted (review 100: 3.5 MB in 3 s from a loop).
        if (const auto more = unauthenticated_log_budget().take())
            spdlog::warn("session {}: malformed startup packet from {} ({}){}", context_.session_id,
                         context_.client_address, protocol::hex_dump(packet), *more);
        return refuse(sqlstate::protocol_violation, "invalid startup packet layout: expected terminator as last byte");
    }
    switch (parsed->kind) {
        case protocol::StartupKind::ssl_request:
        case protocol::StartupKind::gssenc_request: {
            // Each is answered once; a second one is read as a StartupMessage of protocol
            // 1234.5679 (or .5680) and refused as such, as PostgreSQL does.
            bool& answered = parsed->kind == protocol::StartupKind::ssl_request ? ssl_answered_ : gss_answered_;
            if (answered) break;
            answered = true;
            // 'S': TLS follows. No TLS here, no GSS encryption ever: 'N' makes clients continue in
            // plain text (or give up, if they require encryption), as PostgreSQL does.
            const bool tls = parsed->kind == protocol::StartupKind::ssl_request && tls_offered_;
            if (tls) gss_answered_ = true;  // PostgreSQL takes no GSSENCRequest inside TLS
            step.kind = tls ? StartupStep::Kind::start_tls : StartupStep::Kind::reply;
            step.reply = tls ? "S" : "N";
            return step;
        }
        case protocol::StartupKind::cancel_request:
            step.kind = StartupStep::Kind::cancel;
            step.cancel_key = {parsed->cancel_pid, parsed->cancel_secret};
            return step;
        case protocol::StartupKind::startup:
            break;
    }
    const auto major = parsed->code >> 16;
    const auto minor = parsed->code & 0xffff;
    if (major < 3) {
        protocol::encode_protocol2_error(
            step.reply,
            fmt::format("FATAL:  unsupported frontend protocol {}.{}: server supports 3.0 to 3.0\n", major, minor));
        return step;
    }
    if (major != 3) {
        return refuse(sqlstate::feature_not_supported,
                      fmt::format("unsupported frontend protocol {}.{}: server supports 3.0 to 3.0", major, minor));
    }
    // A key given twice reaches the policy as it came (evaluate_startup refuses it, audited).
    context_.user = parsed->parameter("user");
    context_.database = parsed->parameter("database");
    if (context_.database.empty()) context_.database = context_.user;
    // PostgreSQL cuts both names to NAMEDATALEN - 1 bytes before it looks them up (postmaster.c,
    // ProcessStartupPacket): the policy decides on the role and database the server will use.
    constexpr std::size_t max_name_bytes = 63;
    if (context_.user.size() > max_name_bytes) context_.user.resize(max_name_bytes);
    if (context_.database.size() > max_name_bytes) context_.database.resize(max_name_bytes);
    context_.application_name = parsed->parameter("application_name");
    if (tls_required_ && !tls_in_use_) {
        // PostgreSQL's words for a client that reaches only `hostssl` lines without TLS.
        if (const auto more = unauthenticated_log_budget().take())
            spdlog::warn("session {}: refused a connection from {} without TLS (tls.client.mode require){}",
                         context_.session_id, context_.client_address, *more);
        step.audit_reason = "a connection without TLS (tls.client.mode require)";
        return refuse(sqlstate::invalid_authorization_specification,
                      fmt::format("no pg_hba.conf entry for host \"{}\", user \"{}\", database \"{}\", no encryption",
                                  context_.client_address, context_.user, context_.database));
    }
    step.kind = StartupStep::Kind::accept;
    // pgrail speaks 3.0 and knows no protocol options (`_pq_.*`): like PostgreSQL 15 it says so
    // with NegotiateProtocolVersion and goes on in 3.0, so the server always sees a 3.0 startup
    // and answers in 3.0 (BackendKeyData and CancelRequest of 3.0's size).
    if (minor > 0 || !parsed->protocol_options.empty()) {
        protocol::encode_negotiate_protocol_version(step.reply, protocol::protocol_version_3, parsed->protocol_options);
        packet.clear();
        protocol::encode_startup_message(packet, protocol::protocol_version_3, parsed->parameters);
    }
    startup_parameters_ = parsed->parameters;
    // A search_path given at startup, as a parameter or in `options` in any of the server's
    // spellings (-c search_path=..., --search-path=..., escaped): one pgrail does not read
    // (SessionContext::search_path_elsewhere).
    const auto squeezed = [](std::string_view text) {
        std::string out;
        for (const char c : text)
            if (c != '\\' && c != '-' && c != '_') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return out;
    };
    for (const auto& [name, value] : startup_parameters_)
        if (squeezed(name) == "searchpath" || (name == "options" && squeezed(value).find("searchpath") != std::string::npos))
            context_.search_path_elsewhere = true;
    startup_bytes_ = std::move(packet);
    return step;
}

void SessionProtocol::log_in_as(const std::string& identity, const std::string& role) {
    bool has_database = false;
    for (auto& [name, value] : startup_parameters_) {
        if (name == "user") value = role;
        if (name == "database" && !value.empty()) has_database = true;
    }
    startup_bytes_.clear();
    protocol::encode_startup_message(startup_bytes_, protocol::protocol_version_3, startup_parameters_);
    context_.identity = identity;
    context_.user = role;
    if (!has_database) context_.database = role;
}

void SessionProtocol::start() {
    phase_ = Phase::authenticating;
    close_batch(0);  // the startup packet earns the first ReadyForQuery
}

void SessionProtocol::end(std::string sqlstate, std::string message, std::string detail, std::string hint) {
    if (!ending_) ending_ = Ending{std::move(sqlstate), std::move(message), std::move(detail), std::move(hint)};
    phase_ = Phase::ending;
}

std::uint64_t SessionProtocol::requested() const { return answered_ + batches_.size() - 1; }

bool SessionProtocol::at_rest() const {
    return phase_ == Phase::ready && logged_in() && batches_.size() == 1 && !open_batch().extended &&
           transaction_status_ == 'I';
}

SessionProtocol::Batch& SessionProtocol::batch_of(char tag) {
    const bool own_ready = tag == front::query || tag == front::function_call;
    return own_ready && batches_.size() > 1 ? batches_[batches_.size() - 2] : open_batch();
}

// ---- the client's frames ----

bool SessionProtocol::client_inspects(char tag, std::size_t total_size) const {
    // Until the server has authenticated the client every frame is read whole, so that the shell
    // sees each one's header before anything of it moves. A Describe is a few bytes: each is
    // counted (its answer may hide pgrail's own parameters, or plan a guarded result).
    if (!logged_in() || tag == front::query || tag == front::parse || tag == front::function_call ||
        tag == front::describe || frame_dropped_ || frame_breaks_copy_ ||
        (tag == front::flush && total_size != protocol::header_size) ||
        (copy_settle_ == CopySettle::outcome_pending && (tag == front::copy_done || tag == front::copy_fail)))
        return true;
    // Binds and Closes only while a prepared statement reads pgrail commands or may change
    // client_encoding (and Executes then too: a portal runs on in later batches); an Execute
    // while a guard watches results (pgrail's Describe goes before it).
    return ((!deferred_.empty() || following_encoding_statements() || following_registered() ||
             context_.prepared_lock_keys) &&
            (tag == front::bind || tag == front::close)) ||
           (tag == front::execute && (guarding_ || following_encoding_statements() || !registered_portals_.empty()));
}

void SessionProtocol::on_client_header(char tag) {
    // During COPY FROM STDIN the server ignores Sync and Flush. pgrail does not pass them on: were
    // they counted, the count of answers owed would hang on whether the server still copies when it
    // reads them (an error may have ended the copy meanwhile, and then it answers each Sync).
    frame_dropped_ = phase_ == Phase::copy_in && (tag == front::sync || tag == front::flush);
    if (skip_to_sync_) {
        if (tag == front::sync) {
            skip_to_sync_ = false;  // it ends the failed copy's batch, as on the server
        } else if (tag != front::terminate) {
            frame_dropped_ = true;
            frame_breaks_copy_ = false;
            return;
        }
    }
    // Any other message there ends the copy on the server with an error that consumes it; copy
    // data the server did not ask for while it owes answers may be read by a COPY it has yet to
    // start. Neither can be counted: the session ends (on_client_frame). libpq sends neither.
    frame_breaks_copy_ =
        (phase_ == Phase::copy_in && !frame_dropped_ && !is_copy_in_message(tag) && tag != front::terminate) ||
        (phase_ == Phase::ready && is_copy_in_message(tag) && requested() > answered_);
    if (frame_dropped_ || frame_breaks_copy_) return;
    if (phase_ == Phase::copy_in || phase_ == Phase::copy_in_failed) {
        const bool copy_end = tag == front::copy_done || tag == front::copy_fail;
        // How the copy ends decides what the Syncs sent behind it earn (holding_client).
        if (copy_end && phase_ == Phase::copy_in && copy_took_syncs_ && copy_settles_)
            copy_settle_ = CopySettle::outcome_pending;
        if (copy_end || !is_copy_in_message(tag)) phase_ = Phase::ready;
    }
    // (Copy messages are the copy's, read by the server inside it.)
    if (tag != front::sync && !is_copy_in_message(tag)) {
        open_batch().has_messages = true;
        if (tag != front::flush) open_batch().last_message = tag;
    }
    if (closes_batch(tag)) close_batch(tag);
    if (tag == front::terminate) client_terminated_ = true;
    if (awaits_sync(tag)) open_batch().extended = true;
    if (tag == front::execute) {
        open_batch().executed = true;
        ++open_batch().executes_sent;
        ++executes_sent_;
    }
    // What the rule does to results (ResultGuard) is asked per statement: it follows reloads.
    if (tag == front::query || tag == front::execute) refresh_guard();
}

ClientStep SessionProtocol::on_client_frame(char tag, std::string_view frame, Outbound& out) {
    ClientStep step;
    step.statement.tag = tag;
    step.statement.frame = frame;
    const auto body = frame.substr(protocol::header_size);
    if (!logged_in()) {
        if (tag == front::password && std::exchange(channel_binding_withheld_, false) &&
            expects_channel_binding(body)) {
            // The client is on TLS and, not offered -PLUS, says it could bind ("y"): the server,
            // on TLS too, would refuse that as a downgrade in words that name neither pgrail nor a
            // way out (and libpq's sslmode=prefer then logs in again without TLS).
            // (Anyone who reaches the port can cause it: a burst, then 10 a second.)
            static AuditBudget log_budget(10.0, 100.0);
            if (const auto left_out = log_budget.take())
                spdlog::warn("session {}: a SCRAM login from {} expects channel binding, which cannot pass through "
                             "pgrail (auth.mode passthrough, TLS on both legs){}",
                             context_.session_id, context_.client_address,
                             *left_out > 0 ? fmt::format(" ({} more not logged before it)", *left_out) : std::string());
            end(sqlstate::protocol_violation,
                "pgrail: SCRAM channel binding cannot pass through pgrail, which holds one TLS session with the "
                "client and another with the server; connect with channel_binding=disable, or ask the operator "
                "for auth.mode: pgrail (pgrail then checks the password and binds each leg itself)");
            step.kind = ClientStep::Kind::end;
            return step;
        }
        // Read whole only while authentication holds frames: the login's own go on.
        out.forward(frame);
        if (tag == front::password) events_.login_turn(true);
        return step;
    }
    const auto malformed = [this, &step](const char* message) {
        end(sqlstate::protocol_violation, message);
        step.kind = ClientStep::Kind::end;
        return step;
    };
    if (frame_dropped_) return step;  // a Sync or Flush inside COPY data: the server would ignore it
    if (copy_settle_ == CopySettle::outcome_pending && (tag == front::copy_done || tag == front::copy_fail)) {
        out.forward(frame);
        out.inject(protocol::encode_flush);  // the server sends the copy's outcome at once
        return step;
    }
    if (frame_breaks_copy_)
        return malformed("pgrail: during COPY FROM STDIN only CopyData, CopyDone and CopyFail may be sent, and only "
                         "once the server has asked for them");
    // A batch that failed (a refusal's stand-in, or the server's own error) skips every message
    // until Sync and answers none: what pgrail owes such a batch would grow for as long as its
    // client sends without a Sync. Past these bounds the session ends, as on a limit.
    constexpr std::size_t max_refusals_per_batch = 1024;           // each holds its error (~1 KB)
    constexpr std::size_t max_owed_describes_per_batch = 1 << 16;  // 40 bytes each
    if (const Batch& batch = open_batch();
        batch.refusals.size() >= max_refusals_per_batch || batch.describes.owed() >= max_owed_describes_per_batch) {
        end(sqlstate::program_limit_exceeded,
            fmt::format("pgrail: more than {} refused statements or {} unanswered Describes without a Sync",
                        max_refusals_per_batch, max_owed_describes_per_batch));
        step.kind = ClientStep::Kind::end;
        return step;
    }
    // After extended-protocol messages without a Sync, PostgreSQL answers a Query or FunctionCall
    // only when none of them failed (else it skips to the Sync, the Query unanswered): whether it
    // earns a ReadyForQuery cannot be known when it is sent, and a wrong count would pair the
    // server's answers with the wrong requests (refusals, masking, max_rows) for the rest of the
    // session. No driver sends one there (libpq refuses PQsendQuery in pipeline mode).
    if ((tag == front::query || tag == front::function_call) && batch_of(tag).extended)
        return malformed("pgrail: a Query or FunctionCall after extended-protocol messages must follow a Sync");
    switch (tag) {
        case front::query:
            if (const auto query = protocol::parse_query(body)) {
                step.kind = ClientStep::Kind::check_statement;
                step.statement.sql = *query;
                return step;
            }
            return malformed("invalid Query message: missing terminator");
        case front::parse:
            if (const auto parse = protocol::parse_parse(body)) {
                if (!ascii(parse->statement_name)) {
                    refuse_bind(non_ascii_name_error(), out);
                    return step;
                }
                step.kind = ClientStep::Kind::check_statement;
                step.statement.sql = parse->query;
                step.statement.parse_name = parse->statement_name;
                step.statement.parse_types = parse->parameter_types;
                return step;
            }
            return malformed("invalid Parse message format");
        case front::flush:
            // PostgreSQL fails a Flush with a body ("invalid message format") and then skips every
            // message to the next Sync, a Query's too: a count of answers pgrail cannot keep.
            if (!body.empty()) return malformed("invalid Flush message format");
            break;
        case front::function_call:
            if (body.size() < 4) return malformed("invalid FunctionCall message format");
            step.kind = ClientStep::Kind::check_function_call;
            step.function_oid = protocol::read_u32(body.data());
            return step;
        case front::bind: {
            if (deferred_.empty() && !following_encoding_statements() && !following_registered() &&
                !context_.prepared_lock_keys)
                break;
            auto bind = protocol::parse_bind(body);
            if (!bind) return malformed("invalid Bind message format");
            if (!ascii(bind->portal)) {  // (the portals pgrail follows are named in ASCII)
                refuse_bind(non_ascii_name_error(), out);
                return step;
            }
            if (following_registered() && !bind_registered(*bind, out)) return step;
            if (every_bind_may_change_encoding_ || binds_encoding_statement(bind->statement)) {
                expect_encoding_change(open_batch());
                follow_encoding_portal(bind->portal);
            } else {
                std::erase(encoding_portals_, bind->portal);
            }
            step.lock_keys = bound_lock_keys(*bind);
            const auto found = deferred_.empty() ? deferred_.end() : deferred_.find(std::string(bind->statement));
            if (found != deferred_.end()) {
                if (const auto mismatch = bind_mismatch(*bind, found->second)) {
                    refuse_bind(*mismatch, out);
                    return step;
                }
                step.deferred = found->second;  // a copy: the map may change while commands run
            } else if (step.lock_keys.empty()) {
                break;
            }
            step.kind = step.lock_keys.empty() ? ClientStep::Kind::bind_deferred : ClientStep::Kind::check_lock_keys;
            step.bind = std::move(bind);
            return step;
        }
        case front::describe:
            if (const auto target = protocol::parse_describe_target(body)) {
                DescribeAnswer answer;
                if (target->kind == 'S') {
                    // A statement's Describe is answered by a ParameterDescription first.
                    answer.statement = true;
                    const auto found = deferred_.find(std::string(target->name));
                    if (found != deferred_.end()) answer.hidden_parameters = found->second.calls.size();
                }
                open_batch().describes.push_back(answer);
            }
            break;
        case front::execute:
            // A portal of a statement that may change client_encoding can run on in a later batch
            // (in a transaction, Execute with a row limit): it changes it there, where no Bind is.
            if (every_execute_may_change_encoding_ ||
                std::find(encoding_portals_.begin(), encoding_portals_.end(),
                          protocol::server_object_name(body.substr(0, body.find('\0')))) !=
                    encoding_portals_.end())
                expect_encoding_change(open_batch());
            if (!registered_portals_.empty()) {
                const auto portal = protocol::server_object_name(body.substr(0, body.find('\0')));
                const auto found = std::find_if(registered_portals_.begin(), registered_portals_.end(),
                                                [&](const RegisteredPrepared& entry) { return entry.name == portal; });
                if (found != registered_portals_.end()) {
                    if (found->batch != batch_serial_) {
                        end(sqlstate::feature_not_supported,
                            "pgrail: a registered migration's statement runs in the batch it was bound in (before "
                            "its Sync); this portal was bound in an earlier one");
                        step.kind = ClientStep::Kind::end;
                        return step;
                    }
                    // A utility statement resolves its names when executed: what changed them since
                    // the Bind refuses it here, in the Execute's place (the server skips to the Sync).
                    if (found->epoch != resolution_epoch_) {
                        registered_portals_.erase(found);
                        refuse_bind(names_moved_error(), out);
                        return step;
                    }
                    // A batch keeps each registered statement it runs until its answer: bounded.
                    constexpr std::size_t max_registered_per_batch = 1024;
                    if (open_batch().registered.size() >= max_registered_per_batch) {
                        end(sqlstate::program_limit_exceeded,
                            fmt::format("pgrail: more than {} registered migration statements executed without a Sync",
                                        max_registered_per_batch));
                        step.kind = ClientStep::Kind::end;
                        return step;
                    }
                    // Its completion is the batch's next; a portal runs a statement once.
                    MigratorStatement statement = std::move(found->statement);
                    statement.index = open_batch().executes_sent - 1;
                    open_batch().registered.push_back(std::move(statement));
                    registered_portals_.erase(found);
                }
            }
            if (guarding_) {
                describe_before_execute(frame, out);
                return step;
            }
            break;
        case front::close:
            if (const auto target = protocol::parse_describe_target(body); target && target->kind == 'S') {
                deferred_.erase(std::string(target->name));
                forget_encoding_statement_after(target->name, open_batch());
                std::erase_if(registered_statements_,
                              [&](const RegisteredPrepared& entry) { return entry.name == target->name; });
            } else if (target) {
                std::erase(encoding_portals_, target->name);
                std::erase_if(registered_portals_,
                              [&](const RegisteredPrepared& entry) { return entry.name == target->name; });
            }
            break;
        default:
            break;
    }
    out.forward(frame);
    return step;
}

void SessionProtocol::apply(const GateVerdict& verdict, const ClientStatement& statement, Outbound& out) {
    // A Query drops the unnamed prepared statement (as PostgreSQL does).
    if (statement.tag == front::query && !deferred_.empty()) deferred_.erase(std::string());
    // ... and the unnamed portal; a Parse replaces a statement of its name.
    if (following_registered()) {
        const auto named = [](std::string_view name) {
            return [name](const RegisteredPrepared& entry) { return entry.name == name; };
        };
        if (statement.tag == front::query) {
            std::erase_if(registered_statements_, named(""));
            std::erase_if(registered_portals_, named(""));
        } else if (statement.tag == front::parse) {
            std::erase_if(registered_statements_, named(statement.parse_name));
        }
    }
    // A statement prepared again (or refused) under a name no longer reads pgrail commands (until
    // defer() says it does); DEALLOCATE and DISCARD ALL may drop any.
    if (statement.tag == front::parse && !deferred_.empty()) deferred_.erase(std::string(statement.parse_name));
    if (statement.tag == front::parse || verdict.keeps_for_later || !verdict.temporary_relations.empty() ||
        verdict.makes_temporary_types)
        context_.holds_checked_work = true;
    if (verdict.kind == GateVerdict::Kind::intercept) return;
    if (verdict.forgets_prepared) deferred_.clear();
    // A SQL EXECUTE may run a statement the session prepared to change client_encoding.
    const bool changes_encoding =
        verdict.changes_encoding || (verdict.executes_prepared && following_encoding_statements());
    if (changes_encoding && statement.tag != front::parse) {
        // (A SET of the encoding in force changes nothing: pg_restore's, drivers' resets.)
        if (!verdict.keeps_encoding) expect_encoding_change(batch_of(statement.tag));  // a refused text's too
    }
    if (statement.tag == front::parse && verdict.kind == GateVerdict::Kind::forward) {
        if (changes_encoding) {
            follow_encoding_statement(statement.parse_name);
            // A statement prepared before may EXECUTE this one, at any Bind or Execute (review 94).
            if (context_.prepared_executes) every_bind_may_change_encoding_ = every_execute_may_change_encoding_ = true;
        } else {
            forget_encoding_statement_after(statement.parse_name, open_batch());
        }
        // Sticky: an EXECUTE prepared now may run, at any later Bind, a statement prepared later
        // (the policy refuses advisory locks by parameter from then on), and a Bind's values are
        // read as lock keys from the first statement that takes one by parameter.
        if (verdict.executes_prepared) context_.prepared_executes = true;
        if (!verdict.bound_lock_keys.empty()) context_.prepared_lock_keys = true;
    } else if (statement.tag == front::query) {
        forget_encoding_statement_after("", batch_of(statement.tag));  // a Query drops the unnamed statement
    }
    // Where the session's names resolve: what changes it ends the registered statements
    // prepared before (bind_registered).
    for (const std::string& name : verdict.temporary_relations) {
        auto& known = context_.temporary_relations;
        if (std::find(known.begin(), known.end(), name) != known.end()) continue;
        ++resolution_epoch_;
        if (name != "*" && known.size() < SessionContext::max_temporary_relations) {
            known.push_back(name);
        } else {
            context_.many_temporary_relations = true;
        }
    }
    if (verdict.sets_search_path_elsewhere && !std::exchange(context_.search_path_elsewhere, true)) ++resolution_epoch_;
    if (verdict.makes_temporary_types && !std::exchange(context_.temporary_types, true)) ++resolution_epoch_;
    if (verdict.kind == GateVerdict::Kind::refuse) {
        refuse(verdict.error, statement, out, verdict.refused_offset);
        return;
    }
    if (!verdict.migrator_statements.empty()) {
        if (statement.tag == front::parse) {
            // (One statement: a Parse holds no more.) Past the bound, refused rather than unfollowed.
            if (registered_statements_.size() >= max_followed_names) {
                refuse({"ERROR", sqlstate::program_limit_exceeded,
                        fmt::format("pgrail: more than {} prepared statements of registered migrations at once",
                                    max_followed_names),
                        {}, "Close or run the ones prepared before, or send the statements as queries."},
                       statement, out);
                return;
            }
            registered_statements_.push_back(
                {std::string(statement.parse_name), verdict.migrator_statements.front(), batch_serial_, resolution_epoch_});
        } else {
            // A Query's statements complete in their order, in the batch the Query makes.
            auto& registered = batch_of(statement.tag).registered;
            registered.insert(registered.end(), verdict.migrator_statements.begin(), verdict.migrator_statements.end());
        }
    }
    out.forward(statement.frame);
}

std::vector<std::string> SessionProtocol::bound_lock_keys(const protocol::BindMessage& bind) const {
    std::vector<std::string> keys;
    if (!context_.prepared_lock_keys) return keys;
    const auto& formats = bind.parameter_formats;
    // (Formats that do not match the values: the server refuses the Bind.)
    if (formats.size() > 1 && formats.size() != bind.parameters.size()) return keys;
    for (std::size_t index = 0; index < bind.parameters.size(); ++index) {
        const std::int16_t format = formats.empty() ? 0 : formats.size() == 1 ? formats.front() : formats[index];
        // (Only what could be one of pgrail's keys goes to the gate: they all have 19 digits.)
        if (auto key = bound_lock_key(bind.parameters[index], format); key.size() == pgrail_key_digits)
            keys.push_back(std::move(key));
    }
    return keys;
}

bool SessionProtocol::binds_encoding_statement(std::string_view name) const {
    const auto& replaced = open_batch().replaced_encoding_statements;
    return std::any_of(encoding_statements_.begin(), encoding_statements_.end(),
                       [&](const EncodingStatement& entry) { return entry.name == name; }) &&
           std::find(replaced.begin(), replaced.end(), name) == replaced.end();
}

void SessionProtocol::follow_encoding_statement(std::string_view name) {
    std::erase(open_batch().replaced_encoding_statements, name);
    for (auto& entry : encoding_statements_)
        if (entry.name == name) {
            entry.batch = batch_serial_;
            return;
        }
    // Too many to follow by name (each Bind looks them up): every Bind counts from now on.
    if (encoding_statements_.size() >= max_followed_names) {
        every_bind_may_change_encoding_ = true;
        return;
    }
    encoding_statements_.push_back({std::string(name), batch_serial_});
}

void SessionProtocol::forget_encoding_statement_after(std::string_view name, Batch& batch) {
    const bool followed = std::any_of(encoding_statements_.begin(), encoding_statements_.end(),
                                      [&](const EncodingStatement& entry) { return entry.name == name; });
    auto& replaced = batch.replaced_encoding_statements;
    if (followed && std::find(replaced.begin(), replaced.end(), name) == replaced.end()) replaced.emplace_back(name);
}

protocol::ErrorMessage SessionProtocol::names_moved_error() {
    return {"ERROR", "55000",
            "pgrail: since this registered migration's statement was prepared, the session made a temporary relation "
            "or type, or set a search_path: its names may resolve elsewhere now",
            {},
            "Run it in a new connection, without temporary relations or types and with the role's own search_path, "
            "or with pgrail migrate up."};
}

bool SessionProtocol::bind_registered(const protocol::BindMessage& bind, Outbound& out) {
    const auto named = [](std::string_view name) {
        return [name](const RegisteredPrepared& entry) { return entry.name == name; };
    };
    std::erase_if(registered_portals_, named(bind.portal));
    const auto found = std::find_if(registered_statements_.begin(), registered_statements_.end(), named(bind.statement));
    if (found == registered_statements_.end()) return true;
    if (found->batch != batch_serial_) {
        refuse_bind({"ERROR", "55000",
                     "pgrail: a registered migration's statement runs in the batch it was prepared in (before its "
                     "Sync)",
                     {},
                     "Prepare it again and run it in the same batch (Parse, Bind, Execute, Sync), or send it as a "
                     "query."},
                    out);
        return false;
    }
    if (found->epoch != resolution_epoch_) {
        refuse_bind(names_moved_error(), out);
        return false;
    }
    if (registered_portals_.size() >= max_followed_names) {
        refuse_bind({"ERROR", sqlstate::program_limit_exceeded,
                     fmt::format("pgrail: more than {} portals of registered migrations at once", max_followed_names),
                     {}, "Execute or close the portals bound before."},
                    out);
        return false;
    }
    registered_portals_.push_back({std::string(bind.portal), found->statement, batch_serial_, resolution_epoch_});
    return true;
}

// The refused statement is replaced by one that fails in the server's parse analysis (a text
// cast to integer), so the server itself fails at that point: the transaction, pipeline and Sync
// semantics are PostgreSQL's own. The text says in the server's log that pgrail refused it and
// why; the error is rewritten into the policy's error on the way back.
void SessionProtocol::refuse(const protocol::ErrorMessage& error, const ClientStatement& statement, Outbound& out,
                             std::size_t refused_offset) {
    const auto id = next_refusal_id_++;
    batch_of(statement.tag).refusals.push_back(PendingRefusal{id, error});
    const auto stand_in = refusal_stand_in(error, refusal_marker_, id);
    if (statement.tag == front::parse) {
        out.inject(protocol::encode_parse, statement.parse_name, stand_in, statement.parse_types);
    } else {
        // Statements before the refused one run, as they would before a failing statement.
        // A FunctionCall becomes a Query: both are answered by an error and ReadyForQuery.
        const auto prefix = statement.sql.substr(0, std::min(refused_offset, statement.sql.size()));
        out.inject(protocol::encode_query, fmt::format("{};{}", prefix, stand_in));
    }
}

std::optional<protocol::ErrorMessage> SessionProtocol::defer(const GateVerdict& verdict,
                                                             const ClientStatement& statement, Outbound& out) {
    // Nothing runs at Parse: the server prepares a text whose pgrail relations read one added
    // json parameter each; the commands run when the client binds it.
    auto types = protocol::parse_parameter_types(statement.parse_types).value_or(std::vector<std::uint32_t>{});
    const std::size_t client_parameters = std::max(types.size(), verdict.highest_parameter);
    constexpr std::size_t max_parameters = 65535;  // the protocol's int16 count
    if (client_parameters + verdict.calls.size() > max_parameters) {
        return protocol::ErrorMessage{"ERROR", sqlstate::program_limit_exceeded,
                                      "pgrail: too many parameters for a statement that reads pgrail commands", {},
                                      "pgrail adds one parameter per pgrail command to the statement."};
    }
    std::string text;
    try {
        text = text_with_parameters(statement.sql, verdict.calls, client_parameters + 1);
    } catch (const std::exception& e) {
        return protocol::ErrorMessage{"ERROR", sqlstate::undefined_function, fmt::format("pgrail: {}", e.what()), {},
                                      {}};
    }
    // Held here until they are closed, as PostgreSQL holds prepared statements: bounded like the
    // other names pgrail follows (each text is at most max_analyzed_size, each name 63 bytes).
    if (deferred_.size() >= max_followed_names && !deferred_.contains(std::string(statement.parse_name)))
        return protocol::ErrorMessage{"ERROR", sqlstate::program_limit_exceeded,
                                      fmt::format("pgrail: more than {} prepared statements that read pgrail commands "
                                                  "at once",
                                                  max_followed_names),
                                      {}, "Close the ones prepared before (Close, DEALLOCATE), or send the commands "
                                          "as queries."};
    types.resize(client_parameters, 0);
    types.insert(types.end(), verdict.calls.size(), oid_json);
    deferred_[std::string(statement.parse_name)] = DeferredStatement{verdict.calls, client_parameters};
    out.inject(protocol::encode_parse, statement.parse_name, text, protocol::encode_parameter_types(types));
    return std::nullopt;
}

void SessionProtocol::substitute_query(std::string_view text, Outbound& out) {
    out.inject(protocol::encode_query, text);
}

void SessionProtocol::refuse_bind(const protocol::ErrorMessage& error, Outbound& out) {
    // Refused like a failing Parse (of a statement of pgrail's own name, so that no statement of
    // the client's is touched: the refusal marker, which no client knows): the server skips to
    // the Sync, and answers the refusal.
    ClientStatement stand_in;
    stand_in.tag = front::parse;
    stand_in.parse_name = refusal_marker_;
    stand_in.parse_types = std::string_view("\0\0", 2);
    refuse(error, stand_in, out);
}

void SessionProtocol::send_probe(std::string_view statement_name, Outbound& out) {
    open_batch().describes.push_back(DescribeAnswer{.statement = true, .probe = true});
    probe_ = Probe::waiting;
    out.inject(protocol::encode_describe, 'S', statement_name);
    out.inject(protocol::encode_flush);
}

// ---- the server's frames ----

bool SessionProtocol::server_inspects(char tag, std::size_t total_size) {
    switch (tag) {
        case back::error_response:
            if (total_size <= inspected_error_max) return true;
            break;
        case back::authentication:
        case back::backend_key_data:
        case back::ready_for_query:
        case back::parameter_status:
        case back::parameter_description:
            return true;
        case back::command_complete:
            if (migrator_runs_.watching() || !batches_.front().registered.empty()) return true;
            break;
        default:
            break;
    }
    if (hide_frame_) return true;
    return result_frame_ != ResultFrame::pass && result_inspects(total_size);
}

void SessionProtocol::on_server_header(char tag, Outbound& out) {
    hide_frame_ = false;
    if ((copy_settle_ == CopySettle::marker_due || copy_settle_ == CopySettle::marker_sent ||
         copy_settle_ == CopySettle::marker_answered) &&
        (tag == back::ready_for_query ||
         ((tag == back::close_complete || tag == back::error_response) && copy_settle_ == CopySettle::marker_sent))) {
        hide_frame_ = true;  // settle_copy_frame() decides
        return;
    }
    switch (tag) {
        case back::row_description:
        case back::no_data: {
            // The answer to the oldest Describe of the batch being answered, if any.
            answering_.reset();
            auto& describes = batches_.front().describes;
            if (!describes.empty()) {
                answering_ = describes.front();
                describes.pop_front();
                if (answering_->probe) hide_frame_ = true;  // the rest of the probe's answer
            }
            break;
        }
        case back::error_response:
            // The server skips the rest of this batch, a probe of pgrail's included.
            batch_failed_ = true;
            migrator_runs_.on_error();
            if (probe_ == Probe::waiting) {
                probe_ = Probe::skipped;
                events_.server_answered();
            }
            if (phase_ == Phase::copy_out) phase_ = Phase::ready;
            if (phase_ == Phase::copy_in) phase_ = Phase::copy_in_failed;  // the server left the copy
            // Syncs sent behind the COPY were taken to be read (and ignored) in the copy; if it
            // failed before reading anything (COPY ... (FREEZE) of a table not made in this
            // transaction), the server answers each of them after all. Behind an Execute, pgrail
            // asks the server which (holding_client); behind a Query (which no client sends) the
            // session ends rather than pair answers with the wrong batches.
            if (std::exchange(copy_took_syncs_, false)) {
                if (copy_settles_) {
                    copy_settle_ = CopySettle::marker_due;
                    settle_answers_.clear();
                    events_.server_answered();  // (wakes a client loop waiting for the outcome)
                } else {
                    end(sqlstate::protocol_violation,
                        "pgrail: a COPY FROM STDIN failed with a Sync sent behind its Query, which the server may or "
                        "may not have read: the session cannot be kept in step");
                    stop_after_frame_ = true;
                }
            }
            break;
        case back::copy_in_response:
            if (phase_ == Phase::ready) {
                phase_ = Phase::copy_in;
                // Its rows arrive later, into a statement checked now (a reload between them).
                context_.holds_checked_work = true;
                if (!enter_copy_in()) {
                    end(sqlstate::protocol_violation,
                        "pgrail: messages pipelined behind COPY FROM STDIN, which the server reads as copy data");
                    stop_after_frame_ = true;
                }
            }
            break;
        case back::copy_out_response:
        case back::copy_both_response:
            if (phase_ == Phase::ready) phase_ = Phase::copy_out;
            break;
        case back::copy_done:
            if (phase_ == Phase::copy_out) phase_ = Phase::ready;
            break;
        case back::command_complete:
            // A COPY that completed read all that was sent before its end, the Syncs behind it too.
            copy_took_syncs_ = false;
            if (copy_settle_ == CopySettle::outcome_pending) {
                copy_settle_ = CopySettle::none;
                events_.server_answered();
            }
            ++batches_.front().completions_seen;
            break;
        case back::empty_query_response:
        case back::portal_suspended:
            ++batches_.front().completions_seen;
            break;
        default:
            break;
    }
    if (!watching_results()) return;
    on_result_header(tag);
    // Whatever else reaches the client goes after the rows gathered so far.
    if (result_frame_ != ResultFrame::mask && result_frame_ != ResultFrame::drop) flush_rows(out);
}

ServerStep SessionProtocol::on_server_frame(char tag, std::string_view frame, Outbound& out) {
    if (hide_frame_ &&
        (tag == back::ready_for_query || tag == back::close_complete || tag == back::error_response) &&
        copy_settle_ != CopySettle::none && copy_settle_ != CopySettle::outcome_pending) {
        settle_copy_frame(tag, frame, out);
        return std::exchange(stop_after_frame_, false) ? ServerStep::stop : ServerStep::done;
    }
    if (result_frame_ != ResultFrame::pass) {
        const auto step = on_result_frame(frame, out);
        result_frame_ = ResultFrame::pass;
        if (step) return *step;
    }
    if (!rewrite_server_frame(tag, frame, out)) out.forward(frame);
    if (std::exchange(stop_after_frame_, false)) return ServerStep::stop;
    return ServerStep::done;
}

void SessionProtocol::send_settle_marker(Outbound& out) {
    // The first Sync ends the failed batch (the server skips to a Sync after an error in the
    // extended protocol) or earns an answer of its own; the CloseComplete of a Close then marks
    // the end of what the server answered before it. (A Close of a statement no one has changes
    // nothing and fails not; an empty Query would drop the client's unnamed statement.)
    out.inject(protocol::encode_sync);
    out.inject(protocol::encode_close, 'S', refusal_marker_);
    out.inject(protocol::encode_sync);
    copy_settle_ = CopySettle::marker_sent;
}

// A ReadyForQuery, or the marker's CloseComplete, while a failed COPY's Syncs are settled: those
// before the marker's answer are the client's Syncs that the copy did not read, and pgrail's
// Sync's last.
void SessionProtocol::settle_copy_frame(char tag, std::string_view frame, Outbound& out) {
    const auto lost_count = [this] {
        end(sqlstate::protocol_violation, "pgrail: lost count of the server's answers: the session cannot be kept in step");
        stop_after_frame_ = true;
    };
    if (tag == back::error_response) {
        const auto fields = protocol::parse_error_fields(frame.substr(protocol::header_size));
        const auto severity = [&](std::string_view level) {
            return protocol::error_field(*fields, 'V') == level || protocol::error_field(*fields, 'S') == level;
        };
        if (fields && (severity("FATAL") || severity("PANIC"))) {
            server_sent_fatal_ = true;  // the session's end, in the server's words
            out.forward(frame);
            return;
        }
    }
    if (tag == back::close_complete || tag == back::error_response) {
        // (An error: a cancel that came late, say.) Only after the first Sync's answer at least.
        if (copy_settle_ != CopySettle::marker_sent || settle_answers_.empty()) return lost_count();
        copy_settle_ = CopySettle::marker_answered;
        return;
    }
    if (copy_settle_ != CopySettle::marker_answered) {
        if (settle_answers_.size() > syncs_taken_) return lost_count();  // (the taken Syncs' and pgrail's: no more)
        settle_answers_.emplace_back(frame);
        return;
    }
    if (settle_answers_.empty()) return lost_count();  // pgrail's Sync earned one
    settle_answers_.pop_back();
    bool changed_encoding = false;
    if (settle_answers_.empty()) {
        // The copy read the client's Syncs: PostgreSQL would skip to the client's next Sync.
        skip_to_sync_ = true;
    } else {
        // The first of them ended the copy's batch on the server: what the client sends from now
        // on is a batch of its own (the copy's is open again, and empty).
        for (auto& answer : settle_answers_) out.inject(std::move(answer));
        changed_encoding = batches_.front().changes_encoding;
        batches_.front().clear();
        batch_failed_ = false;
        answering_.reset();
        result_ = {};
    }
    settle_answers_.clear();
    if (const auto status = protocol::parse_ready_for_query(frame.substr(protocol::header_size)))
        transaction_status_ = *status;
    encoding_change_answered(changed_encoding, transaction_status_ == 'I');  // (pgrail's Sync's: the latest)
    copy_settle_ = CopySettle::none;
    events_.server_answered();
}

// The server copies in, from the statement of the batch it answers (the front one). Whatever the
// client sent after it so far, the server reads during the copy: Syncs it ignores, which pgrail
// counted and now forgets (libpq sends Parse, Bind, Execute and Sync at once, before it learns of
// the copy); anything else would end the copy in an error pgrail cannot count: false.
bool SessionProtocol::enter_copy_in() {
    if (batches_.size() == 1) return true;  // no Sync behind the COPY yet: its batch is still open
    // Nothing but Syncs behind the COPY's Execute (the one being answered) in its own batch either:
    // the server reads anything else as copy data, and the copy fails on it.
    const Batch& copying = batches_.front();
    if (copying.last_message != front::query &&
        (copying.last_message != front::execute || copying.executes_sent != copying.completions_seen + 1))
        return false;
    for (std::size_t index = 1; index < batches_.size(); ++index) {
        const Batch& batch = batches_[index];
        const bool open = index + 1 == batches_.size();
        if (batch.has_messages || (!open && !batch.closed_by_sync)) return false;
    }
    const bool reopen = batches_.front().closed_by_sync;  // that Sync, too, is read during the copy
    copy_took_syncs_ = reopen || batches_.size() > 2;
    copy_settles_ = reopen;  // (an Execute's batch: a failure leaves the server skipping to a Sync)
    syncs_taken_ = (reopen ? 1 : 0) + (batches_.size() - 2);
    while (batches_.size() > 1) {
        if (batches_.back().changes_encoding) --batches_changing_encoding_;
        batches_.pop_back();
    }
    if (!reopen) close_batch(front::query);  // a Query's own answer follows the copy
    return true;
}

bool SessionProtocol::on_ready_for_query(std::string_view body) {
    copy_took_syncs_ = false;
    // Every Describe of an answered batch was answered, unless an error made the server skip the
    // rest. A ReadyForQuery before that means the server counts the client's batches otherwise
    // than pgrail does (a message it read differently): the session ends rather than pair answers
    // (masking, max_rows, pgrail's own Describes) with the wrong requests.
    if (!batch_failed_ && batches_.size() > 1 && batches_.front().describes.owed() > 0) {
        end(sqlstate::protocol_violation, "pgrail: lost count of the server's answers: the session cannot be kept in step");
        stop_after_frame_ = true;
    }
    if (const auto status = protocol::parse_ready_for_query(body)) {
        transaction_status_ = *status;
        migrator_runs_.on_ready(*status);
    }
    // The batch is answered: what it still expected (answers an error made the server skip,
    // refusals) can no longer come. A change of client_encoding in it has been reported
    // (ParameterStatus) by now, and is final once no transaction block is open.
    encoding_change_answered(batches_.front().changes_encoding, transaction_status_ == 'I');
    if (!batch_failed_) {
        // Prepared again as another text, or closed, and the server did all of it: forgotten
        // (unless prepared again as such a statement in a batch after it).
        const Batch& answered = batches_.front();
        for (const std::string& name : answered.replaced_encoding_statements)
            std::erase_if(encoding_statements_, [&](const EncodingStatement& entry) {
                return entry.name == name && entry.batch <= answered.serial;
            });
    }
    if (batches_.size() > 1) {
        Batch answered = batches_.pop_front();
        answered.clear();
        if (spare_batches_.size() < 4) spare_batches_.push_back(std::move(answered));  // (a long pipeline's: freed)
    } else {
        batches_.front().clear();  // not owed (a server's own ReadyForQuery): nothing to forget
    }
    if (++answered_ == 1) {
        if (phase_ == Phase::authenticating) phase_ = Phase::ready;
        if (!events_.logged_in()) {
            stop_after_frame_ = true;
            return false;
        }
    }
    // (copy_in ends with the client's CopyDone or CopyFail, which the server may still read.)
    if (phase_ == Phase::copy_out) phase_ = Phase::ready;
    answering_.reset();
    result_ = {};
    batch_failed_ = false;
    if (probe_ == Probe::waiting) probe_ = Probe::skipped;
    events_.server_answered();
    return true;
}

bool SessionProtocol::rewrite_server_frame(char tag, std::string_view frame, Outbound& out) {
    const auto body = frame.substr(protocol::header_size);
    switch (tag) {
        case back::ready_for_query:
            return !on_ready_for_query(body);  // (a login refused at its end: the client hears why instead)
        case back::command_complete: {
            // Read whole only while registered migrations' statements are on their way: the one
            // this completion answers (by its place in the batch) ran, if it says so.
            if (body.empty()) return false;
            const std::string_view complete(body.data(), body.size() - 1);
            const Batch& batch = batches_.front();
            for (const auto& registered : batch.registered)
                if (registered.index + 1 == batch.completions_seen && completes_as(complete, registered.tag))
                    migrator_runs_.on_completed(registered);
            if (migrator_runs_.watching()) migrator_runs_.on_command_complete(complete);
            return false;
        }
        case back::parameter_description: {
            // The answer to the oldest Describe of a statement: hide pgrail's own parameters.
            auto& describes = batches_.front().describes;
            if (describes.empty() || !describes.front().statement) return false;
            const auto answer = describes.front();
            if (answer.probe) {
                // pgrail's probe: the statement exists and what came before it succeeded.
                if (probe_ == Probe::waiting) probe_ = Probe::answered;
                events_.server_answered();
                return true;
            }
            if (answer.hidden_parameters == 0) return false;
            auto types = protocol::parse_parameter_description(body);
            if (!types || types->size() < answer.hidden_parameters) return false;
            types->resize(types->size() - answer.hidden_parameters);
            out.inject(protocol::encode_parameter_description, *types);
            return true;
        }
        case back::parameter_status: {
            // The settings that decide how the server lexes this session's texts: pgrail reads
            // them as it does. A client-only encoding, once reported, counts for the rest of the
            // session (a RESET may return to it while a pipelined text is on its way).
            const auto status = protocol::parse_parameter_status(body);
            if (!status) return false;
            if (status->name == "standard_conforming_strings") {
                context_.lexing.standard_conforming_strings = status->value == "on";
            } else if (status->name == "client_encoding" || status->name == "server_encoding") {
                (status->name == "client_encoding" ? context_.client_encoding : server_encoding_) = status->value;
                const std::string& client_encoding = context_.client_encoding;
                if (sql::is_client_only_encoding(client_encoding)) context_.lexing.client_only_encoding = true;
                // The server converts between different encodings (SQL_ASCII on either side: not).
                context_.lexing.converted = client_encoding != server_encoding_ && client_encoding != "SQL_ASCII" &&
                                            server_encoding_ != "SQL_ASCII" && !server_encoding_.empty();
            }
            return false;
        }
        case back::backend_key_data: {
            const auto key = protocol::parse_backend_key_data(body);
            if (!key) return false;
            if (client_key_) cancel_registry_.remove(*client_key_);
            upstream_key_ = *key;
            client_key_ = cancel_registry_.add(*key);
            out.inject(protocol::encode_backend_key_data, *client_key_);
            return true;
        }
        case back::authentication: {
            const auto auth = protocol::parse_authentication(body);
            if (auth && !logged_in() && asks_the_client(auth->code)) events_.login_turn(false);
            if (!auth || auth->code != protocol::auth_sasl) return false;
            // Channel binding needs one TLS session end to end; the client's and the
            // server's legs never share one through pgrail, so never offer -PLUS.
            auto mechanisms = auth->sasl_mechanisms;
            if (std::erase(mechanisms, std::string_view("SCRAM-SHA-256-PLUS")) == 0) return false;
            channel_binding_withheld_ = true;
            out.inject(protocol::encode_authentication_sasl, mechanisms);
            return true;
        }
        case back::row_description:
        case back::no_data:
            return hide_frame_;  // the rest of the probe's answer
        case back::error_response: {
            const auto fields = protocol::parse_error_fields(body);
            if (!fields) return false;
            if (protocol::error_field(*fields, 'V') == "FATAL" || protocol::error_field(*fields, 'S') == "FATAL")
                server_sent_fatal_ = true;
            auto& refusals = batches_.front().refusals;
            if (refusals.empty()) return false;
            // The stand-in's own failure: the cast's error (22P02; its words in the server's
            // language) quoting the marker and the id of the batch's first refusal (the server
            // skips what follows an error). An agent that read the marker (pg_stat_activity shows
            // the stand-in) can make no other error of its own pass for that refusal's.
            if (protocol::error_field(*fields, 'C') != "22P02") return false;
            const auto message = protocol::error_field(*fields, 'M');
            const auto expected = fmt::format("{}{}", refusal_marker_, refusals.front().id);
            const auto at = message.rfind(expected);
            const auto after = at == std::string_view::npos ? at : at + expected.size();
            if (at == std::string_view::npos ||
                (after < message.size() && std::isdigit(static_cast<unsigned char>(message[after])) != 0))
                return false;
            out.inject(protocol::encode_error_response, refusals.front().error);
            refusals.erase(refusals.begin());
            return true;
        }
        default:
            return false;
    }
}

}  // namespace pgrail::proxy

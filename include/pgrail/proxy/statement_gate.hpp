// The seam between the wire and the policy: every Query and Parse passes through check().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pgrail/policy/policy.hpp"
#include "pgrail/protocol/backend.hpp"
#include "pgrail/proxy/migrator_runs.hpp"
#include "pgrail/proxy/result_guard.hpp"

namespace pgrail::proxy {

// Who is on the other end, as the startup packet and the socket tell it: the policy's
// SessionInfo (user, database, application_name, client_address) and pgrail's session id.
// The policy a session's statements were last decided under (StatementGate::rule_changed).
struct PolicyHold {
    std::uint64_t generation = 0;
    std::shared_ptr<const policy::Policy> policy;
};

struct SessionContext : policy::SessionInfo {
    std::uint64_t session_id = 0;
    // client_encoding as the server last reported it (ParameterStatus): a SET of that same value
    // changes nothing (read with lexing.encoding_pending, which says whether a change is on its way).
    std::string client_encoding;
    // The names of the temporary relations the session's texts made (an unqualified name reaches
    // them before any schema's): a registered migration's statement that names one could change
    // it instead of the schema's (PolicyGate refuses it). Past max_temporary_relations, or once a
    // temporary relation was altered (renamed), every unqualified name counts as one.
    static constexpr std::size_t max_temporary_relations = 256;
    std::vector<std::string> temporary_relations;
    bool many_temporary_relations = false;
    // The session's texts (or its startup packet) set a search_path other than a role's usual
    // one (public, "$user", public), or one pgrail cannot read: a registered statement's
    // unqualified names may resolve elsewhere than on the runner's connection. Never cleared: a
    // SET that was rolled back, failed or never executed may or may not have taken effect, and
    // RESET returns to the startup packet's value.
    bool search_path_elsewhere = false;
    // The session's texts made a temporary object other than a relation (a type, a domain):
    // pg_temp is searched first for types, so a registered statement's type names (`text` in
    // ADD COLUMN x text) may reach it (PolicyGate refuses registered statements then). Never cleared.
    bool temporary_types = false;
    // The session holds work checked under the rule of its time and run later unchecked: a
    // statement prepared by Parse or PREPARE (its portals too), a cursor, a temporary relation or
    // type (their defaults, checks and rules), a setting it changed (a search_path, by SET or at
    // startup). A reload that changes its rule then ends it
    // (StatementGate::rule_changed); one that holds none follows the new rule from its next text.
    bool holds_checked_work = false;
};

using StartupParameters = std::vector<std::pair<std::string, std::string>>;

// One of pgrail's in-band commands that a statement reads (sql::PgrailCall, as the proxy needs it).
struct InbandCall {
    policy::Command command = policy::Command::status;
    std::vector<std::string> arguments;
    std::size_t offset = 0;          // the call's bytes in the statement text
    std::size_t length = 0;
    bool aliased = false;            // the text names the relation itself (`AS s`)
    bool whole_statement = false;    // `SELECT pgrail.f(...)`: the call is the statement
};

struct GateVerdict {
    enum class Kind { forward, refuse, intercept };
    Kind kind = Kind::forward;
    // refuse: the statement starting at this byte offset of the text (and all after it) is
    // refused with `error`; the statements before it run as they would on PostgreSQL.
    std::size_t refused_offset = 0;
    protocol::ErrorMessage error;
    // intercept: the statement (the text's only one) reads pgrail's in-band commands as relations
    // (pgrail.status() ...): pgrail runs them and the server reads their answers in their place.
    std::vector<InbandCall> calls;         // in text order
    std::size_t highest_parameter = 0;     // the highest $n of the text
    // forward: the text holds DEALLOCATE or DISCARD ALL, which may drop statements prepared
    // before (the session forgets what it knows of them).
    bool forgets_prepared = false;
    // forward or refuse: the text (or the part of it that runs) may change client_encoding: SET or
    // RESET client_encoding (or NAMES), RESET ALL, DISCARD ALL, set_config of it or of a computed
    // name. How the server reads the texts after it is unknown until it has answered.
    bool changes_encoding = false;
    // forward or refuse: the text (or the part of it that runs) runs a prepared statement by SQL
    // EXECUTE, which may be one the session prepared to change client_encoding.
    bool executes_prepared = false;
    // ... but every change sets the encoding in force, with no other change on its way (when the
    // text runs now: a Parse's statement runs later, under whatever encoding is in force then).
    bool keeps_encoding = false;
    // forward: the text's statements that equal a registered migration's (the migrator route), in
    // text order: the session follows them to their commit and the ledger records a script run to
    // its end (MigratorRunTracker).
    std::vector<MigratorStatement> migrator_statements;
    // forward, of a Parse: the parameters ($n) whose values are advisory lock keys, which each Bind
    // of the statement gives (check_bound_lock_key judges them there).
    std::vector<std::uint16_t> bound_lock_keys;
    // The temporary relations the text makes (SessionContext::temporary_relations), and whether
    // it sets a search_path elsewhere: of a refused text too, whose first statements run.
    std::vector<std::string> temporary_relations;
    bool sets_search_path_elsewhere = false;
    bool makes_temporary_types = false;  // (SessionContext::temporary_types)
    // The text prepares a statement, declares a cursor or changes a setting
    // (SessionContext::holds_checked_work).
    bool keeps_for_later = false;
    // Set when the verdict stands only once its audit line is on disk (a refusal, an allowed
    // schema change). It may wait for an fsync, so a session runs it off its I/O thread
    // (settle_audit); when it fails, the statement is refused instead.
    std::function<bool()> write_audit;
    // refuse: the size of its audit line (0 when it has none), which the session's login pays
    // for in time beyond its budget (refusal_pacer.hpp).
    std::size_t audit_bytes = 0;
    // check_startup, admitted: the session's place among its rule's max_connections, held while
    // the session lives (null: the rule has no bound).
    std::shared_ptr<void> session_place;
};

// The error of a statement whose audit line could not be written: it does not run.
inline protocol::ErrorMessage audit_unavailable_error() {
    return {"ERROR", "58030",
            "pgrail: the audit log cannot be written, so the statement was not run; ask an operator to fix pgrail's "
            "audit log (retrying fails until then)",
            {},
            "Ask the operator to check pgrail's audit file and disk."};
}

// Settles a verdict whose audit line was (`written`) or was not written: unwritten, the statement
// is refused (none of the text runs).
inline void settle_audit(GateVerdict& verdict, bool written) {
    verdict.write_audit = nullptr;
    if (written) return;
    verdict.audit_bytes = 0;
    verdict.kind = GateVerdict::Kind::refuse;
    verdict.error = audit_unavailable_error();
    verdict.refused_offset = 0;
}

// Writes the verdict's audit line, if it has one, here, and settles the verdict.
inline void settle_audit(GateVerdict& verdict) {
    if (verdict.write_audit) settle_audit(verdict, verdict.write_audit());
}

class StatementGate {
public:
    virtual ~StatementGate() = default;
    [[nodiscard]] virtual GateVerdict check(const SessionContext& session, std::string_view sql) = 0;
    // check() without writing the audit line: the caller settles it (settle_audit), off an I/O
    // thread when the audit waits for fsync.
    [[nodiscard]] virtual GateVerdict check_deferred(const SessionContext& session, std::string_view sql) {
        return check(session, sql);
    }
    // check_deferred()'s verdict when it is cheap enough to reach on an I/O thread, whose other
    // sessions wait while it runs; nothing: the session runs check() on another thread.
    [[nodiscard]] virtual std::optional<GateVerdict> check_here(const SessionContext& session,
                                                                std::string_view sql) = 0;
    // A FunctionCall message (libpq's PQfn): it names its function by OID only. Like
    // check_deferred, the verdict may carry its audit line unwritten (settle_audit).
    [[nodiscard]] virtual GateVerdict check_function_call(const SessionContext& session, std::uint32_t function_oid) = 0;
    // A Bind's value of an advisory lock key (GateVerdict::bound_lock_keys) as the server reads it
    // ("*": one pgrail cannot read). Like check_function_call, the verdict may carry its audit line
    // unwritten (settle_audit).
    // `message`: the one that gives it ("Bind"; "Parse" for a parameter whose declared type is no
    // integer's, key "*").
    [[nodiscard]] virtual GateVerdict check_bound_lock_key(const SessionContext& /*session*/, std::string_view /*key*/,
                                                           std::string_view /*message*/ = "Bind") {
        return {};
    }
    // The startup packet: forward, or refuse with a FATAL error; its audit line, too, is left to
    // the caller (settle_audit, then the error's severity is FATAL).
    [[nodiscard]] virtual GateVerdict check_startup(const SessionContext& session,
                                                    const StartupParameters& parameters) = 0;
    // A place among the session's rule's max_connections (GateVerdict::session_place), or a
    // refusal (its audit line too, as check_startup's). check_startup takes it for a client pgrail
    // authenticated itself; the shell asks here once the server has authenticated one.
    [[nodiscard]] virtual GateVerdict admit_session(const SessionContext& /*session*/) { return {}; }
    // In passthrough mode, a place among the rule's max_connections for the login in progress,
    // whose server connection counts as a session's (GateVerdict::session_place, held until the
    // server has authenticated the client and admit_session took its place): `evict` is called
    // (on any thread) when a later login takes it over, the rule being full. A refusal when the
    // rule's places are all authenticated sessions'.
    [[nodiscard]] virtual GateVerdict take_login_place(const SessionContext& /*session*/,
                                                       std::function<void()> /*evict*/) {
        return {};
    }
    // What the session does to its results (masked columns, max_rows); null: nothing. Asked
    // again for each result: it follows reloads and catalog refreshes. Cheap (cached).
    // Whether a reload has changed how this session's statements are decided since `held` (the
    // policy it was decided under, which a first call records) while the session holds work
    // checked under the old rule (SessionContext::holds_checked_work): it must then end rather than
    // run that work under the new rule. Otherwise `held` follows the reload.
    [[nodiscard]] virtual bool rule_changed(const SessionContext&, PolicyHold&) { return false; }
    [[nodiscard]] virtual std::shared_ptr<const ResultGuard> result_guard(const SessionContext&) { return nullptr; }
    // Writes the audit line of a result the session cut, refused or masked by the backstop;
    // false when it could not be written. May wait for an fsync: call it off the I/O thread.
    [[nodiscard]] virtual bool audit_result_event(const SessionContext&, const ResultEvent&) { return true; }
    // Writes the audit line of an authentication event of pgrail's own (auth.mode pgrail):
    // "login_refused" (a wrong password, an unknown identity) or "identity_revoked" (a reload
    // removed the session's identity); `reason` is for the audit and the log, never for the client.
    // May wait for an fsync: call it off the I/O thread.
    [[nodiscard]] virtual bool audit_auth_event(const SessionContext&, std::string_view /*event*/,
                                                std::string_view /*reason*/) {
        return true;
    }
    // Writes the audit line of an in-band command refused before it ran (25001: inside a
    // transaction block or after another Execute of its pipeline), as its `command` line would be
    // had it run. May wait for an fsync: call it off the I/O thread.
    [[nodiscard]] virtual bool audit_command_refused(const SessionContext&, const InbandCall&,
                                                     const protocol::ErrorMessage&) {
        return true;
    }
};

// Forwards everything: `pgrail serve` without a policy.
class ForwardAllGate final : public StatementGate {
public:
    GateVerdict check(const SessionContext&, std::string_view) override { return {}; }
    std::optional<GateVerdict> check_here(const SessionContext&, std::string_view) override {
        return std::optional<GateVerdict>(std::in_place);
    }
    GateVerdict check_function_call(const SessionContext&, std::uint32_t) override { return {}; }
    GateVerdict check_startup(const SessionContext&, const StartupParameters&) override { return {}; }
};

}  // namespace pgrail::proxy

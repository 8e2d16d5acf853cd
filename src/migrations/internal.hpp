// Shared by runner.cpp and verify.cpp: ledger SQL, script execution, errors (libpqxx types).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <pqxx/pqxx>

#include "pgrail/migrations/backstop.hpp"
#include "pgrail/migrations/error.hpp"
#include "pgrail/migrations/registry.hpp"
#include "pgrail/migrations/runner.hpp"
#include "pgrail/migrations/status.hpp"

namespace pgrail::migrations::detail {

// A connection of pgrail's own, named pgrail-migrate unless its conninfo names it. With
// `backstop_key_file` (a runner that changes the schema), and when the database has the backstop,
// the connection is authorized with that key: one round trip more, once per connection.
std::unique_ptr<pqxx::connection> connect(const std::string& conninfo, const std::string& backstop_key_file = {});

// libpq's "ERROR:  message\nLINE 1: ...": the primary message and the rest.
std::pair<std::string, std::string> split_pq_message(std::string text);

// An error's SQLSTATE: libpqxx 6.4 throws insufficient_privilege without it (the backstop
// refuses with it).
std::string sqlstate_of(const pqxx::sql_error& error);

// Backstop (backstop.cpp). Sends the key as a bound parameter; throws MigrationError (42501)
// when the backstop refuses it, or when the key file cannot be read.
void authorize_runner(pqxx::transaction_base& tx, const std::string& key_file);
// The ledger's write guard on `table` (idempotent; needs the backstop installed).
std::string ledger_guard_sql(std::string_view table);
// Never throws: a failure is the status's error.
BackstopStatus read_backstop_status(pqxx::connection& conn, const std::optional<std::string>& key);

// Reads the ledger in a read-only transaction; with `lock_timeout`, a table lock on the ledger
// is waited for at most that long (the advisory lock is never involved).
LedgerState read_ledger(pqxx::connection& conn,
                        std::optional<std::chrono::milliseconds> lock_timeout = std::nullopt);
// Creates schema pgrail and its tables when missing (call under the advisory lock).
void ensure_ledger(pqxx::connection& conn);
void insert_event(pqxx::transaction_base& tx, const std::string& version, const std::string& name,
                  const std::string& checksum, const std::string& event, bool ok, const std::string& by,
                  std::int64_t duration_ms, const std::string& detail);

// A failure's text as the ledger stores it and a proposal answers it: a script's error can be
// megabytes (RAISE of a long value), a schema diff long. At most 16 KB, cut at a character's first
// byte (at most 3 bytes back: invalid UTF-8 is cut where it is).
std::string bounded_detail(std::string text);

// A scratch copy about to run an agent's scripts (scratch_guard.hpp): what in it would carry them
// beyond the database or run the application's code as the migrator (a foreign server, dblink, a
// function of the application's that a trigger, operator, cast, default, constraint, index, view,
// rule, policy or type uses, or one named like a function they call unqualified), said in a
// sentence; nothing when there is none. Only a few contrib extensions' functions count as built-ins.
std::optional<std::string> scratch_escape(pqxx::connection& conn, const std::vector<std::string>& functions);

// Granted locks on advisory_lock_key in the connection's database, with their backends.
std::vector<LockHolder> lock_holders(pqxx::connection& conn);

// Holds the session advisory lock on advisory_lock_key on `conn` for its lifetime. Waits at
// most `wait` (polling pg_try_advisory_lock), then throws lock_wait_error naming the holders;
// throws abandoned_error as soon as `abandoned` is set while it waits.
class AdvisoryLock {
public:
    AdvisoryLock(pqxx::connection& conn, std::chrono::milliseconds wait, const AbandonFlag& abandoned = nullptr);
    ~AdvisoryLock();
    AdvisoryLock(const AdvisoryLock&) = delete;
    AdvisoryLock& operator=(const AdvisoryLock&) = delete;

private:
    pqxx::connection& conn_;
};

struct Timeouts {
    std::chrono::milliseconds lock_timeout;
    std::chrono::milliseconds statement_timeout;
    // A proposal's proof (RunnerOptions::proof_timeout, proof_max_scratch_bytes): no statement
    // starts after the deadline or runs past it, and the database may hold at most this much
    // after each statement (0: no bound).
    std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt;
    std::uint64_t max_database_bytes = 0;
    // A proof's statements that return rows run under EXPLAIN ANALYZE: executed alike, their rows
    // never sent (a SELECT of gigabytes would be held whole in pgrail's memory).
    bool discard_rows = false;
};

struct ScriptFailure {
    std::size_t index = 0;  // 0-based statement index; == statements.size() at commit/record
    std::string sqlstate;
    std::string message;    // PostgreSQL's primary message
    std::string more;       // the rest of libpq's text (LINE/DETAIL/HINT)
    // The connection is gone (the failure's event must be written on a new one).
    bool connection_lost = false;
    // No answer came for statement `index` (the connection broke while it ran): whether it
    // took effect is unknown.
    bool outcome_unknown = false;
    // The connection was lost during the commit of a transactional script (libpqxx's
    // in_doubt_error): whether it committed is unknown.
    bool in_doubt = false;
};

// Runs `script` (in one transaction unless no-transaction) and then `record` in the same
// transaction (a separate one for no-transaction scripts). Returns the failure, if any.
// A transactional script is abandoned (rolled back, failure 57014) when `abandoned` is set:
// checked between statements, and a running statement is cancelled. A no-transaction script,
// once started, runs to its end (stopping halfway would leave a partial state).
std::optional<ScriptFailure> run_script(pqxx::connection& conn, const Script& script, const Timeouts& timeouts,
                                        const std::function<void(pqxx::transaction_base&)>& record,
                                        const AbandonFlag& abandoned = nullptr);

// The error of a failed script: the migration, the statement (index, file, line, byte, first
// line), PostgreSQL's message, and in the detail exactly what stayed done (a transactional
// script: nothing, or unknown when the commit was in doubt; a no-transaction script: the
// statements that ran before the failing one). Says nothing about the ledger (the caller does).
MigrationError script_error(const Migration& migration, Direction direction, const Script& script,
                            const ScriptFailure& failure);

// How many statements of a failed no-transaction script certainly ran and stayed done (0 for a
// transactional script): what makes the migration partial.
std::size_t statements_left_done(const Script& script, const ScriptFailure& failure);

// `conninfo` (key=value or URI) with connect_timeout=`seconds` unless it names one (returned
// as it is when libpq cannot parse it).
std::string with_connect_timeout(const std::string& conninfo, int seconds);

// Refusal of up, plan, down and verify while a migration is partial: names it, says which
// statements ran (detail) and how to resolve it (hint). check_no_partial throws it if needed.
MigrationError partial_error(const std::vector<StatusEntry>& status);
void check_no_partial(const std::vector<StatusEntry>& status);

// The error libpqxx reports, as a MigrationError (connection failures -> 08006).
[[noreturn]] void rethrow_database_error(const std::string& what_we_did);

std::int64_t elapsed_ms(std::chrono::steady_clock::time_point since);

}  // namespace pgrail::migrations::detail

// The runner: apply/rollback under the advisory lock, ledger rows, events and audit records.
#include "pgrail/migrations/runner.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stop_token>
#include <thread>

#include <fmt/format.h>

#include "fingerprint_internal.hpp"
#include "pgrail/audit/redact_message.hpp"
#include "pgrail/sql/normalize.hpp"
#include "pgrail/sql/quote.hpp"
#include "internal.hpp"
#include "pgrail/migrations/lint.hpp"
#include "pgrail/protocol/sqlstate.hpp"

namespace pgrail::migrations {

namespace detail {

std::int64_t elapsed_ms(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - since).count();
}

namespace {

std::string first_line(std::string_view text, std::size_t max = 80) {
    const auto eol = text.find('\n');
    std::string line(text.substr(0, eol));
    if (line.size() > max) line = line.substr(0, max) + "...";
    return line;
}

std::string ms(std::chrono::milliseconds value) { return fmt::format("'{}ms'", value.count()); }

}  // namespace

std::pair<std::string, std::string> split_pq_message(std::string text) {
    for (const char* prefix : {"ERROR:  ", "FATAL:  "})
        if (text.starts_with(prefix)) text.erase(0, std::char_traits<char>::length(prefix));
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    const auto eol = text.find('\n');
    if (eol == std::string::npos) return {text, {}};
    return {text.substr(0, eol), text.substr(eol + 1)};
}

std::string sqlstate_of(const pqxx::sql_error& error) {
    if (error.sqlstate().empty() && dynamic_cast<const pqxx::insufficient_privilege*>(&error) != nullptr)
        return sqlstate::insufficient_privilege;
    return error.sqlstate();
}

[[noreturn]] void rethrow_database_error(const std::string& what_we_did) {
    try {
        throw;
    } catch (const MigrationError&) {
        throw;
    } catch (const pqxx::sql_error& error) {
        auto [message, more] = split_pq_message(error.what());
        const auto sqlstate = sqlstate_of(error);
        throw MigrationError(sqlstate.empty() ? sqlstate::internal_error : sqlstate,
                             fmt::format("{}: {}", what_we_did, message), more,
                             backstop_refusal_hint(sqlstate, message));
    } catch (const pqxx::broken_connection& error) {
        throw MigrationError(sqlstate::connection_failure,
                             fmt::format("{}: {}", what_we_did, split_pq_message(error.what()).first));
    } catch (const std::exception& error) {
        throw MigrationError(sqlstate::internal_error,
                             fmt::format("{}: {}", what_we_did, split_pq_message(error.what()).first));
    }
}

// The runner's text is read as pgrail read it, whatever defaults the database or role were given
// (ALTER DATABASE ... SET, which no event trigger sees; review 97), and whatever the script's
// statements did since (a function, a trigger, UPDATE pg_settings: review 98): standard_conforming_strings
// on and UTF8 (off hid a statement in a string literal), transform_null_equals off (it rewrites
// `x = NULL` as the statement is parsed), and unqualified names created in no temporary schema
// (`pg_temp, public`, or a path whose schemas before pg_temp do not exist, made a registered
// CREATE TABLE a temporary table, recorded as applied). Throws when the reading is another.
static void check_reading(pqxx::transaction_base& tx, std::string_view when) {
    const auto row = tx.exec1(
        "SELECT pg_catalog.current_setting('standard_conforming_strings'), "
        "pg_catalog.current_setting('client_encoding'), pg_catalog.current_setting('transform_null_equals'), "
        "pg_catalog.current_setting('search_path'), (pg_catalog.current_schemas(false))[1]");
    const auto path = row[3].as<std::string>();
    const auto schemas = sql::split_identifiers(path, ',');
    const auto temporary = [](std::string_view schema) { return schema.starts_with("pg_temp"); };
    const auto first_temporary =
        schemas ? std::find_if(schemas->begin(), schemas->end(), temporary) : std::vector<std::string>::iterator();
    // (A pg_temp named first is not in current_schemas until the session has made a temporary object.)
    const bool temporary_first = !schemas || (first_temporary != schemas->end() && first_temporary + 1 != schemas->end()) ||
                                 row[4].is_null() || temporary(row[4].as<std::string>());
    if (row[0].as<std::string>() == "on" && row[1].as<std::string>() == "UTF8" && row[2].as<std::string>() == "off" &&
        !temporary_first)
        return;
    throw MigrationError(
        sqlstate::insufficient_privilege,
        fmt::format("{}, pgrail's migration connection reads text otherwise than pgrail read the script "
                    "(standard_conforming_strings {}, client_encoding {}, transform_null_equals {}), or creates "
                    "unqualified names in a temporary schema (search_path {}): nothing more of it runs",
                    when, row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(), path),
        {},
        "Reset the database's or role's defaults (ALTER DATABASE ... RESET, ALTER ROLE ... RESET), and keep "
        "settings that change how text is read out of migrations and the code they call.");
}

static void pin_reading(pqxx::nontransaction& tx) {
    tx.exec0("SET standard_conforming_strings = on");
    tx.exec0("SET client_encoding = 'UTF8'");
    tx.exec0("SET transform_null_equals = off");
    check_reading(tx, "at connect");
}

std::unique_ptr<pqxx::connection> connect(const std::string& conninfo, const std::string& backstop_key_file) {
    try {
        auto conn = std::make_unique<pqxx::connection>(conninfo);
        // Name the connection, unless its conninfo did: a holder of the migration lock is then
        // recognisably one of pgrail's runners (lock_wait_error's hint depends on it). The same
        // look tells whether the database has the backstop.
        pqxx::nontransaction tx(*conn);
        const auto row = tx.exec1("SELECT current_setting('application_name') = '', "
                                  "to_regprocedure('pgrail_backstop.authorize(text)') IS NOT NULL");
        if (row[0].as<bool>()) tx.exec0(fmt::format("SET application_name = '{}'", runner_application_name));
        pin_reading(tx);
        // Without a key the backstop refuses this runner's DDL itself (42501, with
        // backstop_refusal_hint saying what to configure).
        if (row[1].as<bool>() && !backstop_key_file.empty()) authorize_runner(tx, backstop_key_file);
        return conn;
    } catch (...) {
        rethrow_database_error("cannot connect to the database for migrations");
    }
}

LedgerState read_ledger(pqxx::connection& conn, std::optional<std::chrono::milliseconds> lock_timeout) {
    LedgerState state;
    pqxx::read_transaction tx(conn);
    if (lock_timeout) tx.exec0("SET LOCAL lock_timeout = " + ms(*lock_timeout));
    const auto found = tx.exec1("SELECT to_regclass('pgrail.schema_migrations') IS NULL, current_database()");
    state.exists = !found[0].as<bool>();
    state.database = found[1].as<std::string>();  // as the server names it (a long name truncated)
    if (!state.exists) return state;
    for (const auto& row : tx.exec("SELECT version, name, checksum, applied_at::text, applied_by, execution_ms "
                                   "FROM pgrail.schema_migrations ORDER BY applied_at, length(version), version")) {
        state.applied.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(),
                                 row[3].as<std::string>(), row[4].as<std::string>(), row[5].as<std::int64_t>()});
    }
    if (tx.exec1("SELECT to_regclass('pgrail.migration_events') IS NULL")[0].as<bool>()) return state;
    // A version is partial while the latest of its apply/rollback/failure/resolve events is a
    // failure that left statements of a no-transaction script done (partial_event_prefix).
    for (const auto& row : tx.exec(
             "SELECT version, name, checksum, at::text, by, detail FROM ("
             "SELECT DISTINCT ON (version) version, name, checksum, event, at, by, detail "
             "FROM pgrail.migration_events WHERE event IN ('applied', 'rolled_back', 'failed', 'resolved') "
             "ORDER BY version, id DESC) AS latest "
             "WHERE event = 'failed' AND detail LIKE '%, no-transaction: statements 1..%' "
             "ORDER BY length(version), version")) {
        const auto detail = row[5].as<std::string>();
        const auto prefix = parse_partial_event_prefix(detail);
        if (!prefix) continue;
        state.partial.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(),
                                 prefix->direction, prefix->ran, prefix->total, row[3].as<std::string>(),
                                 row[4].as<std::string>(), detail});
    }
    return state;
}

void ensure_ledger(pqxx::connection& conn) {
    pqxx::work tx(conn);
    // One look before creating: CREATE ... IF NOT EXISTS checks the CREATE privilege first.
    const auto missing = tx.exec1(
        "SELECT to_regnamespace('pgrail') IS NULL, to_regclass('pgrail.schema_migrations') IS NULL, "
        "to_regclass('pgrail.migration_events') IS NULL, "
        "to_regprocedure('pgrail_backstop.guard_ledger()') IS NOT NULL AND "
        "(SELECT count(*) FROM pg_trigger WHERE tgname = 'pgrail_backstop_guard' AND tgrelid IN "
        "(to_regclass('pgrail.schema_migrations'), to_regclass('pgrail.migration_events'), "
        "to_regclass('pgrail.migration_proposals'))) < 3, "
        "to_regclass('pgrail.migration_proposals') IS NULL");
    if (missing[0].as<bool>()) tx.exec0("CREATE SCHEMA pgrail");
    if (missing[1].as<bool>())
        tx.exec0(R"(CREATE TABLE pgrail.schema_migrations (
            version      text PRIMARY KEY,
            name         text NOT NULL,
            checksum     text NOT NULL,
            applied_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
            applied_by   text NOT NULL,
            execution_ms bigint NOT NULL))");
    if (missing[2].as<bool>())
        tx.exec0(R"(CREATE TABLE pgrail.migration_events (
            id          bigserial PRIMARY KEY,
            version     text NOT NULL,
            name        text NOT NULL,
            checksum    text NOT NULL,
            event       text NOT NULL CONSTRAINT migration_events_event_check CHECK (event IN ('applied',
                            'rolled_back', 'failed', 'verified', 'resolved', 'proposed', 'approved', 'rejected')),
            outcome     text NOT NULL CHECK (outcome IN ('ok', 'failed')),
            at          timestamptz NOT NULL DEFAULT clock_timestamp(),
            by          text NOT NULL,
            duration_ms bigint NOT NULL DEFAULT 0,
            detail      text NOT NULL DEFAULT ''))");
    if (missing[4].as<bool>()) {
        // Proposed migrations (proposals.cpp). A ledger made before them gains the table, and its
        // events the proposal events.
        tx.exec0(R"(CREATE TABLE pgrail.migration_proposals (
            version        text PRIMARY KEY,
            name           text NOT NULL,
            up_sql         text NOT NULL,
            down_sql       text NOT NULL,
            no_transaction boolean NOT NULL,
            checksum       text NOT NULL,
            findings       jsonb NOT NULL DEFAULT '[]',
            verification   text NOT NULL,
            state          text NOT NULL CHECK (state IN ('proposed', 'approved', 'rejected')),
            proposed_by    text NOT NULL,
            proposed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
            decided_by     text,
            decided_at     timestamptz,
            reason         text))");
        if (!missing[2].as<bool>())
            tx.exec0("ALTER TABLE pgrail.migration_events DROP CONSTRAINT IF EXISTS migration_events_event_check, "
                     "ADD CONSTRAINT migration_events_event_check CHECK (event IN ('applied', 'rolled_back', "
                     "'failed', 'verified', 'resolved', 'proposed', 'approved', 'rejected'))");
    }
    // With the backstop installed, the ledger's rows are the runner's alone, like the schema.
    if (missing[3].as<bool>())
        for (const auto table : {"pgrail.schema_migrations", "pgrail.migration_events", "pgrail.migration_proposals"})
            tx.exec0(ledger_guard_sql(table));
    ensure_fingerprint_table(tx);
    tx.commit();
}

void insert_event(pqxx::transaction_base& tx, const std::string& version, const std::string& name,
                  const std::string& checksum, const std::string& event, bool ok, const std::string& by,
                  std::int64_t duration_ms, const std::string& detail) {
    tx.exec_params0(
        "INSERT INTO pgrail.migration_events (version, name, checksum, event, outcome, by, duration_ms, detail) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        version, name, checksum, event, std::string(ok ? "ok" : "failed"), by, duration_ms, detail);
}

std::vector<LockHolder> lock_holders(pqxx::connection& conn) {
    // Advisory locks belong to a database; a bigint key shows as classid (high half), objid
    // (low half), objsubid 1. Shared and transaction-level holds count too.
    pqxx::nontransaction tx(conn);
    const auto rows = tx.exec(fmt::format(
        "SELECT coalesce(l.pid, 0), l.mode, coalesce(a.usename::text, ''), coalesce(a.application_name, ''), "
        "coalesce(host(a.client_addr), ''), "
        "CASE WHEN l.pid IS NULL THEN 'prepared transaction' ELSE coalesce(a.state, '') END, "
        "coalesce(a.backend_start::text, ''), coalesce(a.state_change::text, '') "
        "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid = {} AND l.objid = {} AND l.objsubid = 1 AND l.pid IS DISTINCT FROM pg_backend_pid() "
        "ORDER BY 1",
        advisory_lock_classid, advisory_lock_objid));
    std::vector<LockHolder> holders;
    for (const auto& row : rows)
        holders.push_back({row[0].as<int>(), row[1].as<std::string>(), row[2].as<std::string>(),
                           row[3].as<std::string>(), row[4].as<std::string>(), row[5].as<std::string>(),
                           row[6].as<std::string>(), row[7].as<std::string>()});
    return holders;
}

AdvisoryLock::AdvisoryLock(pqxx::connection& conn, std::chrono::milliseconds wait, const AbandonFlag& abandoned)
    : conn_(conn) {
    // pg_try_advisory_lock in a loop rather than pg_advisory_lock under lock_timeout: the wait
    // stays bounded, and an abandoned run stops waiting at once.
    const auto try_lock = [&] {
        pqxx::nontransaction tx(conn_);
        return tx.exec1(fmt::format("SELECT pg_try_advisory_lock({})", advisory_lock_key))[0].as<bool>();
    };
    std::vector<LockHolder> holders;
    try {
        switch (wait_for_lock(try_lock, [&] { return is_abandoned(abandoned); }, wait)) {
            case LockWait::acquired: return;
            case LockWait::abandoned: throw abandoned_error("while it waited for the migration lock", {});
            case LockWait::timed_out: break;
        }
        holders = lock_holders(conn_);
        // Released between the last try and the look: one more try before giving up.
        if (holders.empty() && try_lock()) return;
    } catch (...) {
        rethrow_database_error("cannot take the migration lock");
    }
    throw lock_wait_error(holders, wait);
}

AdvisoryLock::~AdvisoryLock() {
    try {
        pqxx::nontransaction tx(conn_);
        tx.exec(fmt::format("SELECT pg_advisory_unlock({})", advisory_lock_key));
    } catch (...) {
        // The connection is gone, and with it the session lock.
    }
}

namespace {

// Thrown between the statements of a transactional script whose run was abandoned.
struct Abandoned {};

// While a transactional script runs: cancels the running statement once the run is
// abandoned (run_script also checks between statements, where a cancel would be ignored).
class CancelWhenAbandoned {
public:
    CancelWhenAbandoned(pqxx::connection& conn, const AbandonFlag& flag) {
        if (!flag) return;
        thread_ = std::jthread([&conn, flag](std::stop_token stop) {
            std::mutex mutex;
            std::condition_variable_any wake;
            std::unique_lock lock(mutex);
            while (!stop.stop_requested()) {
                if (wake.wait_for(lock, stop, std::chrono::milliseconds(20), [&] { return is_abandoned(flag); })) {
                    try {
                        conn.cancel_query();  // PQcancel: made for use from another thread
                    } catch (...) {
                    }
                    return;
                }
            }
        });
    }

private:
    std::jthread thread_;  // stopped and joined first thing when the script's scope ends
};

}  // namespace

namespace {

// A proposal's proof past one of its bounds (Timeouts::deadline, max_database_bytes).
struct OutOfBounds {
    const char* sqlstate;
    std::string message;
};

// One statement of a script, within the proof's bounds when it has them.
void run_statement(pqxx::transaction_base& tx, const Script& script, std::size_t index, const Timeouts& timeouts) {
    const OutOfBounds out_of_time{sqlstate::query_canceled,
                                  "pgrail: the proof of a proposal ran out of time (migrations.proposal_proof_timeout)"};
    bool cut_by_deadline = false;  // this statement's timeout is what is left of the proof's time
    if (timeouts.deadline) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(*timeouts.deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) throw out_of_time;
        if (left < timeouts.statement_timeout) {
            tx.exec0(std::string(script.no_transaction ? "SET" : "SET LOCAL") + " statement_timeout = " + ms(left));
            cut_by_deadline = true;
        }
    }
    const auto& statement = script.statements[index];
    const bool returns_rows = statement.tag == "SELECT" || statement.tag == "INSERT" || statement.tag == "UPDATE" ||
                              statement.tag == "DELETE" || statement.tag == "MERGE" || statement.tag == "VALUES";
    try {
        if (timeouts.discard_rows && returns_rows)
            tx.exec("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + statement.text);
        else
            tx.exec(statement.text);
    } catch (const pqxx::sql_error& error) {
        if (cut_by_deadline && error.sqlstate() == sqlstate::query_canceled) throw out_of_time;
        throw;
    }
    if (index + 1 < script.statements.size())
        check_reading(tx, fmt::format("after statement {} of {}", index + 1, script.path.filename().string()));
    if (timeouts.max_database_bytes == 0) return;
    const auto bytes = tx.exec1("SELECT pg_catalog.pg_database_size(pg_catalog.current_database())")[0]
                           .as<std::uint64_t>();  // (pg_catalog spelled out: the script ran here)
    if (bytes > timeouts.max_database_bytes)
        throw OutOfBounds{sqlstate::program_limit_exceeded,
                          fmt::format("pgrail: the proof's scratch database grew to {} bytes, past {} "
                                      "(its size before the proposal's scripts and migrations.proposal_max_scratch_size)",
                                      bytes, timeouts.max_database_bytes)};
}

}  // namespace

std::optional<ScriptFailure> run_script(pqxx::connection& conn, const Script& script, const Timeouts& timeouts,
                                        const std::function<void(pqxx::transaction_base&)>& record,
                                        const AbandonFlag& abandoned) {
    std::size_t index = 0;
    try {
        if (script.no_transaction) {
            {
                pqxx::nontransaction tx(conn);
                CancelWhenAbandoned watcher(conn, abandoned);  // declared after tx: stops before it ends
                tx.exec0("SET lock_timeout = " + ms(timeouts.lock_timeout));
                tx.exec0("SET statement_timeout = " + ms(timeouts.statement_timeout));
                for (; index < script.statements.size(); ++index) {
                    if (is_abandoned(abandoned)) throw Abandoned{};  // what ran stays done: the ledger says so
                    run_statement(tx, script, index, timeouts);
                }
                tx.exec0("RESET lock_timeout");
                tx.exec0("RESET statement_timeout");
            }
            pqxx::work tx(conn);
            record(tx);
            tx.commit();
        } else {
            pqxx::work tx(conn);
            CancelWhenAbandoned watcher(conn, abandoned);  // declared after tx: stops before tx rolls back
            tx.exec0("SET LOCAL lock_timeout = " + ms(timeouts.lock_timeout));
            tx.exec0("SET LOCAL statement_timeout = " + ms(timeouts.statement_timeout));
            for (; index < script.statements.size(); ++index) {
                if (is_abandoned(abandoned)) throw Abandoned{};
                run_statement(tx, script, index, timeouts);
            }
            if (is_abandoned(abandoned)) throw Abandoned{};
            record(tx);
            if (is_abandoned(abandoned)) throw Abandoned{};
            tx.commit();
        }
        return std::nullopt;
    } catch (const Abandoned&) {
        return ScriptFailure{index, sqlstate::query_canceled,
                             "the run was abandoned: its client cancelled or disconnected", ""};
    } catch (const OutOfBounds& bound) {
        return ScriptFailure{index, bound.sqlstate, bound.message, ""};
    } catch (const pqxx::sql_error& error) {
        auto [message, more] = split_pq_message(error.what());
        if (script.no_transaction) {
            try {
                pqxx::nontransaction tx(conn);
                tx.exec0("RESET lock_timeout");
                tx.exec0("RESET statement_timeout");
            } catch (...) {
            }
        }
        // An error answered the statement (it did not take effect), but it may have ended the
        // session too (57P01 after pg_terminate_backend).
        return ScriptFailure{index, sqlstate_of(error), message, more, !conn.is_open(), false, false};
    } catch (const pqxx::broken_connection& error) {
        return ScriptFailure{index, sqlstate::connection_failure, split_pq_message(error.what()).first, "", true, true,
                             false};
    } catch (const pqxx::in_doubt_error& error) {
        return ScriptFailure{
            index, sqlstate::transaction_resolution_unknown, split_pq_message(error.what()).first, "", true, true,
            true};
    } catch (const pqxx::deadlock_detected& error) {
        auto [message, more] = split_pq_message(error.what());
        return ScriptFailure{index, sqlstate::deadlock_detected, message, more};
    } catch (const pqxx::serialization_failure& error) {
        auto [message, more] = split_pq_message(error.what());
        return ScriptFailure{index, sqlstate::serialization_failure, message, more};
    } catch (const pqxx::statement_completion_unknown& error) {
        return ScriptFailure{index,
                             sqlstate::statement_completion_unknown,
                             split_pq_message(error.what()).first,
                             "",
                             !conn.is_open(),
                             true,
                             false};
    } catch (const pqxx::failure& error) {
        auto [message, more] = split_pq_message(error.what());
        // libpqxx reports some lost connections as a plain failure.
        const bool lost = !conn.is_open();
        return ScriptFailure{index, sqlstate::internal_error, message, more, lost, lost, false};
    }
}

std::size_t statements_left_done(const Script& script, const ScriptFailure& failure) {
    if (!script.no_transaction) return 0;
    return std::min(failure.index, script.statements.size());
}

std::string with_connect_timeout(const std::string& conninfo, int seconds) {
    char* error = nullptr;
    PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
    if (options == nullptr) {
        PQfreemem(error);
        return conninfo;
    }
    std::string out;
    bool has_timeout = false;
    for (const auto* option = options; option->keyword != nullptr; ++option) {
        if (option->val == nullptr) continue;
        if (std::string_view(option->keyword) == "connect_timeout") has_timeout = true;
        std::string value = "'";
        for (const char* c = option->val; *c != '\0'; ++c) {
            if (*c == '\\' || *c == '\'') value.push_back('\\');
            value.push_back(*c);
        }
        value.push_back('\'');
        out += fmt::format("{}={} ", option->keyword, value);
    }
    PQconninfoFree(options);
    if (!has_timeout) out += fmt::format("connect_timeout={}", seconds);
    return out;
}

MigrationError script_error(const Migration& migration, Direction direction, const Script& script,
                            const ScriptFailure& failure) {
    const std::string what = direction == Direction::up ? "migration" : "rollback of";
    const std::size_t total = script.statements.size();
    std::string where;
    bool concurrently = false;
    if (failure.index < total) {
        const auto& statement = script.statements[failure.index];
        where = fmt::format("statement {} of {} (line {}, byte {}: {})", failure.index + 1,
                            script.path.filename().string(), statement.line, statement.offset,
                            first_line(sql::normalize(statement.text)));
        std::string upper = statement.text;
        std::transform(upper.begin(), upper.end(), upper.begin(),
                       [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
        concurrently = upper.find("CONCURRENTLY") != std::string::npos;
    } else {
        where = script.no_transaction ? "while recording it in the ledger" : "while committing it with its ledger record";
    }
    const std::string nothing = fmt::format("nothing was {}", direction == Direction::up ? "applied" : "rolled back");
    std::string detail;
    if (!script.no_transaction) {
        if (failure.in_doubt)
            detail = "the connection was lost while the transaction committed: whether it committed is unknown; "
                     "the ledger tells (it is written in the same transaction), see `pgrail migrate status`";
        else
            detail = "the transaction was rolled back; " + nothing;
    } else {
        const std::size_t done = statements_left_done(script, failure);
        if (done == 0)
            detail = "no-transaction script: statement 1 " +
                     std::string(failure.outcome_unknown ? "was interrupted" : "failed") +
                     ", no statement of it ran before";
        else if (done >= total)
            detail = "no-transaction script: " + statements_ran_text(done, total);
        else
            detail = fmt::format("no-transaction script: {}; statement {} {}{}", statements_ran_text(done, total),
                                 done + 1, failure.outcome_unknown ? "was interrupted" : "failed",
                                 done + 1 < total ? fmt::format(", {} did not run", statement_range(done + 2, total))
                                                  : std::string());
        if (failure.outcome_unknown && done < total)
            detail += fmt::format(" (the connection was lost during statement {}: whether it took effect is unknown)",
                                  done + 1);
        if (concurrently && !failure.outcome_unknown)
            detail += fmt::format("; a failed CONCURRENTLY statement can leave an INVALID index behind "
                                  "(pg_index.indisvalid = false) that must be dropped by hand");
    }
    if (!failure.more.empty()) detail += "\n" + failure.more;
    const std::string own = fmt::format("{} {}_{} failed at {}: ", what, migration.version, migration.name, where);
    return MigrationError(failure.sqlstate.empty() ? sqlstate::internal_error : failure.sqlstate,
                          own + failure.message, detail, backstop_refusal_hint(failure.sqlstate, failure.message))
        .quoting_server()
        .server_words_from(own.size());
}

}  // namespace detail

namespace {

using detail::elapsed_ms;

std::string current_user(pqxx::connection& conn) {
    pqxx::nontransaction tx(conn);
    return tx.exec1("SELECT session_user::text")[0].as<std::string>();
}

MigrationError drift_error(const std::vector<StatusEntry>& status) {
    std::string detail;
    for (const auto& entry : status)
        if (entry.state == State::drifted)
            detail += fmt::format("{}{} {}: {}", detail.empty() ? "" : "\n", entry.version.value_or(""), entry.name,
                                  entry.detail);
    return MigrationError(sqlstate::object_not_in_prerequisite_state,
                          "migrations are blocked: applied migrations drifted from their files", detail,
                          "restore the original files, or have an operator accept the change with "
                          "`pgrail migrate resolve <version>` (see docs/migrations.md)");
}

}  // namespace

MigrationError detail::partial_error(const std::vector<StatusEntry>& status) {
    std::string names;
    std::string detail;
    std::string hint;
    for (const auto& entry : status) {
        if (entry.state != State::partial || entry.partial == nullptr) continue;
        const PartialRun& run = *entry.partial;
        names += fmt::format("{}{}_{}", names.empty() ? "" : ", ", run.version, run.name);
        detail += fmt::format("{}{} {}: {}", detail.empty() ? "" : "\n", run.version, run.name, entry.detail);
        hint += fmt::format("{}{}", hint.empty() ? "" : "\n", partial_resolution(run));
    }
    return MigrationError(sqlstate::object_not_in_prerequisite_state,
                          fmt::format("migrations are blocked: the no-transaction script of {} stopped partway and "
                                      "its statements that ran were not undone; it is not run again",
                                      names),
                          detail, hint);
}

void detail::check_no_partial(const std::vector<StatusEntry>& status) {
    if (has_partial(status)) throw partial_error(status);
}

namespace {

std::string canonical_target(const std::string& text) {
    auto version = canonical_version(text);
    if (!version)
        throw MigrationError(sqlstate::invalid_parameter_value,
                             fmt::format("invalid migration version \"{}\": expected decimal digits", text));
    return *version;
}

// Pending migrations up to `target`, in version order; checks the target and drift.
std::vector<const Migration*> pending_until(const Registry& registry, const std::vector<StatusEntry>& status,
                                            const std::optional<std::string>& target_text) {
    detail::check_no_partial(status);
    if (has_drift(status)) throw drift_error(status);
    std::optional<std::string> target;
    if (target_text) {
        target = canonical_target(*target_text);
        const auto entry = std::find_if(status.begin(), status.end(),
                                        [&](const StatusEntry& e) { return e.version == target; });
        if (entry == status.end())
            throw MigrationError(sqlstate::invalid_parameter_value,
                                 fmt::format("pgrail: no registered migration with version {}; a proposal is applied "
                                             "only once an operator approved it (proposing the same scripts again "
                                             "shows its state), and SELECT * FROM pgrail.status() lists the migrations",
                                             *target),
                                 fmt::format("the migrations directory is {}", registry.dir().string()));
        if (entry->state == State::invalid)
            throw MigrationError(sqlstate::invalid_parameter_value,
                                 fmt::format("migration {} is invalid and can never be applied", *target),
                                 entry->detail);
    }
    std::vector<const Migration*> out;
    for (const auto& entry : status)
        if (entry.state == State::pending && (!target || !version_less(*target, *entry.version)))
            out.push_back(entry.migration);
    return out;
}

// `version` alone, and only when it is the next pending migration (pgrail.migrate_up('V')):
// applying it must never apply another one on the way.
std::vector<const Migration*> next_pending_exactly(const Registry& registry, const std::vector<StatusEntry>& status,
                                                   const std::string& version_text) {
    auto pending = pending_until(registry, status, version_text);
    const auto version = canonical_target(version_text);
    if (pending.empty() || pending.back()->version != version)
        throw MigrationError(sqlstate::object_not_in_prerequisite_state,
                             fmt::format("migration {} is already applied", version), "",
                             "SELECT * FROM pgrail.status() lists every migration and its state");
    if (pending.size() == 1) return pending;
    pending.pop_back();
    std::string versions;
    std::string named;
    for (std::size_t index = 0; index < pending.size(); ++index) {
        if (index < 10) versions += fmt::format("{}{}", index ? ", " : "", pending[index]->version);
        named += fmt::format("{}{} {}", index ? ", " : "", pending[index]->version, pending[index]->name);
    }
    if (pending.size() > 10) versions += fmt::format(" and {} more", pending.size() - 10);
    throw MigrationError(
        sqlstate::object_not_in_prerequisite_state,
        fmt::format("migration {} is not the next pending migration: {} pending before it: {}; apply {} first: "
                    "SELECT * FROM pgrail.migrate_up('{}') (or every pending one: SELECT * FROM pgrail.migrate_up())",
                    version, pending.size() == 1 ? "1 is" : fmt::format("{} are", pending.size()), versions,
                    pending.front()->version, pending.front()->version),
        fmt::format("pending before {}, in the order they apply: {}", version, named),
        fmt::format("apply them first, one at a time in version order (next: SELECT * FROM pgrail.migrate_up('{}')), "
                    "or every pending migration with SELECT * FROM pgrail.migrate_up()",
                    pending.front()->version));
}

std::vector<const Migration*> select_pending(const Registry& registry, const std::vector<StatusEntry>& status,
                                             const std::optional<std::string>& target, TargetMode mode) {
    if (mode == TargetMode::exactly && target) return next_pending_exactly(registry, status, *target);
    return pending_until(registry, status, target);
}

struct Session {
    std::unique_ptr<pqxx::connection> conn;
    std::string actor;
};

Session open_session(const RunnerOptions& options) {
    Session session{detail::connect(options.conninfo, options.backstop_key_file), options.actor};
    if (session.actor.empty()) {
        try {
            session.actor = current_user(*session.conn);
        } catch (...) {
            detail::rethrow_database_error("cannot read the current user");
        }
    }
    return session;
}

void write_audit(const RunnerOptions& options, nlohmann::json record) {
    if (!options.audit) return;
    record["type"] = "migration";
    if (!options.audit(record))
        throw MigrationError(sqlstate::io_error, "the audit record of a migration event could not be written",
                             record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "check the audit log's disk; the ledger has the event");
}

nlohmann::json audit_record(const std::string& event, const Migration& migration, const std::string& actor,
                            std::int64_t duration_ms, bool ok) {
    return {{"event", event},         {"version", migration.version},   {"name", migration.name},
            {"checksum", migration.checksum}, {"duration_ms", duration_ms}, {"user", actor},
            {"outcome", ok ? "ok" : "failed"}};
}

bool passing_verify(pqxx::connection& conn, const std::string& version, const std::string& checksum) {
    pqxx::read_transaction tx(conn);
    if (tx.exec1("SELECT to_regclass('pgrail.migration_events') IS NULL")[0].as<bool>()) return false;
    // The latest verify of this exact text decides: a pass on the schema alone does not outlive
    // a later failure (with sample rows, say) of the same checksum.
    return tx.exec_params1("SELECT coalesce((SELECT outcome = 'ok' FROM pgrail.migration_events WHERE version = $1 "
                           "AND checksum = $2 AND event = 'verified' ORDER BY id DESC LIMIT 1), false)",
                           version, checksum)[0]
        .as<bool>();
}

// A proposal's migration is applied only while the proposal is approved with this checksum: the
// approved set is read before the run waits for the lock, and a rejection may land meanwhile.
// In the step's own transaction the proposal's row is held FOR SHARE until the commit, so a
// rejection (FOR UPDATE) either came first and is seen here, or waits and then finds it applied.
void check_still_approved(pqxx::transaction_base& tx, const Migration& migration) {
    if (!migration.proposed) return;
    const auto rows = tx.exec_params(
        "SELECT state, checksum FROM pgrail.migration_proposals WHERE version = $1 FOR SHARE", migration.version);
    const std::string state = rows.empty() ? "gone" : rows[0][0].as<std::string>();
    if (state == "approved" && rows[0][1].as<std::string>() == migration.checksum) return;
    throw MigrationError(sqlstate::object_not_in_prerequisite_state,
                         fmt::format("pgrail: proposal {} ({}) is no longer approved: it is {}", migration.version,
                                     migration.name, state == "approved" ? "changed" : state),
                         "it was decided on while this run waited; nothing of it was applied",
                         "SELECT * FROM pgrail.status() shows what is pending.");
}

// Runs one script and records the outcome; throws the script's error after recording it.
StepResult run_step(pqxx::connection& conn, const RunnerOptions& options, const std::string& actor,
                    const Migration& migration, Direction direction) {
    if (direction == Direction::up && migration.proposed) {
        pqxx::work tx(conn);  // before anything runs (a no-transaction script commits as it goes)
        check_still_approved(tx, migration);
        tx.commit();
    }
    const Script& script = direction == Direction::up ? migration.up : migration.down;
    const std::string event = direction == Direction::up ? "applied" : "rolled_back";
    // The intent is on record before the schema changes: a migration whose audit line cannot
    // be written does not run (58030 from write_audit, nothing done).
    auto intent = audit_record(direction == Direction::up ? "apply_started" : "rollback_started", migration, actor, 0, true);
    intent["direction"] = to_string(direction);
    intent.erase("outcome");
    write_audit(options, intent);
    // The schema before the step: the baseline is then moved by what the step changed alone, and
    // a change made around pgrail before it stays schema drift (recording the live schema whole
    // would accept it unseen). Changes by others while the step runs count as the step's.
    std::string exclusions;
    std::string before;
    {
        pqxx::read_transaction tx(conn);
        exclusions = detail::fingerprint_exclusions(tx, options.bookkeeping_tables);
        before = detail::live_schema_description(tx, exclusions);
    }
    const auto change_since_before = [&](pqxx::transaction_base& tx) {
        return change_between(before, detail::live_schema_description(tx, exclusions));
    };
    const auto started = std::chrono::steady_clock::now();
    const auto failure = detail::run_script(
        conn, script, {options.lock_timeout, options.statement_timeout},
        [&](pqxx::transaction_base& tx) {
            const auto duration = elapsed_ms(started);
            // (A no-transaction script's statements are committed by now: what ran is recorded.)
            if (direction == Direction::up && !script.no_transaction) check_still_approved(tx, migration);
            if (direction == Direction::up)
                tx.exec_params0("INSERT INTO pgrail.schema_migrations (version, name, checksum, applied_by, "
                                "execution_ms) VALUES ($1, $2, $3, $4, $5)",
                                migration.version, migration.name, migration.checksum, actor, duration);
            else
                tx.exec_params0("DELETE FROM pgrail.schema_migrations WHERE version = $1", migration.version);
            detail::insert_event(tx, migration.version, migration.name, migration.checksum, event, true, actor,
                                 duration, "");
            // The schema as this step left it: status compares the live schema with it (schema drift).
            detail::record_fingerprint(tx, fmt::format("{} {}_{}", event, migration.version, migration.name),
                                       migration.version, actor, options.bookkeeping_tables,
                                       change_since_before(tx));
        },
        options.abandoned);
    const auto duration = elapsed_ms(started);
    if (failure) {
        const MigrationError script_failure = detail::script_error(migration, direction, script, *failure);
        // Statements of a no-transaction script that ran stay done: the event says how many,
        // in a form status reads back (the migration is then `partial` until resolved).
        const std::size_t done = detail::statements_left_done(script, *failure);
        const std::size_t total = script.statements.size();
        const std::string event_detail =
            done > 0 ? fmt::format("{}; {}{}", partial_event_prefix(direction, done, total), script_failure.message(),
                                   failure->outcome_unknown && done < total
                                       ? fmt::format(" (the connection was lost during statement {}: whether it "
                                                     "took effect is unknown)",
                                                     done + 1)
                                       : std::string())
                     : fmt::format("{}: {}", to_string(direction), script_failure.message());
        const auto record_event = [&](pqxx::connection& on) {
            pqxx::work tx(on);
            // The ledger may be read by roles that may not read the data: the server's words, which
            // quote values (a failing row, a duplicate key), are kept without them.
            detail::insert_event(tx, migration.version, migration.name, migration.checksum, "failed", false, actor,
                                 duration, audit::redact_message(event_detail));
            // Statements that stayed done changed the schema: the ledger's fingerprint says how
            // (the partial state explains them; they are no schema drift).
            if (done > 0)
                detail::record_fingerprint(tx, fmt::format("failed {}_{} partway", migration.version, migration.name),
                                           migration.version, actor, options.bookkeeping_tables,
                                           change_since_before(tx));
            tx.commit();
        };
        bool recorded = false;
        try {
            record_event(conn);
            recorded = true;
        } catch (...) {
        }
        if (!recorded && failure->connection_lost) {
            // This connection is gone (a terminated backend, a restart): one more try on a new
            // one, so that the ledger still tells what stayed done.
            try {
                auto fresh = detail::connect(detail::with_connect_timeout(options.conninfo, 5),
                                             options.backstop_key_file);
                record_event(*fresh);
                recorded = true;
            } catch (...) {
            }
        }
        std::string detail = script_failure.detail();
        std::string hint = script_failure.hint();
        if (done > 0) {
            const std::string more_text = failure->more.empty() ? "" : "\n" + failure->more;
            if (!more_text.empty() && detail.ends_with(more_text)) detail.erase(detail.size() - more_text.size());
            detail += direction == Direction::up ? "; the migration is not recorded as applied"
                                                 : "; the migration is still recorded as applied";
            detail += recorded ? std::string("; status (`pgrail migrate status`, SELECT * FROM pgrail.status()) shows "
                                             "it as partial, and up, plan, down and verify refuse to run until it "
                                             "is resolved")
                               : std::string("; the failure could not be recorded in the ledger either (see the "
                                             "audit log): status cannot show it as partial, so do not retry before "
                                             "checking the schema by hand");
            detail += more_text;
            PartialRun run;
            run.version = migration.version;
            run.name = migration.name;
            run.direction = direction;
            run.statements_ran = done;
            run.statements_total = total;
            if (recorded)
                hint = partial_resolution(run);
            else
                hint = fmt::format("Undo by hand what {} of {} did{} before running {} again: a retry runs the "
                                   "whole script.",
                                   statement_range(1, done), script.path.filename().string(),
                                   failure->outcome_unknown && done < total
                                       ? fmt::format(" (and statement {}, if it took effect)", done + 1)
                                       : std::string(),
                                   direction == Direction::up ? "up" : "down");
        } else if (script.no_transaction && failure->outcome_unknown) {
            hint = fmt::format("check by hand whether statement 1 of {} took effect, and undo it before a retry",
                               script.path.filename().string());
        }
        MigrationError error(script_failure.sqlstate(), script_failure.message(), detail, hint);
        error.quoting_server().server_words_from(script_failure.server_words_at());
        auto record = audit_record("failed", migration, actor, duration, false);
        record["direction"] = to_string(direction);
        record["error"] = audit::redact_message(script_failure.own_words());
        record["sqlstate"] = error.sqlstate();
        if (done > 0) {
            record["statements_ran"] = done;
            record["statements_total"] = total;
            record["detail"] = audit::redact_message(event_detail);
        }
        write_audit(options, record);
        throw error;
    }
    // Committed: the client is told so even if the outcome's audit line cannot be written (the
    // intent line and the ledger's event record it); never "failed" for a change that is done.
    try {
        write_audit(options, audit_record(event, migration, actor, duration, true));
    } catch (const MigrationError&) {
    }
    return {migration.version, migration.name, migration.checksum, direction, duration};
}

// Right after the lock is taken: an abandoned run does not even create the ledger.
void check_not_abandoned(const RunnerOptions& options) {
    if (is_abandoned(options.abandoned)) throw abandoned_error("once it held the migration lock", {});
}

std::string step_text(const StepResult& step) {
    return fmt::format("{} {}_{} ({} ms)", step.direction == Direction::up ? "applied" : "rolled back", step.version,
                       step.name, step.duration_ms);
}

// Runs the steps in order, stopping before the next one once the run is abandoned. A
// transactional step abandoned while it runs rolls back; its error becomes the run's.
std::vector<StepResult> run_steps(pqxx::connection& conn, const RunnerOptions& options, const std::string& actor,
                                  const std::vector<const Migration*>& migrations, Direction direction) {
    std::vector<StepResult> results;
    std::vector<std::string> done;
    for (const Migration* migration : migrations) {
        const auto name = fmt::format("{}_{}", migration->version, migration->name);
        if (is_abandoned(options.abandoned))
            throw abandoned_error(fmt::format("before {} of {}", direction == Direction::up ? "migration" : "rollback",
                                              name),
                                  done);
        try {
            results.push_back(run_step(conn, options, actor, *migration, direction));
        } catch (const MigrationError& error) {
            if (error.sqlstate() != sqlstate::query_canceled || !is_abandoned(options.abandoned)) throw;
            // A no-transaction script is never stopped by an abandon: its error is its own.
            if ((direction == Direction::up ? migration->up : migration->down).no_transaction) throw;
            throw abandoned_error(fmt::format("during {} of {} (its transaction was rolled back)",
                                              direction == Direction::up ? "migration" : "rollback", name),
                                  done);
        }
        done.push_back(step_text(results.back()));
    }
    return results;
}

}  // namespace

Runner::Runner(std::shared_ptr<const Registry> registry, RunnerOptions options)
    : registry_(std::move(registry)), options_(std::move(options)) {}

LedgerState read_ledger(const std::string& conninfo, std::chrono::milliseconds lock_timeout) {
    auto conn = detail::connect(conninfo);
    try {
        return detail::read_ledger(*conn, lock_timeout);
    } catch (...) {
        detail::rethrow_database_error("cannot read the migration ledger");
    }
}

LedgerState Runner::read_ledger() const { return migrations::read_ledger(options_.conninfo, options_.lock_timeout); }

std::shared_ptr<const Snapshot> Runner::snapshot() const {
    return std::make_shared<const Snapshot>(registry_, read_ledger());
}

StatusReport Runner::status_report() const {
    auto conn = detail::connect(options_.conninfo);
    LedgerState ledger;
    try {
        ledger = detail::read_ledger(*conn, options_.lock_timeout);
    } catch (...) {
        detail::rethrow_database_error("cannot read the migration ledger");
    }
    auto backstop = detail::read_backstop_status(*conn, std::nullopt);
    return {std::make_shared<const Snapshot>(registry_, std::move(ledger)), std::move(backstop),
            detail::read_schema_drift(*conn)};
}

std::vector<const Migration*> Runner::plan(const std::optional<std::string>& target, TargetMode mode) const {
    const auto ledger = read_ledger();
    return select_pending(*registry_, compute_status(*registry_, ledger), target, mode);
}

std::vector<StepResult> Runner::up(const std::optional<std::string>& target, TargetMode mode) {
    Session session = open_session(options_);
    detail::AdvisoryLock lock(*session.conn, options_.lock_wait, options_.abandoned);
    check_not_abandoned(options_);
    std::vector<const Migration*> pending;
    try {
        detail::ensure_ledger(*session.conn);
        // Read under the lock: a run that waited sees what the other one applied.
        const auto ledger = detail::read_ledger(*session.conn);
        pending = select_pending(*registry_, compute_status(*registry_, ledger), target, mode);
        if (options_.require_verified)
            for (const Migration* migration : pending)
                if (!passing_verify(*session.conn, migration->version, migration->checksum))
                    throw MigrationError(sqlstate::object_not_in_prerequisite_state,
                                         fmt::format("migration {}_{} has no passing verify of checksum {}",
                                                     migration->version, migration->name, migration->checksum),
                                         "the policy requires a passing rollback proof of the exact text to apply",
                                         fmt::format("run `pgrail migrate verify {}`", migration->version));
        // Lint findings the policy blocks: nothing is applied until each is waived (docs/lint.md).
        for (const Migration* migration : pending) check_lint_policy(*migration, options_.lint);
    } catch (...) {
        detail::rethrow_database_error("cannot plan the migration run");
    }
    return run_steps(*session.conn, options_, session.actor, pending, Direction::up);
}

namespace {

// Applied migrations newest first, each with its registered files; throws on drift of one
// that is to be rolled back.
std::vector<const Migration*> rollback_order(const Registry& registry, const LedgerState& ledger,
                                             const std::function<bool(const AppliedMigration&)>& wanted) {
    const auto status = compute_status(registry, ledger);
    detail::check_no_partial(status);
    std::vector<const Migration*> out;
    for (auto it = ledger.applied.rbegin(); it != ledger.applied.rend(); ++it) {
        if (!wanted(*it)) continue;
        const auto entry = std::find_if(status.begin(), status.end(),
                                        [&](const StatusEntry& e) { return e.version == it->version; });
        if (entry == status.end() || entry->state != State::applied || entry->migration == nullptr)
            throw MigrationError(sqlstate::object_not_in_prerequisite_state,
                                 fmt::format("cannot roll back {} {}: its files drifted", it->version, it->name),
                                 entry == status.end() ? "" : entry->detail,
                                 "restore the original files or resolve the drift first (docs/migrations.md)");
        out.push_back(entry->migration);
    }
    return out;
}

}  // namespace

std::vector<StepResult> Runner::down(const std::optional<std::string>& version_text) {
    Session session = open_session(options_);
    detail::AdvisoryLock lock(*session.conn, options_.lock_wait, options_.abandoned);
    check_not_abandoned(options_);
    const Migration* migration = nullptr;
    try {
        detail::ensure_ledger(*session.conn);
        const auto ledger = detail::read_ledger(*session.conn);
        if (ledger.applied.empty())
            throw MigrationError(sqlstate::object_not_in_prerequisite_state, "no applied migration to roll back");
        const AppliedMigration& latest = ledger.applied.back();
        if (version_text) {
            const auto version = canonical_target(*version_text);
            if (version != latest.version)
                throw MigrationError(
                    sqlstate::object_not_in_prerequisite_state,
                    fmt::format("migration {} is not the latest applied one; the latest is {} ({})", version,
                                latest.version, latest.name),
                    std::none_of(ledger.applied.begin(), ledger.applied.end(),
                                 [&](const AppliedMigration& row) { return row.version == version; })
                        ? fmt::format("migration {} is not applied", version)
                        : std::string(),
                    fmt::format("roll back newer migrations first, one at a time (next: SELECT * FROM "
                                "pgrail.migrate_down('{}')), or use `pgrail migrate down --to <version>`",
                                latest.version));
        }
        migration = rollback_order(*registry_, ledger, [&](const AppliedMigration& row) {
                        return row.version == latest.version;
                    }).front();
    } catch (...) {
        detail::rethrow_database_error("cannot plan the rollback");
    }
    return run_steps(*session.conn, options_, session.actor, {migration}, Direction::down);
}

std::vector<StepResult> Runner::down_to(const std::string& target_text) {
    const std::string target = canonical_target(target_text);
    Session session = open_session(options_);
    detail::AdvisoryLock lock(*session.conn, options_.lock_wait, options_.abandoned);
    check_not_abandoned(options_);
    std::vector<const Migration*> order;
    try {
        detail::ensure_ledger(*session.conn);
        const auto ledger = detail::read_ledger(*session.conn);
        if (target != "0" && std::none_of(ledger.applied.begin(), ledger.applied.end(),
                                          [&](const auto& row) { return row.version == target; }))
            throw MigrationError(sqlstate::invalid_parameter_value, fmt::format("migration {} is not applied", target),
                                 "", "use --to 0 to roll back everything");
        order = rollback_order(*registry_, ledger,
                               [&](const AppliedMigration& row) { return version_less(target, row.version); });
    } catch (...) {
        detail::rethrow_database_error("cannot plan the rollback");
    }
    return run_steps(*session.conn, options_, session.actor, order, Direction::down);
}

void Runner::resolve(const std::string& version_text, std::optional<Resolution> as) {
    const std::string version = canonical_target(version_text);
    Session session = open_session(options_);
    detail::AdvisoryLock lock(*session.conn, options_.lock_wait);
    nlohmann::json record;
    try {
        detail::ensure_ledger(*session.conn);
        const auto ledger = detail::read_ledger(*session.conn);
        const auto status = compute_status(*registry_, ledger);
        const auto entry = std::find_if(status.begin(), status.end(),
                                        [&](const StatusEntry& e) { return e.version == version; });
        if (entry != status.end() && entry->state == State::partial && entry->partial != nullptr) {
            const PartialRun& run = *entry->partial;
            if (!as)
                throw MigrationError(sqlstate::invalid_parameter_value,
                                     fmt::format("migration {} stopped partway: say how you left it, with --as "
                                                 "applied or --as pending",
                                                 version),
                                     entry->detail, partial_resolution(run));
            // The files' checksum when still registered (what was finished or undone by hand is
            // judged against them), else the one of the run.
            const std::string checksum = entry->migration ? entry->migration->checksum : run.checksum;
            const std::string name = entry->migration ? entry->migration->name : run.name;
            const std::string what = fmt::format("{} of {} statements of the no-transaction {} script had run",
                                                 run.statements_ran, run.statements_total, to_string(run.direction));
            std::string action;
            pqxx::work tx(*session.conn);
            const bool up = run.direction == Direction::up;
            if (*as == Resolution::applied) {
                if (entry->applied == nullptr)
                    tx.exec_params0("INSERT INTO pgrail.schema_migrations (version, name, checksum, applied_by, "
                                    "execution_ms) VALUES ($1, $2, $3, $4, 0)",
                                    version, name, checksum, session.actor);
                action = up ? fmt::format("partial up run ({}) finished by hand: recorded as applied", what)
                            : fmt::format("partial down run ({}) undone by hand: still applied", what);
            } else {
                if (entry->applied != nullptr)
                    tx.exec_params0("DELETE FROM pgrail.schema_migrations WHERE version = $1", version);
                action = up ? fmt::format("partial up run ({}) undone by hand: pending again", what)
                            : fmt::format("partial down run ({}) finished by hand: rolled back, pending", what);
            }
            detail::insert_event(tx, version, name, checksum, "resolved", true, session.actor, 0, action);
            // What was finished or undone by hand is the schema from now on.
            detail::record_fingerprint(tx, fmt::format("resolve {} --as {}", version,
                                                       *as == Resolution::applied ? "applied" : "pending"),
                                       version, session.actor, options_.bookkeeping_tables);
            tx.commit();
            record = {{"event", "resolved"},     {"version", version}, {"name", name},   {"checksum", checksum},
                      {"user", session.actor}, {"outcome", "ok"},    {"detail", action}, {"duration_ms", 0}};
        } else {
            if (as)
                throw MigrationError(sqlstate::invalid_parameter_value,
                                     fmt::format("migration {} did not stop partway: --as is only for a migration "
                                                 "whose status is partial",
                                                 version));
            if (entry == status.end() || entry->state != State::drifted)
                throw MigrationError(sqlstate::invalid_parameter_value,
                                     fmt::format("migration {} has not drifted and did not stop partway: "
                                                 "nothing to resolve",
                                                 version));
            pqxx::work tx(*session.conn);
            std::string action;
            if (entry->migration != nullptr) {
                tx.exec_params0("UPDATE pgrail.schema_migrations SET checksum = $2, name = $3 WHERE version = $1",
                                version, entry->migration->checksum, entry->migration->name);
                action = fmt::format("accepted changed files: checksum {} -> {}", entry->applied->checksum,
                                     entry->migration->checksum);
            } else {
                tx.exec_params0("DELETE FROM pgrail.schema_migrations WHERE version = $1", version);
                action = "forgot the applied migration whose files are gone (schema left as it is)";
            }
            const std::string checksum = entry->migration ? entry->migration->checksum : entry->applied->checksum;
            detail::insert_event(tx, version, entry->name, checksum, "resolved", true, session.actor, 0, action);
            tx.commit();
            record = {{"event", "resolved"},     {"version", version}, {"name", entry->name}, {"checksum", checksum},
                      {"user", session.actor}, {"outcome", "ok"},    {"detail", action},    {"duration_ms", 0}};
        }
    } catch (...) {
        detail::rethrow_database_error("cannot resolve the migration");
    }
    write_audit(options_, record);
}

bool Runner::has_passing_verify(const std::string& version, const std::string& checksum) const {
    auto conn = detail::connect(options_.conninfo);
    try {
        return passing_verify(*conn, version, checksum);
    } catch (...) {
        detail::rethrow_database_error("cannot read the migration events");
    }
}

}  // namespace pgrail::migrations

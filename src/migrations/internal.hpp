// Shared by runner.cpp and verify.cpp: ledger SQL, script execution, errors (libpqxx types).
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <pqxx/pqxx>

#include "pgrail/migrations/error.hpp"
#include "pgrail/migrations/registry.hpp"
#include "pgrail/migrations/runner.hpp"
#include "pgrail/migrations/status.hpp"

namespace pgrail::migrations::detail {

std::unique_ptr<pqxx::connection> connect(const std::string& conninfo);

LedgerState read_ledger(pqxx::connection& conn);
// Creates schema pgrail and its tables when missing (call under the advisory lock).
void ensure_ledger(pqxx::connection& conn);
void insert_event(pqxx::transaction_base& tx, const std::string& version, const std::string& name,
                  const std::string& checksum, const std::string& event, bool ok, const std::string& by,
                  std::int64_t duration_ms, const std::string& detail);

// Holds pg_advisory_lock(advisory_lock_key) on `conn` for its lifetime.
class AdvisoryLock {
public:
    AdvisoryLock(pqxx::connection& conn, std::chrono::milliseconds wait);
    ~AdvisoryLock();
    AdvisoryLock(const AdvisoryLock&) = delete;
    AdvisoryLock& operator=(const AdvisoryLock&) = delete;

private:
    pqxx::connection& conn_;
};

struct Timeouts {
    std::chrono::milliseconds lock_timeout;
    std::chrono::milliseconds statement_timeout;
};

struct ScriptFailure {
    std::size_t index = 0;  // 0-based statement index; == statements.size() at commit/record
    std::string sqlstate;
    std::string message;    // PostgreSQL's primary message
    std::string more;       // the rest of libpq's text (LINE/DETAIL/HINT)
};

// Runs `script` (in one transaction unless no-transaction) and then `record` in the same
// transaction (a separate one for no-transaction scripts). Returns the failure, if any.
std::optional<ScriptFailure> run_script(pqxx::connection& conn, const Script& script, const Timeouts& timeouts,
                                        const std::function<void(pqxx::transaction_base&)>& record);

MigrationError script_error(const Migration& migration, Direction direction, const Script& script,
                            const ScriptFailure& failure);

// The error libpqxx reports, as a MigrationError (connection failures -> 08006).
[[noreturn]] void rethrow_database_error(const std::string& what_we_did);

std::int64_t elapsed_ms(std::chrono::steady_clock::time_point since);

}  // namespace pgrail::migrations::detail

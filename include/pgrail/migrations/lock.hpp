// pgrail's migration lock: the advisory lock key every runner takes, the bounded wait for
// it, who holds it when the wait fails, and the flag that abandons a run whose client left.
// Light on purpose (no libpqxx): the policy includes it for the key.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pgrail/migrations/error.hpp"

namespace pgrail::migrations {

// Session-level advisory lock key taken by every pgrail runner: "pgrailmg" in ASCII,
// 8099568217555234151 (the bigint form, pg_advisory_lock(bigint)).
inline constexpr std::int64_t advisory_lock_key = 0x7067726169'6c6d67;
// The turns of proposals' proofs (RunnerOptions::proof_turns, at most 64): the keys after it.
inline constexpr std::int64_t proof_lock_first_key = advisory_lock_key + 1;
inline constexpr std::int64_t proof_lock_last_key = advisory_lock_key + 64;
// How pg_locks shows it: locktype 'advisory', classid = the high 32 bits, objid = the low
// 32 bits, objsubid = 1 (the two-int4 form pg_advisory_lock(int4, int4) has objsubid 2 and
// is a different lock).
inline constexpr std::uint32_t advisory_lock_classid =
    static_cast<std::uint32_t>(static_cast<std::uint64_t>(advisory_lock_key) >> 32);  // 1885827681
inline constexpr std::uint32_t advisory_lock_objid =
    static_cast<std::uint32_t>(static_cast<std::uint64_t>(advisory_lock_key) & 0xffffffffu);  // 1768713575

// application_name of the runner's connections when their conninfo names none, so that a
// holder of the lock can be told apart from other sessions.
inline constexpr std::string_view runner_application_name = "pgrail-migrate";

// Set (to true) by whoever asked for a run when its answer is no longer wanted: the client
// cancelled or disconnected. The runner stops waiting for the lock, applies nothing after
// it took the lock, starts no further migration, and cancels the statement of a running
// transactional migration (which then rolls back). Null: never abandoned.
using AbandonFlag = std::shared_ptr<const std::atomic<bool>>;

[[nodiscard]] inline bool is_abandoned(const AbandonFlag& flag) {
    return flag && flag->load(std::memory_order_acquire);
}

enum class LockWait { acquired, timed_out, abandoned };

// Polls `try_lock` until it returns true, `abandoned` returns true, or `wait` has passed
// (`try_lock` is called at least once, and once more at the deadline). Sleeps between polls,
// 10 ms doubling to at most 100 ms, so an abandoned run stops waiting within about 100 ms.
[[nodiscard]] LockWait wait_for_lock(const std::function<bool()>& try_lock, const std::function<bool()>& abandoned,
                                     std::chrono::milliseconds wait);

// A backend holding (a granted lock on) the advisory lock key, from pg_locks and
// pg_stat_activity. Fields pg_stat_activity hides from the runner's role are empty.
struct LockHolder {
    int pid = 0;
    std::string mode;  // ExclusiveLock, or ShareLock for pg_advisory_lock_shared
    std::string user;
    std::string application_name;
    std::string client_address;  // empty: a Unix socket (or hidden)
    std::string state;           // active, idle, idle in transaction, ...
    std::string backend_start;
    std::string state_change;
};

// Whether the holder is one of pgrail's own runners (by application_name).
[[nodiscard]] bool is_pgrail_runner(const LockHolder& holder);

// The error of a run that waited `waited` for the lock in vain (SQLSTATE 55P03): the message
// names the holders' pids, the detail describes them, the hint says how to resolve it.
[[nodiscard]] MigrationError lock_wait_error(const std::vector<LockHolder>& holders, std::chrono::milliseconds waited);

// The error of an abandoned run (SQLSTATE 57014, query_canceled). `when` says at which point
// it stopped ("while waiting for the migration lock", ...); `done` lists what it did before
// (empty: nothing was applied or rolled back).
[[nodiscard]] MigrationError abandoned_error(std::string_view when, const std::vector<std::string>& done);

}  // namespace pgrail::migrations

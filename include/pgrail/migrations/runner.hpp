// The runner: applies and rolls back registered migrations against the target database
// (libpqxx, blocking), under a PostgreSQL advisory lock, recording ledger, events and audit.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pgrail/migrations/backstop.hpp"
#include "pgrail/migrations/fingerprint.hpp"
#include "pgrail/migrations/lint_catalogue.hpp"
#include "pgrail/migrations/lock.hpp"
#include "pgrail/migrations/proposals.hpp"
#include "pgrail/migrations/registry.hpp"
#include "pgrail/migrations/snapshot.hpp"
#include "pgrail/migrations/status.hpp"

namespace pqxx {
class transaction_base;
}

namespace pgrail::migrations {

// Writes one audit record; returns false when it could not be written (the runner then fails).
using AuditSink = std::function<bool(const nlohmann::json&)>;

// advisory_lock_key (8099568217555234151), the lock wait and AbandonFlag: lock.hpp.

struct RunnerOptions {
    std::string conninfo;                               // libpq conninfo of the target database
    std::chrono::milliseconds lock_timeout{5000};       // SET LOCAL lock_timeout per migration
    std::chrono::milliseconds statement_timeout{60000}; // SET LOCAL statement_timeout per migration
    // How long up/down/resolve/verify wait for the advisory lock before failing with 55P03
    // (naming the holder). status and plan never take the lock.
    std::chrono::milliseconds lock_wait{300000};
    std::string actor;                 // recorded as applied_by / by; empty: the connection's user
    bool require_verified = false;     // apply only checksums with a passing verify
    AuditSink audit;                   // optional
    AbandonFlag abandoned;             // optional: set when the asker no longer wants the run
    // verify: where scratch databases are created (default: the target's server) and pg_dump.
    std::string scratch_conninfo;
    std::string pg_dump;               // default: $PGRAIL_PG_DUMP, PostgreSQL 15's, or PATH
    // verify, opt-in: copy at most this many rows of each table from the target into the scratch
    // copy (0: schema only), so that a migration meets data (`ADD COLUMN ... NOT NULL` fails on a
    // table with rows). At most max_verify_sample_rows.
    std::int64_t verify_sample_rows = 0;
    // Columns never read from the target for that sample ("schema.table.column", as sensitive
    // columns of a policy will be): left NULL or at their default in the copy; a table with such
    // a column NOT NULL without a default gets no rows (said in the result).
    std::vector<std::string> verify_exclude_columns;
    // verify of an agent's proposal (propose(), scratch_guard.hpp): before the verified migration's
    // scripts run, the scratch copy must pass detail::scratch_escape with these names of calls
    // (ScratchConfinement::call_names), or verify throws MigrationError (42501) and runs nothing
    // of them. nullopt: scripts an operator registered or approved.
    std::optional<std::vector<std::string>> scratch_call_names;
    // The proof of an agent's proposal (propose()) runs scripts no one has read, on the migration
    // database's server: it is bounded as a whole. Each statement at most proof_statement_timeout
    // (the scratch copy has no rows: real DDL takes milliseconds), all its scripts together at most
    // proof_timeout, the scratch database at most proof_max_scratch_bytes (asked after each
    // statement), and proof_turns proofs at a time on the database's server among all pgrail
    // processes (one more meanwhile: 55P03). Zero: no bound (turns: one).
    std::chrono::milliseconds proof_timeout{30000};
    std::uint32_t proof_turns = 1;
    // propose(): a proposer's proposals waiting for a decision at most (0: no bound).
    std::uint32_t proposals_waiting = 0;
    std::chrono::milliseconds proof_statement_timeout{5000};
    std::uint64_t proof_max_scratch_bytes = 256ULL << 20;
    // verify: set by propose() from the bounds above, for the proposal's own scripts (not for an
    // operator's verify, nor the registered migrations verify runs first).
    struct ProofBounds {
        std::chrono::milliseconds statement_timeout{0};  // 0: the runner's
        std::chrono::milliseconds total{0};              // 0: none
        std::uint64_t max_growth_bytes = 0;              // over the scratch copy's size before; 0: none
    };
    std::optional<ProofBounds> proof_bounds;
    // verify: called on the scratch copy after each verified migration's up script, before its
    // transaction commits (a no-transaction script: in a transaction of its own after it), once
    // (not for the up again after the down). propose() reads there what its up script made; an
    // exception fails the verification.
    std::function<void(pqxx::transaction_base&, const Migration&)> inspect_up;
    // The key `pgrail backstop install` wrote: where the database has the backstop, every
    // connection that changes the schema or writes the ledger authorizes itself with it.
    std::string backstop_key_file;
    // propose(): approve at once what is clean (the proposing session's rule's
    // migrations.auto_approve); never: an operator approves every proposal.
    AutoApprove auto_approve = AutoApprove::never;
    // Migration tools' bookkeeping tables (the policy's migrations.bookkeeping_tables): left out of
    // the schema fingerprint (fingerprint.hpp). Empty: the previous fingerprint's list is kept.
    std::vector<std::string> bookkeeping_tables;
    // up() refuses a pending migration with an unwaived lint finding this policy blocks (the
    // policy's migrations.lint; default: error severity blocks). docs/lint.md.
    LintPolicy lint;
};

// status(): the migrations and the database's backstop, read on one connection.
struct StatusReport {
    std::shared_ptr<const Snapshot> snapshot;
    BackstopStatus backstop;
    SchemaDrift schema;  // the live schema against the ledger's latest fingerprint
};

// What an operator left a partial migration as (`pgrail migrate resolve V --as applied|pending`).
enum class Resolution { applied, pending };

// How up() and plan() read a target version: every pending migration up to and including it (the
// CLI's `--to`), or that migration alone, and only when it is the next pending one (in-band
// pgrail.migrate_up('V') and pgrail.plan('V'): otherwise MigrationError 55000 listing the pending
// migrations before it, or saying it is already applied).
enum class TargetMode { up_to, exactly };

struct StepResult {
    std::string version;
    std::string name;
    std::string checksum;
    Direction direction = Direction::up;
    std::int64_t duration_ms = 0;
};

inline constexpr std::int64_t max_verify_sample_rows = 1'000'000;

// The strongest lock a script held on one table, e.g. {"profiles", "ACCESS EXCLUSIVE"}.
struct TableLock {
    std::string table;  // unqualified in schema public, else schema.table
    std::string mode;
};

// What verify saw the migration do in the scratch copy (verify_measure.cpp). Only tables that
// existed before up count: a table the script creates is neither rewritten nor blocking.
struct VerifyMeasurement {
    std::vector<std::string> rewrites;       // tables whose relfilenode up changed (a rewrite)
    std::vector<std::string> down_rewrites;  // the same for down
    bool locks_measured = false;             // false: no-transaction up script, or up did not finish
    std::vector<TableLock> locks;            // up, read from pg_locks just before its commit
    std::int64_t up_ms = -1;                 // -1: the script did not run to its end
    std::int64_t down_ms = -1;
    std::int64_t reup_ms = -1;               // up again after down
};

// The opt-in row sample (verify_sample.cpp): the same for every migration of one verify run.
struct VerifySample {
    std::int64_t rows_per_table = 0;   // the setting; 0: schema only
    std::int64_t rows = 0;             // rows copied in all
    std::int64_t tables = 0;           // tables that got rows
    std::vector<std::string> notes;    // tables skipped, columns left out, and why
};

struct VerifyResult {
    std::string version;
    std::string name;
    std::string checksum;
    bool passed = false;
    std::string detail;   // on failure: the schema diff or the error
    std::int64_t duration_ms = 0;
    VerifyMeasurement measurement;
    VerifySample sample;
};

// One readable line: "no table rewritten; locks: profiles ACCESS EXCLUSIVE; up 3 ms, down 2 ms,
// up again 3 ms; sample: schema only" (the `verified` event's detail, the CLI, pgrail.verify()).
[[nodiscard]] std::string rewrites_text(const VerifyResult& result);
[[nodiscard]] std::string locks_text(const VerifyResult& result);
[[nodiscard]] std::string sample_text(const VerifySample& sample);
[[nodiscard]] std::string measurement_text(const VerifyResult& result);
// The same as JSON (the audit line).
[[nodiscard]] nlohmann::json measurement_json(const VerifyResult& result);

class Runner {
public:
    Runner(std::shared_ptr<const Registry> registry, RunnerOptions options);

    // Reads the ledger (never the advisory lock; a table lock on the ledger is waited for at
    // most lock_timeout; missing ledger = nothing applied).
    [[nodiscard]] LedgerState read_ledger() const;
    [[nodiscard]] std::shared_ptr<const Snapshot> snapshot() const;
    // The snapshot and the backstop's state (whose failure to read is in its error, not thrown).
    [[nodiscard]] StatusReport status_report() const;

    // What up(target, mode) would apply, in order (reads the ledger as read_ledger() does). Throws
    // MigrationError on drift or a bad target.
    [[nodiscard]] std::vector<const Migration*> plan(const std::optional<std::string>& target,
                                                     TargetMode mode = TargetMode::up_to) const;
    // Applies pending migrations in version order: without a target all of them; with one, every
    // one up to and including it (up_to), or it alone when it is the next pending one (exactly).
    std::vector<StepResult> up(const std::optional<std::string>& target, TargetMode mode = TargetMode::up_to);
    // Rolls back the latest applied migration; when `version` is given it must be that one.
    std::vector<StepResult> down(const std::optional<std::string>& version);
    // Rolls back, newest first, every applied migration with a version above `target`
    // ("0": all of them).
    std::vector<StepResult> down_to(const std::string& target);
    // Operator's resolution (CLI only), never touching the schema. Drift (`as` empty): accept
    // the current files of an applied migration (ledger checksum := files' checksum), or forget
    // a vanished one (ledger row removed). Partial (a no-transaction script stopped partway,
    // `as` required): the operator finished or undid its statements by hand and says which
    // state that left: applied (ledger row written, or kept) or pending (row removed, or none).
    void resolve(const std::string& version, std::optional<Resolution> as = std::nullopt);
    // Schema drift's way out (`pgrail migrate resolve --accept-schema`, fingerprint.cpp): records the
    // live schema as the new baseline, with a `resolved` event (version "schema") whose detail holds
    // the diff that was accepted. Never touches the schema. Returns the drift it accepted.
    SchemaDrift accept_schema();
    // Rollback proof in a scratch database (see docs/migrations.md); `version` empty: every
    // pending migration. Records a `verified` event per migration.
    std::vector<VerifyResult> verify(const std::optional<std::string>& version);
    [[nodiscard]] bool has_passing_verify(const std::string& version, const std::string& checksum) const;

    // Proposals (proposals.cpp; docs/migrations.md "Proposed migrations"). propose() parses both
    // scripts, checks their structure, verifies them in a scratch database (as verify() does, the
    // proposal ordered after every registered migration), and stores the proposal in the ledger
    // database with a `proposed` event (and `approved`, under AutoApprove::clean when it is clean).
    // An identical proposal (same name and checksum) is answered as it is stored. Never changes the
    // schema. Throws MigrationError (22023 bad name or empty script, 42601 a script that does not parse).
    Proposal propose(const std::string& name, const std::string& up_sql, const std::string& down_sql);
    // An operator's decision on a proposal: approve (it must be proposed), or reject with a reason
    // (proposed, or approved and not applied). Records an event and an audit line.
    Proposal approve(const std::string& version);
    Proposal reject(const std::string& version, const std::string& reason);

    [[nodiscard]] const Registry& registry() const { return *registry_; }
    [[nodiscard]] const RunnerOptions& options() const { return options_; }

private:
    std::shared_ptr<const Registry> registry_;
    RunnerOptions options_;
};

// Reads the ledger of the database at `conninfo` (for refreshing a Snapshot), without the
// advisory lock, waiting at most `lock_timeout` for a table lock on the ledger.
[[nodiscard]] LedgerState read_ledger(const std::string& conninfo,
                                      std::chrono::milliseconds lock_timeout = std::chrono::milliseconds(5000));

}  // namespace pgrail::migrations

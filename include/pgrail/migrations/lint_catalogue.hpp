// The migration lint catalogue as data: every rule's stable id, severity, one-line message and
// safe recipe (docs/lint.md explains each). Header-only and constexpr so that the policy loader
// can validate rule ids without linking the migrations module; the checks are in
// src/migrations/lint_rules.cpp, one small function per rule.
#pragma once

#include <array>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace pgrail::migrations {

enum class LintSeverity { error, warning, info };

constexpr const char* to_string(LintSeverity severity) {
    switch (severity) {
    case LintSeverity::error: return "error";
    case LintSeverity::warning: return "warning";
    case LintSeverity::info: return "info";
    }
    return "warning";
}

struct LintRuleInfo {
    std::string_view id;        // kebab-case, stable: waivers, policies and CI reference it
    LintSeverity severity;
    std::string_view message;   // what is wrong, one line
    std::string_view recipe;    // the safe way, one line
};

// In docs/lint.md's order.
inline constexpr std::array lint_catalogue{
    // Table rewrites: the table is rewritten under ACCESS EXCLUSIVE, blocking reads and writes.
    LintRuleInfo{"volatile-default", LintSeverity::warning,
                 "ADD COLUMN with a volatile default (or serial) rewrites the whole table under ACCESS EXCLUSIVE",
                 "add the column without a default (or with a constant), then backfill in batches and SET DEFAULT"},
    LintRuleInfo{"column-type-change", LintSeverity::warning,
                 "ALTER COLUMN ... TYPE to a type that is not binary-compatible rewrites the table under ACCESS EXCLUSIVE",
                 "add a new column, backfill it in batches, switch readers and writers, then drop the old column"},
    LintRuleInfo{"add-generated-column", LintSeverity::warning,
                 "adding a stored generated or identity column to an existing table rewrites it under ACCESS EXCLUSIVE",
                 "add a plain nullable column, backfill it in batches, then fill it with a trigger or the application"},
    // Long locks.
    LintRuleInfo{"index-not-concurrent", LintSeverity::warning,
                 "CREATE INDEX without CONCURRENTLY blocks writes to the table for the whole build",
                 "CREATE INDEX CONCURRENTLY in a script of its own marked `-- pgrail:no-transaction`"},
    LintRuleInfo{"drop-index-not-concurrent", LintSeverity::warning,
                 "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the index's table",
                 "DROP INDEX CONCURRENTLY in a script of its own marked `-- pgrail:no-transaction`"},
    LintRuleInfo{"reindex-not-concurrent", LintSeverity::warning,
                 "REINDEX without CONCURRENTLY blocks writes (and reads through the index) until it finishes",
                 "REINDEX ... CONCURRENTLY in a script of its own marked `-- pgrail:no-transaction`"},
    LintRuleInfo{"foreign-key-not-valid", LintSeverity::warning,
                 "ADD FOREIGN KEY without NOT VALID scans the table while blocking writes to both tables",
                 "ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, then VALIDATE CONSTRAINT in a later migration"},
    LintRuleInfo{"check-not-valid", LintSeverity::warning,
                 "ADD CHECK without NOT VALID scans the whole table under ACCESS EXCLUSIVE",
                 "ADD CONSTRAINT ... CHECK (...) NOT VALID, then VALIDATE CONSTRAINT in a later migration"},
    LintRuleInfo{"set-not-null", LintSeverity::warning,
                 "SET NOT NULL scans the whole table under ACCESS EXCLUSIVE unless a validated CHECK proves it",
                 "ADD CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, then SET NOT NULL (and drop the check)"},
    LintRuleInfo{"unique-without-index", LintSeverity::warning,
                 "ADD PRIMARY KEY / UNIQUE builds its index under ACCESS EXCLUSIVE",
                 "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... PRIMARY KEY / UNIQUE USING INDEX"},
    LintRuleInfo{"exclusion-constraint", LintSeverity::warning,
                 "ADD EXCLUDE builds its index and checks every row under ACCESS EXCLUSIVE",
                 "add the exclusion constraint while the table is new or small, in a maintenance window"},
    LintRuleInfo{"multiple-exclusive-locks", LintSeverity::warning,
                 "more than one ACCESS EXCLUSIVE statement in one migration holds the locks until it commits",
                 "split the migration so each transaction takes one ACCESS EXCLUSIVE lock, briefly"},
    LintRuleInfo{"vacuum-full", LintSeverity::warning,
                 "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE",
                 "plain VACUUM, or an online repack tool outside migrations"},
    LintRuleInfo{"cluster", LintSeverity::warning,
                 "CLUSTER rewrites the table under ACCESS EXCLUSIVE",
                 "leave physical ordering to maintenance outside migrations (an online repack tool)"},
    LintRuleInfo{"lock-table", LintSeverity::warning,
                 "LOCK TABLE holds an explicit lock until the migration commits",
                 "rely on the statements' own locks and the runner's lock_timeout; never lock by hand"},
    // Breaking running applications, destroying data.
    LintRuleInfo{"rename-table", LintSeverity::warning,
                 "renaming a table breaks every running query that uses the old name",
                 "create a view with the old name (or keep both names) until no client uses it"},
    LintRuleInfo{"rename-column", LintSeverity::warning,
                 "renaming a column breaks every running query that uses the old name",
                 "add the new column, write both, backfill, move readers, then drop the old column"},
    LintRuleInfo{"drop-column", LintSeverity::error,
                 "DROP COLUMN destroys its data: no rollback can bring it back",
                 "stop using the column in the application first; waive with `-- pgrail:allow drop-column <reason>`"},
    LintRuleInfo{"drop-table", LintSeverity::error,
                 "DROP TABLE destroys its data: no rollback can bring it back",
                 "rename or archive the table first; waive with `-- pgrail:allow drop-table <reason>`"},
    LintRuleInfo{"truncate", LintSeverity::error,
                 "TRUNCATE destroys every row: no rollback can bring them back",
                 "delete what must go in batches outside the schema migration; waive with a reason"},
    LintRuleInfo{"delete-rows", LintSeverity::error,
                 "DELETE in a migration destroys rows: no rollback can bring them back",
                 "copy the rows aside first (or delete in batches outside the migration); waive with a reason"},
    LintRuleInfo{"type-narrowing", LintSeverity::error,
                 "narrowing a column's type fails on, or rounds, existing values and cannot be reversed",
                 "add a constrained new column (or a NOT VALID CHECK), backfill, validate, then switch"},
    LintRuleInfo{"not-null-without-default", LintSeverity::error,
                 "ADD COLUMN ... NOT NULL without a default fails on a table that has rows",
                 "add the column nullable (or with a constant default), backfill, then SET NOT NULL safely"},
    LintRuleInfo{"unbatched-update", LintSeverity::warning,
                 "UPDATE without WHERE rewrites every row of the table in one transaction",
                 "backfill in batches (UPDATE ... WHERE id BETWEEN ...) outside the schema migration"},
    LintRuleInfo{"alter-enum", LintSeverity::warning,
                 "ALTER TYPE ... ADD/RENAME VALUE cannot be undone by a down script and breaks old readers",
                 "add enum values in a migration of their own; use a lookup table when values change often"},
    LintRuleInfo{"dynamic-schema-change", LintSeverity::error,
                 "a DO block (or a query string run by a function) changes the schema or builds SQL at run time: "
                 "these rules read only the script's own statements, so what it runs goes unchecked",
                 "write each change as a statement of the script; waive with `-- pgrail:allow dynamic-schema-change "
                 "<reason>` only after reading every statement it runs"},
    // Transactions.
    LintRuleInfo{"concurrently-in-transaction", LintSeverity::error,
                 "CONCURRENTLY cannot run inside a transaction: without `-- pgrail:no-transaction` it fails (25001)",
                 "put the statement alone in a script marked `-- pgrail:no-transaction`"},
    LintRuleInfo{"no-transaction-multiple-statements", LintSeverity::warning,
                 "a no-transaction script with several statements can stop halfway, some statements done",
                 "one statement per `-- pgrail:no-transaction` migration"},
    // Robustness preferences.
    LintRuleInfo{"prefer-bigint-key", LintSeverity::info,
                 "an int, smallint or serial primary key can run out of values",
                 "use bigint (bigint GENERATED ALWAYS AS IDENTITY) for primary keys"},
    LintRuleInfo{"prefer-timestamptz", LintSeverity::info,
                 "timestamp without time zone loses the offset and misbehaves across time zones",
                 "use timestamptz"},
    LintRuleInfo{"prefer-text", LintSeverity::info,
                 "varchar(n) / char(n) hard-code a limit that takes a migration to change (char(n) also pads with spaces)",
                 "use text, with a CHECK (char_length(col) <= n) if a limit is needed"},
    LintRuleInfo{"prefer-jsonb", LintSeverity::info,
                 "json has no equality operator and is re-parsed on every access",
                 "use jsonb"},
    LintRuleInfo{"prefer-identity", LintSeverity::info,
                 "serial columns own a sequence with loose permissions and odd dump semantics",
                 "use GENERATED ALWAYS AS IDENTITY"},
    LintRuleInfo{"prefer-if-exists", LintSeverity::info,
                 "in a no-transaction script a statement without IF [NOT] EXISTS fails when the script is retried",
                 "use CREATE ... IF NOT EXISTS / DROP ... IF EXISTS so a retry after a partial run succeeds"},
    // Rollback pairing and the waivers themselves.
    LintRuleInfo{"rollback-incomplete", LintSeverity::warning,
                 "the down script does not undo a change of the up script",
                 "add the inverse statement (DROP for CREATE, DROP COLUMN for ADD COLUMN, ...) to the down script"},
    LintRuleInfo{"unknown-waiver", LintSeverity::warning,
                 "a `-- pgrail:allow` waiver names a rule that does not exist, so it waives nothing",
                 "use a rule id from docs/lint.md (`pgrail migrate lint --rules` lists them)"},
};

// The rule with this id, or nullptr.
constexpr const LintRuleInfo* find_lint_rule(std::string_view id) {
    for (const auto& rule : lint_catalogue)
        if (rule.id == id) return &rule;
    return nullptr;
}

// What the policy does with an unwaived finding: report it (warn) or refuse to apply the
// migration until the finding is waived (block).
enum class LintLevel { warn, block };

constexpr const char* to_string(LintLevel level) { return level == LintLevel::block ? "block" : "warn"; }

// The policy's `migrations: {lint: {default: warn|block, rules: {<id>: warn|block}}}`. Without a
// default a rule's level follows its severity: error blocks, warning and info warn.
struct LintPolicy {
    std::optional<LintLevel> default_level;
    std::map<std::string, LintLevel, std::less<>> rules;

    [[nodiscard]] LintLevel level_for(std::string_view rule) const {
        if (const auto found = rules.find(rule); found != rules.end()) return found->second;
        if (default_level) return *default_level;
        const LintRuleInfo* info = find_lint_rule(rule);
        return info != nullptr && info->severity == LintSeverity::error ? LintLevel::block : LintLevel::warn;
    }
    bool operator==(const LintPolicy&) const = default;
};

}  // namespace pgrail::migrations

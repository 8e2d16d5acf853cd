// Migration lint: the catalogue's checks (lint_catalogue.hpp) run over libpg_query's parse trees
// of a migration's scripts, the rollback pairing of up against down, waivers, and the policy's
// per-rule levels (docs/lint.md).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pgrail/migrations/lint_catalogue.hpp"
#include "pgrail/migrations/registry.hpp"

namespace pgrail::migrations {

// Lints every migration in order, filling Script::lint_findings of each up script (the catalogue
// runs on up scripts; the down script is judged by the rollback pairing, reported on the up
// script). Earlier migrations tell later ones which tables exist and their column types (a type
// change is judged against the type the directory gave the column).
void lint_migrations(std::vector<Migration>& migrations);

// Lints one migration on its own (a proposal): nothing is known about earlier migrations, every
// table it does not create counts as existing.
[[nodiscard]] std::vector<LintFinding> lint_migration(const Migration& migration);

// The unwaived findings the policy blocks, in order.
[[nodiscard]] std::vector<const LintFinding*> blocking_findings(const Script& script, const LintPolicy& policy);

// Throws MigrationError 55000 when the policy blocks an unwaived finding of the migration's up
// script: naming the rule, the statement's line and how to waive it (Runner::up calls it for
// every pending migration before applying any).
void check_lint_policy(const Migration& migration, const LintPolicy& policy);

// How to waive a finding, for error messages: `-- pgrail:allow <rule> <reason>` in <file>.
[[nodiscard]] std::string waiver_hint(const LintFinding& finding, const Script& script);

// `pgrail migrate lint` output over a registry's migrations (and its invalid files).
enum class LintFormat { text, json, sarif };
struct LintReport {
    std::string output;
    std::size_t errors = 0;    // unwaived error-severity findings
    std::size_t warnings = 0;  // unwaived warnings
    std::size_t infos = 0;     // unwaived infos
    std::size_t waived = 0;
    std::size_t blocked = 0;   // unwaived findings the policy blocks
    std::size_t invalid = 0;   // invalid files
    [[nodiscard]] bool failed() const { return errors > 0 || blocked > 0 || invalid > 0; }
};
[[nodiscard]] LintReport lint_report(const Registry& registry, LintFormat format, const LintPolicy& policy = {});

}  // namespace pgrail::migrations

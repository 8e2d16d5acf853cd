// Proposed migrations: scripts an agent hands pgrail over SQL (pgrail.propose_migration), checked,
// verified and stored in the ledger database (pgrail.migration_proposals) until an operator (or the
// policy's auto_approve) approves them; an approved proposal is a registered migration.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "pgrail/migrations/registry.hpp"

namespace pgrail::migrations {

// The policy's migrations.auto_approve for the proposing session's rule.
enum class AutoApprove { never, clean };

enum class ProposalState { proposed, approved, rejected };
const char* to_string(ProposalState state);

// One row of pgrail.migration_proposals.
struct Proposal {
    std::string version;
    std::string name;
    std::string up_sql;
    std::string down_sql;
    bool no_transaction = false;
    std::string checksum;
    nlohmann::json findings = nlohmann::json::array();  // [{rule, script, message}]
    std::string verification;  // "passed", "failed: reason", "skipped: reason"
    ProposalState state = ProposalState::proposed;
    std::string proposed_by;
    std::string proposed_at;
    std::string decided_by;
    std::string decided_at;
    std::string reason;
};

// Where a proposal's scripts are said to come from in errors (a migration's Script::path).
inline constexpr std::string_view proposals_source = "pgrail.migration_proposals";

// A proposal's name: [a-z0-9_]{1,63}.
[[nodiscard]] bool valid_proposal_name(std::string_view name);

// The version a new proposal gets: `now` in UTC as YYYYMMDDHHMMSS, or one more than the highest
// of `taken` (registered, proposed and applied versions) when that is not below it.
[[nodiscard]] std::string next_proposal_version(std::chrono::system_clock::time_point now,
                                                const std::vector<std::string>& taken);

// The proposal's scripts as a migration, parsed as the registry parses files (the down script is
// required and must hold a statement). Throws MigrationError: 22023 for a bad name or an empty
// script, 42601 for a script that does not parse (or holds transaction control).
[[nodiscard]] Migration proposal_migration(const std::string& version, const std::string& name,
                                           const std::string& up_sql, const std::string& down_sql);

// Structure checks (no_schema_change, destructive, concurrently_in_transaction,
// no_transaction_statements, rollback_reverses_nothing, needs_review) and the lint catalogue's
// unwaived findings (lint.hpp; they carry their severity).
struct ProposalFinding {
    std::string rule;
    std::string script;  // "up" or "down"
    std::string message;
    std::string severity = {};  // a lint finding's: "error", "warning", "info"; empty for structure checks
};
[[nodiscard]] std::vector<ProposalFinding> proposal_findings(const Migration& migration);
// The lint catalogue's unwaived findings of the up script (every table it does not create counts
// as existing), with their severity; Runner::propose appends them to proposal_findings().
[[nodiscard]] std::vector<ProposalFinding> proposal_lint_findings(const Migration& migration);
[[nodiscard]] nlohmann::json findings_json(const std::vector<ProposalFinding>& findings);
// Verified, without findings other than lint infos (which also means nothing destructive): what
// auto_approve: clean approves.
[[nodiscard]] bool proposal_is_clean(const nlohmann::json& findings, std::string_view verification);

// The registry `directory` plus the approved proposals, as migrations. A proposal whose version a
// file already has is the file when their checksums match; otherwise it is a conflict (named in
// `conflicts`, and left out).
struct MergedRegistry {
    Registry registry;
    std::vector<std::string> conflicts;  // one sentence each
};
[[nodiscard]] MergedRegistry merge_proposals(const Registry& directory, const std::vector<Proposal>& approved);

// The approved proposals of the ledger database at `conninfo` (one read-only query; none when the
// table does not exist).
[[nodiscard]] std::vector<Proposal> read_approved_proposals(const std::string& conninfo);
// Every proposal in version order, optionally only those in `states`.
[[nodiscard]] std::vector<Proposal> read_proposals(const std::string& conninfo);

// `<version>_<name>.up.sql` / `.down.sql` file names of a proposal.
[[nodiscard]] std::string proposal_file_name(const Proposal& proposal, Direction direction);

}  // namespace pgrail::migrations

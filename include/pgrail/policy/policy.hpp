// The policy model: rules that match sessions, the guards each rule applies, and the decision type.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pgrail/migrations/lint_catalogue.hpp"
#include "pgrail/policy/match.hpp"
#include "pgrail/policy/sensitive.hpp"
#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/statement.hpp"

namespace pgrail::policy {

enum class Mode { enforce, audit_only };
enum class OnParseError { deny, allow };
enum class DdlMode { migrations_only, deny, allow };
enum class OptionsMode { deny, allow, allow_list };

// pgrail's in-band commands: SELECT * FROM pgrail.<command>(...). The admin view's (sessions,
// stats, refusals) are read-only and in no rule's default list.
using Command = sql::PgrailCommand;

// Who is talking: taken from the startup packet and the socket.
struct SessionInfo {
    std::string user;      // the role the server sees
    std::string database;
    std::string application_name;
    std::string client_address;  // textual IPv4 or IPv6; empty (or a path) for a Unix socket
    // How the server lexes this session's texts, from its ParameterStatus reports (at the start,
    // and client_only_encoding from then on once ever reported): pgrail analyses alike, and
    // refuses a change of standard_conforming_strings away from this value.
    sql::Lexing lexing;
    // Who logged in: the identity's name under auth.mode pgrail (its role is `user`); empty in
    // passthrough mode, where the server authenticates the role and the identity is `user`.
    // (Last: the fields above are aggregate-initialised by position.)
    std::string identity;
    // The session prepared, over the protocol, a statement that takes an advisory lock by
    // parameter (its key is read in each Bind): a SQL EXECUTE, which hands a prepared statement
    // values read nowhere, is refused from then on.
    bool prepared_lock_keys = false;
    // ... or a text that runs a prepared statement by SQL EXECUTE: at a later Bind it may run one
    // prepared after it, so advisory locks by parameter are refused from then on (review 94).
    bool prepared_executes = false;
};

// The answer for one statement (or one startup packet).
struct Decision {
    enum class Action { allow, deny, intercept };
    Action action = Action::allow;
    std::string rule;              // the rule that decided
    std::string guard;             // the guard that refused ("ddl", "require_where", ...); empty on allow
    std::string sqlstate = "42501";
    std::string message;           // begins "pgrail: "
    std::string detail;            // names the rule, the guard, the statement's tag and objects
    std::string hint;              // what to do instead
    bool enforced = true;          // false in mode audit_only: forward, but audit as would-deny
    Command command = Command::status;  // the command to run when action is intercept
    std::size_t statement_index = 0;    // set by evaluate_all: which statement of the analysis decided
    // sensitive_columns ("schema.table.column"), for the audit: a refusal's guarded columns, or an
    // allow's columns that the statement returns masked.
    std::vector<std::string> columns;

    [[nodiscard]] bool allowed() const { return action == Action::allow; }
};

// A read-only table pattern: `schema.table` or `table` (any schema); both parts may use globs.
struct TablePattern {
    std::string schema;  // empty: any schema
    std::string table;
    bool operator==(const TablePattern&) const = default;
};

// The guards one rule applies. Sets are precomputed at load: evaluate() only looks up.
struct Guards {
    std::uint32_t allowed_classes = 0;  // bit (1 << StatementClass) per allowed class; ddl and unknown never set
    DdlMode ddl = DdlMode::migrations_only;
    bool migrator = false;
    std::uint32_t commands = 0;  // bit (1 << Command) per pgrail.* command the rule's users may call
    // migrations.require_version: pgrail.migrate_up and pgrail.migrate_down only with a version.
    bool require_version = false;
    // migrations.auto_approve: clean: what this rule's users propose is approved at once when it
    // is clean (verified, no findings); never (false): an operator approves every proposal.
    bool auto_approve_clean = false;
    // migrations.lint: per lint rule, warn or block (pgrail.migrate_up refuses a migration with an
    // unwaived finding the policy blocks); default: error severity blocks (docs/lint.md).
    migrations::LintPolicy lint;
    bool require_where = true;
    bool allow_truncate = false;
    bool allow_temporary_objects = true;
    std::vector<std::string> protected_schemas;   // always holds pgrail, pg_catalog, pg_toast, information_schema, cron
    std::vector<TablePattern> read_only_tables;
    // A migrator rule's `bookkeeping_tables`: the tables a migration tool keeps its own state in
    // (pgmigrations, knex_migrations, knex_migrations_lock). DDL that touches only these tables, and
    // UPDATE/DELETE of them without WHERE (knex's lock release), pass for this rule; nothing else.
    // Exact names (`table` in any schema, or `schema.table`), no globs.
    std::vector<TablePattern> bookkeeping_tables;
    NameSet denied_functions;                     // bare or schema-qualified names, globs allowed
    bool allow_copy_program = false;
    bool allow_copy_server_files = false;
    bool allow_alter_system = false;
    NameSet protected_settings;                   // lower-case setting names
    bool allow_replication = false;
    OptionsMode options = OptionsMode::deny;
    NameSet allowed_options;                      // settings `options` may set when options is a list
    // Data that must never reach this rule's clients (docs/policy.md, docs/security.md).
    SensitiveColumns sensitive;
    MaxRows max_rows;
    // Sessions of this rule at once, per pgrail process (0: no bound): one agent cannot take every
    // connection the server has and lock the other roles, and pgrail's own connections, out.
    std::uint32_t max_connections = 0;

    [[nodiscard]] bool allows_class(sql::StatementClass statement_class) const {
        return (allowed_classes >> static_cast<unsigned>(statement_class)) & 1U;
    }
    [[nodiscard]] bool allows_command(Command command) const {
        return (commands >> static_cast<unsigned>(command)) & 1U;
    }
    bool operator==(const Guards&) const = default;
};

// Which sessions a rule applies to. Each present list must have a matching entry (logical AND
// across keys, OR within a key); an absent list matches everything.
struct SessionMatch {
    std::vector<std::string> users;              // globs
    // globs on the identity (auth.mode pgrail: the name the agent logged in to pgrail with; in
    // passthrough mode the identity is the user)
    std::vector<std::string> identities;
    std::vector<std::string> databases;          // globs
    std::vector<std::string> application_names;  // globs
    std::vector<Cidr> clients;

    [[nodiscard]] bool matches_everything() const;
};

struct Rule {
    std::string name;
    std::string location;  // "file:line:column" of the rule, for messages
    SessionMatch match;
    Guards guards;
};

// Per-guard overrides of the refusal's message and hint (empty: pgrail's default text).
struct MessageOverride {
    std::string message;
    std::string hint;
};

// The guard names that `messages:` may override, in documentation order.
inline constexpr std::array<const char*, 18> guard_names = {
    "on_parse_error",     "allow_classes",     "ddl",          "migrations",   "require_where",
    "truncate",           "protected_schemas", "read_only_tables", "denied_functions", "copy_program",
    "copy_server_files",  "alter_system",      "protected_settings", "replication",  "options",
    "function_call",      "sensitive_columns", "max_connections",
};

// A loaded policy. Immutable: the proxy shares it as shared_ptr<const Policy> and swaps it on SIGHUP.
class Policy {
public:
    std::string source;          // file name (or the name given to load_policy_string)
    Mode mode = Mode::enforce;
    OnParseError on_parse_error = OnParseError::deny;
    std::string migrations_dir;  // shown in the DDL hint
    // masking.key_file / masking.key_env: the HMAC key of sensitive_columns' method hash.
    std::string masking_key;
    // Some rule has sensitive_columns / max_rows (sessions of other policies skip their work).
    bool has_sensitive_columns = false;
    bool has_result_guards = false;
    std::vector<Rule> rules;     // file order; the last one matches every session
    std::array<MessageOverride, guard_names.size()> messages;

    // The first rule, in file order, whose match accepts the session (the last rule always does).
    [[nodiscard]] const Rule& rule_for(const SessionInfo& session) const;
    // Whether `other` decides this session's statements as this policy does: the same mode,
    // on_parse_error and masking key, and the same guards in the rule each matches for it.
    [[nodiscard]] bool decides_alike(const Policy& other, const SessionInfo& session) const;
    [[nodiscard]] const MessageOverride& message_for(std::string_view guard) const;
};

const char* to_string(Mode mode);
const char* to_string(OnParseError on_parse_error);
const char* to_string(DdlMode ddl);
const char* to_string(OptionsMode options);
const char* to_string(Decision::Action action);
const char* class_name(sql::StatementClass statement_class);  // the policy file's spelling

}  // namespace pgrail::policy

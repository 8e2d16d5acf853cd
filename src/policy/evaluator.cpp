// The decision function: guards checked in a fixed order, the first refusal wins.
#include "pgrail/policy/evaluator.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <optional>
#include <string>
#include <unordered_set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "advice.hpp"
#include "sensitive_reads.hpp"
#include "pgrail/migrations/lock.hpp"
#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/quote.hpp"

namespace pgrail::policy {

namespace {

using sql::ObjectRole;
using sql::Statement;
using sql::StatementClass;

struct Context {
    const Policy& policy;
    const Rule& rule;
    const MigrationMatcher* matcher;
    const SessionInfo& session;
    const SensitiveContext* sensitive = nullptr;
};

std::string qualified(const sql::ObjectRef& object) {
    return object.schema.empty() ? object.name : object.schema + "." + object.name;
}

// " on a, b" for the DETAIL: the statement's objects, each once, at most five.
std::string objects_text(const Statement& statement) {
    std::vector<std::string> names;  // the first five, in order
    std::unordered_set<std::string> seen;  // (a DROP of thousands of names: linear)
    for (const auto& object : statement.objects) {
        auto name = qualified(object);
        if (!seen.insert(name).second) continue;
        if (names.size() < 5) names.push_back(std::move(name));
    }
    if (names.empty()) return {};
    std::string out = " on ";
    for (std::size_t index = 0; index < names.size(); ++index) out += (index ? ", " : "") + names[index];
    if (seen.size() > 5) out += fmt::format(" and {} more", seen.size() - 5);
    return out;
}

std::string lower(std::string text) {
    for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

std::string_view trim(std::string_view text) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
    return text;
}

// Whether `text` is an integer constant other than `value`; false when it is `value` or not a
// plain integer (fail closed).
// Whether `text` is an integer outside [low, high] (not an integer: false, as if inside).
bool integer_outside(std::string_view text, std::int64_t low, std::int64_t high) {
    text = trim(text);
    if (text.starts_with('+')) text.remove_prefix(1);
    std::int64_t parsed = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), parsed);
    if (error == std::errc::result_out_of_range) return true;  // beyond bigint: never pgrail's key
    if (error != std::errc() || end != text.data() + text.size()) return false;
    return parsed < low || parsed > high;
}

// pgrail's runner serialises migrations with its advisory lock, and proposals' proofs take turns
// with the keys after it: another holder would stall them. A key pgrail cannot read ("*", or not
// an integer) counts as one of them.
bool is_pgrail_lock_key(std::string_view key) {
    if (key == "int4") return false;  // below 2^31, pgrail's are above 2^62
    return key == "*" || !integer_outside(key, migrations::advisory_lock_key, migrations::proof_lock_last_key);
}

std::string tag_of(const Statement& statement) { return statement.tag.empty() ? "a statement" : statement.tag; }

void replace_all(std::string& text, std::string_view from, std::string_view to) {
    for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
        text.replace(at, from.size(), to);
}

// Builds a refusal; `label` is the guard as the DETAIL shows it ("ddl: migrations_only").
Decision refuse(const Context& context, const Statement* statement, std::string_view guard, std::string_view label,
                std::string message, std::string detail_tail, std::string hint) {
    Decision decision;
    decision.action = Decision::Action::deny;
    decision.rule = context.rule.name;
    decision.guard = guard;
    decision.enforced = context.policy.mode == Mode::enforce;
    const std::string tag = statement ? tag_of(*statement) : std::string("the connection");
    const std::string objects = statement ? objects_text(*statement) : std::string();
    decision.detail = fmt::format("rule \"{}\" ({}) refused {}{}{}", context.rule.name, label, tag, objects, detail_tail);
    const auto& custom = context.policy.message_for(guard);
    decision.message = custom.message.empty() ? std::move(message) : custom.message;
    decision.hint = custom.hint.empty() ? std::move(hint) : custom.hint;
    for (auto* text : {&decision.message, &decision.hint}) {
        replace_all(*text, "{rule}", context.rule.name);
        replace_all(*text, "{tag}", tag);
        replace_all(*text, "{objects}", objects.empty() ? std::string() : objects.substr(4));
        replace_all(*text, "{migrations_dir}", context.policy.migrations_dir);
    }
    return decision;
}

Decision lock_key_refusal(const Context& context, const Statement* statement, std::string_view key) {
    return refuse(context, statement, "migrations", "migrations",
                  key == "*" ? std::string("pgrail: an advisory lock with a computed key refused; pass the key as a "
                                           "constant or a parameter")
                             : std::string("pgrail: pgrail's migration lock is taken only by pgrail; use another "
                                           "advisory lock key"),
                  fmt::format(" (advisory lock key {})", key),
                  "Pass the advisory lock key as a constant or a parameter; pgrail's own key serialises its "
                  "migrations.");
}

Decision allow(const Context& context) {
    Decision decision;
    decision.rule = context.rule.name;
    return decision;
}

std::string list_commands(const Guards& guards) {
    std::string out;
    for (const Command command : sql::all_pgrail_commands)
        if (guards.allows_command(command))
            out += fmt::format("{}pgrail.{}", out.empty() ? "" : ", ", sql::name_of(command));
    return out;
}

std::string list_classes(const Guards& guards) {
    std::string out;
    for (auto statement_class : {StatementClass::read, StatementClass::write, StatementClass::transaction,
                                 StatementClass::session, StatementClass::utility, StatementClass::procedural,
                                 StatementClass::copy})
        if (guards.allows_class(statement_class))
            out += fmt::format("{}{}", out.empty() ? "" : ", ", class_name(statement_class));
    return out.empty() ? "no statement class" : out;
}

// Whether text pgrail did not understand is refused. A limit of pgrail's is, even under
// on_parse_error: allow: what it kept pgrail from reading could be anything (a DROP padded to
// max_analyzed_size).
bool refuses_unparsed(const Policy& policy, const sql::ParseError* error) {
    return policy.on_parse_error == OnParseError::deny || (error != nullptr && error->limit);
}

Decision parse_error(const Context& context, const Statement* statement, const sql::ParseError* error) {
    if (!error) {
        return refuse(context, statement, "on_parse_error", "on_parse_error: deny",
                      "pgrail: statement of a kind pgrail does not know refused; use another statement, or ask an "
                      "operator",
                      " (a statement kind pgrail does not know)",
                      "pgrail refuses statements it cannot classify; an operator can set on_parse_error: allow.");
    }
    // (A limit's own words may begin with "pgrail cannot ...": not "pgrail: pgrail cannot ...".)
    const std::string_view words = error->message;
    auto decision = refuse(context, nullptr, "on_parse_error", "on_parse_error: deny",
                           "pgrail: " + std::string(words.starts_with("pgrail ") ? words.substr(7) : words), "", "");
    const char* default_hint = nullptr;
    if (error->limit) {
        // Not a syntax error: text beyond what pgrail analyses safely (program_limit_exceeded).
        decision.detail = fmt::format("rule \"{}\" refused a statement beyond pgrail's limits for analysing SQL "
                                      "(refused whatever on_parse_error says)",
                                      context.rule.name);
        default_hint = "pgrail analyses every statement before it forwards it; the message says which limit this one "
                       "exceeds. Send data as parameters (extended protocol) or with COPY.";
        decision.sqlstate = "54000";
    } else {
        decision.detail = fmt::format("rule \"{}\" (on_parse_error: deny) refused a statement that does not parse "
                                      "with the PostgreSQL 15 grammar",
                                      context.rule.name);
        default_hint = "Correct the statement; pgrail forwards only SQL it can parse.";
        decision.sqlstate = "42601";  // syntax_error, as the server would have answered
    }
    if (decision.hint.empty()) decision.hint = default_hint;
    return decision;
}

// One pgrail command the statement reads (each call is checked on its own).
Decision command_decision(const Context& context, const Statement& statement, const sql::PgrailCall& call) {
    const auto allowed = list_commands(context.rule.guards);
    if (!call.command)
        return refuse(context, &statement, "migrations", "migrations",
                      fmt::format("pgrail: unknown command pgrail.{}; see SELECT * FROM pgrail.status(), "
                                  "pgrail.plan(), pgrail.migrate_up(), pgrail.migrate_down(), pgrail.verify()",
                                  call.function),
                      fmt::format(" (pgrail.{} is not a pgrail command)", call.function),
                      "pgrail's commands are pgrail.status(), pgrail.plan(), pgrail.migrate_up([version]), "
                      "pgrail.migrate_down(version), pgrail.verify([version]), "
                      "pgrail.propose_migration(name, up_sql, down_sql), pgrail.approve_migration(version), "
                      "pgrail.reject_migration(version, reason) and the admin view pgrail.sessions(), "
                      "pgrail.stats(), pgrail.refusals([limit]).");
    if (!context.rule.guards.allows_command(*call.command))
        return refuse(context, &statement, "migrations", "migrations",
                      fmt::format("pgrail: pgrail.{} is not allowed for this session; ask an operator to run it",
                                  call.function),
                      fmt::format(" calling pgrail.{}", call.function),
                      allowed.empty() ? fmt::format("Rule \"{}\" may call no pgrail command; ask an operator.",
                                                    context.rule.name)
                                      : fmt::format("Rule \"{}\" may call {}; ask an operator for the rest.",
                                                    context.rule.name, allowed));
    if (sql::runs_migration(*call.command) && context.rule.guards.require_version && call.arguments.empty())
        return refuse(context, &statement, "migrations", "migrations: require_version",
                      fmt::format("pgrail: pgrail.{0}() without a version is not allowed for this session; name the "
                                  "migration: SELECT * FROM pgrail.{0}('<version>')",
                                  call.function),
                      fmt::format(" calling pgrail.{} without a version", call.function),
                      fmt::format("Rule \"{}\" applies and rolls back one named migration at a time. SELECT * FROM "
                                  "pgrail.status() lists the versions and their states.",
                                  context.rule.name));
    Decision decision = allow(context);
    decision.action = Decision::Action::intercept;
    decision.command = *call.command;
    return decision;
}

bool is_function(std::string_view name, std::string_view wanted) {
    if (name.starts_with("pg_catalog.")) name.remove_prefix(11);
    return name == wanted;
}

// The schema an object lives in, as far as the text tells. Unqualified pg_* names resolve to
// pg_catalog first (it leads every search_path), so they count as pg_catalog: fail closed.
std::string_view schema_of(const sql::ObjectRef& object) {
    if (object.kind == "schema") return object.name;
    // An extension is no object of a schema (CREATE EXTENSION pg_trgm is no write to pg_catalog).
    if (object.kind == "extension") return {};
    if (object.schema.empty() && object.name.starts_with("pg_")) return "pg_catalog";
    return object.schema;
}

// Objects that live in a schema (an unqualified name of one resolves through search_path):
// every kind but those named outside any schema, and those named on their table (a trigger, a
// rule, a policy: their table is the statement's object too). Unknown kinds count as in one.
bool in_a_schema(std::string_view kind) {
    static constexpr std::string_view outside[] = {
        "schema",      "extension", "database",     "role",         "tablespace",  "server",
        "foreign data wrapper",     "publication",  "subscription", "event trigger", "language",
        "access method", "cast",    "large object", "transform",    "trigger",     "rule",
        "policy"};
    return std::find(std::begin(outside), std::end(outside), kind) == std::end(outside);
}


// A policy's name (a read-only table's, a protected schema's) against a name as the parser folded
// it, in any case: `Ledger` in the policy guards `ledger` (what an unquoted Ledger folds to) as
// well as a quoted "Ledger" (refusing more rather than guarding nothing).
bool matches_any_case(std::string_view pattern, std::string_view name) { return glob_match_any_case(pattern, name); }

// The protected schema named like the session's role, where its default search_path ("$user"
// first) leads unqualified names; empty when none is. Only entries without globs count: a glob
// would name every role it matches, whether or not a schema of that name exists.
std::string_view protected_user_schema(const Context& context) {
    for (const auto& protected_schema : context.rule.guards.protected_schemas)
        if (!has_glob(protected_schema) && matches_any_case(protected_schema, context.session.user))
            return protected_schema;
    return {};
}

bool table_matches(const TablePattern& pattern, const sql::ObjectRef& object, std::string_view user) {
    if (!matches_any_case(pattern.table, object.name)) return false;
    if (pattern.schema.empty()) return true;
    // An unqualified name may resolve to the table through search_path, which pgrail cannot see:
    // `public.ledger` also guards a plain `ledger`. A whole-schema pattern (`archive.*`) guards
    // qualified names only, or it would guard every unqualified table; but for the role that
    // schema is named like, whose default search_path ("$user" first) leads into it, every one.
    if (object.schema.empty())
        return pattern.table != "*" ||
               (!object.temporary && !has_glob(pattern.schema) && matches_any_case(pattern.schema, user));
    return matches_any_case(pattern.schema, object.schema);
}

// One of a migrator rule's bookkeeping tables, named exactly: a qualified entry matches that
// qualified name only (unlike read_only_tables, where the stricter reading refuses more; here it
// would exempt more).
bool bookkeeping_table(const Guards& guards, const sql::ObjectRef& object) {
    if (object.kind != "table" && object.kind != "relation") return false;
    return std::any_of(guards.bookkeeping_tables.begin(), guards.bookkeeping_tables.end(),
                       [&](const TablePattern& pattern) {
                           return pattern.table == object.name &&
                                  (pattern.schema.empty() || pattern.schema == object.schema);
                       });
}

// Every object the statement changes is one of a migrator rule's bookkeeping tables (a migration
// tool's own state), and it changes at least one.
bool changes_only_bookkeeping(const Guards& guards, const Statement& statement) {
    if (!guards.migrator || guards.bookkeeping_tables.empty() || statement.flags.ddl_capable_dynamic) return false;
    bool any = false;
    for (const auto& object : statement.objects) {
        if (object.role == ObjectRole::read) continue;
        if (!bookkeeping_table(guards, object)) return false;
        any = true;
    }
    return any;
}

// DDL a migration tool runs for its own state passes without being a registered migration's: a
// plain CREATE TABLE [IF NOT EXISTS] of a bookkeeping table (sql::SchemaChange::plain_table) and
// nothing else. Every other form (ALTER, RENAME, DROP, GRANT, OWNER TO, CREATE TABLE AS, a
// reference to another table, an identity's sequence, a default that runs a function) is refused:
// each reaches beyond the tool's own rows.
bool bookkeeping_ddl(const Guards& guards, const Statement& statement) {
    return statement.change.kind == sql::ChangeKind::create_table && statement.change.plain_table &&
           statement.inner.empty() && changes_only_bookkeeping(guards, statement);
}

// Every change the statement makes is to the session's own temporary relations (they die with
// the session: not a schema change), and it makes at least one.
bool only_temporary_changes(const Statement& statement) {
    if (statement.flags.ddl_capable_dynamic) return false;
    bool any = false;
    for (const auto& object : statement.objects) {
        if (object.role == ObjectRole::read) continue;
        if (!object.temporary) return false;
        any = true;
    }
    return any;
}

// The statement creates a temporary view (allow_temporary_objects lets agents create one). A
// simple view is auto-updatable: an INSERT, UPDATE or DELETE of pg_temp.v writes the relation it
// reads, which pgrail sees only as pg_temp.v then. So what such a statement reads counts as
// written where that matters (protected_schemas, read_only_tables): the view is refused instead.
bool creates_temporary_view(const Statement& statement) {
    return std::any_of(statement.objects.begin(), statement.objects.end(), [](const sql::ObjectRef& object) {
        return object.kind == "view" && object.role == ObjectRole::created && object.temporary;
    });
}

// A statement that may write later the relations it reads: a temporary view it creates (writes
// through the view reach them), a table it creates LIKE one (INCLUDING DEFAULTS copies defaults
// such as nextval('pgrail.migration_events_id_seq'): inserts into the copy write that sequence).
bool reaches_read_relations_later(const Statement& statement) {
    return statement.tag == "CREATE TABLE" || creates_temporary_view(statement);
}

// An object the statement writes, or may write later (reaches_later: a relation it reads, through
// a view or the copied defaults of a table it creates; not the session's own temporary ones,
// which it may change anyway).
bool written_or_viewed(const sql::ObjectRef& object, bool reaches_later) {
    if (object.role != ObjectRole::read) return true;
    return reaches_later && !object.temporary &&
           (object.kind == "relation" || object.kind == "table" || object.kind == "view");
}

// PostgreSQL's parse_bool: on/off, true/false, yes/no, 1/0 and unique prefixes, any case.
std::optional<bool> parse_bool(std::string_view text) {
    const auto value = lower(std::string(trim(text)));
    if (value.empty()) return std::nullopt;
    const auto prefix_of = [&](std::string_view word) { return word.starts_with(value); };
    if (value == "1" || prefix_of("true") || prefix_of("yes") || value == "on") return true;
    if (value == "0" || prefix_of("false") || (value.size() > 1 && prefix_of("no")) || value == "of" || value == "off" ||
        value == "n")
        return false;
    return std::nullopt;
}

// Whether a statement runs the expressions it holds as it executes. Any other (PREPARE, DECLARE
// CURSOR, a view, a default, a rule, an index ...) keeps them to run later, in a statement whose
// text does not show them: a change of client_encoding there would reach texts pipelined behind
// that statement before pgrail knew of it.
bool runs_its_expressions_now(const Statement& statement) {
    static constexpr std::array<std::string_view, 12> tags = {
        "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "CALL", "DO", "SET", "RESET", "EXPLAIN", "COPY",
        "CREATE TABLE AS"};
    return std::find(tags.begin(), tags.end(), statement.tag) != tags.end();
}

// Values of settings that change how pgrail must read the session's texts or resolve its
// names: wherever they are set (SET, set_config, startup parameters and options), a value pgrail
// cannot follow is refused. `where` ends the DETAIL (" calling set_config", " with options ...").
std::optional<Decision> check_setting_value(const Context& context, const Statement* statement,
                                            std::string_view name, std::string_view value, std::string where) {
    const auto refuse_setting = [&](std::string guard, std::string message, std::string hint) {
        return refuse(context, statement, guard, guard, std::move(message), std::move(where), std::move(hint));
    };
    if (name == "standard_conforming_strings") {
        if (value.empty()) return std::nullopt;  // RESET: back to the value the session started with
        const auto wanted = parse_bool(value);
        if (!wanted || *wanted != context.session.lexing.standard_conforming_strings)
            return refuse_setting(
                "protected_settings",
                // (The value as pgrail read it, never as written: a literal is not repeated back.)
                fmt::format("pgrail: changing standard_conforming_strings{} refused; use E'...' strings for escapes",
                            !wanted ? "" : *wanted ? " to on" : " to off"),
                fmt::format("This session reads backslashes in strings with standard_conforming_strings = {}; pgrail "
                            "reads every text as the server lexes it and does not follow a change within a session. "
                            "Use E'...' strings for escapes.",
                            context.session.lexing.standard_conforming_strings ? "on" : "off"));
    } else if (name == "client_encoding") {
        if (value == "*" || sql::is_client_only_encoding(value))
            return refuse_setting("protected_settings",
                                  value == "*" ? std::string("pgrail: a client_encoding pgrail cannot read refused; use UTF8")
                                               : std::string("pgrail: a client-only client_encoding (SJIS, BIG5, GBK, UHC, "
                                                             "GB18030, JOHAB) refused; use UTF8"),
                                  "pgrail reads every text as the server will; in SJIS, BIG5, GBK, UHC, GB18030 and "
                                  "JOHAB a character may hold a backslash or a quote byte. Use UTF8.");
        if (statement != nullptr && !runs_its_expressions_now(*statement))
            return refuse_setting(
                "protected_settings",
                fmt::format("pgrail: a change of client_encoding kept for later ({}) refused; set it with a "
                            "statement of its own",
                            statement->tag),
                "pgrail reads the texts sent after a change of client_encoding as unknown until the server has "
                "answered the statement that makes it; code kept to run later (PREPARE, a cursor, a view, a default, "
                "a rule) would change it where pgrail cannot see. Use SET client_encoding = '...' instead.");
    } else if (name == "search_path") {
        const auto schemas = value == "*" ? std::nullopt : sql::split_identifiers(value, ',');
        if (!schemas)
            return refuse_setting("protected_schemas",
                                  "pgrail: a search_path pgrail cannot read refused; give it as a constant list of "
                                  "schema names",
                                  "Give search_path as a constant list of schema names.");
        for (const auto& named : *schemas) {
            // pg_catalog is searched first whether named or not: naming it changes nothing.
            if (named == "pg_catalog") continue;
            // "$user" is the schema named like the session's role, where one exists.
            const std::string_view schema = named == "$user" ? std::string_view(context.session.user) : named;
            for (const auto& protected_schema : context.rule.guards.protected_schemas)
                if (matches_any_case(protected_schema, schema))
                    return refuse_setting(
                        "protected_schemas",
                        // (The policy's name for it, not the text's: a literal is not repeated back.)
                        fmt::format("pgrail: search_path naming protected schema {} refused; qualify names "
                                    "instead",
                                    protected_schema),
                        "Unqualified names would resolve into a protected schema; qualify names instead.");
        }
    }
    return std::nullopt;
}

// SET transaction_read_only = on, BEGIN READ ONLY ...: making the session stricter is not a
// change of the protection.
bool turns_read_only_on(const sql::SettingChange& setting) {
    if (setting.name != "transaction_read_only" && setting.name != "default_transaction_read_only") return false;
    const auto value = parse_bool(setting.value);
    return value && *value;
}

bool is_ddl(const Statement& statement) {
    return statement.statement_class == StatementClass::ddl || statement.flags.ddl_capable_dynamic ||
           statement.flags.select_into || statement.flags.create_table_as;
}

// `calls_checked`: the statement's pgrail commands passed already; check the rest of it.
std::optional<Decision> check(const Context& context, const Statement& statement, bool nested,
                              bool calls_checked = false);

// A temporary type or relation (whose row type it is) named like a type whose casts the analyzer
// reads through (sql::types_read_through_casts): it would change what `'...'::text` is.
bool names_trusted_type(const sql::ObjectRef& object) {
    if (!(object.temporary || object.schema == "pg_temp") || object.role != ObjectRole::created) return false;
    const auto& trusted = sql::types_read_through_casts;
    return std::find(trusted.begin(), trusted.end(), object.name) != trusted.end();
}

std::optional<Decision> check_ddl(const Context& context, const Statement& statement) {
    const auto& guards = context.rule.guards;
    for (const auto& object : statement.objects) {
        if (!names_trusted_type(object)) continue;
        return refuse(context, &statement, "ddl", "ddl",
                      fmt::format("pgrail: a temporary {} named {} refused; it would hide the built-in type {} "
                                  "in this session, choose another name",
                                  object.kind, object.name, object.name),
                      fmt::format(" (temporary {} {})", object.kind, object.name),
                      "The session's temporary schema is searched before pg_catalog for type names.");
    }
    // A temporary relation dies with the session: it is not a schema change.
    if (guards.allow_temporary_objects && only_temporary_changes(statement)) return std::nullopt;
    if (guards.ddl == DdlMode::allow) return std::nullopt;
    if (guards.ddl == DdlMode::migrations_only && bookkeeping_ddl(guards, statement)) return std::nullopt;
    const bool passes = guards.ddl == DdlMode::migrations_only && guards.migrator && context.matcher &&
                        *context.matcher && (*context.matcher)(statement).has_value();
    if (passes) return std::nullopt;
    std::string why;
    if (statement.flags.ddl_capable_dynamic)
        why = " (dynamic EXECUTE can change the schema)";
    else if (guards.migrator)
        why = ": it matches no statement of a registered migration in the matching state";
    // Not a migrator (or ddl: deny): the statement may still be a registered migration's, and the
    // next step is then to run that migration.
    std::optional<RegisteredStatement> registered;
    if (!guards.migrator && context.matcher && *context.matcher && !statement.flags.ddl_capable_dynamic)
        registered = (*context.matcher)(statement);
    auto text = advice::schema_change(context.policy, context.rule, statement, registered);
    return refuse(context, &statement, "ddl", fmt::format("ddl: {}", to_string(guards.ddl)), std::move(text.message),
                  std::move(why), std::move(text.hint));
}

constexpr std::size_t max_pgrail_calls_per_statement = 16;

// A statement that reads pgrail commands as relations: each command as the rule allows it, then the
// rest of the statement as any statement (the calls are no function references of it: it reads
// as the plain read it is). Intercepted when all of it passes.
std::optional<Decision> check_commands(const Context& context, const Statement& statement, bool nested) {
    const auto& first = statement.pgrail_calls.front();
    if (nested)
        return refuse(context, &statement, "migrations", "migrations",
                      fmt::format("pgrail: a query that reads a pgrail command must be that one statement; send "
                                  "SELECT ... FROM pgrail.{}(...) on its own",
                                  first.function),
                      fmt::format(" calling pgrail.{}", first.function),
                      "pgrail runs its commands itself, once per query string: send the SELECT that reads them as a "
                      "query of its own, not inside PREPARE, EXPLAIN or a multi-statement query.");
    if (statement.statement_class != StatementClass::read || statement.flags.data_modifying_cte)
        return refuse(context, &statement, "migrations", "migrations",
                      fmt::format("pgrail: pgrail.{} can only be read by a plain SELECT; read its answer in a query "
                                  "of its own, then change your tables",
                                  first.function),
                      fmt::format(" calling pgrail.{} in a statement that changes data", first.function),
                      "pgrail's commands are relations in the FROM clause of a SELECT (joins, WHERE, ORDER BY, CTEs "
                      "that are SELECTs); a statement that also writes must not read them.");
    // Each call is a connection and a query of pgrail's own (status() reads the ledger): a bound,
    // so that one text cannot queue thousands of them.
    if (statement.pgrail_calls.size() > max_pgrail_calls_per_statement)
        return refuse(context, &statement, "migrations", "migrations",
                      fmt::format("pgrail: one statement may read at most {} pgrail commands; this one reads {}",
                                  max_pgrail_calls_per_statement, statement.pgrail_calls.size()),
                      fmt::format(" calling {} pgrail commands", statement.pgrail_calls.size()),
                      "Read the commands you need in a few statements, each with a handful of them.");
    const auto changing =
        std::count_if(statement.pgrail_calls.begin(), statement.pgrail_calls.end(),
                      [](const sql::PgrailCall& call) { return call.command && sql::runs_migration(*call.command); });
    if (changing > 1)
        return refuse(context, &statement, "migrations", "migrations",
                      "pgrail: one statement may run one pgrail command that changes the schema; send each "
                      "migrate_up / migrate_down as a query of its own",
                      " calling several pgrail commands that change the schema",
                      "Each command that changes the schema is its own step: run it, read its answer, then run the "
                      "next.");
    std::optional<Decision> intercept;
    for (const auto& call : statement.pgrail_calls) {
        auto decision = command_decision(context, statement, call);
        if (decision.action != Decision::Action::intercept) return decision;
        // The decision names the command that changes something, if one does.
        if (!intercept || sql::runs_migration(*call.command)) intercept = std::move(decision);
    }
    if (auto refusal = check(context, statement, nested, true)) return refusal;
    return intercept;
}

std::optional<Decision> check(const Context& context, const Statement& statement, bool nested, bool calls_checked) {
    const auto& guards = context.rule.guards;
    const auto& flags = statement.flags;

    if (statement.statement_class == StatementClass::unknown) {
        const sql::ParseError* error = statement.error ? &*statement.error : nullptr;
        if (!refuses_unparsed(context.policy, error)) return std::nullopt;
        return parse_error(context, &statement, error);
    }
    // The wrapped statement first: its refusal names the statement that would do the harm
    // (DELETE, not the EXPLAIN ANALYZE around it).
    for (const auto& inner : statement.inner)
        if (auto refusal = check(context, inner, true)) return refusal;
    // A SQL EXECUTE hands a prepared statement values pgrail reads nowhere: to one whose advisory
    // lock key is a parameter (read in each Bind of it), any key.
    if (flags.executes_prepared && context.session.prepared_lock_keys)
        return refuse(context, &statement, "migrations", "migrations",
                      "pgrail: EXECUTE refused in a session that prepared an advisory lock by parameter; bind the "
                      "prepared statement instead (the extended protocol), or EXECUTE in another session",
                      " (the session prepared an advisory lock whose key is a parameter)",
                      "Run the prepared statement with Bind (PQexecPrepared, a driver's prepared statement): pgrail "
                      "reads the lock key there.");
    if (!statement.pgrail_calls.empty() && !calls_checked) return check_commands(context, statement, nested);
    // pgrail.* exists only as pgrail's own commands, read as relations: any other use would reach
    // the server as an unknown function; say how to call it instead.
    for (const auto& function : statement.functions) {
        if (!function.starts_with("pgrail.")) continue;
        return refuse(context, &statement, "migrations", "migrations",
                      fmt::format("pgrail: pgrail commands are read as relations in FROM with constant arguments: "
                                  "SELECT ... FROM {}(...) with plain string literals (not $1 parameters, casts, "
                                  "NULL or name => notation); not in a target list, WHERE, a function argument or a "
                                  "statement that changes data",
                                  function),
                      fmt::format(" calling {}", function),
                      "pgrail answers its commands itself: read them in the FROM clause of a SELECT sent as a query "
                      "of its own (joins, WHERE, ORDER BY, LIMIT, CTEs and subqueries work), with constant "
                      "arguments; SELECT pgrail.<command>(...) alone works too.");
    }
    if (flags.alter_system && !guards.allow_alter_system)
        return refuse(context, &statement, "alter_system", "alter_system: deny",
                      "pgrail: ALTER SYSTEM refused; server configuration is changed by an operator", "",
                      "Server configuration is changed by an operator, not through pgrail.");
    if (flags.copy_program && !guards.allow_copy_program)
        return refuse(context, &statement, "copy_program", "copy.program: deny",
                      "pgrail: COPY ... PROGRAM refused; use COPY ... FROM STDIN or TO STDOUT (psql: \\copy)", "",
                      "Use COPY ... FROM STDIN or COPY ... TO STDOUT (psql: \\copy).");
    if (flags.copy_file && !guards.allow_copy_server_files)
        return refuse(context, &statement, "copy_server_files", "copy.server_files: deny",
                      "pgrail: COPY to or from a server file refused; use COPY ... FROM STDIN or TO STDOUT (psql: "
                      "\\copy)",
                      "",
                      "Use COPY ... FROM STDIN or COPY ... TO STDOUT (psql: \\copy).");

    const auto refuse_call = [&](const std::string& member, std::string_view bare, std::string detail) {
        return refuse(
            context, &statement, "denied_functions", fmt::format("denied_functions: {}", member),
            fmt::format("pgrail: function {} is not allowed for this session; ask an operator if you need it", bare),
            std::move(detail),
            "This function reaches outside the database or controls the server; an operator can lift it "
            "for a rule with allowed_functions.");
    };
    bool computed_set_config = false;
    for (const auto& function : statement.functions) {
        // A qualified entry ("myschema.fn") matches as written; a bare entry matches in any schema,
        // because extensions such as dblink install into whatever schema the operator chose.
        std::string_view name = function;
        if (name.starts_with("pg_catalog.")) name.remove_prefix(11);
        const auto dot = name.rfind('.');
        const std::string* denied = guards.denied_functions.find(name);
        if (!denied && dot != std::string_view::npos) denied = guards.denied_functions.find(name.substr(dot + 1));
        // Unqualified, it may resolve through search_path to a qualified entry's schema (not to a
        // protected one's, such as cron's: no search_path may name it).
        if (!denied && dot == std::string_view::npos)
            denied = guards.denied_functions.find_qualified(name, [&](std::string_view schema) {
                return std::none_of(guards.protected_schemas.begin(), guards.protected_schemas.end(),
                                    [&](const std::string& entry) { return matches_any_case(entry, schema); });
            });
        if (denied)
            return refuse_call(*denied, dot == std::string_view::npos ? name : name.substr(dot + 1),
                               fmt::format(" calling {}", function));
        computed_set_config = computed_set_config || is_function(function, "set_config");
    }
    // Attribute notation calls a one-argument function: `(x).f` and `t.f` are f(x) and f(t)
    // wherever no column f exists, so a field or qualified column may be a call pgrail's function
    // list does not show (`('/etc/passwd'::text).pg_read_file`, `(seq::regclass).nextval`).
    bool sequence_by_attribute = false;
    for (const auto& read : statement.column_reads) {
        if (!sql::may_call_by_attribute(read)) continue;
        if (const std::string* denied = guards.denied_functions.find(read.name))
            return refuse_call(*denied, read.name, fmt::format(" calling {} in attribute notation", read.name));
        sequence_by_attribute = sequence_by_attribute || read.name == "nextval" || read.name == "setval";
    }
    if (computed_set_config) {
        // The analyzer reports a non-constant name as "*"; no named entry at all means the same.
        const bool named = std::any_of(statement.settings.begin(), statement.settings.end(), [](const auto& setting) {
            return setting.via_function && setting.name != "*";
        });
        const bool computed = std::any_of(statement.settings.begin(), statement.settings.end(),
                                          [](const auto& setting) { return setting.name == "*"; });
        // The setting's name is an expression: pgrail cannot tell it is not a protected one.
        if ((computed || !named) && !guards.protected_settings.empty())
            return refuse(context, &statement, "protected_settings", "protected_settings",
                          "pgrail: set_config with a computed setting name refused; pass the name as a constant",
                          " calling set_config",
                          "Pass the setting name as a constant, e.g. set_config('search_path', ..., false).");
    }
    // nextval()/setval() of a sequence given by OID or expression, or called in attribute
    // notation: it may be one of pgrail's ledger (or another protected schema's), and pgrail
    // cannot tell which.
    if ((statement.flags.sequence_unnamed || sequence_by_attribute) && !guards.protected_schemas.empty())
        return refuse(context, &statement, "protected_schemas", "protected_schemas",
                      "pgrail: nextval or setval of a sequence pgrail cannot name refused; name the sequence as a "
                      "constant",
                      " (a sequence given by OID, expression or attribute notation)",
                      "Name the sequence as a string constant, e.g. nextval('orders_id_seq').");
    for (const auto& key : statement.advisory_lock_keys) {
        // A parameter's key is read in each Bind (GateVerdict::bound_lock_keys), unless the session
        // prepared an EXECUTE, which would hand this statement a key of its own text.
        if (key.starts_with('$') && context.session.prepared_executes)
            return refuse(context, &statement, "migrations", "migrations",
                          "pgrail: an advisory lock by parameter refused in a session that prepared an EXECUTE; "
                          "prepare it in another session",
                          fmt::format(" (advisory lock key {}; the session prepared an EXECUTE)", key),
                          "A prepared EXECUTE hands a statement values no Bind carries: take the lock in a session "
                          "without one, or with a constant key.");
        if (key.starts_with('$') || !is_pgrail_lock_key(key)) continue;
        return lock_key_refusal(context, &statement, key);
    }
    for (const auto& setting : statement.settings) {
        if (setting.name == "all" || setting.name == "*") continue;  // RESET ALL returns to the role's defaults
        if (auto refusal = check_setting_value(context, &statement, setting.name, setting.value,
                                               setting.via_function ? " calling set_config" : ""))
            return refusal;
        if (turns_read_only_on(setting)) continue;
        // Setting names are case-insensitive in PostgreSQL; lower-case only when needed (no allocation).
        const bool upper = std::any_of(setting.name.begin(), setting.name.end(),
                                       [](unsigned char c) { return std::isupper(c) != 0; });
        const auto* member = upper ? guards.protected_settings.find(lower(setting.name))
                                   : guards.protected_settings.find(setting.name);
        if (member)
            return refuse(context, &statement, "protected_settings", fmt::format("protected_settings: {}", *member),
                          fmt::format("pgrail: changing setting {} refused; it guards the database's protections, "
                                      "ask an operator",
                                      setting.name),
                          setting.via_function ? " calling set_config" : "",
                          "This setting guards the database's own protections; the session keeps the value its "
                          "role was given.");
    }

    // A row lock (FOR UPDATE, FOR KEY SHARE ...) or LOCK TABLE, held in an open transaction, stalls
    // the writes of whoever owns the schema (review 93: a ledger row locked failed migrate_down).
    if (statement.flags.locking_clause || statement.tag == "LOCK TABLE") {
        for (const auto& object : statement.objects) {
            const auto schema = schema_of(object);
            if (object.role != ObjectRole::read || schema.empty()) continue;
            for (const auto& protected_schema : guards.protected_schemas)
                if (matches_any_case(protected_schema, schema))
                    return refuse(context, &statement, "protected_schemas",
                                  fmt::format("protected_schemas: {}", protected_schema),
                                  fmt::format("pgrail: a lock on protected schema {} refused; read it without FOR "
                                              "UPDATE / FOR SHARE or LOCK TABLE",
                                              schema),
                                  fmt::format(" (locked {})", qualified(object)),
                                  "A lock held on this schema's rows or tables stalls the writes of their owner "
                                  "(pgrail's own, for schema pgrail); read them without a lock.");
        }
    }
    const bool reaches_later = reaches_read_relations_later(statement);
    // protected_user_schema, asked at the statement's first unqualified write only (not per statement).
    std::optional<std::string_view> user_schema;
    const auto protected_user_schema_once = [&] {
        if (!user_schema) user_schema = protected_user_schema(context);
        return *user_schema;
    };
    for (const auto& object : statement.objects) {
        if (!written_or_viewed(object, reaches_later)) continue;
        const auto schema = schema_of(object);
        if (schema.empty() && !object.temporary && in_a_schema(object.kind) && !protected_user_schema_once().empty())
            // The default search_path begins with "$user": an unqualified name resolves into the
            // schema named like the session's role first, where one exists. Protected, it takes
            // every unqualified write, unless the name is qualified.
            return refuse(context, &statement, "protected_schemas", fmt::format("protected_schemas: {}", *user_schema),
                          fmt::format("pgrail: write to {} refused; unqualified, it may resolve into protected schema "
                                      "{} (search_path's \"$user\"): qualify the name with its schema",
                                      object.name, context.session.user),
                          fmt::format(" ({} {})", sql::to_string(object.role), qualified(object)),
                          "A schema named like the session's role comes first in the default search_path; name "
                          "the schema you mean (public.t), or pg_temp for a temporary one.");
        if (schema.empty()) continue;
        for (const auto& protected_schema : guards.protected_schemas)
            if (matches_any_case(protected_schema, schema))
                return refuse(context, &statement, "protected_schemas",
                              fmt::format("protected_schemas: {}", protected_schema),
                              object.role == ObjectRole::read
                                  ? (statement.tag == "CREATE TABLE"
                                         ? fmt::format("pgrail: a table like a relation of protected schema {} "
                                                       "refused; its copied defaults would write the schema's "
                                                       "sequences",
                                                       schema)
                                         : fmt::format("pgrail: a temporary view of protected schema {} refused; "
                                                       "writes through it would reach the schema",
                                                       schema))
                                  : fmt::format("pgrail: write to protected schema {} refused; {}", schema,
                                                schema == "pgrail" ? "pgrail's commands change it"
                                                                   : "it is read-only through pgrail"),
                              fmt::format(" ({} {})", sql::to_string(object.role), qualified(object)),
                              "Objects in this schema are read-only through pgrail; pgrail's own state changes only "
                              "through pgrail's commands.");
    }

    if (statement.statement_class != StatementClass::ddl && !guards.allows_class(statement.statement_class))
        return refuse(context, &statement, "allow_classes", "allow_classes",
                      fmt::format("pgrail: {} statements are not allowed for this session; ask an operator to run "
                                  "this {}",
                                  class_name(statement.statement_class), tag_of(statement)),
                      fmt::format(" (class {})", class_name(statement.statement_class)),
                      fmt::format("Rule \"{}\" allows {}.", context.rule.name, list_classes(guards)));
    if (is_ddl(statement))
        if (auto refusal = check_ddl(context, statement)) return refusal;

    // knex releases its lock with an UPDATE of its bookkeeping table without WHERE.
    if (flags.update_or_delete_without_where && guards.require_where && !changes_only_bookkeeping(guards, statement)) {
        auto text = advice::without_where(statement);
        return refuse(context, &statement, "require_where", "require_where", std::move(text.message), "",
                      std::move(text.hint));
    }
    if (!guards.allow_truncate) {
        const bool truncates = statement.tag == "TRUNCATE TABLE" || statement.tag == "TRUNCATE" ||
                               std::any_of(statement.objects.begin(), statement.objects.end(),
                                           [](const auto& object) { return object.role == ObjectRole::truncated; });
        if (truncates) {
            auto text = advice::truncate(statement);
            return refuse(context, &statement, "truncate", "allow_truncate: false", std::move(text.message), "",
                          std::move(text.hint));
        }
    }
    if (!guards.read_only_tables.empty()) {
        // TRUNCATE ... CASCADE empties every table that references the ones named, through
        // foreign keys the text does not show: a read-only one among them, for all pgrail knows.
        const bool truncates_cascading =
            statement.structural_form.find("8:behaviors12:DROP_CASCADE") != std::string::npos &&
            std::any_of(statement.objects.begin(), statement.objects.end(),
                        [](const auto& object) { return object.role == ObjectRole::truncated; });
        if (truncates_cascading)
            return refuse(context, &statement, "read_only_tables", "read_only_tables",
                          "pgrail: TRUNCATE ... CASCADE refused while tables are read-only; it empties the tables "
                          "that reference these, which may include one",
                          "", "Truncate the tables by name, without CASCADE.");
        // A table LIKE a read-only one copies its defaults, which write its sequences, not it.
        const bool viewed = creates_temporary_view(statement);
        for (const auto& object : statement.objects) {
            const bool writes = object.role == ObjectRole::written || object.role == ObjectRole::truncated;
            if (!writes && !(object.role == ObjectRole::read && written_or_viewed(object, viewed))) continue;
            for (const auto& pattern : guards.read_only_tables)
                if (table_matches(pattern, object, context.session.user))
                    return refuse(context, &statement, "read_only_tables", "read_only_tables",
                                  writes ? fmt::format("pgrail: write to read-only table {} refused; an operator "
                                                       "changes it",
                                                       qualified(object))
                                         : fmt::format("pgrail: a temporary view of read-only table {} refused; "
                                                       "writes through it would reach the table",
                                                       qualified(object)),
                                  "",
                                  "This table is read-only through pgrail; an operator changes it.");
        }
    }
    return std::nullopt;
}

// The startup `options` value split as PostgreSQL splits it: whitespace separates, backslash escapes.
std::vector<std::string> split_options(std::string_view options) {
    std::vector<std::string> tokens;
    std::string current;
    bool in_token = false;
    for (std::size_t index = 0; index < options.size(); ++index) {
        const char c = options[index];
        if (std::isspace(static_cast<unsigned char>(c))) {
            if (in_token) tokens.push_back(std::move(current));
            current.clear();
            in_token = false;
            continue;
        }
        if (c == '\\' && index + 1 < options.size()) {
            current += options[++index];
        } else {
            current += c;
        }
        in_token = true;
    }
    if (in_token) tokens.push_back(std::move(current));
    return tokens;
}

std::string setting_name(std::string_view assignment) {
    std::string name(assignment.substr(0, assignment.find('=')));
    for (auto& c : name) c = c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return name;
}

// Settings a client library sets at connection time, allowed as startup parameters even where
// `options` is refused altogether.
constexpr std::string_view client_settings[] = {"application_name", "client_encoding", "datestyle",
                                                "timezone", "extra_float_digits", "intervalstyle"};

// The startup packet is checked before the server authenticates the client in auth.mode
// passthrough (no identity yet): a hint then names no rule and no list, for anyone can read it.
bool authenticated(const SessionInfo& session) { return !session.identity.empty(); }

// One setting given at connection time (a startup parameter, or an assignment in `options`):
// the guards of SET, then the rule's options list (under options: deny, for startup parameters,
// the client settings above).
template <class Hint>
std::optional<Decision> check_connection_setting(const Context& context, const std::string& name, std::string_view value,
                                                 std::string where, OptionsMode mode, const Hint& options_hint) {
    const auto& guards = context.rule.guards;
    if (guards.protected_settings.contains(name))
        return refuse(context, nullptr, "protected_settings", "protected_settings",
                      fmt::format("pgrail: changing setting {} refused; it guards the database's protections, "
                                  "ask an operator",
                                  name),
                      where,
                      "This setting guards the database's own protections; the session keeps the value its role "
                      "was given.");
    if (auto refusal = check_setting_value(context, nullptr, name, value, where)) return refusal;
    const bool listed =
        mode == OptionsMode::allow ||
        (mode == OptionsMode::allow_list && guards.allowed_options.contains(name)) ||
        (mode == OptionsMode::deny && std::find(std::begin(client_settings), std::end(client_settings), name) !=
                                          std::end(client_settings));
    if (!listed)
        return refuse(context, nullptr, "options", "options",
                      fmt::format("pgrail: startup option {} refused; set it with SET after connecting", name),
                      std::move(where), options_hint());
    return std::nullopt;
}

// The options as a refusal shows them: each setting's name, never its value (a literal: it may be
// a secret); a token that is no option by its spelling is not shown at all.
std::string shown_options(std::string_view options) {
    std::vector<std::string> shown;
    for (const auto& token : split_options(options)) {
        const auto equals = token.find('=');
        if (equals != std::string::npos) {
            shown.push_back(token.substr(0, std::min<std::size_t>(equals, 64)) + "=...");
        } else if (token.starts_with("--") && token.size() <= 64) {
            shown.push_back(token);  // a long option's name (its value is the next word)
        } else if (token.starts_with('-')) {
            // A switch runs into its value (`-Svalue` is -S value): the switch alone (review 100).
            shown.push_back(token.substr(0, 2) + (token.size() > 2 ? "..." : ""));
        } else {
            shown.push_back("...");
        }
    }
    auto joined = fmt::format("{}", fmt::join(shown, " "));
    return joined.size() > 200 ? joined.substr(0, 200) + "..." : joined;
}

std::optional<Decision> check_options(const Context& context, std::string_view options) {
    const auto& guards = context.rule.guards;
    if (trim(options).empty()) return std::nullopt;
    const auto shown = shown_options(options);
    const auto options_hint = [&] {
        return guards.options == OptionsMode::allow_list && authenticated(context.session)
                   ? fmt::format("Rule \"{}\" allows options to set only: {}.", context.rule.name,
                                 fmt::join(guards.allowed_options.sorted(), ", "))
                   : std::string("Set what you need with SET after connecting.");
    };
    if (guards.options == OptionsMode::deny)
        return refuse(context, nullptr, "options", "options: deny",
                      "pgrail: startup options refused; set what you need with SET after connecting",
                      fmt::format(" with options \"{}\"", shown), options_hint());
    const auto tokens = split_options(options);
    const auto refuse_token = [&](const std::string& token) {
        return refuse(context, nullptr, "options", "options",
                      fmt::format("pgrail: startup option {} refused; connect without it", shown_options(token)),
                      fmt::format(" with options \"{}\"", shown), options_hint());
    };
    // Read as the server's getopt reads them (PostgreSQL's backend switches, "B:bc:C:D:d:EeFf:h:ijk:
    // lN:nOPp:r:S:sTt:v:W:-:"): switches may run together (`-ec name=value` is -e, then -c with
    // the next word), and a switch that takes a value takes the rest of its word or the next
    // word. Settings come from -c and -- (helper 72: `-ec search_path=pgrail` passed under allow).
    static constexpr std::string_view takes_value = "BcCDdfhkNprStvW-";
    static constexpr std::string_view flags = "bEeFijlnOPsT";
    std::vector<std::string> assignments;
    for (std::size_t index = 0; index < tokens.size(); ++index) {
        const auto& token = tokens[index];
        if (token.size() < 2 || token[0] != '-') return refuse_token(token);  // no switch: the server refuses it
        for (std::size_t at = 1; at < token.size(); ++at) {
            const char option = token[at];
            if (flags.find(option) != std::string_view::npos) {
                if (guards.options != OptionsMode::allow) return refuse_token(token);
                continue;
            }
            if (takes_value.find(option) == std::string_view::npos) return refuse_token(token);
            std::string value = token.substr(at + 1);
            if (value.empty()) {
                if (index + 1 >= tokens.size()) return refuse_token(token);  // (the server refuses it too)
                value = tokens[++index];
            }
            if (option == 'c' || option == '-') {
                assignments.push_back(std::move(value));
            } else if (guards.options != OptionsMode::allow) {
                return refuse_token(token);
            }
            break;  // the value ends the word
        }
    }
    for (const std::string& assignment : assignments) {
        const auto equals = assignment.find('=');
        const auto value = equals == std::string::npos ? std::string_view() : std::string_view(assignment).substr(equals + 1);
        if (auto refusal = check_connection_setting(context, setting_name(assignment), value,
                                                    fmt::format(" with options \"{}\"", shown), guards.options,
                                                    options_hint))
            return refusal;
    }
    return std::nullopt;
}

}  // namespace

bool changes_schema(const Statement& statement) { return is_ddl(statement) && !only_temporary_changes(statement); }

std::string migrations_hint(const Policy& policy) {
    return fmt::format("Schema changes reach the database only as registered migrations, each with a rollback "
                       "script: pgrail.propose_migration(name, up_sql, down_sql) checks yours and stores it for "
                       "approval; once it is approved, SELECT * FROM pgrail.migrate_up('<version>') applies it. "
                       "Operators can also add <version>_<name>.up.sql and .down.sql to the migrations directory "
                       "({}).",
                       policy.migrations_dir);
}

Decision evaluate_startup(const Policy& policy, const SessionInfo& session,
                          const std::vector<std::pair<std::string, std::string>>& startup_params) {
    const Context context{policy, policy.rule_for(session), nullptr, session};
    // PostgreSQL keeps a key's last value and pgrail's session its first: a packet that names a key
    // twice is refused, so that both read the same user, database and settings.
    for (std::size_t index = 0; index < startup_params.size(); ++index) {
        const auto& key = startup_params[index].first;
        const auto earlier = std::find_if(startup_params.begin(), startup_params.begin() + static_cast<std::ptrdiff_t>(index),
                                          [&](const auto& parameter) { return parameter.first == key; });
        if (earlier == startup_params.begin() + static_cast<std::ptrdiff_t>(index)) continue;
        auto decision = refuse(context, nullptr, "options", "startup packet",
                               fmt::format("pgrail: invalid startup packet: parameter \"{}\" is given more than once", key),
                               fmt::format(" with parameter {} given twice", key),
                               "Send each startup parameter once.");
        decision.sqlstate = "08P01";  // a protocol violation, as PostgreSQL calls a malformed packet
        return decision;
    }
    // With the server's db_user_namespace on, "name@" logs in as role "name": the rule matched
    // on "name@" would not be the role's.
    if (session.user.ends_with('@')) {
        auto decision = refuse(context, nullptr, "user_name", "user name",
                               "pgrail: a user name that ends in @ is refused; connect with the role's own name",
                               " with a user name that ends in @",
                               "Under db_user_namespace the server reads \"name@\" as role name; pgrail matches its "
                               "rules on the role the server will use.");
        decision.sqlstate = "28000";
        return decision;
    }
    for (const auto& [key, value] : startup_params) {
        if (key == "replication") {
            const auto flag = setting_name(value);
            const bool replication = !(flag == "false" || flag == "off" || flag == "no" || flag == "0");
            if (replication && !context.rule.guards.allow_replication)
                return refuse(context, nullptr, "replication", "replication: deny",
                              "pgrail: replication connections are refused through pgrail; an operator sets up "
                              "replication",
                              fmt::format(" with replication={}", value),
                              "Connect replication clients to the server directly, not through pgrail.");
            // A replication stream carries every table's rows, guarded columns included.
            if (replication && !context.rule.guards.sensitive.empty())
                return refuse(context, nullptr, "sensitive_columns", "sensitive_columns",
                              "pgrail: replication connections are refused for a rule with sensitive columns: a "
                              "replication stream carries every table's rows",
                              fmt::format(" with replication={}", value),
                              "Connect replication clients to the server directly, not through pgrail.");
        } else if (key == "options") {
            if (auto refusal = check_options(context, value)) return *refusal;
        } else if (key != "user" && key != "database" && !key.starts_with("_pq_.")) {
            // Every other startup parameter is a setting the server applies to the session: the
            // same guards as `options` (an allow list) and SET.
            const auto& guards = context.rule.guards;
            const auto hint = [&] {
                return guards.options == OptionsMode::allow_list && authenticated(context.session)
                           ? fmt::format("Rule \"{}\" allows connection settings only for: {}.", context.rule.name,
                                         fmt::join(guards.allowed_options.sorted(), ", "))
                           : std::string("Set what you need with SET after connecting.");
            };
            if (auto refusal = check_connection_setting(context, setting_name(key), value,
                                                        fmt::format(" with startup parameter {}", key), guards.options,
                                                        hint))
                return *refusal;
        }
    }
    return allow(context);
}

Decision evaluate_connection_limit(const Policy& policy, const SessionInfo& session) {
    const Context context{policy, policy.rule_for(session), nullptr, session};
    const auto limit = context.rule.guards.max_connections;
    auto decision = refuse(context, nullptr, "max_connections", fmt::format("max_connections: {}", limit),
                           fmt::format("pgrail: too many connections for this login's rule ({} at once); close "
                                       "sessions you do not use, or try again later",
                                       limit),
                           "",
                           "Reuse one connection for several statements; each session holds one of the database "
                           "server's connections.");
    decision.sqlstate = "53300";
    return decision;
}

Decision evaluate_bound_lock_key(const Policy& policy, const SessionInfo& session, std::string_view key) {
    const Context context{policy, policy.rule_for(session), nullptr, session};
    if (!is_pgrail_lock_key(key)) return allow(context);
    auto decision = lock_key_refusal(context, nullptr, key);
    decision.detail = fmt::format("rule \"{}\" (migrations) refused a Bind (advisory lock key {})", context.rule.name,
                                  key);
    return decision;
}

Decision evaluate_function_call(const Policy& policy, const SessionInfo& session, std::uint32_t function_oid) {
    const Context context{policy, policy.rule_for(session), nullptr, session};
    auto decision = refuse(context, nullptr, "function_call", "function_call",
                           "pgrail: fast-path function calls are refused; call the function in a SELECT", "",
                           "pgrail cannot see which function a FunctionCall message calls: call the function in a "
                           "SELECT statement instead (with libpq, PQexecParams rather than PQfn).");
    decision.detail = fmt::format("rule \"{}\" refused a FunctionCall message (function OID {})", context.rule.name,
                                  function_oid);
    return decision;
}

namespace {

// A client_encoding value that keeps a session that does not convert as it is: RESET or DEFAULT
// (back to the start), or UTF8 in any spelling PostgreSQL takes (libpq's PQsetClientEncoding and
// Rails send `'unicode'`), on a server whose encoding is UTF8 (then `converted` stays false).
bool keeps_utf8(std::string_view value, const sql::Lexing& lexing) {
    if (value.empty()) return true;
    if (lexing.converted || lexing.encoding_pending) return false;
    return sql::encoding_key(value) == "utf8";
}

// sensitive_columns: a statement that reads a guarded column where the rule does not allow it
// (deny: anywhere; mask: anywhere but as a plain column of the result) is refused. `masked`
// collects the columns it returns masked.
std::optional<Decision> check_sensitive(const Context& context, const Statement& statement,
                                        std::vector<std::string>& masked) {
    const auto& guarded = context.rule.guards.sensitive;
    if (guarded.empty()) return std::nullopt;
    const bool masks = guarded.action == SensitiveAction::mask;
    const std::string label = masks ? "sensitive_columns: mask" : "sensitive_columns: deny";
    const SensitiveSet* set = context.sensitive ? context.sensitive->set : nullptr;
    if (!set) {
        if (statement.ranges.empty() && statement.functions.empty()) return std::nullopt;
        auto decision = refuse(context, &statement, "sensitive_columns", label,
                               "pgrail: cannot check this statement for sensitive columns: the database's catalog "
                               "is not available to pgrail",
                               context.sensitive && !context.sensitive->error.empty()
                                   ? " (catalog: " + context.sensitive->error + ")"
                                   : std::string(" (no catalog connection)"),
                               "Retry in a moment; if this persists, ask the operator to check pgrail's catalog "
                               "connection (catalog.conninfo).");
        decision.sqlstate = "55000";
        return decision;
    }
    // The server converts a result to the client's encoding before pgrail masks it: a masked
    // value's character without an equivalent there fails its row with the character's bytes in
    // the message (helper 70). A session that masks keeps the encoding it started with, and reads
    // masked columns only while the server does not convert.
    if (masks)
        for (const auto& setting : statement.settings)
            if ((setting.name == "client_encoding" && !keeps_utf8(setting.value, context.session.lexing)) ||
                setting.name == "*")  // (set_config with a computed name: it may be client_encoding)
                return refuse(context, &statement, "sensitive_columns", label,
                              "pgrail: client_encoding may not change in this session: it masks columns, whose real "
                              "values the server converts to the client's encoding before pgrail masks them",
                              setting.via_function ? " calling set_config" : "",
                              "Keep the encoding the session started with (UTF8, as the server's).");
    const SensitiveReads reads = find_sensitive_reads(statement, guarded, *set);
    if (!reads.masked.empty() && context.session.lexing.converted)
        return refuse(context, &statement, "sensitive_columns", label,
                      fmt::format("pgrail: column {} is masked in this session and may be read only while the server "
                                  "does not convert the session's encoding",
                                  reads.masked.front()),
                      " (client_encoding differs from server_encoding)",
                      "Connect with client_encoding set to the server's encoding (UTF8) to read masked columns.");
    if (!reads.masked.empty() && context.session.lexing.encoding_pending)
        return refuse(context, &statement, "sensitive_columns", label,
                      fmt::format("pgrail: column {} is masked in this session and may be read only once the change of "
                                  "client_encoding is final: after its result, and after the transaction block that "
                                  "made it ends",
                                  reads.masked.front()),
                      " (a change of client_encoding not final yet)",
                      "End the transaction block (COMMIT or ROLLBACK), then read the column again.");
    if (reads.unresolved)
        return refuse(context, &statement, "sensitive_columns", label,
                      fmt::format("pgrail: this session may not run statements whose reads pgrail cannot follow: {}",
                                  *reads.unresolved),
                      "", "Name the tables and columns you read in the statement itself.");
    if (!reads.refused.empty()) {
        const SensitiveRead& first = reads.refused.front();
        std::vector<std::string> columns;
        for (const auto& read : reads.refused)
            if (std::find(columns.begin(), columns.end(), read.column) == columns.end()) columns.push_back(read.column);
        const std::string listed = fmt::format("{}", fmt::join(columns, ", "));
        Decision decision;
        if (first.written)
            decision = refuse(context, &statement, "sensitive_columns", label,
                              fmt::format("pgrail: column {} is sensitive and may not be written in this session: a "
                                          "value stored beside the real ones reveals them (in the order an index "
                                          "returns rows, or as an equal mask); leave it out of the statement",
                                          first.column),
                              fmt::format(" writing {}", listed),
                              "Insert or update the other columns by name (an INSERT without a column list writes "
                              "every one); the column takes its default. Ask an operator to set sensitive values.");
        else if (!masks || first.always_deny)
            decision = refuse(context, &statement, "sensitive_columns", label,
                          fmt::format("pgrail: column {} is sensitive and may not be read in this session (read {}); "
                                      "leave it out of the statement (name the columns you need instead of *)",
                                      first.column, first.how),
                          fmt::format(" reading {}", listed),
                          "Select the columns you need by name and leave out the sensitive ones (SELECT * and whole "
                          "rows include them).");
        else
            decision = refuse(context, &statement, "sensitive_columns", label,
                      fmt::format("pgrail: column {} is masked in this session and may only be selected as a plain "
                                  "column of the result (read {})",
                                  first.column, first.how),
                      fmt::format(" reading {}", listed),
                      "Select the column by name (or with *) in the outer SELECT and its values come back masked; "
                      "leave it out of WHERE, ORDER BY, joins, expressions, aggregates and subqueries.");
        decision.columns = std::move(columns);
        return decision;
    }
    masked.insert(masked.end(), reads.masked.begin(), reads.masked.end());
    return std::nullopt;
}

}  // namespace

Decision evaluate(const Policy& policy, const SessionInfo& session, const Statement& statement,
                  const MigrationMatcher* is_registered_migration_statement, const SensitiveContext* sensitive) {
    const Context context{policy, policy.rule_for(session), is_registered_migration_statement, session, sensitive};
    auto decision = check(context, statement, false);
    if (decision && decision->action == Decision::Action::deny) return std::move(*decision);
    std::vector<std::string> masked;
    if (auto refusal = check_sensitive(context, statement, masked)) return std::move(*refusal);
    if (decision) return std::move(*decision);
    auto allowed = allow(context);
    allowed.columns = std::move(masked);
    return allowed;
}

Decision evaluate_all(const Policy& policy, const SessionInfo& session, const sql::Analysis& analysis,
                      const MigrationMatcher* is_registered_migration_statement, const SensitiveContext* sensitive) {
    const Context context{policy, policy.rule_for(session), is_registered_migration_statement, session, sensitive};
    if (analysis.error && refuses_unparsed(policy, &*analysis.error)) {
        auto decision = parse_error(context, nullptr, &*analysis.error);
        const auto failed = std::find_if(analysis.statements.begin(), analysis.statements.end(),
                                         [](const Statement& statement) { return statement.error.has_value(); });
        decision.statement_index = static_cast<std::size_t>(failed - analysis.statements.begin());
        return decision;
    }
    const bool alone = analysis.statements.size() == 1;
    std::vector<std::string> masked;
    for (std::size_t index = 0; index < analysis.statements.size(); ++index) {
        auto decision = check(context, analysis.statements[index], !alone);
        if (!decision || decision->action != Decision::Action::deny) {
            if (auto refusal = check_sensitive(context, analysis.statements[index], masked)) decision = std::move(refusal);
        }
        if (decision) {
            decision->statement_index = index;
            return std::move(*decision);
        }
    }
    auto allowed = allow(context);
    std::sort(masked.begin(), masked.end());
    masked.erase(std::unique(masked.begin(), masked.end()), masked.end());
    allowed.columns = std::move(masked);
    return allowed;
}

}  // namespace pgrail::policy

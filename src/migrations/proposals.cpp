// Proposed migrations: checks, storage in the ledger database, approval, and their merge into the
// registry (docs/migrations.md, "Proposed migrations").
#include "pgrail/migrations/proposals.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "internal.hpp"
#include "pgrail/migrations/lint.hpp"
#include "pgrail/migrations/lock.hpp"
#include "pgrail/migrations/scratch_guard.hpp"
#include "pgrail/protocol/sqlstate.hpp"
#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/quote.hpp"

namespace pgrail::migrations {

const char* to_string(ProposalState state) {
    switch (state) {
        case ProposalState::proposed: return "proposed";
        case ProposalState::approved: return "approved";
        case ProposalState::rejected: return "rejected";
    }
    return "proposed";
}

namespace {

ProposalState parse_state(std::string_view text) {
    if (text == "approved") return ProposalState::approved;
    if (text == "rejected") return ProposalState::rejected;
    return ProposalState::proposed;
}

// Decimal string plus one.
std::string increment(std::string digits) {
    for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
        if (*it != '9') {
            ++*it;
            return digits;
        }
        *it = '0';
    }
    return "1" + digits;
}

std::string file_path(const std::string& version, const std::string& name, Direction direction) {
    return fmt::format("{}/{}_{}.{}.sql", proposals_source, version, name, to_string(direction));
}

constexpr const char* proposal_columns =
    "version, name, up_sql, down_sql, no_transaction, checksum, findings::text, verification, state, proposed_by, "
    "proposed_at::text, coalesce(decided_by, ''), coalesce(decided_at::text, ''), coalesce(reason, '')";

Proposal proposal_from(const pqxx::row& row) {
    Proposal p;
    p.version = row[0].as<std::string>();
    p.name = row[1].as<std::string>();
    p.up_sql = row[2].as<std::string>();
    p.down_sql = row[3].as<std::string>();
    p.no_transaction = row[4].as<bool>();
    p.checksum = row[5].as<std::string>();
    p.findings = nlohmann::json::parse(row[6].as<std::string>(), nullptr, false);
    if (p.findings.is_discarded()) p.findings = nlohmann::json::array();
    p.verification = row[7].as<std::string>();
    p.state = parse_state(row[8].as<std::string>());
    p.proposed_by = row[9].as<std::string>();
    p.proposed_at = row[10].as<std::string>();
    p.decided_by = row[11].as<std::string>();
    p.decided_at = row[12].as<std::string>();
    p.reason = row[13].as<std::string>();
    return p;
}

std::vector<Proposal> query_proposals(const std::string& conninfo, const std::string& where) {
    std::vector<Proposal> out;
    try {
        auto conn = detail::connect(conninfo);
        pqxx::read_transaction tx(*conn);
        // One query: a ledger without the table (older, or none yet) has no proposals.
        const auto result = tx.exec(fmt::format(
            "SELECT {} FROM pgrail.migration_proposals {} ORDER BY length(version), version", proposal_columns, where));
        for (const auto& row : result) out.push_back(proposal_from(row));
    } catch (const pqxx::undefined_table&) {
        return {};
    } catch (...) {
        detail::rethrow_database_error("cannot read the proposed migrations");
    }
    return out;
}

}  // namespace

bool valid_proposal_name(std::string_view name) {
    if (name.empty() || name.size() > 63) return false;
    return std::all_of(name.begin(), name.end(),
                       [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

std::string next_proposal_version(std::chrono::system_clock::time_point now, const std::vector<std::string>& taken) {
    const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    std::string version = fmt::format("{:04}{:02}{:02}{:02}{:02}{:02}", utc.tm_year + 1900, utc.tm_mon + 1,
                                      utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec);
    for (const auto& text : taken) {
        const auto other = canonical_version(text);
        if (other && !version_less(*other, version)) version = increment(*other);
    }
    return version;
}

Migration proposal_migration(const std::string& version, const std::string& name, const std::string& up_sql,
                             const std::string& down_sql) {
    if (!valid_proposal_name(name))
        throw MigrationError(sqlstate::invalid_parameter_value,
                             fmt::format("pgrail: invalid migration name \"{}\": use 1 to 63 characters of a-z, 0-9 "
                                         "and _, e.g. 'add_profiles_timezone'",
                                         name),
                             "a migration's name is 1 to 63 characters of a-z, 0-9 and _",
                             "e.g. SELECT * FROM pgrail.propose_migration('add_profiles_timezone', up_sql, down_sql)");
    Migration migration;
    migration.version = version;
    migration.name = name;
    const auto parse = [&](const std::string& text, Direction direction) {
        auto parsed = parse_script(file_path(version, name, direction), text);
        const char* which = direction == Direction::up ? "up script" : "rollback (down) script";
        if (parsed.error)
            throw MigrationError(parsed.error->starts_with("does not parse") ? sqlstate::syntax_error
                                                                             : sqlstate::invalid_parameter_value,
                                 fmt::format("pgrail: the proposal's {} {}", which, *parsed.error), "",
                                 "Both scripts must be SQL that PostgreSQL parses, without BEGIN/COMMIT (the runner "
                                 "runs each migration in a transaction); fix it and propose again.");
        if (parsed.script.statements.empty())
            throw MigrationError(
                sqlstate::invalid_parameter_value, fmt::format("pgrail: the proposal's {} has no statements", which),
                direction == Direction::down ? "every migration needs a rollback script that undoes its up script" : "",
                direction == Direction::down
                    ? "Pass the SQL that undoes the change as the third argument, e.g. ALTER TABLE t DROP COLUMN c "
                      "for ALTER TABLE t ADD COLUMN c ..."
                    : "Pass the schema change as the second argument.");
        return std::move(parsed.script);
    };
    migration.up = parse(up_sql, Direction::up);
    migration.down = parse(down_sql, Direction::down);
    migration.checksum = migration_checksum(up_sql, down_sql);
    return migration;
}

namespace {

// Why a statement of a proposal needs a person's approval, or nothing when pgrail may approve it
// on its own: up scripts may only create tables, add columns and create indexes; down scripts
// may only drop tables, columns and indexes (an ALTER TABLE nothing else); no script may call a
// function (a default or an index expression runs with the runner's privileges), add a foreign
// key to a table that has rows, reach a table beyond the one it changes (REFERENCES, INHERITS,
// PARTITION OF, LIKE read or bind another table with the runner's rights),
// touch a system or pgrail schema, or add a NOT NULL column without a default (the scratch copy
// has no rows to refuse it), or make a temporary table. (The new columns' types are the
// catalog's to tell: catalog_findings.)
std::optional<std::string> needs_review(const sql::Analysis& analysis, Direction direction) {
    if (analysis.error || analysis.statements.size() != 1) return "pgrail cannot read it as one statement";
    const sql::Statement& analysed = analysis.statements.front();
    const auto kind = analysed.change.kind;
    const bool allowed =
        direction == Direction::up
            ? (analysed.tag == "CREATE TABLE" && kind == sql::ChangeKind::create_table) ||
                  (analysed.tag == "ALTER TABLE" && kind == sql::ChangeKind::add_column) ||
                  (analysed.tag == "CREATE INDEX" && kind == sql::ChangeKind::create_index)
            : (analysed.tag == "DROP TABLE" && kind == sql::ChangeKind::drop_table) ||
                  (analysed.tag == "ALTER TABLE" && kind == sql::ChangeKind::drop_column) || analysed.tag == "DROP INDEX";
    if (!allowed || analysed.change.other_clauses)
        return direction == Direction::up ? "only CREATE TABLE, ADD COLUMN and CREATE INDEX are approved automatically"
                                          : "only DROP TABLE, DROP COLUMN and DROP INDEX are approved automatically";
    if (!analysed.functions.empty()) return fmt::format("it calls {}", analysed.functions.front());
    // Gone when the runner's session ends, with what depends on it (a column of its row type
    // too: the ledger would then say applied what is not there); and its row type shadows a
    // type of the same name for the rest of the session.
    if (analysed.flags.temporary_object) return "a temporary table vanishes with the runner's session";
    // What evaluates the table's existing rows when applied: an error then quotes their values
    // (an index expression that fails on a row, a unique index's duplicate key, a CHECK's failing
    // row), to whoever applies it. (Strings in the form are tagged with their key, so a constant
    // spelling these words only makes it wait for a person.)
    const auto& form = analysed.structural_form;
    if (analysed.tag == "CREATE INDEX" && (form.find("6:unique") != std::string::npos ||
                                           form.find("4:expr") != std::string::npos ||
                                           form.find("11:whereClause") != std::string::npos))
        return "a unique, partial or expression index reads every existing row (a failure would quote one)";
    if (analysed.tag == "ALTER TABLE" &&  // (a table the statement creates has no rows)
        (form.find("CONSTR_CHECK") != std::string::npos || form.find("CONSTR_GENERATED") != std::string::npos ||
         form.find("CONSTR_UNIQUE") != std::string::npos || form.find("CONSTR_PRIMARY") != std::string::npos ||
         form.find("CONSTR_EXCLUSION") != std::string::npos))
        return "a CHECK, UNIQUE, PRIMARY KEY, EXCLUDE or generated column is evaluated over existing rows";
    if (analysed.change.not_null_without_default) return "a NOT NULL column without a default fails on a table with rows";
    // A foreign key on a table that has rows changes what the application's deletes and updates
    // of the rows it references do (cascade, set null, or fail), even when it references its own
    // table (which the count of tables below does not see).
    if (analysed.tag == "ALTER TABLE" && form.find("CONSTR_FOREIGN") != std::string::npos)
        return "a foreign key changes what deletes and updates of the rows it references do";
    // Objects that exist before the statement: none for a table it creates or objects it drops,
    // the one table a column or an index is added to.
    const auto existing = std::count_if(analysed.objects.begin(), analysed.objects.end(), [](const sql::ObjectRef& o) {
        return o.role != sql::ObjectRole::created && o.role != sql::ObjectRole::dropped;
    });
    const bool one_table = analysed.tag == "ALTER TABLE" || analysed.tag == "CREATE INDEX";
    if (existing > (one_table ? 1 : 0)) return "it reaches another table (REFERENCES, INHERITS, PARTITION OF or LIKE)";
    for (const auto& object : analysed.objects) {
        const std::string_view schema = object.schema;
        if (schema == "pg_catalog" || schema == "information_schema" || schema == "pgrail" ||
            schema == "pgrail_backstop" || schema.starts_with("pg_") || object.name.starts_with("pg_"))
            return fmt::format("it touches {}{}{}", object.schema, object.schema.empty() ? "" : ".", object.name);
    }
    return std::nullopt;
}

// What an up script makes: the rollback may drop exactly these. Names as written, the schema
// too ("" when unqualified): a drop names the same object only when it is written alike.
struct Made {
    std::set<std::pair<std::string, std::string>> tables;  // CREATE TABLE: (schema, table)
    std::set<std::tuple<std::string, std::string, std::string>> columns;  // ADD COLUMN: (schema, table, column)
};

// CREATE TABLE IF NOT EXISTS, ADD COLUMN IF NOT EXISTS: made only if it was not there, so never
// the up script's to drop (the rollback would take what was there before).
bool only_if_missing(const sql::Statement& statement) {
    return statement.structural_form.find("13:if_not_exists") != std::string::npos ||
           statement.structural_form.find("10:missing_ok") != std::string::npos;
}

Made made_by(const std::vector<sql::Analysis>& analyses) {
    Made made;
    const std::function<void(const sql::Statement&)> add = [&](const sql::Statement& analysed) {
        for (const auto& inner : analysed.inner) add(inner);
        if (only_if_missing(analysed)) return;
        for (const auto& object : analysed.objects)  // CREATE TABLE, CREATE TABLE AS, SELECT INTO
            if (object.role == sql::ObjectRole::created && (object.kind == "table" || object.kind == "relation"))
                made.tables.emplace(object.schema, object.name);
        if (analysed.change.kind == sql::ChangeKind::add_column)
            for (const auto& column : analysed.change.columns)
                made.columns.emplace(analysed.change.schema, analysed.change.table, column);
    };
    for (const auto& analysis : analyses)
        for (const auto& analysed : analysis.statements) add(analysed);
    return made;
}

// The functions and procedures a script creates: a call of one runs statements no check reads.
std::set<std::string> routines_made_by(const std::vector<sql::Analysis>& analyses) {
    std::set<std::string> names;
    for (const auto& analysis : analyses)
        for (const auto& analysed : analysis.statements)
            for (const auto& object : analysed.objects)
                if (object.role == sql::ObjectRole::created && (object.kind == "function" || object.kind == "procedure"))
                    names.insert(object.name);
    return names;
}

// The name without its schema ("s.f" -> "f").
std::string_view unqualified(std::string_view name) {
    const auto dot = name.rfind('.');
    return dot == std::string_view::npos ? name : name.substr(dot + 1);
}

bool cascades(const sql::Statement& statement) {
    return statement.structural_form.find("8:behaviors12:DROP_CASCADE") != std::string::npos;
}

// A DELETE, UPDATE or MERGE (whose actions may delete), or a data-modifying WITH (which may hide
// either under any top-level statement).
bool rewrites_rows(const sql::Statement& statement) {
    return statement.flags.data_modifying_cte ||
           (statement.statement_class == sql::StatementClass::write &&
            (statement.tag == "DELETE" || statement.tag == "UPDATE" || statement.tag == "MERGE"));
}

// What a statement destroys that no script brings back, or nothing: a DROP, TRUNCATE, DELETE or
// UPDATE of data, a column's type changed, also inside a DO block or a query string it runs
// (read again from its inner statements), and in a rollback (`made_by_up`), a DROP of what the up
// script did not make or one that CASCADEs to what depends on it.
std::optional<std::string> destroys(const sql::Statement& analysed, const Made* made_by_up,
                                    const std::set<std::string>& routines) {
    const auto kind = analysed.change.kind;
    if (cascades(analysed)) return analysed.tag + " ... CASCADE";
    if (analysed.tag == "CALL") return "CALL (what the procedure runs goes unread)";
    for (const auto& function : analysed.functions)
        if (routines.contains(std::string(unqualified(function))))
            return fmt::format("a call of {}, which the scripts create (what it runs goes unread)", function);
    if (analysed.tag == "DROP OWNED") return analysed.tag;
    if (kind == sql::ChangeKind::drop_column) {
        for (const auto& column : analysed.change.columns)
            if (made_by_up == nullptr ||
                !made_by_up->columns.contains({analysed.change.schema, analysed.change.table, column}))
                return fmt::format("DROP COLUMN {}", column);
    }
    // (A rollback's type change undoes the up script's, and lint's type-narrowing judges it; one
    // that computes the values anew, USING, may throw them away.)
    if (analysed.tag == "ALTER TABLE" &&
        analysed.structural_form.find("7:subtypes18:AT_AlterColumnType") != std::string::npos &&
        (made_by_up == nullptr || analysed.structural_form.find("11:raw_default") != std::string::npos))
        return "ALTER COLUMN TYPE";
    if (rewrites_rows(analysed))
        return analysed.flags.data_modifying_cte ? analysed.tag + " with a data-modifying WITH" : analysed.tag;
    if (analysed.tag == "DROP SCHEMA" || analysed.tag == "DROP MATERIALIZED VIEW") return analysed.tag;
    for (const auto& object : analysed.objects) {
        if (object.temporary) continue;
        if (object.role == sql::ObjectRole::truncated) return fmt::format("TRUNCATE {}", object.name);
        const bool holds_data = object.kind == "table" || object.kind == "relation" || object.kind == "sequence";
        if (object.role == sql::ObjectRole::dropped && holds_data &&
            (made_by_up == nullptr || !made_by_up->tables.contains({object.schema, object.name})))
            return fmt::format("DROP {} {}", object.kind == "sequence" ? "SEQUENCE" : "TABLE", object.name);
    }
    for (const auto& inner : analysed.inner)
        if (auto destroyed = destroys(inner, made_by_up, routines)) return destroyed;
    if (analysed.flags.ddl_capable_dynamic) return analysed.tag + " running SQL built at run time (EXECUTE)";
    return std::nullopt;
}

}  // namespace

std::vector<ProposalFinding> proposal_findings(const Migration& migration) {
    std::vector<ProposalFinding> out;
    const auto is_schema_change = [](const ScriptStatement& statement) {
        return statement.statement_class == sql::StatementClass::ddl;
    };
    const bool up_changes = std::any_of(migration.up.statements.begin(), migration.up.statements.end(),
                                        is_schema_change);
    if (!up_changes)
        out.push_back({"no_schema_change", "up",
                       "the up script changes no schema (a data change needs an operator's review)"});
    // The analyzer's own reading of each statement, once: what it changes, never how it is spelled.
    const auto analyse = [](const Script& script) {
        std::vector<sql::Analysis> analyses;
        analyses.reserve(script.statements.size());
        for (const auto& statement : script.statements) analyses.push_back(sql::analyze(statement.text));
        return analyses;
    };
    const std::vector<sql::Analysis> up_analyses = analyse(migration.up);
    const std::vector<sql::Analysis> down_analyses = analyse(migration.down);
    std::set<std::string> routines = routines_made_by(up_analyses);
    routines.merge(routines_made_by(down_analyses));
    for (std::size_t index = 0; index < migration.up.statements.size(); ++index) {
        const ScriptStatement& statement = migration.up.statements[index];
        for (const auto& analysed : up_analyses[index].statements) {
            if (const auto destroyed = destroys(analysed, nullptr, routines))
                out.push_back({"destructive", "up",
                               fmt::format("{} (line {}) loses or rewrites data that the rollback cannot bring back",
                                           *destroyed, statement.line)});
            const bool concurrently =
                analysed.change.concurrently ||
                statement.structural_form.find("10:concurrent") != std::string::npos;
            if (concurrently && !migration.up.no_transaction)
                out.push_back({"concurrently_in_transaction", "up",
                               fmt::format("{} CONCURRENTLY (line {}) cannot run in a transaction block: start the up "
                                           "script with the line -- pgrail:no-transaction",
                                           statement.tag, statement.line)});
        }
    }
    // A rollback undoes its up script: dropping anything else loses data that nothing brings back
    // (the operator who approves sees it here; the scratch proof may be skipped).
    const Made made = made_by(up_analyses);
    for (std::size_t index = 0; index < migration.down.statements.size(); ++index) {
        const ScriptStatement& statement = migration.down.statements[index];
        for (const auto& analysed : down_analyses[index].statements)
            if (const auto destroyed = destroys(analysed, &made, routines))
                out.push_back({"destructive", "down",
                               fmt::format("{} (line {}) loses data the up script did not add", *destroyed,
                                           statement.line)});
    }
    for (const Script* script : {&migration.up, &migration.down})
        if (script->no_transaction && script->statements.size() > 1)
            out.push_back({"no_transaction_statements", script == &migration.up ? "up" : "down",
                           fmt::format("a -- pgrail:no-transaction script runs statement by statement, each committed "
                                       "on its own: {} statements can leave it partial; keep it to one",
                                       script->statements.size())});
    // A failure on the live database (a lock timeout on a busy table) leaves such a script half
    // done, e.g. an INVALID index from CREATE INDEX CONCURRENTLY that blocks every later run:
    // the proof on an idle scratch copy cannot show it, and a person cleans it up.
    for (const Script* script : {&migration.up, &migration.down})
        if (script->no_transaction)
            out.push_back({"needs_review", script == &migration.up ? "up" : "down",
                           "a -- pgrail:no-transaction script commits as it goes: a failure on the live database "
                           "leaves it half done (an INVALID index) for a person to clean up"});
    // Only additive changes and their reversal can be approved without a person: the runner
    // holds the schema owner's privileges, so anything else an agent proposes (GRANT, functions,
    // CREATE TABLE AS copying data it may not read, the ledger's tables, ...) waits for review.
    for (const Direction direction : {Direction::up, Direction::down}) {
        const bool up = direction == Direction::up;
        const Script& script = up ? migration.up : migration.down;
        const auto& analyses = up ? up_analyses : down_analyses;
        for (std::size_t index = 0; index < script.statements.size(); ++index)
            if (const auto why = needs_review(analyses[index], direction))
                out.push_back({"needs_review", up ? "up" : "down",
                               fmt::format("{} (line {}): {}", script.statements[index].tag,
                                           script.statements[index].line, *why)});
    }
    const bool down_changes = std::any_of(migration.down.statements.begin(), migration.down.statements.end(),
                                          is_schema_change);
    if (up_changes && !down_changes)
        out.push_back({"rollback_reverses_nothing", "down",
                       "the up script changes the schema but the rollback script changes none of it"});
    return out;
}

std::vector<ProposalFinding> proposal_lint_findings(const Migration& migration) {
    std::vector<ProposalFinding> out;
    // The two transaction rules repeat structure checks of proposal_findings() and are left out.
    // A finding the script waives (-- pgrail:allow) stays listed, with its severity: the proposer
    // wrote that waiver, so it is the reviewer's to accept, and it never makes a proposal clean.
    for (const auto& finding : lint_migration(migration)) {
        if (finding.rule == "concurrently-in-transaction" || finding.rule == "no-transaction-multiple-statements")
            continue;
        out.push_back({finding.rule, "up",
                       finding.waived ? fmt::format("{} (line {}; waived by the proposal: {})", finding.message,
                                                    finding.line, finding.waiver_reason)
                                      : fmt::format("{} (line {})", finding.message, finding.line),
                       to_string(finding.severity)});
    }
    return out;
}

nlohmann::json findings_json(const std::vector<ProposalFinding>& findings) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& finding : findings) {
        nlohmann::json entry{{"rule", finding.rule}, {"script", finding.script}, {"message", finding.message}};
        if (!finding.severity.empty()) entry["severity"] = finding.severity;
        out.push_back(std::move(entry));
    }
    return out;
}

bool proposal_is_clean(const nlohmann::json& findings, std::string_view verification) {
    // A lint finding of severity info is advice, not a reason for a person to look.
    return verification == "passed" && findings.is_array() &&
           std::all_of(findings.begin(), findings.end(), [](const nlohmann::json& finding) {
               return finding.is_object() && finding.value("severity", "") == "info";
           });
}

MergedRegistry merge_proposals(const Registry& directory, const std::vector<Proposal>& approved) {
    MergedRegistry merged{directory, {}};
    std::vector<Migration> extra;
    for (const auto& proposal : approved) {
        if (proposal.state != ProposalState::approved) continue;
        if (const Migration* file = directory.find(proposal.version)) {
            if (file->checksum != proposal.checksum)
                merged.conflicts.push_back(fmt::format(
                    "migration {} is both in the migrations directory ({}, checksum {}) and an approved proposal "
                    "({}, checksum {}), with different scripts",
                    proposal.version, file->up.path.filename().string(), file->checksum.substr(0, 12), proposal.name,
                    proposal.checksum.substr(0, 12)));
            continue;  // the file is the migration (same checksum: the exported proposal)
        }
        try {
            extra.push_back(proposal_migration(proposal.version, proposal.name, proposal.up_sql, proposal.down_sql));
            extra.back().proposed = true;
        } catch (const MigrationError& error) {
            merged.conflicts.push_back(
                fmt::format("approved proposal {} ({}) no longer parses: {}", proposal.version, proposal.name,
                            error.message()));
        }
    }
    if (!extra.empty()) merged.registry = directory.with_migrations(std::move(extra));
    return merged;
}

std::vector<Proposal> read_approved_proposals(const std::string& conninfo) {
    return query_proposals(conninfo, "WHERE state = 'approved'");
}

std::vector<Proposal> read_proposals(const std::string& conninfo) { return query_proposals(conninfo, ""); }

std::string proposal_file_name(const Proposal& proposal, Direction direction) {
    return fmt::format("{}_{}.{}.sql", proposal.version, proposal.name, to_string(direction));
}

// ---- the runner's side: store, approve, reject ----

namespace {

std::string actor_of(pqxx::connection& conn, const RunnerOptions& options) {
    if (!options.actor.empty()) return options.actor;
    pqxx::nontransaction tx(conn);
    return tx.exec1("SELECT session_user::text")[0].as<std::string>();
}

std::string findings_rules(const nlohmann::json& findings) {
    std::string out;
    for (const auto& finding : findings)
        if (finding.contains("rule")) out += (out.empty() ? "" : ", ") + finding["rule"].get<std::string>();
    return out;
}

// What the ledger's event and the audit line say of a proposal: never the scripts' text.
std::string event_detail(const Proposal& proposal) {
    std::string detail = fmt::format("verification: {}; findings: {}", proposal.verification.substr(
                                         0, proposal.verification.find(':')),
                                     proposal.findings.empty() ? "none" : findings_rules(proposal.findings));
    if (!proposal.reason.empty() && proposal.state == ProposalState::rejected) detail += "; rejected";
    return detail;
}

std::vector<std::string> tags(const std::string& text) {
    std::vector<std::string> out;
    for (const auto& statement : sql::analyze(text).statements) out.push_back(statement.tag);
    return out;
}

void audit_proposal(const RunnerOptions& options, const Proposal& proposal, const std::string& event,
                    const std::string& by) {
    if (!options.audit) return;
    nlohmann::json record = {{"type", "migration"},
                             {"event", event},
                             {"version", proposal.version},
                             {"name", proposal.name},
                             {"checksum", proposal.checksum},
                             {"user", by},
                             {"outcome", "ok"},
                             {"state", to_string(proposal.state)},
                             {"up_statements", tags(proposal.up_sql)},
                             {"down_statements", tags(proposal.down_sql)},
                             {"findings", findings_rules(proposal.findings)},
                             {"verification", proposal.verification.substr(0, proposal.verification.find(':'))}};
    if (event == "rejected") record["reason_chars"] = proposal.reason.size();
    if (!options.audit(record))
        throw MigrationError(
            sqlstate::io_error,
            fmt::format("pgrail: proposal {} is recorded ({}), but its audit line could not be written",
                        proposal.version, event),
            "", "Ask the operator to check pgrail's audit file and disk.");
}

// The ledger (with the proposals table) exists: created under the advisory lock when missing.
void ensure_proposals_table(pqxx::connection& conn, const RunnerOptions& options) {
    {
        pqxx::nontransaction tx(conn);
        if (!tx.exec1("SELECT to_regclass('pgrail.migration_proposals') IS NULL")[0].as<bool>()) return;
    }
    detail::AdvisoryLock lock(conn, options.lock_wait, options.abandoned);
    detail::ensure_ledger(conn);
}

std::optional<Proposal> find_proposal(pqxx::transaction_base& tx, const std::string& version, bool for_update) {
    const auto result = tx.exec_params(fmt::format("SELECT {} FROM pgrail.migration_proposals WHERE version = $1{}",
                                                   proposal_columns, for_update ? " FOR UPDATE" : ""),
                                       version);
    if (result.empty()) return std::nullopt;
    return proposal_from(result[0]);
}

}  // namespace

namespace {

// At most `turns` proposals' proofs at a time on the migration database's server, among all
// pgrail processes (a session advisory lock of the proposer's connection for each turn, given back
// when the proof ends or the connection does): an agent cannot multiply scratch databases by
// proposing from many sessions.
class ProofTurn {
public:
    ProofTurn(pqxx::connection& conn, std::uint32_t turns) : conn_(conn) {
        try {
            pqxx::nontransaction tx(conn_);
            for (std::uint32_t turn = 0; turn < turns && !key_; ++turn)
                if (tx.exec1(fmt::format("SELECT pg_try_advisory_lock({})", first_key + turn))[0].as<bool>())
                    key_ = first_key + turn;
        } catch (...) {
            detail::rethrow_database_error("cannot take a turn for the proof");
        }
        if (!key_)
            throw MigrationError(sqlstate::lock_not_available,
                                 fmt::format("pgrail: other proposals' proofs are running: pgrail proves {} at a time",
                                             turns),
                                 "", "Propose it again in a few seconds.");
    }
    ~ProofTurn() {
        try {
            pqxx::nontransaction tx(conn_);
            tx.exec(fmt::format("SELECT pg_advisory_unlock({})", *key_));
        } catch (...) {
            // The connection ends with the proposal: the lock goes with it.
        }
    }
    ProofTurn(const ProofTurn&) = delete;
    ProofTurn& operator=(const ProofTurn&) = delete;

private:
    static constexpr std::int64_t first_key = proof_lock_first_key;  // (lock.hpp: no session may take them)
    pqxx::connection& conn_;
    std::optional<std::int64_t> key_;
};

// Turns among the logins of this process: a login refused because the turns were taken is served
// before one that asks again right after its own proof (one agent proposing in a loop from two
// sessions took every turn for minutes, and the owner's proposals were all refused). A waiter that
// has not asked again within `window` (it gave up, or its session ended) is forgotten, so that it
// holds the turns back no longer than that. (A login: the identity under auth.mode pgrail, else the
// role.)
class ProofWaiters {
public:
    using Clock = std::chrono::steady_clock;
    static constexpr auto window = std::chrono::seconds(10);

    // Whether `login` may try for one of `turns` turns now: it is among the `turns` logins that
    // have waited longest, or fewer wait.
    bool may_try(const std::string& login, std::uint32_t turns, Clock::time_point now) {
        const std::lock_guard lock(mutex_);
        std::erase_if(waiting_, [&](const Waiter& waiter) { return now - waiter.last_refused > window; });
        const auto ahead = std::min<std::size_t>(turns, waiting_.size());
        return waiting_.size() < turns ||
               std::any_of(waiting_.begin(), waiting_.begin() + static_cast<std::ptrdiff_t>(ahead),
                           [&](const Waiter& waiter) { return waiter.login == login; });
    }
    void refused(const std::string& login, Clock::time_point now) {
        const std::lock_guard lock(mutex_);
        const auto found = std::find_if(waiting_.begin(), waiting_.end(),
                                        [&](const Waiter& waiter) { return waiter.login == login; });
        if (found != waiting_.end()) {
            found->last_refused = now;
        } else if (waiting_.size() < 1024) {
            waiting_.push_back({login, now});
        }
    }
    void served(const std::string& login) {
        const std::lock_guard lock(mutex_);
        std::erase_if(waiting_, [&](const Waiter& waiter) { return waiter.login == login; });
    }

private:
    struct Waiter {
        std::string login;
        Clock::time_point last_refused;
    };
    std::mutex mutex_;
    std::vector<Waiter> waiting_;  // in the order they were first refused
};

ProofWaiters& proof_waiters() {
    static ProofWaiters waiters;
    return waiters;
}

// A turn for `login`'s proof, after the logins that wait for one (ProofWaiters).
std::unique_ptr<ProofTurn> take_proof_turn(pqxx::connection& conn, std::uint32_t turns, const std::string& login) {
    auto& waiters = proof_waiters();
    const auto now = ProofWaiters::Clock::now();
    if (!waiters.may_try(login, turns, now)) {
        waiters.refused(login, now);
        throw MigrationError(sqlstate::lock_not_available,
                             "pgrail: another login's proposal waits for its turn to be proved; propose again in a "
                             "few seconds",
                             "", "Proposals are proved a few at a time, in turn among the logins that propose.");
    }
    try {
        auto turn = std::make_unique<ProofTurn>(conn, turns);
        waiters.served(login);
        return turn;
    } catch (const MigrationError& error) {
        if (error.sqlstate() == sqlstate::lock_not_available) waiters.refused(login, now);
        throw;
    }
}

// What the syntax cannot tell, read in the scratch copy's catalog right after the proposal's up
// script ran (before its transaction commits), as PostgreSQL resolved it there (after the pending
// migrations, with the runner's search_path). (pg_catalog spelled out: the script ran in this
// session.)
//
// - The types of the columns it added or created. Adding a column of a domain runs the domain's
//   default (any function, with the runner's rights), NOT NULL and CHECK over every existing row,
//   which the scratch copy has none of; a column of a row type, or a typed table, binds its table
//   to another table's (or type's) shape. Followed through domains' base types, array elements
//   and ranges.
// - A new column named like a function that takes the table's row: `t.name` called that function
//   (attribute notation) in every query, view body read anew and function that wrote it so, and
//   now reads the column instead, whatever the function decided (an access check, say).
// - A new table or index named like a relation or type of another schema: on a search_path that
//   finds the new one first, every name that meant the other now means it.
//
// None of them is approved without a person.
std::vector<ProposalFinding> catalog_findings(pqxx::transaction_base& tx, const Migration& migration) {
    static constexpr const char* query = R"(
WITH RECURSIVE chain(oid, kind, depth) AS (
    SELECT t.oid, t.typtype, 0 FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
  UNION ALL
    SELECT n.oid, n.typtype, c.depth OPERATOR(pg_catalog.+) 1 FROM chain c
      JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) c.oid
      JOIN pg_catalog.pg_type n ON n.oid OPERATOR(pg_catalog.=) ANY (ARRAY[t.typbasetype, t.typelem,
        (SELECT r.rngsubtype FROM pg_catalog.pg_range r WHERE r.rngtypid OPERATOR(pg_catalog.=) t.oid),
        (SELECT r.rngtypid FROM pg_catalog.pg_range r WHERE r.rngmultitypid OPERATOR(pg_catalog.=) t.oid)])
    WHERE c.depth OPERATOR(pg_catalog.<) 16)
SELECT pg_catalog.bool_or(kind OPERATOR(pg_catalog.=) 'c'), pg_catalog.bool_or(kind OPERATOR(pg_catalog.=) 'p'),
       pg_catalog.bool_or(kind OPERATOR(pg_catalog.=) 'd') FROM chain)";
    std::vector<ProposalFinding> out;
    const auto review = [&](const ScriptStatement& statement, const std::string& why) {
        out.push_back({"needs_review", "up", fmt::format("{} (line {}): {}", statement.tag, statement.line, why)});
    };
    for (const auto& statement : migration.up.statements) {
        const sql::Analysis analysis = sql::analyze(statement.text);
        if (analysis.error || analysis.statements.size() != 1) continue;  // (needs_review has it)
        const sql::SchemaChange& change = analysis.statements.front().change;
        for (const auto& object : analysis.statements.front().objects) {
            if (object.role != sql::ObjectRole::created || (object.kind != "table" && object.kind != "index")) continue;
            // Beside the new object's own entries (a table's relation and row type, an index's
            // relation), outside the system schemas: pg_catalog is searched first unless a path
            // names it later, information_schema is on no usual path. (Operators spelled out: the
            // proposal's script ran in this session, under the target's search_path.)
            const auto counted = tx.exec_params1(
                "SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                "        ON n.oid OPERATOR(pg_catalog.=) c.relnamespace "
                "        WHERE c.relname OPERATOR(pg_catalog.=) $1::pg_catalog.name "
                "          AND n.nspname OPERATOR(pg_catalog.<>) ALL ($2::pg_catalog.name[])), "
                "       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n "
                "        ON n.oid OPERATOR(pg_catalog.=) t.typnamespace "
                "        WHERE t.typname OPERATOR(pg_catalog.=) $1::pg_catalog.name "
                "          AND n.nspname OPERATOR(pg_catalog.<>) ALL ($2::pg_catalog.name[]))",
                object.name, "{pg_catalog,information_schema,pg_toast}");
            const auto others = counted[0].as<std::int64_t>() + counted[1].as<std::int64_t>() -
                                (object.kind == "table" ? 2 : 1);
            if (others > 0)
                review(statement, fmt::format("{} is also the name of a relation or type in another schema: where a "
                                              "search_path finds this one first, names that meant that one mean this "
                                              "one", object.name));
        }
        const bool adds = change.kind == sql::ChangeKind::add_column;
        if (adds) {
            for (const auto& column : change.columns) {
                // Outside the system schemas (a column named count is no capture of count(*));
                // callable with one argument (after defaults, or a VARIADIC one) that the row can
                // be: a composite (its own row type among them), a domain (over one), or a
                // pseudo-type (record, anyelement, a variadic "any" or anyarray ...): broader than
                // what PostgreSQL would pick, never narrower. (Operators spelled out: see above.)
                const auto captured = tx.exec_params(
                    "SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text FROM pg_catalog.pg_proc p "
                    "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace "
                    "JOIN pg_catalog.pg_type a ON a.oid OPERATOR(pg_catalog.=) p.proargtypes[0] "
                    "WHERE p.proname OPERATOR(pg_catalog.=) $1::pg_catalog.name "
                    "AND p.pronargs OPERATOR(pg_catalog.>=) 1 "
                    "AND (p.pronargs OPERATOR(pg_catalog.-) p.pronargdefaults OPERATOR(pg_catalog.<=) 1 "
                    "     OR p.provariadic OPERATOR(pg_catalog.<>) 0) "
                    "AND n.nspname OPERATOR(pg_catalog.<>) ALL ($2::pg_catalog.name[]) "
                    "AND a.typtype OPERATOR(pg_catalog.=) ANY ('{c,d,p}'::pg_catalog.\"char\"[]) "
                    "ORDER BY 1 LIMIT 1",
                    column, "{pg_catalog,information_schema}");
                if (!captured.empty())
                    review(statement, fmt::format("column {} takes the name of function {}: {}.{} called it (attribute "
                                                  "notation) and would read the column instead",
                                                  column, captured[0][0].as<std::string>(), change.table, column));
            }
        }
        if (!adds && change.kind != sql::ChangeKind::create_table) continue;
        const std::string table = sql::quote_qualified(change.schema, change.table);
        const auto typed = tx.exec_params(
            "SELECT pg_catalog.format_type(c.reloftype, NULL) FROM pg_catalog.pg_class c "
            "WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1::pg_catalog.text) "
            "AND c.reloftype OPERATOR(pg_catalog.<>) 0",
            table);
        if (!adds && !typed.empty()) {
            review(statement, fmt::format("{} is a typed table (OF {}): bound to that row type", table,
                                          typed[0][0].as<std::string>()));
            continue;
        }
        const auto columns = tx.exec_params(
            "SELECT a.attname::pg_catalog.text, a.atttypid::pg_catalog.int8, "
            "pg_catalog.format_type(a.atttypid, NULL) FROM pg_catalog.pg_attribute a "
            "WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1::pg_catalog.text) "
            "AND a.attnum OPERATOR(pg_catalog.>) 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum",
            table);
        std::size_t seen = 0;
        for (const auto& column : columns) {
            const auto name = column[0].as<std::string>();
            if (adds && std::find(change.columns.begin(), change.columns.end(), name) == change.columns.end()) continue;
            ++seen;
            const auto type = column[2].as<std::string>();
            const auto kinds = tx.exec_params1(query, column[1].as<std::int64_t>());
            if (!kinds[0].is_null() && kinds[0].as<bool>())
                review(statement, fmt::format("column {} is of a row type ({}): it binds the table to another "
                                              "table's or type's shape", name, type));
            else if (!kinds[1].is_null() && kinds[1].as<bool>())
                review(statement, fmt::format("column {} is of a pseudo-type ({})", name, type));
            else if (adds && !kinds[2].is_null() && kinds[2].as<bool>())
                review(statement, fmt::format("column {} is of a domain ({}): its default, NOT NULL and CHECK "
                                              "run over every existing row", name, type));
        }
        if (adds && seen != change.columns.size())
            review(statement, fmt::format("pgrail could not find its new columns in {} after the up script", table));
    }
    return out;
}

}  // namespace

Proposal Runner::propose(const std::string& name, const std::string& up_sql, const std::string& down_sql) {
    // Parse and check first: a script that does not parse is refused before anything is stored.
    Migration checked = proposal_migration("0", name, up_sql, down_sql);
    auto conn = detail::connect(options_.conninfo, options_.backstop_key_file);
    std::string actor;
    LedgerState ledger;
    std::vector<std::string> taken;
    std::int64_t waiting = 0;
    try {
        actor = actor_of(*conn, options_);
        ensure_proposals_table(*conn, options_);
        ledger = detail::read_ledger(*conn);
        pqxx::read_transaction tx(*conn);
        const auto existing = tx.exec_params(fmt::format("SELECT {} FROM pgrail.migration_proposals WHERE name = $1 "
                                                         "AND checksum = $2 ORDER BY proposed_at DESC LIMIT 1",
                                                         proposal_columns),
                                             name, checked.checksum);
        if (!existing.empty()) return proposal_from(existing[0]);
        for (const auto& row : tx.exec("SELECT version FROM pgrail.migration_proposals"))
            taken.push_back(row[0].as<std::string>());
        waiting = tx.exec_params1("SELECT count(*) FROM pgrail.migration_proposals WHERE proposed_by = $1 AND "
                                  "state = 'proposed'",
                                  actor)[0]
                      .as<std::int64_t>();
    } catch (...) {
        detail::rethrow_database_error("cannot read the proposed migrations");
    }
    // Every proposal is stored with its scripts: a proposer in a loop would grow the ledger for good.
    if (options_.proposals_waiting > 0 && waiting >= options_.proposals_waiting)
        throw MigrationError(sqlstate::program_limit_exceeded,
                             fmt::format("pgrail: {} proposals of yours wait for a decision already; ask an operator to "
                                         "approve or reject them before proposing more",
                                         waiting),
                             "", "An operator decides with pgrail migrate approve VERSION or reject VERSION.");
    for (const auto& migration : registry_->migrations()) taken.push_back(migration.version);
    for (const auto& file : registry_->invalid_files())
        if (file.version) taken.push_back(*file.version);
    for (const auto& applied : ledger.applied) taken.push_back(applied.version);

    Proposal proposal;
    proposal.version = next_proposal_version(std::chrono::system_clock::now(), taken);
    proposal.name = name;
    proposal.up_sql = up_sql;
    proposal.down_sql = down_sql;
    proposal.no_transaction = checked.up.no_transaction;
    proposal.checksum = checked.checksum;
    Migration migration = proposal_migration(proposal.version, name, up_sql, down_sql);
    // Structure checks and the lint catalogue (docs/lint.md): an unwaived lint warning or error
    // makes the proposal unclean, so auto_approve: clean leaves it to a person.
    auto findings = proposal_findings(migration);
    for (auto& finding : proposal_lint_findings(migration)) findings.push_back(std::move(finding));

    // The rollback proof, as `verify` gives it: the proposal after every registered migration,
    // and only when nothing of its scripts can reach beyond the scratch copy (they run as the
    // migrator before anyone has read them).
    const ScratchConfinement confinement = scratch_confinement(migration);
    if (confinement.refusal) {
        proposal.verification = fmt::format(
            "skipped: pgrail does not run these scripts before a person approves them: {}; an operator "
            "verifies it (pgrail migrate verify VERSION)",
            *confinement.refusal);
    } else {
        RunnerOptions verify_options = options_;
        verify_options.scratch_call_names = confinement.call_names;
        // Never the live rows: the scripts run with the migrator's rights, and a failure's message
        // (the agent's answer) may quote what they read.
        verify_options.verify_sample_rows = 0;
        // Bounded as a whole (RunnerOptions::proof_timeout): no one has read these scripts yet.
        verify_options.proof_bounds =
            RunnerOptions::ProofBounds{options_.proof_statement_timeout, options_.proof_timeout,
                                       options_.proof_max_scratch_bytes};
        verify_options.inspect_up = [&](pqxx::transaction_base& tx, const Migration& verified) {
            if (verified.version != proposal.version) return;
            for (auto& finding : catalog_findings(tx, verified)) findings.push_back(std::move(finding));
        };
        auto with_proposal = std::make_shared<const Registry>(registry_->with_migrations({migration}));
        Runner verifier(with_proposal, verify_options);
        const auto turn = take_proof_turn(*conn, std::max<std::uint32_t>(1, options_.proof_turns), actor);
        try {
            const auto results = verifier.verify(proposal.version);
            const auto result = std::find_if(results.begin(), results.end(),
                                             [&](const VerifyResult& r) { return r.version == proposal.version; });
            if (result == results.end()) {
                proposal.verification = "skipped: an earlier migration failed to verify";
            } else if (result->passed) {
                proposal.verification = "passed";
            } else {
                proposal.verification = detail::bounded_detail("failed: " + result->detail);
            }
        } catch (const MigrationError& error) {
            proposal.verification = detail::bounded_detail("skipped: " + error.message());
        }
    }
    proposal.findings = findings_json(findings);
    const bool auto_approved =
        options_.auto_approve == AutoApprove::clean && proposal_is_clean(proposal.findings, proposal.verification);
    proposal.state = auto_approved ? ProposalState::approved : ProposalState::proposed;
    proposal.proposed_by = actor;
    if (auto_approved) proposal.decided_by = "pgrail (auto_approve: clean)";

    try {
        pqxx::work tx(*conn);
        // Proposers (of every pgrail replica) take their versions one at a time.
        tx.exec0("LOCK TABLE pgrail.migration_proposals IN SHARE ROW EXCLUSIVE MODE");
        std::vector<std::string> now_taken = taken;
        for (const auto& row : tx.exec("SELECT version FROM pgrail.migration_proposals"))
            now_taken.push_back(row[0].as<std::string>());
        if (std::find(now_taken.begin(), now_taken.end(), proposal.version) != now_taken.end())
            proposal.version = next_proposal_version(std::chrono::system_clock::now(), now_taken);
        const auto row = tx.exec_params1(
            "INSERT INTO pgrail.migration_proposals (version, name, up_sql, down_sql, no_transaction, checksum, "
            "findings, verification, state, proposed_by, decided_by, decided_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, nullif($11, ''), "
            "CASE WHEN $11 = '' THEN NULL ELSE clock_timestamp() END) RETURNING proposed_at::text, "
            "coalesce(decided_at::text, '')",
            proposal.version, proposal.name, proposal.up_sql, proposal.down_sql, proposal.no_transaction,
            proposal.checksum, proposal.findings.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), proposal.verification, std::string(to_string(proposal.state)),
            proposal.proposed_by, proposal.decided_by);
        proposal.proposed_at = row[0].as<std::string>();
        proposal.decided_at = row[1].as<std::string>();
        detail::insert_event(tx, proposal.version, proposal.name, proposal.checksum, "proposed", true, actor, 0,
                             event_detail(proposal));
        if (auto_approved)
            detail::insert_event(tx, proposal.version, proposal.name, proposal.checksum, "approved", true,
                                 proposal.decided_by, 0, "auto_approve: clean (verified, no findings)");
        tx.commit();
    } catch (...) {
        detail::rethrow_database_error("cannot store the proposed migration");
    }
    audit_proposal(options_, proposal, "proposed", actor);
    if (auto_approved) audit_proposal(options_, proposal, "approved", proposal.decided_by);
    return proposal;
}

namespace {

Proposal decide(const RunnerOptions& options, const std::string& version_text, bool approve,
                const std::string& reason) {
    const auto version = canonical_version(version_text);
    if (!version)
        throw MigrationError(sqlstate::invalid_parameter_value,
                             fmt::format("pgrail: invalid migration version \"{}\"", version_text));
    if (!approve && reason.empty())
        throw MigrationError(sqlstate::invalid_parameter_value, "pgrail: a rejection needs a reason", "",
                             "e.g. SELECT * FROM pgrail.reject_migration('<version>', 'why')");
    auto conn = detail::connect(options.conninfo, options.backstop_key_file);
    // A rejection waits for a run under way (at most lock_wait): a no-transaction script's
    // statements commit as they run, so a rejection may not land between them; after the run it
    // finds the migration applied, and says so.
    std::optional<detail::AdvisoryLock> lock;
    if (!approve) lock.emplace(*conn, options.lock_wait, options.abandoned);
    Proposal proposal;
    std::string actor;
    try {
        actor = actor_of(*conn, options);
        ensure_proposals_table(*conn, options);
        pqxx::work tx(*conn);
        auto found = find_proposal(tx, *version, true);
        if (!found)
            throw MigrationError(sqlstate::invalid_parameter_value,
                                 fmt::format("pgrail: no proposed migration with version {}", *version), "",
                                 "pgrail migrate proposals (CLI) lists them.");
        proposal = std::move(*found);
        if (approve && proposal.state != ProposalState::proposed)
            throw MigrationError(sqlstate::object_not_in_prerequisite_state,
                                 fmt::format("pgrail: proposal {} ({}) is already {}", proposal.version, proposal.name,
                                             to_string(proposal.state)));
        if (!approve) {
            if (proposal.state == ProposalState::rejected)
                throw MigrationError(
                    sqlstate::object_not_in_prerequisite_state,
                    fmt::format("pgrail: proposal {} ({}) is already rejected", proposal.version, proposal.name));
            const bool applied =
                tx.exec_params1("SELECT EXISTS (SELECT 1 FROM pgrail.schema_migrations WHERE version = $1)",
                                proposal.version)[0]
                    .as<bool>();
            if (applied)
                throw MigrationError(sqlstate::object_not_in_prerequisite_state,
                                     fmt::format("pgrail: migration {} ({}) is applied; roll it back before rejecting "
                                                 "it",
                                                 proposal.version, proposal.name),
                                     "", fmt::format("SELECT * FROM pgrail.migrate_down('{}')", proposal.version));
        }
        proposal.state = approve ? ProposalState::approved : ProposalState::rejected;
        proposal.decided_by = actor;
        proposal.reason = approve ? "" : reason;
        proposal.decided_at =
            tx.exec_params1("UPDATE pgrail.migration_proposals SET state = $2, decided_by = $3, "
                            "decided_at = clock_timestamp(), reason = nullif($4, '') WHERE version = $1 "
                            "RETURNING decided_at::text",
                            proposal.version, std::string(to_string(proposal.state)), actor, proposal.reason)[0]
                .as<std::string>();
        detail::insert_event(tx, proposal.version, proposal.name, proposal.checksum,
                             approve ? "approved" : "rejected", true, actor, 0,
                             approve ? std::string() : "reason: " + reason);
        tx.commit();
    } catch (...) {
        detail::rethrow_database_error(fmt::format("cannot {} the proposed migration", approve ? "approve" : "reject"));
    }
    audit_proposal(options, proposal, approve ? "approved" : "rejected", actor);
    return proposal;
}

}  // namespace

Proposal Runner::approve(const std::string& version) { return decide(options_, version, true, {}); }

Proposal Runner::reject(const std::string& version, const std::string& reason) {
    return decide(options_, version, false, reason);
}

}  // namespace pgrail::migrations

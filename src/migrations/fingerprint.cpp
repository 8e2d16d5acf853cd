// Schema fingerprints: the catalog described in sorted lines, recorded in the ledger, compared by status.
#include "pgrail/migrations/fingerprint.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "fingerprint_internal.hpp"
#include "internal.hpp"
#include "pgrail/migrations/registry.hpp"
#include "pgrail/migrations/runner.hpp"
#include "pgrail/migrations/schema_diff.hpp"
#include "pgrail/protocol/sqlstate.hpp"

namespace pgrail::migrations {

namespace {

// Lines of a description (sorted, '\n'-separated, no trailing newline).
std::vector<std::string_view> lines_of(std::string_view text) {
    std::vector<std::string_view> out;
    while (!text.empty()) {
        const auto eol = text.find('\n');
        out.push_back(text.substr(0, eol));
        if (eol == std::string_view::npos) break;
        text.remove_prefix(eol + 1);
    }
    return out;
}

bool valid_table_name(std::string_view name) {
    if (name.empty() || name.size() > 127) return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
               c == '$';
    });
}

// What a line is about: its kind and object name ("column public.profiles.timezone"), for the summary.
std::string object_of(std::string_view line) {
    const auto colon = line.find(": ");
    std::string_view head = line.substr(0, colon);
    // "column public.t.c text not null": kind and name are the first two words.
    const auto first = head.find(' ');
    if (first == std::string_view::npos) return std::string(head);
    const auto second = head.find(' ', first + 1);
    return std::string(head.substr(0, second));
}

// One name as format('%I') writes it, at `at` (moved past it); nothing when there is none.
std::optional<std::string> read_identifier(std::string_view line, std::size_t& at) {
    std::string name;
    if (at < line.size() && line[at] == '"') {
        for (++at; at < line.size(); ++at) {
            if (line[at] != '"') {
                name += line[at];
            } else if (at + 1 < line.size() && line[at + 1] == '"') {
                name += '"';
                ++at;
            } else {
                ++at;
                return name;
            }
        }
        return std::nullopt;  // unterminated
    }
    while (at < line.size() && line[at] != '.' && line[at] != ' ' && line[at] != ':' && line[at] != '(') name += line[at++];
    if (name.empty()) return std::nullopt;
    return name;
}

std::string objects_text(const std::vector<std::string>& lines, std::size_t max = 8) {
    std::vector<std::string> objects;
    for (const auto& line : lines) {
        auto object = object_of(line);
        if (std::find(objects.begin(), objects.end(), object) == objects.end()) objects.push_back(std::move(object));
    }
    std::string out;
    for (std::size_t index = 0; index < objects.size() && index < max; ++index)
        out += fmt::format("{}{}", index ? ", " : "", objects[index]);
    if (objects.size() > max) out += fmt::format(" and {} more", objects.size() - max);
    return out;
}

// One catalog query. Every line starts with the object's kind and qualified name; lines are
// sorted bytewise, so the same schema always gives the same text. Column lines follow name
// order, not attnum: a column dropped and added again is the same schema.
constexpr const char* description_sql = R"SQL(
WITH ns AS (
  SELECT oid, nspname FROM pg_namespace
  WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pgrail', 'pgrail_backstop', 'pg_toast')
    AND nspname !~ '^pg_(toast_)?temp_'
),
excluded_names AS (
  SELECT btrim(name) AS name FROM unnest(string_to_array($1, ',')) AS name WHERE btrim(name) <> ''
),
excluded AS (
  SELECT c.oid FROM pg_class c JOIN ns n ON n.oid = c.relnamespace
  WHERE c.relname IN (SELECT name FROM excluded_names) OR n.nspname || '.' || c.relname IN (SELECT name FROM excluded_names)
),
rel AS (
  SELECT c.oid, c.relkind, c.relrowsecurity, format('%I.%I', n.nspname, c.relname) AS qname
  FROM pg_class c JOIN ns n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND c.relpersistence <> 't'
    AND c.oid NOT IN (SELECT oid FROM excluded)
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.refobjid IN (SELECT oid FROM excluded)
                    AND d.deptype IN ('a', 'i'))
),
lines AS (
  SELECT format('schema %I', nspname) AS line FROM ns
  UNION ALL
  SELECT CASE r.relkind WHEN 'r' THEN 'table ' WHEN 'p' THEN 'table ' WHEN 'v' THEN 'view ' WHEN 'm' THEN 'matview '
                        WHEN 'S' THEN 'sequence ' WHEN 'f' THEN 'foreign_table ' ELSE 'composite_type ' END || r.qname
         || CASE WHEN r.relkind = 'p' THEN ' partitioned' ELSE '' END
         || CASE WHEN r.relrowsecurity THEN ' row_level_security' ELSE '' END
         || CASE WHEN r.relkind IN ('v', 'm') THEN ': ' || regexp_replace(pg_get_viewdef(r.oid), '\s+', ' ', 'g')
                 WHEN r.relkind = 'S' THEN coalesce((SELECT ': ' || format_type(s.seqtypid, NULL) || ' increment '
                                                     || s.seqincrement FROM pg_sequence s WHERE s.seqrelid = r.oid), '')
                 ELSE '' END
  FROM rel r
  UNION ALL
  SELECT 'column ' || r.qname || '.' || quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
         || CASE WHEN a.attnotnull THEN ' not null' ELSE ' null' END
         || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
         || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
         || CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END
  FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE r.relkind <> 'S'
  UNION ALL
  SELECT 'constraint ' || r.qname || '.' || quote_ident(co.conname) || ': ' || pg_get_constraintdef(co.oid)
  FROM pg_constraint co JOIN rel r ON r.oid = co.conrelid
  UNION ALL
  SELECT 'index ' || format('%I.%I', n.nspname, ic.relname) || ': ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN rel r ON r.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = ic.relnamespace
  UNION ALL
  SELECT 'trigger ' || r.qname || '.' || quote_ident(t.tgname) || ': ' || pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN rel r ON r.oid = t.tgrelid WHERE NOT t.tgisinternal
  UNION ALL
  SELECT 'policy ' || r.qname || '.' || quote_ident(p.polname) || ': ' || p.polcmd::text || ' '
         || coalesce(pg_get_expr(p.polqual, p.polrelid), '') || ' / ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
  FROM pg_policy p JOIN rel r ON r.oid = p.polrelid
  UNION ALL
  SELECT 'function ' || format('%I.%I', n.nspname, p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')'
         || coalesce(' returns ' || pg_get_function_result(p.oid), '') || ' kind ' || p.prokind::text
         || ' body md5 ' || md5(coalesce(p.prosrc, ''))
  FROM pg_proc p JOIN ns n ON n.oid = p.pronamespace
  UNION ALL
  SELECT 'type ' || format('%I.%I', n.nspname, t.typname)
         || CASE t.typtype
              WHEN 'e' THEN ' enum (' || coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                                   FROM pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
              WHEN 'd' THEN ' domain over ' || format_type(t.typbasetype, t.typtypmod)
                            || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END
                            || coalesce(' default ' || t.typdefault, '')
              WHEN 'r' THEN ' range' WHEN 'm' THEN ' multirange' ELSE ' ' || t.typtype::text END
  FROM pg_type t JOIN ns n ON n.oid = t.typnamespace WHERE t.typtype IN ('e', 'd', 'r')
  UNION ALL
  SELECT 'constraint ' || format('%I.%I', n.nspname, t.typname) || '.' || quote_ident(co.conname) || ': '
         || pg_get_constraintdef(co.oid)
  FROM pg_constraint co JOIN pg_type t ON t.oid = co.contypid JOIN ns n ON n.oid = t.typnamespace
)
-- A line is one object: a newline inside one (a default 'a' || E'\n', a CHECK's constant) is
-- written \n, or it would split the line and leave the pieces out of order.
SELECT coalesce(string_agg(one, E'\n' ORDER BY one COLLATE "C"), '')
FROM (SELECT replace(line, E'\n', E'\\n') AS one FROM lines) AS escaped
)SQL";

}  // namespace

std::string excluded_list(const std::vector<std::string>& tables) {
    std::vector<std::string> names;
    for (const auto& table : tables)
        if (valid_table_name(table) && std::find(names.begin(), names.end(), table) == names.end())
            names.push_back(table);
    std::sort(names.begin(), names.end());
    std::string out;
    for (const auto& name : names) out += fmt::format("{}{}", out.empty() ? "" : ",", name);
    return out;
}

std::optional<std::pair<std::string, std::string>> fingerprint_subject(std::string_view line) {
    std::size_t at = line.find(' ');
    if (at == std::string_view::npos) return std::nullopt;
    ++at;
    auto schema = read_identifier(line, at);
    if (!schema || at >= line.size() || line[at] != '.') return std::nullopt;
    ++at;
    auto name = read_identifier(line, at);
    if (!name) return std::nullopt;
    return std::pair{std::move(*schema), std::move(*name)};
}

std::vector<std::string> lines_missing_from(std::string_view description, std::string_view other) {
    const auto mine = lines_of(description);
    const auto theirs = lines_of(other);
    std::vector<std::string> out;
    // Both are sorted bytewise (COLLATE "C"), so one merge pass finds the difference.
    std::size_t j = 0;
    for (const auto line : mine) {
        while (j < theirs.size() && theirs[j] < line) ++j;
        if (j < theirs.size() && theirs[j] == line) {
            ++j;
            continue;
        }
        out.emplace_back(line);
    }
    return out;
}

SchemaChange change_between(std::string_view before, std::string_view after) {
    return {lines_missing_from(after, before), lines_missing_from(before, after)};
}

std::string moved_description(std::string_view baseline, const SchemaChange& change) {
    // Every input is sorted bytewise (std::string's order is unsigned bytes, as COLLATE "C").
    std::vector<std::string_view> removed(change.removed.begin(), change.removed.end());
    std::vector<std::string_view> added(change.added.begin(), change.added.end());
    std::sort(removed.begin(), removed.end());
    std::sort(added.begin(), added.end());
    const auto lines = lines_of(baseline);
    std::vector<std::string_view> kept;
    std::set_difference(lines.begin(), lines.end(), removed.begin(), removed.end(), std::back_inserter(kept));
    std::vector<std::string_view> moved;
    std::set_union(kept.begin(), kept.end(), added.begin(), added.end(), std::back_inserter(moved));
    std::string out;
    for (const auto line : moved) {
        if (!out.empty()) out += '\n';
        out += line;
    }
    return out;
}

std::vector<std::string> names_of_line(std::string_view line) {
    std::vector<std::string> names;
    if (line.starts_with("schema ")) {
        std::size_t at = 7;
        if (auto name = read_identifier(line, at)) names.push_back(std::move(*name));
        return names;
    }
    auto subject = fingerprint_subject(line);
    if (!subject) return names;
    names.push_back(subject->second);
    if (line.starts_with("index ")) {
        // "index s.i: CREATE [UNIQUE] INDEX i ON [ONLY] s.t USING ...": the table is named too.
        std::size_t at = line.find(" INDEX ");
        if (at != std::string_view::npos) {
            at += 7;
            if (line.substr(at).starts_with("CONCURRENTLY ")) at += 13;
            if (read_identifier(line, at) && line.substr(at).starts_with(" ON ")) {
                at += 4;
                if (line.substr(at).starts_with("ONLY ")) at += 5;
                if (read_identifier(line, at) && at < line.size() && line[at] == '.') {
                    ++at;
                    if (auto table = read_identifier(line, at)) names.push_back(std::move(*table));
                }
            }
        }
    } else if (line.starts_with("sequence ") && subject->second.ends_with("_seq")) {
        // An implicit sequence is named table_column_seq: each prefix before an underscore may be the table.
        const std::string& name = subject->second;
        for (std::size_t at = name.find('_'); at != std::string::npos; at = name.find('_', at + 1))
            if (at > 0) names.push_back(name.substr(0, at));
    }
    return names;
}

std::string SchemaDrift::detail() const {
    if (!error.empty()) return fmt::format("the live schema could not be compared with the ledger: {}", error);
    if (!drifted) return {};
    std::string text = fmt::format(
        "the live schema no longer matches the fingerprint recorded after {} ({}, by {}): ", reason, recorded_at,
        recorded_by);
    if (!added.empty()) text += fmt::format("not in the ledger's schema: {}", objects_text(added));
    if (!removed.empty())
        text += fmt::format("{}changed or gone since: {}", added.empty() ? "" : "; ", objects_text(removed));
    text += ". Ways out: register a migration that explains the change (`pgrail migrate resolve --accept-schema` "
            "once it is recorded as applied), undo the change by hand, or accept the live schema as it is with "
            "`pgrail migrate resolve --accept-schema` (docs/migrations.md, Schema drift)\n";
    text += diff;
    return text;
}

namespace detail {

void ensure_fingerprint_table(pqxx::transaction_base& tx) {
    const auto row = tx.exec1(
        "SELECT to_regclass('pgrail.schema_fingerprints') IS NULL, "
        "to_regprocedure('pgrail_backstop.guard_ledger()') IS NOT NULL");
    if (!row[0].as<bool>()) return;
    tx.exec0(R"(CREATE TABLE pgrail.schema_fingerprints (
            id          bigserial PRIMARY KEY,
            at          timestamptz NOT NULL DEFAULT clock_timestamp(),
            by          text NOT NULL,
            reason      text NOT NULL,
            version     text,
            excluded    text NOT NULL DEFAULT '',
            sha256      text NOT NULL,
            description text NOT NULL))");
    if (row[1].as<bool>()) tx.exec0(ledger_guard_sql("pgrail.schema_fingerprints"));
}

std::string live_schema_description(pqxx::transaction_base& tx, const std::string& excluded) {
    return tx.exec_params1(description_sql, excluded)[0].as<std::string>();
}

std::string fingerprint_exclusions(pqxx::transaction_base& tx, const std::vector<std::string>& tables) {
    std::string excluded = excluded_list(tables);
    if (excluded.empty()) {
        const auto previous = tx.exec("SELECT excluded FROM pgrail.schema_fingerprints ORDER BY id DESC LIMIT 1");
        if (!previous.empty()) excluded = previous[0][0].as<std::string>();
    }
    return excluded;
}

void record_fingerprint(pqxx::transaction_base& tx, const std::string& reason, const std::string& version,
                        const std::string& by, const std::vector<std::string>& tables,
                        const std::optional<SchemaChange>& change) {
    const std::string excluded = fingerprint_exclusions(tx, tables);
    std::optional<std::string> moved;
    if (change) {
        // The previous baseline moved by the change alone (read with the same exclusions: else
        // it cannot be moved line by line, and the live schema is recorded).
        const auto previous =
            tx.exec("SELECT excluded, description FROM pgrail.schema_fingerprints ORDER BY id DESC LIMIT 1");
        if (!previous.empty() && previous[0][0].as<std::string>() == excluded)
            moved = moved_description(previous[0][1].as<std::string>(), *change);
    }
    const std::string description = moved ? std::move(*moved) : live_schema_description(tx, excluded);
    tx.exec_params0("INSERT INTO pgrail.schema_fingerprints (by, reason, version, excluded, sha256, description) "
                    "VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6)",
                    by, reason, version, excluded, sha256_hex(description), description);
}

SchemaDrift read_schema_drift(pqxx::connection& conn) {
    SchemaDrift drift;
    try {
        pqxx::read_transaction tx(conn);
        if (tx.exec1("SELECT to_regclass('pgrail.schema_fingerprints') IS NULL")[0].as<bool>()) return drift;
        const auto baseline = tx.exec(
            "SELECT at::text, by, reason, excluded, sha256, description FROM pgrail.schema_fingerprints "
            "ORDER BY id DESC LIMIT 1");
        if (baseline.empty()) return drift;
        const auto& row = baseline[0];
        drift.recorded_at = row[0].as<std::string>();
        drift.recorded_by = row[1].as<std::string>();
        drift.reason = row[2].as<std::string>();
        drift.baseline_sha256 = row[4].as<std::string>();
        const std::string recorded = row[5].as<std::string>();
        const std::string live = live_schema_description(tx, row[3].as<std::string>());
        drift.checked = true;
        drift.live_sha256 = sha256_hex(live);
        if (drift.live_sha256 == drift.baseline_sha256) return drift;
        drift.drifted = true;
        drift.added = lines_missing_from(live, recorded);
        drift.removed = lines_missing_from(recorded, live);
        drift.diff = unified_diff(recorded, live, "schema recorded in the ledger", "live schema", 0);
    } catch (const std::exception& error) {
        drift = SchemaDrift{};
        drift.error = error.what();
    }
    return drift;
}

}  // namespace detail

SchemaDrift read_schema_drift(const std::string& conninfo) {
    try {
        auto conn = detail::connect(conninfo);
        return detail::read_schema_drift(*conn);
    } catch (const std::exception& error) {
        SchemaDrift drift;
        drift.error = error.what();
        return drift;
    }
}

SchemaDrift Runner::accept_schema() {
    auto conn = detail::connect(options_.conninfo, options_.backstop_key_file);
    std::string actor = options_.actor;
    SchemaDrift accepted;
    try {
        detail::AdvisoryLock lock(*conn, options_.lock_wait, options_.abandoned);
        detail::ensure_ledger(*conn);
        accepted = detail::read_schema_drift(*conn);
        if (!accepted.error.empty())
            throw MigrationError(sqlstate::internal_error, "cannot compare the live schema with the ledger",
                                 accepted.error);
        pqxx::work tx(*conn);
        if (actor.empty()) actor = tx.exec1("SELECT session_user::text")[0].as<std::string>();
        const std::string what =
            !accepted.checked ? "no fingerprint was recorded before: the live schema is the first baseline"
            : accepted.drifted ? fmt::format("accepted the live schema as the baseline; it differed from the one "
                                             "recorded after {} ({}):\n{}",
                                             accepted.reason, accepted.recorded_at, accepted.diff)
                               : "the live schema already matched the baseline: recorded again";
        detail::record_fingerprint(tx, "resolve --accept-schema", "", actor, options_.bookkeeping_tables);
        // The ledger's history says who accepted what (version "schema": no migration's).
        detail::insert_event(tx, "schema", "schema", accepted.live_sha256.empty() ? "" : accepted.live_sha256,
                             "resolved", true, actor, 0, what);
        tx.commit();
        if (options_.audit) {
            nlohmann::json record = {{"type", "migration"},   {"event", "resolved"},     {"version", "schema"},
                                     {"name", "schema"},      {"user", actor},           {"outcome", "ok"},
                                     {"detail", what},        {"checksum", accepted.live_sha256},
                                     {"duration_ms", 0}};
            (void)options_.audit(record);
        }
    } catch (...) {
        detail::rethrow_database_error("cannot accept the live schema");
    }
    return accepted;
}

}  // namespace pgrail::migrations

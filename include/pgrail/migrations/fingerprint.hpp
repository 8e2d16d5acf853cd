// Schema drift: a fingerprint of the schema pgrail manages, recorded in the ledger after every
// change pgrail records (apply, rollback, a migration tool's run, an accepted drift), and compared
// with the live schema by status (docs/migrations.md "Schema drift").
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgrail::migrations {

// The newest fingerprint of pgrail.schema_fingerprints compared with the live schema.
struct SchemaDrift {
    bool checked = false;    // a baseline exists and the live schema was read
    bool drifted = false;    // the live schema differs from the baseline
    std::string recorded_at;  // the baseline: when, by whom, after what (its `reason`)
    std::string recorded_by;
    std::string reason;
    std::string baseline_sha256;
    std::string live_sha256;
    std::vector<std::string> added;    // lines of the live description missing from the baseline
    std::vector<std::string> removed;  // lines of the baseline missing from the live schema
    std::string diff;                  // unified diff (baseline -> live), no context lines
    std::string error;                 // it could not be read: why (status still answers)

    // One paragraph for status outputs: what changed (objects named), when the baseline was
    // recorded, the ways out; then the diff. Empty when nothing is wrong.
    [[nodiscard]] std::string detail() const;
};

// The newest fingerprint of the ledger database at `conninfo` compared with its live schema (one
// catalog query); never throws (a failure is in `error`). For the log line at pgrail's start.
[[nodiscard]] SchemaDrift read_schema_drift(const std::string& conninfo);

// Bookkeeping tables of migration tools (the policy's `migrations.bookkeeping_tables`) are left
// out of the fingerprint; names are `table` (any schema) or `schema.table`, [A-Za-z0-9_.$] only.
// Returns the comma-joined list stored with a fingerprint (invalid names are dropped).
[[nodiscard]] std::string excluded_list(const std::vector<std::string>& tables);

// What a description's line is about: its schema and object (for a column, constraint, trigger
// or policy: the relation), names as format('%I') wrote them, unquoted; nothing for a schema's line.
[[nodiscard]] std::optional<std::pair<std::string, std::string>> fingerprint_subject(std::string_view line);

// The lines of a description that are not in `other` (both sorted as the catalog query sorts them).
[[nodiscard]] std::vector<std::string> lines_missing_from(std::string_view description, std::string_view other);

// What one step changed, as lines of the description.
struct SchemaChange {
    std::vector<std::string> added;
    std::vector<std::string> removed;
};
[[nodiscard]] SchemaChange change_between(std::string_view before, std::string_view after);

// `baseline` moved by `change`: its removed lines taken out, its added lines put in, sorted. A
// baseline moved by what a step changed keeps showing what changed around it as drift.
[[nodiscard]] std::string moved_description(std::string_view baseline, const SchemaChange& change);

// The names a line is about, to tell whether a run that names them made it: the object's (a
// column's, constraint's, trigger's or policy's table), an index's table too, and for a
// sequence named like an implicit one (table_column_seq) each name before an underscore.
[[nodiscard]] std::vector<std::string> names_of_line(std::string_view line);

}  // namespace pgrail::migrations

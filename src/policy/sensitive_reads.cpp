// The static half of sensitive_columns: match a statement's ranges and column reads (as the
// analyzer records them) against a rule's guarded relations. Conservative by construction: pgrail
// does not resolve scopes, so a name that may mean a guarded column counts as one.
#include "sensitive_reads.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <array>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "pgrail/sql/analyzer.hpp"

namespace pgrail::policy {

namespace {

using sql::ColumnRead;
using sql::RangeRead;

// Built-ins that read tables a value names (not the statement's text): pgrail cannot see which.
// cursor_to_xml reads a cursor whose query passed earlier, under mask with its values unmasked.
// Logical decoding of an existing slot returns the rows every table's changes wrote (a role with
// REPLICATION may read a CDC tool's slot), as a replication connection would. And, in whatever
// schema tablefunc was installed, its connectby(relname, ...).
constexpr std::array<std::string_view, 15> table_reading_functions = {
    "table_to_xml",    "table_to_xmlschema",    "table_to_xml_and_xmlschema",
    "schema_to_xml",   "schema_to_xmlschema",   "schema_to_xml_and_xmlschema",
    "database_to_xml", "database_to_xmlschema", "database_to_xml_and_xmlschema",
    "cursor_to_xml",   "cursor_to_xmlschema",
    "pg_logical_slot_get_changes", "pg_logical_slot_peek_changes",
    "pg_logical_slot_get_binary_changes", "pg_logical_slot_peek_binary_changes",
};

// A prepared statement run, or a cursor fetched, inside another statement (a DO block's EXECUTE
// 'FETCH ALL c'): its rows go to that statement, never through the masking on the wire.
bool runs_prepared_inside(const sql::Statement& statement) {
    return std::any_of(statement.inner.begin(), statement.inner.end(), [](const sql::Statement& inner) {
        return inner.tag == "EXECUTE" || inner.tag == "FETCH" || inner.tag == "MOVE" || runs_prepared_inside(inner);
    });
}

std::string qualified(const SensitiveRelation& relation, std::string_view column) {
    return relation.schema + "." + relation.name + "." + std::string(column);
}

// A function as the statement names it ("schema.name" or "name") split in two.
std::pair<std::string_view, std::string_view> split_function(std::string_view function) {
    const auto dot = function.rfind('.');
    if (dot == std::string_view::npos) return {{}, function};
    return {function.substr(0, dot), function.substr(dot + 1)};
}

class Matcher {
public:
    Matcher(const sql::Statement& statement, const SensitiveColumns& rule, const SensitiveSet& set)
        : statement_(statement), rule_(rule), set_(set) {}

    SensitiveReads run() {
        collect_ranges();
        collect_calls();
        if (out_.unresolved || (present_.empty() && out_.refused.empty())) return std::move(out_);
        for (const ColumnRead& read : statement_.column_reads) {
            on_read(read);
            if (read.output && read.kind == ColumnRead::Kind::star)
                first_star_ = std::min(first_star_, read.output_position);
        }
        for (const ColumnRead& read : statement_.column_reads) on_reference_to_output(read);
        if (work_ > max_work) {
            out_ = {};
            out_.unresolved = "it reads guarded relations too many times over to check within pgrail's bounds";
            return std::move(out_);
        }
        for (const Present& present : present_) {
            if (present.range->whole) refuse_all(*present.relation, "by COPY of every column");
            if (present.range->renamed) refuse_all(*present.relation, "under column aliases that rename its columns by position");
        }
        // Masked values are only what reaches the client: never a row a function returns (no
        // table OID in RowDescription) and never always-denied sample values.
        if (!out_.refused.empty()) out_.masked.clear();
        std::sort(out_.masked.begin(), out_.masked.end());
        out_.masked.erase(std::unique(out_.masked.begin(), out_.masked.end()), out_.masked.end());
        return std::move(out_);
    }

private:
    struct Present {
        const RangeRead* range;
        const SensitiveRelation* relation;
        bool through_function;
    };

    bool masks() const { return rule_.action == SensitiveAction::mask; }

    void collect_ranges() {
        for (const RangeRead& range : statement_.ranges) {
            if (range.function) {
                const SensitiveRowFunction* function = set_.find_function(range.schema, range.name);
                if (!function) continue;
                if (function->inside) {
                    for (const SensitiveRelation* relation : origin_of(*function))
                        refuse_all(*relation, "as whole rows that " + range.name + "() returns inside another type");
                    continue;
                }
                for (const SensitiveRelation* relation : origin_of(*function)) present_.push_back({&range, relation, true});
                continue;
            }
            for (const SensitiveRelation* relation : set_.find(range.schema, range.name))
                present_.push_back({&range, relation, false});
        }
        for (const Present& present : present_) {
            for (std::size_t index = 0; index < present.relation->columns.size(); ++index)
                names_[present.relation->columns[index]].push_back(&present);
            rows_[present.range->alias.empty() ? present.range->name : present.range->alias].push_back(&present);
            if (!present.range->alias.empty()) rows_[present.range->name].push_back(&present);
        }
    }

    // The guarded relation(s) a row-type function returns rows of.
    std::vector<const SensitiveRelation*> origin_of(const SensitiveRowFunction& function) const {
        std::vector<const SensitiveRelation*> relations;
        for (const SensitiveRelation& relation : set_.relations)
            if (relation.schema + "." + relation.name == function.origin) relations.push_back(&relation);
        return relations;
    }

    void collect_calls() {
        if (statement_.flags.ddl_capable_dynamic) {
            out_.unresolved = "it runs SQL that pgrail cannot read (dynamic EXECUTE, or a body in another language)";
            return;
        }
        // A prepared statement's rows are masked on their way to the client: run inside another
        // statement (CREATE TABLE ... AS EXECUTE, a DO block's EXECUTE 'EXECUTE p'), they are not.
        if (runs_prepared_inside(statement_)) {
            out_.unresolved = "it runs a prepared statement or fetches a cursor inside another, where its rows are "
                              "not masked";
            return;
        }
        for (const std::string& function : statement_.functions) {
            // (Not a structured binding: clang does not capture those in a lambda.)
            const auto split = split_function(function);
            const std::string_view schema = split.first;
            const std::string_view name = split.second;
            if (((schema.empty() || schema == "pg_catalog") &&
                 std::find(table_reading_functions.begin(), table_reading_functions.end(), name) !=
                     table_reading_functions.end()) ||
                name == "connectby") {
                out_.unresolved = std::string(name) + "() reads tables that a value names";
                return;
            }
        }
        // Called as a value (not only as the rows of a FROM item, whose columns are read as a
        // table's), a row-type function returns whole rows.
        for (const std::string& function : statement_.value_functions) {
            const auto split = split_function(function);
            if (const SensitiveRowFunction* row_function = set_.find_function(split.first, split.second))
                out_.refused.push_back({row_function->origin + ".*",
                                        "as whole rows that " + std::string(split.second) + "() returns", false});
        }
        // ... and so in attribute notation: `(1).f` and `t.f` are f(1) and f(t) where no column f is.
        for (const ColumnRead& read : statement_.column_reads) {
            if (!sql::may_call_by_attribute(read)) continue;
            if (const SensitiveRowFunction* row_function = set_.find_function({}, read.name))
                out_.refused.push_back({row_function->origin + ".*",
                                        "as whole rows that " + read.name + "() returns, in attribute notation",
                                        false});
        }
    }

    // Each guarded column is refused (or masked) once, however many reads and ranges reach it: a
    // statement of N aliases of a guarded table and N reads of its column made N*N records (review
    // 101: 2 GB from one 110 KB statement). The first read names the refusal.
    using ColumnKey = std::pair<const SensitiveRelation*, std::string_view>;
    struct ColumnKeyHash {
        std::size_t operator()(const ColumnKey& key) const {
            return std::hash<const void*>()(key.first) ^ std::hash<std::string_view>()(key.second);
        }
    };

    void refuse(const SensitiveRelation& relation, std::string_view column, std::string how, bool written = false) {
        if (!refused_keys_.insert({&relation, column}).second) return;
        out_.refused.push_back({qualified(relation, column), std::move(how), relation.always_deny, written});
    }

    void refuse(const Present& present, std::string_view column, std::string how) {
        refuse(*present.relation, column, std::move(how));
    }

    void refuse_all(const SensitiveRelation& relation, const std::string& how) {
        for (const auto& column : relation.columns) refuse(relation, column, how);
    }

    // A plain output column of a guarded relation: masked on the wire where the rule masks it and
    // the result names its table (not through a function), refused otherwise.
    void output(const Present& present, std::string_view column, const ColumnRead& read) {
        if (!masks() || present.relation->always_deny || present.through_function) {
            refuse(present, column, masks() ? "in a result that pgrail cannot mask (rows of a function or sample values)"
                                            : "in the result");
            return;
        }
        if (masked_keys_.insert({present.relation, column}).second)
            out_.masked.push_back(qualified(*present.relation, column));
        if (masked_outputs_.empty() || masked_outputs_.back() != &read) masked_outputs_.push_back(&read);
    }

    void on_read(const ColumnRead& read) {
        // Each kind of read visits at most every range (and each range's guarded columns).
        work_ += 1 + present_.size();
        if (work_ > max_work) return;
        switch (read.kind) {
            case ColumnRead::Kind::column: {
                if (const auto it = names_.find(read.name); it != names_.end()) {
                    for (const Present* present : it->second) {
                        if (read.output) {
                            output(*present, read.name, read);
                        } else {
                            refuse(*present, read.name, "in WHERE, ORDER BY, a join, an expression or a subquery");
                        }
                    }
                }
                // A bare name that is a guarded relation's (or its alias'): a whole row.
                if (read.qualifier.empty()) {
                    if (const auto it = rows_.find(read.name); it != rows_.end())
                        for (const Present* present : it->second)
                            for (const auto& column : present->relation->columns)
                                refuse(*present, column, "as part of a whole row (" + read.name + ")");
                } else if (const auto it = rows_.find(read.qualifier); it != rows_.end()) {
                    // `u.f` where u has no column f is f(u): a function of the whole row
                    // (`u.to_jsonb`, `u.row_to_json`), in attribute notation.
                    for (const Present* present : it->second) {
                        const auto& all = present->relation->all_columns;
                        if (all.empty() || std::find(all.begin(), all.end(), read.name) != all.end()) continue;
                        for (const auto& column : present->relation->columns)
                            refuse(*present, column,
                                   "as part of a whole row (" + read.qualifier + "." + read.name + " is " + read.name +
                                       "(" + read.qualifier + "))");
                    }
                }
                break;
            }
            case ColumnRead::Kind::star: {
                for (const Present& present : present_) {
                    const bool reached = read.qualifier.empty() ? present.range->level == read.level
                                                                : (read.qualifier == present.range->name ||
                                                                   read.qualifier == present.range->alias);
                    if (!reached) continue;
                    for (const auto& column : present.relation->columns) {
                        if (read.output) {
                            output(present, column, read);
                        } else {
                            refuse(present, column,
                                   "through " + (read.qualifier.empty() ? std::string("*") : read.qualifier + ".*") +
                                       " outside the result's own columns (RETURNING, a subquery, a function's "
                                       "argument)");
                        }
                    }
                }
                break;
            }
            case ColumnRead::Kind::field:
                if (const auto it = names_.find(read.name); it != names_.end())
                    for (const Present* present : it->second) refuse(*present, read.name, "selected from a row value");
                break;
            case ColumnRead::Kind::named:
                if (const auto it = names_.find(read.name); it != names_.end())
                    for (const Present* present : it->second)
                        refuse(*present, read.name, "named by USING, ON CONFLICT or COPY's column list");
                break;
            case ColumnRead::Kind::natural:
                for (const Present& present : present_)
                    if (present.range->level == read.level)
                        for (const auto& column : present.relation->columns)
                            refuse(present, column,
                                   read.name.empty() ? "compared by NATURAL JOIN"
                                                     : "compared by ON CONFLICT ON CONSTRAINT (name the columns "
                                                       "instead)");
                break;
            case ColumnRead::Kind::position:
                break;  // on_reference_to_output
            case ColumnRead::Kind::written:
                if (read.name == "*") {  // every column of the target the qualifier names
                    for (const Present& present : present_)
                        if (!present.through_function && present.range->level == read.level &&
                            (read.qualifier.empty() || read.qualifier == present.range->name ||
                             read.qualifier == present.range->alias))
                            for (const auto& column : present.relation->columns) refuse_write(present, column);
                } else if (const auto it = names_.find(read.name); it != names_.end()) {
                    for (const Present* present : it->second) refuse_write(*present, read.name);
                }
                break;
        }
    }

    void refuse_write(const Present& present, std::string_view column) {
        refuse(*present.relation, column,
               "written: a value stored beside the real ones reveals them, in the order an index returns rows or "
               "as an equal mask",
               true);
    }

    // ORDER BY / GROUP BY / DISTINCT ON that refer to a masked output by position or by its AS
    // name sort or group by the real values: refused.
    void on_reference_to_output(const ColumnRead& read) {
        if (masked_outputs_.empty()) return;
        work_ += 1 + masked_outputs_.size();
        if (work_ > max_work) return;
        for (const ColumnRead* masked : masked_outputs_) {
            bool refers = false;
            if (read.kind == ColumnRead::Kind::position && read.name == "*") {
                refers = true;  // a plain DISTINCT compares every output column
            } else if (read.kind == ColumnRead::Kind::position) {
                const auto position = static_cast<std::uint32_t>(std::strtoul(read.name.c_str(), nullptr, 10));
                if (masked->kind == ColumnRead::Kind::star) {
                    refers = position >= masked->output_position;
                } else if (first_star_ < masked->output_position) {
                    refers = position + 1 >= masked->output_position;
                } else {
                    refers = position == masked->output_position;
                }
            } else if (read.kind == ColumnRead::Kind::column && !read.output && read.qualifier.empty()) {
                refers = !masked->output_name.empty() && read.name == masked->output_name;
            }
            if (!refers) continue;
            out_.refused.push_back({out_.masked.front(),
                                    "by ORDER BY, GROUP BY, DISTINCT or DISTINCT ON of a masked result column", false});
            return;
        }
    }

    const sql::Statement& statement_;
    const SensitiveColumns& rule_;
    const SensitiveSet& set_;
    std::vector<Present> present_;
    std::unordered_map<std::string, std::vector<const Present*>> names_;  // guarded column name -> where
    std::unordered_map<std::string, std::vector<const Present*>> rows_;   // relation name or alias -> which
    std::vector<const ColumnRead*> masked_outputs_;
    std::unordered_set<ColumnKey, ColumnKeyHash> refused_keys_;
    std::unordered_set<ColumnKey, ColumnKeyHash> masked_keys_;
    // Steps of matching (a read against every range, a reference against every masked output):
    // past the bound run() refuses the statement whole, so that none holds an analysis thread for
    // long (review 101: minutes of CPU from one 330 KB statement).
    static constexpr std::size_t max_work = 4'000'000;
    std::size_t work_ = 0;
    // The first star of the result: a column after it stands at an unknown position (`x.*` may
    // stand for any number of columns, none for a table without columns).
    std::uint32_t first_star_ = std::numeric_limits<std::uint32_t>::max();
    SensitiveReads out_;
};

}  // namespace

SensitiveReads find_sensitive_reads(const sql::Statement& statement, const SensitiveColumns& rule,
                                    const SensitiveSet& set) {
    if (set.empty()) return {};
    return Matcher(statement, rule, set).run();
}

bool may_read_whole_rows(std::string_view view_definition) {
    const sql::Analysis analysis = sql::analyze(view_definition);
    if (analysis.error || analysis.statements.empty()) return true;
    for (const sql::Statement& statement : analysis.statements) {
        std::unordered_set<std::string> rows;
        for (const RangeRead& range : statement.ranges) {
            rows.insert(range.name);
            if (!range.alias.empty()) rows.insert(range.alias);
        }
        for (const ColumnRead& read : statement.column_reads) {
            if (read.kind == ColumnRead::Kind::star) return true;
            if (read.kind == ColumnRead::Kind::column && read.qualifier.empty() && rows.contains(read.name)) return true;
        }
    }
    return false;
}

}  // namespace pgrail::policy

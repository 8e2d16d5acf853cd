// What verify measures in its scratch copy (verify_measure.cpp) and the opt-in row sample it
// loads into it (verify_sample.cpp). libpqxx types: internal to the migrations module.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include "pgrail/migrations/runner.hpp"

namespace pgrail::migrations::detail {

// The application's tables (ordinary tables and materialized views, outside the system schemas
// and pgrail's own) by oid, with their relfilenode: a rewrite gives a table a new one.
struct TableFile {
    std::string name;  // unqualified in schema public, else schema.table
    std::int64_t relfilenode = 0;
};
using TableFiles = std::map<std::int64_t, TableFile>;

[[nodiscard]] TableFiles table_files(pqxx::connection& conn);
// Tables present in both whose relfilenode changed, by name.
[[nodiscard]] std::vector<std::string> rewritten(const TableFiles& before, const TableFiles& after);
// The strongest relation lock this transaction's backend holds on each of `existing`, by name.
[[nodiscard]] std::vector<TableLock> held_locks(pqxx::transaction_base& tx, const TableFiles& existing);

// Copies at most options.verify_sample_rows rows of each table from the target (options.conninfo,
// one REPEATABLE READ READ ONLY snapshot) into the scratch database, row by row (COPY TO STDOUT
// streamed into COPY FROM STDIN, never a table in memory), never reading a column named in
// options.verify_exclude_columns. Problems with one table (a privilege, a constraint) skip its
// rows and are said in the notes; only a lost connection throws (MigrationError).
[[nodiscard]] VerifySample copy_sample(const RunnerOptions& options, const std::string& scratch_conninfo);

}  // namespace pgrail::migrations::detail

// Schema fingerprints in the ledger (fingerprint.cpp), for the runner and the external-run recorder.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include "pgrail/migrations/fingerprint.hpp"

namespace pgrail::migrations::detail {

// Creates pgrail.schema_fingerprints when missing (in ensure_ledger's transaction), with the
// backstop's write guard when the database has the backstop.
void ensure_fingerprint_table(pqxx::transaction_base& tx);

// The live schema's description: one catalog query, one sorted line per object (schemas, tables,
// columns with type, nullability and default, constraints, indexes, views, sequences, functions,
// types, triggers, policies) outside pg_catalog, information_schema, pgrail, pgrail_backstop and
// temporary schemas, without the `excluded` tables (excluded_list()) and what belongs to them.
std::string live_schema_description(pqxx::transaction_base& tx, const std::string& excluded);

// The exclusions a fingerprint recorded now uses: `tables` (excluded_list()), or when empty the
// previous baseline's.
std::string fingerprint_exclusions(pqxx::transaction_base& tx, const std::vector<std::string>& tables);

// Records a new baseline (in the caller's transaction: after a migration's statements, before its
// commit). With `change` (what the step itself changed), the previous baseline moved by it, so a
// change made around pgrail before the step stays schema drift; without one, or when there is no
// previous baseline or it was read with other exclusions, the live schema.
void record_fingerprint(pqxx::transaction_base& tx, const std::string& reason, const std::string& version,
                        const std::string& by, const std::vector<std::string>& tables,
                        const std::optional<SchemaChange>& change = std::nullopt);

// The newest baseline compared with the live schema (never throws: a failure is in `error`).
SchemaDrift read_schema_drift(pqxx::connection& conn);

}  // namespace pgrail::migrations::detail

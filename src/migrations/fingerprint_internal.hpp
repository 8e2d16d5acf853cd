// Schema fingerprints in the ledger (fingerprint.cpp), for the runner and the external-run recorder.
#pragma once

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

// Records the live schema as the new baseline (in the caller's transaction: after a migration's
// statements, before its commit). `tables` empty: the previous baseline's exclusions are kept.
void record_fingerprint(pqxx::transaction_base& tx, const std::string& reason, const std::string& version,
                        const std::string& by, const std::vector<std::string>& tables);

// The newest baseline compared with the live schema (never throws: a failure is in `error`).
SchemaDrift read_schema_drift(pqxx::connection& conn);

}  // namespace pgrail::migrations::detail

// verify's opt-in row sample: at most N rows of each table, from the target into the scratch copy.
//
// Rows stream one at a time from `COPY (SELECT ... LIMIT N) TO STDOUT` on the target into
// `COPY ... FROM STDIN` on the scratch copy (libpq's copy API: libpqxx 6 has no query COPY), so
// memory stays one row whatever the table. The scratch side runs with session_replication_role =
// replica where the role may set it (a superuser): foreign keys and triggers do not fire, so a
// sample of a child table need not find the rows it references in the parent's sample (which is
// not the whole table either). Without that privilege the tables are loaded in rounds, a table
// whose rows break a foreign key being retried after the others, and skipped (said in the notes)
// when it still fails: the sample is a best effort, the schema is what verify proves.
#include <libpq-fe.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>

#include <fmt/format.h>

#include "internal.hpp"
#include "pgrail/migrations/backstop.hpp"
#include "pgrail/protocol/sqlstate.hpp"
#include "pgrail/sql/quote.hpp"
#include "verify_measure.hpp"

namespace pgrail::migrations::detail {

namespace {

constexpr std::size_t max_notes = 20;

struct PgConnDeleter {
    void operator()(PGconn* conn) const { PQfinish(conn); }
};
struct PgResultDeleter {
    void operator()(PGresult* result) const { PQclear(result); }
};
using PgConn = std::unique_ptr<PGconn, PgConnDeleter>;
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

std::string trimmed(std::string text) {
    for (const char* prefix : {"ERROR:  ", "FATAL:  "})
        if (text.starts_with(prefix)) text.erase(0, std::char_traits<char>::length(prefix));
    const auto eol = text.find('\n');
    if (eol != std::string::npos) text.erase(eol);
    return text;
}

PgConn open(const std::string& conninfo, const char* what) {
    PgConn conn(PQconnectdb(conninfo.c_str()));
    if (!conn)
        throw MigrationError(sqlstate::connection_failure,
                             fmt::format("cannot connect to {} for the verify sample: out of memory", what));
    if (PQstatus(conn.get()) != CONNECTION_OK)
        throw MigrationError(sqlstate::connection_failure, fmt::format("cannot connect to {} for the verify sample: {}",
                                                                       what, trimmed(PQerrorMessage(conn.get()))));
    return conn;
}

// A statement that must succeed; a failure here means the connection or the session is unusable.
void must(PGconn* conn, const std::string& sql) {
    PgResult result(PQexec(conn, sql.c_str()));
    const auto status = PQresultStatus(result.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
        throw MigrationError(sqlstate::internal_error, fmt::format("verify sample: {}", trimmed(PQerrorMessage(conn))));
}

// Empty when it succeeded; else "<sqlstate> <message>".
struct Outcome {
    bool ok = true;
    std::string sqlstate;
    std::string message;
};

Outcome outcome_of(PGconn* conn, PGresult* result, ExecStatusType expected) {
    if (result != nullptr && PQresultStatus(result) == expected) return {};
    const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
    const char* primary = result != nullptr ? PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    return {false, state != nullptr ? state : "", primary != nullptr ? primary : trimmed(PQerrorMessage(conn))};
}

// Reads the results a statement left until none is left (libpq requires it after COPY).
Outcome drain(PGconn* conn, ExecStatusType expected) {
    Outcome first;
    while (PGresult* raw = PQgetResult(conn)) {
        PgResult result(raw);
        const auto outcome = outcome_of(conn, result.get(), expected);
        if (first.ok && !outcome.ok) first = outcome;
    }
    return first;
}

struct Column {
    std::string name;
    bool excluded = false;
    bool required = false;  // NOT NULL without a default (or identity)
};

struct Table {
    std::string schema;
    std::string name;
    std::string display;
    std::vector<Column> columns;
    [[nodiscard]] std::string qualified() const {
        return sql::quote_identifier(schema) + "." + sql::quote_identifier(name);
    }
};

std::vector<Table> sample_tables(pqxx::connection& conn, const std::vector<std::string>& excluded) {
    const std::set<std::string> excluded_set(excluded.begin(), excluded.end());
    pqxx::nontransaction tx(conn);
    // Ordinary tables (partitions included, each with its own rows; a partitioned parent has no
    // rows of its own), not an extension's; generated columns are computed, never copied.
    const auto rows = tx.exec(fmt::format(
        "SELECT n.nspname, c.relname, a.attname, a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' "
        "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgrail', {}) "
        "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' "
        "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid "
        "AND d.deptype = 'e') "
        "ORDER BY n.nspname, c.relname, a.attnum",
        sql::quote_literal(backstop_schema)));
    std::vector<Table> tables;
    for (const auto& row : rows) {
        const auto schema = row[0].as<std::string>();
        const auto name = row[1].as<std::string>();
        if (tables.empty() || tables.back().schema != schema || tables.back().name != name)
            tables.push_back({schema, name, schema == "public" ? name : schema + "." + name, {}});
        const auto column = row[2].as<std::string>();
        tables.back().columns.push_back(
            {column, excluded_set.contains(schema + "." + name + "." + column), row[3].as<bool>()});
    }
    return tables;
}

struct CopyOutcome {
    Outcome outcome;
    std::int64_t rows = 0;
    bool source_failed = false;
};

// One table: COPY TO STDOUT on the target, streamed row by row into COPY FROM STDIN on the
// scratch copy, each side inside a savepoint so that a failure leaves both sessions usable.
CopyOutcome copy_table(PGconn* source, PGconn* scratch, const Table& table, const std::string& columns,
                       std::int64_t limit) {
    must(source, "SAVEPOINT pgrail_sample");
    must(scratch, "SAVEPOINT pgrail_sample");
    CopyOutcome out;
    const std::string read_sql =
        fmt::format("COPY (SELECT {} FROM ONLY {} LIMIT {}) TO STDOUT", columns, table.qualified(), limit);
    PgResult read(PQexec(source, read_sql.c_str()));
    out.outcome = outcome_of(source, read.get(), PGRES_COPY_OUT);
    if (!out.outcome.ok) {
        out.source_failed = true;
        must(source, "ROLLBACK TO SAVEPOINT pgrail_sample");
        must(scratch, "ROLLBACK TO SAVEPOINT pgrail_sample");
        return out;
    }
    const std::string write_sql = fmt::format("COPY {} ({}) FROM STDIN", table.qualified(), columns);
    PgResult write(PQexec(scratch, write_sql.c_str()));
    Outcome write_start = outcome_of(scratch, write.get(), PGRES_COPY_IN);
    bool write_failed = !write_start.ok;
    for (;;) {
        char* buffer = nullptr;
        const int n = PQgetCopyData(source, &buffer, 0);
        if (n < 0) break;  // -1: done, -2: error (the final result says which)
        if (!write_failed && PQputCopyData(scratch, buffer, n) != 1) write_failed = true;
        PQfreemem(buffer);
        ++out.rows;
    }
    const Outcome read_end = drain(source, PGRES_COMMAND_OK);
    Outcome write_end = write_start;
    if (write_start.ok) {
        PQputCopyEnd(scratch, read_end.ok ? nullptr : "the target's COPY failed");
        write_end = drain(scratch, PGRES_COMMAND_OK);
    }
    if (!read_end.ok) {
        out.outcome = read_end;
        out.source_failed = true;
    } else if (!write_end.ok) {
        out.outcome = write_end;
    }
    if (!out.outcome.ok) {
        out.rows = 0;
        must(source, "ROLLBACK TO SAVEPOINT pgrail_sample");
        must(scratch, "ROLLBACK TO SAVEPOINT pgrail_sample");
    } else {
        must(source, "RELEASE SAVEPOINT pgrail_sample");
        must(scratch, "RELEASE SAVEPOINT pgrail_sample");
    }
    return out;
}

void add_note(VerifySample& sample, std::string note) {
    if (sample.notes.size() < max_notes) sample.notes.push_back(std::move(note));
    else if (sample.notes.size() == max_notes) sample.notes.emplace_back("(more notes left out)");
}

}  // namespace

VerifySample copy_sample(const RunnerOptions& options, const std::string& scratch_conninfo) {
    VerifySample sample;
    sample.rows_per_table = std::clamp<std::int64_t>(options.verify_sample_rows, 0, max_verify_sample_rows);
    if (sample.rows_per_table == 0) return sample;

    std::vector<Table> tables;
    {
        auto catalog = connect(scratch_conninfo);
        try {
            tables = sample_tables(*catalog, options.verify_exclude_columns);
        } catch (...) {
            rethrow_database_error("cannot list the tables for the verify sample");
        }
    }
    PgConn source = open(options.conninfo, "the target");
    PgConn scratch = open(scratch_conninfo, "the scratch database");
    const std::string statement_timeout = fmt::format("SET LOCAL statement_timeout = '{}ms'",
                                                      options.statement_timeout.count());
    // One snapshot for every table: the samples are of the same moment.
    must(source.get(), "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    must(source.get(), statement_timeout);
    must(scratch.get(), "BEGIN");
    must(scratch.get(), statement_timeout);
    bool replica = false;
    {
        PgResult set(PQexec(scratch.get(), "SET LOCAL session_replication_role = replica"));
        replica = PQresultStatus(set.get()) == PGRES_COMMAND_OK;
        if (!replica) {
            // The failed SET aborted the transaction: start it again, without replica mode.
            must(scratch.get(), "ROLLBACK");
            must(scratch.get(), "BEGIN");
            must(scratch.get(), statement_timeout);
            add_note(sample, "foreign keys and triggers enforced (session_replication_role = replica needs a "
                             "superuser on the scratch server)");
        }
    }

    struct Pending {
        const Table* table;
        std::string columns;
    };
    std::vector<Pending> pending;
    for (const auto& table : tables) {
        std::string columns;
        std::vector<std::string> left_out;
        std::string blocking;
        for (const auto& column : table.columns) {
            if (column.excluded) {
                left_out.push_back(column.name);
                if (column.required && blocking.empty()) blocking = column.name;
                continue;
            }
            columns += (columns.empty() ? "" : ", ") + sql::quote_identifier(column.name);
        }
        if (!blocking.empty()) {
            add_note(sample, fmt::format("{}: no rows (excluded column {} is NOT NULL without a default)",
                                         table.display, blocking));
            continue;
        }
        if (columns.empty()) continue;  // nothing left to read (a table without columns, or all excluded)
        if (!left_out.empty()) {
            std::string names;
            for (const auto& name : left_out) names += (names.empty() ? "" : ", ") + name;
            add_note(sample, fmt::format("{}: excluded column{} {} left NULL or at the default", table.display,
                                         left_out.size() == 1 ? "" : "s", names));
        }
        pending.push_back({&table, std::move(columns)});
    }

    // Rounds: without replica mode a child table's rows may need its parent's first (23503).
    while (!pending.empty()) {
        std::vector<Pending> retry;
        std::vector<std::pair<const Table*, Outcome>> failed;
        for (auto& item : pending) {
            const auto copied =
                copy_table(source.get(), scratch.get(), *item.table, item.columns, sample.rows_per_table);
            if (copied.outcome.ok) {
                sample.rows += copied.rows;
                if (copied.rows > 0) ++sample.tables;
            } else if (!replica && !copied.source_failed &&
                       copied.outcome.sqlstate == sqlstate::foreign_key_violation) {
                failed.emplace_back(item.table, copied.outcome);
                retry.push_back(std::move(item));
            } else {
                add_note(sample, fmt::format("{}: no rows ({}{})", item.table->display,
                                             copied.source_failed ? "reading the target: " : "",
                                             copied.outcome.message));
            }
        }
        if (retry.size() == pending.size()) {  // no progress: they stay without rows
            for (const auto& [table, outcome] : failed)
                add_note(sample, fmt::format("{}: no rows ({})", table->display, outcome.message));
            break;
        }
        pending = std::move(retry);
    }
    must(scratch.get(), "COMMIT");
    must(source.get(), "ROLLBACK");
    return sample;
}

}  // namespace pgrail::migrations::detail

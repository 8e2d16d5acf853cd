// What pgrail knows of a database's catalog for sensitive_columns: its relations, their columns,
// inheritance, views' column dependencies and row-type functions (read on a connection of its
// own), what a rule's patterns guard in it (resolve_sensitive), and the registry that keeps one
// fresh snapshot per database for every session (SensitiveCatalogs).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pgrail/policy/sensitive.hpp"

namespace pgrail::proxy {

struct CatalogColumn {
    std::int16_t number = 0;  // pg_attribute.attnum (> 0)
    std::string name;
    std::uint32_t type_oid = 0;
};

struct CatalogRelation {
    std::uint32_t oid = 0;
    std::string schema;
    std::string name;
    char kind = 'r';  // pg_class.relkind: r, p, v, m, f
    std::uint32_t row_type = 0;  // pg_class.reltype
    std::vector<CatalogColumn> columns;  // by number; no dropped or system columns
    // Views and materialized views: pg_get_viewdef's text.
    std::string definition;
};

struct CatalogInheritance {
    std::uint32_t child = 0;
    std::uint32_t parent = 0;
};

// A view's (or materialized view's) dependency on a relation's column, from its rewrite rule;
// column 0: on the relation as a whole (recorded only where the view names none of its columns:
// `SELECT count(*) FROM users`, `SELECT row_to_json(u) FROM users u`).
struct CatalogViewDependency {
    std::uint32_t view = 0;
    std::uint32_t relation = 0;
    std::int16_t column = 0;
};

// A function whose result type is a relation's row type (RETURNS users, RETURNS SETOF users), or
// may hold one (a composite, domain, range or array type; OUT or TABLE columns).
struct CatalogRowFunction {
    std::string schema;
    std::string name;
    std::uint32_t row_type = 0;            // pg_proc.prorettype
    std::vector<std::uint32_t> out_types;  // the types of its OUT, INOUT and TABLE columns
};

// A type that holds values of another whole: an array of its elements, a domain over its base
// type, a range over its subtype (a multirange over its range), a composite type's attribute (a
// column of type `users` holds users' rows).
struct CatalogTypeLink {
    std::uint32_t type = 0;
    std::uint32_t holds = 0;
};

// One database's catalog as pgrail reads it. Plain data, immutable once loaded.
struct CatalogSnapshot {
    std::string database;
    // Every user-visible relation (no pg_toast, no pg_catalog or information_schema except
    // pg_catalog's statistics relations, whose sample values are always guarded).
    std::vector<CatalogRelation> relations;  // ascending oid: relation() searches it
    std::vector<CatalogInheritance> inheritance;
    std::vector<CatalogViewDependency> view_dependencies;
    std::vector<CatalogRowFunction> row_functions;
    std::vector<CatalogTypeLink> type_links;
    std::uint64_t version = 0;  // process-wide increasing: a later load has a larger version
    std::chrono::system_clock::time_point loaded_at;

    [[nodiscard]] const CatalogRelation* relation(std::uint32_t oid) const;
};

// Reads `database`'s catalog with `conninfo` (a URI or key=value string; its dbname is replaced by
// `database`), every query bounded by `timeout`, in one read-only REPEATABLE READ transaction.
// Throws std::runtime_error naming the database and what failed.
[[nodiscard]] CatalogSnapshot load_catalog(const std::string& conninfo, const std::string& database,
                                           std::chrono::milliseconds timeout);

// What `patterns` guard in `catalog` (pure): the relations whose columns they name (a pattern
// without schema: any schema), their partitions and inheritance children (the same columns by
// name), every view and materialized view that reads a guarded column, or reads anything of a
// guarded relation where policy::may_read_whole_rows says its definition may read whole rows
// (all of such a view's columns are guarded, to a fixed point: views on views), the functions
// that return a guarded relation's row type, every column whose type holds such a row type (a
// column of type `users`, `users[]` or a domain over it: review 99), and (whenever `patterns` is not empty) the sample
// values of pg_stats, pg_stats_ext, pg_stats_ext_exprs, pg_statistic and pg_statistic_ext_data
// (always_deny). Empty patterns: an empty set.
[[nodiscard]] policy::SensitiveSet resolve_sensitive(const CatalogSnapshot& catalog,
                                                     const policy::SensitiveColumns& patterns);

// Every database's current snapshot, shared by all sessions. Thread-safe.
class SensitiveCatalogs {
public:
    // `refresh`: a snapshot older than this is still served, and reloaded in the background.
    // `timeout`: bounds the connection and each query of a load.
    SensitiveCatalogs(std::string conninfo, std::chrono::milliseconds refresh, std::chrono::milliseconds timeout);
    ~SensitiveCatalogs();
    SensitiveCatalogs(const SensitiveCatalogs&) = delete;
    SensitiveCatalogs& operator=(const SensitiveCatalogs&) = delete;

    // `database`'s current snapshot. Loaded on the caller's thread the first time and after
    // invalidate() (so a statement never meets a catalog older than the last migration); a stale
    // one is returned and reloaded in the background. Null when it cannot be had: `error` (if
    // given) says why; a failed load is tried again at most once a second.
    [[nodiscard]] std::shared_ptr<const CatalogSnapshot> snapshot(const std::string& database, std::string* error);
    // The newest snapshot loaded of `database`, whatever its generation, never loading one: for
    // an I/O thread that needs the catalog a check it follows has read (that check read this
    // one or an older one). Null when none was ever loaded.
    [[nodiscard]] std::shared_ptr<const CatalogSnapshot> loaded_snapshot(const std::string& database);
    // Every snapshot is out of date (a migration applied, SIGHUP): the next snapshot() of each
    // database loads it afresh.
    void invalidate();
    // snapshot(database) would answer now, without a load on the caller's thread (one that may
    // wait up to the timeout): callers on an I/O thread go elsewhere when it is false.
    [[nodiscard]] bool ready(const std::string& database);

    // At most this many databases are followed (a client names its database before the server
    // authenticates it): beyond it, databases without a snapshot are forgotten first.
    static constexpr std::size_t max_databases = 256;

private:
    struct Entry {
        std::mutex load_mutex;  // one load at a time per database (waiters then see its result)
        // The rest under SensitiveCatalogs::mutex_.
        std::shared_ptr<const CatalogSnapshot> snapshot;
        std::uint64_t generation = 0;  // invalidate()'s generation the snapshot was loaded in
        std::chrono::steady_clock::time_point loaded;
        std::chrono::steady_clock::time_point last_attempt;
        bool failed = false;  // the last attempt failed
        std::uint64_t failed_generation = 0;
        std::string error;
        bool queued = false;  // a background reload is waiting or running
    };

    // Loads `database` now and records the outcome (caller holds entry.load_mutex, not mutex_).
    void load_into(const std::string& database, Entry& entry);
    void background();
    std::shared_ptr<Entry> entry_locked(const std::string& database, std::string* error);

    const std::string conninfo_;
    const std::chrono::milliseconds refresh_;
    const std::chrono::milliseconds timeout_;

    std::mutex mutex_;
    std::condition_variable wake_;
    std::map<std::string, std::shared_ptr<Entry>> entries_;
    std::uint64_t generation_ = 0;
    std::deque<std::string> queue_;  // databases to reload in the background
    bool stopping_ = false;
    std::thread worker_;  // started on the first background reload
};

}  // namespace pgrail::proxy

// sensitive_columns against a database's real catalog: the catalog read (its own connection, one
// read-only transaction), the resolution of a rule's patterns (pure), and the per-database registry
// shared by all sessions.
#include "pgrail/proxy/sensitive_catalog.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <stdexcept>
#include <tuple>
#include <unordered_map>

#include <fmt/format.h>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "pgrail/migrations/conninfo.hpp"
#include "pgrail/migrations/error.hpp"
#include "pgrail/policy/match.hpp"
#include "pgrail/proxy/metrics.hpp"

namespace pgrail::proxy {

namespace {

// pg_catalog's relations that hold sample values of other tables' columns, and those columns
// (PostgreSQL 15). Masking them is moot (a hash of a histogram bound says nothing useful and the
// plain value is the leak), so they are always refused under a rule with sensitive columns.
struct BuiltinSampleColumns {
    const char* relation;
    std::vector<const char*> columns;
};
const std::vector<BuiltinSampleColumns>& builtin_sample_columns() {
    static const std::vector<BuiltinSampleColumns> builtins = {
        {"pg_stats", {"most_common_vals", "histogram_bounds", "most_common_elems"}},
        {"pg_stats_ext", {"most_common_vals"}},
        {"pg_stats_ext_exprs", {"most_common_vals", "histogram_bounds", "most_common_elems"}},
        {"pg_statistic", {"stavalues1", "stavalues2", "stavalues3", "stavalues4", "stavalues5"}},
        {"pg_statistic_ext_data", {"stxdmcv", "stxdexpr"}},
    };
    return builtins;
}

// The relations a snapshot holds: every user-visible one, and pg_catalog's statistics relations.
// pg_toast (and pg_toast_temp_N) holds no relation a statement names; information_schema's views
// show metadata only.
constexpr const char* relation_filter =
    "c.relkind IN ('r', 'p', 'v', 'm', 'f') AND "
    "((n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%') OR "
    "(n.nspname = 'pg_catalog' AND c.relname IN ('pg_stats', 'pg_stats_ext', 'pg_stats_ext_exprs', "
    "'pg_statistic', 'pg_statistic_ext_data')))";

std::atomic<std::uint64_t> snapshot_versions{0};

// `conninfo` (URI or key=value) as key=value, with dbname replaced and a connect timeout and an
// application_name unless it sets them.
std::string catalog_conninfo(const std::string& conninfo, const std::string& database,
                             std::chrono::milliseconds timeout) {
    std::vector<migrations::ConninfoOption> options;
    try {
        options = migrations::parse_conninfo(conninfo);
    } catch (const migrations::MigrationError& e) {
        std::string reason = e.message();  // "invalid connection string: <libpq's words>"
        if (const auto colon = reason.find(": "); colon != std::string::npos) reason.erase(0, colon + 2);
        throw std::runtime_error(
            fmt::format("cannot read the catalog of database \"{}\": invalid conninfo: {}", database, reason));
    }
    std::erase_if(options, [](const auto& option) { return option.keyword == "dbname"; });
    // libpq counts whole seconds, at least 2.
    if (!migrations::sets(options, "connect_timeout"))
        options.push_back({"connect_timeout", std::to_string(std::max<long long>(2, (timeout.count() + 999) / 1000)), ""});
    if (!migrations::sets(options, "application_name")) options.push_back({"application_name", "pgrail catalog", ""});
    options.push_back({"dbname", database, ""});
    return migrations::conninfo_text(options);
}

std::string first_line(std::string_view text) {
    const auto end = text.find('\n');
    return std::string(text.substr(0, end));
}

std::string qualified(const CatalogRelation& relation) { return relation.schema + "." + relation.name; }

const char* kind_word(char kind) {
    switch (kind) {
        case 'v': return "view";
        case 'm': return "materialized view";
        case 'p': return "partitioned table";
        case 'f': return "foreign table";
        default: return "table";
    }
}

}  // namespace

const CatalogRelation* CatalogSnapshot::relation(std::uint32_t oid) const {
    const auto at = std::lower_bound(relations.begin(), relations.end(), oid,
                                     [](const CatalogRelation& relation, std::uint32_t key) { return relation.oid < key; });
    return at != relations.end() && at->oid == oid ? &*at : nullptr;
}

CatalogSnapshot load_catalog(const std::string& conninfo, const std::string& database,
                             std::chrono::milliseconds timeout) {
    const auto connection_string = catalog_conninfo(conninfo, database, timeout);
    CatalogSnapshot snapshot;
    snapshot.database = database;
    try {
        pqxx::connection conn(connection_string);
        // One consistent view of the catalog for every query below.
        pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(conn);
        tx.exec0(fmt::format("SET LOCAL statement_timeout = {}", timeout.count()));
        tx.exec0(fmt::format("SET LOCAL lock_timeout = {}", timeout.count()));
        // pg_get_viewdef locks what a view reads (AcquireRewriteLocks): a temporary view, which any
        // session may make and keep locked in an open transaction, would hold every load up to
        // the timeout. Its definition is left out, and it counts as reading whole rows (every
        // column of it guarded once it reads a guarded relation): a false refusal at worst.
        for (const auto& row : tx.exec(fmt::format(
                 "SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltype, "
                 "CASE WHEN c.relkind IN ('v', 'm') AND c.relpersistence <> 't' THEN pg_get_viewdef(c.oid) END "
                 "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {} ORDER BY c.oid",
                 relation_filter))) {
            CatalogRelation relation;
            relation.oid = row[0].as<std::uint32_t>();
            relation.schema = row[1].as<std::string>();
            relation.name = row[2].as<std::string>();
            relation.kind = row[3].as<std::string>().at(0);
            relation.row_type = row[4].as<std::uint32_t>();
            if (!row[5].is_null()) relation.definition = row[5].as<std::string>();
            snapshot.relations.push_back(std::move(relation));
        }
        for (const auto& row : tx.exec(fmt::format(
                 "SELECT a.attrelid, a.attnum, a.attname, a.atttypid FROM pg_attribute a "
                 "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE a.attnum > 0 AND NOT a.attisdropped AND {} ORDER BY a.attrelid, a.attnum",
                 relation_filter))) {
            const auto oid = row[0].as<std::uint32_t>();
            const auto relation = std::lower_bound(
                snapshot.relations.begin(), snapshot.relations.end(), oid,
                [](const CatalogRelation& item, std::uint32_t key) { return item.oid < key; });
            if (relation == snapshot.relations.end() || relation->oid != oid) continue;  // not in one snapshot
            relation->columns.push_back(
                {row[1].as<std::int16_t>(), row[2].as<std::string>(), row[3].as<std::uint32_t>()});
        }
        for (const auto& row : tx.exec("SELECT inhrelid, inhparent FROM pg_inherits ORDER BY 1, 2"))
            snapshot.inheritance.push_back({row[0].as<std::uint32_t>(), row[1].as<std::uint32_t>()});
        // A view's rewrite rule depends on each column it reads (refobjsubid > 0), on each relation
        // of its range table none of whose columns it names (refobjsubid 0), and on itself.
        for (const auto& row : tx.exec(fmt::format(
                 "SELECT DISTINCT r.ev_class, d.refobjid, d.refobjsubid FROM pg_rewrite r "
                 "JOIN pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid "
                 "AND d.refclassid = 'pg_catalog.pg_class'::regclass "
                 "JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE d.refobjid <> r.ev_class AND c.relkind IN ('v', 'm') AND {} ORDER BY 1, 2, 3",
                 relation_filter)))
            snapshot.view_dependencies.push_back(
                {row[0].as<std::uint32_t>(), row[1].as<std::uint32_t>(), row[2].as<std::int16_t>()});
        // Functions that may return a relation's rows: as their row type, or inside another type
        // (a composite, domain, range or array type, or OUT / TABLE columns: resolve_sensitive
        // decides which hold a guarded relation's).
        for (const auto& row : tx.exec(fmt::format(
                 "SELECT pn.nspname, p.proname, p.prorettype, "
                 "array_to_string(ARRAY(SELECT a.t FROM unnest(p.proallargtypes, p.proargmodes) AS a(t, m) "
                 "WHERE a.m IN ('o', 'b', 't')), ',') FROM pg_proc p "
                 "JOIN pg_namespace pn ON pn.oid = p.pronamespace JOIN pg_type rt ON rt.oid = p.prorettype "
                 "WHERE p.prorettype IN (SELECT c.reltype FROM pg_class c JOIN pg_namespace n ON "
                 "n.oid = c.relnamespace WHERE {}) OR (pn.nspname NOT IN ('pg_catalog', 'information_schema') "
                 "AND (rt.typtype IN ('c', 'd', 'r', 'm') OR rt.typelem <> 0 OR p.proallargtypes IS NOT NULL)) "
                 "ORDER BY 1, 2",
                 relation_filter))) {
            CatalogRowFunction function{row[0].as<std::string>(), row[1].as<std::string>(),
                                        row[2].as<std::uint32_t>(), {}};
            const auto types = row[3].as<std::string>("");
            for (std::size_t start = 0; start < types.size();) {
                const auto comma = std::min(types.find(',', start), types.size());
                function.out_types.push_back(static_cast<std::uint32_t>(std::stoul(types.substr(start, comma - start))));
                start = comma + 1;
            }
            snapshot.row_functions.push_back(std::move(function));
        }
        // Arrays, domains, ranges, multiranges and composite types (CREATE TYPE ... AS) over other types.
        for (const auto& row : tx.exec(
                 "SELECT t.oid, t.typelem FROM pg_type t WHERE t.typelem <> 0 AND t.typsubscript <> 0 "
                 "UNION ALL SELECT t.oid, t.typbasetype FROM pg_type t WHERE t.typtype = 'd' "
                 "UNION ALL SELECT r.rngtypid, r.rngsubtype FROM pg_range r "
                 "UNION ALL SELECT r.rngmultitypid, r.rngtypid FROM pg_range r "
                 "UNION ALL SELECT c.reltype, a.atttypid FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
                 "WHERE c.relkind = 'c' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2"))
            snapshot.type_links.push_back({row[0].as<std::uint32_t>(), row[1].as<std::uint32_t>()});
        tx.commit();
    } catch (const std::exception& error) {
        throw std::runtime_error(
            fmt::format("cannot read the catalog of database \"{}\": {}", database, first_line(error.what())));
    }
    snapshot.version = snapshot_versions.fetch_add(1, std::memory_order_relaxed) + 1;
    snapshot.loaded_at = std::chrono::system_clock::now();
    return snapshot;
}

policy::SensitiveSet resolve_sensitive(const CatalogSnapshot& catalog, const policy::SensitiveColumns& patterns) {
    policy::SensitiveSet set;
    if (patterns.patterns.empty()) return set;

    struct Guard {
        std::set<std::int16_t> numbers;
        std::string root;    // the table whose pattern started it: "public.users"
        std::string origin;  // for messages
        bool always_deny = false;
        bool whole = false;  // every column (a view)
    };
    std::map<std::uint32_t, Guard> guarded;

    // 1. The columns the patterns name. A pattern without schema does not reach pg_catalog: the
    // statistics relations are guarded by step 5 whatever the patterns say.
    for (const auto& relation : catalog.relations) {
        for (const auto& pattern : patterns.patterns) {
            if (pattern.schema.empty() ? relation.schema == "pg_catalog" : !policy::glob_match(pattern.schema, relation.schema))
                continue;
            if (!policy::glob_match(pattern.table, relation.name)) continue;
            for (const auto& column : relation.columns) {
                if (!policy::glob_match(pattern.column, column.name)) continue;
                auto& guard = guarded[relation.oid];
                if (guard.root.empty()) guard.root = guard.origin = qualified(relation);
                guard.numbers.insert(column.number);
            }
        }
    }
    // 5 (first, so views on them follow): pg_catalog's sample values.
    for (const auto& builtin : builtin_sample_columns()) {
        for (const auto& relation : catalog.relations) {
            if (relation.schema != "pg_catalog" || relation.name != builtin.relation) continue;
            auto& guard = guarded[relation.oid];
            guard.root = guard.origin = qualified(relation);
            guard.always_deny = true;
            for (const char* name : builtin.columns)
                for (const auto& column : relation.columns)
                    if (column.name == name) guard.numbers.insert(column.number);
        }
    }

    // 2-3. Partitions and inheritance children, views and materialized views, to a fixed point.
    std::unordered_map<std::uint32_t, bool> whole_rows;  // view oid -> may_read_whole_rows, computed once
    const auto reads_whole_rows = [&](const CatalogRelation& view) {
        const auto [at, inserted] = whole_rows.try_emplace(view.oid, false);
        if (inserted) at->second = policy::may_read_whole_rows(view.definition);
        return at->second;
    };
    // Guards `to`'s columns of the names `from` guards (the numbers differ after dropped columns
    // or for a partition built separately and attached).
    const auto guard_same_names = [&](const CatalogRelation& from, const CatalogRelation& to, const std::string& how) {
        std::set<std::string> names;
        const Guard source = guarded.at(from.oid);
        for (const auto& column : from.columns)
            if (source.numbers.contains(column.number)) names.insert(column.name);
        bool changed = false;
        for (const auto& column : to.columns) {
            if (!names.contains(column.name)) continue;
            auto& guard = guarded[to.oid];
            if (guard.root.empty()) {
                guard.root = source.root;
                guard.origin = fmt::format("{} (through {} {})", source.root, how, qualified(to));
                guard.always_deny = source.always_deny;
            }
            changed = guard.numbers.insert(column.number).second || changed;
        }
        return changed;
    };
    const auto propagate = [&] {
        for (bool changed = true; changed;) {
            changed = false;
            for (const auto& edge : catalog.inheritance) {
                const auto* parent = catalog.relation(edge.parent);
                const auto* child = catalog.relation(edge.child);
                if (parent == nullptr || child == nullptr) continue;
                // Down: a partition or child holds the parent's rows. Up: reading the parent reads
                // its partitions' and children's rows too.
                if (guarded.contains(parent->oid))
                    changed = guard_same_names(*parent, *child, parent->kind == 'p' ? "partition" : "inheritance child") ||
                              changed;
                if (guarded.contains(child->oid))
                    changed = guard_same_names(*child, *parent, parent->kind == 'p' ? "partitioned table" : "inheritance parent") ||
                              changed;
            }
            for (const auto& dependency : catalog.view_dependencies) {
                const auto* view = catalog.relation(dependency.view);
                // pg_catalog's views (pg_stats on pg_statistic) are guarded by name, column by column.
                if (view == nullptr || view->schema == "pg_catalog") continue;
                if (const auto at = guarded.find(view->oid); at != guarded.end() && at->second.whole) continue;
                const auto source_at = guarded.find(dependency.relation);
                if (source_at == guarded.end() || source_at->second.numbers.empty()) continue;
                // PostgreSQL records a whole-relation dependency only for a relation none of whose
                // columns the view names: `SELECT u.id, row_to_json(u) FROM users u` depends on id
                // alone. So any dependency on a guarded relation asks whether the view reads whole rows.
                const bool reads = (dependency.column != 0 && (source_at->second.whole ||
                                                               source_at->second.numbers.contains(dependency.column))) ||
                                   reads_whole_rows(*view);
                if (!reads) continue;
                const Guard source = source_at->second;
                auto& guard = guarded[view->oid];
                guard.root = source.root;
                guard.origin = fmt::format("{} (through {} {})", source.root, kind_word(view->kind), qualified(*view));
                guard.always_deny = guard.always_deny || source.always_deny;
                guard.whole = true;
                for (const auto& column : view->columns) guard.numbers.insert(column.number);
                changed = true;
            }
        }
    };
    propagate();

    // 6. Columns that hold a guarded relation's whole rows: of its row type, or of a type that
    // holds that (an array, a domain, a composite type's attribute), to a fixed point with 2-3:
    // `CREATE TABLE users_history (old users)` reads as users (review 99).
    // Each type that holds a guarded relation's rows -> that relation.
    const auto holding_types = [&] {
        std::unordered_map<std::uint32_t, const CatalogRelation*> held;
        for (const auto& [oid, guard] : guarded)
            if (const auto* relation = catalog.relation(oid); relation != nullptr && !guard.numbers.empty())
                held.emplace(relation->row_type, relation);
        for (bool grew = true; grew;) {
            grew = false;
            for (const auto& link : catalog.type_links)
                if (const auto at = held.find(link.holds); at != held.end() && !held.contains(link.type))
                    grew = held.emplace(link.type, at->second).second || grew;
        }
        return held;
    };
    for (bool changed = true; changed;) {
        changed = false;
        const auto held = holding_types();
        for (const auto& relation : catalog.relations) {
            for (const auto& column : relation.columns) {
                const auto at = held.find(column.type_oid);
                if (at == held.end()) continue;
                auto& guard = guarded[relation.oid];
                if (guard.root.empty()) {
                    const Guard& source = guarded.at(at->second->oid);
                    guard.root = source.root;
                    guard.origin = fmt::format("{} (through column {}.{} of its row type)", source.root,
                                               qualified(relation), column.name);
                    guard.always_deny = source.always_deny;
                }
                changed = guard.numbers.insert(column.number).second || changed;
            }
        }
        if (changed) propagate();
    }

    // The set, in a stable order (schema, name).
    std::vector<std::pair<const CatalogRelation*, const Guard*>> ordered;
    for (const auto& [oid, guard] : guarded) {
        const auto* relation = catalog.relation(oid);
        if (relation != nullptr && !guard.numbers.empty()) ordered.emplace_back(relation, &guard);
    }
    std::sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) {
        return std::tie(a.first->schema, a.first->name) < std::tie(b.first->schema, b.first->name);
    });
    for (const auto& [relation, guard] : ordered) {
        policy::SensitiveRelation out;
        out.oid = relation->oid;
        out.schema = relation->schema;
        out.name = relation->name;
        out.kind = relation->kind;
        out.origin = guard->origin;
        out.always_deny = guard->always_deny;
        for (const auto& column : relation->columns) {
            out.all_columns.push_back(column.name);
            if (!guard->numbers.contains(column.number)) continue;
            out.columns.push_back(column.name);
            out.numbers.push_back(column.number);
            set.keys[{relation->oid, column.number}] = set.relations.size();
        }
        set.relations.push_back(std::move(out));
    }

    // 4. Functions returning a guarded relation's row type.
    std::unordered_map<std::uint32_t, const policy::SensitiveRelation*> by_row_type;
    for (const auto& relation : set.relations)
        if (const auto* source = catalog.relation(relation.oid)) by_row_type.emplace(source->row_type, &relation);
    // ... or its rows inside another type (RETURNS users[], a domain or composite over it, OUT or
    // TABLE columns of it: review 102): whatever reads those reads whole rows.
    const auto held = holding_types();
    // The guarded relation (in the set) whose rows `type` holds, if any.
    const auto holder_of = [&](std::uint32_t type) -> const policy::SensitiveRelation* {
        const auto at = held.find(type);
        if (at == held.end()) return nullptr;
        const auto relation = by_row_type.find(at->second->row_type);
        return relation == by_row_type.end() ? nullptr : relation->second;
    };
    for (const auto& function : catalog.row_functions) {
        if (const auto at = by_row_type.find(function.row_type); at != by_row_type.end()) {
            // The relation itself ("schema.name"): what a read of the function's rows is matched as.
            set.row_functions.push_back({function.schema, function.name, at->second->schema + "." + at->second->name});
            continue;
        }
        const policy::SensitiveRelation* relation = holder_of(function.row_type);
        for (const std::uint32_t type : function.out_types)
            if (relation == nullptr) relation = holder_of(type);
        if (relation != nullptr)
            set.row_functions.push_back({function.schema, function.name, relation->schema + "." + relation->name, true});
    }
    return set;
}

SensitiveCatalogs::SensitiveCatalogs(std::string conninfo, std::chrono::milliseconds refresh,
                                     std::chrono::milliseconds timeout)
    : conninfo_(std::move(conninfo)), refresh_(refresh), timeout_(timeout) {}

SensitiveCatalogs::~SensitiveCatalogs() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (worker_.joinable()) worker_.join();
}

void SensitiveCatalogs::invalidate() {
    std::lock_guard lock(mutex_);
    ++generation_;
}

std::shared_ptr<SensitiveCatalogs::Entry> SensitiveCatalogs::entry_locked(const std::string& database,
                                                                          std::string* error) {
    if (const auto at = entries_.find(database); at != entries_.end()) return at->second;
    if (entries_.size() >= max_databases) {
        // Forget databases that never loaded (a name a client made up) before refusing.
        std::erase_if(entries_, [](const auto& item) { return item.second->snapshot == nullptr && !item.second->queued; });
        if (entries_.size() >= max_databases) {
            if (error != nullptr)
                *error = fmt::format("pgrail follows the catalogs of at most {} databases", max_databases);
            return nullptr;
        }
    }
    return entries_.emplace(database, std::make_shared<Entry>()).first->second;
}

bool SensitiveCatalogs::ready(const std::string& database) {
    std::lock_guard lock(mutex_);
    const auto at = entries_.find(database);
    if (at == entries_.end()) return false;
    const Entry& entry = *at->second;
    if (entry.snapshot != nullptr && entry.generation == generation_) return true;
    return entry.failed && entry.failed_generation == generation_ &&
           std::chrono::steady_clock::now() - entry.last_attempt < std::chrono::seconds(1);
}

std::shared_ptr<const CatalogSnapshot> SensitiveCatalogs::loaded_snapshot(const std::string& database) {
    std::lock_guard lock(mutex_);
    const auto at = entries_.find(database);
    return at == entries_.end() ? nullptr : at->second->snapshot;
}

std::shared_ptr<const CatalogSnapshot> SensitiveCatalogs::snapshot(const std::string& database, std::string* error) {
    using clock = std::chrono::steady_clock;
    std::shared_ptr<Entry> entry;
    {
        std::lock_guard lock(mutex_);
        entry = entry_locked(database, error);
        if (entry == nullptr) return nullptr;
        const auto now = clock::now();
        if (entry->snapshot != nullptr && entry->generation == generation_) {
            // Stale: served as it is, reloaded in the background (a failed reload waits a second).
            if (now - entry->loaded >= refresh_ && !entry->queued && !stopping_ &&
                now - entry->last_attempt >= std::chrono::seconds(1)) {
                entry->queued = true;
                queue_.push_back(database);
                if (!worker_.joinable()) worker_ = std::thread([this] { background(); });
                wake_.notify_one();
            }
            return entry->snapshot;
        }
        if (entry->failed && entry->failed_generation == generation_ &&
            now - entry->last_attempt < std::chrono::seconds(1)) {
            if (error != nullptr) *error = entry->error;
            return nullptr;
        }
    }
    // Loaded here, on the caller's thread; a concurrent caller waits for this load and uses it.
    std::lock_guard load_lock(entry->load_mutex);
    {
        std::lock_guard lock(mutex_);
        if (entry->snapshot != nullptr && entry->generation == generation_) return entry->snapshot;
        if (entry->failed && entry->failed_generation == generation_ &&
            clock::now() - entry->last_attempt < std::chrono::seconds(1)) {
            if (error != nullptr) *error = entry->error;
            return nullptr;
        }
    }
    load_into(database, *entry);
    std::lock_guard lock(mutex_);
    if (entry->snapshot != nullptr && !entry->failed) return entry->snapshot;
    if (error != nullptr) *error = entry->error;
    return nullptr;
}

void SensitiveCatalogs::load_into(const std::string& database, Entry& entry) {
    std::uint64_t generation = 0;
    {
        std::lock_guard lock(mutex_);
        generation = generation_;
        entry.last_attempt = std::chrono::steady_clock::now();
    }
    try {
        auto loaded = std::make_shared<const CatalogSnapshot>(load_catalog(conninfo_, database, timeout_));
        metrics().catalog_loads_ok.fetch_add(1, std::memory_order_relaxed);
        spdlog::debug("catalog of database \"{}\" loaded: {} relations (version {})", database,
                      loaded->relations.size(), loaded->version);
        std::lock_guard lock(mutex_);
        // A load that started before an invalidate() is still newer than what it replaces, but
        // stays marked with its generation: the next statement loads again.
        entry.snapshot = std::move(loaded);
        entry.generation = generation;
        entry.loaded = std::chrono::steady_clock::now();
        entry.failed = false;
        entry.error.clear();
    } catch (const std::exception& failure) {
        metrics().catalog_loads_failed.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("{}", failure.what());
        std::lock_guard lock(mutex_);
        entry.failed = true;
        entry.failed_generation = generation;
        entry.error = failure.what();
    }
}

void SensitiveCatalogs::background() {
    std::unique_lock lock(mutex_);
    while (true) {
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        const auto database = queue_.front();
        queue_.pop_front();
        const auto at = entries_.find(database);
        if (at == entries_.end()) continue;
        const auto entry = at->second;
        lock.unlock();
        {
            std::lock_guard load_lock(entry->load_mutex);
            load_into(database, *entry);
        }
        lock.lock();
        entry->queued = false;
    }
}

}  // namespace pgrail::proxy

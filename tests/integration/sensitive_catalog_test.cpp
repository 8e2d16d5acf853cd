// sensitive_columns against the real catalog: what load_catalog reads of a database, what
// resolve_sensitive makes of a rule's patterns there (tables, partitions, inheritance children,
// views on views, materialized views, row-type functions, pg_stats), and the registry's loads.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "cluster.hpp"
#include "pgrail/proxy/sensitive_catalog.hpp"
#include "seed_database.hpp"

using namespace pgrail::test;
using pgrail::policy::ColumnPattern;
using pgrail::policy::SensitiveColumns;
using pgrail::policy::SensitiveSet;
using pgrail::proxy::CatalogSnapshot;
using pgrail::proxy::load_catalog;
using pgrail::proxy::resolve_sensitive;
using pgrail::proxy::SensitiveCatalogs;

namespace {

constexpr auto timeout = std::chrono::seconds(10);

// The schema every case reads: guarded columns reached in every way the catalog records.
constexpr const char* schema_sql = R"sql(
CREATE SCHEMA billing;
CREATE TABLE public.users (id int PRIMARY KEY, email text, password_hash text, name text);
CREATE TABLE billing.users (id int, password_hash text);
CREATE TABLE public.api_tokens (id int, token text, secret text);
CREATE TABLE public.people (id int, ssn text);
CREATE TABLE public.events (id int, at date, ssn text) PARTITION BY RANGE (at);
CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
-- Built on its own, columns in another order: its own column numbers.
CREATE TABLE public.events_2025 (ssn text, id int, at date);
ALTER TABLE public.events ATTACH PARTITION public.events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.admins (level int) INHERITS (public.users);
CREATE VIEW public.v_hashes AS SELECT id, password_hash FROM public.users;
CREATE VIEW public.v_safe AS SELECT id, email FROM public.users;
CREATE VIEW public.v_json AS SELECT row_to_json(u) AS j FROM public.users u;
CREATE VIEW public.v_on_json AS SELECT j FROM public.v_json;
-- Names a column of users: PostgreSQL then records no whole-relation dependency.
CREATE VIEW public.v_mixed AS SELECT u.id, row_to_json(u) AS j FROM public.users u;
CREATE VIEW public.v_count AS SELECT count(*) AS n FROM public.users;
CREATE VIEW public.v_on_safe AS SELECT id FROM public.v_safe;
CREATE MATERIALIZED VIEW public.mv_hashes AS SELECT password_hash FROM public.users;
CREATE VIEW public.v_stats AS SELECT tablename, most_common_vals::text AS vals FROM pg_stats;
CREATE FUNCTION public.all_users() RETURNS SETOF public.users LANGUAGE sql AS 'SELECT * FROM public.users';
CREATE FUNCTION public.one_token() RETURNS public.api_tokens LANGUAGE sql AS 'SELECT * FROM public.api_tokens LIMIT 1';
CREATE FUNCTION public.user_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM public.users';
ALTER TABLE public.people DROP COLUMN id;
-- Columns that hold users' whole rows (review 99: SELECT (old).password_hash read them).
CREATE TABLE public.users_history (changed_at timestamptz, old public.users);
CREATE DOMAIN public.user_row AS public.users;
CREATE TYPE public.wrapped AS (who public.users, note text);
CREATE TYPE public.user_span AS RANGE (subtype = public.users);
CREATE TABLE public.user_batches (id int, rows public.users[], one public.user_row, w public.wrapped[],
                                  span public.user_span);
CREATE VIEW public.v_history AS SELECT changed_at, (old).id AS user_id FROM public.users_history;
-- Functions that return users' rows inside another type (review 102).
CREATE FUNCTION public.team_array() RETURNS public.users[] LANGUAGE sql AS 'SELECT ARRAY(SELECT u FROM public.users u)';
CREATE FUNCTION public.team_rec() RETURNS TABLE (id int, u public.users) LANGUAGE sql AS 'SELECT u.id, u FROM public.users u';
CREATE FUNCTION public.team_dom() RETURNS SETOF public.user_row LANGUAGE sql AS 'SELECT u::public.user_row FROM public.users u';
CREATE FUNCTION public.team_out(OUT n int, OUT w public.wrapped) LANGUAGE sql AS 'SELECT 1, ROW(NULL, NULL)::public.wrapped';
CREATE FUNCTION public.plain_array() RETURNS int[] LANGUAGE sql AS 'SELECT ARRAY[1]';
)sql";

struct Fixture {
    SeedDatabase database{"sens_cat_"};
    std::string admin_conninfo;
    Fixture() {
        const auto& cluster = Cluster::get();
        admin_conninfo = "host=" + cluster.socket_dir + " port=" + std::to_string(cluster.pg_port) +
                         " user=postgres dbname=" + database.name;
        Conn conn(PQconnectdb(admin_conninfo.c_str()));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        const auto results = run(conn.get(), schema_sql);
        for (const auto& result : results) REQUIRE(result.sqlstate == "");
    }
    [[nodiscard]] std::string value(const std::string& sql) const {
        Conn conn(PQconnectdb(admin_conninfo.c_str()));
        return scalar(conn.get(), sql);
    }
    [[nodiscard]] std::uint32_t oid(const std::string& relation) const {
        return static_cast<std::uint32_t>(std::stoul(value("SELECT '" + relation + "'::regclass::oid")));
    }
    [[nodiscard]] std::int16_t attnum(const std::string& relation, const std::string& column) const {
        return static_cast<std::int16_t>(std::stoi(value("SELECT attnum FROM pg_attribute WHERE attrelid = '" +
                                                         relation + "'::regclass AND attname = '" + column + "'")));
    }
};

ColumnPattern pattern(const std::string& text) {
    ColumnPattern out;
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (std::size_t dot; (dot = text.find('.', start)) != std::string::npos; start = dot + 1)
        parts.push_back(text.substr(start, dot - start));
    parts.push_back(text.substr(start));
    if (parts.size() == 3) out.schema = parts[0];
    out.table = parts[parts.size() - 2];
    out.column = parts.back();
    return out;
}

SensitiveColumns columns(std::initializer_list<const char*> texts) {
    SensitiveColumns out;
    for (const char* text : texts) out.patterns.push_back(pattern(text));
    return out;
}

// "schema.name" -> its guarded column names, in column order.
std::map<std::string, std::vector<std::string>> guarded(const SensitiveSet& set) {
    std::map<std::string, std::vector<std::string>> out;
    for (const auto& relation : set.relations) out[relation.schema + "." + relation.name] = relation.columns;
    return out;
}

const pgrail::policy::SensitiveRelation* relation_named(const SensitiveSet& set, const std::string& schema,
                                                         const std::string& name) {
    const auto found = set.find(schema, name);
    return found.size() == 1 ? found.front() : nullptr;
}

}  // namespace

TEST_CASE("load_catalog reads relations, columns, inheritance, view dependencies and row-type functions",
          "[sensitive_catalog]") {
    Fixture fixture;
    const auto catalog = load_catalog(fixture.admin_conninfo, fixture.database.name, timeout);
    CHECK(catalog.database == fixture.database.name);
    CHECK(catalog.version > 0);

    const auto* users = catalog.relation(fixture.oid("public.users"));
    REQUIRE(users != nullptr);
    CHECK(users->kind == 'r');
    CHECK(users->schema == "public");
    REQUIRE(users->columns.size() == 4);
    CHECK(users->columns[2].name == "password_hash");
    CHECK(users->columns[2].number == 3);
    CHECK(users->columns[2].type_oid == 25);  // text
    // A dropped column is not there.
    const auto* people = catalog.relation(fixture.oid("public.people"));
    REQUIRE(people != nullptr);
    REQUIRE(people->columns.size() == 1);
    CHECK(people->columns[0].name == "ssn");
    CHECK(people->columns[0].number == 2);

    CHECK(catalog.relation(fixture.oid("public.events"))->kind == 'p');
    CHECK(catalog.relation(fixture.oid("public.mv_hashes"))->kind == 'm');
    const auto* view = catalog.relation(fixture.oid("public.v_json"));
    REQUIRE(view != nullptr);
    CHECK(view->kind == 'v');
    CHECK(view->definition.find("row_to_json(u.*)") != std::string::npos);
    // pg_catalog: the statistics relations only; no TOAST table.
    std::set<std::string> catalog_relations;
    for (const auto& relation : catalog.relations) {
        CHECK_FALSE(relation.schema.starts_with("pg_toast"));
        CHECK(relation.schema != "information_schema");
        if (relation.schema == "pg_catalog") catalog_relations.insert(relation.name);
    }
    CHECK(catalog_relations ==
          std::set<std::string>{"pg_statistic", "pg_statistic_ext_data", "pg_stats", "pg_stats_ext", "pg_stats_ext_exprs"});

    const auto has_edge = [&](const std::string& child, const std::string& parent) {
        return std::any_of(catalog.inheritance.begin(), catalog.inheritance.end(), [&](const auto& edge) {
            return edge.child == fixture.oid(child) && edge.parent == fixture.oid(parent);
        });
    };
    CHECK(has_edge("public.events_2024", "public.events"));
    CHECK(has_edge("public.events_2025", "public.events"));
    CHECK(has_edge("public.admins", "public.users"));

    const auto depends = [&](const std::string& view_name, const std::string& relation, std::int16_t column) {
        return std::any_of(catalog.view_dependencies.begin(), catalog.view_dependencies.end(), [&](const auto& d) {
            return d.view == fixture.oid(view_name) && d.relation == fixture.oid(relation) && d.column == column;
        });
    };
    CHECK(depends("public.v_hashes", "public.users", 3));
    CHECK(depends("public.v_json", "public.users", 0));  // a relation none of whose columns it names
    CHECK_FALSE(depends("public.v_mixed", "public.users", 0));
    CHECK_FALSE(depends("public.v_safe", "public.users", 3));
    CHECK(depends("public.v_on_json", "public.v_json", 1));
    CHECK(depends("public.mv_hashes", "public.users", 3));

    std::set<std::string> functions;
    for (const auto& function : catalog.row_functions) functions.insert(function.schema + "." + function.name);
    CHECK(functions.contains("public.all_users"));
    CHECK(functions.contains("public.one_token"));
    CHECK_FALSE(functions.contains("public.user_count"));

    // A later load is a later version.
    CHECK(load_catalog(fixture.admin_conninfo, fixture.database.name, timeout).version > catalog.version);
}

TEST_CASE("load_catalog takes a URI or key=value conninfo and replaces its dbname", "[sensitive_catalog]") {
    Fixture fixture;
    const auto& cluster = Cluster::get();
    const auto uri = "postgresql://app_owner:app_owner@127.0.0.1:" + std::to_string(cluster.pg_port) + "/postgres";
    const auto catalog = load_catalog(uri, fixture.database.name, timeout);
    CHECK(catalog.relation(fixture.oid("public.users")) != nullptr);

    CHECK_THROWS_WITH(load_catalog("host=127.0.0.1 port=" + std::to_string(cluster.pg_port) +
                                       " user=app_owner password=app_owner",
                                   "no_such_database_here", timeout),
                      Catch::Contains("cannot read the catalog of database \"no_such_database_here\"") &&
                          Catch::Contains("does not exist"));
    CHECK_THROWS_WITH(load_catalog("host=127.0.0.1 bogus_key=1", fixture.database.name, timeout),
                      Catch::Contains("invalid conninfo") && Catch::Contains("bogus_key"));
}

TEST_CASE("resolve_sensitive: tables, partitions, inheritance, views, matviews, functions and pg_stats",
          "[sensitive_catalog]") {
    Fixture fixture;
    const auto catalog = load_catalog(fixture.admin_conninfo, fixture.database.name, timeout);

    SECTION("bare, schema-qualified and glob patterns") {
        const auto set = resolve_sensitive(catalog, columns({"users.password_hash", "public.api_tokens.*", "*.ssn"}));
        const auto by_name = guarded(set);
        using names = std::vector<std::string>;
        // A bare table name matches every schema.
        CHECK(by_name.at("public.users") == names{"password_hash"});
        CHECK(by_name.at("billing.users") == names{"password_hash"});
        CHECK(by_name.at("public.api_tokens") == names{"id", "token", "secret"});
        CHECK(by_name.at("public.people") == names{"ssn"});
        // A partitioned table, its partitions (with their own column numbers), an inheritance child.
        CHECK(by_name.at("public.events") == names{"ssn"});
        CHECK(by_name.at("public.events_2024") == names{"ssn"});
        CHECK(by_name.at("public.events_2025") == names{"ssn"});
        const auto* partition = relation_named(set, "public", "events_2025");
        REQUIRE(partition != nullptr);
        CHECK(partition->numbers == std::vector<std::int16_t>{1});
        CHECK(partition->origin == "public.events_2025");  // "*.ssn" names it itself
        CHECK(by_name.at("public.admins") == names{"password_hash"});
        CHECK(relation_named(set, "public", "admins")->origin == "public.users (through inheritance child public.admins)");
        // Views on a guarded column, a whole-row view and a view on it, a materialized view: all
        // of their columns. The views that do not read it are not guarded.
        CHECK(by_name.at("public.v_hashes") == names{"id", "password_hash"});
        CHECK(relation_named(set, "public", "v_hashes")->origin == "public.users (through view public.v_hashes)");
        CHECK(by_name.at("public.v_json") == names{"j"});
        CHECK(by_name.at("public.v_on_json") == names{"j"});
        CHECK(by_name.at("public.v_mixed") == names{"id", "j"});
        CHECK_FALSE(by_name.contains("public.v_count"));
        CHECK(relation_named(set, "public", "v_on_json")->origin == "public.users (through view public.v_on_json)");
        CHECK(by_name.at("public.mv_hashes") == names{"password_hash"});
        CHECK(relation_named(set, "public", "mv_hashes")->kind == 'm');
        CHECK_FALSE(by_name.contains("public.v_safe"));
        CHECK_FALSE(by_name.contains("public.v_on_safe"));
        // Columns of users' row type, an array of it, a domain over it, a composite type holding it.
        CHECK(by_name.at("public.users_history") == names{"old"});
        CHECK(relation_named(set, "public", "users_history")->origin ==
              "public.users (through column public.users_history.old of its row type)");
        CHECK(by_name.at("public.user_batches") == names{"rows", "one", "w", "span"});
        // ... and a view that reads such a column.
        CHECK(by_name.at("public.v_history") == names{"changed_at", "user_id"});
        // Functions that return its rows inside another type: every use refused (`inside`).
        std::map<std::string, bool> functions;
        for (const auto& function : set.row_functions)
            if (function.origin == "public.users") functions[function.name] = function.inside;
        // (The range type's constructors too: user_span(users, users) returns users inside it.)
        CHECK(functions == std::map<std::string, bool>{{"all_users", false},
                                                       {"team_array", true},
                                                       {"team_dom", true},
                                                       {"team_out", true},
                                                       {"team_rec", true},
                                                       {"user_span", true},
                                                       {"user_span_multirange", true}});
        // The pg_catalog sample values: always refused; a view reading them too.
        CHECK(by_name.at("pg_catalog.pg_stats") == names{"most_common_vals", "histogram_bounds", "most_common_elems"});
        CHECK(by_name.at("pg_catalog.pg_stats_ext") == names{"most_common_vals"});
        CHECK(by_name.at("pg_catalog.pg_stats_ext_exprs") ==
              names{"most_common_vals", "histogram_bounds", "most_common_elems"});
        CHECK(by_name.at("pg_catalog.pg_statistic") ==
              names{"stavalues1", "stavalues2", "stavalues3", "stavalues4", "stavalues5"});
        CHECK(by_name.at("pg_catalog.pg_statistic_ext_data") == names{"stxdmcv", "stxdexpr"});
        CHECK(relation_named(set, "pg_catalog", "pg_stats")->always_deny);
        CHECK_FALSE(relation_named(set, "public", "users")->always_deny);
        CHECK(by_name.at("public.v_stats") == names{"tablename", "vals"});
        CHECK(relation_named(set, "public", "v_stats")->always_deny);

        // Row-type functions.
        REQUIRE(set.find_function("public", "all_users") != nullptr);
        CHECK(set.find_function("", "all_users")->origin == "public.users");
        REQUIRE(set.find_function("", "one_token") != nullptr);
        CHECK(set.find_function("public", "one_token")->origin == "public.api_tokens");
        CHECK(set.find_function("", "user_count") == nullptr);
        CHECK(set.find_function("billing", "all_users") == nullptr);

        // Lookups by name as written, and by (table OID, column number) for results.
        CHECK(set.find("", "users").size() == 2);
        CHECK(set.find("public", "users").size() == 1);
        CHECK(set.find("other", "users").empty());
        CHECK(set.find("", "v_safe").empty());
        const auto key = set.keys.find({fixture.oid("public.users"), fixture.attnum("public.users", "password_hash")});
        REQUIRE(key != set.keys.end());
        CHECK(set.relations.at(key->second).name == "users");
        CHECK(set.keys.count({fixture.oid("public.users"), fixture.attnum("public.users", "email")}) == 0);
        CHECK(set.keys.count({fixture.oid("public.events_2025"), 1}) == 1);
    }

    SECTION("a schema-qualified pattern leaves other schemas alone") {
        const auto by_name = guarded(resolve_sensitive(catalog, columns({"public.users.password_hash"})));
        CHECK(by_name.contains("public.users"));
        CHECK(by_name.contains("public.admins"));
        CHECK_FALSE(by_name.contains("billing.users"));
        CHECK_FALSE(by_name.contains("public.api_tokens"));
    }

    SECTION("partitions follow their parent, with their own column numbers") {
        const auto set = resolve_sensitive(catalog, columns({"public.events.ssn"}));
        const auto* partition = relation_named(set, "public", "events_2025");
        REQUIRE(partition != nullptr);
        CHECK(partition->numbers == std::vector<std::int16_t>{1});
        CHECK(partition->origin == "public.events (through partition public.events_2025)");
        REQUIRE(relation_named(set, "public", "events_2024") != nullptr);
        CHECK(relation_named(set, "public", "events_2024")->numbers == std::vector<std::int16_t>{3});
        CHECK(set.keys.count({fixture.oid("public.events_2025"), 1}) == 1);
        CHECK(relation_named(set, "public", "people") == nullptr);
    }

    SECTION("globs in every part") {
        const auto by_name = guarded(resolve_sensitive(catalog, columns({"bill*.us?rs.pass*"})));
        CHECK(by_name.at("billing.users") == std::vector<std::string>{"password_hash"});
        CHECK_FALSE(by_name.contains("public.users"));
        CHECK_FALSE(by_name.contains("public.v_hashes"));
    }

    SECTION("a view of the safe columns is not guarded, a view of a guarded column is") {
        const auto by_name = guarded(resolve_sensitive(catalog, columns({"users.email"})));
        CHECK(by_name.contains("public.v_safe"));
        CHECK(by_name.contains("public.v_on_safe"));
        CHECK(by_name.contains("public.v_json"));  // the whole row holds email too
        CHECK_FALSE(by_name.contains("public.v_hashes"));
        CHECK_FALSE(by_name.contains("public.mv_hashes"));
    }

    SECTION("no patterns: nothing guarded, pg_stats included") {
        CHECK(resolve_sensitive(catalog, SensitiveColumns{}).empty());
    }

    SECTION("ColumnPattern::to_string") {
        CHECK(pattern("users.password_hash").to_string() == "users.password_hash");
        CHECK(pattern("public.api_tokens.*").to_string() == "public.api_tokens.*");
    }
}

TEST_CASE("SensitiveCatalogs: one snapshot per database, fresh after invalidate, failures retried",
          "[sensitive_catalog]") {
    Fixture fixture;
    SECTION("loaded once, then shared; invalidate() makes the next caller read it again") {
        SensitiveCatalogs catalogs(fixture.admin_conninfo, std::chrono::hours(1), timeout);
        std::string error;
        const auto first = catalogs.snapshot(fixture.database.name, &error);
        REQUIRE(first != nullptr);
        CHECK(error.empty());
        CHECK(catalogs.snapshot(fixture.database.name, &error) == first);
        {
            Conn conn(PQconnectdb(fixture.admin_conninfo.c_str()));
            REQUIRE(run(conn.get(), "CREATE TABLE public.later (secret text)").at(0).sqlstate == "");
        }
        catalogs.invalidate();
        const auto second = catalogs.snapshot(fixture.database.name, &error);
        REQUIRE(second != nullptr);
        CHECK(second->version > first->version);
        CHECK(std::any_of(second->relations.begin(), second->relations.end(),
                          [](const auto& relation) { return relation.name == "later"; }));
    }
    SECTION("ready(): whether a snapshot would answer without a read on the caller's thread") {
        SensitiveCatalogs catalogs(fixture.admin_conninfo, std::chrono::hours(1), timeout);
        CHECK_FALSE(catalogs.ready(fixture.database.name));
        REQUIRE(catalogs.snapshot(fixture.database.name, nullptr) != nullptr);
        CHECK(catalogs.ready(fixture.database.name));
        catalogs.invalidate();
        CHECK_FALSE(catalogs.ready(fixture.database.name));
    }
    SECTION("a temporary view another session keeps locked does not hold the read up") {
        // pg_get_viewdef locks what it reads: a session's own temporary view, replaced in a
        // transaction left open, once made every read wait for the lock timeout and fail.
        Conn holder(PQconnectdb(fixture.admin_conninfo.c_str()));
        REQUIRE(run(holder.get(), "CREATE TEMP VIEW held AS SELECT 1 AS a").at(0).sqlstate == "");
        REQUIRE(run(holder.get(), "BEGIN").at(0).sqlstate == "");
        REQUIRE(run(holder.get(), "CREATE OR REPLACE TEMP VIEW held AS SELECT 2 AS a").at(0).sqlstate == "");
        SensitiveCatalogs catalogs(fixture.admin_conninfo, std::chrono::hours(1), std::chrono::milliseconds(3000));
        std::string error;
        const auto snapshot = catalogs.snapshot(fixture.database.name, &error);
        CHECK(error.empty());
        REQUIRE(snapshot != nullptr);
        const auto held = std::find_if(snapshot->relations.begin(), snapshot->relations.end(),
                                       [](const auto& relation) { return relation.name == "held"; });
        REQUIRE(held != snapshot->relations.end());
        CHECK(held->definition.empty());  // read as reading whole rows
    }
    SECTION("a stale snapshot is served and replaced in the background") {
        SensitiveCatalogs catalogs(fixture.admin_conninfo, std::chrono::milliseconds(1), timeout);
        const auto first = catalogs.snapshot(fixture.database.name, nullptr);
        REQUIRE(first != nullptr);
        CHECK(eventually(
            [&] {
                const auto current = catalogs.snapshot(fixture.database.name, nullptr);
                REQUIRE(current != nullptr);
                return current->version > first->version;
            },
            std::chrono::seconds(30)));
    }
    SECTION("a database that cannot be read: null and why") {
        SensitiveCatalogs catalogs(fixture.admin_conninfo, std::chrono::hours(1), timeout);
        std::string error;
        CHECK(catalogs.snapshot("no_such_database_here", &error) == nullptr);
        CHECK_THAT(error, Catch::Contains("no_such_database_here") && Catch::Contains("does not exist"));
        error.clear();
        // Asked again at once: the failure is reported again (tried at most once a second).
        CHECK(catalogs.snapshot("no_such_database_here", &error) == nullptr);
        CHECK_THAT(error, Catch::Contains("does not exist"));
        // The other database is unaffected.
        CHECK(catalogs.snapshot(fixture.database.name, &error) != nullptr);
    }
}

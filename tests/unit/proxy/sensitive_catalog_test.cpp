// resolve_sensitive on hand-built catalogs: the fixed point over views on views and partitions of
// partitions, the child's own column numbers, whole-row views, and what never propagates.
// (tests/integration/sensitive_catalog_test.cpp reads the same shapes from PostgreSQL itself.)
#include <catch2/catch.hpp>

#include "pgrail/proxy/sensitive_catalog.hpp"

using pgrail::policy::ColumnPattern;
using pgrail::policy::SensitiveColumns;
using pgrail::proxy::CatalogRelation;
using pgrail::proxy::CatalogSnapshot;
using pgrail::proxy::resolve_sensitive;

namespace {

CatalogRelation relation(std::uint32_t oid, std::string schema, std::string name, char kind,
                         std::vector<std::string> columns, std::string definition = "") {
    CatalogRelation out;
    out.oid = oid;
    out.schema = std::move(schema);
    out.name = std::move(name);
    out.kind = kind;
    out.row_type = oid + 1000;
    std::int16_t number = 0;
    for (auto& column : columns) out.columns.push_back({++number, std::move(column), 25});
    out.definition = std::move(definition);
    return out;
}

SensitiveColumns patterns(std::vector<ColumnPattern> list) {
    SensitiveColumns out;
    out.patterns = std::move(list);
    return out;
}

// users(1) <- v1 (column) <- v2 (column of v1) <- v3 (whole rows of v2); users <- part (child,
// columns reordered) <- subpart; users <- safe view; pg_catalog.pg_stats and a view on it.
CatalogSnapshot catalog() {
    CatalogSnapshot out;
    out.relations = {
        relation(10, "public", "users", 'p', {"id", "secret", "name"}),
        relation(11, "public", "part", 'p', {"name", "secret", "id"}),
        relation(12, "public", "subpart", 'r', {"id", "name", "secret"}),
        relation(20, "public", "v1", 'v', {"id", "s"}, " SELECT users.id, users.secret AS s FROM users;"),
        relation(21, "public", "v2", 'v', {"s"}, " SELECT v1.s FROM v1;"),
        relation(22, "public", "v3", 'm', {"j"}, " SELECT row_to_json(x.*) AS j FROM v2 x;"),
        relation(23, "public", "safe", 'v', {"id", "name"}, " SELECT users.id, users.name FROM users;"),
        relation(24, "public", "counted", 'v', {"n"}, " SELECT count(*) AS n FROM users;"),
        relation(30, "pg_catalog", "pg_stats", 'v', {"tablename", "most_common_vals", "null_frac"}),
        relation(31, "public", "stats_view", 'v', {"t", "v"}, " SELECT pg_stats.tablename AS t, pg_stats.most_common_vals AS v FROM pg_stats;"),
        relation(32, "public", "stats_safe", 'v', {"t"}, " SELECT pg_stats.tablename AS t FROM pg_stats;"),
    };
    out.inheritance = {{11, 10}, {12, 11}};
    out.view_dependencies = {{20, 10, 1}, {20, 10, 2}, {21, 20, 2}, {22, 21, 0}, {23, 10, 1}, {23, 10, 3},
                             {24, 10, 0},  {31, 30, 1}, {31, 30, 2}, {32, 30, 1}};
    out.row_functions = {{"public", "all_users", 1010}, {"public", "safe_rows", 1023}, {"public", "v1_rows", 1020}};
    return out;
}

}  // namespace

TEST_CASE("resolve_sensitive follows partitions, views on views and whole rows to a fixed point") {
    const auto snapshot = catalog();
    const auto set = resolve_sensitive(snapshot, patterns({{"", "users", "secret"}}));

    const auto* part = set.find("public", "part").at(0);
    CHECK(part->columns == std::vector<std::string>{"secret"});
    CHECK(part->numbers == std::vector<std::int16_t>{2});  // its own number
    CHECK(part->origin == "public.users (through partition public.part)");
    const auto* subpart = set.find("", "subpart").at(0);
    CHECK(subpart->numbers == std::vector<std::int16_t>{3});

    CHECK(set.find("", "v1").at(0)->columns == std::vector<std::string>{"id", "s"});
    CHECK(set.find("", "v2").at(0)->origin == "public.users (through view public.v2)");
    const auto* v3 = set.find("", "v3").at(0);
    CHECK(v3->kind == 'm');
    CHECK(v3->origin == "public.users (through materialized view public.v3)");
    CHECK(set.find("", "safe").empty());
    CHECK(set.find("", "counted").empty());  // count(*) reads no row

    REQUIRE(set.find_function("", "all_users") != nullptr);
    CHECK(set.find_function("", "all_users")->origin == "public.users");
    CHECK(set.find_function("", "v1_rows")->origin == "public.v1");  // matched as the view's rows
    CHECK(set.find_function("", "safe_rows") == nullptr);

    CHECK(set.keys.contains({12, 3}));
    CHECK_FALSE(set.keys.contains({12, 1}));
    CHECK(set.keys.contains({20, 1}));  // a view's every column
}

TEST_CASE("resolve_sensitive: a guarded partition guards its parents, which read its rows") {
    // Only the leaf is named: reading users or part scans subpart's rows, secret included.
    const auto set = resolve_sensitive(catalog(), patterns({{"public", "subpart", "secret"}}));
    const auto* part = set.find("public", "part").at(0);
    CHECK(part->numbers == std::vector<std::int16_t>{2});
    CHECK(part->origin == "public.subpart (through partitioned table public.part)");
    const auto* users = set.find("public", "users").at(0);
    CHECK(users->numbers == std::vector<std::int16_t>{2});
    CHECK(set.keys.contains({10, 2}));
    CHECK_FALSE(set.keys.contains({10, 1}));
    // And what reads the parents' guarded column.
    CHECK_FALSE(set.find("", "v1").empty());
    CHECK(set.find("", "safe").empty());
}

TEST_CASE("resolve_sensitive: pg_stats' sample values are always refused, and only they") {
    const auto set = resolve_sensitive(catalog(), patterns({{"", "*", "name"}}));
    const auto* stats = set.find("pg_catalog", "pg_stats").at(0);
    CHECK(stats->always_deny);
    CHECK(stats->columns == std::vector<std::string>{"most_common_vals"});
    // A bare pattern does not reach pg_catalog: pg_stats' other columns stay readable.
    CHECK_FALSE(set.keys.contains({30, 1}));
    const auto* view = set.find("", "stats_view").at(0);
    CHECK(view->always_deny);
    CHECK(set.find("", "stats_safe").empty());
    // The name pattern guards users.name and what carries it, not always_deny.
    CHECK_FALSE(set.find("", "users").at(0)->always_deny);
    CHECK(set.find("", "safe").size() == 1);
}

TEST_CASE("resolve_sensitive: schema-qualified patterns and no patterns") {
    CHECK(resolve_sensitive(catalog(), SensitiveColumns{}).empty());
    CHECK(resolve_sensitive(catalog(), patterns({{"other", "users", "secret"}})).find("", "users").empty());
    const auto set = resolve_sensitive(catalog(), patterns({{"pub*", "us?rs", "s*"}}));
    CHECK(set.find("public", "users").size() == 1);
}

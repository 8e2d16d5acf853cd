// What a schema change does, as a refusal's advice reads it (Statement::change), and the quoting
// of the names in the SQL pgrail suggests.
#include <catch2/catch.hpp>

#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/quote.hpp"

using namespace pgrail::sql;

namespace {

SchemaChange change_of(const char* query) {
    const auto analysis = analyze(query);
    REQUIRE(analysis.statements.size() == 1);
    return analysis.statements[0].change;
}

}  // namespace

TEST_CASE("names are quoted as PostgreSQL's quote_ident quotes them", "[sql][quote]") {
    CHECK(quote_identifier("profiles") == "profiles");
    CHECK(quote_identifier("_x1") == "_x1");
    CHECK(quote_identifier("name") == "name");          // an unreserved keyword
    CHECK(quote_identifier("select") == "\"select\"");  // reserved
    CHECK(quote_identifier("user") == "\"user\"");
    CHECK(quote_identifier("int") == "\"int\"");        // a column-name keyword
    CHECK(quote_identifier("Profiles") == "\"Profiles\"");
    CHECK(quote_identifier("1st") == "\"1st\"");
    CHECK(quote_identifier("a b") == "\"a b\"");
    CHECK(quote_identifier("say \"hi\"") == "\"say \"\"hi\"\"\"");
    CHECK(quote_identifier("") == "\"\"");
    CHECK(quote_qualified("", "t") == "t");
    CHECK(quote_qualified("My Schema", "t") == "\"My Schema\".t");
    CHECK(quote_literal("it's") == "'it''s'");
    CHECK(quote_literal("a\\b") == "E'a\\\\b'");
}

TEST_CASE("the schema change a statement makes, from its parse tree", "[sql][schema_change]") {
    auto add = change_of("ALTER TABLE app.profiles ADD COLUMN locale text NOT NULL");
    CHECK(add.kind == ChangeKind::add_column);
    CHECK(add.schema == "app");
    CHECK(add.table == "profiles");
    CHECK(add.columns == std::vector<std::string>{"locale"});
    CHECK(add.not_null_without_default);
    // Whatever fills the existing rows makes NOT NULL safe; spelling does not matter.
    CHECK_FALSE(change_of("alter table profiles add locale text not null default 'x'").not_null_without_default);
    CHECK_FALSE(change_of("ALTER TABLE profiles ADD COLUMN n bigint NOT NULL GENERATED ALWAYS AS IDENTITY")
                    .not_null_without_default);
    CHECK_FALSE(change_of("ALTER TABLE profiles ADD COLUMN n int NOT NULL GENERATED ALWAYS AS (1) STORED")
                    .not_null_without_default);
    CHECK(change_of("ALTER TABLE profiles ADD COLUMN n int PRIMARY KEY").not_null_without_default);
    CHECK(change_of("ALTER TABLE profiles ADD n int CONSTRAINT n_set NOT NULL").not_null_without_default);
    CHECK_FALSE(change_of("ALTER TABLE profiles ADD COLUMN n int").not_null_without_default);
    const auto two = change_of("ALTER TABLE \"Profiles\" ADD COLUMN a int, ADD COLUMN \"B\" int");
    CHECK(two.kind == ChangeKind::add_column);
    CHECK(two.table == "Profiles");
    CHECK(two.columns == std::vector<std::string>{"a", "B"});
    // A drop anywhere in the statement makes it a drop.
    const auto drop = change_of("ALTER TABLE profiles ADD COLUMN a int, DROP COLUMN email");
    CHECK(drop.kind == ChangeKind::drop_column);
    CHECK(drop.columns == std::vector<std::string>{"email"});
    CHECK(change_of("ALTER TABLE profiles ALTER COLUMN email SET NOT NULL").kind == ChangeKind::none);
    CHECK(change_of("ALTER TABLE profiles ADD COLUMN a int, ALTER COLUMN email SET NOT NULL").kind == ChangeKind::none);

    const auto index = change_of("CREATE INDEX CONCURRENTLY profiles_email_idx ON app.profiles (email)");
    CHECK(index.kind == ChangeKind::create_index);
    CHECK(index.name == "profiles_email_idx");
    CHECK(index.schema == "app");
    CHECK(index.table == "profiles");
    CHECK(index.concurrently);
    CHECK_FALSE(change_of("CREATE UNIQUE INDEX ON profiles (email)").concurrently);
    CHECK(change_of("CREATE UNIQUE INDEX ON profiles (email)").name.empty());

    CHECK(change_of("CREATE TABLE notes (id int)").kind == ChangeKind::create_table);
    CHECK(change_of("DROP TABLE IF EXISTS a, b CASCADE").kind == ChangeKind::drop_table);
    CHECK(change_of("DROP VIEW v").kind == ChangeKind::none);
    CHECK(change_of("CREATE VIEW v AS SELECT 1").kind == ChangeKind::create_object);
    CHECK(change_of("CREATE OR REPLACE VIEW v AS SELECT 1").kind == ChangeKind::none);
    CHECK(change_of("CREATE MATERIALIZED VIEW IF NOT EXISTS v AS SELECT 1").kind == ChangeKind::none);
    CHECK(change_of("CREATE TABLE t AS SELECT 1").kind == ChangeKind::none);
    CHECK(change_of("GRANT SELECT ON profiles TO reporting").kind == ChangeKind::grant);
    CHECK(change_of("REVOKE SELECT ON profiles FROM reporting").kind == ChangeKind::revoke);
    CHECK(change_of("GRANT app_owner TO agent").kind == ChangeKind::grant);
    const auto extension = change_of("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public");
    CHECK(extension.kind == ChangeKind::create_extension);
    CHECK(extension.name == "pg_trgm");
    CHECK(change_of("SELECT 1").kind == ChangeKind::none);
    CHECK(change_of("UPDATE profiles SET email = 'x'").kind == ChangeKind::none);
}

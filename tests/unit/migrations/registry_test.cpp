// Registry: file naming, numeric order, checksums, directives, invalid files with reasons.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "pgrail/migrations/registry.hpp"

using namespace pgrail::migrations;

namespace {

const char* const up_sql = "ALTER TABLE profiles ADD COLUMN timezone text;\n";
const char* const down_sql = "ALTER TABLE profiles DROP COLUMN timezone;\n";

Registry registry_of(std::map<std::string, std::string> files) { return Registry::from_files("/m", files); }

std::string reason_for(const Registry& registry, const std::string& file) {
    for (const auto& invalid : registry.invalid_files())
        if (invalid.path.filename() == file) return invalid.reason;
    return "<valid>";
}

}  // namespace

TEST_CASE("versions are canonical digits compared numerically") {
    CHECK(canonical_version("0042") == "42");
    CHECK(canonical_version("000") == "0");
    CHECK(canonical_version("20261125090000") == "20261125090000");
    CHECK_FALSE(canonical_version("").has_value());
    CHECK_FALSE(canonical_version("12a").has_value());
    CHECK_FALSE(canonical_version("-1").has_value());
    CHECK(version_less("9", "10"));
    CHECK(version_less("99", "20261125090000"));
    CHECK_FALSE(version_less("10", "9"));
    CHECK_FALSE(version_less("7", "7"));
    CHECK(version_less("123456789012345678901234567890", "123456789012345678901234567891"));
}

TEST_CASE("checksum is SHA-256 over the SHA-256 of up and of down") {
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(migration_checksum(up_sql, down_sql) == "e98547cb82d1000962bdbf211a4253b2cea020b6436d09ec68089f6860b73c38");
    // Moving text between the scripts changes the checksum.
    CHECK(migration_checksum("a", "bc") != migration_checksum("ab", "c"));
}

TEST_CASE("a pair of parseable scripts is registered, in numeric version order") {
    const auto registry = registry_of({{"10_b.up.sql", up_sql},
                                       {"10_b.down.sql", down_sql},
                                       {"9_a.up.sql", "CREATE TABLE a (id int);"},
                                       {"9_a.down.sql", "DROP TABLE a;"},
                                       {"0100_c.up.sql", "CREATE INDEX c ON a (id);"},
                                       {"0100_c.down.sql", "DROP INDEX c;"}});
    REQUIRE(registry.invalid_files().empty());
    REQUIRE(registry.migrations().size() == 3);
    CHECK(registry.migrations()[0].version == "9");
    CHECK(registry.migrations()[1].version == "10");
    CHECK(registry.migrations()[2].version == "100");
    CHECK(registry.migrations()[2].name == "c");
    const Migration& b = *registry.find("10");
    CHECK(b.checksum == migration_checksum(up_sql, down_sql));
    REQUIRE(b.up.statements.size() == 1);
    CHECK(b.up.statements[0].tag == "ALTER TABLE");
    CHECK(b.up.statements[0].line == 1);
    CHECK_FALSE(b.up.statements[0].structural_form.empty());
    CHECK(b.up.path == std::filesystem::path("/m/10_b.up.sql"));
    CHECK_FALSE(b.up.no_transaction);
}

TEST_CASE("statements carry their line and byte offset past leading comments") {
    const auto registry = registry_of({{"1_x.up.sql", "-- adds things\n\nCREATE TABLE t (id int);\n\n"
                                                      "-- second\nALTER TABLE t ADD COLUMN n text;\n"},
                                       {"1_x.down.sql", "DROP TABLE t;"}});
    REQUIRE(registry.migrations().size() == 1);
    const auto& statements = registry.migrations()[0].up.statements;
    REQUIRE(statements.size() == 2);
    CHECK(statements[0].line == 3);
    CHECK(statements[0].offset == 16);
    CHECK(statements[1].line == 6);
    CHECK(statements[1].tag == "ALTER TABLE");
}

TEST_CASE("files that are not complete, parseable pairs are invalid with a reason") {
    const auto registry = registry_of({
        {"README.md", "docs"},
        {"1_only_up.up.sql", up_sql},
        {"2_only_down.down.sql", down_sql},
        {"3_empty_down.up.sql", up_sql},
        {"3_empty_down.down.sql", "-- nothing to undo\n"},
        {"4_broken.up.sql", "ALTER TABLE FROM;"},
        {"4_broken.down.sql", down_sql},
        {"5_a.up.sql", up_sql},
        {"5_a.down.sql", down_sql},
        {"005_b.up.sql", up_sql},
        {"005_b.down.sql", down_sql},
        {"6_x.sql", up_sql},
        {"x_name.up.sql", up_sql},
        {"7_.up.sql", up_sql},
        {"8_empty_up.up.sql", ""},
        {"8_empty_up.down.sql", down_sql},
        {"9_typo.up.sql", "SELECT 1;\nSELEC 1;"},
        {"9_typo.down.sql", down_sql},
    });
    CHECK(registry.migrations().empty());
    CHECK_THAT(reason_for(registry, "README.md"), Catch::Contains("not a migration file"));
    CHECK_THAT(reason_for(registry, "1_only_up.up.sql"), Catch::Contains("no rollback script") &&
                                                             Catch::Contains("1_only_up.down.sql is missing"));
    CHECK_THAT(reason_for(registry, "2_only_down.down.sql"), Catch::Contains("no up script"));
    CHECK_THAT(reason_for(registry, "3_empty_down.down.sql"), Catch::Contains("rollback script has no statements"));
    CHECK_THAT(reason_for(registry, "3_empty_down.up.sql"), Catch::Contains("rollback script is invalid"));
    CHECK_THAT(reason_for(registry, "4_broken.up.sql"), Catch::Contains("does not parse") && Catch::Contains("line 1"));
    CHECK_THAT(reason_for(registry, "4_broken.down.sql"), Catch::Contains("up script is invalid"));
    for (const char* file : {"5_a.up.sql", "5_a.down.sql", "005_b.up.sql", "005_b.down.sql"})
        CHECK_THAT(reason_for(registry, file), Catch::Contains("duplicate version 5"));
    CHECK_THAT(reason_for(registry, "6_x.sql"), Catch::Contains("not a migration file"));
    CHECK_THAT(reason_for(registry, "x_name.up.sql"), Catch::Contains("not a migration file"));
    CHECK_THAT(reason_for(registry, "7_.up.sql"), Catch::Contains("not a migration file"));
    CHECK_THAT(reason_for(registry, "8_empty_up.up.sql"), Catch::Contains("up script has no statements"));
    CHECK_THAT(reason_for(registry, "9_typo.up.sql"), Catch::Contains("does not parse") && Catch::Contains("line 2"));
    CHECK(registry.invalid_for("5").size() == 4);
}

TEST_CASE("leading comment directives") {
    SECTION("no-transaction and allow with reasons") {
        const auto registry = registry_of({
            {"1_idx.up.sql", "-- pgrail:no-transaction\n-- pgrail:allow require-concurrent-index  built online\n"
                             "CREATE INDEX CONCURRENTLY i ON t (a);\n"},
            {"1_idx.down.sql", "--pgrail:no-transaction\nDROP INDEX CONCURRENTLY i;\n"},
        });
        REQUIRE(registry.migrations().size() == 1);
        const auto& migration = registry.migrations()[0];
        CHECK(migration.up.no_transaction);
        CHECK(migration.down.no_transaction);
        REQUIRE(migration.up.waivers.size() == 1);
        CHECK(migration.up.waivers[0] == LintWaiver{"require-concurrent-index", "built online"});
    }
    SECTION("invalid directives make the file invalid") {
        const auto registry = registry_of({
            {"1_a.up.sql", "-- pgrail:allow table-rewrite\nALTER TABLE t ADD COLUMN c int DEFAULT random();"},
            {"1_a.down.sql", down_sql},
            {"2_b.up.sql", "-- pgrail:autocommit\nSELECT 1;"},
            {"2_b.down.sql", down_sql},
            {"3_c.up.sql", "SELECT 1;\n-- pgrail:no-transaction\nSELECT 2;"},
            {"3_c.down.sql", down_sql},
            {"4_d.up.sql", "-- pgrail:no-transaction please\nSELECT 1;"},
            {"4_d.down.sql", down_sql},
        });
        CHECK(registry.migrations().empty());
        CHECK_THAT(reason_for(registry, "1_a.up.sql"), Catch::Contains("needs a lint rule and a reason"));
        CHECK_THAT(reason_for(registry, "2_b.up.sql"), Catch::Contains("unknown directive `pgrail:autocommit`"));
        CHECK_THAT(reason_for(registry, "3_c.up.sql"), Catch::Contains("line 2") && Catch::Contains("after the first statement"));
        CHECK_THAT(reason_for(registry, "4_d.up.sql"), Catch::Contains("takes no arguments"));
    }
}

TEST_CASE("transaction control: a BEGIN/COMMIT wrapper is accepted, anything else refused") {
    const auto registry = registry_of({
        {"1_wrapped.up.sql", "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n"},
        {"1_wrapped.down.sql", "DROP TABLE t;"},
        {"2_commit.up.sql", "CREATE TABLE u (id int);\nCOMMIT;\nCREATE TABLE v (id int);"},
        {"2_commit.down.sql", "DROP TABLE u;"},
    });
    REQUIRE(registry.migrations().size() == 1);
    REQUIRE(registry.migrations()[0].up.statements.size() == 1);
    CHECK(registry.migrations()[0].up.statements[0].tag == "CREATE TABLE");
    CHECK_THAT(reason_for(registry, "2_commit.up.sql"), Catch::Contains("line 2") && Catch::Contains("transaction control"));
}

// Review 97: `SET standard_conforming_strings = off` made the server read the rest of the script
// otherwise than pgrail split it (an ALTER TABLE ... DROP CONSTRAINT hidden in a string).
TEST_CASE("a script may not change how its text is read") {
    const auto registry = registry_of({
        {"1_scs.up.sql", "SET standard_conforming_strings = off;\nCOMMENT ON TABLE t IS 'x\\'\n'; DROP TABLE t; -- ';"},
        {"1_scs.down.sql", down_sql},
        {"2_encoding.up.sql", "CREATE TABLE t2 (id int);\nSELECT set_config('client_encoding', 'SJIS', true);"},
        {"2_encoding.down.sql", down_sql},
        {"3_reset.up.sql", "RESET ALL;\nCREATE TABLE t3 (id int);"},
        {"3_reset.down.sql", down_sql},
        {"4_nested.up.sql", "DO $$BEGIN EXECUTE 'SET LOCAL standard_conforming_strings TO off'; END$$;"},
        {"4_nested.down.sql", down_sql},
        {"5_fine.up.sql", "SET LOCAL lock_timeout = '5s';\nCREATE TABLE t5 (id int);"},
        {"5_fine.down.sql", "DROP TABLE t5;"},
        // pg_dump's header sets what the runner pins: it passes (review 98).
        {"6_dumped.up.sql", "SET standard_conforming_strings = on;\nSET client_encoding = 'UTF8';\n"
                            "SELECT pg_catalog.set_config('search_path', '', false);\nCREATE TABLE public.t6 (id int);"},
        {"6_dumped.down.sql", "DROP TABLE public.t6;"},
        {"7_null.up.sql", "SET transform_null_equals = on;\nDELETE FROM t5 WHERE id = NULL;"},
        {"7_null.down.sql", down_sql},
    });
    REQUIRE(registry.migrations().size() == 2);
    CHECK(registry.migrations()[0].name == "fine");
    CHECK(registry.migrations()[1].name == "dumped");
    CHECK_THAT(reason_for(registry, "7_null.up.sql"), Catch::Contains("may not change how its text is read"));
    for (const char* file : {"1_scs.up.sql", "2_encoding.up.sql", "3_reset.up.sql", "4_nested.up.sql"}) {
        INFO(file);
        CHECK_THAT(reason_for(registry, file), Catch::Contains("may not change how its text is read"));
    }
    CHECK_THAT(reason_for(registry, "2_encoding.up.sql"), Catch::Contains("line 2"));
}

TEST_CASE("load reads a directory; the shipped example is valid") {
    const auto dir = std::filesystem::temp_directory_path() / "pgrail_registry_test";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir / "sub");
    std::ofstream(dir / "1_a.up.sql") << up_sql;
    std::ofstream(dir / "1_a.down.sql") << down_sql;
    std::ofstream(dir / ".gitkeep") << "";
    const auto registry = Registry::load(dir);
    CHECK(registry.migrations().size() == 1);
    REQUIRE(registry.invalid_files().size() == 1);
    CHECK(registry.invalid_files()[0].reason == "not a regular file");
    std::filesystem::remove_all(dir);
    CHECK_THROWS_WITH(Registry::load(dir), Catch::Contains("not a readable directory"));

    const auto shipped = Registry::load(std::filesystem::path(PGRAIL_TEST_DATA) / ".." / ".." / "migrations");
    CHECK(shipped.invalid_files().empty());
    REQUIRE(shipped.find("20261125090000") != nullptr);
    CHECK(shipped.find("20261125090000")->name == "add_profiles_timezone");
}

// The rollback proof's diff of schema dumps.
#include <catch2/catch.hpp>

#include "pgrail/migrations/schema_diff.hpp"

using namespace pgrail::migrations;

TEST_CASE("normalize_dump drops only the per-dump keys") {
    // Comments and blank lines are kept: in a string constant they are content (review 62: a
    // function body's line "-- x" changed by a rollback must show in the proof's diff).
    const std::string dump = "--\n-- Dumped by pg_dump version 15\n--\n\nCREATE FUNCTION f() RETURNS int AS $$\n"
                             "-- a line of the body\n\nSELECT 1$$ LANGUAGE sql;\n";
    CHECK(normalize_dump(dump) == dump);
    CHECK_FALSE(unified_diff(normalize_dump(dump), normalize_dump("--\n-- Dumped by pg_dump version 15\n--\n\nCREATE "
                                                                  "FUNCTION f() RETURNS int AS $$\n-- another line\n\n"
                                                                  "SELECT 1$$ LANGUAGE sql;\n"),
                             "a", "b")
                     .empty());
    // A body's line that starts like the key's is content.
    const std::string keyed = "\\restrict k1\nCREATE FUNCTION f() RETURNS text AS $$SELECT '\n\\restrict x\n'$$ "
                              "LANGUAGE sql;\n\\unrestrict k1\n\n";
    CHECK(normalize_dump(keyed) == "CREATE FUNCTION f() RETURNS text AS $$SELECT '\n\\restrict x\n'$$ LANGUAGE sql;\n\n");
    // pg_dump 15.14+ brackets its output with a random key per dump.
    CHECK(normalize_dump("\\restrict abc123\nCREATE TABLE a ();\n\\unrestrict abc123\n") == "CREATE TABLE a ();\n");
}

TEST_CASE("unified_diff is empty for equal text and shows changed lines with context") {
    CHECK(unified_diff("a\nb\n", "a\nb\n", "x", "y").empty());
    const std::string before = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
    const std::string after = "1\n2\n3\n4\nfive\n6\n7\n8\n9\nten\n";
    CHECK(unified_diff(before, after, "before", "after", 1) ==
          "--- before\n+++ after\n"
          "@@ -4 +4 @@\n 4\n-5\n+five\n 6\n"
          "@@ -9 +9 @@\n 9\n+ten\n");
}

TEST_CASE("unified_diff shows a column the rollback left behind") {
    const std::string before = "CREATE TABLE \"public\".\"profiles\" (\n    \"id\" integer NOT NULL\n);\n";
    const std::string after =
        "CREATE TABLE \"public\".\"profiles\" (\n    \"id\" integer NOT NULL,\n    \"timezone\" \"text\"\n);\n";
    const auto diff = unified_diff(before, after, "a", "b");
    CHECK_THAT(diff, Catch::Contains("-    \"id\" integer NOT NULL\n+    \"id\" integer NOT NULL,\n+    \"timezone\""));
}

// Following a migrator session through a registered script, and the schema fingerprint's text helpers.
#include <catch2/catch.hpp>

#include "pgrail/migrations/external_runs.hpp"
#include "pgrail/migrations/fingerprint.hpp"

using namespace pgrail::migrations;

namespace {

Registry two_statement_registry() {
    return Registry::from_files("/test", {{"1_a.up.sql", "CREATE TABLE a (id int);\nCREATE INDEX a_id ON a (id);\n"},
                                          {"1_a.down.sql", "DROP TABLE a;\n"}});
}

CommittedStatement statement_of(const Registry& registry, Direction direction, std::size_t index) {
    const auto& migration = registry.migrations().at(0);
    const auto& script = direction == Direction::up ? migration.up : migration.down;
    return {migration.version, direction, script.statements.at(index).structural_form};
}

}  // namespace

TEST_CASE("a script counts once all its statements committed, in order", "[external_runs]") {
    const auto registry = two_statement_registry();
    REQUIRE(registry.migrations().size() == 1);
    ExternalProgress progress;
    // The first statement alone: not complete.
    CHECK(advance_external_progress(registry, {statement_of(registry, Direction::up, 0)}, progress).empty());
    // The second in a later transaction completes it.
    const auto done = advance_external_progress(registry, {statement_of(registry, Direction::up, 1)}, progress);
    REQUIRE(done.size() == 1);
    CHECK(done[0].first->version == "1");
    CHECK(done[0].second == Direction::up);
    CHECK(progress.next.empty());
    // Out of order: the second statement first does not count.
    CHECK(advance_external_progress(registry, {statement_of(registry, Direction::up, 1)}, progress).empty());
    CHECK(advance_external_progress(registry, {statement_of(registry, Direction::up, 0)}, progress).empty());
    CHECK(advance_external_progress(registry, {statement_of(registry, Direction::up, 1)}, progress).size() == 1);
    // The down script: one statement.
    CHECK(advance_external_progress(registry, {statement_of(registry, Direction::down, 0)}, progress).size() == 1);
    // Unknown versions are ignored.
    CHECK(advance_external_progress(registry, {{"99", Direction::up, "x"}}, progress).empty());
}

TEST_CASE("fingerprint helpers: what a line is about, names as format('%I') writes them", "[fingerprint]") {
    using Subject = std::optional<std::pair<std::string, std::string>>;
    CHECK(fingerprint_subject("column public.profiles.timezone text null") == Subject{{"public", "profiles"}});
    CHECK(fingerprint_subject("table staging.profiles") == Subject{{"staging", "profiles"}});
    CHECK(fingerprint_subject("index public.profiles_pkey: CREATE UNIQUE INDEX ...") ==
          Subject{{"public", "profiles_pkey"}});
    CHECK(fingerprint_subject("function public.f(a integer) returns integer kind f body md5 x") ==
          Subject{{"public", "f"}});
    // Quoted: dots, spaces, colons and doubled quotes inside a name.
    CHECK(fingerprint_subject("column \"My Schema\".\"a.b: \"\"c\"\"\".x integer null") ==
          Subject{{"My Schema", "a.b: \"c\""}});
    CHECK(fingerprint_subject("schema staging") == std::nullopt);
    CHECK(fingerprint_subject("table \"unterminated.x") == std::nullopt);
    CHECK(fingerprint_subject("") == std::nullopt);
}

TEST_CASE("fingerprint helpers: the lines one description has and the other not; excluded names", "[fingerprint]") {
    const std::string before = "column public.t.a integer null\ntable public.t";
    const std::string after = "column public.t.a integer null\ncolumn public.t.b text null\ntable public.t";
    CHECK(lines_missing_from(after, before) == std::vector<std::string>{"column public.t.b text null"});
    CHECK(lines_missing_from(before, after).empty());
    CHECK(excluded_list({"pgmigrations", "knex_migrations", "bad name;", "pgmigrations"}) ==
          "knex_migrations,pgmigrations");
    SchemaDrift drift;
    drift.drifted = true;
    drift.reason = "applied 1_a";
    drift.added = {"column public.t.b text null"};
    drift.removed = {"index public.t_a: CREATE INDEX t_a ON public.t USING btree (a)"};
    drift.diff = "+column public.t.b text null\n";
    const auto detail = drift.detail();
    CHECK_THAT(detail, Catch::Contains("not in the ledger's schema: column public.t.b") &&
                           Catch::Contains("changed or gone since: index public.t_a") &&
                           Catch::Contains("--accept-schema") && Catch::EndsWith("+column public.t.b text null\n"));
}

TEST_CASE("fingerprint helpers: a baseline moved by one step's change keeps what changed around it",
          "[fingerprint]") {
    // Around pgrail, before the step: a table `notes` appeared. The step adds profiles.tz.
    const std::string baseline = "column public.profiles.id integer not null\ntable public.profiles";
    const std::string before = "column public.notes.a text null\ncolumn public.profiles.id integer not null\n"
                               "table public.notes\ntable public.profiles";
    const std::string after = "column public.notes.a text null\ncolumn public.profiles.id integer not null\n"
                              "column public.profiles.tz text null\ntable public.notes\ntable public.profiles";
    const auto change = change_between(before, after);
    CHECK(change.added == std::vector<std::string>{"column public.profiles.tz text null"});
    CHECK(change.removed.empty());
    const auto moved = moved_description(baseline, change);
    CHECK(moved == "column public.profiles.id integer not null\ncolumn public.profiles.tz text null\n"
                   "table public.profiles");
    // `notes` is still drift against the moved baseline.
    CHECK(lines_missing_from(after, moved) ==
          std::vector<std::string>{"column public.notes.a text null", "table public.notes"});
    // A removal and a change of type: out, and in with the new line.
    const auto back = moved_description(moved, change_between(after, before));
    CHECK(back == baseline);
    CHECK(moved_description("", {{"table public.t"}, {}}) == "table public.t");
    CHECK(moved_description("table public.t", {{}, {"table public.t"}}).empty());
}

TEST_CASE("fingerprint helpers: the names a line is about", "[fingerprint]") {
    using Names = std::vector<std::string>;
    CHECK(names_of_line("column public.profiles.timezone text null") == Names{"profiles"});
    CHECK(names_of_line("schema staging") == Names{"staging"});
    CHECK(names_of_line("schema \"My Schema\"") == Names{"My Schema"});
    CHECK(names_of_line("index public.profiles_pkey: CREATE UNIQUE INDEX profiles_pkey ON public.profiles USING "
                        "btree (id)") == Names{"profiles_pkey", "profiles"});
    CHECK(names_of_line("index s.\"i ON x\": CREATE INDEX \"i ON x\" ON ONLY \"S\".\"T t\" USING btree (a)") ==
          Names{"i ON x", "T t"});
    CHECK(names_of_line("sequence public.user_accounts_id_seq: bigint increment 1") ==
          Names{"user_accounts_id_seq", "user", "user_accounts", "user_accounts_id"});
    CHECK(names_of_line("sequence public.counter: bigint increment 1") == Names{"counter"});
    CHECK(names_of_line("function public.f(a integer) returns integer kind f body md5 x") == Names{"f"});
    CHECK(names_of_line("").empty());
}

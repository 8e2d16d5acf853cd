// The policy's migrations.lint: per-rule warn/block levels, inherited from defaults like the
// other migrations keys; without it, error-severity lint rules block (docs/lint.md).
#include <catch2/catch.hpp>

#include "pgrail/policy/loader.hpp"

using namespace pgrail::policy;
using pgrail::migrations::LintLevel;

TEST_CASE("migrations.lint sets per-rule levels and a default", "[policy][loader]") {
    const auto policy = load_policy_string(R"(version: 1
defaults:
  migrations:
    lint: {rules: {index-not-concurrent: block}}
rules:
  - name: owner
    match: {users: [app_owner]}
    migrations: {lint: {default: warn, rules: {drop-column: warn}}}
  - name: all
)",
                                           "lint");
    REQUIRE(policy->rules.size() == 2);
    const auto& owner = policy->rules[0].guards.lint;
    CHECK(owner.default_level == LintLevel::warn);
    CHECK(owner.level_for("drop-column") == LintLevel::warn);
    CHECK(owner.level_for("truncate") == LintLevel::warn);
    const auto& all = policy->rules[1].guards.lint;  // from defaults
    CHECK_FALSE(all.default_level.has_value());
    CHECK(all.level_for("index-not-concurrent") == LintLevel::block);
    CHECK(all.level_for("drop-column") == LintLevel::block);  // error severity
    CHECK(all.level_for("prefer-text") == LintLevel::warn);
}

TEST_CASE("without migrations.lint, error severity blocks and the rest warns", "[policy][loader]") {
    const auto policy = load_policy_string("version: 1\nrules:\n  - name: all\n", "plain");
    const auto& lint = policy->rules.at(0).guards.lint;
    CHECK(lint.rules.empty());
    CHECK(lint.level_for("drop-table") == LintLevel::block);
    CHECK(lint.level_for("set-not-null") == LintLevel::warn);
}

// The lint catalogue against tests/data/lint/cases.txt (each rule fires and does not), the
// catalogue's shape, policy levels, and the report formats (text, JSON, SARIF 2.1.0).
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "pgrail/migrations/lint.hpp"
#include "pgrail/migrations/proposals.hpp"

using namespace pgrail::migrations;

namespace {

struct LintCase {
    std::string title;
    std::string rule;  // the rule the case is about (the title's first word)
    std::size_t line = 0;
    std::multiset<std::string> expect;
    std::multiset<std::string> waived;
    std::string before, up, down;
    bool has_down = false;
};

std::vector<std::string> words(std::string_view text) {
    std::vector<std::string> out;
    std::istringstream in{std::string(text)};
    for (std::string word; in >> word;) out.push_back(word);
    return out;
}

std::vector<LintCase> read_cases() {
    std::ifstream in(PGRAIL_TEST_DATA "/lint/cases.txt");
    REQUIRE(in);
    std::vector<LintCase> cases;
    std::string* section = nullptr;
    std::string line;
    std::size_t number = 0;
    while (std::getline(in, line)) {
        ++number;
        if (line.starts_with("## case: ")) {
            LintCase c;
            c.title = line.substr(9);
            c.rule = c.title.substr(0, c.title.find(':'));
            c.line = number;
            cases.push_back(std::move(c));
            section = &cases.back().up;
        } else if (cases.empty()) {
            continue;  // the file's header
        } else if (line.starts_with("## expect: ")) {
            for (auto& word : words(line.substr(11)))
                if (word != "none") cases.back().expect.insert(word);
        } else if (line.starts_with("## waived: ")) {
            for (auto& word : words(line.substr(11))) cases.back().waived.insert(word);
        } else if (line == "## before") {
            section = &cases.back().before;
        } else if (line == "## up") {
            section = &cases.back().up;
        } else if (line == "## down") {
            section = &cases.back().down;
            cases.back().has_down = true;
        } else if (section != nullptr) {
            *section += line + "\n";
        }
    }
    return cases;
}

Registry registry_of(const LintCase& c) {
    std::map<std::string, std::string> files;
    if (!c.before.empty()) {
        files["1_before.up.sql"] = c.before;
        files["1_before.down.sql"] = "SELECT 1;\n";
    }
    files["2_case.up.sql"] = c.up;
    files["2_case.down.sql"] = c.has_down ? c.down : "SELECT 1;\n";
    return Registry::from_files("migrations", files);
}

std::string describe(const std::vector<LintFinding>& findings) {
    std::string out;
    for (const auto& f : findings)
        out += "\n  " + f.rule + (f.waived ? " (waived)" : "") + " line " + std::to_string(f.line) + ": " + f.message;
    return out.empty() ? " (none)" : out;
}

}  // namespace

TEST_CASE("every case of tests/data/lint/cases.txt finds exactly what it expects") {
    const auto cases = read_cases();
    REQUIRE(cases.size() > 60);
    for (const auto& c : cases) {
        INFO("cases.txt:" << c.line << " " << c.title);
        const Registry registry = registry_of(c);
        std::string invalid;
        for (const auto& file : registry.invalid_files()) invalid += file.path.string() + ": " + file.reason + "\n";
        INFO(invalid);
        const Migration* migration = registry.find("2");
        REQUIRE(migration != nullptr);
        std::multiset<std::string> found, waived;
        for (const auto& finding : migration->up.lint_findings) {
            if (finding.rule == "rollback-incomplete" && !c.has_down) continue;
            (finding.waived ? waived : found).insert(finding.rule);
            CHECK(finding.line > 0);
            CHECK_FALSE(finding.message.empty());
            if (finding.waived) CHECK_FALSE(finding.waiver_reason.empty());
        }
        INFO("findings:" << describe(migration->up.lint_findings));
        CHECK(found == c.expect);
        CHECK(waived == c.waived);
    }
}

TEST_CASE("every rule has a case that fires and a case that does not") {
    const auto cases = read_cases();
    for (const auto& rule : lint_catalogue) {
        INFO(rule.id);
        const bool fires = std::any_of(cases.begin(), cases.end(), [&](const LintCase& c) {
            return c.rule == rule.id && (c.expect.contains(std::string(rule.id)) || c.waived.contains(std::string(rule.id)));
        });
        const bool quiet = std::any_of(cases.begin(), cases.end(), [&](const LintCase& c) {
            return c.rule == rule.id && !c.expect.contains(std::string(rule.id));
        });
        CHECK(fires);
        CHECK(quiet);
    }
}

TEST_CASE("the catalogue: at least 25 rules, unique kebab-case ids, a message and a recipe each") {
    REQUIRE(lint_catalogue.size() >= 25);
    std::set<std::string_view> ids;
    for (const auto& rule : lint_catalogue) {
        INFO(rule.id);
        CHECK(ids.insert(rule.id).second);
        CHECK(std::all_of(rule.id.begin(), rule.id.end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '-'; }));
        CHECK_FALSE(rule.message.empty());
        CHECK_FALSE(rule.recipe.empty());
        CHECK(find_lint_rule(rule.id) == &rule);
    }
    CHECK(find_lint_rule("no-such-rule") == nullptr);
}

TEST_CASE("docs/lint.md explains every rule") {
    std::ifstream in(PGRAIL_TEST_DATA "/../../docs/lint.md");
    REQUIRE(in);
    const std::string docs((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (const auto& rule : lint_catalogue) {
        INFO(rule.id);
        CHECK(docs.find("### `" + std::string(rule.id) + "`") != std::string::npos);
    }
}

TEST_CASE("the seed migration lints clean") {
    const Registry registry = Registry::load(PGRAIL_TEST_DATA "/../../migrations");
    REQUIRE(registry.migrations().size() >= 1);
    for (const auto& migration : registry.migrations()) {
        INFO(migration.version << describe(migration.up.lint_findings));
        CHECK(migration.up.lint_findings.empty());
    }
}

TEST_CASE("policy levels: error severity blocks by default, rules and default override") {
    LintPolicy policy;
    CHECK(policy.level_for("drop-column") == LintLevel::block);
    CHECK(policy.level_for("index-not-concurrent") == LintLevel::warn);
    CHECK(policy.level_for("prefer-text") == LintLevel::warn);
    policy.rules["index-not-concurrent"] = LintLevel::block;
    policy.rules["drop-column"] = LintLevel::warn;
    CHECK(policy.level_for("index-not-concurrent") == LintLevel::block);
    CHECK(policy.level_for("drop-column") == LintLevel::warn);
    policy.default_level = LintLevel::block;
    CHECK(policy.level_for("prefer-text") == LintLevel::block);
    CHECK(policy.level_for("drop-column") == LintLevel::warn);

    const Registry registry = Registry::from_files(
        "m", {{"1_a.up.sql", "DROP TABLE profiles;\nCREATE INDEX i ON orders (x);\n"}, {"1_a.down.sql", "SELECT 1;"}});
    const auto& script = registry.migrations().at(0).up;
    const auto blocking = blocking_findings(script, LintPolicy{});
    REQUIRE(blocking.size() == 1);
    CHECK(blocking[0]->rule == "drop-table");
    CHECK(blocking[0]->line == 1);
    CHECK(waiver_hint(*blocking[0], script).find("-- pgrail:allow drop-table") != std::string::npos);
}

TEST_CASE("lint report: text, JSON and SARIF 2.1.0") {
    const Registry registry = Registry::from_files(
        "migrations", {{"1_a.up.sql", "ALTER TABLE profiles ADD COLUMN timezone text;\n"},
                       {"1_a.down.sql", "ALTER TABLE profiles DROP COLUMN timezone;\n"},
                       {"2_b.up.sql", "-- pgrail:allow drop-column nobody reads it\n\nALTER TABLE profiles DROP COLUMN x;\n"
                                      "CREATE INDEX i ON profiles (email);\n"},
                       {"2_b.down.sql", "ALTER TABLE profiles ADD COLUMN x text;\nDROP INDEX i;\n"},
                       {"3_c.up.sql", "TRUNCATE profiles;\n"},
                       {"3_c.down.sql", "SELECT 1;\n"}});
    REQUIRE(registry.invalid_files().empty());

    const auto text = lint_report(registry, LintFormat::text);
    CHECK(text.failed());
    CHECK(text.errors == 1);    // truncate
    CHECK(text.warnings == 1);  // index-not-concurrent
    CHECK(text.waived == 1);
    CHECK(text.blocked == 1);
    CHECK(text.output.find("migrations/2_b.up.sql:4: warning [index-not-concurrent]") != std::string::npos);
    CHECK(text.output.find("migrations/3_c.up.sql:1: error [truncate] (blocks apply)") != std::string::npos);
    CHECK(text.output.find("waived: nobody reads it") != std::string::npos);

    const auto json = nlohmann::json::parse(lint_report(registry, LintFormat::json).output);
    CHECK(json["summary"]["errors"] == 1);
    CHECK(json["summary"]["failed"] == true);
    CHECK(json["migrations"][0]["findings"].empty());
    CHECK(json["migrations"][1]["findings"][0]["rule"] == "drop-column");
    CHECK(json["migrations"][1]["findings"][0]["waived"] == true);
    CHECK(json["migrations"][2]["findings"][0]["level"] == "block");

    const auto sarif = nlohmann::json::parse(lint_report(registry, LintFormat::sarif).output);
    CHECK(sarif["version"] == "2.1.0");
    const auto& run = sarif["runs"][0];
    CHECK(run["tool"]["driver"]["name"] == "pgrail");
    CHECK(run["tool"]["driver"]["rules"].size() == lint_catalogue.size() + 1);
    bool saw_truncate = false;
    for (const auto& result : run["results"]) {
        const auto& rule = run["tool"]["driver"]["rules"][result["ruleIndex"].get<std::size_t>()];
        CHECK(rule["id"] == result["ruleId"]);
        CHECK(result["locations"][0]["physicalLocation"]["region"]["startLine"].get<int>() >= 1);
        if (result["ruleId"] == "truncate") {
            saw_truncate = true;
            CHECK(result["level"] == "error");
            CHECK(result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "migrations/3_c.up.sql");
        }
        if (result["ruleId"] == "drop-column") CHECK(result["suppressions"][0]["justification"] == "nobody reads it");
    }
    CHECK(saw_truncate);

    LintPolicy lenient;
    lenient.default_level = LintLevel::warn;
    const Registry clean = Registry::from_files("m", {{"1_a.up.sql", "CREATE INDEX i ON profiles (email);\n"},
                                                     {"1_a.down.sql", "DROP INDEX i;\n"}});
    CHECK_FALSE(lint_report(clean, LintFormat::text, lenient).failed());
}

TEST_CASE("lint timing over 100 migrations (reported, not asserted)") {
    std::map<std::string, std::string> files;
    for (int i = 1; i <= 100; ++i) {
        const std::string v = std::to_string(i);
        files[v + "_m.up.sql"] = "CREATE TABLE t" + v + " (id bigint PRIMARY KEY, name text, at timestamptz DEFAULT now());\n"
                                 "CREATE INDEX t" + v + "_name_idx ON t" + v + " (name);\n"
                                 "ALTER TABLE profiles ADD COLUMN c" + v + " text;\n"
                                 "ALTER TABLE profiles ALTER COLUMN c" + v + " SET DEFAULT 'x';\n";
        files[v + "_m.down.sql"] = "ALTER TABLE profiles DROP COLUMN c" + v + ";\nDROP TABLE t" + v + ";\n";
    }
    const auto start = std::chrono::steady_clock::now();
    const Registry registry = Registry::from_files("m", files);
    const auto report = lint_report(registry, LintFormat::sarif);
    const auto elapsed = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
    CHECK(registry.migrations().size() == 100);
    WARN("registry load + lint + SARIF of 100 migrations (400 statements): " << elapsed.count() << " ms");
}

TEST_CASE("a proposal's lint findings carry their severity; only infos leave it clean") {
    const auto findings_of = [](const std::string& up, const std::string& down) {
        return proposal_lint_findings(proposal_migration("1", "p", up, down));
    };
    CHECK(findings_of("ALTER TABLE profiles ADD COLUMN timezone text", "ALTER TABLE profiles DROP COLUMN timezone").empty());
    const auto index = findings_of("CREATE INDEX i ON profiles (email)", "DROP INDEX i");
    REQUIRE(index.size() == 1);
    CHECK(index[0].rule == "index-not-concurrent");
    CHECK(index[0].severity == "warning");
    CHECK_FALSE(proposal_is_clean(findings_json(index), "passed"));
    const auto info = findings_of("ALTER TABLE profiles ADD COLUMN seen timestamp", "ALTER TABLE profiles DROP COLUMN seen");
    REQUIRE(info.size() == 1);
    CHECK(info[0].severity == "info");
    CHECK(proposal_is_clean(findings_json(info), "passed"));
    CHECK_FALSE(proposal_is_clean(findings_json(info), "failed: x"));
    const auto drop = findings_of("ALTER TABLE profiles DROP COLUMN email", "SELECT 1");
    REQUIRE(drop.size() == 2);  // and rollback-incomplete: no ADD COLUMN email in the down script
    CHECK(drop[0].rule == "drop-column");
    CHECK(drop[0].severity == "error");
    CHECK(drop[1].rule == "rollback-incomplete");
}

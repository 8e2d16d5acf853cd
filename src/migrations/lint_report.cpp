// `pgrail migrate lint` output: text for people, JSON for scripts, SARIF 2.1.0 for code-scanning
// tools (GitHub code scanning and the like read runs[].tool.driver.rules and results).
#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "pgrail/migrations/lint.hpp"

namespace pgrail::migrations {
namespace {

const char* sarif_level(LintSeverity severity) {
    switch (severity) {
    case LintSeverity::error: return "error";
    case LintSeverity::warning: return "warning";
    case LintSeverity::info: return "note";
    }
    return "warning";
}

std::string recipe_of(std::string_view rule) {
    const LintRuleInfo* info = find_lint_rule(rule);
    return info != nullptr ? std::string(info->recipe) : std::string();
}

void count(LintReport& report, const LintFinding& finding, const LintPolicy& policy) {
    if (finding.waived) {
        ++report.waived;
        return;
    }
    if (finding.severity == LintSeverity::error) ++report.errors;
    else if (finding.severity == LintSeverity::warning) ++report.warnings;
    else ++report.infos;
    if (policy.level_for(finding.rule) == LintLevel::block) ++report.blocked;
}

std::string summary(const LintReport& report, std::size_t migrations) {
    return fmt::format("{} migration{}: {} error{}, {} warning{}, {} info, {} waived, {} blocked by policy{}",
                       migrations, migrations == 1 ? "" : "s", report.errors, report.errors == 1 ? "" : "s",
                       report.warnings, report.warnings == 1 ? "" : "s", report.infos, report.waived, report.blocked,
                       report.invalid > 0 ? fmt::format(", {} invalid file{}", report.invalid, report.invalid == 1 ? "" : "s")
                                          : std::string());
}

}  // namespace

LintReport lint_report(const Registry& registry, LintFormat format, const LintPolicy& policy) {
    LintReport report;
    report.invalid = registry.invalid_files().size();
    for (const auto& migration : registry.migrations())
        for (const auto& finding : migration.up.lint_findings) count(report, finding, policy);

    if (format == LintFormat::text) {
        std::string out;
        for (const auto& migration : registry.migrations()) {
            const std::string file = migration.up.path.generic_string();
            for (const auto& finding : migration.up.lint_findings) {
                const LintLevel level = policy.level_for(finding.rule);
                out += fmt::format("{}:{}: {} [{}]{} {}\n", file, finding.line, to_string(finding.severity), finding.rule,
                                   finding.waived ? " (waived)" : level == LintLevel::block ? " (blocks apply)" : "",
                                   finding.message);
                if (finding.waived) out += fmt::format("    waived: {}\n", finding.waiver_reason);
                else out += fmt::format("    safe way: {}\n", recipe_of(finding.rule));
            }
        }
        for (const auto& invalid : registry.invalid_files())
            out += fmt::format("{}: invalid: {}\n", invalid.path.generic_string(), invalid.reason);
        out += summary(report, registry.migrations().size()) + "\n";
        report.output = std::move(out);
        return report;
    }

    if (format == LintFormat::json) {
        nlohmann::json migrations = nlohmann::json::array();
        for (const auto& migration : registry.migrations()) {
            nlohmann::json findings = nlohmann::json::array();
            for (const auto& finding : migration.up.lint_findings) {
                nlohmann::json entry{{"rule", finding.rule},
                                     {"severity", to_string(finding.severity)},
                                     {"level", to_string(policy.level_for(finding.rule))},
                                     {"line", finding.line},
                                     {"message", finding.message},
                                     {"recipe", recipe_of(finding.rule)},
                                     {"waived", finding.waived}};
                if (finding.waived) entry["waiver_reason"] = finding.waiver_reason;
                findings.push_back(std::move(entry));
            }
            migrations.push_back({{"version", migration.version},
                                  {"name", migration.name},
                                  {"file", migration.up.path.generic_string()},
                                  {"findings", std::move(findings)}});
        }
        nlohmann::json invalid = nlohmann::json::array();
        for (const auto& file : registry.invalid_files())
            invalid.push_back({{"file", file.path.generic_string()}, {"reason", file.reason}});
        const nlohmann::json document{{"migrations", std::move(migrations)},
                                      {"invalid_files", std::move(invalid)},
                                      {"summary",
                                       {{"errors", report.errors},
                                        {"warnings", report.warnings},
                                        {"infos", report.infos},
                                        {"waived", report.waived},
                                        {"blocked", report.blocked},
                                        {"invalid", report.invalid},
                                        {"failed", report.failed()}}}};
        report.output = document.dump(2) + "\n";
        return report;
    }

    // SARIF 2.1.0: one run, the catalogue as the driver's rules (plus invalid-file), one result
    // per finding; a waived finding carries an in-source suppression with its reason.
    nlohmann::json rules = nlohmann::json::array();
    std::map<std::string, std::size_t, std::less<>> index;
    for (const auto& rule : lint_catalogue) {
        index.emplace(std::string(rule.id), rules.size());
        rules.push_back({{"id", rule.id},
                         {"name", rule.id},
                         {"shortDescription", {{"text", rule.message}}},
                         {"fullDescription", {{"text", fmt::format("{} Safe way: {}", rule.message, rule.recipe)}}},
                         {"help", {{"text", rule.recipe}}},
                         {"defaultConfiguration", {{"level", sarif_level(rule.severity)}}},
                         {"properties", {{"severity", to_string(rule.severity)}}}});
    }
    index.emplace("invalid-file", rules.size());
    rules.push_back({{"id", "invalid-file"},
                     {"name", "invalid-file"},
                     {"shortDescription", {{"text", "a file in the migrations directory is not a valid migration"}}},
                     {"defaultConfiguration", {{"level", "error"}}}});
    const auto location = [](const std::string& uri, std::size_t line) {
        return nlohmann::json::array(
            {{{"physicalLocation",
               {{"artifactLocation", {{"uri", uri}}}, {"region", {{"startLine", std::max<std::size_t>(line, 1)}}}}}}});
    };
    nlohmann::json results = nlohmann::json::array();
    for (const auto& migration : registry.migrations()) {
        for (const auto& finding : migration.up.lint_findings) {
            const bool blocks = !finding.waived && policy.level_for(finding.rule) == LintLevel::block;
            nlohmann::json result{{"ruleId", finding.rule},
                                  {"level", blocks ? "error" : sarif_level(finding.severity)},
                                  {"message", {{"text", finding.message}}},
                                  {"locations", location(migration.up.path.generic_string(), finding.line)}};
            if (const auto found = index.find(finding.rule); found != index.end()) result["ruleIndex"] = found->second;
            if (finding.waived)
                result["suppressions"] = nlohmann::json::array({{{"kind", "inSource"}, {"justification", finding.waiver_reason}}});
            results.push_back(std::move(result));
        }
    }
    for (const auto& file : registry.invalid_files())
        results.push_back({{"ruleId", "invalid-file"},
                           {"ruleIndex", index.at("invalid-file")},
                           {"level", "error"},
                           {"message", {{"text", file.reason}}},
                           {"locations", location(file.path.generic_string(), 1)}});
    const nlohmann::json sarif{
        {"$schema", "https://json.schemastore.org/sarif-2.1.0.json"},
        {"version", "2.1.0"},
        {"runs",
         nlohmann::json::array({{{"tool",
                                  {{"driver",
                                    {{"name", "pgrail"},
                                     {"version", PGRAIL_VERSION},
                                     {"rules", std::move(rules)}}}}},
                                 {"results", std::move(results)}}})}};
    report.output = sarif.dump(2) + "\n";
    return report;
}

}  // namespace pgrail::migrations

// The lint driver: parses each statement of a migration with libpg_query, runs the catalogue's
// checks over the up script in order (updating what is known about the schema as it goes), pairs
// up against down, and applies the scripts' waivers.
#include "pgrail/migrations/lint.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "../sql/pg_query_handle.hpp"
#include "pgrail/migrations/error.hpp"
#include "pgrail/protocol/sqlstate.hpp"
#include "lint_internal.hpp"

namespace pgrail::migrations {
namespace lint_detail {

struct ParsedScript::Tree {
    explicit Tree(const std::string& text) : handle(pg_query_parse(text.c_str())) {}
    sql::detail::ParseHandle handle;
    sql::detail::JsonTree tree;
};

ParsedScript::ParsedScript(const Script& script) {
    for (const auto& statement : script.statements) {
        // The registry analysed every statement already; one that did not parse (or exceeded
        // pgrail's bounds) has nothing to lint.
        if (statement.statement_class == sql::StatementClass::unknown) continue;
        auto tree = std::make_unique<Tree>(statement.text);
        if (tree->handle->error != nullptr || tree->handle->parse_tree == nullptr) continue;
        if (!tree->tree.parse(tree->handle->parse_tree)) continue;
        for (const Node raw : tree->tree.root().find("stmts")) {
            const Node wrapper = raw.find("stmt");
            if (!wrapper.is_object() || wrapper.empty()) continue;
            statements_.push_back(Stmt{&statement, type_of(wrapper), body_of(wrapper)});
        }
        trees_.push_back(std::move(tree));
    }
}

ParsedScript::~ParsedScript() = default;

std::string_view type_of(Node wrapper) {
    const Node member = wrapper.front();
    return member.valid() ? member.key() : std::string_view();
}

Node body_of(Node wrapper) { return wrapper.front(); }

std::string_view str(Node node, std::string_view key) {
    const Node value = node.find(key);
    return value.is_string() ? value.text() : std::string_view();
}

bool flag(Node node, std::string_view key) { return node.find(key).boolean(); }

std::string last_name(Node names) {
    std::string last;
    for (const Node name : names)
        if (type_of(name) == "String") last = std::string(str(body_of(name), "sval"));
    return last;
}

std::vector<std::string> object_names(Node objects) {
    std::vector<std::string> names;
    for (const Node object : objects) {
        const std::string_view kind = type_of(object);
        if (kind == "List") names.push_back(last_name(body_of(object).find("items")));
        else if (kind == "String") names.emplace_back(str(body_of(object), "sval"));
        else if (kind == "TypeName") names.push_back(last_name(body_of(object).find("names")));
        else if (kind == "ObjectWithArgs") names.push_back(last_name(body_of(object).find("objname")));
    }
    return names;
}

std::string relation_name(Node range_var) { return std::string(str(range_var, "relname")); }

ColumnType column_type(Node type_name) {
    ColumnType type;
    type.name = last_name(type_name.find("names"));
    for (const Node modifier : type_name.find("typmods")) {
        const Node constant = body_of(modifier);
        if (type_of(modifier) == "A_Const" && constant.contains("ival"))
            type.modifiers.push_back(constant.find("ival").find("ival").integer());
    }
    type.array = type_name.contains("arrayBounds");
    return type;
}

std::string describe(const ColumnType& type) {
    static const std::map<std::string, std::string, std::less<>> names{
        {"int2", "smallint"}, {"int4", "integer"}, {"int8", "bigint"}, {"bpchar", "char"},
        {"varchar", "varchar"}, {"float4", "real"}, {"float8", "double precision"}, {"bool", "boolean"},
    };
    const auto found = names.find(type.name);
    std::string out = found != names.end() ? found->second : type.name;
    if (!type.modifiers.empty()) {
        out += '(';
        for (std::size_t i = 0; i < type.modifiers.size(); ++i)
            out += (i == 0 ? "" : ",") + std::to_string(type.modifiers[i]);
        out += ')';
    }
    if (type.array) out += "[]";
    return out;
}

void LintContext::report(std::string_view rule, const Stmt& stmt, std::string message) const {
    const LintRuleInfo* info = find_lint_rule(rule);
    LintFinding finding;
    finding.rule = std::string(rule);
    finding.message = std::move(message);
    finding.severity = info != nullptr ? info->severity : LintSeverity::warning;
    finding.line = stmt.source != nullptr ? stmt.source->line : 0;
    findings.push_back(std::move(finding));
}

namespace {

// The line of the `-- pgrail:allow <rule>` directive (waivers are leading comments).
std::size_t waiver_line(const Script& script, std::string_view rule) {
    std::size_t line = 1;
    std::size_t position = 0;
    const std::string& text = script.text;
    while (position < text.size()) {
        const std::size_t end = std::min(text.find('\n', position), text.size());
        const std::string_view current(text.data() + position, end - position);
        const std::size_t allow = current.find("pgrail:allow");
        if (allow != std::string_view::npos && current.find(rule, allow) != std::string_view::npos) return line;
        position = end + 1;
        ++line;
    }
    return 1;
}

// Lints `migration`'s up script against `model` (updated with what it does).
std::vector<LintFinding> lint_with(const Migration& migration, SchemaModel& model) {
    std::vector<LintFinding> findings;
    const ParsedScript up(migration.up);
    const ParsedScript down(migration.down);
    LintContext ctx{migration.up, model, {}, findings};
    // The script-level checks replay creations themselves; they see the model as it was.
    SchemaModel before = model;
    LintContext script_ctx{migration.up, before, {}, findings};
    for (const auto& stmt : up.statements()) {
        for (const auto& check : rule_checks())
            if (check.statement != nullptr) check.statement(ctx, stmt);
        apply(ctx, stmt);
    }
    for (const auto& check : rule_checks())
        if (check.script != nullptr) check.script(script_ctx, up.statements());
    check_rollback(script_ctx, up.statements(), down.statements());

    // Waivers: the up script's, and for the pairing the down script's as well.
    for (const Script* script : {&migration.up, &migration.down}) {
        for (const auto& waiver : script->waivers) {
            if (find_lint_rule(waiver.rule) == nullptr) {
                LintFinding finding;
                finding.rule = "unknown-waiver";
                finding.severity = find_lint_rule("unknown-waiver")->severity;
                finding.message = fmt::format("`-- pgrail:allow {}` in {}: no lint rule has that id, so it waives nothing",
                                              waiver.rule, script->path.filename().string());
                finding.line = waiver_line(*script, waiver.rule);
                findings.push_back(std::move(finding));
            }
        }
    }
    for (auto& finding : findings) {
        const auto waives = [&](const Script& script) {
            return std::find_if(script.waivers.begin(), script.waivers.end(),
                                [&](const LintWaiver& waiver) { return waiver.rule == finding.rule; });
        };
        auto found = waives(migration.up);
        if (found != migration.up.waivers.end()) {
            finding.waived = true;
            finding.waiver_reason = found->reason;
        } else if (finding.rule == "rollback-incomplete") {
            found = waives(migration.down);
            if (found != migration.down.waivers.end()) {
                finding.waived = true;
                finding.waiver_reason = found->reason;
            }
        }
    }
    std::stable_sort(findings.begin(), findings.end(),
                     [](const LintFinding& a, const LintFinding& b) { return a.line < b.line; });
    return findings;
}

}  // namespace
}  // namespace lint_detail

void lint_migrations(std::vector<Migration>& migrations) {
    lint_detail::SchemaModel model;
    for (auto& migration : migrations) migration.up.lint_findings = lint_detail::lint_with(migration, model);
}

std::vector<LintFinding> lint_migration(const Migration& migration) {
    lint_detail::SchemaModel model;
    return lint_detail::lint_with(migration, model);
}

std::vector<const LintFinding*> blocking_findings(const Script& script, const LintPolicy& policy) {
    std::vector<const LintFinding*> out;
    for (const auto& finding : script.lint_findings)
        if (!finding.waived && policy.level_for(finding.rule) == LintLevel::block) out.push_back(&finding);
    return out;
}

void check_lint_policy(const Migration& migration, const LintPolicy& policy) {
    const auto blocked = blocking_findings(migration.up, policy);
    if (blocked.empty()) return;
    const LintFinding& first = *blocked.front();
    std::string detail;
    for (const LintFinding* finding : blocked)
        detail += fmt::format("{}{}:{}: [{}] {}", detail.empty() ? "" : "\n", migration.up.path.filename().string(),
                              finding->line, finding->rule, finding->message);
    throw MigrationError(sqlstate::object_not_in_prerequisite_state,
                         fmt::format("migration {}_{} is blocked by lint rule {} at line {} of {}", migration.version,
                                     migration.name, first.rule, first.line, migration.up.path.filename().string()),
                         std::move(detail),
                         fmt::format("{} (the policy's migrations.lint says block; see docs/lint.md)",
                                     waiver_hint(first, migration.up)));
}

std::string waiver_hint(const LintFinding& finding, const Script& script) {
    return fmt::format("add `-- pgrail:allow {} <why this is safe>` to the leading comments of {}", finding.rule,
                       script.path.filename().string());
}

}  // namespace pgrail::migrations

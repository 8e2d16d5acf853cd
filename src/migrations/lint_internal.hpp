// Internals shared by the lint driver (lint.cpp), its rules (lint_rules.cpp) and the rollback
// pairing (lint_rollback.cpp): parsed statements as libpg_query JSON trees and what the lint
// knows about the schema the directory builds.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "../sql/json_tree.hpp"
#include "pgrail/migrations/lint.hpp"

namespace pgrail::migrations::lint_detail {

using Node = sql::detail::JsonNode;

// One statement of a script with its parse tree: `type` is the node name ("AlterTableStmt"),
// `body` its members.
struct Stmt {
    const ScriptStatement* source = nullptr;
    std::string_view type;
    Node body;
};

// A script's statements parsed (the trees stay alive as long as this does).
class ParsedScript {
public:
    explicit ParsedScript(const Script& script);
    ~ParsedScript();
    ParsedScript(const ParsedScript&) = delete;
    ParsedScript& operator=(const ParsedScript&) = delete;
    [[nodiscard]] const std::vector<Stmt>& statements() const { return statements_; }

private:
    struct Tree;
    std::vector<std::unique_ptr<Tree>> trees_;
    std::vector<Stmt> statements_;
};

struct ColumnType {
    std::string name;                // last element of the type's name: "int4", "varchar", "text"
    std::vector<long long> modifiers;
    bool array = false;
    bool operator==(const ColumnType&) const = default;
};

struct CheckState {
    std::string not_null_column;  // the column of a CHECK (col IS NOT NULL), else empty
    bool validated = false;
};

struct TableState {
    std::map<std::string, ColumnType> columns;
    std::map<std::string, CheckState> checks;  // by constraint name
};

// What earlier statements (of this and earlier migrations) created: tables by name (unqualified,
// as the parser folded it).
struct SchemaModel {
    std::map<std::string, TableState> tables;
};

struct LintContext {
    const Script& script;
    SchemaModel& model;
    std::set<std::string> created;  // tables this script created so far
    std::vector<LintFinding>& findings;

    // A table the migration did not create: it may hold rows and serve queries.
    [[nodiscard]] bool existing(std::string_view table) const { return !created.contains(std::string(table)); }
    void report(std::string_view rule, const Stmt& stmt, std::string message) const;
};

// Tree helpers.
[[nodiscard]] std::string_view type_of(Node wrapper);  // {"X": {...}} -> "X"
[[nodiscard]] Node body_of(Node wrapper);              // {"X": {...}} -> {...}
[[nodiscard]] std::string_view str(Node node, std::string_view key);
[[nodiscard]] bool flag(Node node, std::string_view key);
[[nodiscard]] std::string last_name(Node names);       // [String, String] -> last sval
// The last name of each object of a DROP/COMMENT-style object list (List, String, TypeName,
// ObjectWithArgs items).
[[nodiscard]] std::vector<std::string> object_names(Node objects);
[[nodiscard]] std::string relation_name(Node range_var);
[[nodiscard]] ColumnType column_type(Node type_name);
[[nodiscard]] std::string describe(const ColumnType& type);

// The checks, in the catalogue's order where they are per statement.
using StatementCheck = void (*)(LintContext&, const Stmt&);
using ScriptCheck = void (*)(LintContext&, const std::vector<Stmt>&);
struct RuleCheck {
    std::string_view id;
    StatementCheck statement = nullptr;
    ScriptCheck script = nullptr;
};
[[nodiscard]] const std::vector<RuleCheck>& rule_checks();

// Updates the model (and ctx.created) with what `stmt` did.
void apply(LintContext& ctx, const Stmt& stmt);

// rollback-incomplete: what up changes that down does not undo.
void check_rollback(LintContext& ctx, const std::vector<Stmt>& up, const std::vector<Stmt>& down);

}  // namespace pgrail::migrations::lint_detail

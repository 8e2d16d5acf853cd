// The registry: the migrations directory read into checked, checksummed, parsed migrations.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pgrail/migrations/lint_catalogue.hpp"
#include "pgrail/sql/statement.hpp"

namespace pgrail::migrations {

enum class Direction { up, down };
const char* to_string(Direction direction);

// `-- pgrail:allow <lint-rule> <reason>` in a script's leading comments.
struct LintWaiver {
    std::string rule;
    std::string reason;
    bool operator==(const LintWaiver&) const = default;
};

// A lint finding on a script (lint.hpp fills them when the registry loads; docs/lint.md).
struct LintFinding {
    std::string rule;
    std::string message;
    bool waived = false;
    LintSeverity severity = LintSeverity::warning;
    std::size_t line = 0;       // 1-based line of the statement in the script (0: the whole script)
    std::string waiver_reason;  // the `-- pgrail:allow` reason when waived
    bool operator==(const LintFinding&) const = default;
};

// One statement of a script: its text and what the analyzer says about it.
struct ScriptStatement {
    std::string text;          // the statement's own bytes (no trailing semicolon)
    std::size_t offset = 0;    // byte offset in the file
    std::size_t line = 1;      // 1-based line of its first byte
    sql::StatementClass statement_class = sql::StatementClass::unknown;
    std::string tag;
    std::string structural_form;  // sql::Statement::structural_form: what a migrator's statement must equal
};

struct Script {
    std::filesystem::path path;
    std::string text;
    std::vector<ScriptStatement> statements;  // what the runner executes, in order
    bool no_transaction = false;              // `-- pgrail:no-transaction`
    std::vector<LintWaiver> waivers;
    std::vector<LintFinding> lint_findings;
};

struct Migration {
    std::string version;   // canonical: decimal digits without leading zeros ("0" for zero)
    std::string name;
    std::string checksum;  // lower-case hex, see migration_checksum()
    Script up;
    Script down;
    // From an approved proposal (pgrail.migration_proposals), not a file: it is applied only while
    // the proposal is still approved with this checksum (runner.cpp, check_still_approved).
    bool proposed = false;
};

// A file in the directory that is not part of a registered migration, and why.
struct InvalidFile {
    std::filesystem::path path;
    std::optional<std::string> version;  // canonical, when the name carries one
    std::string reason;
};

class Registry {
public:
    // Reads every file of `dir` (not recursive; names starting with '.' are skipped).
    // Never throws for bad files (they become InvalidFile); throws std::runtime_error
    // only when `dir` cannot be read at all.
    static Registry load(const std::filesystem::path& dir);
    // Builds a registry from in-memory files (name -> content), as load() does from disk.
    static Registry from_files(const std::filesystem::path& dir, const std::map<std::string, std::string>& files);
    // As from_files(), plus the directory's entries that could not be read (not a regular file,
    // unreadable), which load() reports as invalid files.
    static Registry from_listing(const std::filesystem::path& dir, const std::map<std::string, std::string>& files,
                                 const std::vector<InvalidFile>& unreadable);

    // This registry plus `extra` (approved proposals), in version order; an extra migration whose
    // version is already registered is left out (merge_proposals decides about those first).
    [[nodiscard]] Registry with_migrations(std::vector<Migration> extra) const;

    [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
    // Registered migrations in ascending version order.
    [[nodiscard]] const std::vector<Migration>& migrations() const { return migrations_; }
    [[nodiscard]] const std::vector<InvalidFile>& invalid_files() const { return invalid_; }
    [[nodiscard]] const Migration* find(std::string_view version) const;
    // Reasons recorded for files carrying `version` (empty when none).
    [[nodiscard]] std::vector<const InvalidFile*> invalid_for(std::string_view version) const;

private:
    std::filesystem::path dir_;
    std::vector<Migration> migrations_;
    std::vector<InvalidFile> invalid_;
};

// Version text as given by a user ("0042", "20261125090000"): the canonical form, or
// nullopt when it is not a non-empty string of decimal digits.
[[nodiscard]] std::optional<std::string> canonical_version(std::string_view text);
// Numeric order of canonical versions of any length (length first, then digits).
[[nodiscard]] bool version_less(std::string_view a, std::string_view b);

// SHA-256 over SHA-256(up) || SHA-256(down), lower-case hex: unambiguous for any content.
[[nodiscard]] std::string migration_checksum(std::string_view up, std::string_view down);
[[nodiscard]] std::string sha256_hex(std::string_view data);

// Parses one script (directives and statements); on failure returns the reason.
struct ScriptParse {
    Script script;
    std::optional<std::string> error;
};
[[nodiscard]] ScriptParse parse_script(const std::filesystem::path& path, std::string text);

}  // namespace pgrail::migrations

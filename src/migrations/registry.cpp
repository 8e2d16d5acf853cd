// The registry: reads <version>_<name>.up.sql / .down.sql pairs, checks them, checksums them.
#include "pgrail/migrations/registry.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <array>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

#include "pgrail/migrations/lint.hpp"
#include "pgrail/sql/analyzer.hpp"

namespace pgrail::migrations {

namespace fs = std::filesystem;

const char* to_string(Direction direction) { return direction == Direction::up ? "up" : "down"; }

std::optional<std::string> canonical_version(std::string_view text) {
    if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
    const auto first = text.find_first_not_of('0');
    if (first == std::string_view::npos) return std::string("0");
    return std::string(text.substr(first));
}

bool version_less(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return a.size() < b.size();
    return a < b;
}

namespace {

std::array<unsigned char, 32> sha256(std::string_view data) {
    std::array<unsigned char, 32> digest{};
    unsigned int length = 0;
    if (EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 || length != 32)
        throw std::runtime_error("SHA-256 failed (OpenSSL EVP_Digest)");
    return digest;
}

std::string hex(const std::array<unsigned char, 32>& digest) {
    std::string out;
    out.reserve(64);
    for (const unsigned char byte : digest) out += fmt::format("{:02x}", byte);
    return out;
}

std::string_view trim(std::string_view text) {
    const auto begin = text.find_first_not_of(" \t\r\n");
    if (begin == std::string_view::npos) return {};
    const auto end = text.find_last_not_of(" \t\r\n");
    return text.substr(begin, end - begin + 1);
}

std::size_t line_of(std::string_view text, std::size_t offset) {
    offset = std::min(offset, text.size());
    return 1 + static_cast<std::size_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n'));
}

// Skips whitespace and comments that libpg_query counts as part of a statement's range,
// so reported offsets and lines point at the statement's first keyword.
std::size_t skip_leading_comments(std::string_view text, std::size_t pos, std::size_t end) {
    while (pos < end) {
        const char c = text[pos];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            ++pos;
        } else if (text.substr(pos, 2) == "--") {
            const auto eol = text.find('\n', pos);
            pos = eol == std::string_view::npos ? end : eol + 1;
        } else if (text.substr(pos, 2) == "/*") {
            const auto close = text.find("*/", pos + 2);
            pos = close == std::string_view::npos ? end : close + 2;
        } else {
            break;
        }
    }
    return std::min(pos, end);
}

// A directive line's body after "pgrail:", or nullopt when the line is not a directive.
std::optional<std::string_view> directive_body(std::string_view line) {
    line = trim(line);
    if (line.substr(0, 2) != "--") return std::nullopt;
    line = trim(line.substr(2));
    if (line.substr(0, 7) != "pgrail:") return std::nullopt;
    return trim(line.substr(7));
}

std::optional<std::string> parse_directives(std::string_view text, Script& script) {
    bool leading = true;
    std::size_t line_number = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        const auto eol = text.find('\n', pos);
        const std::string_view line = text.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
        ++line_number;
        const std::string_view trimmed = trim(line);
        const auto body = directive_body(line);
        if (body && !leading)
            return fmt::format("line {}: pgrail directive after the first statement is not honoured; move it to the "
                               "leading comments",
                               line_number);
        if (body) {
            const auto space = body->find_first_of(" \t");
            const std::string_view word = body->substr(0, space);
            const std::string_view rest = space == std::string_view::npos ? std::string_view{} : trim(body->substr(space));
            if (word == "no-transaction") {
                if (!rest.empty())
                    return fmt::format("line {}: `-- pgrail:no-transaction` takes no arguments", line_number);
                script.no_transaction = true;
            } else if (word == "allow") {
                const auto rule_end = rest.find_first_of(" \t");
                const std::string_view rule = rest.substr(0, rule_end);
                const std::string_view reason =
                    rule_end == std::string_view::npos ? std::string_view{} : trim(rest.substr(rule_end));
                if (rule.empty() || reason.empty())
                    return fmt::format("line {}: `-- pgrail:allow` needs a lint rule and a reason, e.g. "
                                       "`-- pgrail:allow <rule> <why this is safe>`",
                                       line_number);
                script.waivers.push_back({std::string(rule), std::string(reason)});
            } else {
                return fmt::format("line {}: unknown directive `pgrail:{}` (known: no-transaction, allow)", line_number,
                                   word);
            }
        } else if (!trimmed.empty() && trimmed.substr(0, 2) != "--") {
            leading = false;
        }
        if (eol == std::string_view::npos) break;
        pos = eol + 1;
    }
    return std::nullopt;
}

bool is_begin(const ScriptStatement& statement) {
    return statement.statement_class == sql::StatementClass::transaction &&
           (statement.tag == "BEGIN" || statement.tag == "START TRANSACTION");
}

bool is_commit(const ScriptStatement& statement) {
    return statement.statement_class == sql::StatementClass::transaction && statement.tag == "COMMIT";
}

}  // namespace

std::string sha256_hex(std::string_view data) { return hex(sha256(data)); }

std::string migration_checksum(std::string_view up, std::string_view down) {
    const auto up_digest = sha256(up);
    const auto down_digest = sha256(down);
    std::string both(up_digest.begin(), up_digest.end());
    both.append(down_digest.begin(), down_digest.end());
    return sha256_hex(both);
}

ScriptParse parse_script(const fs::path& path, std::string text) {
    ScriptParse result;
    Script& script = result.script;
    script.path = path;
    if (auto error = parse_directives(text, script)) {
        result.error = std::move(error);
        script.text = std::move(text);
        return result;
    }
    const sql::Analysis analysis = sql::analyze(text);
    const auto parse_error = [&](const sql::ParseError& error) {
        return error.cursor > 0 ? fmt::format("does not parse: {} (line {})", error.message, line_of(text, error.cursor - 1))
                                : fmt::format("does not parse: {}", error.message);
    };
    if (analysis.error) {
        result.error = parse_error(*analysis.error);
    }
    for (const sql::Statement& statement : analysis.statements) {
        if (result.error) break;
        if (statement.error) {
            result.error = parse_error(*statement.error);
            break;
        }
        const std::size_t end = std::min(text.size(), statement.offset + statement.length);
        const std::size_t begin = skip_leading_comments(text, statement.offset, end);
        if (begin == end) continue;
        ScriptStatement out;
        out.text = text.substr(statement.offset, end - statement.offset);
        out.offset = begin;
        out.line = line_of(text, begin);
        out.statement_class = statement.statement_class;
        out.tag = statement.tag;
        out.structural_form = statement.structural_form;
        script.statements.push_back(std::move(out));
    }
    if (!result.error) {
        // Fail closed: every byte outside the statements must be a separator or a comment,
        // so no text the analyzer did not account for can reach the database unchecked.
        std::size_t covered = 0;
        const auto check_gap = [&](std::size_t from, std::size_t to) {
            for (std::size_t pos = skip_leading_comments(text, from, to); pos < to;
                 pos = skip_leading_comments(text, pos + 1, to)) {
                if (text[pos] != ';') {
                    result.error = fmt::format("does not parse: unrecognised text at line {}", line_of(text, pos));
                    return;
                }
            }
        };
        for (const sql::Statement& statement : analysis.statements) {
            if (statement.offset > covered) check_gap(covered, std::min(statement.offset, text.size()));
            covered = std::max(covered, std::min(text.size(), statement.offset + statement.length));
        }
        if (!result.error) check_gap(covered, text.size());
    }
    if (!result.error) {
        // A golang-migrate style `BEGIN; ... COMMIT;` wrapper means what the runner does anyway.
        auto& statements = script.statements;
        if (statements.size() >= 2 && is_begin(statements.front()) && is_commit(statements.back()) &&
            !script.no_transaction) {
            statements.pop_back();
            statements.erase(statements.begin());
        }
        for (const auto& statement : statements) {
            if (statement.statement_class == sql::StatementClass::transaction) {
                result.error = fmt::format(
                    "line {}: transaction control ({}) is not allowed: the runner runs each migration in its own "
                    "transaction (or statement by statement with `-- pgrail:no-transaction`)",
                    statement.line, statement.tag);
                break;
            }
        }
    }
    if (!result.error) {
        // pgrail splits and reads a script as the runner's connection lexes it (standard_conforming_strings
        // on, UTF8: detail::connect pins both). A statement that changes either makes the server
        // read the statements after it otherwise: review 97 hid an ALTER TABLE ... DROP
        // CONSTRAINT in a string literal behind `SET standard_conforming_strings = off`.
        // (The values the runner pins pass: pg_dump's header sets both, and so do the structure
        // dumps and baselines made from it; review 98.)
        // (The analyzer gives constants in lower case.)
        const auto changes_reading = [](const sql::SettingChange& setting) {
            const std::string_view value = setting.value;
            if (setting.name == "standard_conforming_strings")
                return value != "on" && value != "true" && value != "yes" && value != "1";
            if (setting.name == "client_encoding") return sql::encoding_key(value) != "utf8";
            return setting.name == "all" || setting.name == "*" || setting.name == "transform_null_equals";
        };
        for (const sql::Statement& statement : analysis.statements) {
            const bool lexing = statement.tag == "DISCARD ALL" ||
                                std::any_of(statement.settings.begin(), statement.settings.end(), changes_reading);
            if (!lexing) continue;
            result.error = fmt::format(
                "line {}: a migration may not change how its text is read (standard_conforming_strings, "
                "client_encoding, RESET ALL, DISCARD ALL, set_config of a computed name): pgrail reads it with "
                "standard_conforming_strings on, in UTF8, as the runner's connection does",
                line_of(text, skip_leading_comments(text, statement.offset, std::min(text.size(),
                                                                                    statement.offset + statement.length))));
            break;
        }
    }
    script.text = std::move(text);
    return result;
}

namespace {

struct FileName {
    std::string version;  // canonical
    std::string name;
    Direction direction;
};

std::optional<FileName> parse_file_name(std::string_view file) {
    std::optional<Direction> direction;
    if (file.ends_with(".up.sql")) {
        direction = Direction::up;
        file.remove_suffix(7);
    } else if (file.ends_with(".down.sql")) {
        direction = Direction::down;
        file.remove_suffix(9);
    } else {
        return std::nullopt;
    }
    const auto underscore = file.find('_');
    if (underscore == std::string_view::npos || underscore + 1 >= file.size()) return std::nullopt;
    auto version = canonical_version(file.substr(0, underscore));
    if (!version) return std::nullopt;
    return FileName{*version, std::string(file.substr(underscore + 1)), *direction};
}

struct Candidate {
    std::vector<std::pair<std::string, FileName>> files;  // file name, parsed
};

}  // namespace

Registry Registry::from_files(const fs::path& dir, const std::map<std::string, std::string>& files) {
    Registry registry;
    registry.dir_ = dir;
    std::map<std::string, Candidate, decltype(&version_less)> by_version(&version_less);
    for (const auto& [file, content] : files) {
        auto parsed = parse_file_name(file);
        if (!parsed) {
            registry.invalid_.push_back(
                {dir / file, std::nullopt, "not a migration file: expected <version>_<name>.up.sql or .down.sql"});
            continue;
        }
        by_version[parsed->version].files.emplace_back(file, std::move(*parsed));
    }
    for (auto& [version, candidate] : by_version) {
        auto& entries = candidate.files;
        const auto invalid = [&, version = version](const std::string& file, std::string reason) {
            registry.invalid_.push_back({dir / file, version, std::move(reason)});
        };
        const bool same_name = std::all_of(entries.begin(), entries.end(),
                                           [&](const auto& entry) { return entry.second.name == entries[0].second.name; });
        const auto ups = std::count_if(entries.begin(), entries.end(),
                                       [](const auto& entry) { return entry.second.direction == Direction::up; });
        if (entries.size() > 2 || !same_name || (entries.size() == 2 && ups != 1)) {
            std::string all;
            for (const auto& entry : entries) all += (all.empty() ? "" : ", ") + entry.first;
            for (const auto& entry : entries) invalid(entry.first, fmt::format("duplicate version {}: {}", version, all));
            continue;
        }
        if (entries.size() == 1) {
            const auto& [file, parsed] = entries[0];
            if (parsed.direction == Direction::up)
                invalid(file, fmt::format("no rollback script: {}_{}.down.sql is missing (every migration needs one)",
                                          version, parsed.name));
            else
                invalid(file, fmt::format("no up script: {}_{}.up.sql is missing", version, parsed.name));
            continue;
        }
        const auto& up_entry = entries[0].second.direction == Direction::up ? entries[0] : entries[1];
        const auto& down_entry = entries[0].second.direction == Direction::up ? entries[1] : entries[0];
        auto up = parse_script(dir / up_entry.first, files.at(up_entry.first));
        auto down = parse_script(dir / down_entry.first, files.at(down_entry.first));
        if (!up.error && up.script.statements.empty()) up.error = "the up script has no statements";
        if (!down.error && down.script.statements.empty())
            down.error = "the rollback script has no statements (every migration needs a working rollback)";
        if (up.error || down.error) {
            invalid(up_entry.first, up.error ? *up.error : fmt::format("its rollback script is invalid: {}", *down.error));
            invalid(down_entry.first, down.error ? *down.error : fmt::format("its up script is invalid: {}", *up.error));
            continue;
        }
        Migration migration;
        migration.version = version;
        migration.name = up_entry.second.name;
        migration.checksum = migration_checksum(up.script.text, down.script.text);
        migration.up = std::move(up.script);
        migration.down = std::move(down.script);
        registry.migrations_.push_back(std::move(migration));
    }
    std::sort(registry.invalid_.begin(), registry.invalid_.end(),
              [](const InvalidFile& a, const InvalidFile& b) { return a.path < b.path; });
    lint_migrations(registry.migrations_);
    return registry;
}

Registry Registry::load(const fs::path& dir) {
    std::error_code error;
    if (!fs::is_directory(dir, error))
        throw std::runtime_error(fmt::format("migrations directory {} is not a readable directory", dir.string()));
    std::map<std::string, std::string> files;
    std::vector<InvalidFile> unreadable;
    for (const auto& entry : fs::directory_iterator(dir)) {
        const std::string file = entry.path().filename().string();
        if (file.starts_with(".")) continue;
        if (!entry.is_regular_file()) {
            unreadable.push_back({entry.path(), std::nullopt, "not a regular file"});
            continue;
        }
        std::ifstream in(entry.path(), std::ios::binary);
        std::ostringstream content;
        content << in.rdbuf();
        if (!in) {
            unreadable.push_back({entry.path(), std::nullopt, "cannot be read"});
            continue;
        }
        files.emplace(file, content.str());
    }
    return from_listing(dir, files, unreadable);
}

Registry Registry::from_listing(const fs::path& dir, const std::map<std::string, std::string>& files,
                                const std::vector<InvalidFile>& unreadable) {
    Registry registry = from_files(dir, files);
    registry.invalid_.insert(registry.invalid_.end(), unreadable.begin(), unreadable.end());
    return registry;
}

Registry Registry::with_migrations(std::vector<Migration> extra) const {
    Registry registry = *this;
    for (auto& migration : extra)
        if (registry.find(migration.version) == nullptr) registry.migrations_.push_back(std::move(migration));
    std::sort(registry.migrations_.begin(), registry.migrations_.end(),
              [](const Migration& a, const Migration& b) { return version_less(a.version, b.version); });
    // Approved proposals change what earlier migrations tell later ones (the tables they create).
    lint_migrations(registry.migrations_);
    return registry;
}

const Migration* Registry::find(std::string_view version) const {
    for (const auto& migration : migrations_)
        if (migration.version == version) return &migration;
    return nullptr;
}

std::vector<const InvalidFile*> Registry::invalid_for(std::string_view version) const {
    std::vector<const InvalidFile*> out;
    for (const auto& file : invalid_)
        if (file.version && *file.version == version) out.push_back(&file);
    return out;
}

}  // namespace pgrail::migrations

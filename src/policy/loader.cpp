// Loads a policy file into the immutable model: strict keys and types, checked combinations.
#include "pgrail/policy/loader.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>

#include <fmt/format.h>

#include "pgrail/sql/outside_functions.hpp"

namespace pgrail::policy {

namespace {

// "table" or "schema.table" (split at the first dot; the callers check what each part may hold).
TablePattern table_pattern(const std::string& text) {
    const auto dot = text.find('.');
    if (dot == std::string::npos) return {"", text};
    return {text.substr(0, dot), text.substr(dot + 1)};
}

using config::YamlReader;
using sql::StatementClass;

// Always protected, whatever the file says: pgrail's ledger, the system catalogs, and pg_cron's
// jobs (a row of cron.job is SQL that runs later outside any session pgrail reads; protected,
// the schema can be neither written nor put on a search_path, where it would let an unqualified
// schedule(...) reach cron.schedule).
constexpr std::array<std::string_view, 5> builtin_protected_schemas = {"pgrail", "pg_catalog", "pg_toast",
                                                                       "information_schema", "cron"};

// Settings that would lift the database's own protections: trigger and FK enforcement
// (session_replication_role), the identity (role, session_authorization) and read-only mode.
constexpr std::array<std::string_view, 5> builtin_protected_settings = {
    "session_replication_role", "role", "session_authorization", "default_transaction_read_only",
    "transaction_read_only"};

constexpr std::array<std::pair<std::string_view, StatementClass>, 7> class_names = {{
    {"read", StatementClass::read},
    {"write", StatementClass::write},
    {"transaction", StatementClass::transaction},
    {"session", StatementClass::session},
    {"utility", StatementClass::utility},
    {"procedural", StatementClass::procedural},
    {"copy", StatementClass::copy},
}};

std::uint32_t bit(auto value) { return 1U << static_cast<unsigned>(value); }

std::string lower(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text;
}

// A function name as the policy compares it: lower-case, without the implicit pg_catalog schema.
std::string function_key(std::string name) {
    name = lower(std::move(name));
    constexpr std::string_view catalog = "pg_catalog.";
    if (name.starts_with(catalog)) name.erase(0, catalog.size());
    return name;
}

// A setting name as PostgreSQL spells it internally (`--work-mem` in options means work_mem).
std::string setting_key(std::string name) {
    name = lower(std::move(name));
    std::replace(name.begin(), name.end(), '-', '_');
    return name;
}

// node[key] without yaml-cpp's throw on scalars; undefined when absent.
YAML::Node child(const YAML::Node& node, const char* key) {
    if (node.IsDefined() && node.IsMap()) return node[key];
    return YAML::Node(YAML::NodeType::Undefined);
}

// The guard keys, accepted in `defaults` and in each rule (expect_map wants a literal list).
#define GUARD_KEYS                                                                                              \
    "allow_classes", "ddl", "migrator", "migrations", "require_where", "allow_truncate",                          \
        "allow_temporary_objects", "protected_schemas", "read_only_tables", "denied_functions", "allowed_functions", \
        "copy", "alter_system", "protected_settings", "allowed_settings", "replication", "options",                 \
        "bookkeeping_tables", "sensitive_columns", "max_rows", "max_connections"

class Loader {
public:
    Loader(const YamlReader& reader, const LoadOptions& options)
        : reader_(reader), options_(options), defaults_(child(reader.root(), "defaults")) {}

    std::shared_ptr<Policy> load() {
        const YAML::Node& root = reader_.root();
        if (!root.IsDefined() || root.IsNull()) reader_.fail(root, "the policy is empty (expected a mapping with version and rules)");
        reject_duplicate_keys(root);
        reader_.expect_map(root, {"version", "mode", "on_parse_error", "defaults", "messages", "masking", "rules"},
                           "the policy");

        auto policy = std::make_shared<Policy>();
        policy->source = reader_.file();
        policy->migrations_dir = options_.migrations_dir;
        if (!root["version"]) reader_.fail(root, "missing key 'version' (this pgrail reads version: 1)");
        (void)reader_.as_int(root["version"], "version", 1, 1);
        if (const auto& node = root["mode"])
            policy->mode = reader_.as_choice(node, "mode", {"enforce", "audit_only"}) == "enforce" ? Mode::enforce
                                                                                                 : Mode::audit_only;
        if (const auto& node = root["on_parse_error"])
            policy->on_parse_error =
                reader_.as_choice(node, "on_parse_error", {"deny", "allow"}) == "deny" ? OnParseError::deny
                                                                                        : OnParseError::allow;
        if (const auto& node = root["masking"]) masking_key_ = load_masking_key(node);
        if (defaults_) {
            reader_.expect_map(defaults_, {GUARD_KEYS}, "defaults");
            if (const auto node = child(defaults_, "bookkeeping_tables"); node.IsDefined())
                reader_.fail(node, "bookkeeping_tables belongs to the migrator rule that runs the migration tool, "
                                   "not to defaults");
            (void)build_guards(YAML::Node());  // validates defaults even where every rule overrides them
        }
        if (const auto& node = root["messages"]) load_messages(node, *policy);
        policy->masking_key = masking_key_;
        load_rules(root, *policy);
        for (const auto& rule : policy->rules) {
            policy->has_sensitive_columns = policy->has_sensitive_columns || !rule.guards.sensitive.empty();
            policy->has_result_guards =
                policy->has_result_guards || !rule.guards.sensitive.empty() || rule.guards.max_rows.limit > 0;
        }
        return policy;
    }

private:
    void reject_duplicate_keys(const YAML::Node& node) const {
        if (node.IsMap()) {
            std::set<std::string> seen;
            for (const auto& entry : node) {
                if (!seen.insert(entry.first.Scalar()).second)
                    reader_.fail(entry.first, fmt::format("duplicate key '{}'", entry.first.Scalar()));
                reject_duplicate_keys(entry.second);
            }
        } else if (node.IsSequence()) {
            for (const auto& item : node) reject_duplicate_keys(item);
        }
    }

    // A string or a list of strings (`users: agent` or `users: [agent, bot]`); never empty.
    std::vector<std::string> one_or_more(const YAML::Node& node, std::string_view key) const {
        if (node.IsScalar()) {
            auto value = reader_.as_string(node, key);
            if (value.empty()) reader_.fail(node, fmt::format("'{}' entries must not be empty", key));
            return {std::move(value)};
        }
        auto list = reader_.as_string_list(node, key);
        if (list.empty()) reader_.fail(node, fmt::format("'{}' must not be empty (omit the key to match everything)", key));
        for (std::size_t index = 0; index < list.size(); ++index)
            if (list[index].empty()) reader_.fail(node[index], fmt::format("'{}' entries must not be empty", key));
        return list;
    }

    void load_messages(const YAML::Node& node, Policy& policy) const {
        if (!node.IsMap()) reader_.fail(node, "'messages' must be a mapping of guard name to {message, hint}");
        for (const auto& entry : node) {
            const auto guard = entry.first.Scalar();
            const auto found = std::find(guard_names.begin(), guard_names.end(), guard);
            if (found == guard_names.end()) {
                std::string known;
                for (const char* name : guard_names) known += known.empty() ? name : fmt::format(", {}", name);
                reader_.fail(entry.first, fmt::format("unknown guard '{}' in messages (expected one of: {})", guard, known));
            }
            reader_.expect_map(entry.second, {"message", "hint"}, fmt::format("messages.{}", guard));
            auto& out = policy.messages[static_cast<std::size_t>(found - guard_names.begin())];
            if (const auto& message = entry.second["message"]) {
                out.message = reader_.as_string(message, "message");
                if (!out.message.starts_with("pgrail: "))
                    reader_.fail(message, "a message must begin with \"pgrail: \" so that clients can tell who refused");
            }
            if (const auto& hint = entry.second["hint"]) out.hint = reader_.as_string(hint, "hint");
        }
    }

    void load_rules(const YAML::Node& root, Policy& policy) const {
        const auto& rules = root["rules"];
        if (!rules) reader_.fail(root, "missing key 'rules' (a list whose last rule matches every session)");
        if (!rules.IsSequence() || rules.size() == 0)
            reader_.fail(rules, "'rules' must be a non-empty list whose last rule matches every session");
        const Rule* catch_all = nullptr;
        for (const auto& node : rules) {
            Rule rule = load_rule(node);
            for (const auto& earlier : policy.rules)
                if (earlier.name == rule.name)
                    reader_.fail(node["name"], fmt::format("duplicate rule name '{}' (first at {})", rule.name, earlier.location));
            if (catch_all)
                reader_.fail(node, fmt::format("rule '{}' can never match: rule '{}' at {} matches every session before it",
                                               rule.name, catch_all->name, catch_all->location));
            policy.rules.push_back(std::move(rule));
            if (policy.rules.back().match.matches_everything()) catch_all = &policy.rules.back();
        }
        if (!catch_all)
            reader_.fail(rules, fmt::format("the last rule ('{}') must match every session (omit 'match' or use "
                                            "match: {{}}) so that every session has a rule",
                                            policy.rules.back().name));
    }

    Rule load_rule(const YAML::Node& node) const {
        if (!node.IsMap()) reader_.fail(node, "a rule must be a mapping with 'name', 'match' and guards");
        reader_.expect_map(node, {"name", "match", GUARD_KEYS}, "a rule");
        Rule rule;
        rule.location = reader_.where(node);
        if (!node["name"]) reader_.fail(node, "a rule needs a 'name' (it appears in every refusal)");
        rule.name = reader_.as_string(node["name"], "name");
        const bool valid_name = !rule.name.empty() && std::all_of(rule.name.begin(), rule.name.end(), [](unsigned char c) {
            return std::isalnum(c) || c == '_' || c == '-' || c == '.';
        });
        if (!valid_name) reader_.fail(node["name"], "a rule name must be non-empty letters, digits, '_', '-' or '.'");
        if (const auto& match = node["match"]) rule.match = load_match(match);
        rule.guards = build_guards(node);
        return rule;
    }

    SessionMatch load_match(const YAML::Node& node) const {
        SessionMatch match;
        if (node.IsNull()) return match;
        reader_.expect_map(node, {"users", "identities", "databases", "application_names", "clients"}, "match");
        if (const auto& users = node["users"]) match.users = one_or_more(users, "users");
        if (const auto& identities = node["identities"]) match.identities = one_or_more(identities, "identities");
        if (const auto& databases = node["databases"]) match.databases = one_or_more(databases, "databases");
        for (const char* key : {"users", "databases"}) {
            const auto& names = std::string_view(key) == "users" ? match.users : match.databases;
            for (std::size_t index = 0; index < names.size(); ++index)
                check_name_lengths(node[key].IsScalar() ? node[key] : node[key][index], names[index], false);
        }
        if (const auto& apps = node["application_names"]) match.application_names = one_or_more(apps, "application_names");
        if (const auto& clients = node["clients"]) {
            const auto texts = one_or_more(clients, "clients");
            for (std::size_t index = 0; index < texts.size(); ++index) {
                auto cidr = Cidr::parse(texts[index]);
                if (!cidr)
                    reader_.fail(clients.IsScalar() ? clients : clients[index],
                                 fmt::format("'{}' is not an address or CIDR with no host bits set (e.g. 10.0.0.0/8, "
                                             "2001:db8::/32, ::/0)",
                                             texts[index]));
                match.clients.push_back(*cidr);
            }
        }
        return match;
    }

    // The node for `key`: the rule's own, else the defaults', else undefined (pgrail's default).
    YAML::Node pick(const YAML::Node& rule, const char* key) const {
        if (auto node = child(rule, key)) return node;
        return child(defaults_, key);
    }

    YAML::Node pick_sub(const YAML::Node& rule, const char* key, const char* sub) const {
        for (const YAML::Node* source : {&rule, &defaults_}) {
            if (!source->IsDefined() || !source->IsMap()) continue;
            const auto& map = (*source)[key];
            if (!map) continue;
            reader_.expect_map(map, {"program", "server_files"}, key);
            if (map[sub]) return map[sub];
        }
        return YAML::Node(YAML::NodeType::Undefined);
    }

    // `migrations` is a list of commands, or a mapping {commands: [...], require_version: bool}:
    // each part comes from the rule, else from the defaults, else pgrail's default (as copy's).
    YAML::Node pick_migrations(const YAML::Node& rule, const char* sub) const {
        for (const YAML::Node* source : {&rule, &defaults_}) {
            if (!source->IsDefined() || !source->IsMap()) continue;
            const auto& node = (*source)["migrations"];
            if (!node) continue;
            if (node.IsSequence()) {
                if (std::string_view(sub) == "commands") return node;
                continue;
            }
            if (!node.IsMap())
                reader_.fail(node, "'migrations' must be a list of pgrail commands or a mapping with 'commands', "
                                   "'require_version', 'auto_approve' and 'lint'");
            reader_.expect_map(node, {"commands", "require_version", "auto_approve", "lint"}, "migrations");
            if (node[sub]) return node[sub];
        }
        return YAML::Node(YAML::NodeType::Undefined);
    }

    // migrations.lint: {default: warn|block, rules: {<rule id>: warn|block}} (docs/lint.md). An
    // unknown rule id is an error at its position: a typo would otherwise block or allow nothing.
    migrations::LintPolicy read_lint(const YAML::Node& node) const {
        if (!node.IsMap())
            reader_.fail(node, "'lint' must be a mapping with 'default' (warn or block) and 'rules' "
                               "({<rule id>: warn or block})");
        reader_.expect_map(node, {"default", "rules"}, "migrations.lint");
        const auto level = [&](const YAML::Node& value, std::string_view key) {
            return reader_.as_choice(value, key, {"warn", "block"}) == "block" ? migrations::LintLevel::block
                                                                               : migrations::LintLevel::warn;
        };
        migrations::LintPolicy lint;
        if (const auto value = node["default"]) lint.default_level = level(value, "default");
        if (const auto rules = node["rules"]) {
            if (!rules.IsMap())
                reader_.fail(rules, "'rules' must be a mapping of lint rule ids to warn or block");
            for (const auto& entry : rules) {
                const std::string id = entry.first.IsScalar() ? entry.first.Scalar() : std::string();
                if (migrations::find_lint_rule(id) == nullptr)
                    reader_.fail(entry.first, fmt::format("unknown lint rule '{}' (docs/lint.md lists the rules; "
                                                          "`pgrail migrate lint --rules` prints them)",
                                                          id));
                lint.rules[id] = level(entry.second, id);
            }
        }
        return lint;
    }

    bool allow_or_deny(const YAML::Node& node, std::string_view key) const {
        return node && reader_.as_choice(node, key, {"deny", "allow"}) == "allow";
    }

    Guards build_guards(const YAML::Node& rule) const {
        Guards guards;
        if (const auto node = pick(rule, "allow_classes")) {
            const auto names = reader_.as_string_list(node, "allow_classes");
            for (std::size_t index = 0; index < names.size(); ++index) {
                const auto& name = names[index];
                if (name == "ddl")
                    reader_.fail(node[index], "'ddl' is not listed in allow_classes: DDL is governed by the rule's "
                                              "'ddl' key (migrations_only, deny or allow)");
                if (name == "unknown")
                    reader_.fail(node[index], "'unknown' is not listed in allow_classes: unparsed statements are "
                                              "governed by 'on_parse_error'");
                const auto found = std::find_if(class_names.begin(), class_names.end(),
                                                [&](const auto& entry) { return entry.first == name; });
                if (found == class_names.end())
                    reader_.fail(node[index], fmt::format("unknown statement class '{}' (expected one of: read, "
                                                          "write, transaction, session, utility, procedural, copy)",
                                                          name));
                guards.allowed_classes |= bit(found->second);
            }
        } else {
            for (auto statement_class : {StatementClass::read, StatementClass::write, StatementClass::transaction,
                                         StatementClass::session, StatementClass::procedural, StatementClass::copy})
                guards.allowed_classes |= bit(statement_class);
        }

        const auto ddl_node = pick(rule, "ddl");
        if (ddl_node) {
            const auto ddl = reader_.as_choice(ddl_node, "ddl", {"migrations_only", "deny", "allow"});
            guards.ddl = ddl == "migrations_only" ? DdlMode::migrations_only
                         : ddl == "deny"          ? DdlMode::deny
                                                  : DdlMode::allow;
        }
        if (const auto node = pick(rule, "migrator")) {
            guards.migrator = reader_.as_bool(node, "migrator");
            if (guards.migrator && guards.ddl != DdlMode::migrations_only)
                reader_.fail(node, fmt::format("migrator: true needs ddl: migrations_only (this rule has ddl: {}{})",
                                               to_string(guards.ddl),
                                               guards.ddl == DdlMode::allow ? ", which already allows every DDL statement"
                                                                            : ", which refuses every DDL statement"));
        }
        if (const auto node = pick_migrations(rule, "commands")) {
            const auto names = reader_.as_string_list(node, "migrations");
            for (std::size_t index = 0; index < names.size(); ++index) {
                const auto command = sql::pgrail_command_named(names[index]);
                if (!command)
                    reader_.fail(node[index], fmt::format("unknown pgrail command '{}' (expected one of: status, plan, "
                                                          "migrate_up, migrate_down, verify, propose_migration, "
                                                          "approve_migration, reject_migration, sessions, stats, "
                                                          "refusals)",
                                                          names[index]));
                guards.commands |= bit(*command);
            }
        } else {
            guards.commands = bit(Command::status) | bit(Command::plan);
        }
        if (const auto node = pick_migrations(rule, "require_version"))
            guards.require_version = reader_.as_bool(node, "require_version");
        if (const auto node = pick_migrations(rule, "auto_approve"))
            guards.auto_approve_clean = reader_.as_choice(node, "auto_approve", {"never", "clean"}) == "clean";
        if (const auto node = pick_migrations(rule, "lint")) guards.lint = read_lint(node);
        if (const auto node = pick(rule, "require_where")) guards.require_where = reader_.as_bool(node, "require_where");
        if (const auto node = pick(rule, "allow_truncate")) guards.allow_truncate = reader_.as_bool(node, "allow_truncate");
        if (const auto node = pick(rule, "allow_temporary_objects"))
            guards.allow_temporary_objects = reader_.as_bool(node, "allow_temporary_objects");

        for (auto schema : builtin_protected_schemas) guards.protected_schemas.emplace_back(schema);
        if (const auto node = pick(rule, "protected_schemas")) {
            auto schemas = reader_.as_string_list(node, "protected_schemas");
            for (std::size_t index = 0; index < schemas.size(); ++index) {
                check_name_lengths(node[index], schemas[index]);
                if (std::find(guards.protected_schemas.begin(), guards.protected_schemas.end(), schemas[index]) ==
                    guards.protected_schemas.end())
                    guards.protected_schemas.push_back(std::move(schemas[index]));
            }
        }

        // A migration tool's own tables: a rule's own key (never inherited from defaults), and only
        // for a migrator rule: it widens what that rule may do, by name.
        if (const auto node = child(rule, "bookkeeping_tables"); node.IsDefined()) {
            if (!guards.migrator)
                reader_.fail(node, "bookkeeping_tables is for a rule with migrator: true (the role that runs the "
                                   "migration tool)");
            const auto tables = reader_.as_string_list(node, "bookkeeping_tables");
            for (std::size_t index = 0; index < tables.size(); ++index) {
                const auto& text = tables[index];
                const auto dot = text.find('.');
                TablePattern pattern = table_pattern(text);
                const auto plain = [](const std::string& name) {
                    return !name.empty() && name.size() <= 63 &&
                           std::all_of(name.begin(), name.end(), [](char c) {
                               return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                                      c == '_' || c == '$';
                           });
                };
                if (!plain(pattern.table) || (dot != std::string::npos && !plain(pattern.schema)))
                    reader_.fail(node[index], fmt::format("'{}' is not a table name ('table' or 'schema.table', "
                                                          "letters, digits and _ only, no globs)",
                                                          text));
                guards.bookkeeping_tables.push_back(std::move(pattern));
            }
        }
        if (const auto node = pick(rule, "read_only_tables")) {
            const auto tables = reader_.as_string_list(node, "read_only_tables");
            for (std::size_t index = 0; index < tables.size(); ++index) {
                const auto& text = tables[index];
                const auto dot = text.find('.');
                TablePattern pattern = table_pattern(text);
                if (pattern.table.empty() || (dot != std::string::npos && pattern.schema.empty()) ||
                    pattern.table.find('.') != std::string::npos)
                    reader_.fail(node[index], fmt::format("'{}' is not a table name ('table' or 'schema.table', globs "
                                                          "allowed)",
                                                          text));
                check_name_lengths(node[index], text);
                guards.read_only_tables.push_back(std::move(pattern));
            }
        }

        if (const auto node = pick(rule, "sensitive_columns")) guards.sensitive = read_sensitive(node);
        if (const auto node = pick(rule, "max_rows")) guards.max_rows = read_max_rows(node);
        if (const auto node = pick(rule, "max_connections"))
            guards.max_connections = static_cast<std::uint32_t>(reader_.as_int(node, "max_connections", 1, 1000000));

        guards.denied_functions = name_set(rule, sql::functions_reaching_outside, "denied_functions",
                                           "allowed_functions", function_key, "a denied function");
        guards.protected_settings = name_set(rule, builtin_protected_settings, "protected_settings",
                                             "allowed_settings", setting_key, "a protected setting");

        guards.allow_copy_program = allow_or_deny(pick_sub(rule, "copy", "program"), "program");
        guards.allow_copy_server_files = allow_or_deny(pick_sub(rule, "copy", "server_files"), "server_files");
        guards.allow_alter_system = allow_or_deny(pick(rule, "alter_system"), "alter_system");
        guards.allow_replication = allow_or_deny(pick(rule, "replication"), "replication");

        if (const auto node = pick(rule, "options")) {
            if (node.IsSequence()) {
                guards.options = OptionsMode::allow_list;
                const auto names = reader_.as_string_list(node, "options");
                for (std::size_t index = 0; index < names.size(); ++index) {
                    auto name = setting_key(names[index]);
                    if (guards.protected_settings.contains(name))
                        reader_.fail(node[index], fmt::format("options may not allow '{}': it is a protected setting", name));
                    guards.allowed_options.insert(std::move(name));
                }
            } else if (node.IsScalar()) {
                guards.options = reader_.as_choice(node, "options", {"deny", "allow"}) == "allow" ? OptionsMode::allow
                                                                                                : OptionsMode::deny;
            } else {
                reader_.fail(node, "'options' must be deny, allow or a list of setting names");
            }
        }
        return guards;
    }

    // PostgreSQL cuts an identifier to 63 bytes (at a character's start): a longer name in the
    // policy would never equal the database's (review 99: a read-only table named in 70 characters
    // took writes; review 102: a rule's 70-byte user never matched). Globs aside. `qualified`:
    // each dot-separated part is an identifier (a role's or database's name is one whole).
    void check_name_lengths(const YAML::Node& node, const std::string& text, bool qualified = true) const {
        std::size_t start = 0;
        while (start <= text.size()) {
            const auto dot = qualified ? std::min(text.find('.', start), text.size()) : text.size();
            const std::string_view part = std::string_view(text).substr(start, dot - start);
            if (part.size() > 63 && part.find_first_of("*?[") == std::string_view::npos) {
                std::size_t kept = 63;
                while (kept > 0 && (static_cast<unsigned char>(part[kept]) & 0xC0) == 0x80) --kept;
                reader_.fail(node, fmt::format("'{}' names an identifier of {} bytes: PostgreSQL cuts identifiers to "
                                               "63 bytes, so the database's name is '{}'; write that",
                                               text, part.size(), part.substr(0, kept)));
            }
            start = dot + 1;
        }
    }

    // The built-in names plus `add_key`'s, minus `lift_key`'s (which must name a member).
    template <std::size_t N>
    NameSet name_set(const YAML::Node& rule, const std::array<std::string_view, N>& builtin, const char* add_key,
                     const char* lift_key, std::string (*normalize)(std::string), std::string_view what) const {
        NameSet set;
        for (auto name : builtin) set.insert(std::string(name));
        if (const auto node = pick(rule, add_key)) {
            auto names = reader_.as_string_list(node, add_key);
            for (std::size_t index = 0; index < names.size(); ++index) {
                if (std::string_view(add_key) == "denied_functions") check_name_lengths(node[index], names[index]);
                set.insert(normalize(std::move(names[index])));
            }
        }
        if (const auto node = pick(rule, lift_key)) {
            const auto names = reader_.as_string_list(node, lift_key);
            for (std::size_t index = 0; index < names.size(); ++index) {
                const auto name = normalize(names[index]);
                const auto* member = set.find(name);
                if (!member || *member != name)
                    reader_.fail(node[index], fmt::format("'{}' is not {} (members are listed exactly as in docs/policy.md)",
                                                          names[index], what));
                set.erase(name);
            }
        }
        return set;
    }

    // masking: {key_file: path | key_env: NAME}: at least 16 bytes (a file's trailing newline is
    // not part of the key). Read once, at load: a reload reads it again.
    std::string load_masking_key(const YAML::Node& node) const {
        reader_.expect_map(node, {"key_file", "key_env"}, "masking");
        const auto file = child(node, "key_file");
        const auto env = child(node, "key_env");
        if (file.IsDefined() == env.IsDefined())
            reader_.fail(node, "masking needs exactly one of key_file (a file holding the key) and key_env (an "
                               "environment variable holding it)");
        std::string key;
        if (file.IsDefined()) {
            std::string path = reader_.as_string(file, "key_file");
            if (!path.starts_with('/')) {
                const auto slash = reader_.file().rfind('/');
                if (slash != std::string::npos) path = reader_.file().substr(0, slash + 1) + path;
            }
            std::ifstream in(path, std::ios::binary);
            if (!in) reader_.fail(file, fmt::format("cannot read the masking key file {}", path));
            key.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
            while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
        } else {
            const auto name = reader_.as_string(env, "key_env");
            const char* value = std::getenv(name.c_str());
            if (value == nullptr) reader_.fail(env, fmt::format("the environment variable {} is not set", name));
            key = value;
        }
        if (key.size() < 16 || key.size() > 4096)
            reader_.fail(node, fmt::format("the masking key must be 16 to 4096 bytes (it has {})", key.size()));
        return key;
    }

    // sensitive_columns: {action: deny|mask, method: hash|constant|null, value: text, columns: [...]}.
    SensitiveColumns read_sensitive(const YAML::Node& node) const {
        reader_.expect_map(node, {"action", "method", "value", "columns"}, "sensitive_columns");
        SensitiveColumns sensitive;
        if (const auto action = child(node, "action"); action.IsDefined())
            sensitive.action = reader_.as_choice(action, "action", {"deny", "mask"}) == "mask" ? SensitiveAction::mask
                                                                                               : SensitiveAction::deny;
        const auto method = child(node, "method");
        if (method.IsDefined()) {
            if (sensitive.action != SensitiveAction::mask)
                reader_.fail(method, "method is for action: mask (action deny refuses the statement)");
            // `method: null` is YAML's null unless quoted: both mean the method null.
            const auto name = method.IsNull() ? std::string("null")
                                              : reader_.as_choice(method, "method", {"hash", "constant", "null"});
            sensitive.method = name == "hash" ? MaskMethod::hash : name == "constant" ? MaskMethod::constant : MaskMethod::null;
        }
        if (const auto value = child(node, "value"); value.IsDefined()) {
            if (sensitive.method != MaskMethod::constant || !method.IsDefined())
                reader_.fail(value, "value is the text of method: constant");
            sensitive.constant = reader_.as_string(value, "value");
            if (sensitive.constant.size() > 1024) reader_.fail(value, "value is longer than 1024 bytes");
        }
        if (sensitive.action == SensitiveAction::mask && sensitive.method == MaskMethod::hash && masking_key_.empty())
            reader_.fail(method.IsDefined() ? method : node,
                         "method hash (the default of action: mask) needs a key: add masking: {key_file: ...} or "
                         "masking: {key_env: ...} at the top of the policy");
        const auto columns = child(node, "columns");
        if (!columns.IsDefined()) reader_.fail(node, "sensitive_columns needs columns (a list of table.column or "
                                                     "schema.table.column, globs allowed)");
        const auto texts = reader_.as_string_list(columns, "columns");
        if (texts.empty()) reader_.fail(columns, "columns is empty");
        for (std::size_t index = 0; index < texts.size(); ++index) {
            const auto& text = texts[index];
            std::vector<std::string> parts;
            std::size_t start = 0;
            while (true) {
                const auto dot = text.find('.', start);
                parts.push_back(text.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
                if (dot == std::string::npos) break;
                start = dot + 1;
            }
            const bool empty_part = std::any_of(parts.begin(), parts.end(), [](const auto& part) { return part.empty(); });
            if (parts.size() < 2 || parts.size() > 3 || empty_part)
                reader_.fail(columns[index], fmt::format("'{}' is not a column ('table.column' or "
                                                         "'schema.table.column', globs allowed)",
                                                         text));
            check_name_lengths(columns[index], text);
            ColumnPattern pattern;
            if (parts.size() == 3) pattern.schema = parts[0];
            pattern.table = parts[parts.size() - 2];
            pattern.column = parts.back();
            sensitive.patterns.push_back(std::move(pattern));
        }
        return sensitive;
    }

    // max_rows: N, or {limit: N, action: truncate|deny}.
    MaxRows read_max_rows(const YAML::Node& node) const {
        constexpr std::int64_t most = std::int64_t{1} << 50;
        MaxRows max_rows;
        if (node.IsScalar()) {
            max_rows.limit = static_cast<std::uint64_t>(reader_.as_int(node, "max_rows", 1, most));
            return max_rows;
        }
        reader_.expect_map(node, {"limit", "action"}, "max_rows");
        const auto limit = child(node, "limit");
        if (!limit.IsDefined()) reader_.fail(node, "max_rows needs a limit (rows)");
        max_rows.limit = static_cast<std::uint64_t>(reader_.as_int(limit, "limit", 1, most));
        if (const auto action = child(node, "action"); action.IsDefined())
            max_rows.action = reader_.as_choice(action, "action", {"truncate", "deny"}) == "deny" ? MaxRowsAction::deny
                                                                                                 : MaxRowsAction::truncate;
        return max_rows;
    }

    const YamlReader& reader_;
    const LoadOptions& options_;
    const YAML::Node defaults_;
    std::string masking_key_;
};

std::string join(const std::vector<std::string>& items, std::string_view separator = ", ") {
    std::string out;
    for (const auto& item : items) {
        if (!out.empty()) out += separator;
        out += item;
    }
    return out;
}

std::string describe_match(const SessionMatch& match) {
    std::vector<std::string> parts;
    if (!match.users.empty()) parts.push_back("users " + join(match.users));
    if (!match.identities.empty()) parts.push_back("identities " + join(match.identities));
    if (!match.databases.empty()) parts.push_back("databases " + join(match.databases));
    if (!match.application_names.empty()) parts.push_back("application_names " + join(match.application_names));
    if (!match.clients.empty()) {
        std::vector<std::string> cidrs;
        for (const auto& cidr : match.clients) cidrs.push_back(cidr.to_string());
        parts.push_back("clients " + join(cidrs));
    }
    return parts.empty() ? "every session" : join(parts, "; ");
}

#undef GUARD_KEYS

}  // namespace

std::shared_ptr<const Policy> load_policy_file(const std::string& path, const LoadOptions& options) {
    const auto reader = YamlReader::from_file(path);
    return Loader(reader, options).load();
}

std::shared_ptr<const Policy> load_policy_string(const std::string& yaml, const std::string& name,
                                                 const LoadOptions& options) {
    const auto reader = YamlReader::from_string(yaml, name);
    return Loader(reader, options).load();
}

std::string summarize(const Policy& policy) {
    std::string out = fmt::format("policy {}: valid\nmode: {}\non_parse_error: {}\nrules ({}, first match wins):\n",
                                  policy.source, to_string(policy.mode), to_string(policy.on_parse_error),
                                  policy.rules.size());
    std::size_t number = 0;
    for (const auto& rule : policy.rules) {
        const auto& guards = rule.guards;
        std::vector<std::string> classes;
        for (const auto& [name, statement_class] : class_names)
            if (guards.allows_class(statement_class)) classes.emplace_back(name);
        std::vector<std::string> commands;
        for (const Command command : sql::all_pgrail_commands)
            if (guards.allows_command(command)) commands.push_back("pgrail." + std::string(sql::name_of(command)));
        std::vector<std::string> read_only;
        for (const auto& table : guards.read_only_tables)
            read_only.push_back(table.schema.empty() ? table.table : table.schema + "." + table.table);
        std::string options = to_string(guards.options);
        if (guards.options == OptionsMode::allow_list) options = "only " + join(guards.allowed_options.sorted());

        out += fmt::format("  {}. {} ({})\n", ++number, rule.name, rule.location);
        out += fmt::format("     match: {}\n", describe_match(rule.match));
        out += fmt::format("     classes: {}\n", classes.empty() ? "none" : join(classes));
        out += fmt::format("     ddl: {}{}; temporary objects: {}\n", to_string(guards.ddl),
                           guards.migrator ? " (migrator: registered migration statements pass)" : "",
                           guards.allow_temporary_objects ? "allowed" : "denied");
        if (!guards.bookkeeping_tables.empty()) {
            std::vector<std::string> bookkeeping;
            for (const auto& table : guards.bookkeeping_tables)
                bookkeeping.push_back(table.schema.empty() ? table.table : table.schema + "." + table.table);
            out += fmt::format("     bookkeeping tables (migration tools' own DDL and writes pass): {}\n",
                               join(bookkeeping));
        }
        out += fmt::format("     pgrail commands: {}{}\n", commands.empty() ? "none" : join(commands),
                           std::string(guards.require_version ? " (migrate_up and migrate_down with a version only)"
                                                              : "") +
                               (guards.auto_approve_clean ? " (auto_approve: clean)" : ""));
        out += fmt::format("     require_where: {}; truncate: {}; copy program: {}; copy server files: {}; "
                           "alter system: {}\n",
                           guards.require_where ? "yes" : "no", guards.allow_truncate ? "allowed" : "denied",
                           guards.allow_copy_program ? "allowed" : "denied",
                           guards.allow_copy_server_files ? "allowed" : "denied",
                           guards.allow_alter_system ? "allowed" : "denied");
        out += fmt::format("     protected schemas: {}\n", join(guards.protected_schemas));
        if (!read_only.empty()) out += fmt::format("     read-only tables: {}\n", join(read_only));
        out += fmt::format("     denied functions: {}\n", join(guards.denied_functions.sorted()));
        out += fmt::format("     protected settings: {}\n", join(guards.protected_settings.sorted()));
        if (!guards.sensitive.empty()) {
            std::vector<std::string> columns;
            for (const auto& pattern : guards.sensitive.patterns) columns.push_back(pattern.to_string());
            const char* method = guards.sensitive.method == MaskMethod::hash       ? "masked by keyed hash"
                                 : guards.sensitive.method == MaskMethod::constant ? "masked by a constant"
                                                                                    : "masked as NULL";
            out += fmt::format("     sensitive columns ({}): {}\n",
                               guards.sensitive.action == SensitiveAction::deny ? "refused" : method, join(columns));
        }
        if (guards.max_rows.limit > 0)
            out += fmt::format("     max rows: {} ({})\n", guards.max_rows.limit,
                               guards.max_rows.action == MaxRowsAction::deny ? "longer results refused"
                                                                             : "longer results cut");
        if (guards.max_connections > 0)
            out += fmt::format("     max connections: {} sessions at once\n", guards.max_connections);
        out += fmt::format("     startup: replication {}; options {}\n",
                           guards.allow_replication ? "allowed" : "denied", options);
    }
    std::vector<std::string> overridden;
    for (std::size_t index = 0; index < guard_names.size(); ++index)
        if (!policy.messages[index].message.empty() || !policy.messages[index].hint.empty())
            overridden.emplace_back(guard_names[index]);
    if (!overridden.empty()) out += fmt::format("message overrides: {}\n", join(overridden));
    return out;
}

}  // namespace pgrail::policy

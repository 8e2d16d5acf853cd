// Loads the identities file: strict keys, valid verifiers, and every role's credentials resolvable.
#include "pgrail/auth/identities.hpp"

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include <fmt/format.h>
#include <sys/stat.h>

#include "pgrail/config/yaml_reader.hpp"

namespace pgrail::auth {

namespace {

using config::YamlReader;

YAML::Node child(const YAML::Node& node, const char* key) {
    if (node.IsDefined() && node.IsMap()) return node[key];
    return YAML::Node(YAML::NodeType::Undefined);
}

class Loader {
public:
    Loader(const YamlReader& reader, const IdentitiesLoadOptions& options) : reader_(reader), options_(options) {}

    std::shared_ptr<const Identities> load() {
        const auto& root = reader_.root();
        if (!root.IsDefined() || root.IsNull())
            throw config::ConfigError(fmt::format("{}:1:1: the identities file is empty (expected a mapping with "
                                                  "identities and roles)",
                                                  reader_.file()));
        reject_duplicate_keys(root);
        reader_.expect_map(root, {"identities", "roles"}, "the identities file");
        auto result = std::make_shared<Identities>();
        result->source = reader_.file();

        // Roles first: each identity must name one of them.
        const auto roles = child(root, "roles");
        if (roles.IsDefined() && !roles.IsNull()) {
            if (!roles.IsMap()) reader_.fail(roles, "'roles' must be a mapping of role name to its credentials");
            for (const auto& entry : roles) {
                const auto role = name_of(entry.first, "role name");
                result->roles.emplace(role, load_role(role, entry.second));
            }
        }

        const auto identities = child(root, "identities");
        if (!identities.IsDefined() || identities.IsNull())
            reader_.fail(root, "missing key 'identities' (a list of {name, role, verifier})");
        if (!identities.IsSequence()) reader_.fail(identities, "'identities' must be a list of {name, role, verifier}");
        std::set<std::string, std::less<>> seen;
        for (const auto& item : identities) {
            reader_.expect_map(item, {"name", "role", "verifier"}, "an identity");
            Identity identity;
            identity.name = name_of(required(item, "name"), "identity name");
            if (!seen.insert(identity.name).second)
                reader_.fail(item["name"], fmt::format("identity '{}' is listed twice", identity.name));
            const auto role_node = required(item, "role");
            identity.role = name_of(role_node, "role name");
            if (!result->roles.contains(identity.role))
                reader_.fail(role_node, fmt::format("role '{}' has no credentials: add roles: {{{}: {{password_file: "
                                                    "FILE}}}} (or password_env)",
                                                    identity.role, identity.role));
            const auto verifier_node = required(item, "verifier");
            const auto text = reader_.as_string(verifier_node, "verifier");
            auto parsed = parse_scram_verifier(text);
            if (!parsed.verifier)
                reader_.fail(verifier_node, parsed.error + " (make one with: pgrail passwd NAME --role ROLE)");
            identity.verifier = *std::move(parsed.verifier);
            result->by_name.emplace(identity.name, result->identities.size());
            result->identities.push_back(std::move(identity));
        }
        std::map<int, std::size_t> counts;
        for (const auto& identity : result->identities) ++counts[identity.verifier.iterations];
        std::size_t most = 0;
        for (const auto& [iterations, count] : counts) {
            if (count >= most) {
                most = count;
                result->usual_iterations = iterations;
            }
        }
        return result;
    }

private:
    YAML::Node required(const YAML::Node& item, const char* key) const {
        const auto node = child(item, key);
        if (!node.IsDefined() || node.IsNull()) reader_.fail(item, fmt::format("missing key '{}' in an identity", key));
        return node;
    }

    std::string name_of(const YAML::Node& node, std::string_view what) const {
        auto name = reader_.as_string(node, what);
        if (name.empty()) reader_.fail(node, fmt::format("the {} must not be empty", what));
        if (name.size() > max_identity_name_length)
            reader_.fail(node, fmt::format("the {} '{}' is longer than {} bytes (PostgreSQL's limit for a user name)",
                                           what, name, max_identity_name_length));
        for (const char c : name)
            if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
                reader_.fail(node, fmt::format("the {} must not contain control characters", what));
        return name;
    }

    RoleCredentials load_role(const std::string& role, const YAML::Node& node) const {
        reader_.expect_map(node, {"password_file", "password_env"}, fmt::format("role '{}'", role));
        const auto file = child(node, "password_file");
        const auto env = child(node, "password_env");
        if (file.IsDefined() == env.IsDefined())
            reader_.fail(node, fmt::format("role '{}' needs exactly one of password_file (a file only pgrail can read) "
                                           "and password_env (an environment variable); a password itself never "
                                           "belongs in this file",
                                           role));
        RoleCredentials credentials;
        credentials.role = role;
        if (file.IsDefined()) {
            auto path = reader_.as_string(file, "password_file");
            if (path.empty()) reader_.fail(file, "'password_file' must not be empty");
            if (!path.starts_with('/')) {  // relative to the identities file, as the policy's key_file
                const auto slash = reader_.file().rfind('/');
                if (slash != std::string::npos) path = reader_.file().substr(0, slash + 1) + path;
            }
            credentials.origin = "password_file " + path;
            if (options_.read_credentials) credentials.password = read_password_file(file, path);
        } else {
            const auto name = reader_.as_string(env, "password_env");
            if (name.empty()) reader_.fail(env, "'password_env' must name an environment variable");
            credentials.origin = "password_env " + name;
            if (options_.read_credentials) {
                const char* value = std::getenv(name.c_str());
                if (value == nullptr || *value == '\0')
                    reader_.fail(env, fmt::format("the environment variable {} (role '{}''s password) is not set or "
                                                  "empty",
                                                  name, role));
                credentials.password = value;
                check_password(env, credentials.password, "the environment variable " + name);
            }
        }
        return credentials;
    }

    std::string read_password_file(const YAML::Node& node, const std::string& path) const {
        struct stat info {};
        if (::stat(path.c_str(), &info) != 0) reader_.fail(node, fmt::format("cannot read the password file {}", path));
        if (!S_ISREG(info.st_mode)) reader_.fail(node, fmt::format("the password file {} is not a regular file", path));
        // As libpq treats ~/.pgpass: a secret others can read is not a secret. Group access is allowed
        // (a root-owned 0640 file for pgrail's group, a mounted secret).
        if ((info.st_mode & S_IRWXO) != 0)
            reader_.fail(node, fmt::format("the password file {} is accessible to other users (mode {:04o}); "
                                           "chmod o-rwx it (0600 or 0640)",
                                           path, info.st_mode & 07777));
        std::ifstream in(path, std::ios::binary);
        if (!in) reader_.fail(node, fmt::format("cannot read the password file {}", path));
        std::string password;
        char c = 0;
        while (in.get(c)) {
            if (password.size() > max_password_length + 2)
                reader_.fail(node, fmt::format("the password file {} is longer than {} bytes", path, max_password_length));
            password += c;
        }
        // One trailing line end is the editor's, not the password's.
        if (password.ends_with("\r\n")) password.resize(password.size() - 2);
        else if (password.ends_with('\n')) password.pop_back();
        check_password(node, password, "the password file " + path);
        return password;
    }

    void check_password(const YAML::Node& node, const std::string& password, const std::string& where) const {
        if (password.empty()) reader_.fail(node, fmt::format("{} holds an empty password", where));
        if (password.size() > max_password_length)
            reader_.fail(node, fmt::format("{} holds a password longer than {} bytes", where, max_password_length));
        if (password.find('\0') != std::string::npos)
            reader_.fail(node, fmt::format("{} holds a password with a NUL byte", where));
        if (password.find('\n') != std::string::npos)
            reader_.fail(node, fmt::format("{} holds more than one line (the password is its first and only line)",
                                           where));
    }

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

    const YamlReader& reader_;
    const IdentitiesLoadOptions& options_;
};

}  // namespace

const Identity* Identities::find(std::string_view name) const {
    const auto found = by_name.find(name);
    return found == by_name.end() ? nullptr : &identities[found->second];
}

const RoleCredentials* Identities::credentials(std::string_view role) const {
    const auto found = roles.find(role);
    return found == roles.end() ? nullptr : &found->second;
}

std::shared_ptr<const Identities> load_identities_file(const std::string& path, const IdentitiesLoadOptions& options) {
    const auto reader = YamlReader::from_file(path);
    struct stat info {};
    if (::stat(path.c_str(), &info) == 0 && (info.st_mode & (S_IRWXO | S_IWGRP)) != 0)
        throw config::ConfigError(fmt::format("{}:1:1: the identities file is accessible to other users or writable "
                                              "by its group (mode {:04o}): whoever can write it adds an identity, "
                                              "whoever can read it can guess at its verifiers; make it 0600 or 0640",
                                              path, info.st_mode & 07777));
    return Loader(reader, options).load();
}

std::shared_ptr<const Identities> load_identities_string(const std::string& text, const std::string& name,
                                                         const IdentitiesLoadOptions& options) {
    const auto reader = YamlReader::from_string(text, name);
    return Loader(reader, options).load();
}

}  // namespace pgrail::auth

// The identities file of auth.mode: pgrail: who may log in to pgrail (SCRAM verifiers) and, per role,
// where pgrail's own credentials for the server come from.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pgrail/auth/scram.hpp"

namespace pgrail::auth {

// The longest identity or role name: PostgreSQL's NAMEDATALEN - 1, since a client sends it as `user`.
inline constexpr std::size_t max_identity_name_length = 63;

// One agent (or person) known to pgrail by name; many identities may map to one role.
struct Identity {
    std::string name;
    std::string role;  // the server role pgrail logs in as for this identity
    ScramVerifier verifier;
};

// pgrail's own password for a role, read when the file is loaded (so a reload picks up a rotation).
struct RoleCredentials {
    std::string role;
    std::string origin;    // "password_file /etc/pgrail/agent.pw" or "password_env NAME", for messages
    std::string password;  // never logged, never printed
};

struct Identities {
    std::string source;  // the file it came from
    std::vector<Identity> identities;                              // in file order
    std::map<std::string, RoleCredentials, std::less<>> roles;     // by role name
    std::map<std::string, std::size_t, std::less<>> by_name;       // identity name -> index in identities
    // The iteration count most verifiers have (the larger on a tie; PostgreSQL's default without
    // identities): what an unknown name is offered. Worked out at load, not per login (a login's
    // time must not depend on whether its name is known).
    int usual_iterations = default_scram_iterations;

    [[nodiscard]] const Identity* find(std::string_view name) const;
    [[nodiscard]] const RoleCredentials* credentials(std::string_view role) const;
};

struct IdentitiesLoadOptions {
    // false: check the roles' sources but do not read them (pgrail passwd, run by someone who need
    // not be able to read pgrail's password files; password stays empty).
    bool read_credentials = true;
};

// Load and check; every error is a config::ConfigError "file:line:column: message". Reload = load again.
// The file must not be accessible to other users (as the roles' password files): whoever can write
// it adds an identity, whoever can read it can guess at its verifiers offline.
[[nodiscard]] std::shared_ptr<const Identities> load_identities_file(const std::string& path,
                                                                     const IdentitiesLoadOptions& options = {});
[[nodiscard]] std::shared_ptr<const Identities> load_identities_string(const std::string& text, const std::string& name,
                                                                       const IdentitiesLoadOptions& options = {});

}  // namespace pgrail::auth

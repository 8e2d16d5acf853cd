// Writing an identity into the identities file's text (pgrail passwd): add or replace one entry.
#pragma once

#include <string>

namespace pgrail::auth {

struct IdentityUpsert {
    std::string text;       // the whole new file
    bool replaced = false;  // the identity existed (its role and verifier were replaced)
};

// `existing`: the file's current text ("" when it does not exist yet), read under the name `file`.
// Adds {name, role, verifier} to identities, or replaces that identity's role and verifier, and keeps
// everything else (other identities in order, roles); the file is re-emitted in canonical form, so
// YAML comments are not kept. Throws config::ConfigError ("file:line:column: ...") when the existing
// text is not YAML or not an identities file's shape, so a file pgrail cannot read is never clobbered.
[[nodiscard]] IdentityUpsert upsert_identity(const std::string& existing, const std::string& file,
                                             const std::string& name, const std::string& role,
                                             const std::string& verifier);

}  // namespace pgrail::auth

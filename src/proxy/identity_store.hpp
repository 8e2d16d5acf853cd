// auth.mode pgrail: the identities file in force, swapped whole on SIGHUP (like TlsContexts), and
// the process's one mock secret for the SCRAM exchanges of unknown identities.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "pgrail/auth/identities.hpp"

namespace pgrail::proxy {

class IdentityStore {
public:
    // Loads `path` now: a bad file throws config::ConfigError ("file:line:column: ..."), so the
    // start fails with it.
    explicit IdentityStore(std::string path);

    [[nodiscard]] std::shared_ptr<const auth::Identities> current() const {
        const std::lock_guard lock(mutex_);
        return current_;
    }
    // Loads the file again; on success makes it current and returns "", else returns the error and
    // the identities in force stay so.
    [[nodiscard]] std::string reload();
    // 32 random bytes made once per process: an unknown name gets the same salt on every attempt
    // (as PostgreSQL's scram_mock_salt), so a probe cannot tell it from a known identity.
    [[nodiscard]] const std::string& mock_secret() const { return mock_secret_; }
    [[nodiscard]] const std::string& path() const { return path_; }

private:
    std::string path_;
    std::string mock_secret_;
    mutable std::mutex mutex_;
    std::shared_ptr<const auth::Identities> current_;
};

}  // namespace pgrail::proxy

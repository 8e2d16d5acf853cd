#include "identity_store.hpp"

#include <exception>
#include <utility>

#include "pgrail/auth/scram_server.hpp"

namespace pgrail::proxy {

IdentityStore::IdentityStore(std::string path)
    : path_(std::move(path)), mock_secret_(auth::new_mock_secret()), current_(auth::load_identities_file(path_)) {}

std::string IdentityStore::reload() {
    std::shared_ptr<const auth::Identities> loaded;
    try {
        loaded = auth::load_identities_file(path_);
    } catch (const std::exception& e) {
        return e.what();
    }
    const std::lock_guard lock(mutex_);
    current_ = std::move(loaded);
    return {};
}

}  // namespace pgrail::proxy

// Client-facing backend keys and their upstream counterparts.
#include "pgrail/proxy/cancel_registry.hpp"

#include <stdexcept>

#include <openssl/rand.h>

namespace pgrail::proxy {
namespace {

// From a cryptographic source, as PostgreSQL's pg_strong_random: a client that has seen many
// keys must not be able to predict another session's secret and cancel its queries.
std::int32_t strong_random() {
    std::int32_t value = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&value), sizeof value) != 1)
        throw std::runtime_error("no cryptographic random bytes for a cancel key");
    return value;
}

}  // namespace

CancelRegistry::CancelRegistry() {
    // Pids from 1,000,000 up: above the real backend pids of most systems, so logs do not mix them up.
    next_pid_ = 1000000 + static_cast<std::int32_t>(static_cast<std::uint32_t>(strong_random()) % 1000000);
}

protocol::BackendKey CancelRegistry::add(protocol::BackendKey upstream) {
    std::lock_guard lock(mutex_);
    protocol::BackendKey client_key;
    do {
        client_key.pid = next_pid_++;
        if (next_pid_ <= 0) next_pid_ = 1000000;
    } while (by_client_pid_.contains(client_key.pid));
    client_key.secret = strong_random();
    by_client_pid_.emplace(client_key.pid, Entry{client_key.secret, upstream, {}});
    return client_key;
}

void CancelRegistry::remove(protocol::BackendKey client_key) {
    std::lock_guard lock(mutex_);
    auto it = by_client_pid_.find(client_key.pid);
    if (it != by_client_pid_.end() && it->second.secret == client_key.secret) by_client_pid_.erase(it);
}

void CancelRegistry::set_abandon_flag(protocol::BackendKey client_key, std::weak_ptr<std::atomic<bool>> flag) {
    std::lock_guard lock(mutex_);
    auto it = by_client_pid_.find(client_key.pid);
    if (it != by_client_pid_.end() && it->second.secret == client_key.secret) it->second.abandon = std::move(flag);
}

void CancelRegistry::abandon(protocol::BackendKey client_key) const {
    std::lock_guard lock(mutex_);
    auto it = by_client_pid_.find(client_key.pid);
    if (it == by_client_pid_.end() || it->second.secret != client_key.secret) return;
    if (const auto flag = it->second.abandon.lock()) flag->store(true);
}

std::optional<protocol::BackendKey> CancelRegistry::find(protocol::BackendKey client_key) const {
    std::lock_guard lock(mutex_);
    auto it = by_client_pid_.find(client_key.pid);
    if (it == by_client_pid_.end() || it->second.secret != client_key.secret) return std::nullopt;
    return it->second.upstream;
}

}  // namespace pgrail::proxy

// Client-facing backend keys and their upstream counterparts.
#include "pgrail/proxy/cancel_registry.hpp"

#include <stdexcept>

#include <openssl/rand.h>

namespace pgrail::proxy {
namespace {

// From a cryptographic source, as PostgreSQL's pg_strong_random: a client that has seen many
// keys (and knows every pid from pg_stat_activity) must not be able to predict another
// session's secret and cancel its queries.
std::int32_t strong_random() {
    std::int32_t value = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&value), sizeof value) != 1)
        throw std::runtime_error("no cryptographic random bytes for a cancel key");
    return value;
}

}  // namespace

CancelRegistry::Entry* CancelRegistry::lookup(protocol::BackendKey client_key) {
    auto [first, last] = by_pid_.equal_range(client_key.pid);
    for (auto it = first; it != last; ++it)
        if (it->second.secret == client_key.secret) return &it->second;
    return nullptr;
}

const CancelRegistry::Entry* CancelRegistry::lookup(protocol::BackendKey client_key) const {
    return const_cast<CancelRegistry*>(this)->lookup(client_key);
}

protocol::BackendKey CancelRegistry::add(protocol::BackendKey upstream) {
    std::lock_guard lock(mutex_);
    protocol::BackendKey client_key;
    client_key.pid = upstream.pid;  // the real pid: what pg_backend_pid() answers
    do {
        client_key.secret = strong_random();
    } while (lookup(client_key) != nullptr);
    by_pid_.emplace(client_key.pid, Entry{client_key.secret, upstream, {}});
    return client_key;
}

void CancelRegistry::remove(protocol::BackendKey client_key) {
    std::lock_guard lock(mutex_);
    auto [first, last] = by_pid_.equal_range(client_key.pid);
    for (auto it = first; it != last; ++it) {
        if (it->second.secret == client_key.secret) {
            by_pid_.erase(it);
            return;
        }
    }
}

void CancelRegistry::set_abandon_flag(protocol::BackendKey client_key, std::weak_ptr<std::atomic<bool>> flag) {
    std::lock_guard lock(mutex_);
    if (auto* entry = lookup(client_key)) entry->abandon = std::move(flag);
}

void CancelRegistry::abandon(protocol::BackendKey client_key) const {
    std::lock_guard lock(mutex_);
    const auto* entry = lookup(client_key);
    if (entry == nullptr) return;
    if (const auto flag = entry->abandon.lock()) flag->store(true);
}

std::optional<protocol::BackendKey> CancelRegistry::find(protocol::BackendKey client_key) const {
    std::lock_guard lock(mutex_);
    const auto* entry = lookup(client_key);
    if (entry == nullptr) return std::nullopt;
    return entry->upstream;
}

}  // namespace pgrail::proxy

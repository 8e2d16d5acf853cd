// Client-facing backend keys and their upstream counterparts.
#include "pgrail/proxy/cancel_registry.hpp"

namespace pgrail::proxy {

CancelRegistry::CancelRegistry() : random_(std::random_device{}()) {
    // Start somewhere plausible for a pid, so logs do not mistake it for a real backend.
    next_pid_ = static_cast<std::int32_t>(1000000 + random_() % 1000000);
}

protocol::BackendKey CancelRegistry::add(protocol::BackendKey upstream) {
    std::lock_guard lock(mutex_);
    protocol::BackendKey client_key;
    do {
        client_key.pid = next_pid_++;
        if (next_pid_ <= 0) next_pid_ = 1000000;
    } while (by_client_pid_.contains(client_key.pid));
    client_key.secret = static_cast<std::int32_t>(random_());
    by_client_pid_.emplace(client_key.pid, std::make_pair(client_key.secret, upstream));
    return client_key;
}

void CancelRegistry::remove(protocol::BackendKey client_key) {
    std::lock_guard lock(mutex_);
    auto it = by_client_pid_.find(client_key.pid);
    if (it != by_client_pid_.end() && it->second.first == client_key.secret) by_client_pid_.erase(it);
}

std::optional<protocol::BackendKey> CancelRegistry::find(protocol::BackendKey client_key) const {
    std::lock_guard lock(mutex_);
    auto it = by_client_pid_.find(client_key.pid);
    if (it == by_client_pid_.end() || it->second.first != client_key.secret) return std::nullopt;
    return it->second.second;
}

}  // namespace pgrail::proxy

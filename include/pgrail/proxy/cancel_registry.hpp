// Maps the BackendKeyData pgrail gives each client to the real upstream backend's key.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "pgrail/protocol/backend.hpp"

namespace pgrail::proxy {

// Clients never see the server's pid and secret: a CancelRequest arrives on a fresh
// connection, possibly on another worker thread, and is routed through this table.
class CancelRegistry {
public:
    CancelRegistry();

    // A fresh client-facing key for an upstream backend's key; release it when the session ends.
    [[nodiscard]] protocol::BackendKey add(protocol::BackendKey upstream);
    void remove(protocol::BackendKey client_key);
    // The upstream key for a client's CancelRequest; nullopt for an unknown pid or a wrong secret.
    [[nodiscard]] std::optional<protocol::BackendKey> find(protocol::BackendKey client_key) const;
    // While pgrail itself runs a command for the session (an in-band migration), a cancel is
    // meant for that command, not the idle backend: the session registers the command's flag
    // here (an empty pointer clears it), and abandon() raises it for a matching key.
    void set_abandon_flag(protocol::BackendKey client_key, std::weak_ptr<std::atomic<bool>> flag);
    void abandon(protocol::BackendKey client_key) const;

private:
    struct Entry {
        std::int32_t secret = 0;
        protocol::BackendKey upstream;
        std::weak_ptr<std::atomic<bool>> abandon;
    };
    mutable std::mutex mutex_;
    std::unordered_map<std::int32_t, Entry> by_client_pid_;
    std::int32_t next_pid_;
};

}  // namespace pgrail::proxy

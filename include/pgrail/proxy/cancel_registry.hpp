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

// A client sees its backend's real pid (so pg_backend_pid(), pg_terminate_backend and NOTIFY's
// sender pid agree with the driver's) but never the server's secret: pgrail hands out a random
// secret of its own, so a client that learns another session's pid still cannot cancel it, and
// the server's secret never leaves pgrail. A CancelRequest arrives on a fresh connection,
// possibly on another worker thread, and is routed through this table by (pid, pgrail's secret).
class CancelRegistry {
public:
    // The client-facing key for an upstream backend's key: the same pid, a fresh random secret
    // (unique among the live keys of that pid); release it when the session ends.
    [[nodiscard]] protocol::BackendKey add(protocol::BackendKey upstream);
    void remove(protocol::BackendKey client_key);
    // The upstream key for a client's CancelRequest; nullopt for an unknown pid or a wrong secret
    // (a right pid with a wrong secret reaches nothing, as in PostgreSQL).
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
    // Several entries for one pid only in the moment a backend's pid is reused by the kernel while
    // the ended session has not yet released its key: the secret tells them apart.
    Entry* lookup(protocol::BackendKey client_key);
    const Entry* lookup(protocol::BackendKey client_key) const;
    mutable std::mutex mutex_;
    std::unordered_multimap<std::int32_t, Entry> by_pid_;
};

}  // namespace pgrail::proxy

// Connections from one client address that have not logged in yet, bounded. A host that opens
// sockets and says nothing holds each for the 60 s a login may take: without a bound per address,
// one host could take every place of max_client_connections, and nobody else could log in. An
// IPv6 client counts by its /64; Unix-socket clients are not counted (they are this machine's).
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "pgrail/proxy/address_budget.hpp"

namespace pgrail::proxy {

class PendingLogins : public std::enable_shared_from_this<PendingLogins> {
public:
    // per_address 0: no bound.
    explicit PendingLogins(std::size_t per_address) : per_address_(per_address) {}

    // A connection's place while it logs in: given back when destroyed (logged in, or gone).
    class Place {
    public:
        Place(std::shared_ptr<PendingLogins> owner, std::string key) : owner_(std::move(owner)), key_(std::move(key)) {}
        Place(const Place&) = delete;
        Place& operator=(const Place&) = delete;
        ~Place() { owner_->leave(key_); }

    private:
        std::shared_ptr<PendingLogins> owner_;
        std::string key_;
    };

    // A place for a connection from `address`; null when the address has all of its places taken.
    [[nodiscard]] std::unique_ptr<Place> enter(const std::string& address) {
        if (per_address_ == 0 || address.empty() || address.front() == '[' || address == "local" ||
            address == "unknown")
            return std::make_unique<Place>(shared_from_this(), std::string());
        std::string key = AddressBudget::key_of(address);
        {
            const std::lock_guard lock(mutex_);
            auto& count = pending_[key];
            if (count >= per_address_) return nullptr;
            ++count;
        }
        return std::make_unique<Place>(shared_from_this(), std::move(key));
    }

private:
    void leave(const std::string& key) {
        if (key.empty()) return;
        const std::lock_guard lock(mutex_);
        const auto found = pending_.find(key);
        if (found != pending_.end() && --found->second == 0) pending_.erase(found);
    }

    std::size_t per_address_;
    std::mutex mutex_;
    std::map<std::string, std::size_t> pending_;
};

}  // namespace pgrail::proxy

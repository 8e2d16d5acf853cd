// The audit and log lines that clients nobody has authenticated can cause, bounded per client
// address and in all: a flood from one address spends that address's budget, not everyone's, so
// another client's failed logins (password guessing under auth.mode pgrail) stay on record while
// it goes on. An IPv6 client counts by its /64 (one host can hold a whole /64); IPv4 by address.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "pgrail/proxy/audit_budget.hpp"

namespace pgrail::proxy {

class AddressBudget {
public:
    using Clock = AuditBudget::Clock;
    struct Rates {
        double per_address_per_second = 1.0;
        double per_address_burst = 20.0;
        double total_per_second = 10.0;
        double total_burst = 100.0;
        std::size_t max_addresses = 4096;  // tracked at once; beyond it, the new ones share one budget
    };
    AddressBudget() : AddressBudget(Rates{}) {}
    explicit AddressBudget(Rates rates);

    // A line for `address` may be written now: the number of lines (of any address) left out
    // since the last one written, for that line to carry; nullopt: leave this one out (counted).
    std::optional<std::uint64_t> take(std::string_view address, Clock::time_point now = Clock::now());

    // The key an address counts under (its /64 for IPv6, itself otherwise).
    static std::string key_of(std::string_view address);

    [[nodiscard]] std::uint64_t left_out_total() const;

private:
    void forget_idle(Clock::time_point now);

    Rates rates_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, TokenBucket> addresses_;
    TokenBucket overflow_;  // the addresses beyond max_addresses, together
    TokenBucket total_;
    std::uint64_t left_out_ = 0;
    std::uint64_t left_out_total_ = 0;
};

}  // namespace pgrail::proxy

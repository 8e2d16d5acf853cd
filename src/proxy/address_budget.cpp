#include "pgrail/proxy/address_budget.hpp"

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <utility>

namespace pgrail::proxy {

AddressBudget::AddressBudget(Rates rates) : rates_(rates) {
    overflow_.tokens = rates_.per_address_burst;
    total_.tokens = rates_.total_burst;
}

std::string AddressBudget::key_of(std::string_view address) {
    boost::system::error_code ec;
    const auto parsed = boost::asio::ip::make_address(std::string(address), ec);
    if (ec || !parsed.is_v6()) return std::string(address);
    auto v6 = parsed.to_v6();
    if (v6.is_v4_mapped()) return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_string();
    auto bytes = v6.to_bytes();
    std::fill(bytes.begin() + 8, bytes.end(), 0);
    return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

// Addresses whose budget has filled up again are as good as new: dropped from the map.
void AddressBudget::forget_idle(Clock::time_point now) {
    std::erase_if(addresses_, [&](const auto& entry) {
        const double seconds = std::chrono::duration<double>(now - entry.second.last).count();
        return entry.second.tokens + seconds * rates_.per_address_per_second >= rates_.per_address_burst;
    });
}

std::optional<std::uint64_t> AddressBudget::take(std::string_view address, Clock::time_point now) {
    const std::string key = key_of(address);
    const std::lock_guard lock(mutex_);
    TokenBucket* bucket = nullptr;
    if (const auto found = addresses_.find(key); found != addresses_.end()) {
        bucket = &found->second;
    } else {
        if (addresses_.size() >= rates_.max_addresses) forget_idle(now);
        if (addresses_.size() < rates_.max_addresses) {
            bucket = &addresses_.emplace(key, TokenBucket{rates_.per_address_burst, now}).first->second;
        } else {
            bucket = &overflow_;
        }
    }
    // The address's own budget first: a flooding address spends none of the total.
    if (!bucket->take_one(rates_.per_address_per_second, rates_.per_address_burst, now) ||
        !total_.take_one(rates_.total_per_second, rates_.total_burst, now)) {
        ++left_out_;
        ++left_out_total_;
        return std::nullopt;
    }
    return std::exchange(left_out_, 0);
}

std::uint64_t AddressBudget::left_out_total() const {
    const std::lock_guard lock(mutex_);
    return left_out_total_;
}

}  // namespace pgrail::proxy

#include "pgrail/proxy/refusal_pacer.hpp"

#include <algorithm>
#include <iterator>

namespace pgrail::proxy {

RefusalPacer::Clock::duration RefusalPacer::reserve(std::string_view login, std::size_t bytes, Clock::time_point now) {
    return *reserve_within(login, bytes, Clock::duration::max(), now);
}

std::optional<RefusalPacer::Clock::duration> RefusalPacer::reserve_within(std::string_view login, std::size_t bytes,
                                                                          Clock::duration longest,
                                                                          Clock::time_point now) {
    if (per_second_ <= 0) return Clock::duration::zero();
    const std::lock_guard lock(mutex_);
    auto found = logins_.find(std::string(login));
    if (found == logins_.end()) {
        // Logins are authenticated (a role the server knows, an identity of pgrail's), so the map
        // stays small; those at a full budget carry nothing and are dropped when it grows.
        if (logins_.size() >= forget_above) {
            for (auto it = logins_.begin(); it != logins_.end();) {
                it->second.refill(per_second_, burst_, now);
                it = it->second.tokens >= burst_ ? logins_.erase(it) : std::next(it);
            }
        }
        found = logins_.emplace(std::string(login), TokenBucket{burst_, now}).first;
    }
    TokenBucket& bucket = found->second;
    bucket.refill(per_second_, burst_, now);
    const double left = bucket.tokens - static_cast<double>(bytes);
    if (left >= 0) {
        bucket.tokens = left;
        return Clock::duration::zero();
    }
    const std::chrono::duration<double> wait(-left / per_second_);
    if (longest != Clock::duration::max() && wait > longest) return std::nullopt;
    bucket.tokens = left;
    return std::chrono::duration_cast<Clock::duration>(wait);
}

}  // namespace pgrail::proxy

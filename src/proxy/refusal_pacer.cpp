#include "pgrail/proxy/refusal_pacer.hpp"

#include <algorithm>
#include <iterator>

namespace pgrail::proxy {

RefusalPacer::Clock::duration RefusalPacer::reserve(std::string_view login, std::size_t bytes, Clock::time_point now) {
    if (per_second_ <= 0) return Clock::duration::zero();
    const auto refill = [&](Bucket& bucket) {
        const double seconds = std::chrono::duration<double>(now - bucket.last).count();
        bucket.tokens = std::min(burst_, bucket.tokens + std::max(0.0, seconds) * per_second_);
        bucket.last = std::max(bucket.last, now);
    };
    const std::lock_guard lock(mutex_);
    auto found = logins_.find(std::string(login));
    if (found == logins_.end()) {
        // Logins are authenticated (a role the server knows, an identity of pgrail's), so the map
        // stays small; those at a full budget carry nothing and are dropped when it grows.
        if (logins_.size() >= forget_above) {
            for (auto it = logins_.begin(); it != logins_.end();) {
                refill(it->second);
                it = it->second.tokens >= burst_ ? logins_.erase(it) : std::next(it);
            }
        }
        found = logins_.emplace(std::string(login), Bucket{burst_, now}).first;
    }
    Bucket& bucket = found->second;
    refill(bucket);
    bucket.tokens -= static_cast<double>(bytes);
    if (bucket.tokens >= 0) return Clock::duration::zero();
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(-bucket.tokens / per_second_));
}

}  // namespace pgrail::proxy

// A bound on the audit lines that clients nobody has authenticated can cause (a refused startup
// packet in passthrough mode, a failed login under auth.mode pgrail): a token bucket, so a flood
// of connections from anywhere cannot fill the audit volume, which stops every session's
// refusals and schema changes (they fail closed when their line cannot be written).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>

#include "pgrail/proxy/token_bucket.hpp"

namespace pgrail::proxy {

class AuditBudget {
public:
    using Clock = TokenBucket::Clock;
    AuditBudget(double lines_per_second, double burst) : rate_(lines_per_second), burst_(burst), bucket_{burst} {}

    // A line may be written now: the number of lines left out since the last one written (for
    // that line to carry); nullopt: leave this one out (it is counted).
    std::optional<std::uint64_t> take(Clock::time_point now = Clock::now()) {
        const std::lock_guard lock(mutex_);
        if (!bucket_.take_one(rate_, burst_, now)) {
            ++left_out_;
            ++left_out_total_;
            return std::nullopt;
        }
        return std::exchange(left_out_, 0);
    }

    [[nodiscard]] std::uint64_t left_out_total() const {
        const std::lock_guard lock(mutex_);
        return left_out_total_;
    }

private:
    mutable std::mutex mutex_;
    double rate_;
    double burst_;
    TokenBucket bucket_;
    std::uint64_t left_out_ = 0;        // since the last line written
    std::uint64_t left_out_total_ = 0;  // since the start
};

}  // namespace pgrail::proxy

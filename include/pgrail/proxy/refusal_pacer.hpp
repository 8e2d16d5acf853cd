// Refusals beyond a login's budget are answered later, not left out: every refusal stays on
// record (its audit line is written first), but one login's sessions cannot write refusal lines
// faster than `bytes_per_second` after a burst, whatever they send. Without it, one agent looping
// on a refused statement (or pipelining thousands) filled an audit volume in seconds, after which
// every session's refusals and schema changes failed closed (58030). Counted in bytes, since a
// line's size is what fills the disk: a short refusal's line is ~0.5 KB, a long statement's ~9 KB.
//
// A token bucket per login (identity, else role) that may go into debt: each refusal takes its
// line's bytes, and the session waits until the bucket would have held them.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "pgrail/proxy/token_bucket.hpp"

namespace pgrail::proxy {

class RefusalPacer {
public:
    using Clock = TokenBucket::Clock;
    // bytes_per_second 0: no pacing.
    RefusalPacer(double bytes_per_second, double burst_bytes) : per_second_(bytes_per_second), burst_(burst_bytes) {}

    // How long the session waits before it answers this refusal of `login`, whose audit line took
    // `bytes` (zero within budget).
    Clock::duration reserve(std::string_view login, std::size_t bytes, Clock::time_point now = Clock::now());
    // As reserve(), but nothing is taken when the wait would pass `longest`: nullopt then.
    std::optional<Clock::duration> reserve_within(std::string_view login, std::size_t units, Clock::duration longest,
                                                  Clock::time_point now = Clock::now());

private:
    static constexpr std::size_t forget_above = 1024;  // logins tracked before full buckets are dropped

    double per_second_;
    double burst_;
    std::mutex mutex_;
    std::unordered_map<std::string, TokenBucket> logins_;  // bytes; below zero: lines reserved ahead
};

}  // namespace pgrail::proxy

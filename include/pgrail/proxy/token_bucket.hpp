// A token bucket: `rate` tokens a second, held up to `burst`. Its owners lock around it, or keep
// it to one thread. The audit budgets take whole lines from one; the refusal pacer takes bytes and
// lets it go into debt; the policy gate's I/O threads, seconds of checks (policy_gate.cpp).
#pragma once

#include <algorithm>
#include <chrono>

namespace pgrail::proxy {

struct TokenBucket {
    using Clock = std::chrono::steady_clock;

    double tokens = 0;
    Clock::time_point last{};  // the epoch: never refilled yet (it starts at `tokens`)

    // Adds what `rate` gave since the last call, never above `burst` (a clock read earlier than
    // the last adds nothing).
    void refill(double rate, double burst, Clock::time_point now) {
        if (last != Clock::time_point{}) {
            const double seconds = std::chrono::duration<double>(now - last).count();
            tokens = std::min(burst, tokens + std::max(0.0, seconds) * rate);
        }
        last = std::max(last, now);
    }

    // One token, if the bucket holds one after its refill.
    bool take_one(double rate, double burst, Clock::time_point now) {
        refill(rate, burst, now);
        if (tokens < 1.0) return false;
        tokens -= 1.0;
        return true;
    }
};

}  // namespace pgrail::proxy

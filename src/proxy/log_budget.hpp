// A budget for log lines that anyone who can reach the listener causes (a bad startup packet, a
// failed TLS handshake, a cancel request for no session): logged as PostgreSQL logs them, but at
// most `rate` a second (`burst` at once), so that a flood of connections cannot flood the log; the
// next line logged says how many were left out before it.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "pgrail/proxy/token_bucket.hpp"

namespace pgrail::proxy {

class LogBudget {
public:
    LogBudget(double rate, double burst) : rate_(rate), burst_(burst) { bucket_.tokens = burst; }

    // A suffix for the line to log (empty, or " (N more such lines not logged before it)"), or
    // nothing when the line is left out (counted).
    [[nodiscard]] std::optional<std::string> take(TokenBucket::Clock::time_point now = TokenBucket::Clock::now()) {
        std::lock_guard lock(mutex_);
        if (!bucket_.take_one(rate_, burst_, now)) {
            ++left_out_;
            return std::nullopt;
        }
        if (left_out_ == 0) return std::string();
        const auto suffix = fmt::format(" ({} more such lines not logged before it)", left_out_);
        left_out_ = 0;
        return suffix;
    }

private:
    std::mutex mutex_;
    TokenBucket bucket_;
    std::uint64_t left_out_ = 0;
    const double rate_;
    const double burst_;
};

// The process's budget for lines about connections that have not logged in.
inline LogBudget& unauthenticated_log_budget() {
    static LogBudget budget(20, 100);
    return budget;
}

}  // namespace pgrail::proxy

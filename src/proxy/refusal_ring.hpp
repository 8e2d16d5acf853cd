// The latest refusals, in memory, for pgrail.refusals(): a bounded ring filled as they are audited.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgrail::proxy {

// One refusal as its audit line told it: the same redaction (literals as $n unless the operator
// turned redaction off for the audit log too), never more than the line holds.
struct RefusalRecord {
    std::string at;  // the audit line's time (RFC 3339, UTC)
    std::uint64_t session_id = 0;
    std::string user;
    std::string rule;
    std::string guard;
    std::string sqlstate;
    std::string message;
    std::string statement;  // the line's normalised statement; empty when it holds none
};

class RefusalRing {
public:
    static constexpr std::size_t default_capacity = 1000;
    explicit RefusalRing(std::size_t capacity = default_capacity);

    // The record of a refusal's audit line (statement_refused, connection_refused,
    // result_refused...: any line whose decision is "deny"); nothing for other lines. Taken before
    // the line is written, added once it is (a refusal not on record is no refusal shown).
    [[nodiscard]] static std::optional<RefusalRecord> record_of(const nlohmann::json& event);
    void add(RefusalRecord record);
    // At most `limit` of the latest refusals, newest first. Thread-safe.
    [[nodiscard]] std::vector<RefusalRecord> latest(std::size_t limit) const;
    [[nodiscard]] std::size_t capacity() const { return capacity_; }

private:
    const std::size_t capacity_;
    mutable std::mutex mutex_;
    std::vector<RefusalRecord> records_;  // under mutex_: a ring once full
    std::size_t next_ = 0;                // under mutex_: where the next one goes once full
};

// The process's ring (as metrics(): the gate fills it, pgrail.refusals() reads it).
RefusalRing& recent_refusals();

}  // namespace pgrail::proxy

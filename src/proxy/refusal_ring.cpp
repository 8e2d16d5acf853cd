// The latest refusals for pgrail.refusals(), copied from their audit lines.
#include "refusal_ring.hpp"

#include <algorithm>

#include "pgrail/audit/audit_log.hpp"

namespace pgrail::proxy {

namespace {

std::string text_of(const nlohmann::json& event, const char* key) {
    const auto found = event.find(key);
    return found != event.end() && found->is_string() ? found->get<std::string>() : std::string();
}

}  // namespace

RefusalRing::RefusalRing(std::size_t capacity) : capacity_(std::max<std::size_t>(1, capacity)) {}

std::optional<RefusalRecord> RefusalRing::record_of(const nlohmann::json& event) {
    if (!event.is_object() || text_of(event, "decision") != "deny") return std::nullopt;
    RefusalRecord record;
    record.at = text_of(event, "time");
    if (record.at.empty()) record.at = audit::rfc3339_now();
    if (const auto id = event.find("session_id"); id != event.end() && id->is_number_integer() && *id >= 0)
        record.session_id = id->get<std::uint64_t>();
    record.user = text_of(event, "user");
    record.rule = text_of(event, "rule");
    record.guard = text_of(event, "guard");
    record.sqlstate = text_of(event, "sqlstate");
    record.message = text_of(event, "message");
    record.statement = text_of(event, "statement");
    return record;
}

void RefusalRing::add(RefusalRecord record) {
    std::lock_guard lock(mutex_);
    if (records_.size() < capacity_) {
        records_.push_back(std::move(record));
        return;
    }
    records_[next_] = std::move(record);
    next_ = (next_ + 1) % capacity_;
}

std::vector<RefusalRecord> RefusalRing::latest(std::size_t limit) const {
    std::lock_guard lock(mutex_);
    std::vector<RefusalRecord> out;
    const std::size_t count = std::min(limit, records_.size());
    out.reserve(count);
    // The newest is just before next_ once the ring is full, at the back before.
    const std::size_t newest = records_.size() < capacity_ ? records_.size() : next_ + capacity_;
    for (std::size_t index = 0; index < count; ++index)
        out.push_back(records_[(newest - 1 - index) % records_.size()]);
    return out;
}

RefusalRing& recent_refusals() {
    static RefusalRing instance;
    return instance;
}

}  // namespace pgrail::proxy

// How many sessions each rule has at once in this process (a rule's max_connections): a place is
// taken when a login is admitted and given back when its session ends, whatever policy is loaded
// by then (counted under the rule's name at admission).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

namespace pgrail::proxy {

class RuleSessions : public std::enable_shared_from_this<RuleSessions> {
public:
    // A place among `limit` for a session of `rule`, held until the returned handle is released;
    // null when the rule has `limit` sessions already.
    [[nodiscard]] std::shared_ptr<void> take(const std::string& rule, std::uint32_t limit) {
        {
            const std::lock_guard lock(mutex_);
            auto& count = counts_[rule];
            if (count >= limit) return nullptr;
            ++count;
        }
        return std::make_shared<Place>(shared_from_this(), rule);
    }

    [[nodiscard]] std::uint32_t count(const std::string& rule) const {
        const std::lock_guard lock(mutex_);
        const auto found = counts_.find(rule);
        return found == counts_.end() ? 0 : found->second;
    }

private:
    // A session's place: given back when the last handle goes.
    struct Place {
        Place(std::shared_ptr<RuleSessions> owner, std::string rule_name)
            : sessions(std::move(owner)), rule(std::move(rule_name)) {}
        Place(const Place&) = delete;
        Place& operator=(const Place&) = delete;
        ~Place() { sessions->give_back(rule); }
        std::shared_ptr<RuleSessions> sessions;
        std::string rule;
    };

    void give_back(const std::string& rule) {
        const std::lock_guard lock(mutex_);
        const auto found = counts_.find(rule);
        if (found != counts_.end() && --found->second == 0) counts_.erase(found);
    }

    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::uint32_t> counts_;
};

}  // namespace pgrail::proxy

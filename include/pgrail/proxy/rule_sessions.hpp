// How many sessions each rule has at once in this process (a rule's max_connections), counted
// with the logins in progress that hold a server connection for the rule (passthrough mode: the
// server authenticates the client), so that a rule never holds more of the server's connections
// than its bound, whoever sends the startup packets. A place is given back when its session ends,
// whatever policy is loaded by then (counted under the rule's name when taken).
//
// A login in progress that has not authenticated yet holds its place only until the rule is full:
// then the next login (or an authenticated session) takes the oldest such place, whose login
// ends. So clients that never finish logging in cannot keep the rule's own users out: a login
// finishes in milliseconds, theirs wait for the login timeout.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

namespace pgrail::proxy {

class RuleSessions : public std::enable_shared_from_this<RuleSessions> {
public:
    // A place among `limit` for a session of `rule`, held until the returned handle is released.
    // With `evict`, the place is a login's in progress, which a later place may take when the rule
    // is full: `evict` is called then (once, on the caller's thread, outside the lock). Null when
    // the rule has `limit` places already and none of them is a login's in progress.
    [[nodiscard]] std::shared_ptr<void> take(const std::string& rule, std::uint32_t limit,
                                             std::function<void()> evict = {}) {
        std::function<void()> evicted;
        std::uint64_t id = 0;
        {
            const std::lock_guard lock(mutex_);
            auto& counted = rules_[rule];
            if (counted.places < limit) {
                ++counted.places;
            } else if (!counted.logging_in.empty()) {
                // The oldest login in progress has waited longest: its place passes on.
                evicted = std::move(counted.logging_in.front().evict);
                counted.logging_in.pop_front();
            } else {
                if (counted.places == 0) rules_.erase(rule);
                return nullptr;
            }
            if (evict) {
                id = next_id_++;
                counted.logging_in.push_back({id, std::move(evict)});
            }
        }
        if (evicted) evicted();
        return std::make_shared<Place>(shared_from_this(), rule, id);
    }

    [[nodiscard]] std::uint32_t count(const std::string& rule) const {
        const std::lock_guard lock(mutex_);
        const auto found = rules_.find(rule);
        return found == rules_.end() ? 0 : found->second.places;
    }

private:
    // A place: given back when the last handle goes (unless it passed on to another).
    struct Place {
        Place(std::shared_ptr<RuleSessions> owner, std::string rule_name, std::uint64_t login_id)
            : sessions(std::move(owner)), rule(std::move(rule_name)), id(login_id) {}
        Place(const Place&) = delete;
        Place& operator=(const Place&) = delete;
        ~Place() { sessions->give_back(rule, id); }
        std::shared_ptr<RuleSessions> sessions;
        std::string rule;
        std::uint64_t id;  // a login's in progress; 0: a session's
    };

    struct LoggingIn {
        std::uint64_t id;
        std::function<void()> evict;
    };
    struct Counted {
        std::uint32_t places = 0;
        std::deque<LoggingIn> logging_in;  // oldest first
    };

    void give_back(const std::string& rule, std::uint64_t id) {
        const std::lock_guard lock(mutex_);
        const auto found = rules_.find(rule);
        if (found == rules_.end()) return;
        auto& counted = found->second;
        if (id != 0) {
            auto& waiting = counted.logging_in;
            const auto login = std::find_if(waiting.begin(), waiting.end(), [id](const LoggingIn& l) { return l.id == id; });
            if (login == waiting.end()) return;  // evicted: its place was taken over
            waiting.erase(login);
        }
        if (--counted.places == 0) rules_.erase(found);
    }

    mutable std::mutex mutex_;
    std::unordered_map<std::string, Counted> rules_;
    std::uint64_t next_id_ = 1;
};

}  // namespace pgrail::proxy

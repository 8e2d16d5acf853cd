// How many sessions each rule has at once in this process (a rule's max_connections), counted
// with the logins in progress that hold a server connection for the rule (passthrough mode: the
// server authenticates the client), so that a rule never holds more of the server's connections
// than its bound, whoever sends the startup packets. A place is given back when its session ends,
// whatever policy is loaded by then (counted under the rule's name when taken).
//
// A login in progress that has not authenticated yet holds its place only until the rule is full:
// then the next login (or an authenticated session) takes such a place, whose login ends: the
// oldest of the client address with the most logins in progress (the newcomer's counted). So
// clients that never finish logging in cannot keep the rule's own users out: a flood from one
// address ends its own logins first, and a login finishes in milliseconds, theirs wait for the
// login timeout (review 95: with the oldest of all taken, a flood ended 3 logins of 10).
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace pgrail::proxy {

class RuleSessions : public std::enable_shared_from_this<RuleSessions> {
public:
    // A place among `limit` for a session of `rule`, held until the returned handle is released.
    // With `evict`, the place is a login's in progress, which a later place may take when the rule
    // is full: `evict` is called then (once, on the caller's thread, outside the lock). Null when
    // the rule has `limit` places already and none of them is a login's in progress.
    // `address`: the login's client address (AddressBudget::key_of), with `evict`.
    [[nodiscard]] std::shared_ptr<void> take(const std::string& rule, std::uint32_t limit,
                                             std::function<void()> evict = {}, std::string address = {}) {
        std::function<void()> evicted;
        std::uint64_t id = 0;
        {
            const std::lock_guard lock(mutex_);
            auto& counted = rules_[rule];
            if (counted.places < limit) {
                ++counted.places;
            } else if (!counted.logging_in.empty()) {
                // Its place passes on.
                const auto victim = victim_of(counted.logging_in, evict ? std::string_view(address) : std::string_view());
                evicted = std::move(victim->evict);
                counted.logging_in.erase(victim);
            } else {
                if (counted.places == 0) rules_.erase(rule);
                return nullptr;
            }
            if (evict) {
                id = next_id_++;
                counted.logging_in.push_back({id, std::move(evict), std::move(address)});
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
        std::string address;
    };

    // The login in progress that gives way: the oldest of the address with the most of them,
    // counting the newcomer's (on a tie, the newcomer's address first).
    static std::deque<LoggingIn>::iterator victim_of(std::deque<LoggingIn>& waiting, std::string_view newcomer) {
        std::unordered_map<std::string_view, std::size_t> per_address;
        for (const auto& login : waiting) ++per_address[login.address];
        if (!newcomer.empty()) ++per_address[newcomer];
        std::size_t most = 0;
        for (const auto& [address, count] : per_address) most = std::max(most, count);
        const auto oldest_of = [&](std::string_view address) {
            return std::find_if(waiting.begin(), waiting.end(), [&](const LoggingIn& l) { return l.address == address; });
        };
        if (!newcomer.empty() && per_address[newcomer] == most)
            if (const auto own = oldest_of(newcomer); own != waiting.end()) return own;
        return std::find_if(waiting.begin(), waiting.end(),
                            [&](const LoggingIn& login) { return per_address[login.address] == most; });
    }
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

// The bounded wait for the migration lock and the errors that name who holds it.
#include "pgrail/migrations/lock.hpp"

#include <algorithm>
#include <thread>

#include <fmt/format.h>

#include "pgrail/protocol/sqlstate.hpp"

namespace pgrail::migrations {

LockWait wait_for_lock(const std::function<bool()>& try_lock, const std::function<bool()>& abandoned,
                       std::chrono::milliseconds wait) {
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + wait;
    auto pause = std::chrono::milliseconds(10);
    while (true) {
        if (abandoned && abandoned()) return LockWait::abandoned;
        if (try_lock()) return LockWait::acquired;
        const auto now = clock::now();
        if (now >= deadline) return LockWait::timed_out;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
        // Wake at the deadline for a last try (at least 1 ms, so a partial millisecond is not a busy loop).
        std::this_thread::sleep_for(std::max(std::chrono::milliseconds(1), std::min(pause, left)));
        pause = std::min(pause * 2, std::chrono::milliseconds(100));
    }
}

bool is_pgrail_runner(const LockHolder& holder) { return holder.application_name.starts_with("pgrail"); }

namespace {

std::string pid_list(const std::vector<LockHolder>& holders) {
    std::string out;
    for (const auto& holder : holders) out += fmt::format("{}{}", out.empty() ? "" : ", ", holder.pid);
    return out;
}

std::string describe(const LockHolder& holder) {
    std::string out = fmt::format("backend pid {}", holder.pid);
    const auto add = [&](std::string_view label, const std::string& value) {
        if (!value.empty()) out += fmt::format(", {} {}", label, value);
    };
    add("user", holder.user);
    add("application_name", holder.application_name.empty() ? "" : "\"" + holder.application_name + "\"");
    add("client", holder.client_address);
    add("state", holder.state);
    add("since", holder.state_change);
    add("connected at", holder.backend_start);
    add("lock mode", holder.mode);
    return out;
}

}  // namespace

MigrationError lock_wait_error(const std::vector<LockHolder>& holders, std::chrono::milliseconds waited) {
    const auto key = fmt::format("advisory lock key {}", advisory_lock_key);
    if (holders.empty())
        return MigrationError(sqlstate::lock_not_available,
                              fmt::format("could not take pgrail's migration lock within {} ms", waited.count()),
                              fmt::format("the {} was taken, but its holder had gone when pgrail looked", key),
                              "retry the command");
    const bool plural = holders.size() > 1;
    std::string detail = fmt::format("pgrail's migration lock ({}) is held by:", key);
    for (const auto& holder : holders) detail += "\n  " + describe(holder);
    std::vector<const LockHolder*> others;
    for (const auto& holder : holders)
        if (!is_pgrail_runner(holder)) others.push_back(&holder);
    std::string hint;
    if (others.empty()) {
        hint = "Another pgrail migration run is in progress; retry when it has finished (or raise "
               "migrations.lock_wait / --lock-wait).";
    } else {
        std::string pids;
        std::string terminate;
        for (const auto* holder : others) {
            pids += fmt::format("{}{}", pids.empty() ? "" : ", ", holder->pid);
            terminate += fmt::format("{}SELECT pg_terminate_backend({});", terminate.empty() ? "" : " ", holder->pid);
        }
        hint = fmt::format("Only pgrail's migration runner should take this lock. If backend{} {} {} not a "
                           "migration run of yours, a database operator can end {} session{} with: {} then retry.",
                           others.size() > 1 ? "s" : "", pids, others.size() > 1 ? "are" : "is",
                           others.size() > 1 ? "their" : "its", others.size() > 1 ? "s" : "", terminate);
    }
    return MigrationError(sqlstate::lock_not_available,
                          fmt::format("could not take pgrail's migration lock within {} ms: it is held by PostgreSQL "
                                      "backend{} pid{} {}",
                                      waited.count(), plural ? "s" : "", plural ? "s" : "", pid_list(holders)),
                          detail, hint);
}

MigrationError abandoned_error(std::string_view when, const std::vector<std::string>& done) {
    std::string detail;
    if (done.empty()) {
        detail = "nothing was applied or rolled back";
    } else {
        detail = "done before it stopped (committed, and recorded in the ledger):";
        for (const auto& step : done) detail += "\n  " + step;
        detail += "\nnothing after that was started";
    }
    return MigrationError(sqlstate::query_canceled,
                          fmt::format("migration run abandoned {}: its client cancelled or disconnected", when), detail,
                          "run the command again if it is still wanted; SELECT * FROM pgrail.status() shows "
                          "what is applied");
}

}  // namespace pgrail::migrations

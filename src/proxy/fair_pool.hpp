// Threads shared by many owners (roles or identities), each served in turn: one agent with many
// connections queueing long analyses cannot make another role's statement wait behind all of them.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace pgrail::proxy {

class FairPool {
public:
    // `max_running_per_owner`: no owner holds more of the threads at once (0: no bound), so the
    // others always find one free for their next job.
    explicit FairPool(std::size_t threads, std::size_t max_running_per_owner = 0);
    ~FairPool();
    FairPool(const FairPool&) = delete;
    FairPool& operator=(const FairPool&) = delete;

    // Queues `job` for `owner`. A free thread takes the next job of the waiting owner with the
    // fewest jobs running, then the one served least recently (an owner with nothing queued or
    // running counts as never served: a light user goes ahead of a busy one), then the one that
    // began waiting first; an owner's own jobs run in the order posted.
    void post(const std::string& owner, std::function<void()> job);
    // Runs what is queued, then stops the threads (idempotent).
    void join();

    [[nodiscard]] std::size_t queued() const;

private:
    struct Owner {
        std::deque<std::function<void()>> jobs;
        std::size_t running = 0;
        std::uint64_t last_served = 0;  // 0: not served since it last had nothing queued or running
        std::uint64_t arrived = 0;      // when it began waiting (ties of last_served)
    };
    void work();

    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::map<std::string, Owner, std::less<>> owners_;  // those with jobs queued or running
    std::size_t owners_waiting_ = 0;                    // those with jobs queued
    std::size_t max_running_per_owner_;
    std::uint64_t clock_ = 0;                           // orders arrivals and turns
    std::size_t queued_ = 0;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace pgrail::proxy

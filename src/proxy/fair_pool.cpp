#include "fair_pool.hpp"

#include <tuple>
#include <utility>

namespace pgrail::proxy {

FairPool::FairPool(std::size_t threads, std::size_t max_running_per_owner)
    : max_running_per_owner_(max_running_per_owner) {
    threads_.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
}

FairPool::~FairPool() { join(); }

void FairPool::post(const std::string& owner, std::function<void()> job) {
    {
        const std::lock_guard lock(mutex_);
        auto& entry = owners_[owner];
        if (entry.jobs.empty()) {
            ++owners_waiting_;
            entry.arrived = ++clock_;
        }
        entry.jobs.push_back(std::move(job));
        ++queued_;
    }
    wake_.notify_one();
}

void FairPool::join() {
    {
        const std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    for (auto& thread : threads_) {
        if (thread.joinable()) thread.join();
    }
}

std::size_t FairPool::queued() const {
    const std::lock_guard lock(mutex_);
    return queued_;
}

void FairPool::work() {
    std::unique_lock lock(mutex_);
    for (;;) {
        // Few owners wait at once (one per role or identity with a long job under way): a scan
        // is cheaper than keeping an order.
        const auto rank = [](const Owner& o) { return std::tuple(o.running, o.last_served, o.arrived); };
        const auto may_run = [this](const Owner& o) {
            return !o.jobs.empty() && (max_running_per_owner_ == 0 || o.running < max_running_per_owner_);
        };
        auto next = owners_.end();
        wake_.wait(lock, [&] {
            next = owners_.end();
            for (auto it = owners_.begin(); it != owners_.end(); ++it)
                if (may_run(it->second) && (next == owners_.end() || rank(it->second) < rank(next->second))) next = it;
            return next != owners_.end() || (stopping_ && owners_waiting_ == 0);
        });
        if (next == owners_.end()) return;  // stopping, and nothing left to run
        Owner& owner = next->second;
        auto job = std::move(owner.jobs.front());
        owner.jobs.pop_front();
        if (owner.jobs.empty()) --owners_waiting_;
        owner.last_served = ++clock_;
        ++owner.running;
        --queued_;
        lock.unlock();
        job();  // jobs catch their own exceptions (run_on_pool)
        lock.lock();
        // std::map keeps `next` valid while other owners come and go.
        if (--owner.running == 0 && owner.jobs.empty()) owners_.erase(next);
        if (max_running_per_owner_ != 0) wake_.notify_all();  // an owner at its bound may run again
    }
}

}  // namespace pgrail::proxy

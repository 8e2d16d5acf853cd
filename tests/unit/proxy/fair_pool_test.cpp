// The analysis pool serves its owners (roles, identities) in turn: one owner's queue of long
// analyses does not stand in front of another owner's statement.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <set>
#include <mutex>
#include <string>
#include <vector>

#include "../../../src/proxy/fair_pool.hpp"

using pgrail::proxy::FairPool;

namespace {

// Holds the pool's threads until opened (all, or one job by name), and records the order jobs
// ended in.
struct Recorder {
    std::mutex mutex;
    std::condition_variable changed;
    bool open = false;
    std::set<std::string> opened;
    int started = 0;
    std::vector<std::string> order;

    std::function<void()> job(std::string name) {
        return [this, name] {
            std::unique_lock lock(mutex);
            ++started;
            changed.notify_all();
            changed.wait(lock, [&] { return open || opened.count(name) > 0; });
            order.push_back(name);
            changed.notify_all();
        };
    }
    void wait_started(int n) {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return started >= n; });
    }
    void wait_ended(std::size_t n) {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return order.size() >= n; });
    }
    void release(const std::string& name = {}) {
        const std::lock_guard lock(mutex);
        if (name.empty()) open = true;
        opened.insert(name);
        changed.notify_all();
    }
};

}  // namespace

TEST_CASE("a newcomer's job runs next, before the busy owner's queue", "[fair_pool]") {
    Recorder recorder;
    FairPool pool(1);
    pool.post("role agent", recorder.job("a1"));
    recorder.wait_started(1);  // the one thread is busy with a1
    for (int i = 2; i <= 5; ++i) pool.post("role agent", recorder.job("a" + std::to_string(i)));
    pool.post("role operator", recorder.job("op"));
    CHECK(pool.queued() == 5);
    recorder.release();
    pool.join();
    CHECK(recorder.order == std::vector<std::string>{"a1", "op", "a2", "a3", "a4", "a5"});
}

TEST_CASE("owners alternate, each owner's jobs in the order posted", "[fair_pool]") {
    Recorder recorder;
    FairPool pool(1);
    pool.post("blocker", recorder.job("x"));
    recorder.wait_started(1);
    for (int i = 1; i <= 3; ++i) pool.post("a", recorder.job("a" + std::to_string(i)));
    for (int i = 1; i <= 3; ++i) pool.post("b", recorder.job("b" + std::to_string(i)));
    recorder.release();
    pool.join();
    CHECK(recorder.order == std::vector<std::string>{"x", "a1", "b1", "a2", "b2", "a3", "b3"});
}

TEST_CASE("an owner already running on one thread waits while another owner has work", "[fair_pool]") {
    // Two threads, both taken by one owner: when one frees, the other owner goes first, even
    // though the busy owner's next job was queued earlier.
    Recorder recorder;
    FairPool pool(2);
    pool.post("agent", recorder.job("a1"));
    pool.post("agent", recorder.job("a2"));
    recorder.wait_started(2);
    pool.post("agent", recorder.job("a3"));
    pool.post("operator", recorder.job("op"));
    recorder.release("a1");
    recorder.release("op");
    recorder.wait_ended(2);  // a1, then op on the thread a1 freed (a2 still holds the other)
    {
        const std::lock_guard lock(recorder.mutex);
        CHECK(recorder.order == std::vector<std::string>{"a1", "op"});
    }
    recorder.release();
    pool.join();
    CHECK(recorder.order.size() == 4);
}

TEST_CASE("join runs what is queued", "[fair_pool]") {
    std::atomic<int> ran{0};
    {
        FairPool pool(2);
        for (int i = 0; i < 100; ++i) pool.post(i % 3 == 0 ? "a" : "b", [&ran] { ++ran; });
        pool.join();
    }
    CHECK(ran == 100);
}

TEST_CASE("an owner at its bound of threads leaves the others free for everyone else", "[fair_pool]") {
    // Four threads, at most two per owner: the agent's third job waits although two threads are
    // free, and the operator's job runs at once.
    Recorder recorder;
    FairPool pool(4, 2);
    pool.post("agent", recorder.job("a1"));
    pool.post("agent", recorder.job("a2"));
    pool.post("agent", recorder.job("a3"));
    recorder.wait_started(2);
    pool.post("operator", recorder.job("op"));
    recorder.wait_started(3);  // op started beside a1 and a2; a3 still waits
    {
        const std::lock_guard lock(recorder.mutex);
        CHECK(recorder.started == 3);
    }
    CHECK(pool.queued() == 1);
    recorder.release("op");
    recorder.wait_ended(1);
    recorder.release();
    pool.join();
    CHECK(recorder.order.size() == 4);
    CHECK(recorder.order.front() == "op");
}

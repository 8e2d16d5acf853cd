// Large-stack workers for the recursive parts of libpg_query (and our tree walks).
#include "deep_stack.hpp"

#include "scanner_settings.hpp"

#include <pthread.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <vector>

namespace pgrail::sql::detail {
namespace {

// Bytes the worker keeps for itself beyond what a caller asks for.
constexpr std::size_t worker_reserve_bytes = (std::size_t{256} << 10) * instrumented_stack_factor;
constexpr int worker_count = 2;

thread_local bool on_worker = false;

struct Job {
    const Work* work = nullptr;
    std::exception_ptr failure;
    bool done = false;
    ScannerSettings scanner;  // the caller's, for the worker to lex alike
};

class WorkerPool {
public:
    static WorkerPool& instance() {
        static WorkerPool pool;
        return pool;
    }

    bool run(const Work& work) {
        Job job{&work, nullptr, false, current_scanner_settings()};
        {
            std::unique_lock lock(mutex_);
            if (!start_locked()) return false;
            queue_.push_back(&job);
        }
        wake_workers_.notify_one();
        {
            std::unique_lock lock(mutex_);
            job_done_.wait(lock, [&job] { return job.done; });
        }
        if (job.failure) std::rethrow_exception(job.failure);
        return true;
    }

    ~WorkerPool() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_workers_.notify_all();
        for (pthread_t thread : threads_) pthread_join(thread, nullptr);
    }

private:
    WorkerPool() = default;

    // Threads start on first use, so processes that never see deep input pay nothing.
    bool start_locked() {
        if (!threads_.empty()) return true;
        pthread_attr_t attributes;
        if (pthread_attr_init(&attributes) != 0) return false;
        pthread_attr_setstacksize(&attributes, worker_stack_bytes);
        for (int index = 0; index < worker_count; ++index) {
            pthread_t thread;
            if (pthread_create(&thread, &attributes, &WorkerPool::main, this) == 0) threads_.push_back(thread);
        }
        pthread_attr_destroy(&attributes);
        return !threads_.empty();
    }

    static void* main(void* self) {
        on_worker = true;
        static_cast<WorkerPool*>(self)->loop();
        return nullptr;
    }

    void loop() {
        std::unique_lock lock(mutex_);
        for (;;) {
            wake_workers_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;
            Job* job = queue_.front();
            queue_.pop_front();
            lock.unlock();
            try {
                const ScopedScannerSettings lexing(job->scanner);
                (*job->work)();
            } catch (...) {
                job->failure = std::current_exception();
            }
            lock.lock();
            job->done = true;
            job_done_.notify_all();
        }
    }

    std::mutex mutex_;
    std::condition_variable wake_workers_;
    std::condition_variable job_done_;
    std::deque<Job*> queue_;
    std::vector<pthread_t> threads_;
    bool stopping_ = false;
};

// A big stack of this thread's own, switched to in place (ucontext), so that a long text is
// parsed on the thread that asked for it: a hand-off to a worker costs two thread wake-ups,
// which on a busy 2-core machine cost more than the parse of a few KB. Mapped on first use with
// MAP_NORESERVE (memory is taken only as deep as a parse goes), 64 KB of guard pages below it.
// Not in sanitizer builds: their runtimes do not follow a switch of stacks without annotations
// (there, the workers serve as before).
constexpr bool fibers_supported = instrumented_stack_factor == 1;
constexpr std::size_t fiber_guard_bytes = std::size_t{64} << 10;

class FiberStack {
public:
    ~FiberStack() {
        if (base_ != nullptr) munmap(base_, worker_stack_bytes);
    }
    // The usable range, mapped on first call; null when it cannot be.
    [[nodiscard]] char* base() {
        if (base_ == nullptr && !failed_) {
            void* mapped = mmap(nullptr, worker_stack_bytes, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
            if (mapped == MAP_FAILED || mprotect(mapped, fiber_guard_bytes, PROT_NONE) != 0) {
                if (mapped != MAP_FAILED) munmap(mapped, worker_stack_bytes);
                failed_ = true;
                return nullptr;
            }
            base_ = static_cast<char*>(mapped);
        }
        return base_;
    }

private:
    char* base_ = nullptr;
    bool failed_ = false;
};

thread_local FiberStack fiber_stack;
// While work runs on fiber_stack: its lowest usable address (stack_remaining() measures from it).
thread_local std::uintptr_t fiber_low = 0;

struct FiberCall {
    const Work* work = nullptr;
    std::exception_ptr failure;
    ucontext_t caller{};
    ucontext_t fiber{};
};
thread_local FiberCall* fiber_call = nullptr;

void fiber_main() {
    FiberCall& call = *fiber_call;
    try {
        (*call.work)();
    } catch (...) {
        // Nothing unwinds past this frame: the exception crosses back to the caller's stack.
        call.failure = std::current_exception();
    }
    // Returning resumes call.caller (uc_link).
}

// The context calls in a frame of their own that keeps no local across them (getcontext
// "returns twice"; it never does here, but the compiler must assume it): everything is read
// through fiber_call.
[[gnu::noinline]] int enter_fiber() {
    if (getcontext(&fiber_call->fiber) != 0) return -1;
    fiber_call->fiber.uc_stack.ss_sp = reinterpret_cast<void*>(fiber_low);
    fiber_call->fiber.uc_stack.ss_size = worker_stack_bytes - fiber_guard_bytes;
    fiber_call->fiber.uc_link = &fiber_call->caller;
    makecontext(&fiber_call->fiber, &fiber_main, 0);
    return swapcontext(&fiber_call->caller, &fiber_call->fiber);
}

// Runs `work` on this thread's fiber stack; false when the stack cannot be had.
bool run_on_fiber(const Work& work) {
    char* base = fiber_stack.base();
    if (base == nullptr) return false;
    FiberCall call;
    call.work = &work;
    fiber_call = &call;
    fiber_low = reinterpret_cast<std::uintptr_t>(base) + fiber_guard_bytes;
    const int switched = enter_fiber();
    fiber_low = 0;
    fiber_call = nullptr;
    if (switched != 0) return false;
    if (call.failure) std::rethrow_exception(call.failure);
    return true;
}

// Lowest usable address of this thread's stack, looked up once per thread.
std::uintptr_t stack_low() {
    if (fiber_low != 0) return fiber_low;
    thread_local std::uintptr_t low = [] {
        pthread_attr_t attributes;
        void* address = nullptr;
        std::size_t size = 0;
        if (pthread_getattr_np(pthread_self(), &attributes) != 0) return std::uintptr_t{0};
        pthread_attr_getstack(&attributes, &address, &size);
        std::size_t guard = 0;
        pthread_attr_getguardsize(&attributes, &guard);
        pthread_attr_destroy(&attributes);
        return reinterpret_cast<std::uintptr_t>(address) + guard;
    }();
    return low;
}

}  // namespace

std::size_t stack_remaining() {
    const char marker = 0;
    const auto here = reinterpret_cast<std::uintptr_t>(&marker);
    const std::uintptr_t low = stack_low();
    return (low == 0 || here <= low) ? 0 : static_cast<std::size_t>(here - low);
}

bool run_with_stack(std::size_t needed_bytes, const Work& work) {
    if (stack_remaining() >= needed_bytes) {
        work();
        return true;
    }
    if (on_worker || needed_bytes + worker_reserve_bytes > worker_stack_bytes) return false;
    // The fiber stack is as big as a worker's; once on it, a further need goes to a worker.
    if (fibers_supported && fiber_low == 0 && run_on_fiber(work)) return true;
    return WorkerPool::instance().run(work);
}

}  // namespace pgrail::sql::detail

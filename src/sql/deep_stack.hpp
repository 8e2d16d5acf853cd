// Runs work on a stack large enough for it: the caller's when it has room, otherwise a big stack
// of the calling thread's own (switched to in place), or one of a few long-lived worker threads
// with big stacks (sanitizer builds, and work that already runs on the big stack).
#pragma once

#include <cstddef>

namespace pgrail::sql::detail {

// Sanitizer builds make every frame larger (redzones, shadow bookkeeping): under ASan
// (-O1) the deepest parse measured 15 KB per nesting level (a NOT chain) against 1.7 KB
// uninstrumented; 8 times the release budget per level (3 KB) is 24 KB.
// Every stack figure is scaled by this, so an instrumented pgrail refuses and
// parses exactly what the release build does, on proportionally larger stacks.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr std::size_t instrumented_stack_factor = 8;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr std::size_t instrumented_stack_factor = 8;
#else
inline constexpr std::size_t instrumented_stack_factor = 1;
#endif
#else
inline constexpr std::size_t instrumented_stack_factor = 1;
#endif

inline constexpr std::size_t worker_stack_bytes = (std::size_t{64} << 20) * instrumented_stack_factor;

// A non-owning reference to a callable, so that no allocation happens per call.
class Work {
public:
    template <class F>
    explicit Work(F& callable) : object_(&callable), call_([](void* object) { (*static_cast<F*>(object))(); }) {}
    void operator()() const { call_(object_); }

private:
    void* object_;
    void (*call_)(void*);
};

// Bytes of stack left below the caller's frame (large on the main thread too).
[[nodiscard]] std::size_t stack_remaining();

// Runs `work` with at least `needed_bytes` of stack, on the calling thread where it can (its own
// stack, else its big stack: no thread hand-off). Returns false, without running it, when no
// such stack is available (more than a worker has, or neither the big stack nor a worker could
// be had). Exceptions from `work` propagate to the caller. Never waits for a worker when called
// from a worker, so it cannot deadlock.
[[nodiscard]] bool run_with_stack(std::size_t needed_bytes, const Work& work);

}  // namespace pgrail::sql::detail

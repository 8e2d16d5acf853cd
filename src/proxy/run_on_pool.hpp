// A blocking job's hop to a thread pool and back, for a session's coroutine.
#pragma once

#include <exception>
#include <memory>
#include <string>
#include <utility>

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "fair_pool.hpp"

namespace pgrail::proxy {

// Runs `work` (which owns what it uses) on `pool` and resumes the calling coroutine on its own
// executor with the result, or with the exception it threw. Not co_spawn onto the pool: a
// session that ends while the work runs cancels its coroutines, and Asio 1.81 then throws from
// the spawned coroutine's hand-back on the pool's thread, where nothing catches it and the whole
// process terminates. Here the cancellation is not forwarded: the work finishes, its result
// returns to the session's executor (kept running by a work guard), and the session ends normally.
// `work` is taken from a named variable of the caller: GCC 12 destroys temporaries of a co_await
// expression twice (its bug 100611), which corrupted a lambda's captures here.
// `submit(task)` hands the move-only `task` to whatever runs it.
template <class Result, class Submit, class Work>
boost::asio::awaitable<Result> run_submitted(Submit submit, Work& work) {
    auto initiate = [submit = std::move(submit)](auto handler, Work owned) {
        auto home = boost::asio::get_associated_executor(handler);
        submit([work = std::move(owned), handler = std::move(handler),
                guard = boost::asio::make_work_guard(home)]() mutable {
            Result result{};
            std::exception_ptr failure;
            try {
                result = work();
            } catch (...) {
                failure = std::current_exception();
            }
            auto executor = guard.get_executor();
            boost::asio::post(executor, [handler = std::move(handler), failure, result = std::move(result)]() mutable {
                std::move(handler)(failure, std::move(result));
            });
            guard.reset();
        });
    };
    return boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(std::exception_ptr, Result)>(
        initiate, boost::asio::use_awaitable, std::move(work));
}

template <class Result, class Work>
boost::asio::awaitable<Result> run_on_pool(boost::asio::thread_pool& pool, Work& work) {
    return run_submitted<Result>([&pool](auto task) { boost::asio::post(pool, std::move(task)); }, work);
}

// The same on a FairPool, in `owner`'s turn.
template <class Result, class Work>
boost::asio::awaitable<Result> run_on_pool(FairPool& pool, const std::string& owner, Work& work) {
    auto submit = [&pool, owner](auto task) {
        // std::function wants a copyable callable; the task (its handler) moves only.
        auto shared = std::make_shared<decltype(task)>(std::move(task));
        pool.post(owner, [shared] { (*shared)(); });
    };
    return run_submitted<Result>(submit, work);
}

}  // namespace pgrail::proxy

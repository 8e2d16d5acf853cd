// A blocking job's hop to a thread pool and back, for a session's coroutine.
#pragma once

#include <exception>
#include <utility>

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace pgrail::proxy {

// Runs `work` (which owns what it uses) on `pool` and resumes the calling coroutine on its own
// executor with the result, or with the exception it threw. Not co_spawn onto the pool: a
// session that ends while the work runs cancels its coroutines, and Asio 1.81 then throws from
// the spawned coroutine's hand-back on the pool's thread, where nothing catches it and the whole
// process terminates. Here the cancellation is not forwarded: the work finishes, its result
// returns to the session's executor (kept running by a work guard), and the session ends normally.
// `work` is taken from a named variable of the caller: GCC 12 destroys temporaries of a co_await
// expression twice (its bug 100611), which corrupted a lambda's captures here.
template <class Result, class Work>
boost::asio::awaitable<Result> run_on_pool(boost::asio::thread_pool& pool, Work& work) {
    auto initiate = [&pool](auto handler, Work owned) {
        auto home = boost::asio::get_associated_executor(handler);
        boost::asio::post(pool, [work = std::move(owned), handler = std::move(handler),
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

}  // namespace pgrail::proxy

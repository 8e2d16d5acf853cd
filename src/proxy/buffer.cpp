// Pooled read buffers: each worker thread keeps a few standard buffers for reuse.
#include "buffer.hpp"

namespace pgrail::proxy {

namespace {

constexpr std::size_t max_pooled_buffers = 64;

std::vector<std::unique_ptr<char[]>>& thread_pool() {
    thread_local std::vector<std::unique_ptr<char[]>> pool;
    return pool;
}

}  // namespace

void Buffer::prepare(std::size_t total) {
    if (total < standard_buffer_size) total = standard_buffer_size;
    const auto pending_size = end_ - begin_;
    if (data_ && capacity_ >= total) {
        if (begin_ > 0 && capacity_ - begin_ < total) {
            std::memmove(data_.get(), data_.get() + begin_, pending_size);
            begin_ = 0;
            end_ = pending_size;
        }
        return;
    }
    std::unique_ptr<char[]> fresh;
    auto& pool = thread_pool();
    if (total == standard_buffer_size && !pool.empty()) {
        fresh = std::move(pool.back());
        pool.pop_back();
    } else {
        fresh.reset(new char[total]);
    }
    if (pending_size > 0) std::memcpy(fresh.get(), data_.get() + begin_, pending_size);
    release_memory_keep_pending();
    data_ = std::move(fresh);
    capacity_ = total;
    begin_ = 0;
    end_ = pending_size;
}

void Buffer::release() {
    begin_ = end_ = 0;
    release_memory_keep_pending();
}

void Buffer::release_memory_keep_pending() {
    if (!data_) return;
    auto& pool = thread_pool();
    if (capacity_ == standard_buffer_size && pool.size() < max_pooled_buffers) pool.push_back(std::move(data_));
    data_.reset();
    capacity_ = 0;
}

}  // namespace pgrail::proxy

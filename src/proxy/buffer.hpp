// Read buffers for the pumps: pooled per thread, so an idle connection holds none.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace pgrail::proxy {

// Large enough that a COPY stream moves in few system calls; only busy sessions hold one.
inline constexpr std::size_t standard_buffer_size = 64 * 1024;

// The bytes that all sessions together may hold in buffers larger than the standard one: the
// whole Query, Parse or FunctionCall messages pgrail reads before it decides. Clients that send
// long messages at once then wait for each other instead of exhausting pgrail's memory.
class BufferBudget {
public:
    explicit BufferBudget(std::size_t limit) : limit_(limit) {}
    [[nodiscard]] bool try_reserve(std::size_t bytes);
    void release(std::size_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }
    [[nodiscard]] std::size_t used() const { return used_.load(std::memory_order_relaxed); }
    [[nodiscard]] std::size_t limit() const { return limit_; }

private:
    std::atomic<std::size_t> used_{0};
    std::size_t limit_;
};

class Buffer {
public:
    // Without a budget, larger buffers are not accounted (the server's side: its inspected
    // frames are short).
    explicit Buffer(BufferBudget* budget = nullptr) : budget_(budget) {}
    ~Buffer() { release(); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;

    [[nodiscard]] bool allocated() const { return data_ != nullptr; }
    [[nodiscard]] std::string_view pending() const { return {data_.get() + begin_, end_ - begin_}; }
    [[nodiscard]] bool empty() const { return begin_ == end_; }
    void consume(std::size_t count) {
        begin_ += count;
        if (begin_ == end_) begin_ = end_ = 0;
    }

    // Makes room for at least `total` pending bytes (a whole frame pgrail must inspect)
    // and moves pending bytes to the front. Invalidates views into the buffer. False, with
    // nothing changed, when the budget cannot grant a larger buffer now.
    [[nodiscard]] bool prepare(std::size_t total);
    [[nodiscard]] bool large() const { return capacity_ > standard_buffer_size; }
    [[nodiscard]] char* write_position() { return data_.get() + end_; }
    [[nodiscard]] std::size_t write_space() const { return capacity_ - end_; }
    void commit(std::size_t count) { end_ += count; }

    // Returns the memory to the thread's pool; only valid when nothing is pending.
    void release();

private:
    void release_memory_keep_pending();
    BufferBudget* budget_;
    std::size_t reserved_ = 0;  // of budget_, for the current large buffer
    std::unique_ptr<char[]> data_;
    std::size_t capacity_ = 0;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
};

}  // namespace pgrail::proxy

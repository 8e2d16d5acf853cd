// Read buffers for the pumps: pooled per thread, so an idle connection holds none.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace pgrail::proxy {

// Large enough that a COPY stream moves in few system calls; only busy sessions hold one.
inline constexpr std::size_t standard_buffer_size = 64 * 1024;

class Buffer {
public:
    Buffer() = default;
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
    // and moves pending bytes to the front. Invalidates views into the buffer.
    void prepare(std::size_t total);
    [[nodiscard]] char* write_position() { return data_.get() + end_; }
    [[nodiscard]] std::size_t write_space() const { return capacity_ - end_; }
    void commit(std::size_t count) { end_ += count; }

    // Returns the memory to the thread's pool; only valid when nothing is pending.
    void release();

private:
    void release_memory_keep_pending();
    std::unique_ptr<char[]> data_;
    std::size_t capacity_ = 0;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
};

}  // namespace pgrail::proxy

// Read buffers for the pumps: pooled per thread, so an idle connection holds none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pgrail::proxy {

// Large enough that a COPY stream moves in few system calls; only busy sessions hold one.
inline constexpr std::size_t standard_buffer_size = 64 * 1024;

// The bytes that all sessions together may hold in buffers larger than the standard one: the
// whole Query, Parse or FunctionCall messages pgrail reads before it decides. Clients that send
// long messages at once then wait for each other instead of exhausting pgrail's memory. A
// request is granted whole or not at all (no session holds part of what it needs while it
// waits for the rest: a session's large buffer holds one message and is given back once that
// message is forwarded), and in the order requests were first refused (short messages do not
// starve a long one). One login (a role, or an identity under auth.mode pgrail; "" before the
// login) holds at most half of it, unless it holds nothing: its requests past that wait for its
// own messages to go, and do not hold up other logins' in the line.
class BufferBudget {
public:
    explicit BufferBudget(std::size_t limit) : limit_(limit) {}
    // `ticket` is 0 for a request not yet refused; a refused request gets one and keeps it
    // until it is granted or abandoned.
    // `held`: what the requesting buffer holds already (a message growing: it counts as one).
    [[nodiscard]] bool try_reserve(std::size_t bytes, std::uint64_t& ticket, const std::string& login = {},
                                   std::size_t held = 0);
    void release(std::size_t bytes, const std::string& login = {});
    void abandon(std::uint64_t ticket);
    [[nodiscard]] std::size_t used() const;
    [[nodiscard]] std::size_t used_by(const std::string& login) const;
    [[nodiscard]] std::size_t limit() const { return limit_; }

private:
    struct Waiting {
        std::uint64_t ticket;
        std::size_t bytes;
        std::string login;
        std::size_t held;
    };
    [[nodiscard]] bool over_share(const std::string& login, std::size_t bytes, std::size_t held) const;
    mutable std::mutex mutex_;
    std::size_t used_ = 0;
    std::unordered_map<std::string, std::size_t> used_by_;  // logins holding any
    std::deque<Waiting> waiting_;  // refused requests, oldest first
    std::uint64_t next_ticket_ = 1;
    const std::size_t limit_;
};

class Buffer {
public:
    // Without a budget, larger buffers are not accounted (the server's side: its inspected
    // frames are short).
    explicit Buffer(BufferBudget* budget = nullptr) : budget_(budget) {}
    ~Buffer() { release(); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;

    [[nodiscard]] std::string_view pending() const { return {data_.get() + begin_, end_ - begin_}; }
    [[nodiscard]] bool empty() const { return begin_ == end_; }
    void consume(std::size_t count) {
        begin_ += count;
        if (begin_ == end_) begin_ = end_ = 0;
    }

    // Makes room for at least `total` pending bytes (a whole frame pgrail must inspect)
    // and moves pending bytes to the front. Invalidates views into the buffer. False, with
    // nothing changed, when the budget cannot grant a larger buffer now. A larger buffer has
    // exactly `total` bytes: it receives its one message and nothing after it, so it is empty,
    // and given back, once that message is forwarded (it never grows while it holds budget).
    [[nodiscard]] bool prepare(std::size_t total);
    [[nodiscard]] bool large() const { return capacity_ > standard_buffer_size; }
    [[nodiscard]] bool holds_budget() const { return reserved_ > 0; }
    [[nodiscard]] char* write_position() { return data_.get() + end_; }
    [[nodiscard]] std::size_t write_space() const { return capacity_ - end_; }
    void commit(std::size_t count) { end_ += count; }

    // Returns the memory to the thread's pool; only valid when nothing is pending.
    void release();
    // Whose bytes a larger buffer holds from now on (the budget's share per login).
    void set_login(std::string login) { login_ = std::move(login); }

private:
    void release_memory_keep_pending();
    BufferBudget* budget_;
    std::string login_;
    std::string reserved_for_;  // the login `reserved_` is counted for
    std::size_t reserved_ = 0;  // of budget_, for the current large buffer
    std::uint64_t ticket_ = 0;  // of budget_, while a larger buffer waits for it
    std::unique_ptr<char[]> data_;
    std::size_t capacity_ = 0;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
};

}  // namespace pgrail::proxy

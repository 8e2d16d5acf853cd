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

bool BufferBudget::over_share(const std::string& login, std::size_t bytes, std::size_t held) const {
    // (A login whose other messages hold nothing may take any size: one message of max_message_size.)
    const auto used = used_by_.find(login);
    return used != used_by_.end() && used->second > held && used->second + bytes > limit_ / 2;
}

bool BufferBudget::try_reserve(std::size_t bytes, std::uint64_t& ticket, const std::string& login,
                               std::size_t held) {
    std::lock_guard lock(mutex_);
    // First in line among the requests that are not over their login's share (those wait for
    // their own login's messages, not for the line), and behind every earlier one of its own
    // login's (a long message is not overtaken by the login's shorter ones).
    auto place = waiting_.begin();
    for (; place != waiting_.end() && place->ticket != ticket; ++place)
        if (place->login == login || !over_share(place->login, place->bytes, place->held)) break;
    const bool first_in_line = ticket == 0 ? place == waiting_.end() : place != waiting_.end() && place->ticket == ticket;
    if (first_in_line && bytes <= limit_ - used_ && !over_share(login, bytes, held)) {
        used_ += bytes;
        used_by_[login] += bytes;
        if (ticket != 0) waiting_.erase(place);
        ticket = 0;
        return true;
    }
    if (ticket == 0) {
        ticket = next_ticket_++;
        waiting_.push_back({ticket, bytes, login, held});
    }
    return false;
}

void BufferBudget::release(std::size_t bytes, const std::string& login) {
    std::lock_guard lock(mutex_);
    used_ -= bytes;
    const auto held = used_by_.find(login);
    if (held == used_by_.end()) return;
    held->second -= std::min(held->second, bytes);
    if (held->second == 0) used_by_.erase(held);
}

void BufferBudget::abandon(std::uint64_t ticket) {
    std::lock_guard lock(mutex_);
    std::erase_if(waiting_, [ticket](const Waiting& waiting) { return waiting.ticket == ticket; });
}

std::size_t BufferBudget::used_by(const std::string& login) const {
    std::lock_guard lock(mutex_);
    const auto held = used_by_.find(login);
    return held == used_by_.end() ? 0 : held->second;
}

std::size_t BufferBudget::used() const {
    std::lock_guard lock(mutex_);
    return used_;
}

bool Buffer::prepare(std::size_t total) {
    if (total < standard_buffer_size) total = standard_buffer_size;
    const auto pending_size = end_ - begin_;
    if (data_ && capacity_ >= total) {
        if (begin_ > 0 && capacity_ - begin_ < total) {
            std::memmove(data_.get(), data_.get() + begin_, pending_size);
            begin_ = 0;
            end_ = pending_size;
        }
        return true;
    }
    // A larger buffer replaces the one held: only the difference is new to the budget.
    const bool budgeted = budget_ != nullptr && total > standard_buffer_size;
    if (budgeted && reserved_ == 0) reserved_for_ = login_;
    if (budgeted && !budget_->try_reserve(total - reserved_, ticket_, reserved_for_, reserved_)) return false;
    std::unique_ptr<char[]> fresh;
    auto& pool = thread_pool();
    if (total == standard_buffer_size && !pool.empty()) {
        fresh = std::move(pool.back());
        pool.pop_back();
    } else {
        try {
            fresh.reset(new char[total]);
        } catch (...) {
            if (budgeted) budget_->release(total - reserved_, reserved_for_);
            throw;
        }
    }
    if (pending_size > 0) std::memcpy(fresh.get(), data_.get() + begin_, pending_size);
    release_memory_keep_pending();
    if (budgeted) reserved_ = total;
    data_ = std::move(fresh);
    capacity_ = total;
    begin_ = 0;
    end_ = pending_size;
    return true;
}

void Buffer::release() {
    begin_ = end_ = 0;
    release_memory_keep_pending();
    if (reserved_ > 0) budget_->release(reserved_, reserved_for_);
    reserved_ = 0;
    if (ticket_ != 0) budget_->abandon(ticket_);
    ticket_ = 0;
}

void Buffer::release_memory_keep_pending() {
    if (!data_) return;
    auto& pool = thread_pool();
    if (capacity_ == standard_buffer_size && pool.size() < max_pooled_buffers) pool.push_back(std::move(data_));
    data_.reset();
    capacity_ = 0;
}

}  // namespace pgrail::proxy

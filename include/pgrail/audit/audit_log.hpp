// The durable audit trail: one JSON object per line, written before the client sees the answer.
//
// Three guarantees (docs/audit.md):
// - Whole lines only. Each line goes out in one write() to an O_APPEND descriptor; a line that
//   cannot be written whole (ENOSPC, EFBIG, EIO) is cut back off the file with ftruncate, so the
//   file never holds half a line, and the record is reported as not written (callers fail closed).
// - Rotation loses nothing. Before each line the configured path is stat()ed (about 2.5 us,
//   measured, as much as the write itself) and compared with the open file (st_dev, st_ino): a
//   new file at the path (logrotate's `create`) is followed at once, a removed file (`rm`) is
//   recreated, and a file moved away with nothing in its place is written on until reopen()
//   (SIGHUP) creates the new one. No line goes to a deleted file.
// - `fsync: always` is a group commit on a thread of its own: a writer appends its line, then
//   waits for an fdatasync that started after its write; one fdatasync covers every line written
//   before it, and each writer learns the outcome of the one that covered its line.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgrail::audit {

enum class FsyncMode { never, always };

// A move-only `void(bool written)` callable (so an Asio completion handler can be one).
class Completion {
public:
    Completion() = default;
    template <typename F>
        requires(!std::is_same_v<std::decay_t<F>, Completion> && std::is_invocable_v<F&, bool>)
    Completion(F function) : impl_(std::make_unique<Impl<F>>(std::move(function))) {}  // NOLINT: implicit
    explicit operator bool() const noexcept { return impl_ != nullptr; }
    void operator()(bool written) { impl_->call(written); }

private:
    struct Base {
        virtual ~Base() = default;
        virtual void call(bool written) = 0;
    };
    template <typename F>
    struct Impl final : Base {
        explicit Impl(F f) : function(std::move(f)) {}
        void call(bool written) override { function(written); }
        F function;
    };
    std::unique_ptr<Base> impl_;
};

// How long the audit log's disk work takes, for the caller's metrics (the audit module knows no
// metrics of its own). Called on the writing thread (each line's write) and on the sync thread
// (each fdatasync): must be quick and thread-safe; either may be empty.
struct AuditTimings {
    std::function<void(std::chrono::nanoseconds)> on_write;
    std::function<void(std::chrono::nanoseconds)> on_sync;
};

class AuditLog {
public:
    // `path` "-" or empty means stdout (never reopened; synced only if it is a regular file).
    // A new file is created with mode 0640. Throws std::runtime_error if it cannot be opened.
    AuditLog(const std::string& path, FsyncMode fsync_mode, AuditTimings timings = {});
    ~AuditLog();  // waits for the lines written so far to be synced
    AuditLog(const AuditLog&) = delete;
    AuditLog& operator=(const AuditLog&) = delete;

    // Adds "time" (RFC 3339, UTC, microseconds) and writes `event` as one line.
    // Returns only once the line is written whole (and on disk with FsyncMode::always);
    // returns false if it is not (nothing of it stays in the file), so the caller can fail closed.
    // Thread-safe. Blocks the calling thread for up to two fdatasyncs with FsyncMode::always.
    [[nodiscard]] bool record(nlohmann::json event);

    // As record(), without waiting for the sync: writes the line now, then calls `done(written)`
    // once it is as durable as the policy asks, from the sync thread, or before returning when
    // there is nothing to wait for (FsyncMode::never, a failed write). `done` must not block nor
    // call record() (it would wait for the thread it runs on): post to an executor. For an I/O
    // thread that must not wait for a disk: co_await it through asio::async_initiate.
    void record_async(nlohmann::json event, Completion done);

    // Closes the file and opens the configured path again, creating it if needed (SIGHUP, after
    // logrotate moved the file away). Lines already written are still synced (fsync: always) to
    // the file they went to. On failure the previous file stays open, false is returned and
    // last_error() says why. Thread-safe; a no-op returning true for stdout.
    bool reopen();

    // The reason of the last failure (write, sync or open), with errno text; empty if none.
    [[nodiscard]] std::string last_error() const;

    // fdatasync calls made by the group commit (tests, metrics).
    [[nodiscard]] std::uint64_t sync_count() const noexcept { return sync_count_.load(); }
    // Files opened after the first: by reopen() or because the path named another file.
    [[nodiscard]] std::uint64_t reopen_count() const noexcept { return reopen_count_.load(); }

private:
    struct OpenFile;  // a descriptor with its st_dev/st_ino, closed with its last owner
    struct Waiter;    // a thread blocked in record()
    struct Pending {  // a written line waiting for the next sync round
        Waiter* waiter = nullptr;
        Completion done;
    };

    std::shared_ptr<OpenFile> open_path();                                // under write_mutex_
    bool follow_path();                                                   // under write_mutex_
    bool write_line(OpenFile& file, const std::string& line);             // under write_mutex_
    std::shared_ptr<OpenFile> write_event(nlohmann::json& event);         // nullptr: not written
    void enqueue(std::shared_ptr<OpenFile> file, Pending pending);
    void sync_loop();
    void set_error(std::string message);

    const std::string path_;
    const FsyncMode fsync_mode_;
    const AuditTimings timings_;
    const bool is_stdout_;

    std::mutex write_mutex_;          // one write() at a time, and the current file
    std::shared_ptr<OpenFile> file_;  // guarded by write_mutex_

    // Group commit, guarded by sync_mutex_: a round of the sync thread takes every line enqueued
    // so far (each after its write) and the files they went to, fdatasyncs those files, then
    // completes the lines with the outcome.
    std::mutex sync_mutex_;
    std::condition_variable work_ready_;
    std::condition_variable round_done_;
    std::vector<Pending> pending_;
    std::vector<std::shared_ptr<OpenFile>> dirty_;
    bool stopping_ = false;
    std::thread sync_thread_;

    mutable std::mutex error_mutex_;
    std::string last_error_;
    std::atomic<std::uint64_t> sync_count_{0};
    std::atomic<std::uint64_t> reopen_count_{0};
};

// RFC 3339 timestamp in UTC with microseconds, e.g. 2026-11-25T15:44:35.123456Z.
std::string rfc3339_now();

}  // namespace pgrail::audit

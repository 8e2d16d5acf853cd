// The durable audit trail: one JSON object per line, written before the client sees the answer.
//
// Three guarantees (docs/audit.md):
// - Whole lines only. Each line goes out in one write() to an O_APPEND descriptor; a line that
//   cannot be written whole (ENOSPC, EFBIG, EIO) is cut back off the file with ftruncate, so the
//   file never holds half a line, and record() returns false (the caller fails closed).
// - Rotation loses nothing. Before each line the configured path is stat()ed (about 2.5 us,
//   measured: as much as the write itself) and compared with the open file (st_dev, st_ino):
//   after `mv` or `rm` the next line goes to a new file at the path. reopen() (SIGHUP) does it
//   unconditionally.
// - `fsync: always` is a group commit on a thread of its own: a writer appends its line, then
//   waits for an fdatasync that started after its write; one fdatasync covers every line written
//   before it, and each writer learns the outcome of the one that covered its line.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgrail::audit {

enum class FsyncMode { never, always };

class AuditLog {
public:
    // `path` "-" or empty means stdout (never reopened; not synced unless it is a regular file).
    // A new file is created with mode 0640. Throws std::runtime_error if it cannot be opened.
    AuditLog(const std::string& path, FsyncMode fsync_mode);
    ~AuditLog();
    AuditLog(const AuditLog&) = delete;
    AuditLog& operator=(const AuditLog&) = delete;

    // Adds "time" (RFC 3339, UTC, microseconds) and writes `event` as one line.
    // Returns only once the line is written whole (and on disk with FsyncMode::always);
    // returns false if it is not (nothing of it stays in the file), so the caller can fail closed.
    // Thread-safe.
    [[nodiscard]] bool record(nlohmann::json event);

    // Closes the file and opens the configured path again, creating it if needed (SIGHUP, after
    // logrotate moved the file away). Lines already written are still synced (fsync: always) to
    // the file they went to. On failure the previous file stays open, false is returned and
    // last_error() says why. Thread-safe; a no-op returning true for stdout.
    bool reopen();

    // The reason of the last failure (write, sync or open), with errno text; empty if none.
    [[nodiscard]] std::string last_error() const;

    // Completed fdatasync calls of the group commit (tests, metrics).
    [[nodiscard]] std::uint64_t sync_count() const noexcept { return sync_count_.load(); }
    // Files opened by reopen() or because the path named another file (tests, metrics).
    [[nodiscard]] std::uint64_t reopen_count() const noexcept { return reopen_count_.load(); }

private:
    struct OpenFile;  // an open descriptor with its st_dev/st_ino; closed with its last owner

    std::shared_ptr<OpenFile> open_path(bool sync_directory);  // under write_mutex_
    bool reopen_locked(bool forced);                            // under write_mutex_
    bool write_line(OpenFile& file, const std::string& line);   // under write_mutex_
    bool wait_synced(std::shared_ptr<OpenFile> file);           // after the write
    void sync_loop();
    void set_error(std::string message);

    const std::string path_;
    const FsyncMode fsync_mode_;
    const bool is_stdout_;

    std::mutex write_mutex_;               // one write() at a time, and the current file
    std::shared_ptr<OpenFile> file_;       // guarded by write_mutex_

    // Group commit, guarded by sync_mutex_. Every written line gets a sequence number after its
    // write; a round of the sync thread takes `written_` as its target, then syncs the files
    // written since the last round; `synced_` is the target of the last completed round.
    struct FailedRange {
        std::uint64_t first, last;  // sequence numbers covered by a failed sync
        std::uint64_t unclaimed;    // writers in the range that have not yet read the failure
    };
    std::mutex sync_mutex_;
    std::condition_variable work_ready_;
    std::condition_variable round_done_;
    std::uint64_t written_ = 0;
    std::uint64_t synced_ = 0;
    std::vector<std::shared_ptr<OpenFile>> dirty_;
    std::vector<FailedRange> failed_;
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

// The durable audit trail: whole JSON lines, following rotation, synced by a group commit.
#include "pgrail/audit/audit_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

namespace pgrail::audit {

namespace {

std::string errno_text(int error) { return std::system_category().message(error); }

// fdatasync, not fsync: an appended line changes the size, which fdatasync does write; the rest
// of the inode (times) is not needed to read the line back.
int sync_descriptor(int fd) {
    int rc;
    do rc = ::fdatasync(fd);
    while (rc != 0 && errno == EINTR);
    return rc;
}

}  // namespace

struct AuditLog::OpenFile {
    int fd = -1;
    bool owned = false;      // not stdout
    bool regular = false;    // worth syncing (stdout may be a pipe or a terminal)
    dev_t dev = 0;
    ino_t ino = 0;
    bool broken_tail = false;  // a partial line could not be cut off: start the next on a new line

    OpenFile() = default;
    OpenFile(const OpenFile&) = delete;
    OpenFile& operator=(const OpenFile&) = delete;
    ~OpenFile() {
        if (owned && fd >= 0) ::close(fd);
    }
};

struct AuditLog::Waiter {
    bool finished = false;
    bool written = false;
};

AuditLog::AuditLog(const std::string& path, FsyncMode fsync_mode, AuditTimings timings)
    : path_(path == "-" ? std::string() : path), fsync_mode_(fsync_mode), timings_(std::move(timings)),
      is_stdout_(path_.empty()) {
    if (is_stdout_) {
        auto file = std::make_shared<OpenFile>();
        file->fd = STDOUT_FILENO;
        struct stat st {};
        file->regular = ::fstat(file->fd, &st) == 0 && S_ISREG(st.st_mode);
        file_ = std::move(file);
    } else {
        file_ = open_path();
        if (!file_) throw std::runtime_error(fmt::format("cannot open audit log {}", last_error()));
    }
    if (fsync_mode_ == FsyncMode::always) sync_thread_ = std::thread([this] { sync_loop(); });
}

AuditLog::~AuditLog() {
    if (sync_thread_.joinable()) {
        {
            std::lock_guard lock(sync_mutex_);
            stopping_ = true;
        }
        work_ready_.notify_all();
        sync_thread_.join();
    }
}

std::shared_ptr<AuditLog::OpenFile> AuditLog::open_path() {
    int fd;
    do fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        set_error(fmt::format("{}: {}", path_, errno_text(errno)));
        return nullptr;
    }
    auto file = std::make_shared<OpenFile>();
    file->fd = fd;
    file->owned = true;
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        set_error(fmt::format("{}: {}", path_, errno_text(errno)));
        return nullptr;
    }
    file->dev = st.st_dev;
    file->ino = st.st_ino;
    file->regular = S_ISREG(st.st_mode);
    // A file that ends in part of a line (a process killed mid-write, a crash before the write
    // completed): the next line starts on a line of its own rather than merged into it.
    if (file->regular && st.st_size > 0) {
        const int reader = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
        char last = '\n';
        if (reader >= 0) {
            if (::pread(reader, &last, 1, st.st_size - 1) != 1) last = '\n';
            ::close(reader);
        }
        file->broken_tail = last != '\n';
    }
    if (fsync_mode_ == FsyncMode::always) {
        // The file may be new: its directory entry must be on disk too, or a crash loses it whole.
        auto directory = std::filesystem::path(path_).parent_path();
        if (directory.empty()) directory = ".";
        const int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd >= 0) {
            ::fsync(dir_fd);
            ::close(dir_fd);
        }
    }
    return file;
}

bool AuditLog::reopen() {
    if (is_stdout_) return true;
    std::lock_guard lock(write_mutex_);
    auto file = open_path();
    if (!file) return false;
    file_ = std::move(file);  // the old one stays open until the sync thread is done with it
    ++reopen_count_;
    return true;
}

// Makes file_ the file the path names, as far as it can. False: the line must not be written
// (the open file is deleted and no new one could be made).
bool AuditLog::follow_path() {
    struct stat st {};
    if (::stat(path_.c_str(), &st) == 0) {
        if (st.st_dev == file_->dev && st.st_ino == file_->ino) return true;  // the common case
    } else {
        // Nothing at the path. Moved away (logrotate before its `create`, or `nocreate`): keep
        // writing the moved file, which keeps the lines, until a new file appears or SIGHUP; making
        // one here would race with logrotate's own O_EXCL create. Removed: recreate it now.
        struct stat own {};
        if (::fstat(file_->fd, &own) == 0 && own.st_nlink > 0) return true;
    }
    if (auto file = open_path()) {
        file_ = std::move(file);
        ++reopen_count_;
        return true;
    }
    // No new file: the old one will do if it still has a name (the lines are kept there).
    struct stat own {};
    return ::fstat(file_->fd, &own) == 0 && own.st_nlink > 0;
}

bool AuditLog::write_line(OpenFile& file, const std::string& line) {
    std::string_view data = line;
    std::string prefixed;
    if (file.broken_tail) {
        prefixed.reserve(line.size() + 1);
        prefixed.push_back('\n');
        prefixed.append(line);
        data = prefixed;
    }
    std::size_t done = 0;
    off_t start = -1;  // where this line began, known after its first byte
    while (done < data.size()) {
        const ssize_t n = ::write(file.fd, data.data() + done, data.size() - done);
        if (n > 0) {
            if (done == 0) {
                // O_APPEND: the offset now ends the bytes just written.
                const off_t end = ::lseek(file.fd, 0, SEEK_CUR);
                start = end >= n ? end - n : -1;
            }
            done += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        const int error = n < 0 ? errno : EIO;
        if (done > 0) {
            // Never leave half a line: cut it off; failing that (a pipe, an append-only file),
            // make sure the next line starts on a line of its own.
            if (start < 0 || ::ftruncate(file.fd, start) != 0) file.broken_tail = true;
        }
        set_error(fmt::format("{}: writing a line of {} bytes: {} ({} bytes written{})",
                              is_stdout_ ? "stdout" : path_, line.size(), errno_text(error), done,
                              done == 0 ? "" : file.broken_tail ? ", not removed" : ", removed"));
        return false;
    }
    file.broken_tail = false;
    return true;
}

std::shared_ptr<AuditLog::OpenFile> AuditLog::write_event(nlohmann::json& event) {
    event["time"] = rfc3339_now();
    // Invalid UTF-8 in client text must not make the line unwritable: replace it.
    std::string line = event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    line.push_back('\n');
    std::lock_guard lock(write_mutex_);
    if (!is_stdout_ && !follow_path()) {
        set_error(fmt::format("{}: the open file was removed and {}", path_, last_error()));
        return nullptr;
    }
    const auto started = std::chrono::steady_clock::now();
    const bool written = write_line(*file_, line);
    if (timings_.on_write) timings_.on_write(std::chrono::steady_clock::now() - started);
    if (!written) return nullptr;
    return file_;
}

void AuditLog::enqueue(std::shared_ptr<OpenFile> file, Pending pending) {
    {
        std::lock_guard lock(sync_mutex_);
        pending_.push_back(std::move(pending));
        bool listed = false;
        for (const auto& dirty : dirty_) listed = listed || dirty == file;
        if (!listed) dirty_.push_back(std::move(file));
    }
    work_ready_.notify_one();
}

bool AuditLog::record(nlohmann::json event) {
    auto file = write_event(event);
    if (!file) return false;
    if (fsync_mode_ == FsyncMode::never || !file->regular) return true;
    Waiter waiter;
    enqueue(std::move(file), Pending{&waiter, {}});
    std::unique_lock lock(sync_mutex_);
    round_done_.wait(lock, [&] { return waiter.finished; });
    return waiter.written;
}

void AuditLog::record_async(nlohmann::json event, Completion done) {
    auto file = write_event(event);
    if (!file || fsync_mode_ == FsyncMode::never || !file->regular) {
        if (done) done(file != nullptr);
        return;
    }
    enqueue(std::move(file), Pending{nullptr, std::move(done)});
}

// One round: take every line enqueued so far (each enqueued after its write, so this round's
// fdatasync starts after every write it answers for), sync their files, complete them.
void AuditLog::sync_loop() {
    std::unique_lock lock(sync_mutex_);
    for (;;) {
        work_ready_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
        if (pending_.empty()) return;  // stopping, and nothing left to answer for
        std::vector<Pending> batch = std::move(pending_);
        std::vector<std::shared_ptr<OpenFile>> files = std::move(dirty_);
        pending_.clear();
        dirty_.clear();
        lock.unlock();

        bool synced = true;
        for (const auto& file : files) {
            const auto started = std::chrono::steady_clock::now();
            const int rc = sync_descriptor(file->fd);
            const int error = errno;  // (before the observer runs)
            if (timings_.on_sync) timings_.on_sync(std::chrono::steady_clock::now() - started);
            if (rc != 0) {
                synced = false;
                set_error(fmt::format("{}: fdatasync: {}", path_, errno_text(error)));
            }
            ++sync_count_;
        }
        files.clear();  // closes files replaced since (rotation) once their lines are synced

        for (auto& pending : batch) {
            if (!pending.done) continue;
            try {
                pending.done(synced);
            } catch (...) {
                // A completion must not take the sync thread down (and with it every writer).
            }
            pending.done = {};
        }
        lock.lock();
        for (auto& pending : batch) {
            if (pending.waiter == nullptr) continue;
            pending.waiter->finished = true;
            pending.waiter->written = synced;
        }
        round_done_.notify_all();
    }
}

void AuditLog::set_error(std::string message) {
    std::lock_guard lock(error_mutex_);
    last_error_ = std::move(message);
}

std::string AuditLog::last_error() const {
    std::lock_guard lock(error_mutex_);
    return last_error_;
}

std::string rfc3339_now() {
    const auto now = std::chrono::system_clock::now();
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
    const std::time_t seconds = static_cast<std::time_t>(micros / 1000000);
    std::tm utc{};
    ::gmtime_r(&seconds, &utc);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", utc.tm_year + 1900, utc.tm_mon + 1,
                       utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, micros % 1000000);
}

}  // namespace pgrail::audit

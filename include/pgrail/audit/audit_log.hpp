// The durable audit trail: one JSON object per line, written before the client sees the answer.
#pragma once

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

namespace pgrail::audit {

enum class FsyncMode { never, always };

class AuditLog {
public:
    // `path` "-" or empty means stdout. Throws std::runtime_error if the file cannot be opened.
    AuditLog(const std::string& path, FsyncMode fsync_mode);
    ~AuditLog();
    AuditLog(const AuditLog&) = delete;
    AuditLog& operator=(const AuditLog&) = delete;

    // Adds "time" (RFC 3339, UTC, microseconds) and writes `event` as one line.
    // Returns only once the line is written (and fsynced with FsyncMode::always);
    // returns false if the write failed, so the caller can fail closed.
    [[nodiscard]] bool record(nlohmann::json event);

private:
    std::mutex mutex_;
    std::FILE* file_ = nullptr;
    bool owns_file_ = false;
    FsyncMode fsync_mode_;
};

// RFC 3339 timestamp in UTC with microseconds, e.g. 2026-11-25T15:44:35.123456Z.
std::string rfc3339_now();

}  // namespace pgrail::audit

// The durable audit trail: JSON lines, flushed (and optionally fsynced) before returning.
#include "pgrail/audit/audit_log.hpp"

#include <unistd.h>

#include <chrono>
#include <ctime>
#include <stdexcept>

#include <fmt/format.h>

namespace pgrail::audit {

AuditLog::AuditLog(const std::string& path, FsyncMode fsync_mode) : fsync_mode_(fsync_mode) {
    if (path.empty() || path == "-") {
        file_ = stdout;
        return;
    }
    file_ = std::fopen(path.c_str(), "a");
    if (file_ == nullptr) throw std::runtime_error(fmt::format("cannot open audit log {}", path));
    owns_file_ = true;
}

AuditLog::~AuditLog() {
    if (owns_file_) std::fclose(file_);
}

bool AuditLog::record(nlohmann::json event) {
    event["time"] = rfc3339_now();
    // Invalid UTF-8 in client text must not make the line unwritable: replace it.
    std::string line = event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    line.push_back('\n');
    std::lock_guard lock(mutex_);
    if (std::fwrite(line.data(), 1, line.size(), file_) != line.size()) return false;
    if (std::fflush(file_) != 0) return false;
    if (fsync_mode_ == FsyncMode::always && ::fsync(::fileno(file_)) != 0) return false;
    return true;
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

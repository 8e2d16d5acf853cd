// The Unix-socket listener's socket file and its lock file, handled as PostgreSQL handles its own
// (miscinit.c CreateLockFile: O_EXCL, the owner's pid on the first line, stale when it is gone).
#include "unix_socket_file.hpp"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace pgrail::proxy {
namespace {

std::string error_text(int error) { return std::strerror(error); }

// The pid on the lock file's first line; 0 when the file holds none (a write cut short).
long read_lock_pid(const std::string& path, int* error) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *error = errno;
        return 0;
    }
    char buffer[64] = {};
    const auto n = ::read(fd, buffer, sizeof buffer - 1);
    ::close(fd);
    *error = 0;
    if (n <= 0) return 0;
    long pid = 0;
    for (ssize_t i = 0; i < n && buffer[i] >= '0' && buffer[i] <= '9' && pid < 100000000; ++i)
        pid = pid * 10 + (buffer[i] - '0');
    return pid;
}

// Whether `pid` names a live process other than this one (a reused pid of our own, after a
// restart in a fresh container, is stale: PostgreSQL reasons the same way).
bool alive(long pid) {
    if (pid <= 0 || pid == static_cast<long>(::getpid())) return false;
    return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

}  // namespace

UnixSocketFile::~UnixSocketFile() { release(); }

std::string UnixSocketFile::claim(const std::string& socket_path) {
    socket_path_ = socket_path;
    const auto lock = lock_path();
    const auto content = fmt::format("{}\n{}\npgrail\n", ::getpid(), socket_path_);
    // Bounded: each round either creates the file or removes a stale one; another process racing
    // us through the same rounds wins at most every time we lose.
    for (int attempt = 0; attempt < 100; ++attempt) {
        const int fd = ::open(lock.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            const auto written = ::write(fd, content.data(), content.size());
            const int write_error = errno;
            ::close(fd);
            if (written != static_cast<ssize_t>(content.size())) {
                ::unlink(lock.c_str());
                return fmt::format("could not write the lock file {}: {}", lock, error_text(write_error));
            }
            held_ = true;
            // Whatever socket file is there was left by the stale owner (a live one holds the lock).
            if (::unlink(socket_path_.c_str()) != 0 && errno != ENOENT) {
                const int unlink_error = errno;
                release();
                return fmt::format("could not remove the old socket file {}: {}", socket_path_,
                                   error_text(unlink_error));
            }
            return {};
        }
        if (errno != EEXIST) return fmt::format("could not create the lock file {}: {}", lock, error_text(errno));
        int read_error = 0;
        const long owner = read_lock_pid(lock, &read_error);
        if (read_error == ENOENT) continue;  // removed meanwhile: try again
        if (read_error != 0) return fmt::format("could not read the lock file {}: {}", lock, error_text(read_error));
        if (owner == 0 && attempt < 5) {
            // Just created by another starting process, not yet written: give it a moment.
            ::usleep(100000);
            continue;
        }
        if (alive(owner))
            return fmt::format("the lock file {} is held by process {}: is another pgrail (or a PostgreSQL) "
                               "listening on {}? If not, remove the lock file",
                               lock, owner, socket_path_);
        // Stale: the owner is gone. Remove it and go round again (creation stays exclusive).
        if (::unlink(lock.c_str()) != 0 && errno != ENOENT)
            return fmt::format("could not remove the stale lock file {} (process {} is gone): {}", lock, owner,
                               error_text(errno));
    }
    return fmt::format("could not take the lock file {}: it keeps changing", lock);
}

std::string UnixSocketFile::set_access(std::uint32_t mode, const std::string& group) const {
    if (!group.empty()) {
        // getgrnam_r's buffer: sysconf's hint, grown while the entry does not fit (bounded).
        const long hint = ::sysconf(_SC_GETGR_R_SIZE_MAX);
        std::vector<char> buffer(hint > 0 ? static_cast<std::size_t>(hint) : 4096);
        struct group entry {};
        struct group* found = nullptr;
        int error = 0;
        while ((error = ::getgrnam_r(group.c_str(), &entry, buffer.data(), buffer.size(), &found)) == ERANGE &&
               buffer.size() < (1u << 20))
            buffer.resize(buffer.size() * 2);
        if (error != 0) return fmt::format("listen.unix_socket_group: could not look up group \"{}\": {}", group,
                                           error_text(error));
        if (found == nullptr) return fmt::format("listen.unix_socket_group: there is no group \"{}\"", group);
        if (::chown(socket_path_.c_str(), static_cast<uid_t>(-1), found->gr_gid) != 0)
            return fmt::format("listen.unix_socket_group: could not give {} to group \"{}\": {}", socket_path_, group,
                               error_text(errno));
    }
    if (::chmod(socket_path_.c_str(), static_cast<mode_t>(mode)) != 0)
        return fmt::format("listen.unix_socket_mode: could not set the permissions of {} to {:04o}: {}", socket_path_,
                           mode, error_text(errno));
    return {};
}

void UnixSocketFile::remove_socket() const {
    if (held_) ::unlink(socket_path_.c_str());
}

void UnixSocketFile::release() {
    if (!held_) return;
    held_ = false;
    ::unlink(socket_path_.c_str());
    // Only our own lock: never one another process took after ours was (wrongly) removed.
    int error = 0;
    if (read_lock_pid(lock_path(), &error) == static_cast<long>(::getpid())) ::unlink(lock_path().c_str());
}

}  // namespace pgrail::proxy

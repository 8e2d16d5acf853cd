// The files of pgrail's Unix-socket listener: `<dir>/.s.PGSQL.<port>` and, as PostgreSQL keeps
// one beside its socket, the lock file `.s.PGSQL.<port>.lock` holding the owner's pid.
#pragma once

#include <cstdint>
#include <string>

namespace pgrail::proxy {

// Claims the socket path for this process. The lock file is created exclusively; an existing one
// whose pid is alive (another pgrail, or a PostgreSQL on the same directory and port) is left
// alone and the claim fails, so two servers never take each other's socket; one whose pid is gone
// (a crashed run) is stale: it and the socket file beside it are replaced.
class UnixSocketFile {
public:
    UnixSocketFile() = default;
    ~UnixSocketFile();
    UnixSocketFile(const UnixSocketFile&) = delete;
    UnixSocketFile& operator=(const UnixSocketFile&) = delete;

    // Takes the lock for `socket_path` and removes a stale socket file there, ready for bind().
    // Returns an empty string on success, else why not (the caller refuses to start).
    [[nodiscard]] std::string claim(const std::string& socket_path);
    // After bind(): the socket file's permissions and group (empty: pgrail's own). Returns an
    // empty string on success, else why not.
    [[nodiscard]] std::string set_access(std::uint32_t mode, const std::string& group) const;
    // Removes the socket file (no new connections find it); the lock stays until release().
    void remove_socket() const;
    // Removes both files, if still this process's. Also done by the destructor.
    void release();

    [[nodiscard]] const std::string& socket_path() const { return socket_path_; }
    [[nodiscard]] std::string lock_path() const { return socket_path_ + ".lock"; }

private:
    std::string socket_path_;
    bool held_ = false;
};

}  // namespace pgrail::proxy

// Following the migrations directory without a signal: a cheap look before each use, a new
// registry only when a file was added, removed or changed.
#pragma once

#include <sys/types.h>

#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "pgrail/migrations/registry.hpp"

namespace pgrail::migrations {

class DirectoryWatch {
public:
    explicit DirectoryWatch(std::filesystem::path dir);

    struct Reading {
        bool changed = false;                      // a file was added, removed or changed since the last poll
        std::shared_ptr<const Registry> registry;  // when changed (or forced): built from the files just read
    };

    // Lists the directory and stats each entry (names starting with '.' are skipped, as
    // Registry::load() skips them). A file is read again only when its stat differs (device, inode,
    // size, mtime, ctime) or when it was last read within 2 seconds of its mtime or ctime: a
    // change in the same timestamp tick, even of the same size, is never missed. `force` (SIGHUP,
    // the first poll) builds a registry whether or not anything changed. Throws
    // std::runtime_error when the directory cannot be read. Not thread-safe: callers serialise.
    Reading poll(bool force = false);

    [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }

private:
    struct Entry {
        dev_t device = 0;
        ino_t inode = 0;
        off_t size = 0;
        timespec mtime{};
        timespec ctime{};
        bool regular = false;
        bool readable = false;
        bool trusted = false;  // read well after its last change: an unchanged stat means unchanged bytes
        std::string content;
    };
    std::filesystem::path dir_;
    std::map<std::string, Entry> entries_;
    bool polled_ = false;
};

}  // namespace pgrail::migrations

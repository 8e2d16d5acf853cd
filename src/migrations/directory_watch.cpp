// The migrations directory followed by stat: files re-read only when they may have changed.
#include "pgrail/migrations/directory_watch.hpp"

#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

namespace pgrail::migrations {

namespace fs = std::filesystem;

namespace {

// How recent a change may be for an unchanged stat not to prove unchanged bytes: a write in the
// same timestamp tick as the read (coarse clocks, file systems with second granularity) leaves
// mtime and ctime as they were.
constexpr long trust_after_seconds = 2;

bool same_time(const timespec& a, const timespec& b) { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; }

bool older_than(const timespec& time, const timespec& now, long seconds) {
    return time.tv_sec + seconds < now.tv_sec ||
           (time.tv_sec + seconds == now.tv_sec && time.tv_nsec < now.tv_nsec);
}

}  // namespace

DirectoryWatch::DirectoryWatch(fs::path dir) : dir_(std::move(dir)) {}

DirectoryWatch::Reading DirectoryWatch::poll(bool force) {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    std::error_code error;
    if (!fs::is_directory(dir_, error))
        throw std::runtime_error(fmt::format("migrations directory {} is not a readable directory", dir_.string()));
    fs::directory_iterator iterator(dir_, error);
    if (error)
        throw std::runtime_error(
            fmt::format("migrations directory {} cannot be read: {}", dir_.string(), error.message()));

    bool changed = force || !polled_;
    std::map<std::string, Entry> next;
    for (; iterator != fs::directory_iterator(); iterator.increment(error)) {
        if (error) break;
        const fs::path path = iterator->path();
        std::string name = path.filename().string();
        if (name.starts_with(".")) continue;
        Entry entry;
        struct stat info {};
        if (::stat(path.c_str(), &info) == 0) {
            entry.device = info.st_dev;
            entry.inode = info.st_ino;
            entry.size = info.st_size;
            entry.mtime = info.st_mtim;
            entry.ctime = info.st_ctim;
            entry.regular = S_ISREG(info.st_mode);
        }
        const auto old = entries_.find(name);
        const bool same_stat = old != entries_.end() && old->second.regular == entry.regular &&
                               old->second.device == entry.device && old->second.inode == entry.inode &&
                               old->second.size == entry.size && same_time(old->second.mtime, entry.mtime) &&
                               same_time(old->second.ctime, entry.ctime);
        if (same_stat && old->second.trusted) {
            entry.readable = old->second.readable;
            entry.content = old->second.content;  // copied: a failed poll leaves the last reading whole
            entry.trusted = true;
        } else {
            if (entry.regular) {
                std::ifstream in(path, std::ios::binary);
                std::ostringstream content;
                content << in.rdbuf();
                entry.readable = static_cast<bool>(in);
                if (entry.readable) entry.content = content.str();
            }
            entry.trusted = older_than(entry.mtime, now, trust_after_seconds) &&
                            older_than(entry.ctime, now, trust_after_seconds);
            if (old == entries_.end() || old->second.regular != entry.regular ||
                old->second.readable != entry.readable || old->second.content != entry.content)
                changed = true;
        }
        next.emplace(std::move(name), std::move(entry));
    }
    if (error)
        throw std::runtime_error(
            fmt::format("migrations directory {} cannot be read: {}", dir_.string(), error.message()));
    for (const auto& [name, entry] : entries_)
        if (!next.contains(name)) changed = true;  // removed
    entries_ = std::move(next);
    polled_ = true;

    Reading reading;
    reading.changed = changed;
    if (!changed) return reading;
    std::map<std::string, std::string> files;
    std::vector<InvalidFile> unreadable;
    for (const auto& [name, entry] : entries_) {
        if (!entry.regular)
            unreadable.push_back({dir_ / name, std::nullopt, "not a regular file"});
        else if (!entry.readable)
            unreadable.push_back({dir_ / name, std::nullopt, "cannot be read"});
        else
            files.emplace(name, entry.content);
    }
    reading.registry = std::make_shared<const Registry>(Registry::from_listing(dir_, files, unreadable));
    return reading;
}

}  // namespace pgrail::migrations

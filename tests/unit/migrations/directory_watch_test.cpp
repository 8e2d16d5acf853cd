// DirectoryWatch: the migrations directory followed by stat, files re-read only when they may
// have changed, and never a change missed (same size, same modification time).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "pgrail/migrations/directory_watch.hpp"

using namespace pgrail::migrations;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char pattern[] = "/tmp/pgrail-watch.XXXXXX";
        REQUIRE(mkdtemp(pattern) != nullptr);
        path = pattern;
    }
    ~TempDir() {
        std::error_code error;
        fs::remove_all(path, error);
    }
    void write(const std::string& name, const std::string& text) const {
        std::ofstream out(path / name, std::ios::binary | std::ios::trunc);
        out << text;
    }
};

// Rewrites a file with new bytes of the same size and puts its modification time back.
void rewrite_same_stat(const fs::path& file, const std::string& text) {
    struct stat before {};
    REQUIRE(::stat(file.c_str(), &before) == 0);
    {
        std::ofstream out(file, std::ios::binary | std::ios::trunc);
        out << text;
    }
    const timespec times[2] = {before.st_atim, before.st_mtim};
    REQUIRE(::utimensat(AT_FDCWD, file.c_str(), times, 0) == 0);
}

}  // namespace

TEST_CASE("a directory watch sees added, changed and removed files, and nothing else", "[migrations][watch]") {
    TempDir dir;
    dir.write("1_a.up.sql", "CREATE TABLE a (id int);\n");
    dir.write("1_a.down.sql", "DROP TABLE a;\n");
    DirectoryWatch watch(dir.path);
    const auto first = watch.poll();
    REQUIRE(first.changed);
    REQUIRE(first.registry);
    CHECK(first.registry->migrations().size() == 1);
    CHECK_FALSE(watch.poll().changed);
    CHECK(watch.poll(true).changed);  // forced (SIGHUP): a registry whatever the files say

    dir.write("2_b.up.sql", "CREATE TABLE b (id int);\n");
    dir.write("2_b.down.sql", "DROP TABLE b;\n");
    auto added = watch.poll();
    REQUIRE(added.changed);
    CHECK(added.registry->migrations().size() == 2);
    CHECK_FALSE(watch.poll().changed);

    // Same size, modification time put back: read again (it changed too recently to trust its stat).
    const auto checksum = added.registry->find("2")->checksum;
    rewrite_same_stat(dir.path / "2_b.up.sql", "CREATE TABLE c (id int);\n");
    auto rewritten = watch.poll();
    REQUIRE(rewritten.changed);
    CHECK(rewritten.registry->find("2")->checksum != checksum);
    // Touched but the same bytes: no change.
    rewrite_same_stat(dir.path / "2_b.up.sql", "CREATE TABLE c (id int);\n");
    CHECK_FALSE(watch.poll().changed);

    // Dot files are skipped, as Registry::load() skips them.
    dir.write(".2_b.up.sql.swp", "junk");
    CHECK_FALSE(watch.poll().changed);

    fs::remove(dir.path / "2_b.up.sql");
    auto removed = watch.poll();
    REQUIRE(removed.changed);
    CHECK(removed.registry->migrations().size() == 1);
    CHECK(removed.registry->invalid_files().size() == 1);  // 2_b.down.sql without its up script

    fs::create_directory(dir.path / "3_c.up.sql");
    auto directory = watch.poll();
    REQUIRE(directory.changed);
    bool not_regular = false;
    for (const auto& file : directory.registry->invalid_files())
        not_regular = not_regular || (file.path.filename() == "3_c.up.sql" && file.reason == "not a regular file");
    CHECK(not_regular);
}

TEST_CASE("a file read well after its last change is trusted by its stat, and its next change seen",
          "[migrations][watch]") {
    TempDir dir;
    dir.write("1_a.up.sql", "CREATE TABLE a (id int);\n");
    dir.write("1_a.down.sql", "DROP TABLE a;\n");
    DirectoryWatch watch(dir.path);
    REQUIRE(watch.poll().changed);
    std::this_thread::sleep_for(std::chrono::milliseconds(2100));
    CHECK_FALSE(watch.poll().changed);  // read again: now older than the window
    CHECK_FALSE(watch.poll().changed);  // trusted: not read
    // Same size, modification time put back: the change time (which no one can set) tells.
    rewrite_same_stat(dir.path / "1_a.up.sql", "CREATE TABLE z (id int);\n");
    auto changed = watch.poll();
    REQUIRE(changed.changed);
    CHECK(changed.registry->migrations().front().up.text == "CREATE TABLE z (id int);\n");
}

TEST_CASE("a directory that cannot be read is an error, and the last reading stays whole", "[migrations][watch]") {
    TempDir dir;
    dir.write("1_a.up.sql", "CREATE TABLE a (id int);\n");
    dir.write("1_a.down.sql", "DROP TABLE a;\n");
    DirectoryWatch watch(dir.path);
    REQUIRE(watch.poll().changed);
    const auto moved = dir.path.string() + ".moved";
    fs::rename(dir.path, moved);
    CHECK_THROWS_WITH(watch.poll(), Catch::Contains("is not a readable directory"));
    fs::rename(moved, dir.path);
    CHECK_FALSE(watch.poll().changed);
}

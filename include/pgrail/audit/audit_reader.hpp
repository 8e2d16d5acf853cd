// Reading audit files back (`pgrail audit`): plain or gzip-compressed JSON lines, rotated sets in
// order, following a live file across rotation, filters, and a summary. Streams: memory stays
// bounded by the longest line and the summary's tables, whatever the file's size.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgrail::audit {

// The lines of one audit file, plain or gzip (told apart by the gzip magic), read in chunks.
// A line longer than `max_line` is skipped whole and counted (never held in memory).
class LineReader {
public:
    static constexpr std::size_t default_max_line = 64u << 20;

    // Throws std::runtime_error naming the file when it cannot be opened.
    explicit LineReader(const std::filesystem::path& path, std::size_t max_line = default_max_line);
    ~LineReader();
    LineReader(const LineReader&) = delete;
    LineReader& operator=(const LineReader&) = delete;

    // The next complete line (without its newline); false at the end of what is there now. A
    // plain file's last line without a newline is held back until it is complete or `finish`
    // is set (then it is returned as it is).
    bool next(std::string& line, bool finish = true);
    [[nodiscard]] bool compressed() const { return compressed_; }
    [[nodiscard]] std::uint64_t skipped_long_lines() const { return skipped_long_; }
    // For following a plain file: whether the path now names another file (rotated, removed) or
    // the file got shorter than what was read (truncated).
    [[nodiscard]] bool replaced() const;

private:
    bool fill();

    std::filesystem::path path_;
    std::size_t max_line_;
    int fd_ = -1;
    void* gz_ = nullptr;  // gzFile, kept out of this header
    bool compressed_ = false;
    std::uint64_t offset_ = 0;  // bytes read from a plain file
    std::string buffer_;
    std::size_t start_ = 0;
    bool skipping_ = false;  // inside a line longer than max_line_
    std::uint64_t skipped_long_ = 0;
};

// One audit line's top-level members, read without building a JSON tree (a 1 GiB file is read
// in seconds): strings decoded, other scalars as their text, objects and arrays skipped. Views
// into the line, which must outlive the record.
class Record {
public:
    // nullopt when the line is not one JSON object.
    [[nodiscard]] static std::optional<Record> parse(std::string_view line);
    // The member's value ("" when absent).
    [[nodiscard]] std::string_view get(std::string_view key) const;
    [[nodiscard]] bool has(std::string_view key) const;

private:
    struct Member {
        std::string_view key;
        std::string_view value;
    };
    std::vector<Member> members_;
    std::vector<std::unique_ptr<std::string>> decoded_;  // values that held escapes
};

// `base`'s rotated files as logrotate names them (base.1, base.2.gz, ..., oldest first), then
// `base` itself when it exists.
[[nodiscard]] std::vector<std::filesystem::path> rotated_set(const std::filesystem::path& base);

// A time bound as the audit writes times ("2026-12-04T22:54:07.981490Z"): an RFC 3339 time or a
// prefix of one ("2026-12-04", "2026-12-04T22:54"), or a duration before `now` ("90s", "15m",
// "2h", "7d"). Returned in the records' own format, so bounds compare as strings. nullopt when
// the text is neither.
[[nodiscard]] std::optional<std::string> parse_time_bound(std::string_view text,
                                                          std::chrono::system_clock::time_point now);

struct Filter {
    std::vector<std::string> users;
    // The records' `identity`: who logged in (auth.mode pgrail's identity; the user in passthrough
    // mode, where the two are one). Records without one never match.
    std::vector<std::string> identities;
    std::vector<std::string> rules;
    std::vector<std::string> decisions;  // deny, allow
    std::vector<std::string> events;
    std::vector<std::string> classes;
    std::optional<std::string> since;  // inclusive, as parse_time_bound returns it
    std::optional<std::string> until;  // exclusive

    [[nodiscard]] bool matches(const Record& record) const;
    // A quick test on the raw line before it is parsed: false only when the line cannot match
    // (pgrail writes compact JSON, so a listed value appears as `"user":"agent"` in it).
    [[nodiscard]] bool may_match(std::string_view line) const;
};

// One record as one line of text: time, event, decision, rule, user@database, and what it was.
[[nodiscard]] std::string format_record(const Record& record);

// Counts over the records it is given: per event, refusals per rule and user, and the most
// frequent (redacted, so already normalised) refused statements. Under auth.mode pgrail, where
// many identities share one role, refusals are also told apart by identity, and records are
// counted per identity and event; records whose identity is their user (passthrough mode) add
// nothing of the sort, so their summary reads as it did before identities existed.
class Summary {
public:
    void add(const Record& record);
    void print(std::ostream& out, std::size_t top) const;
    [[nodiscard]] nlohmann::json to_json(std::size_t top) const;

private:
    struct IdentityCounts {
        std::uint64_t records = 0;
        std::uint64_t refusals = 0;
        std::map<std::string, std::uint64_t, std::less<>> roles;   // the users it ran as, bounded
        std::map<std::string, std::uint64_t, std::less<>> events;
    };
    // The identity's entry in identities_: "(other)" past the bound on distinct identities.
    std::pair<const std::string, IdentityCounts>& identity_entry(std::string_view identity);

    std::uint64_t records_ = 0;
    std::optional<std::string> first_;
    std::optional<std::string> last_;
    std::map<std::string, std::uint64_t, std::less<>> events_;
    // (rule, user, identity); the identity is "" when it is the user or absent.
    std::map<std::tuple<std::string, std::string, std::string>, std::uint64_t> refusals_;
    std::map<std::string, std::uint64_t, std::less<>> statements_;  // refused statements, bounded (see add)
    std::map<std::string, IdentityCounts, std::less<>> identities_;  // every record's identity, bounded
    bool distinct_identities_ = false;  // some record's identity differs from its user
};

}  // namespace pgrail::audit

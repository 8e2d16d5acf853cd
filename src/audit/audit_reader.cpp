// Reading audit files back: lines from plain or gzip files, rotated sets, filters, a summary.
#include "pgrail/audit/audit_reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>
#include <ctime>
#include <stdexcept>

#include <fmt/format.h>

namespace pgrail::audit {

namespace {

constexpr std::size_t chunk_size = 1u << 20;
// Distinct refused statements the summary keeps apart; the rest count as one "(other)" entry.
constexpr std::size_t max_distinct_statements = 100000;
constexpr std::size_t max_statement_key = 500;
// Identities the summary keeps apart (a login_refused line's identity is any name a client sent),
// the roles and events kept apart per identity, and the longest identity kept whole.
constexpr std::size_t max_distinct_identities = 10000;
constexpr std::size_t max_roles_per_identity = 16;
constexpr std::size_t max_events_per_identity = 256;
constexpr std::size_t max_identity_key = 256;

std::string field(const Record& record, const char* name) { return std::string(record.get(name)); }

bool listed(const std::vector<std::string>& wanted, const Record& record, const char* name) {
    if (wanted.empty()) return true;
    const auto value = record.get(name);
    return std::find(wanted.begin(), wanted.end(), value) != wanted.end();
}

void skip_space(std::string_view text, std::size_t& at) {
    while (at < text.size() && (text[at] == ' ' || text[at] == '\t' || text[at] == '\n' || text[at] == '\r')) ++at;
}

void append_utf8(std::string& out, std::uint32_t code) {
    if (code < 0x80) {
        out.push_back(static_cast<char>(code));
    } else if (code < 0x800) {
        out.push_back(static_cast<char>(0xc0 | (code >> 6)));
        out.push_back(static_cast<char>(0x80 | (code & 0x3f)));
    } else if (code < 0x10000) {
        out.push_back(static_cast<char>(0xe0 | (code >> 12)));
        out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (code & 0x3f)));
    } else {
        out.push_back(static_cast<char>(0xf0 | (code >> 18)));
        out.push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (code & 0x3f)));
    }
}

std::optional<std::uint32_t> hex4(std::string_view text, std::size_t at) {
    if (at + 4 > text.size()) return std::nullopt;
    std::uint32_t value = 0;
    const auto [end, error] = std::from_chars(text.data() + at, text.data() + at + 4, value, 16);
    if (error != std::errc() || end != text.data() + at + 4) return std::nullopt;
    return value;
}

// A JSON string starting at text[at] == '"': its raw body (between the quotes) and whether it
// holds escapes; `at` ends past the closing quote. nullopt when unterminated.
std::optional<std::pair<std::string_view, bool>> scan_string(std::string_view text, std::size_t& at) {
    const std::size_t start = ++at;
    bool escaped = false;
    while (at < text.size()) {
        const char c = text[at];
        if (c == '"') return std::pair{text.substr(start, at++ - start), escaped};
        if (c == '\\') {
            escaped = true;
            at += 2;
            continue;
        }
        ++at;
    }
    return std::nullopt;
}

std::optional<std::string> decode(std::string_view raw) {
    std::string out;
    out.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] != '\\') {
            out.push_back(raw[i]);
            continue;
        }
        if (++i >= raw.size()) return std::nullopt;
        switch (raw[i]) {
            case '"': out.push_back('"'); break;
            case '\\': out.push_back('\\'); break;
            case '/': out.push_back('/'); break;
            case 'b': out.push_back('\b'); break;
            case 'f': out.push_back('\f'); break;
            case 'n': out.push_back('\n'); break;
            case 'r': out.push_back('\r'); break;
            case 't': out.push_back('\t'); break;
            case 'u': {
                auto code = hex4(raw, i + 1);
                if (!code) return std::nullopt;
                i += 4;
                if (*code >= 0xd800 && *code < 0xdc00 && i + 6 < raw.size() + 1 && raw.substr(i + 1, 2) == "\\u") {
                    const auto low = hex4(raw, i + 3);
                    if (low && *low >= 0xdc00 && *low < 0xe000) {
                        *code = 0x10000 + ((*code - 0xd800) << 10) + (*low - 0xdc00);
                        i += 6;
                    }
                }
                append_utf8(out, *code);
                break;
            }
            default: return std::nullopt;
        }
    }
    return out;
}

// Skips one value that is not a string (a number, true/false/null, an object or an array).
bool skip_value(std::string_view text, std::size_t& at) {
    if (at >= text.size()) return false;
    if (text[at] != '{' && text[at] != '[') {
        const std::size_t start = at;
        while (at < text.size() && text[at] != ',' && text[at] != '}' && text[at] != ' ') ++at;
        return at > start;
    }
    int depth = 0;
    while (at < text.size()) {
        const char c = text[at];
        if (c == '"') {
            if (!scan_string(text, at)) return false;
            continue;
        }
        if (c == '{' || c == '[') ++depth;
        if (c == '}' || c == ']') {
            if (--depth == 0) {
                ++at;
                return true;
            }
        }
        ++at;
    }
    return false;
}

std::string format_time(std::chrono::system_clock::time_point at) {
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(at.time_since_epoch()).count();
    const std::time_t seconds = static_cast<std::time_t>(micros / 1000000);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                       utc.tm_hour, utc.tm_min, utc.tm_sec, micros % 1000000);
}

}  // namespace

LineReader::LineReader(const std::filesystem::path& path, std::size_t max_line) : path_(path), max_line_(max_line) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error(fmt::format("cannot open {}: {}", path.string(), std::strerror(errno)));
    std::array<unsigned char, 2> magic{};
    const auto n = ::pread(fd_, magic.data(), magic.size(), 0);
    if (n == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        compressed_ = true;
        const int gz_fd = ::dup(fd_);
        gz_ = gz_fd < 0 ? nullptr : gzdopen(gz_fd, "rb");
        if (gz_ == nullptr) {
            if (gz_fd >= 0) ::close(gz_fd);
            ::close(fd_);
            throw std::runtime_error(fmt::format("cannot read {} as gzip", path.string()));
        }
    }
}

LineReader::~LineReader() {
    if (gz_ != nullptr) gzclose(static_cast<gzFile>(gz_));
    if (fd_ >= 0) ::close(fd_);
}

bool LineReader::fill() {
    if (start_ > 0) {
        buffer_.erase(0, start_);
        start_ = 0;
    }
    const auto size = buffer_.size();
    buffer_.resize(size + chunk_size);
    long n = 0;
    if (compressed_) {
        n = gzread(static_cast<gzFile>(gz_), buffer_.data() + size, static_cast<unsigned>(chunk_size));
        if (n < 0) {
            int code = 0;
            const char* message = gzerror(static_cast<gzFile>(gz_), &code);
            buffer_.resize(size);
            throw std::runtime_error(fmt::format("{}: {}", path_.string(), message != nullptr ? message : "gzip error"));
        }
    } else {
        do n = ::read(fd_, buffer_.data() + size, chunk_size);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            buffer_.resize(size);
            throw std::runtime_error(fmt::format("cannot read {}: {}", path_.string(), std::strerror(errno)));
        }
        offset_ += static_cast<std::uint64_t>(n);
    }
    buffer_.resize(size + static_cast<std::size_t>(n));
    return n > 0;
}

bool LineReader::next(std::string& line, bool finish) {
    while (true) {
        const auto newline = buffer_.find('\n', start_);
        if (newline != std::string::npos) {
            const bool was_skipping = skipping_;
            skipping_ = false;
            if (!was_skipping) {
                line.assign(buffer_, start_, newline - start_);
                start_ = newline + 1;
                return true;
            }
            start_ = newline + 1;  // the end of a line too long to keep
            continue;
        }
        if (buffer_.size() - start_ > max_line_) {
            // Drop what is held of an overlong line; the rest of it goes up to its newline.
            if (!skipping_) ++skipped_long_;
            skipping_ = true;
            buffer_.clear();
            start_ = 0;
        }
        if (fill()) continue;
        if (finish && start_ < buffer_.size() && !skipping_) {
            line.assign(buffer_, start_, std::string::npos);
            buffer_.clear();
            start_ = 0;
            return true;
        }
        return false;
    }
}

bool LineReader::replaced() const {
    if (compressed_) return false;
    struct stat now {};
    struct stat open_file {};
    if (::fstat(fd_, &open_file) != 0) return true;
    if (::stat(path_.c_str(), &now) != 0) return true;
    if (now.st_dev != open_file.st_dev || now.st_ino != open_file.st_ino) return true;
    return static_cast<std::uint64_t>(open_file.st_size) < offset_;
}

std::optional<Record> Record::parse(std::string_view line) {
    Record record;
    std::size_t at = 0;
    skip_space(line, at);
    if (at >= line.size() || line[at] != '{') return std::nullopt;
    ++at;
    skip_space(line, at);
    if (at < line.size() && line[at] == '}') return record;
    while (true) {
        skip_space(line, at);
        if (at >= line.size() || line[at] != '"') return std::nullopt;
        const auto key = scan_string(line, at);
        if (!key) return std::nullopt;
        skip_space(line, at);
        if (at >= line.size() || line[at] != ':') return std::nullopt;
        ++at;
        skip_space(line, at);
        if (at >= line.size()) return std::nullopt;
        const std::size_t value_start = at;
        std::string_view value;
        if (line[at] == '"') {
            const auto text = scan_string(line, at);
            if (!text) return std::nullopt;
            value = text->first;
            if (text->second) {
                auto decoded = decode(text->first);
                if (!decoded) return std::nullopt;
                record.decoded_.push_back(std::make_unique<std::string>(std::move(*decoded)));
                value = *record.decoded_.back();
            }
        } else {
            if (!skip_value(line, at)) return std::nullopt;
            value = line.substr(value_start, at - value_start);
        }
        // Keys pgrail writes hold no escapes; one that does is kept as written.
        record.members_.push_back({key->first, value});
        skip_space(line, at);
        if (at >= line.size()) return std::nullopt;
        if (line[at] == '}') break;
        if (line[at] != ',') return std::nullopt;
        ++at;
    }
    ++at;
    skip_space(line, at);
    if (at != line.size()) return std::nullopt;
    return record;
}

std::string_view Record::get(std::string_view key) const {
    for (const auto& member : members_)
        if (member.key == key) return member.value;
    return {};
}

bool Record::has(std::string_view key) const {
    return std::any_of(members_.begin(), members_.end(), [&](const Member& member) { return member.key == key; });
}

std::vector<std::filesystem::path> rotated_set(const std::filesystem::path& base) {
    std::vector<std::pair<std::uint64_t, std::filesystem::path>> numbered;
    const auto dir = base.has_parent_path() ? base.parent_path() : std::filesystem::path(".");
    const auto prefix = base.filename().string() + ".";
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        const auto name = entry.path().filename().string();
        if (!name.starts_with(prefix)) continue;
        std::string_view rest(name);
        rest.remove_prefix(prefix.size());
        if (rest.ends_with(".gz")) rest.remove_suffix(3);
        std::uint64_t number = 0;
        const auto [end, error] = std::from_chars(rest.data(), rest.data() + rest.size(), number);
        if (error != std::errc() || end != rest.data() + rest.size() || rest.empty()) continue;
        numbered.emplace_back(number, entry.path());
    }
    // logrotate's numbering: the highest number is the oldest.
    std::sort(numbered.begin(), numbered.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<std::filesystem::path> out;
    for (auto& [number, path] : numbered) out.push_back(std::move(path));
    if (std::filesystem::exists(base, ec)) out.push_back(base);
    return out;
}

std::optional<std::string> parse_time_bound(std::string_view text, std::chrono::system_clock::time_point now) {
    if (text.empty()) return std::nullopt;
    // A duration before now: digits and one unit.
    const char unit = text.back();
    if (std::string_view("smhd").find(unit) != std::string_view::npos && text.size() > 1) {
        std::uint64_t amount = 0;
        const auto digits = text.substr(0, text.size() - 1);
        const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), amount);
        if (error == std::errc() && end == digits.data() + digits.size() && amount <= 100000000) {
            const std::uint64_t per = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 86400;
            return format_time(now - std::chrono::seconds(amount * per));
        }
        return std::nullopt;
    }
    // A prefix of the records' own format: digits where they have digits, the same separators.
    static constexpr std::string_view shape = "0000-00-00T00:00:00.000000Z";
    std::string bound(text);
    if (bound.size() > 10 && bound[10] == ' ') bound[10] = 'T';
    if (bound.size() > shape.size()) return std::nullopt;
    for (std::size_t i = 0; i < bound.size(); ++i) {
        const bool digit = bound[i] >= '0' && bound[i] <= '9';
        if ((shape[i] == '0') != digit || (!digit && bound[i] != shape[i])) return std::nullopt;
    }
    // A whole date, minute or second: keep it as a prefix (it sorts before every time within it).
    if (bound.size() != 10 && bound.size() != 16 && bound.size() != 19 && bound.size() < 21) return std::nullopt;
    return bound;
}

bool Filter::matches(const Record& record) const {
    if (!listed(users, record, "user") || !listed(identities, record, "identity") || !listed(rules, record, "rule") ||
        !listed(decisions, record, "decision") || !listed(events, record, "event") || !listed(classes, record, "class"))
        return false;
    if (since || until) {
        const auto time = field(record, "time");
        if (since && time < *since) return false;
        if (until && time >= *until) return false;
    }
    return true;
}

bool Filter::may_match(std::string_view line) const {
    const auto any_present = [&](const std::vector<std::string>& wanted, const char* name) {
        if (wanted.empty()) return true;
        return std::any_of(wanted.begin(), wanted.end(), [&](const std::string& value) {
            const auto needle = fmt::format("\"{}\":{}", name, nlohmann::json(value).dump());
            return line.find(needle) != std::string_view::npos;
        });
    };
    return any_present(users, "user") && any_present(identities, "identity") && any_present(rules, "rule") &&
           any_present(decisions, "decision") && any_present(events, "event") && any_present(classes, "class");
}

namespace {

// A field as a terminal may show it: a line break as a space, other control bytes (a carriage
// return, ESC and the escape sequences it starts) as \xHH, so that no name or statement a client
// chose can forge a line of its own or rewrite what the operator sees.
std::string printable(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '\n') {
            out.push_back(' ');
        } else if (byte < 0x20 || byte == 0x7f) {
            out += fmt::format("\\x{:02x}", byte);
        } else {
            out.push_back(c);
        }
    }
    return out;
}

}  // namespace

std::string format_record(const Record& record) {
    std::string out = field(record, "time");
    out += "  " + field(record, "event");
    for (const char* name : {"decision", "outcome"})
        if (record.has(name)) out += " " + field(record, name);
    if (record.has("rule")) out += "  rule " + field(record, "rule");
    const auto user = field(record, "user");
    if (!user.empty()) {
        out += "  " + user;
        if (record.has("database")) out += "@" + field(record, "database");
    }
    // auth.mode pgrail: who logged in, besides the role the session ran as (in passthrough mode the
    // identity is the user, said once).
    if (const auto identity = field(record, "identity"); !identity.empty() && identity != user)
        out += " (identity " + identity + ")";
    if (record.has("version")) out += "  " + field(record, "version") + " " + field(record, "name");
    for (const char* name : {"message", "statement", "command", "detail"}) {
        if (!record.has(name)) continue;
        out += ": " + field(record, name);
        break;
    }
    return printable(out);
}

namespace {

// Counts `key` in `map`, or in its "(other)" entry once `bound` distinct keys are kept.
template <typename Map>
void count_bounded(Map& map, std::string_view key, std::size_t bound) {
    auto it = map.find(key);
    if (it == map.end() && map.size() >= bound) it = map.try_emplace("(other)", 0).first;
    if (it == map.end()) it = map.emplace(std::string(key), 0).first;
    ++it->second;
}

}  // namespace

std::pair<const std::string, Summary::IdentityCounts>& Summary::identity_entry(std::string_view identity) {
    identity = identity.substr(0, max_identity_key);
    auto it = identities_.find(identity);
    if (it == identities_.end() && identities_.size() >= max_distinct_identities)
        it = identities_.try_emplace("(other)").first;
    if (it == identities_.end()) it = identities_.try_emplace(std::string(identity)).first;
    return *it;
}

void Summary::add(const Record& record) {
    ++records_;
    const auto time = record.get("time");
    if (!first_) first_.emplace(time);
    else if (time < *first_) first_->assign(time);
    if (!last_) last_.emplace(time);
    else if (time > *last_) last_->assign(time);
    const auto count = [](auto& map, std::string_view key) {
        auto it = map.find(key);
        if (it == map.end()) it = map.emplace(std::string(key), 0).first;
        ++it->second;
    };
    const auto event = record.get("event");
    count(events_, event);
    const bool refused = record.get("decision") == "deny";
    // Every record with an identity is counted under it, so an identity named like its role is
    // not missing from the table; the table is shown only once some identity differs from its
    // user (auth.mode pgrail), since in passthrough mode it would restate the users.
    const auto identity = record.get("identity");
    const auto user = record.get("user");
    std::string refusal_identity;
    if (!identity.empty()) {
        auto& [name, counts] = identity_entry(identity);
        ++counts.records;
        if (refused) ++counts.refusals;
        if (!user.empty()) count_bounded(counts.roles, user, max_roles_per_identity);
        count_bounded(counts.events, event, max_events_per_identity);
        if (identity != user) {
            distinct_identities_ = true;
            refusal_identity = name;
        }
    }
    if (!refused) return;
    ++refusals_[{std::string(record.get("rule")), std::string(user), std::move(refusal_identity)}];
    const auto statement = record.get("statement").substr(0, max_statement_key);
    if (statement.empty()) return;
    auto it = statements_.find(statement);
    if (it == statements_.end() && statements_.size() >= max_distinct_statements) it = statements_.try_emplace("(other)").first;
    if (it == statements_.end()) it = statements_.emplace(std::string(statement), 0).first;
    ++it->second;
}

namespace {

// The map's entries, most counted first (ties in the map's order), at most `top`; `count` reads
// an entry's count from its value.
template <typename Map, typename Count = std::identity>
std::vector<typename Map::const_iterator> by_count(const Map& map, std::size_t top, Count count = {}) {
    std::vector<typename Map::const_iterator> entries;
    for (auto it = map.begin(); it != map.end(); ++it) entries.push_back(it);
    std::stable_sort(entries.begin(), entries.end(),
                     [&](auto a, auto b) { return count(a->second) > count(b->second); });
    if (entries.size() > top) entries.resize(top);
    return entries;
}

}  // namespace

void Summary::print(std::ostream& out, std::size_t top) const {
    out << fmt::format("{} records", records_);
    if (first_) out << fmt::format(", {} .. {}", *first_, *last_);
    out << "\n\nevents\n";
    for (const auto it : by_count(events_, events_.size()))
        out << fmt::format("  {:>10}  {}\n", it->second, printable(it->first));
    out << "\nrefusals by rule and user\n";
    if (refusals_.empty()) out << "  (none)\n";
    for (const auto it : by_count(refusals_, refusals_.size())) {
        const auto& [rule, user, identity] = it->first;
        // As format_record says it: the identity beside the role it ran as.
        out << fmt::format("  {:>10}  rule {}  user {}{}\n", it->second, printable(rule), printable(user),
                           identity.empty() ? "" : " (identity " + printable(identity) + ")");
    }
    out << fmt::format("\ntop {} refused statements (literals redacted)\n", top);
    if (statements_.empty()) out << "  (none)\n";
    for (const auto it : by_count(statements_, top)) {
        out << fmt::format("  {:>10}  {}\n", it->second, printable(it->first));
    }
    if (!distinct_identities_) return;
    const auto records_of = [](const IdentityCounts& counts) { return counts.records; };
    out << "\nrecords by identity and event (auth.mode pgrail: who logged in, the role it ran as)\n";
    for (const auto it : by_count(identities_, identities_.size(), records_of)) {
        const auto& counts = it->second;
        std::string roles;
        for (const auto& [role, n] : counts.roles) roles += (roles.empty() ? "" : ", ") + role;
        out << fmt::format("  {:>10}  identity {}{}{}  refusals {}\n", counts.records, printable(it->first),
                           counts.roles.size() > 1 ? "  roles " : counts.roles.empty() ? "" : "  role ", printable(roles),
                           counts.refusals);
        for (const auto event : by_count(counts.events, counts.events.size()))
            out << fmt::format("  {:>10}    {}\n", event->second, printable(event->first));
    }
}

nlohmann::json Summary::to_json(std::size_t top) const {
    nlohmann::json out = {{"records", records_}, {"first", first_ ? *first_ : ""}, {"last", last_ ? *last_ : ""}};
    out["events"] = nlohmann::json::object();
    for (const auto& [event, count] : events_) out["events"][event] = count;
    out["refusals"] = nlohmann::json::array();
    for (const auto it : by_count(refusals_, refusals_.size())) {
        const auto& [rule, user, identity] = it->first;
        nlohmann::json entry = {{"rule", rule}, {"user", user}};
        if (!identity.empty()) entry["identity"] = identity;
        entry["count"] = it->second;
        out["refusals"].push_back(std::move(entry));
    }
    out["top_statements"] = nlohmann::json::array();
    for (const auto it : by_count(statements_, top))
        out["top_statements"].push_back({{"statement", it->first}, {"count", it->second}});
    if (!distinct_identities_) return out;
    const auto records_of = [](const IdentityCounts& counts) { return counts.records; };
    out["identities"] = nlohmann::json::array();
    for (const auto it : by_count(identities_, identities_.size(), records_of)) {
        const auto& counts = it->second;
        nlohmann::json entry = {{"identity", it->first},
                                {"roles", nlohmann::json::array()},
                                {"records", counts.records},
                                {"refusals", counts.refusals},
                                {"events", nlohmann::json::object()}};
        for (const auto& [role, n] : counts.roles) entry["roles"].push_back(role);
        for (const auto& [event, n] : counts.events) entry["events"][event] = n;
        out["identities"].push_back(std::move(entry));
    }
    return out;
}

}  // namespace pgrail::audit

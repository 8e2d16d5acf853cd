// Sharded LRU cache of analyses, bounded by an estimate of the bytes it holds.
#include "pgrail/sql/analysis_cache.hpp"

#include <array>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "pgrail/sql/analyzer.hpp"

namespace pgrail::sql {
namespace {

constexpr std::size_t shard_count = 16;  // a power of two: the shard is picked by the hash's low bits
constexpr std::size_t entry_overhead = 160;  // list node, map node, control block

// The heap bytes of a value, beyond its own size (counted where it is held): every string and
// vector by its capacity, so that no part of an analysis an agent can make large goes uncounted.
std::size_t heap(const std::string& text) { return text.capacity() > std::string().capacity() ? text.capacity() + 1 : 0; }
std::size_t heap(const ParseError& error) { return heap(error.message); }
std::size_t heap(const ObjectRef& object) { return heap(object.schema) + heap(object.name) + heap(object.kind); }
std::size_t heap(const SettingChange& setting) { return heap(setting.name) + heap(setting.value); }
std::size_t heap(const ColumnRead& read) { return heap(read.qualifier) + heap(read.name) + heap(read.output_name); }
std::size_t heap(const RangeRead& range) { return heap(range.schema) + heap(range.name) + heap(range.alias); }
std::size_t heap(const PgrailCall& call);
std::size_t heap(const Statement& statement);

template <class T>
std::size_t heap(const std::vector<T>& values) {
    std::size_t bytes = values.capacity() * sizeof(T);
    for (const T& value : values) bytes += heap(value);
    return bytes;
}
template <class T>
std::size_t heap(const std::optional<T>& value) {
    return value ? heap(*value) : 0;
}

std::size_t heap(const PgrailCall& call) { return heap(call.function) + heap(call.arguments); }
std::size_t heap(const SchemaChange& change) {
    return heap(change.schema) + heap(change.table) + heap(change.name) + heap(change.columns);
}

std::size_t heap(const Statement& statement) {
    return heap(statement.tag) + heap(statement.objects) + heap(statement.functions) + heap(statement.value_functions) + heap(statement.settings) +
           heap(statement.structural_form) + heap(statement.advisory_lock_keys) + heap(statement.error) +
           heap(statement.pgrail_calls) + heap(statement.ranges) + heap(statement.column_reads) +
           heap(statement.change) + heap(statement.inner);
}

}  // namespace

std::size_t footprint(std::string_view query, const Analysis& analysis) {
    return entry_overhead + sizeof(Analysis) + query.size() + heap(analysis.statements) + heap(analysis.error);
}

namespace {

// The text's hash is computed once per lookup and reused by the map.
struct Key {
    std::string_view text;
    std::size_t hash = 0;
    bool operator==(const Key& other) const { return hash == other.hash && text == other.text; }
};

struct KeyHash {
    std::size_t operator()(const Key& key) const noexcept { return key.hash; }
};

struct Entry {
    std::string query;
    std::size_t hash = 0;
    std::shared_ptr<const Analysis> analysis;
    std::size_t bytes = 0;
};

struct Shard {
    std::mutex mutex;
    std::list<Entry> entries;  // most recently used first
    std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> index;  // keys view Entry::query
    std::size_t bytes = 0;
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
};

}  // namespace

struct AnalysisCache::Impl {
    std::size_t shard_capacity = 0;
    std::array<Shard, shard_count> shards;
};

AnalysisCache::AnalysisCache(std::size_t max_bytes) : impl_(std::make_unique<Impl>()) {
    impl_->shard_capacity = max_bytes / shard_count;
}

AnalysisCache::~AnalysisCache() = default;

namespace {

Key key_of(std::string_view query) { return {query, std::hash<std::string_view>{}(query)}; }

// High bits pick the shard; the map's buckets use the low ones.
std::size_t shard_of(const Key& key) { return (key.hash >> 56) & (shard_count - 1); }

// The entry for `key` (counted as a hit and made most recent), or null.
std::shared_ptr<const Analysis> lookup(Shard& shard, const Key& key) {
    std::lock_guard lock(shard.mutex);
    const auto found = shard.index.find(key);
    if (found == shard.index.end()) return nullptr;
    ++shard.hits;
    shard.entries.splice(shard.entries.begin(), shard.entries, found->second);
    return found->second->analysis;
}

}  // namespace

std::shared_ptr<const Analysis> AnalysisCache::find(std::string_view query) {
    const Key key = key_of(query);
    return lookup(impl_->shards[shard_of(key)], key);
}

std::shared_ptr<const Analysis> AnalysisCache::analyze(std::string_view query) {
    const Key key = key_of(query);
    Shard& shard = impl_->shards[shard_of(key)];
    if (auto cached = lookup(shard, key)) return cached;
    {
        std::lock_guard lock(shard.mutex);
        ++shard.misses;
    }
    // Analyse outside the lock: a slow statement must not stall other lookups.
    auto analysis = std::make_shared<const Analysis>(sql::analyze(query));
    const std::size_t bytes = footprint(query, *analysis);
    if (bytes > impl_->shard_capacity) return analysis;

    std::lock_guard lock(shard.mutex);
    if (const auto found = shard.index.find(key); found != shard.index.end()) return found->second->analysis;
    shard.entries.push_front(Entry{std::string(query), key.hash, analysis, bytes});
    shard.index.emplace(Key{shard.entries.front().query, key.hash}, shard.entries.begin());
    shard.bytes += bytes;
    while (shard.bytes > impl_->shard_capacity) {
        const Entry& oldest = shard.entries.back();
        shard.bytes -= oldest.bytes;
        shard.index.erase(Key{oldest.query, oldest.hash});
        shard.entries.pop_back();
    }
    return analysis;
}

std::uint64_t AnalysisCache::hits() const {
    std::uint64_t total = 0;
    for (Shard& shard : impl_->shards) {
        std::lock_guard lock(shard.mutex);
        total += shard.hits;
    }
    return total;
}

std::uint64_t AnalysisCache::misses() const {
    std::uint64_t total = 0;
    for (Shard& shard : impl_->shards) {
        std::lock_guard lock(shard.mutex);
        total += shard.misses;
    }
    return total;
}

std::size_t AnalysisCache::size_bytes() const {
    std::size_t total = 0;
    for (Shard& shard : impl_->shards) {
        std::lock_guard lock(shard.mutex);
        total += shard.bytes;
    }
    return total;
}

}  // namespace pgrail::sql

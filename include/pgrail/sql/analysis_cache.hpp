// A bounded, thread-safe cache of analyses keyed by the exact query text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "pgrail/sql/statement.hpp"

namespace pgrail::sql {

// The bytes an analysis of `query` holds with its text and a cache entry's own: what
// AnalysisCache counts against its bound (every string and vector of it, by capacity).
[[nodiscard]] std::size_t footprint(std::string_view query, const Analysis& analysis);

class AnalysisCache {
public:
    explicit AnalysisCache(std::size_t max_bytes = 64 * 1024 * 1024);
    ~AnalysisCache();
    AnalysisCache(const AnalysisCache&) = delete;
    AnalysisCache& operator=(const AnalysisCache&) = delete;

    // The analysis of `query`, from the cache or freshly computed (and stored).
    [[nodiscard]] std::shared_ptr<const Analysis> analyze(std::string_view query);
    // The cached analysis of `query`, or null: never analyses.
    [[nodiscard]] std::shared_ptr<const Analysis> find(std::string_view query);

    [[nodiscard]] std::uint64_t hits() const;
    [[nodiscard]] std::uint64_t misses() const;
    [[nodiscard]] std::size_t size_bytes() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace pgrail::sql

// Process-wide counters and histograms, rendered in the Prometheus text format (`/metrics`).
// Counting is lock-free on the hot path (relaxed atomics); labelled series are keyed only by
// values pgrail defines or the operator configured (rule names, statement classes, decisions,
// guards), never by SQL text or a client-supplied string, so cardinality stays bounded.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

namespace pgrail::proxy {

// A latency histogram with fixed buckets (seconds, Prometheus' `le`), lock-free.
class Histogram {
public:
    static constexpr std::array<double, 12> bounds = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                                      0.001,   0.0025,   0.005,   0.01,   0.1,     1.0};
    void observe(std::chrono::nanoseconds elapsed);
    void render(std::string& out, std::string_view name, std::string_view help) const;
    [[nodiscard]] std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t sum_ns() const { return sum_ns_.load(std::memory_order_relaxed); }

private:
    std::array<std::atomic<std::uint64_t>, bounds.size() + 1> buckets_{};  // the last one: +Inf
    std::atomic<std::uint64_t> sum_ns_{0};
    std::atomic<std::uint64_t> count_{0};
};

// A counter that every I/O thread adds to at each read: each thread adds to a slot of its own (a
// cache line each), so that two threads never pass one line back and forth; read as the sum.
class SpreadCounter {
public:
    void add(std::uint64_t n) { slots_[slot_of_this_thread()].value.fetch_add(n, std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t load() const {
        std::uint64_t sum = 0;
        for (const auto& slot : slots_) sum += slot.value.load(std::memory_order_relaxed);
        return sum;
    }

private:
    static constexpr std::size_t slot_count = 16;  // threads beyond it share slots, still correct
    static std::size_t slot_of_this_thread() {
        static std::atomic<std::size_t> next{0};
        thread_local std::size_t slot = slot_count;  // constant-initialised: no TLS wrapper call
        if (slot == slot_count) slot = next.fetch_add(1, std::memory_order_relaxed) % slot_count;
        return slot;
    }
    struct alignas(64) Slot {
        std::atomic<std::uint64_t> value{0};
    };
    std::array<Slot, slot_count> slots_{};
};

// The gate's caches of analyses (proxy/policy_gate.cpp): a text is looked up in its worker's
// cache by text, then by literal shape, then in the cache all workers share; a miss in the last
// is analysed.
enum class GateCache : std::uint8_t { thread_text, thread_shape, shared_text };
inline constexpr std::size_t gate_cache_count = 3;

// What ended a wait pgrail bounds.
enum class Timeout : std::uint8_t {
    startup_packet,    // the client did not send its startup packet in time
    login,             // the whole login took longer than the startup timeout (57014)
    upstream_connect,  // the server's address did not accept within upstream.connect_timeout_ms
    upstream_login,    // the server did not answer a turn of the login within connect_timeout_ms
    buffered_message,  // a client stopped sending a message held whole (buffered_message_timeout)
    buffer_wait,       // a message waited too long for max_buffered_size (53200)
};
inline constexpr std::size_t timeout_count = 6;
[[nodiscard]] const char* to_string(GateCache cache);
[[nodiscard]] const char* to_string(Timeout timeout);

class Metrics {
public:
    // Sessions (client connections) and their traffic.
    std::atomic<std::int64_t> sessions_open{0};
    std::atomic<std::uint64_t> sessions_total{0};
    SpreadCounter bytes_from_clients;
    SpreadCounter bytes_from_server;
    std::atomic<std::uint64_t> upstream_connect_failures{0};
    // The audit log.
    std::atomic<std::uint64_t> audit_lines{0};
    std::atomic<std::uint64_t> audit_failures{0};
    std::atomic<std::uint64_t> refusals_paced{0};  // answered late: the login over audit.refusal_bytes_per_second
    // Statement texts checked on the analysis pool (the rest on the session's own I/O thread).
    std::atomic<std::uint64_t> pool_checks{0};
    // SIGHUP reloads.
    std::atomic<std::uint64_t> reloads_ok{0};
    std::atomic<std::uint64_t> reloads_failed{0};
    // Catalog reads for sensitive_columns (proxy/sensitive_catalog.cpp), by outcome.
    std::atomic<std::uint64_t> catalog_loads_ok{0};
    std::atomic<std::uint64_t> catalog_loads_failed{0};
    // Time the policy gate took per statement text (analysis, cache and decision).
    Histogram gate_seconds;
    // Time of each fresh analysis (a text no cache held): part of gate_seconds.
    Histogram analysis_seconds;
    // The audit log: each line's write(), and each fdatasync round (fsync: always).
    Histogram audit_write_seconds;
    Histogram audit_fsync_seconds;

    void count_cache(GateCache cache, bool hit) {
        (hit ? cache_hits_ : cache_misses_)[static_cast<std::size_t>(cache)].fetch_add(1, std::memory_order_relaxed);
    }
    void count_timeout(Timeout timeout) {
        timeouts_[static_cast<std::size_t>(timeout)].fetch_add(1, std::memory_order_relaxed);
    }
    [[nodiscard]] std::uint64_t cache_hits(GateCache cache) const {
        return cache_hits_[static_cast<std::size_t>(cache)].load(std::memory_order_relaxed);
    }
    [[nodiscard]] std::uint64_t cache_misses(GateCache cache) const {
        return cache_misses_[static_cast<std::size_t>(cache)].load(std::memory_order_relaxed);
    }
    [[nodiscard]] std::uint64_t timeouts(Timeout timeout) const {
        return timeouts_[static_cast<std::size_t>(timeout)].load(std::memory_order_relaxed);
    }

    // A statement text's decision under `rule` (class: the first refused or the text's statement).
    void count_statement(std::string_view rule, std::string_view decision, std::string_view statement_class);
    // A refusal by `guard` of `rule`.
    void count_refusal(std::string_view rule, std::string_view guard);
    // A session started under `rule`.
    void count_session_rule(std::string_view rule);
    // A migration event (applied, rolled_back, verified, ...) and its outcome (ok, failed).
    void count_migration(std::string_view event, std::string_view outcome);

    // Every metric, in the Prometheus text exposition format (version 0.0.4).
    [[nodiscard]] std::string render() const;

    // The labelled counters summed by one label, for pgrail.stats(): statements by decision,
    // refusals by guard, migration events by "event outcome" (bounded as the series are).
    struct Totals {
        std::map<std::string, std::uint64_t> statements_by_decision;
        std::map<std::string, std::uint64_t> refusals_by_guard;
        std::map<std::string, std::uint64_t> migration_events;
    };
    [[nodiscard]] Totals totals() const;

private:
    std::array<std::atomic<std::uint64_t>, gate_cache_count> cache_hits_{};
    std::array<std::atomic<std::uint64_t>, gate_cache_count> cache_misses_{};
    std::array<std::atomic<std::uint64_t>, timeout_count> timeouts_{};
    // At most this many distinct label sets per labelled metric; more count under "other".
    static constexpr std::size_t max_series = 1000;
    // Looked up by views (std::less<>): a statement's count allocates nothing once its series exists.
    using Labels2 = std::tuple<std::string, std::string>;
    using Labels3 = std::tuple<std::string, std::string, std::string>;
    // Names this object for the threads' caches of its series (count_statement): an address may
    // be another Metrics' later (tests make and destroy them).
    const std::uint64_t id_ = next_id_.fetch_add(1, std::memory_order_relaxed);
    static inline std::atomic<std::uint64_t> next_id_{1};
    mutable std::mutex mutex_;
    // rule, decision, class (counted without the lock once a thread has seen the series)
    std::map<Labels3, std::atomic<std::uint64_t>, std::less<>> statements_;
    std::map<Labels2, std::uint64_t, std::less<>> refusals_;     // rule, guard
    std::map<std::tuple<std::string>, std::uint64_t, std::less<>> session_rules_;  // rule
    std::map<Labels2, std::uint64_t, std::less<>> migrations_;   // event, outcome
};

// The process's metrics.
Metrics& metrics();

}  // namespace pgrail::proxy

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

private:
    std::array<std::atomic<std::uint64_t>, bounds.size() + 1> buckets_{};  // the last one: +Inf
    std::atomic<std::uint64_t> sum_ns_{0};
    std::atomic<std::uint64_t> count_{0};
};

class Metrics {
public:
    // Sessions (client connections) and their traffic.
    std::atomic<std::int64_t> sessions_open{0};
    std::atomic<std::uint64_t> sessions_total{0};
    std::atomic<std::uint64_t> bytes_from_clients{0};
    std::atomic<std::uint64_t> bytes_from_server{0};
    std::atomic<std::uint64_t> upstream_connect_failures{0};
    // The audit log.
    std::atomic<std::uint64_t> audit_lines{0};
    std::atomic<std::uint64_t> audit_failures{0};
    // SIGHUP reloads.
    std::atomic<std::uint64_t> reloads_ok{0};
    std::atomic<std::uint64_t> reloads_failed{0};
    // Catalog reads for sensitive_columns (proxy/sensitive_catalog.cpp), by outcome.
    std::atomic<std::uint64_t> catalog_loads_ok{0};
    std::atomic<std::uint64_t> catalog_loads_failed{0};
    // Time the policy gate took per statement text (analysis, cache and decision).
    Histogram gate_seconds;

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

private:
    // At most this many distinct label sets per labelled metric; more count under "other".
    static constexpr std::size_t max_series = 1000;
    // Looked up by views (std::less<>): a statement's count allocates nothing once its series exists.
    using Labels2 = std::tuple<std::string, std::string>;
    using Labels3 = std::tuple<std::string, std::string, std::string>;
    mutable std::mutex mutex_;
    std::map<Labels3, std::uint64_t, std::less<>> statements_;   // rule, decision, class
    std::map<Labels2, std::uint64_t, std::less<>> refusals_;     // rule, guard
    std::map<std::tuple<std::string>, std::uint64_t, std::less<>> session_rules_;  // rule
    std::map<Labels2, std::uint64_t, std::less<>> migrations_;   // event, outcome
};

// The process's metrics.
Metrics& metrics();

}  // namespace pgrail::proxy

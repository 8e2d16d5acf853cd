// Process-wide counters and histograms in the Prometheus text format.
#include "pgrail/proxy/metrics.hpp"

#include <array>

#include <fmt/format.h>

namespace pgrail::proxy {

namespace {

// A label value as the exposition format quotes it: backslash, quote and newline escaped.
std::string label(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (const char c : value) {
        if (c == '\\' || c == '"') out.push_back('\\');
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out.push_back(c);
    }
    return out;
}

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

// Counts one under `key` (views), creating the series on first use; past max_series new label
// sets count under `other`. Returns the series counted.
template <typename Map, typename View>
typename Map::iterator bump(Map& series, const View& key, std::size_t max_series,
                            const typename Map::key_type& other) {
    auto it = series.find(key);
    if (it == series.end()) {
        it = series.size() >= max_series ? series.try_emplace(other).first
                                         : series.emplace(std::make_from_tuple<typename Map::key_type>(key), 0).first;
    }
    ++it->second;
    return it;
}

}  // namespace

const char* to_string(GateCache cache) {
    switch (cache) {
        case GateCache::thread_text: return "thread_text";
        case GateCache::thread_shape: return "thread_shape";
        case GateCache::shared_text: return "shared_text";
    }
    return "?";
}

const char* to_string(Timeout timeout) {
    switch (timeout) {
        case Timeout::startup_packet: return "startup_packet";
        case Timeout::login: return "login";
        case Timeout::upstream_connect: return "upstream_connect";
        case Timeout::upstream_login: return "upstream_login";
        case Timeout::buffered_message: return "buffered_message";
        case Timeout::buffer_wait: return "buffer_wait";
    }
    return "?";
}

void Histogram::observe(std::chrono::nanoseconds elapsed) {
    const double seconds = std::chrono::duration<double>(elapsed).count();
    std::size_t bucket = 0;
    while (bucket < bounds.size() && seconds > bounds[bucket]) ++bucket;
    buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(static_cast<std::uint64_t>(elapsed.count()), std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
}

void Histogram::render(std::string& out, std::string_view name, std::string_view help) const {
    header(out, name, "histogram", help);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < bounds.size(); ++i) {
        cumulative += buckets_[i].load(std::memory_order_relaxed);
        out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds[i], cumulative);
    }
    cumulative += buckets_[bounds.size()].load(std::memory_order_relaxed);
    out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, cumulative);
    out += fmt::format("{}_sum {}\n", name, static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9);
    out += fmt::format("{}_count {}\n", name, count_.load(std::memory_order_relaxed));
}

void Metrics::count_statement(std::string_view rule, std::string_view decision, std::string_view statement_class) {
    // This runs per statement on every I/O thread: each thread keeps the series it counted last
    // (a series is never removed), so a statement takes no lock shared between threads.
    struct Seen {
        std::uint64_t owner = 0;  // Metrics::id_
        std::string rule;
        std::string_view decision, statement_class;  // (views of the series' own labels)
        std::atomic<std::uint64_t>* count = nullptr;
    };
    thread_local std::array<Seen, 8> seen;
    thread_local std::size_t next_seen = 0;
    for (auto& entry : seen) {
        if (entry.owner == id_ && entry.decision == decision && entry.statement_class == statement_class &&
            entry.rule == rule) {
            entry.count->fetch_add(1, std::memory_order_relaxed);
            return;
        }
    }
    std::lock_guard lock(mutex_);
    static const Labels3 other{"other", "other", "other"};
    const auto it = bump(statements_, std::tuple{rule, decision, statement_class}, max_series, other);
    const auto& [kept_rule, kept_decision, kept_class] = it->first;
    if (kept_rule != rule || kept_decision != decision || kept_class != statement_class) return;  // ("other")
    seen[next_seen] = Seen{id_, kept_rule, kept_decision, kept_class, &it->second};
    next_seen = (next_seen + 1) % seen.size();
}

void Metrics::count_refusal(std::string_view rule, std::string_view guard) {
    std::lock_guard lock(mutex_);
    static const Labels2 other{"other", "other"};
    bump(refusals_, std::tuple{rule, guard}, max_series, other);
}

void Metrics::count_session_rule(std::string_view rule) {
    std::lock_guard lock(mutex_);
    bump(session_rules_, std::tuple{rule}, max_series, std::tuple<std::string>{"other"});
}

void Metrics::count_migration(std::string_view event, std::string_view outcome) {
    std::lock_guard lock(mutex_);
    bump(migrations_, std::tuple{event, outcome}, max_series, Labels2{"other", "other"});
}

std::string Metrics::render() const {
    std::string out;
    const auto gauge = [&](std::string_view name, std::string_view help, auto value) {
        header(out, name, "gauge", help);
        out += fmt::format("{} {}\n", name, value);
    };
    const auto counter = [&](std::string_view name, std::string_view help, auto value) {
        header(out, name, "counter", help);
        out += fmt::format("{} {}\n", name, value);
    };
    gauge("pgrail_sessions_open", "Client sessions open now.", sessions_open.load(std::memory_order_relaxed));
    counter("pgrail_sessions_total", "Client sessions accepted since start.",
            sessions_total.load(std::memory_order_relaxed));
    header(out, "pgrail_bytes_total", "counter", "Bytes received, by direction.");
    out += fmt::format("pgrail_bytes_total{{direction=\"from_client\"}} {}\n", bytes_from_clients.load());
    out += fmt::format("pgrail_bytes_total{{direction=\"from_server\"}} {}\n", bytes_from_server.load());
    counter("pgrail_upstream_connect_failures_total", "Connections to the server that failed or timed out.",
            upstream_connect_failures.load(std::memory_order_relaxed));
    counter("pgrail_audit_lines_total", "Audit lines written.", audit_lines.load(std::memory_order_relaxed));
    counter("pgrail_audit_failures_total", "Audit lines that could not be written (the statement failed closed).",
            audit_failures.load(std::memory_order_relaxed));
    counter("pgrail_refusals_paced_total",
            "Refusals answered late because their login's refusal lines passed audit.refusal_bytes_per_second.",
            refusals_paced.load(std::memory_order_relaxed));
    counter("pgrail_analysis_pool_checks_total",
            "Statement texts checked on the analysis pool rather than on their session's I/O thread.",
            pool_checks.load(std::memory_order_relaxed));
    header(out, "pgrail_reloads_total", "counter", "SIGHUP reloads, by outcome.");
    out += fmt::format("pgrail_reloads_total{{outcome=\"ok\"}} {}\n", reloads_ok.load(std::memory_order_relaxed));
    out += fmt::format("pgrail_reloads_total{{outcome=\"refused\"}} {}\n",
                       reloads_failed.load(std::memory_order_relaxed));
    header(out, "pgrail_catalog_loads_total", "counter",
           "Reads of a database's catalog for sensitive_columns, by outcome.");
    out += fmt::format("pgrail_catalog_loads_total{{outcome=\"ok\"}} {}\n",
                       catalog_loads_ok.load(std::memory_order_relaxed));
    out += fmt::format("pgrail_catalog_loads_total{{outcome=\"failed\"}} {}\n",
                       catalog_loads_failed.load(std::memory_order_relaxed));
    gate_seconds.render(out, "pgrail_gate_seconds", "Time the policy gate took for a statement text.");
    analysis_seconds.render(out, "pgrail_analysis_seconds",
                            "Time of each fresh statement analysis (a text no cache held), within the gate's time.");
    header(out, "pgrail_gate_cache_lookups_total", "counter",
           "Lookups in the gate's analysis caches (per worker by text, per worker by literal shape, shared by "
           "text), by result.");
    for (std::size_t index = 0; index < gate_cache_count; ++index) {
        const auto cache = static_cast<GateCache>(index);
        out += fmt::format("pgrail_gate_cache_lookups_total{{cache=\"{}\",result=\"hit\"}} {}\n", to_string(cache),
                           cache_hits(cache));
        out += fmt::format("pgrail_gate_cache_lookups_total{{cache=\"{}\",result=\"miss\"}} {}\n", to_string(cache),
                           cache_misses(cache));
    }
    audit_write_seconds.render(out, "pgrail_audit_write_seconds", "Time of each audit line's write.");
    audit_fsync_seconds.render(out, "pgrail_audit_fsync_seconds",
                               "Time of each fdatasync of the audit log (audit.fsync: always; one covers many lines).");
    header(out, "pgrail_timeouts_total", "counter", "Waits pgrail ended because they took too long, by kind.");
    for (std::size_t index = 0; index < timeout_count; ++index) {
        const auto kind = static_cast<Timeout>(index);
        out += fmt::format("pgrail_timeouts_total{{kind=\"{}\"}} {}\n", to_string(kind), timeouts(kind));
    }

    std::lock_guard lock(mutex_);
    header(out, "pgrail_session_rules_total", "counter", "Sessions by the policy rule they matched.");
    for (const auto& [rule, count] : session_rules_)
        out += fmt::format("pgrail_session_rules_total{{rule=\"{}\"}} {}\n", label(std::get<0>(rule)), count);
    header(out, "pgrail_statements_total", "counter", "Statement texts the gate decided, by rule, decision and class.");
    for (const auto& [key, count] : statements_)
        out += fmt::format("pgrail_statements_total{{rule=\"{}\",decision=\"{}\",class=\"{}\"}} {}\n",
                           label(std::get<0>(key)), label(std::get<1>(key)), label(std::get<2>(key)),
                           count.load(std::memory_order_relaxed));
    header(out, "pgrail_refusals_total", "counter", "Refusals, by rule and guard.");
    for (const auto& [key, count] : refusals_)
        out += fmt::format("pgrail_refusals_total{{rule=\"{}\",guard=\"{}\"}} {}\n", label(std::get<0>(key)),
                           label(std::get<1>(key)), count);
    header(out, "pgrail_migration_events_total", "counter", "Migration events pgrail's runner recorded, by outcome.");
    for (const auto& [key, count] : migrations_)
        out += fmt::format("pgrail_migration_events_total{{event=\"{}\",outcome=\"{}\"}} {}\n",
                           label(std::get<0>(key)), label(std::get<1>(key)), count);
    return out;
}

Metrics::Totals Metrics::totals() const {
    Totals out;
    std::lock_guard lock(mutex_);
    for (const auto& [key, count] : statements_)
        out.statements_by_decision[std::get<1>(key)] += count.load(std::memory_order_relaxed);
    for (const auto& [key, count] : refusals_) out.refusals_by_guard[std::get<1>(key)] += count;
    for (const auto& [key, count] : migrations_)
        out.migration_events[std::get<0>(key) + " " + std::get<1>(key)] += count;
    return out;
}

Metrics& metrics() {
    static Metrics instance;
    return instance;
}

}  // namespace pgrail::proxy

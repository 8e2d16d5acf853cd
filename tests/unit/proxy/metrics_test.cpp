#include "pgrail/proxy/metrics.hpp"

#include <string>

#include <catch2/catch.hpp>

using pgrail::proxy::Histogram;
using pgrail::proxy::Metrics;

TEST_CASE("metrics render in the Prometheus text format, labels escaped", "[metrics]") {
    Metrics metrics;
    metrics.sessions_open = 2;
    metrics.count_statement("agents", "deny", "ddl");
    metrics.count_statement("agents", "deny", "ddl");
    metrics.count_refusal("we\"ird\\rule\n", "ddl");
    const auto text = metrics.render();
    CHECK_THAT(text, Catch::Contains("# HELP pgrail_sessions_open Client sessions open now.\n"
                                     "# TYPE pgrail_sessions_open gauge\npgrail_sessions_open 2\n"));
    CHECK_THAT(text, Catch::Contains("pgrail_statements_total{rule=\"agents\",decision=\"deny\",class=\"ddl\"} 2\n"));
    CHECK_THAT(text, Catch::Contains("pgrail_refusals_total{rule=\"we\\\"ird\\\\rule\\n\",guard=\"ddl\"} 1\n"));
}

TEST_CASE("labelled series are bounded: past 1,000 label sets everything counts as other", "[metrics]") {
    Metrics metrics;
    for (int i = 0; i < 1200; ++i) metrics.count_refusal("rule" + std::to_string(i), "ddl");
    const auto text = metrics.render();
    CHECK_THAT(text, Catch::Contains("pgrail_refusals_total{rule=\"rule999\",guard=\"ddl\"} 1\n"));
    CHECK_THAT(text, !Catch::Contains("rule=\"rule1000\""));
    CHECK_THAT(text, Catch::Contains("pgrail_refusals_total{rule=\"other\",guard=\"other\"} 200\n"));
}

TEST_CASE("a histogram's buckets are cumulative, with sum and count", "[metrics]") {
    Histogram histogram;
    histogram.observe(std::chrono::microseconds(5));     // le 1e-05
    histogram.observe(std::chrono::microseconds(300));   // le 0.0005
    histogram.observe(std::chrono::seconds(2));          // +Inf only
    std::string text;
    histogram.render(text, "t_seconds", "help");
    CHECK_THAT(text, Catch::Contains("t_seconds_bucket{le=\"1e-05\"} 1\n"));
    CHECK_THAT(text, Catch::Contains("t_seconds_bucket{le=\"0.00025\"} 1\n"));
    CHECK_THAT(text, Catch::Contains("t_seconds_bucket{le=\"0.0005\"} 2\n"));
    CHECK_THAT(text, Catch::Contains("t_seconds_bucket{le=\"1\"} 2\n"));
    CHECK_THAT(text, Catch::Contains("t_seconds_bucket{le=\"+Inf\"} 3\n"));
    CHECK_THAT(text, Catch::Contains("t_seconds_count 3\n"));
    CHECK_THAT(text, Catch::Contains("t_seconds_sum 2.000305\n"));
}

TEST_CASE("analysis and audit histograms, cache lookups and timeouts render with bounded labels", "[metrics]") {
    using pgrail::proxy::GateCache;
    using pgrail::proxy::Timeout;
    Metrics metrics;
    metrics.analysis_seconds.observe(std::chrono::microseconds(40));
    metrics.audit_write_seconds.observe(std::chrono::microseconds(3));
    metrics.audit_fsync_seconds.observe(std::chrono::milliseconds(4));
    metrics.count_cache(GateCache::thread_text, true);
    metrics.count_cache(GateCache::thread_text, true);
    metrics.count_cache(GateCache::shared_text, false);
    metrics.count_timeout(Timeout::buffered_message);
    const auto text = metrics.render();
    CHECK_THAT(text, Catch::Contains("# TYPE pgrail_analysis_seconds histogram\n"));
    CHECK_THAT(text, Catch::Contains("pgrail_analysis_seconds_count 1\n"));
    CHECK_THAT(text, Catch::Contains("pgrail_audit_write_seconds_count 1\n"));
    CHECK_THAT(text, Catch::Contains("pgrail_audit_fsync_seconds_bucket{le=\"0.005\"} 1\n"));
    CHECK_THAT(text, Catch::Contains("pgrail_gate_cache_lookups_total{cache=\"thread_text\",result=\"hit\"} 2\n"));
    CHECK_THAT(text, Catch::Contains("pgrail_gate_cache_lookups_total{cache=\"shared_text\",result=\"miss\"} 1\n"));
    CHECK_THAT(text, Catch::Contains("pgrail_gate_cache_lookups_total{cache=\"thread_shape\",result=\"hit\"} 0\n"));
    CHECK_THAT(text, Catch::Contains("pgrail_timeouts_total{kind=\"buffered_message\"} 1\n"));
    CHECK_THAT(text, Catch::Contains("pgrail_timeouts_total{kind=\"login\"} 0\n"));
    metrics.count_statement("agents", "deny", "ddl");
    metrics.count_statement("owner", "deny", "write");
    metrics.count_refusal("agents", "ddl");
    metrics.count_refusal("owner", "ddl");
    metrics.count_migration("applied", "ok");
    const auto totals = metrics.totals();
    CHECK(totals.statements_by_decision.at("deny") == 2);
    CHECK(totals.refusals_by_guard.at("ddl") == 2);
    CHECK(totals.migration_events.at("applied ok") == 1);
}

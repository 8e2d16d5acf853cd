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

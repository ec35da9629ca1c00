// Histogram buckets and quantiles; the Prometheus text a scraper reads.
#include <doctest/doctest.h>

#include <string>

#include "base/metrics.h"

using namespace kindling;

TEST_CASE("histogram: inclusive upper bounds, overflow bucket, quantiles") {
    Histogram h({0.001, 0.01, 0.1});
    CHECK(h.quantile(0.5) == 0);
    h.record(0.001);  // le="0.001" is inclusive
    h.record(0.005);
    h.record(0.005);
    h.record(5.0);  // above every bound
    CHECK(h.count() == 4);
    CHECK(h.bucket_count(0) == 1);
    CHECK(h.bucket_count(1) == 2);
    CHECK(h.bucket_count(2) == 0);
    CHECK(h.bucket_count(3) == 1);
    CHECK(h.sum() == doctest::Approx(5.011));
    CHECK(h.quantile(0.25) == 0.001);
    CHECK(h.quantile(0.5) == 0.01);
    CHECK(h.quantile(1.0) == 0.1);  // the overflow bucket reports the last bound
}

TEST_CASE("histogram: log-spaced buckets bound the quantile error") {
    Histogram h = Histogram::log_spaced(1e-6, 1.0, 8);
    CHECK(h.upper_bounds().back() >= 1.0);
    for (int i = 0; i < 99; ++i) h.record(200e-6);
    h.record(0.5);
    CHECK(h.quantile(0.5) >= 200e-6);
    CHECK(h.quantile(0.5) <= 200e-6 * 1.091);
    CHECK(h.quantile(1.0) >= 0.5);
    CHECK(h.quantile(1.0) <= 0.5 * 1.091);
}

TEST_CASE("metrics text: families, labels, histograms") {
    MetricsText m;
    m.counter("x_total", "Things.", 3);
    m.family("y", "gauge", "By state.");
    m.sample("y", uint64_t{2}, "state", "idle");
    m.sample("y", uint64_t{1}, "state", "a\"b\\c\nd");
    Histogram h({0.5, 1});
    h.record(0.25);
    h.record(2);
    m.histogram("lat_seconds", "Latency.", h);
    CHECK(m.text() ==
          "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n"
          "# HELP y By state.\n# TYPE y gauge\ny{state=\"idle\"} 2\ny{state=\"a\\\"b\\\\c\\nd\"} 1\n"
          "# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n"
          "lat_seconds_bucket{le=\"0.5\"} 1\nlat_seconds_bucket{le=\"1\"} 1\nlat_seconds_bucket{le=\"+Inf\"} 2\n"
          "lat_seconds_sum 2.25\nlat_seconds_count 2\n");
}

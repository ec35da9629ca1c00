// Metrics for /metrics endpoints and --json stats: a lock-free fixed-bucket
// histogram and a writer of the Prometheus text exposition format (version 0.0.4).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kindling {

// Counts of observations in buckets with fixed upper bounds (ascending, inclusive,
// Prometheus `le`) plus an overflow bucket.  record() may run on any thread
// concurrently with readers; readers see each counter atomically, not a consistent
// cut across them (fine for monitoring).
class Histogram {
public:
    explicit Histogram(std::vector<double> upper_bounds);

    // `per_doubling` buckets per power of two from `min` up to at least `max`: a
    // quantile is then accurate to 2^(1/per_doubling) (8 -> ~9%).
    static Histogram log_spaced(double min, double max, int per_doubling);

    void record(double v);

    const std::vector<double>& upper_bounds() const { return bounds_; }
    // Observations in bucket i (i == upper_bounds().size(): above the last bound).
    uint64_t bucket_count(size_t i) const;
    uint64_t count() const;
    double sum() const;
    // The upper bound of the bucket holding quantile q (0..1); 0 when empty; the last
    // bound when q falls in the overflow bucket.
    double quantile(double q) const;

private:
    std::vector<double> bounds_;
    std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
    std::atomic<double> sum_{0};
};

// Builds a Prometheus text page.  Names and label text are the caller's constants;
// label values are escaped.
class MetricsText {
public:
    static constexpr const char* kContentType = "text/plain; version=0.0.4";

    // A family's "# HELP" and "# TYPE" lines; its samples follow.
    void family(std::string_view name, std::string_view type, std::string_view help);
    // One sample: `name{key="value"} v`, or `name v` when key is empty.
    void sample(std::string_view name, uint64_t v, std::string_view key = {}, std::string_view value = {});
    void sample(std::string_view name, double v, std::string_view key = {}, std::string_view value = {});

    // A family with one unlabelled sample.
    void counter(std::string_view name, std::string_view help, uint64_t v);
    void gauge(std::string_view name, std::string_view help, uint64_t v);
    // A histogram family: cumulative _bucket{le=...} lines, _sum and _count.
    void histogram(std::string_view name, std::string_view help, const Histogram& h);

    const std::string& text() const { return out_; }

private:
    void labels(std::string_view key, std::string_view value);
    std::string out_;
};

}  // namespace kindling

#include "base/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace kindling {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
    for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

Histogram Histogram::log_spaced(double min, double max, int per_doubling) {
    std::vector<double> b;
    for (int i = 1;; ++i) {
        double v = min * std::exp2(double(i) / per_doubling);
        b.push_back(v);
        if (v >= max) break;
    }
    return Histogram(std::move(b));
}

void Histogram::record(double v) {
    size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
}

uint64_t Histogram::bucket_count(size_t i) const { return counts_[i].load(std::memory_order_relaxed); }

uint64_t Histogram::count() const {
    uint64_t n = 0;
    for (size_t i = 0; i <= bounds_.size(); ++i) n += bucket_count(i);
    return n;
}

double Histogram::sum() const { return sum_.load(std::memory_order_relaxed); }

double Histogram::quantile(double q) const {
    uint64_t n = count();
    if (n == 0 || bounds_.empty()) return 0;
    auto want = static_cast<uint64_t>(std::ceil(q * double(n)));
    if (want == 0) want = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
        seen += bucket_count(i);
        if (seen >= want) return bounds_[i];
    }
    return bounds_.back();
}

void MetricsText::family(std::string_view name, std::string_view type, std::string_view help) {
    out_.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void MetricsText::labels(std::string_view key, std::string_view value) {
    if (key.empty()) return;
    out_.append("{").append(key).append("=\"");
    for (char c : value) {
        if (c == '\\' || c == '"') out_ += '\\';
        if (c == '\n') {
            out_ += "\\n";
            continue;
        }
        out_ += c;
    }
    out_.append("\"}");
}

void MetricsText::sample(std::string_view name, uint64_t v, std::string_view key, std::string_view value) {
    out_.append(name);
    labels(key, value);
    out_.append(" ").append(std::to_string(v)).append("\n");
}

void MetricsText::sample(std::string_view name, double v, std::string_view key, std::string_view value) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    out_.append(name);
    labels(key, value);
    out_.append(" ").append(buf).append("\n");
}

void MetricsText::counter(std::string_view name, std::string_view help, uint64_t v) {
    family(name, "counter", help);
    sample(name, v);
}

void MetricsText::gauge(std::string_view name, std::string_view help, uint64_t v) {
    family(name, "gauge", help);
    sample(name, v);
}

void MetricsText::histogram(std::string_view name, std::string_view help, const Histogram& h) {
    family(name, "histogram", help);
    std::string bucket = std::string(name) + "_bucket";
    uint64_t cum = 0;
    const auto& bounds = h.upper_bounds();
    for (size_t i = 0; i < bounds.size(); ++i) {
        cum += h.bucket_count(i);
        char le[40];
        std::snprintf(le, sizeof le, "%g", bounds[i]);
        sample(bucket, cum, "le", le);
    }
    cum += h.bucket_count(bounds.size());
    sample(bucket, cum, "le", "+Inf");
    sample(std::string(name) + "_sum", h.sum());
    sample(std::string(name) + "_count", cum);
}

}  // namespace kindling

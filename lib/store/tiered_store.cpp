#include "store/tiered_store.h"

#include <cerrno>
#include <chrono>
#include <cmath>

#include "base/error.h"
#include "base/log.h"

namespace kindling {

namespace {

constexpr uint64_t kCorruptLogLimit = 20;

uint64_t now_ns() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

// A tier that could not be opened: every call fails, so the tier is counted as
// down and skipped, and the next tier serves.
class BrokenStore : public Store {
public:
    BrokenStore(std::string uri, std::string why) : uri_(std::move(uri)), why_(std::move(why)) {}
    const std::string& uri() const override { return uri_; }
    bool has(const Digest&) override { fail(); }
    std::optional<std::vector<uint8_t>> get(const Digest&) override { fail(); }
    bool put(const Digest&, std::span<const uint8_t>) override { fail(); }
    std::vector<Digest> list() override { fail(); }
    bool remove(const Digest&) override { fail(); }

private:
    [[noreturn]] void fail() const { throw UnavailableError(why_); }
    std::string uri_, why_;
};

// Write failures that will not go away by retrying: stop filling that tier.
bool lasting_write_failure(const std::exception& e) {
    if (auto* s = dynamic_cast<const SysError*>(&e)) {
        switch (s->err()) {
        case EROFS: case ENOSPC: case EDQUOT: case EACCES: case EPERM: case ENOTDIR: case EISDIR:
            return true;
        default:
            return false;
        }
    }
    return false;
}

}  // namespace

struct TieredStore::Tier {
    std::unique_ptr<Store> store;
    std::atomic<uint64_t> hits{0}, misses{0}, errors{0}, corrupt{0}, fills{0}, fill_errors{0}, bytes{0};
    Histogram latency = Histogram::log_spaced(1e-6, 4096, 8);  // seconds
    std::atomic<bool> bypassed{false};
    std::atomic<bool> warned_error{false}, warned_fill{false};
};

TieredStore::TieredStore(std::vector<std::unique_ptr<Store>> tiers, std::string uri) : uri_(std::move(uri)) {
    if (tiers.empty()) throw UsageError("tiered store: no tiers");
    if (uri_.empty()) {
        uri_ = "tiered:";
        for (size_t i = 0; i < tiers.size(); ++i) uri_ += (i ? "|" : "") + tiers[i]->uri();
    }
    for (auto& s : tiers) {
        auto t = std::make_unique<Tier>();
        t->store = std::move(s);
        tiers_.push_back(std::move(t));
    }
}

TieredStore::~TieredStore() = default;

Store& TieredStore::tier(size_t i) { return *tiers_.at(i)->store; }

bool TieredStore::has(const Digest& id) {
    for (auto& t : tiers_) {
        try {
            if (t->store->has(id)) return true;
        } catch (const std::exception&) {
            ++t->errors;
        }
    }
    return false;
}

std::optional<std::vector<uint8_t>> TieredStore::get(const Digest& id) {
    std::string first_error, corrupt_at;
    for (size_t i = 0; i < tiers_.size(); ++i) {
        Tier& t = *tiers_[i];
        std::optional<std::vector<uint8_t>> r;
        uint64_t t0 = now_ns();
        try {
            r = t.store->get(id);
        } catch (const std::bad_alloc&) {
            throw;
        } catch (const std::exception& e) {
            t.latency.record(double(now_ns() - t0) / 1e9);
            ++t.errors;
            if (first_error.empty())
                first_error = "tier " + std::to_string(i) + " (" + t.store->uri() + "): " + e.what();
            if (!t.warned_error.exchange(true))
                log_warn("tier %zu (%s) failed: %s; skipping it (further errors counted, not logged)", i,
                         t.store->uri().c_str(), e.what());
            continue;
        }
        t.latency.record(double(now_ns() - t0) / 1e9);
        if (!r) {
            ++t.misses;
            continue;
        }
        if (!object_matches(id, *r)) {
            uint64_t n = ++t.corrupt;
            bool removed = false;
            try {
                removed = t.store->remove(id);
            } catch (const std::exception&) {
            }
            if (n <= kCorruptLogLimit)
                log_warn("chunk %s: tier %zu (%s) returned %zu bytes that do not match the id (corrupt); %s, "
                         "trying the next tier%s",
                         id.hex().c_str(), i, t.store->uri().c_str(), r->size(),
                         removed ? "dropped from that tier" : "could not drop it",
                         n == kCorruptLogLimit ? " (further corrupt objects in this tier not logged)" : "");
            if (!corrupt_at.empty()) corrupt_at += ", ";
            corrupt_at += "tier " + std::to_string(i) + " (" + t.store->uri() + ")";
            continue;
        }
        ++t.hits;
        t.bytes += r->size();
        for (size_t j = 0; j < i; ++j) fill(j, id, *r);
        return r;
    }
    if (!corrupt_at.empty())
        throw DataError("chunk " + id.hex() + ": corrupt in every tier that holds it: " + corrupt_at +
                        (first_error.empty() ? "" : "; " + first_error));
    if (!first_error.empty())
        throw Error("chunk " + id.hex() + ": in no tier that answered; " + first_error, kExitTempFail);
    return std::nullopt;
}

void TieredStore::fill(size_t i, const Digest& id, std::span<const uint8_t> data) {
    Tier& t = *tiers_[i];
    if (t.bypassed.load(std::memory_order_relaxed)) return;
    try {
        t.store->put(id, data);
        ++t.fills;
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const std::exception& e) {
        ++t.fill_errors;
        if (lasting_write_failure(e)) {
            if (!t.bypassed.exchange(true))
                log_warn("tier %zu (%s): cannot store objects (%s); bypassing this cache", i,
                         t.store->uri().c_str(), e.what());
        } else if (!t.warned_fill.exchange(true)) {
            log_warn("tier %zu (%s): fill failed: %s (further fill errors counted, not logged)", i,
                     t.store->uri().c_str(), e.what());
        }
    }
}

bool TieredStore::put(const Digest& id, std::span<const uint8_t> data) {
    bool fresh = tiers_.back()->store->put(id, data);
    for (size_t j = 0; j + 1 < tiers_.size(); ++j) fill(j, id, data);
    return fresh;
}

std::vector<Digest> TieredStore::list() { return tiers_.back()->store->list(); }

bool TieredStore::remove(const Digest& id) {
    bool any = false;
    for (size_t i = 0; i < tiers_.size(); ++i) {
        if (i + 1 == tiers_.size()) {
            any = tiers_[i]->store->remove(id) || any;
            continue;
        }
        try {
            any = tiers_[i]->store->remove(id) || any;
        } catch (const std::exception&) {
            ++tiers_[i]->errors;
        }
    }
    return any;
}

void TieredStore::flush() {
    for (size_t j = 0; j + 1 < tiers_.size(); ++j) {
        try {
            tiers_[j]->store->flush();
        } catch (const std::exception& e) {
            ++tiers_[j]->fill_errors;
        }
    }
    tiers_.back()->store->flush();
}

std::vector<TierStats> TieredStore::stats() const {
    std::vector<TierStats> out;
    for (const auto& t : tiers_) {
        TierStats s;
        s.uri = t->store->uri();
        s.hits = t->hits;
        s.misses = t->misses;
        s.errors = t->errors;
        s.corrupt = t->corrupt;
        s.fills = t->fills;
        s.fill_errors = t->fill_errors;
        s.bytes = t->bytes;
        s.gets = t->latency.count();
        s.get_seconds = t->latency.sum();
        s.p50_s = t->latency.quantile(0.5);
        s.p99_s = t->latency.quantile(0.99);
        s.bypassed = t->bypassed;
        out.push_back(std::move(s));
    }
    return out;
}

std::vector<std::string> split_tiered_uri(const std::string& uri, const std::string& rest) {
    std::vector<std::string> parts;
    if (rest.find('|') != std::string::npos) {
        size_t pos = 0;
        while (pos <= rest.size()) {
            size_t bar = rest.find('|', pos);
            if (bar == std::string::npos) bar = rest.size();
            parts.push_back(rest.substr(pos, bar - pos));
            pos = bar + 1;
        }
    } else {
        static const char* const kSchemes[] = {"dir:", "memcached:", "s3:"};
        size_t start = 0;
        for (size_t i = 0; i < rest.size(); ++i) {
            if (rest[i] != ',') continue;
            for (const char* s : kSchemes) {
                if (rest.compare(i + 1, std::string(s).size(), s) == 0) {
                    parts.push_back(rest.substr(start, i - start));
                    start = i + 1;
                    break;
                }
            }
        }
        parts.push_back(rest.substr(start));
    }
    for (const auto& p : parts)
        if (p.empty()) throw UsageError("store " + uri + ": empty tier (expected tiered:URI|URI|...)");
    for (const auto& p : parts)
        if (p.rfind("tiered:", 0) == 0) throw UsageError("store " + uri + ": a tier cannot itself be tiered:");
    return parts;
}

std::unique_ptr<Store> make_tiered_store(const std::string& uri, const std::string& rest,
                                         const StoreOptions& opts) {
    auto parts = split_tiered_uri(uri, rest);
    std::vector<std::unique_ptr<Store>> tiers;
    for (size_t i = 0; i < parts.size(); ++i) {
        bool origin = i + 1 == parts.size();
        // Caches are created on first use.  An origin that cannot be opened fails a
        // writer at once; a reader may still be served by the caches.
        if (origin && opts.create) {
            tiers.push_back(make_store(parts[i], opts));
            continue;
        }
        try {
            tiers.push_back(make_store(parts[i], origin ? opts : StoreOptions{.create = true}));
        } catch (const UsageError&) {
            throw;
        } catch (const Error& e) {
            log_warn("tier %zu (%s) cannot be opened: %s; skipping it", i, parts[i].c_str(), e.what());
            tiers.push_back(std::make_unique<BrokenStore>(parts[i], e.what()));
        }
    }
    return std::make_unique<TieredStore>(std::move(tiers), uri);
}

}  // namespace kindling

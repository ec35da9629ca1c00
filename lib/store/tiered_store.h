// `tiered:URI1|URI2|...` — read-through cache tiers over an origin (DESIGN.md "Stores
// and tiers"; issue 5).  Tier 0 is the top (fastest, e.g. a local dir: cache), the
// last tier is the origin (e.g. s3://).
//
// get(): tries the tiers top-down.  Every object is checked against its id (SHA-256
// of the bytes) at every tier: a tier that returns bad bytes has the object removed
// (best effort), the event is counted and logged, and the next tier is tried.  A
// tier that throws (down, timed out, unreadable) is counted as an error and skipped.
// On a hit at tier k the object is written to tiers 0..k-1 ("fill"), best effort: a
// tier whose writes fail for a lasting reason (read-only, full, permission, not a
// directory) is bypassed for fills from then on, with one warning.
// When no tier holds good bytes: nullopt if every tier answered "miss"; DataError (65)
// if some tier held the object but every copy was corrupt; Error 75 (temporary) if
// some tier failed and none served it.
//
// put(): write-through.  The origin (last tier) must succeed — its exceptions
// propagate — then the upper tiers are written best effort.  has() asks top-down;
// list() is the origin's; remove() removes from every tier; flush() flushes every
// tier (the origin's errors propagate).
//
// Per-tier counters (stats()): hits, misses, errors, corrupt, fills, fill errors,
// bytes served, and a latency histogram of get() (8 buckets per doubling from 1 us,
// so p50/p99 are accurate to ~9%).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/metrics.h"
#include "store/store.h"

namespace kindling {

struct TierStats {
    std::string uri;
    uint64_t hits = 0, misses = 0, errors = 0, corrupt = 0;
    uint64_t fills = 0, fill_errors = 0;
    uint64_t bytes = 0;          // bytes of good objects served by this tier
    uint64_t gets = 0;           // get() calls timed
    double get_seconds = 0;      // sum of get() time
    double p50_s = 0, p99_s = 0;
    bool bypassed = false;       // fills disabled after a lasting write failure
};

class TieredStore : public Store {
public:
    // Tiers top (0) to origin (last); at least one.
    explicit TieredStore(std::vector<std::unique_ptr<Store>> tiers, std::string uri = {});
    ~TieredStore() override;

    const std::string& uri() const override { return uri_; }
    bool has(const Digest& id) override;
    std::optional<std::vector<uint8_t>> get(const Digest& id) override;
    bool put(const Digest& id, std::span<const uint8_t> data) override;
    std::vector<Digest> list() override;
    bool remove(const Digest& id) override;
    void flush() override;

    size_t tier_count() const { return tiers_.size(); }
    Store& tier(size_t i);
    std::vector<TierStats> stats() const;

private:
    struct Tier;
    void fill(size_t i, const Digest& id, std::span<const uint8_t> data);

    std::vector<std::unique_ptr<Tier>> tiers_;
    std::string uri_;
};

// Splits the part after "tiered:" into tier URIs: at '|' when there is one, else at
// each ',' followed by a store scheme (dir:, memcached:, s3:), so the commas of a
// memcached server list stay inside their URI.  Throws UsageError when empty.
std::vector<std::string> split_tiered_uri(const std::string& uri, const std::string& rest);

// Opens each tier with make_store(); upper tiers with create = true.  A tier that
// cannot be opened becomes a tier that fails every call (counted as errors, one
// warning), so the others still serve reads — except the origin when opts.create
// (a writer), whose error is thrown.
std::unique_ptr<Store> make_tiered_store(const std::string& uri, const std::string& rest,
                                         const StoreOptions& opts);

}  // namespace kindling

// `dir:/path` — a content-addressed store in a local directory.
//
//   ROOT/kindling-store   marker file ("kindling dir store v1")
//   ROOT/ab/cdef…         object ab cdef… (64 hex digits split 2 + 62), mode 0444
//   ROOT/tmp/             objects being written: <id>.<pid>.<random>
//   ROOT/.usage           running total of object bytes (u64), for the size cap
//   ROOT/.evict.lock      held by the one process evicting at a time
//
// Writes: a temp file created with O_EXCL in ROOT/tmp (same filesystem), written,
// fsynced, then renamed into place with RENAME_NOREPLACE.  Several processes may
// write at once without a shared lock: each writes its own temp file, rename is
// atomic, and an object with a given name only ever has one content, so a reader
// sees a whole object or none.  A writer holds flock() on its temp file; a temp file
// older than a minute whose lock can be taken belongs to a dead writer (kill -9) and
// is removed when a store is opened.  Shard-directory syncs are batched in flush().
//
// Size cap (`?max=SIZE`): every get() and every put() of an existing object set the
// object's atime to now (futimens), so atime is the last use whatever the mount's
// atime policy.  When .usage (updated under flock) goes over the cap, one process
// (the one that takes .evict.lock) scans the store, recounts the total and removes
// least recently used objects until the store is at 90% of the cap.  The counter
// is approximate between scans (a crash between rename and update); each scan
// resets it.  A capped store is a cache: an object may go away at any time, and
// readers treat a vanished object as a miss.
#pragma once

#include <mutex>
#include <set>
#include <string>

#include "base/fd.h"
#include "store/store.h"

namespace kindling {

class DirStore : public Store {
public:
    // `max_bytes` 0: no cap.
    DirStore(std::string root, uint64_t max_bytes, const StoreOptions& opts);

    const std::string& uri() const override { return uri_; }
    bool has(const Digest& id) override;
    std::optional<std::vector<uint8_t>> get(const Digest& id) override;
    bool put(const Digest& id, std::span<const uint8_t> data) override;
    std::vector<Digest> list() override;
    bool remove(const Digest& id) override;
    void flush() override;

    const std::string& root() const { return root_; }
    std::string object_path(const Digest& id) const;
    // Scans the store, recounts its size and evicts down to 90% of the cap if it is
    // over.  Returns the number of bytes the store holds afterwards.
    uint64_t evict();
    // The running byte total (approximate; see above).
    uint64_t usage();

private:
    void add_usage(int64_t delta);
    void remove_stale_temps();

    std::string root_;
    std::string uri_;
    uint64_t max_bytes_;
    UniqueFd usage_fd_;
    std::mutex mu_;
    std::set<int> dirty_shards_;
};

}  // namespace kindling

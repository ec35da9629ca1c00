// The chunks behind a snapfs mount (DESIGN.md "snapfs"): a bounded LRU of decrypted
// 512 KiB chunks, one fetch per chunk however many readers want it, a pool of fetch
// threads, background prefetch, and a deadline on every wait so a store that is down
// or slow turns into an error instead of a hang.  Deadlines are kept on an injectable
// Clock (tests move a ManualClock instead of sleeping).
//
// Chunks are named by their id (SHA-256 of the stored object), so two layers or two
// files that hold the same chunk share one cache entry and one fetch.  Zero chunks
// never reach the cache: callers fill them with zeros.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "chunk/manifest.h"
#include "hash/digest.h"
#include "store/store.h"

namespace kindling {

struct ChunkCacheOptions {
    uint64_t capacity_bytes = 256ull << 20;  // at least a few chunks are always kept
    unsigned fetch_threads = 8;
    std::chrono::milliseconds timeout{10000};
};

struct ChunkCacheStats {
    uint64_t hits = 0;             // reads served from a decrypted chunk in memory
    uint64_t waits = 0;            // reads that joined a fetch already in flight
    uint64_t fetches = 0;          // store reads that returned a good chunk
    uint64_t fetched_bytes = 0;    // stored (encrypted) bytes of those
    uint64_t plain_bytes = 0;      // plain bytes of those
    uint64_t prefetches = 0;       // of `fetches`, started by prefetch
    uint64_t failures = 0;         // store reads that failed (miss, error, bad bytes)
    uint64_t timeouts = 0;         // reads that gave up waiting
    uint64_t evictions = 0;
};

// The plain text of one chunk, shared by every reader that holds it.
using ChunkData = std::shared_ptr<const std::vector<uint8_t>>;

// What a read got: the data, or an errno-style failure with a message.
struct ChunkResult {
    ChunkData data;
    int err = 0;  // 0, EIO (store failure, bad chunk), ETIMEDOUT, ESHUTDOWN
    std::string what;
};

class ChunkCache {
public:
    // `manifests` and `clock` must outlive the cache; chunks are addressed as (layer,
    // index).  `clock` times the read timeout and the shutdown grace.
    ChunkCache(Store& store, std::vector<const Manifest*> manifests, ChunkCacheOptions opts,
               const Clock& clock = Clock::steady());
    ~ChunkCache();
    ChunkCache(const ChunkCache&) = delete;
    ChunkCache& operator=(const ChunkCache&) = delete;

    // The plain bytes of non-zero chunk `chunk` of layer `layer`, fetching it if need
    // be; blocks at most the timeout.  Safe from any number of threads.
    ChunkResult get(uint32_t layer, uint32_t chunk);

    // Queues chunks to fetch in the background, in this order, behind readers' fetches;
    // stops once the cache would start evicting what it prefetched.
    void prefetch(const std::vector<std::pair<uint32_t, uint32_t>>& chunks);

    // Wakes every waiting reader with ESHUTDOWN and stops the fetch threads (after
    // their current store read), waiting at most `grace` for them.  Returns how many
    // are still stuck in a store read; they are detached, and then the cache and the
    // store must never be destroyed (the process is about to exit anyway).
    // Idempotent; the destructor calls it with an unbounded grace.
    size_t shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds::max());

    // Async-signal-safe: readers waiting for a chunk give up (ESHUTDOWN) within
    // ~50 ms; shutdown() still has to be called from a normal thread.
    void request_stop() noexcept { abort_.store(true, std::memory_order_relaxed); }

    ChunkCacheStats stats() const;
    uint64_t capacity_chunks() const { return capacity_; }

private:
    struct Entry {
        enum State { kPending, kReady, kFailed } state = kPending;
        ChunkData data;
        std::string error;
        std::list<Digest>::iterator lru;  // valid when ready
        bool in_lru = false;
    };
    struct Job {
        uint32_t layer, chunk;
        bool prefetch;
    };

    void worker();
    void finish(const Job& job, ChunkData data, std::string error, uint64_t stored);
    void evict_locked();

    Store& store_;
    std::vector<const Manifest*> manifests_;
    ChunkCacheOptions opts_;
    const Clock& clock_;
    uint64_t capacity_;

    mutable std::mutex mu_;
    std::condition_variable done_cv_;  // an entry left kPending, or shutdown
    std::condition_variable work_cv_;  // a job was queued, or shutdown
    std::unordered_map<Digest, std::shared_ptr<Entry>, DigestHash> entries_;
    std::list<Digest> lru_;  // most recent at the front; ready entries only
    uint64_t ready_ = 0;
    std::deque<Job> demand_, background_;
    uint64_t prefetched_ = 0;
    bool stop_ = false;
    std::atomic<bool> abort_{false};
    ChunkCacheStats stats_;
    std::vector<std::thread> threads_;
    size_t running_ = 0;  // worker threads that have not returned
    std::condition_variable exit_cv_;
};

}  // namespace kindling

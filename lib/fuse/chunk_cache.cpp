#include "fuse/chunk_cache.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>

#include "base/error.h"
#include "base/log.h"
#include "chunk/chunk_codec.h"
#include "store/layer_io.h"

namespace kindling {

ChunkCache::ChunkCache(Store& store, std::vector<const Manifest*> manifests, ChunkCacheOptions opts,
                       const Clock& clock)
    : store_(store), manifests_(std::move(manifests)), opts_(opts), clock_(clock) {
    capacity_ = std::max<uint64_t>(4, opts_.capacity_bytes / kChunkSize);
    unsigned n = std::max(1u, opts_.fetch_threads);
    // Fetch threads never take the mount's stop signals: those must reach a FUSE
    // thread (or the main thread) so the session loop sees them.
    sigset_t block, old;
    sigemptyset(&block);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&block, s);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    try {
        for (unsigned i = 0; i < n; ++i) {
            {
                std::lock_guard<std::mutex> g(mu_);
                ++running_;
            }
            threads_.emplace_back([this] {
                worker();
                std::lock_guard<std::mutex> g(mu_);
                if (--running_ == 0) exit_cv_.notify_all();
            });
        }
    } catch (...) {
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        shutdown();
        throw;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

ChunkCache::~ChunkCache() { shutdown(); }

size_t ChunkCache::shutdown(std::chrono::milliseconds grace) {
    std::unique_lock<std::mutex> lk(mu_);
    stop_ = true;
    demand_.clear();
    background_.clear();
    work_cv_.notify_all();
    done_cv_.notify_all();
    if (grace == std::chrono::milliseconds::max())
        exit_cv_.wait(lk, [&] { return running_ == 0; });
    else
        wait_until(clock_, exit_cv_, lk, clock_.now() + grace, [&] { return running_ == 0; });
    size_t stuck = running_;
    lk.unlock();
    for (auto& t : threads_) {
        if (!t.joinable()) continue;
        if (stuck) t.detach();
        else t.join();
    }
    return stuck;
}

ChunkCacheStats ChunkCache::stats() const {
    std::lock_guard<std::mutex> g(mu_);
    return stats_;
}

ChunkResult ChunkCache::get(uint32_t layer, uint32_t chunk) {
    const ManifestChunk& c = manifests_.at(layer)->chunks.at(chunk);
    Clock::time_point deadline = clock_.now() + opts_.timeout;
    std::unique_lock<std::mutex> lk(mu_);
    if (stop_ || abort_.load(std::memory_order_relaxed)) return {nullptr, ESHUTDOWN, "unmounting"};
    std::shared_ptr<Entry> e;
    if (auto it = entries_.find(c.id); it != entries_.end()) {
        e = it->second;
        if (e->state == Entry::kReady) {
            ++stats_.hits;
            lru_.splice(lru_.begin(), lru_, e->lru);
            return {e->data, 0, {}};
        }
        ++stats_.waits;
    } else {
        e = std::make_shared<Entry>();
        entries_.emplace(c.id, e);
        demand_.push_back({layer, chunk, false});
        work_cv_.notify_one();
    }
    while (e->state == Entry::kPending && !stop_ && !abort_.load(std::memory_order_relaxed)) {
        Clock::time_point now = clock_.now();
        if (now >= deadline) {
            ++stats_.timeouts;
            return {nullptr, ETIMEDOUT,
                    "chunk " + c.id.hex() + ": no answer from " + store_.uri() + " within " +
                        std::to_string(opts_.timeout.count()) + " ms"};
        }
        // Short slices: request_stop() comes from a signal handler, which cannot notify.
        done_cv_.wait_for(lk, std::min<Clock::duration>(deadline - now, std::chrono::milliseconds(50)));
    }
    if (e->state == Entry::kReady) return {e->data, 0, {}};
    if (e->state == Entry::kFailed) return {nullptr, EIO, e->error};
    return {nullptr, ESHUTDOWN, "unmounting"};
}

void ChunkCache::prefetch(const std::vector<std::pair<uint32_t, uint32_t>>& chunks) {
    {
        std::lock_guard<std::mutex> g(mu_);
        for (auto [layer, chunk] : chunks) {
            if (layer >= manifests_.size() || chunk >= manifests_[layer]->chunks.size()) continue;
            if (manifests_[layer]->chunks[chunk].zero) continue;
            background_.push_back({layer, chunk, true});
        }
    }
    work_cv_.notify_all();
}

void ChunkCache::worker() {
    ChunkOpener opener;
    for (;;) {
        Job job;
        {
            std::unique_lock<std::mutex> lk(mu_);
            for (;;) {
                if (stop_) return;
                if (!demand_.empty()) {
                    job = demand_.front();
                    demand_.pop_front();
                    break;
                }
                if (!background_.empty()) {
                    job = background_.front();
                    background_.pop_front();
                    // Prefetch must not push out what it already brought in.
                    if (prefetched_ >= capacity_) {
                        background_.clear();
                        continue;
                    }
                    const Digest& id = manifests_[job.layer]->chunks[job.chunk].id;
                    if (entries_.count(id)) continue;  // cached or in flight already
                    entries_.emplace(id, std::make_shared<Entry>());
                    ++prefetched_;
                    break;
                }
                work_cv_.wait(lk);
            }
        }
        const Manifest& m = *manifests_[job.layer];
        const ManifestChunk& c = m.chunks[job.chunk];
        auto plain = std::make_shared<std::vector<uint8_t>>(c.plain_len);
        std::string error;
        // -vv: a fetch's start and end, so that a test can see a store read in flight.
        bool debug = log_level() >= LogLevel::kDebug;
        if (debug) log_debug("chunk %s: fetching from %s", c.id.hex().c_str(), store_.uri().c_str());
        try {
            fetch_chunk(store_, m, c, opener, *plain);
        } catch (const std::exception& ex) {
            error = ex.what();
        }
        bool ok = error.empty();
        if (!ok) plain.reset();
        finish(job, std::move(plain), std::move(error), c.stored_len);
        // After finish(): a read from now on sees the outcome (a cached chunk, or none).
        if (debug) log_debug("chunk %s: fetch %s", c.id.hex().c_str(), ok ? "done" : "failed");
    }
}

void ChunkCache::finish(const Job& job, ChunkData data, std::string error, uint64_t stored) {
    const ManifestChunk& c = manifests_[job.layer]->chunks[job.chunk];
    {
        std::lock_guard<std::mutex> g(mu_);
        auto it = entries_.find(c.id);
        if (it != entries_.end()) {
            auto e = it->second;
            if (data) {
                e->state = Entry::kReady;
                e->data = std::move(data);
                lru_.push_front(c.id);
                e->lru = lru_.begin();
                e->in_lru = true;
                ++ready_;
                ++stats_.fetches;
                stats_.fetched_bytes += stored;
                stats_.plain_bytes += c.plain_len;
                if (job.prefetch) ++stats_.prefetches;
                evict_locked();
            } else {
                // Forget it, so the next read tries the store again.
                e->state = Entry::kFailed;
                e->error = std::move(error);
                ++stats_.failures;
                entries_.erase(it);
                if (!job.prefetch) log_verbose("%s", e->error.c_str());
            }
        }
    }
    done_cv_.notify_all();
}

void ChunkCache::evict_locked() {
    while (ready_ > capacity_ && !lru_.empty()) {
        Digest victim = lru_.back();
        lru_.pop_back();
        entries_.erase(victim);  // readers holding the data keep their shared_ptr
        --ready_;
        ++stats_.evictions;
    }
}

}  // namespace kindling

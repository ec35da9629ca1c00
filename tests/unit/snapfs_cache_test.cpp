// ChunkCache (lib/fuse): one fetch per chunk however many readers, a read that
// waits on a hung store gives up at the timeout (on a ManualClock), a failed fetch is
// retried, the LRU stays bounded, request_stop() releases waiting readers, shutdown's
// grace ends on the clock.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "base/clock.h"
#include "base/io.h"
#include "chunk/layer_keys.h"
#include "fuse/chunk_cache.h"
#include "store/layer_io.h"
#include "eventually.h"

using namespace kindling;

namespace {

// An in-memory store that counts reads and can hold them until released.
class GateStore : public Store {
public:
    const std::string& uri() const override { return uri_; }
    bool has(const Digest& id) override { return get_raw(id).has_value(); }
    std::optional<std::vector<uint8_t>> get(const Digest& id) override {
        ++gets;
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return open_; });
        if (missing_) return std::nullopt;
        auto it = objs_.find(id);
        if (it == objs_.end()) return std::nullopt;
        return it->second;
    }
    bool put(const Digest& id, std::span<const uint8_t> d) override {
        std::lock_guard<std::mutex> g(mu_);
        return objs_.emplace(id, std::vector<uint8_t>(d.begin(), d.end())).second;
    }
    std::vector<Digest> list() override { return {}; }
    bool remove(const Digest&) override { return false; }
    void set_open(bool o) {
        {
            std::lock_guard<std::mutex> g(mu_);
            open_ = o;
        }
        cv_.notify_all();
    }
    void set_missing(bool m) {
        std::lock_guard<std::mutex> g(mu_);
        missing_ = m;
    }
    std::atomic<int> gets{0};

private:
    std::optional<std::vector<uint8_t>> get_raw(const Digest& id) {
        std::lock_guard<std::mutex> g(mu_);
        auto it = objs_.find(id);
        if (it == objs_.end()) return std::nullopt;
        return it->second;
    }
    std::string uri_ = "gate:";
    std::mutex mu_;
    std::condition_variable cv_;
    bool open_ = true, missing_ = false;
    std::map<Digest, std::vector<uint8_t>> objs_;
};

struct Layer {
    GateStore store;
    Manifest m;
    std::vector<uint8_t> data;
    Layer() {
        char tmpl[] = "/tmp/snapfs-cache-test.XXXXXX";
        REQUIRE(::mkdtemp(tmpl));
        std::string dir = tmpl;
        data.resize(8 * kChunkSize);
        std::mt19937 rng(42);
        for (auto& b : data) b = static_cast<uint8_t>(rng());
        write_file_atomic(dir + "/mem", std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
        std::vector<uint8_t> secret(32, 7);
        LayerKeys keys(LayerKind::kBase, secret);
        PutOptions o;
        o.threads = 2;
        PutResult r = put_layer(dir, store, keys, o);
        m = decode_manifest(*store.get(r.manifest_id), keys);
        std::system(("rm -rf " + dir).c_str());
    }
    uint32_t chunk(uint32_t k) const {
        for (const auto& e : m.entries)
            if (e.path == "mem") return e.first_chunk + k;
        return 0;
    }
};

}  // namespace

TEST_CASE("snapfs cache: concurrent readers of one chunk share one fetch, bytes right") {
    Layer l;
    l.store.set_open(false);
    ChunkCache cache(l.store, {&l.m}, {});
    int before = l.store.gets;
    std::vector<std::thread> ts;
    std::atomic<int> good{0};
    for (int i = 0; i < 6; ++i)
        ts.emplace_back([&] {
            ChunkResult r = cache.get(0, l.chunk(3));
            if (r.data && std::equal(r.data->begin(), r.data->end(), l.data.begin() + 3 * kChunkSize)) ++good;
        });
    // One reader started the fetch (held at the gate), the other five joined it.
    CHECK(eventually([&] { return cache.stats().waits == 5 && l.store.gets - before == 1; }));
    l.store.set_open(true);
    for (auto& t : ts) t.join();
    CHECK(good == 6);
    CHECK(l.store.gets - before == 1);
    CHECK(cache.stats().fetches == 1);
}

TEST_CASE("snapfs cache: a hung store read fails the reader at the timeout on the cache's clock") {
    Layer l;
    ManualClock clock;
    ChunkCacheOptions o;
    o.timeout = std::chrono::milliseconds(300);
    ChunkCache cache(l.store, {&l.m}, o, clock);
    l.store.set_open(false);
    int before = l.store.gets;
    auto reader = std::async(std::launch::async, [&] { return cache.get(0, l.chunk(1)); });
    CHECK(eventually([&] { return l.store.gets == before + 1; }));  // the fetch hangs in the store
    clock.advance(std::chrono::milliseconds(299));
    CHECK(reader.wait_for(std::chrono::milliseconds(0)) == std::future_status::timeout);
    clock.advance(std::chrono::milliseconds(1));
    REQUIRE(reader.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    ChunkResult r = reader.get();
    CHECK(r.err == ETIMEDOUT);
    CHECK(r.what.find("within 300 ms") != std::string::npos);
    CHECK(cache.stats().timeouts == 1);
    l.store.set_open(true);
}

TEST_CASE("snapfs cache: a miss fails the read with EIO and is tried again on the next read") {
    Layer l;
    ChunkCache cache(l.store, {&l.m}, {});
    l.store.set_missing(true);
    ChunkResult r = cache.get(0, l.chunk(2));
    CHECK(r.err == EIO);
    CHECK(r.what.find("not in gate:") != std::string::npos);
    l.store.set_missing(false);
    r = cache.get(0, l.chunk(2));
    REQUIRE(r.data);
    CHECK(std::equal(r.data->begin(), r.data->end(), l.data.begin() + 2 * kChunkSize));
    CHECK(cache.stats().failures == 1);
}

TEST_CASE("snapfs cache: bounded LRU, request_stop releases waiters") {
    Layer l;
    ChunkCacheOptions o;
    o.capacity_bytes = 1;  // the minimum: 4 chunks
    ManualClock clock;     // standing still: the waiting reader cannot time out
    ChunkCache cache(l.store, {&l.m}, o, clock);
    for (uint32_t k = 0; k < 8; ++k) REQUIRE(cache.get(0, l.chunk(k)).data);
    CHECK(cache.stats().evictions == 4);
    CHECK(cache.get(0, l.chunk(7)).data);
    CHECK(cache.stats().hits == 1);
    l.store.set_open(false);
    int before = l.store.gets;
    auto reader = std::async(std::launch::async, [&] { return cache.get(0, l.chunk(0)); });
    CHECK(eventually([&] { return l.store.gets == before + 1; }));  // chunk 0 was evicted: fetched
    cache.request_stop();
    REQUIRE(reader.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(reader.get().err == ESHUTDOWN);
    l.store.set_open(true);
}

TEST_CASE("snapfs cache: shutdown gives up on a hung store read after the grace, on the cache's clock") {
    Layer l;
    ManualClock clock;
    ChunkCacheOptions o;
    o.fetch_threads = 1;
    ChunkCache cache(l.store, {&l.m}, o, clock);
    l.store.set_open(false);
    int before = l.store.gets;
    auto reader = std::async(std::launch::async, [&] { return cache.get(0, l.chunk(1)); });
    CHECK(eventually([&] { return l.store.gets == before + 1; }));
    auto stopper = std::async(std::launch::async, [&] { return cache.shutdown(std::chrono::milliseconds(1000)); });
    REQUIRE(reader.wait_for(std::chrono::seconds(10)) == std::future_status::ready);  // woken at once
    CHECK(reader.get().err == ESHUTDOWN);
    clock.advance(std::chrono::milliseconds(999));
    CHECK(stopper.wait_for(std::chrono::milliseconds(0)) == std::future_status::timeout);
    clock.advance(std::chrono::milliseconds(1));
    REQUIRE(stopper.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(stopper.get() == 1);  // the fetch thread is still in the store: detached
    // Once it leaves the store the destructor finds it gone (its shutdown waits for
    // every fetch thread to return).
    l.store.set_open(true);
}

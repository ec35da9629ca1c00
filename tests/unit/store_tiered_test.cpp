// lib/store tiered: read-through with fill, verification at every tier, skipping
// failing tiers, write-through, bypass of a read-only cache, counters; URI splitting.
// The tiers are in-memory fakes here; tests/cli/snap_fetch_*.sh use real stores.
#include <doctest/doctest.h>

#include <cerrno>
#include <map>
#include <mutex>

#include "base/error.h"
#include "store/tiered_store.h"

using namespace kindling;

namespace {

class FakeStore : public Store {
public:
    explicit FakeStore(std::string name) : uri_("fake:" + name) {}
    const std::string& uri() const override { return uri_; }
    bool has(const Digest& id) override {
        std::lock_guard<std::mutex> g(mu);
        if (down) throw UnavailableError(uri_ + ": down");
        return objects.count(id) > 0;
    }
    std::optional<std::vector<uint8_t>> get(const Digest& id) override {
        std::lock_guard<std::mutex> g(mu);
        ++gets;
        if (down) throw UnavailableError(uri_ + ": down");
        auto it = objects.find(id);
        if (it == objects.end()) return std::nullopt;
        return it->second;
    }
    bool put(const Digest& id, std::span<const uint8_t> data) override {
        std::lock_guard<std::mutex> g(mu);
        ++puts;
        if (read_only) throw SysError(uri_ + ": create", EROFS);
        if (down) throw UnavailableError(uri_ + ": down");
        return objects.emplace(id, std::vector<uint8_t>(data.begin(), data.end())).second;
    }
    std::vector<Digest> list() override {
        std::vector<Digest> out;
        for (auto& [k, v] : objects) out.push_back(k);
        return out;
    }
    bool remove(const Digest& id) override {
        std::lock_guard<std::mutex> g(mu);
        return objects.erase(id) > 0;
    }

    std::mutex mu;
    std::string uri_;
    std::map<Digest, std::vector<uint8_t>> objects;
    bool down = false, read_only = false;
    int gets = 0, puts = 0;
};

std::vector<uint8_t> blob(uint8_t seed, size_t n = 4096) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 13);
    return v;
}

struct Three {
    FakeStore *top, *mid, *origin;
    std::unique_ptr<TieredStore> t;
    Three() {
        auto a = std::make_unique<FakeStore>("top");
        auto b = std::make_unique<FakeStore>("mid");
        auto c = std::make_unique<FakeStore>("origin");
        top = a.get(), mid = b.get(), origin = c.get();
        std::vector<std::unique_ptr<Store>> v;
        v.push_back(std::move(a));
        v.push_back(std::move(b));
        v.push_back(std::move(c));
        t = std::make_unique<TieredStore>(std::move(v));
    }
};

}  // namespace

TEST_CASE("tiered: a miss at the top is served from the origin and fills every tier above") {
    Three s;
    auto b = blob(1);
    Digest id = sha256(b);
    s.origin->objects[id] = b;
    CHECK(s.t->get(id) == b);
    CHECK(s.top->objects.at(id) == b);
    CHECK(s.mid->objects.at(id) == b);
    auto st = s.t->stats();
    CHECK(st[0].misses == 1);
    CHECK(st[1].misses == 1);
    CHECK(st[2].hits == 1);
    CHECK(st[2].bytes == b.size());
    CHECK(st[0].fills == 1);
    CHECK(st[1].fills == 1);
    // Now the top serves it and nothing below is asked.
    int origin_gets = s.origin->gets;
    CHECK(s.t->get(id) == b);
    CHECK(s.origin->gets == origin_gets);
    CHECK(s.t->stats()[0].hits == 1);
    CHECK(s.t->uri() == "tiered:fake:top|fake:mid|fake:origin");
}

TEST_CASE("tiered: a hit in the middle fills only the tiers above it") {
    Three s;
    auto b = blob(2);
    Digest id = sha256(b);
    s.mid->objects[id] = b;
    CHECK(s.t->get(id) == b);
    CHECK(s.top->objects.count(id) == 1);
    CHECK(s.origin->objects.count(id) == 0);
    CHECK(s.origin->gets == 0);
}

TEST_CASE("tiered: a corrupt object is dropped from its tier, counted, and served from the next") {
    Three s;
    auto b = blob(3);
    Digest id = sha256(b);
    auto bad = b;
    bad[100] ^= 1;
    s.top->objects[id] = bad;
    s.mid->objects[id] = bad;
    s.origin->objects[id] = b;
    CHECK(s.t->get(id) == b);
    auto st = s.t->stats();
    CHECK(st[0].corrupt == 1);
    CHECK(st[1].corrupt == 1);
    CHECK(st[2].hits == 1);
    // Dropped, then refilled with the good bytes.
    CHECK(s.top->objects.at(id) == b);
    CHECK(s.mid->objects.at(id) == b);
}

TEST_CASE("tiered: corrupt in every tier is a DataError naming the chunk and the tiers") {
    Three s;
    auto b = blob(4);
    Digest id = sha256(b);
    auto bad = b;
    bad[0] ^= 0xff;
    s.origin->objects[id] = bad;
    try {
        s.t->get(id);
        FAIL("no error");
    } catch (const DataError& e) {
        std::string w = e.what();
        CHECK(w.find(id.hex()) != std::string::npos);
        CHECK(w.find("fake:origin") != std::string::npos);
        CHECK(e.exit_code() == kExitDataErr);
    }
    CHECK(s.origin->objects.count(id) == 0);
}

TEST_CASE("tiered: a throwing tier is skipped and counted; all down is a temporary failure") {
    Three s;
    auto b = blob(5);
    Digest id = sha256(b);
    s.origin->objects[id] = b;
    // Plain misses everywhere: nullopt.
    Digest other = sha256(blob(6));
    CHECK_FALSE(s.t->get(other).has_value());
    s.mid->down = true;
    CHECK(s.t->get(id) == b);
    CHECK(s.t->stats()[1].errors == 1);
    CHECK(s.t->stats()[1].fill_errors == 1);  // the fill into the down tier failed
    CHECK(s.top->objects.count(id) == 1);

    // A tier failed and none had it: temporary error (75) naming the chunk and the tier.
    s.origin->down = true;
    try {
        s.t->get(other);
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.exit_code() == kExitTempFail);
        CHECK(std::string(e.what()).find(other.hex()) != std::string::npos);
        CHECK(std::string(e.what()).find("fake:mid") != std::string::npos);
    }
    // Cached objects are still served with the middle and the origin down.
    CHECK(s.t->get(id) == b);
}

TEST_CASE("tiered: a read-only cache is bypassed after one failed fill; reads still succeed") {
    Three s;
    s.top->read_only = true;
    for (uint8_t i = 0; i < 5; ++i) {
        auto b = blob(static_cast<uint8_t>(10 + i));
        s.origin->objects[sha256(b)] = b;
        CHECK(s.t->get(sha256(b)) == b);
    }
    auto st = s.t->stats();
    CHECK(st[0].bypassed);
    CHECK(st[0].fill_errors == 1);
    CHECK(s.top->puts == 1);
    CHECK(st[1].fills == 5);
}

TEST_CASE("tiered: put writes through to every tier; the origin's failure is the caller's") {
    Three s;
    auto b = blob(7);
    Digest id = sha256(b);
    CHECK(s.t->put(id, b));
    CHECK(s.top->objects.count(id) == 1);
    CHECK(s.mid->objects.count(id) == 1);
    CHECK(s.origin->objects.count(id) == 1);
    CHECK(s.t->has(id));
    CHECK(s.t->list().size() == 1);
    CHECK(s.t->remove(id));
    CHECK(s.origin->objects.empty());
    CHECK(s.top->objects.empty());
    s.origin->read_only = true;
    CHECK_THROWS_AS(s.t->put(id, b), SysError);
    s.origin->read_only = false;
    s.mid->down = true;
    CHECK(s.t->put(id, b));  // an upper tier failing does not fail the put
}

TEST_CASE("tiered: URI splitting keeps memcached server lists whole") {
    auto p = split_tiered_uri("u", "dir:/c|memcached://a:1,b:2|dir:/o");
    REQUIRE(p.size() == 3);
    CHECK(p[1] == "memcached://a:1,b:2");
    p = split_tiered_uri("u", "dir:/c,memcached://a:1,b:2,dir:/o?max=1G");
    REQUIRE(p.size() == 3);
    CHECK(p[0] == "dir:/c");
    CHECK(p[1] == "memcached://a:1,b:2");
    CHECK(p[2] == "dir:/o?max=1G");
    p = split_tiered_uri("u", "memcached://h:1,s3://b/p?endpoint=http://x:9,y");
    REQUIRE(p.size() == 2);
    CHECK_THROWS_AS(split_tiered_uri("u", "dir:/a||dir:/b"), UsageError);
    CHECK_THROWS_AS(split_tiered_uri("u", ""), UsageError);
    CHECK_THROWS_AS(make_store("tiered:dir:/a|tiered:dir:/b"), UsageError);
}

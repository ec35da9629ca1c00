// routerd's lease cache: held leases per function+version, the per-function count of
// leases out against the concurrency limit, waiters handed a lease or a slot, and the
// hold timed on a ManualClock (no sleeping).
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "base/clock.h"
#include "eventually.h"
#include "route/lease_cache.h"

using namespace kindling;
using namespace kindling::route;
using namespace std::chrono_literals;

namespace {

Lease lease_of(const std::string& function, const std::string& version, const std::string& id) {
    Lease l;
    l.function = function;
    l.key = lease_key(function, version);
    l.sandbox = "sb-" + id;
    l.vsock = "/run/sb-" + id + ".sock";
    l.id = id;
    return l;
}

// A deadline already passed: take() gives up at once instead of waiting.
std::chrono::steady_clock::time_point past() { return std::chrono::steady_clock::now() - 1s; }

}  // namespace

TEST_CASE("lease cache: acquire slots up to the limit, then throttled") {
    ManualClock clock;
    LeaseCache cache(100ms, clock);
    const std::string key = lease_key("f", "1");
    Lease out;
    CHECK(cache.take(key, "f", 2, past(), out) == LeaseCache::Take::kAcquire);
    CHECK(cache.take(key, "f", 2, past(), out) == LeaseCache::Take::kAcquire);
    CHECK(cache.out("f") == 2);
    CHECK(cache.take(key, "f", 2, past(), out) == LeaseCache::Take::kThrottled);
    CHECK(cache.out("f") == 2);
    // Another function has its own limit.
    CHECK(cache.take(lease_key("g", "1"), "g", 2, past(), out) == LeaseCache::Take::kAcquire);
    CHECK(cache.out() == 3);
    cache.ended("f");
    CHECK(cache.out("f") == 1);
    CHECK(cache.take(key, "f", 2, past(), out) == LeaseCache::Take::kAcquire);
}

TEST_CASE("lease cache: a held lease serves the next invoke of its function+version only") {
    ManualClock clock;
    LeaseCache cache(100ms, clock);
    Lease out;
    REQUIRE(cache.take(lease_key("f", "1"), "f", 1, past(), out) == LeaseCache::Take::kAcquire);
    REQUIRE(cache.put(lease_of("f", "1", "L1")));
    CHECK(cache.held() == 1);
    CHECK(cache.out("f") == 1);  // held still counts as out
    CHECK_FALSE(cache.take_held(lease_key("f", "2")));
    // Version 2 of f: its limit is f's, and the held lease of version 1 fills it.
    CHECK(cache.take(lease_key("f", "2"), "f", 1, past(), out) == LeaseCache::Take::kThrottled);
    CHECK(cache.take(lease_key("f", "1"), "f", 1, past(), out) == LeaseCache::Take::kHeld);
    CHECK(out.id == "L1");
    CHECK(out.sandbox == "sb-L1");
    CHECK(cache.held() == 0);
    CHECK(cache.out("f") == 1);
}

TEST_CASE("lease cache: the most recently held lease is taken first") {
    ManualClock clock;
    LeaseCache cache(100ms, clock);
    cache.put(lease_of("f", "1", "L1"));
    clock.advance(10ms);
    cache.put(lease_of("f", "1", "L2"));
    auto l = cache.take_held(lease_key("f", "1"));
    REQUIRE(l);
    CHECK(l->id == "L2");
}

TEST_CASE("lease cache: a lease unused for the hold time expires, on the cache's clock") {
    ManualClock clock;
    LeaseCache cache(100ms, clock);
    Lease out;
    REQUIRE(cache.take(lease_key("f", "1"), "f", 4, past(), out) == LeaseCache::Take::kAcquire);
    REQUIRE(cache.take(lease_key("f", "1"), "f", 4, past(), out) == LeaseCache::Take::kAcquire);
    cache.put(lease_of("f", "1", "old"));
    clock.advance(60ms);
    cache.put(lease_of("f", "1", "young"));
    CHECK(cache.expired().empty());
    clock.advance(39ms);  // old: 99 ms
    CHECK(cache.expired().empty());
    clock.advance(1ms);  // old: 100 ms, young: 40 ms
    auto gone = cache.expired();
    REQUIRE(gone.size() == 1);
    CHECK(gone[0].id == "old");
    CHECK(gone[0].since == clock.now() - 100ms);
    CHECK(cache.held() == 1);
    CHECK(cache.out("f") == 1);  // an expired lease is no longer counted
    clock.advance(60ms);
    gone = cache.expired();
    REQUIRE(gone.size() == 1);
    CHECK(gone[0].id == "young");
    CHECK(cache.out("f") == 0);
}

TEST_CASE("lease cache: the hold starts again each time a lease is put back") {
    ManualClock clock;
    LeaseCache cache(100ms, clock);
    cache.put(lease_of("f", "1", "L1"));
    clock.advance(90ms);
    auto l = cache.take_held(lease_key("f", "1"));
    REQUIRE(l);
    cache.put(*l);
    clock.advance(90ms);
    CHECK(cache.expired().empty());
    clock.advance(10ms);
    CHECK(cache.expired().size() == 1);
}

TEST_CASE("lease cache: holding off, put refuses and nothing is held") {
    ManualClock clock;
    LeaseCache cache(0ms, clock);
    CHECK_FALSE(cache.put(lease_of("f", "1", "L1")));
    CHECK(cache.held() == 0);
}

TEST_CASE("lease cache: take_all empties the cache and the counts") {
    ManualClock clock;
    LeaseCache cache(100ms, clock);
    Lease out;
    cache.take(lease_key("f", "1"), "f", 4, past(), out);
    cache.take(lease_key("g", "1"), "g", 4, past(), out);
    cache.put(lease_of("f", "1", "L1"));
    cache.put(lease_of("g", "1", "L2"));
    CHECK(cache.take_all().size() == 2);
    CHECK(cache.held() == 0);
    CHECK(cache.out() == 0);
}

TEST_CASE("lease cache: a waiter at the limit is handed a lease put back for its key") {
    ManualClock clock;
    LeaseCache cache(100ms, clock);
    const std::string key = lease_key("f", "1");
    Lease out;
    REQUIRE(cache.take(key, "f", 1, past(), out) == LeaseCache::Take::kAcquire);
    LeaseCache::Take got = LeaseCache::Take::kThrottled;
    Lease handed;
    std::thread waiter([&] { got = cache.take(key, "f", 1, std::chrono::steady_clock::now() + 60s, handed); });
    CHECK(eventually([&] { return cache.oldest_wait("f").has_value(); }));
    CHECK(*cache.oldest_wait("f") == clock.now());
    cache.put(lease_of("f", "1", "L1"));
    waiter.join();
    CHECK(got == LeaseCache::Take::kHeld);
    CHECK(handed.id == "L1");
    CHECK(cache.held() == 0);  // handed over, never held
    CHECK_FALSE(cache.oldest_wait("f"));
}

TEST_CASE("lease cache: a waiter at the limit is handed the slot of an ended lease") {
    ManualClock clock;
    LeaseCache cache(100ms, clock);
    Lease out;
    REQUIRE(cache.take(lease_key("f", "1"), "f", 1, past(), out) == LeaseCache::Take::kAcquire);
    // A waiter for another version: a lease of version 1 put back is not for it.
    LeaseCache::Take got = LeaseCache::Take::kThrottled;
    std::thread waiter([&] {
        Lease l;
        got = cache.take(lease_key("f", "2"), "f", 1, std::chrono::steady_clock::now() + 60s, l);
    });
    CHECK(eventually([&] { return cache.oldest_wait("f").has_value(); }));
    cache.put(lease_of("f", "1", "L1"));
    CHECK(cache.held() == 1);
    // The held lease expires: its slot goes to the waiter, which acquires.
    clock.advance(100ms);
    CHECK(cache.expired().size() == 1);
    waiter.join();
    CHECK(got == LeaseCache::Take::kAcquire);
    CHECK(cache.out("f") == 1);
}

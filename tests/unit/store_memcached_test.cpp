// lib/store memcached://, against real memcached servers started by the test
// (scripts/memcached.sh): round trip, misses, consistent hashing spreads keys, and a
// killed node turns reads into misses, never exceptions.  Skipped (with a message)
// when memcached cannot be started.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "base/error.h"
#include "store/memcached_store.h"
#include "store/store.h"

using namespace kindling;
namespace fs = std::filesystem;

namespace {

// N memcached servers for one test; killed and removed at the end.
struct Servers {
    std::string dir;
    std::vector<std::string> addrs;
    std::vector<pid_t> pids;
    explicit Servers(int n) {
        char t[] = "/tmp/kindling-mc-test.XXXXXX";
        dir = ::mkdtemp(t);
        if (!fs::exists("scripts/memcached.sh")) return;
        std::string cmd = "scripts/memcached.sh " + dir + " " + std::to_string(n) + " >/dev/null 2>&1";
        if (std::system(cmd.c_str()) != 0) return;
        for (int k = 1; k <= n; ++k) {
            std::ifstream a(dir + "/memcached." + std::to_string(k) + ".addr");
            std::ifstream p(dir + "/memcached." + std::to_string(k) + ".pid");
            std::string addr;
            pid_t pid = 0;
            a >> addr;
            p >> pid;
            if (addr.empty() || pid <= 0) return;
            addrs.push_back(addr);
            pids.push_back(pid);
        }
    }
    bool ok(int n) const { return static_cast<int>(addrs.size()) == n; }
    std::string uri() const {
        std::string u = "memcached://";
        for (size_t i = 0; i < addrs.size(); ++i) u += (i ? "," : "") + addrs[i];
        return u;
    }
    void kill_one(size_t k) {
        ::kill(pids[k], SIGKILL);
        for (int i = 0; i < 200 && ::kill(pids[k], 0) == 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        pids[k] = 0;
    }
    ~Servers() {
        for (pid_t p : pids)
            if (p > 0) ::kill(p, SIGTERM);
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

std::vector<uint8_t> blob(uint32_t seed, size_t n) {
    std::vector<uint8_t> v(n);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; ++i) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        v[i] = static_cast<uint8_t>(x);
    }
    return v;
}

}  // namespace

TEST_CASE("memcached store: put, get, has, remove; a miss is nullopt; 512 KiB objects") {
    Servers mc(2);
    if (!mc.ok(2)) {
        MESSAGE("skipped: memcached could not be started (scripts/memcached.sh)");
        return;
    }
    auto s = make_store(mc.uri());
    CHECK(s->uri() == mc.uri());
    auto a = blob(1, 512 * 1024 + 16);
    Digest id = sha256(a);
    CHECK_FALSE(s->get(id).has_value());
    CHECK_FALSE(s->has(id));
    CHECK(s->put(id, a));
    CHECK_FALSE(s->put(id, a));  // already there
    CHECK(s->has(id));
    CHECK(s->get(id) == a);
    CHECK(s->remove(id));
    CHECK_FALSE(s->remove(id));
    CHECK_FALSE(s->get(id).has_value());
    CHECK_THROWS_AS(s->list(), UsageError);
    auto c = dynamic_cast<MemcachedStore&>(*s).counters();
    CHECK(c.hits == 1);
    CHECK(c.get_errors == 0);
}

TEST_CASE("memcached store: consistent hashing spreads keys; a killed node gives misses, not errors") {
    Servers mc(3);
    if (!mc.ok(3)) {
        MESSAGE("skipped: memcached could not be started (scripts/memcached.sh)");
        return;
    }
    auto s = make_store(mc.uri() + "?timeout_ms=100");
    std::vector<Digest> ids;
    for (uint32_t i = 0; i < 90; ++i) {
        auto b = blob(i + 100, 1000);
        ids.push_back(sha256(b));
        REQUIRE(s->put(ids.back(), b));
    }
    // Every server got a share: ask each one alone.
    std::vector<int> per(3);
    for (size_t k = 0; k < 3; ++k) {
        auto one = make_store("memcached://" + mc.addrs[k]);
        for (const auto& id : ids) per[k] += one->has(id) ? 1 : 0;
    }
    CHECK(per[0] + per[1] + per[2] == 90);
    for (int n : per) CHECK(n >= 10);

    mc.kill_one(1);
    int hits = 0;
    // Reading through the dead node's keys: misses (counted), never an exception, and
    // quickly (timeouts, then ejection).
    auto t0 = std::chrono::steady_clock::now();
    for (int round = 0; round < 2; ++round)
        for (const auto& id : ids) {
            std::optional<std::vector<uint8_t>> r;
            CHECK_NOTHROW(r = s->get(id));
            if (r) {
                ++hits;
                CHECK(sha256(*r) == id);
            }
        }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(hits == 2 * (per[0] + per[2]));
    CHECK(secs < 5.0);
    auto c = dynamic_cast<MemcachedStore&>(*s).counters();
    CHECK(c.get_errors >= 1);
    // A write of a key that hashed to the dead node either lands on a live node (after
    // ejection) and reads back, or fails fast with UnavailableError; libmemcached 1.1.4
    // does not reliably re-route it within the retry timeout, so both are accepted
    // (a tiered store counts the failure as a fill error).
    auto b = blob(9999, 2000);
    auto w0 = std::chrono::steady_clock::now();
    bool stored = false;
    try {
        s->put(sha256(b), b);
        stored = true;
    } catch (const UnavailableError&) {
    }
    CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count() < 1.0);
    if (stored) CHECK(s->get(sha256(b)) == b);
}

TEST_CASE("memcached store: URI parsing") {
    CHECK_THROWS_AS(make_store("memcached:h:1"), UsageError);
    CHECK_THROWS_AS(make_store("memcached://"), UsageError);
    CHECK_THROWS_AS(make_store("memcached://h:99999"), UsageError);
    CHECK_THROWS_AS(make_store("memcached://h:1,,h:2"), UsageError);
    CHECK_THROWS_AS(make_store("memcached://h:1?timeout_ms=0"), UsageError);
    CHECK_THROWS_AS(make_store("memcached://h:1?bogus=1"), UsageError);
    CHECK_NOTHROW(make_store("memcached://localhost,127.0.0.1:11212?timeout_ms=50"));
}

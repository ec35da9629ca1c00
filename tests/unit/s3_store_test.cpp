// lib/store s3: URI parsing, key layout, and (when KINDLING_S3_ENDPOINT names a live
// endpoint with bucket KINDLING_S3_BUCKET, as tests/cli/s3_list.sh arranges with
// s3rver) has/get/put/remove, paginated list and many threads on one store.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>

#include "base/error.h"
#include "store/s3_store.h"
#include "store/store.h"

using namespace kindling;

namespace {

std::vector<uint8_t> object(int i) {
    std::string s = "object " + std::to_string(i);
    return {s.begin(), s.end()};
}

}  // namespace

TEST_CASE("s3 store: URI parsing") {
    auto l = parse_s3_uri("s3://bucket/a/b/?endpoint=http%3A%2F%2F127.0.0.1%3A4568&region=eu-west-1&retries=2&timeout=1.5");
    CHECK(l.bucket == "bucket");
    CHECK(l.prefix == "a/b");
    CHECK(l.endpoint == "http://127.0.0.1:4568");
    CHECK(l.region == "eu-west-1");
    CHECK(l.retries == 2);
    CHECK(l.timeout_ms == 1500);
    auto m = parse_s3_uri("s3://b?endpoint=https://minio.local:9000/");
    CHECK(m.prefix.empty());
    CHECK(m.endpoint == "https://minio.local:9000");
    CHECK(m.retries == 4);
    for (const char* bad : {"s3://", "s3:///p", "s3://b?x=1", "s3://b?endpoint=ftp://h", "s3://b?endpoint=http://h/p",
                            "s3://b?endpoint=http://", "s3://b?endpoint=http://h:", "s3://b?retries=0",
                            "s3://b?timeout=-1", "s3://b?region=", "s3://b c/p"})
        CHECK_THROWS_AS(parse_s3_uri(bad), UsageError);
}

TEST_CASE("s3 store: key layout and addressing") {
    Digest id = sha256(object(1));
    std::string h = id.hex();
    S3Store s("s3://b/pre", parse_s3_uri("s3://b/pre"), {"k", "s", ""});
    CHECK(s.object_key(id) == "pre/" + h.substr(0, 2) + "/" + h.substr(2));
    S3Store root("s3://b", parse_s3_uri("s3://b?region=eu-west-1"), {"k", "s", ""});
    CHECK(root.object_key(id) == h.substr(0, 2) + "/" + h.substr(2));
    CHECK(root.location().region == "eu-west-1");
}

TEST_CASE("s3 store: make_store needs credentials") {
    const char* saved = std::getenv("AWS_ACCESS_KEY_ID");
    std::string keep = saved ? saved : "";
    ::unsetenv("AWS_ACCESS_KEY_ID");
    try {
        make_store("s3://b/p?endpoint=http://127.0.0.1:1");
        FAIL("no exception");
    } catch (const ConfigError& e) {
        CHECK(std::string(e.what()).find("s3://b/p: no AWS credentials: set AWS_ACCESS_KEY_ID") == 0);
    }
    if (saved) ::setenv("AWS_ACCESS_KEY_ID", keep.c_str(), 1);
}

TEST_CASE("s3 store: a closed port is unavailable after the bounded attempts") {
    S3Store s("s3://b", parse_s3_uri("s3://b?endpoint=http://127.0.0.1:1&retries=2"), {"k", "s", ""});
    CHECK_THROWS_AS(s.get(sha256(object(1))), UnavailableError);
    CHECK(s.counters().requests == 2);
    CHECK(s.counters().retries == 1);
}

TEST_CASE("s3 store: live endpoint (KINDLING_S3_ENDPOINT)") {
    const char* ep = std::getenv("KINDLING_S3_ENDPOINT");
    const char* bucket = std::getenv("KINDLING_S3_BUCKET");
    if (!ep || !bucket) return;  // run by tests/cli/s3_list.sh with s3rver
    std::string uri = std::string("s3://") + bucket + "/unit?endpoint=" + ep;
    auto store = make_store(uri);
    auto* s3 = dynamic_cast<S3Store*>(store.get());
    REQUIRE(s3);

    Digest a = sha256(object(0));
    CHECK_FALSE(store->has(a));
    CHECK_FALSE(store->get(a).has_value());
    CHECK(store->put(a, object(0)));
    CHECK_FALSE(store->put(a, object(0)));
    CHECK(store->has(a));
    CHECK(*store->get(a) == object(0));
    CHECK(store->remove(a));
    CHECK_FALSE(store->remove(a));
    CHECK_FALSE(store->has(a));

    // More than one ListObjectsV2 page (1000 keys), put by 8 threads on one store.
    constexpr int kN = 1100, kThreads = 8;
    std::vector<std::thread> ts;
    std::atomic<int> created{0};
    for (int t = 0; t < kThreads; ++t)
        ts.emplace_back([&, t] {
            for (int i = t; i < kN; i += kThreads)
                if (store->put(sha256(object(i)), object(i))) created++;
        });
    for (auto& t : ts) t.join();
    CHECK(created == kN);
    auto listed = store->list();
    std::set<Digest> got(listed.begin(), listed.end());
    CHECK(listed.size() == kN);
    CHECK(got.size() == kN);
    CHECK(got.count(sha256(object(kN - 1))) == 1);
    // Requests: HEAD + PUT per object, two list pages, the 11 above.
    CHECK(s3->counters().requests == 2 * kN + 2 + 11);
    // Connections are reused: one per thread that ever ran a request, not one each.
    CHECK(s3->counters().connects <= kThreads + 1);
    MESSAGE("connections: " << s3->counters().connects.load() << " for " << s3->counters().requests.load() << " requests");

    // Another prefix in the same bucket is a different store.
    auto other = make_store(std::string("s3://") + bucket + "/unit2?endpoint=" + ep);
    CHECK(other->list().empty());
    CHECK_FALSE(other->get(sha256(object(1))).has_value());

    // A bucket that does not exist: unavailable, naming the bucket.
    auto none = make_store(std::string("s3://no-such-bucket-kindling/p?endpoint=") + ep);
    try {
        none->get(a);
        FAIL("no exception");
    } catch (const UnavailableError& e) {
        CHECK(std::string(e.what()).find("no bucket 'no-such-bucket-kindling'") != std::string::npos);
    }
}

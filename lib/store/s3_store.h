// `s3://bucket/prefix?endpoint=URL&region=R` — chunks in an S3 bucket (the origin tier,
// DESIGN.md "Stores and tiers").
//
//   bucket/prefix/ab/cdef…   object ab cdef… (64 hex digits split 2 + 62, as in dir:)
//
// Requests are signed with SigV4 (lib/http/sigv4) over the real payload hash
// (x-amz-content-sha256), with credentials from AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN.  With `endpoint=` (s3rver, MinIO, a
// proxy) requests go path-style to ENDPOINT/bucket/key; without it, virtual-host style
// to https://bucket.s3.REGION.amazonaws.com.  Region: `region=`, else AWS_REGION,
// AWS_DEFAULT_REGION, else us-east-1.
//
// Thread-safe: each request borrows a libcurl easy handle from a pool, so a worker
// pool of N threads keeps N connections alive and reuses them.  Failures:
//   404 on GET/HEAD      a miss (nullopt / false)
//   403, other 4xx       Error, not retried; 403 (exit 77) says to check credentials
//                        and gives S3's error code (SignatureDoesNotMatch, ...)
//   5xx, 429, timeout,   retried up to `retries` attempts in all with exponential
//   connection error     backoff and jitter; then Error exit 75 (temporary) for 5xx
//                        and timeouts, UnavailableError (69) when the endpoint cannot
//                        be reached at all
//   404 NoSuchBucket     UnavailableError (69) naming the bucket (GET and list; a
//                        HEAD has no body to tell, so has() says false)
// put() is HEAD then PUT (content-addressed: an object that exists is never sent
// again); remove() is HEAD then DELETE.  get() returns the bytes as stored; checking
// them against the id is the caller's job (object_matches()).
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "http/sigv4.h"
#include "store/store.h"

namespace kindling {

struct S3Location {
    std::string bucket;
    std::string prefix;     // no leading or trailing '/'; may be empty
    std::string endpoint;   // "http://127.0.0.1:4568"; empty: AWS
    std::string region;     // empty: from the environment, else us-east-1
    int retries = 4;        // attempts in all for a retryable failure
    long timeout_ms = 30000;          // whole request
    long connect_timeout_ms = 5000;
};

// Parses "s3://bucket/prefix?endpoint=URL&region=R&retries=N&timeout=SECS".  Throws
// UsageError for a malformed URI or an unknown option.
S3Location parse_s3_uri(const std::string& uri);

// make_store()'s s3:// branch: parse_s3_uri() plus credentials from the environment
// (ConfigError, exit 78, naming the variables when they are missing).
std::unique_ptr<Store> make_s3_store(const std::string& uri);

struct S3Counters {
    std::atomic<uint64_t> requests{0};
    std::atomic<uint64_t> retries{0};
    std::atomic<uint64_t> connects{0};  // new connections (the rest reused one)
    std::atomic<uint64_t> bytes_in{0};
    std::atomic<uint64_t> bytes_out{0};
};

class S3Store : public Store {
public:
    // No network I/O here: a store that is down fails its first request, not its
    // construction (a tiered store opens every tier up front).
    S3Store(std::string uri, S3Location loc, sigv4::Credentials creds);
    ~S3Store() override;

    const std::string& uri() const override { return uri_; }
    bool has(const Digest& id) override;
    std::optional<std::vector<uint8_t>> get(const Digest& id) override;
    bool put(const Digest& id, std::span<const uint8_t> data) override;
    std::vector<Digest> list() override;
    bool remove(const Digest& id) override;

    // "prefix/ab/cdef…" (no bucket).
    std::string object_key(const Digest& id) const;
    const S3Location& location() const { return loc_; }
    const S3Counters& counters() const { return counters_; }

    struct Response;
    struct Handle;

private:
    Response request(const std::string& method, const std::string& key, const sigv4::Params& query,
                     std::span<const uint8_t> body, bool want_body);
    Response attempt(Handle& h, const std::string& method, const std::string& key,
                     const sigv4::Params& query, std::span<const uint8_t> body, bool want_body);
    [[noreturn]] void fail(const std::string& what, const Response& r);
    std::unique_ptr<Handle> acquire();
    void release(std::unique_ptr<Handle> h);

    std::string uri_;
    std::string name_;  // "s3://bucket/prefix", for messages
    S3Location loc_;
    sigv4::Credentials creds_;
    std::string base_url_;  // scheme://host[:port]
    std::string host_;      // Host header value
    bool path_style_;
    std::mutex pool_mu_;
    std::vector<std::unique_ptr<Handle>> pool_;
    std::mutex put_mu_;
    std::condition_variable put_cv_;
    std::unordered_set<Digest, DigestHash> in_flight_;  // ids being put by this process
    S3Counters counters_;
};

}  // namespace kindling

// `memcached://host1:port,host2:port[?timeout_ms=N]` — a shared cache of objects in
// a memcached cluster (DESIGN.md "Stores and tiers"), through libmemcached.
//
// Keys are "kn:" + the object's 64 hex digits; the value is the object's bytes.
// Chunks are at most 512 KiB plus the AEAD tag, so the default memcached item size
// (1 MiB) fits them; tests start memcached with -I 2m to leave room for large
// manifests.  Objects larger than the item size are refused by the server (put
// throws; a tiered store counts it as a failed fill).
//
// Distribution: ketama consistent hashing (MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA),
// binary protocol, TCP_NODELAY, connect and poll timeouts of timeout_ms (default
// 100 ms).  A server that fails twice in a row is disabled for two seconds
// (REMOVE_FAILED_SERVERS, AUTO_EJECT_HOSTS, SERVER_FAILURE_LIMIT, RETRY_TIMEOUT) and
// tried again afterwards, so a restarted node refills.  Reads of its keys are misses
// meanwhile.  Writes of its keys may land on the next server on the ring once the
// continuum is rebuilt, but libmemcached 1.1.4 often answers "disabled until timed
// retry" instead: put() then throws, which a tiered store counts as a failed fill.
//
// A cache must never fail a read another tier can serve: get() and has() turn every
// error and timeout into a miss and count it (counters()).  put() throws Error on a
// failure (the caller asked for the object to be stored); remove() returns false.
// list() is not supported (memcached cannot enumerate keys): it throws UsageError.
//
// Thread safety: libmemcached handles are not thread-safe, so the store keeps a pool
// of handles cloned from one configured handle; each call borrows one.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "store/store.h"

struct memcached_st;

namespace kindling {

struct MemcachedCounters {
    uint64_t hits = 0;
    uint64_t misses = 0;        // NOTFOUND answers
    uint64_t get_errors = 0;    // errors and timeouts on get/has, reported as misses
    uint64_t put_errors = 0;
    uint64_t bytes_read = 0;
    uint64_t bytes_written = 0;
};

class MemcachedStore : public Store {
public:
    struct Server {
        std::string host;
        uint16_t port = 11211;
    };
    // Throws UsageError on an empty list.
    MemcachedStore(std::string uri, std::vector<Server> servers, int timeout_ms = 100);
    ~MemcachedStore() override;

    const std::string& uri() const override { return uri_; }
    bool has(const Digest& id) override;
    std::optional<std::vector<uint8_t>> get(const Digest& id) override;
    bool put(const Digest& id, std::span<const uint8_t> data) override;
    std::vector<Digest> list() override;
    bool remove(const Digest& id) override;

    MemcachedCounters counters() const;
    // "kn:<hex>", the key an object is stored under.
    static std::string key_for(const Digest& id);

private:
    struct Deleter {
        void operator()(memcached_st* m) const;
    };
    using Handle = std::unique_ptr<memcached_st, Deleter>;
    class Lease;

    Handle borrow();
    void give_back(Handle h);
    void note_get_error(const Digest& id, const char* what);

    std::string uri_;
    Handle proto_;  // configured handle; the pool clones it
    std::mutex mu_;
    std::vector<Handle> idle_;
    std::atomic<uint64_t> hits_{0}, misses_{0}, get_errors_{0}, put_errors_{0};
    std::atomic<uint64_t> bytes_read_{0}, bytes_written_{0};
    std::atomic<bool> warned_{false};
};

// "memcached://h1:11211,h2:11212?timeout_ms=50" (the part after "memcached:").
std::unique_ptr<Store> make_memcached_store(const std::string& uri, const std::string& rest);

}  // namespace kindling

// Content-addressed object stores (DESIGN.md "Stores and tiers").  Objects are named
// by the SHA-256 of their bytes: chunks (ciphertext || tag) and manifests alike.
// A store never needs keys; checking an object against its id is the caller's job
// (object_matches() in hash/digest.h), so a tier that returns bad bytes can be
// skipped by whoever reads through it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "hash/digest.h"

namespace kindling {

class Store {
public:
    virtual ~Store() = default;

    // The URI this store was opened with, for messages.
    virtual const std::string& uri() const = 0;

    virtual bool has(const Digest& id) = 0;
    // nullopt when the store does not hold `id`: a miss is not an error.
    virtual std::optional<std::vector<uint8_t>> get(const Digest& id) = 0;
    // Stores `data` under `id`.  Idempotent; the object is visible to other readers
    // whole or not at all.  Returns true when the store did not hold it before.
    virtual bool put(const Digest& id, std::span<const uint8_t> data) = 0;
    virtual std::vector<Digest> list() = 0;
    // Returns false when there was nothing to remove.
    virtual bool remove(const Digest& id) = 0;
    // Makes every put() so far durable (a store may defer directory syncs to here).
    virtual void flush() {}
};

struct StoreOptions {
    // Create the store (e.g. the directory) when it does not exist yet.
    bool create = false;
};

// Opens a store from its URI:
//   dir:/path[?max=SIZE]   local directory (see dir_store.h); SIZE in bytes or K/M/G/T
//   memcached://HOST:PORT[,HOST:PORT...][?timeout_ms=N]
//                          memcached cluster, ketama hashing (see memcached_store.h)
//   tiered:URI|URI|...     read-through tiers, top first, origin last (see
//                          tiered_store.h); without '|', tiers may be separated by
//                          ',' before a scheme: tiered:dir:/c,memcached://a:1,b:2,dir:/o
// Throws UsageError for an unknown or malformed URI and UnavailableError (69) when
// the store cannot be reached.
std::unique_ptr<Store> make_store(const std::string& uri, const StoreOptions& opts = {});

// The part of a store URI after its scheme, "path?k=v&k2=v2", split into the path
// and the options in order (empty items skipped; "k" alone has an empty value;
// values are not percent-decoded).
struct UriParts {
    std::string path;
    std::vector<std::pair<std::string, std::string>> options;
};
UriParts split_uri_options(const std::string& rest);

// "10G", "512M", "4096" -> bytes; nullopt for anything else.
std::optional<uint64_t> parse_size(const std::string& s);

}  // namespace kindling

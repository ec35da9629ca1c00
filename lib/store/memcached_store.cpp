#include "store/memcached_store.h"

#include <libmemcached/memcached.h>

#include <cstdlib>
#include <cstring>

#include "base/error.h"
#include "base/log.h"

namespace kindling {

namespace {

constexpr char kKeyPrefix[] = "kn:";

std::string mc_error(memcached_st* m, memcached_return_t rc) {
    const char* last = memcached_last_error_message(m);
    std::string s = memcached_strerror(m, rc);
    if (last && *last && s != last) s += std::string(" (") + last + ")";
    return s;
}

}  // namespace

void MemcachedStore::Deleter::operator()(memcached_st* m) const {
    if (m) memcached_free(m);
}

// A handle borrowed from the pool for one call; returned on every exit path.
class MemcachedStore::Lease {
public:
    explicit Lease(MemcachedStore& s) : s_(s), h_(s.borrow()) {}
    ~Lease() { s_.give_back(std::move(h_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    memcached_st* get() const { return h_.get(); }

private:
    MemcachedStore& s_;
    Handle h_;
};

MemcachedStore::MemcachedStore(std::string uri, std::vector<Server> servers, int timeout_ms)
    : uri_(std::move(uri)) {
    if (servers.empty()) throw UsageError("store " + uri_ + ": no servers (expected memcached://host:port,...)");
    proto_.reset(memcached_create(nullptr));
    if (!proto_) throw std::bad_alloc();
    memcached_st* m = proto_.get();
    auto set = [&](memcached_behavior_t b, uint64_t v, const char* name) {
        memcached_return_t rc = memcached_behavior_set(m, b, v);
        if (rc != MEMCACHED_SUCCESS)
            throw ConfigError("store " + uri_ + ": libmemcached refused " + name + ": " + mc_error(m, rc));
    };
    set(MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1, "binary protocol");
    set(MEMCACHED_BEHAVIOR_DISTRIBUTION, MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA, "ketama distribution");
    set(MEMCACHED_BEHAVIOR_TCP_NODELAY, 1, "TCP_NODELAY");
    set(MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, static_cast<uint64_t>(timeout_ms), "connect timeout");
    set(MEMCACHED_BEHAVIOR_POLL_TIMEOUT, static_cast<uint64_t>(timeout_ms), "poll timeout");
    // Eject a server after two consecutive failures; try it again two seconds later.
    // AUTO_EJECT_HOSTS rebuilds the ketama continuum without the ejected server, so
    // its keys move to the next server (REMOVE_FAILED_SERVERS alone only answers
    // "temporarily disabled" for them).
    set(MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 1, "remove failed servers");
    set(MEMCACHED_BEHAVIOR_AUTO_EJECT_HOSTS, 1, "auto eject hosts");
    set(MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, 2, "server failure limit");
    set(MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 2, "retry timeout");
    for (const auto& s : servers) {
        memcached_return_t rc = memcached_server_add(m, s.host.c_str(), s.port);
        if (rc != MEMCACHED_SUCCESS)
            throw UsageError("store " + uri_ + ": bad server " + s.host + ":" + std::to_string(s.port) + ": " +
                             mc_error(m, rc));
    }
}

MemcachedStore::~MemcachedStore() = default;

MemcachedStore::Handle MemcachedStore::borrow() {
    {
        std::lock_guard<std::mutex> g(mu_);
        if (!idle_.empty()) {
            Handle h = std::move(idle_.back());
            idle_.pop_back();
            return h;
        }
        Handle h(memcached_clone(nullptr, proto_.get()));
        if (!h) throw std::bad_alloc();
        return h;
    }
}

void MemcachedStore::give_back(Handle h) {
    std::lock_guard<std::mutex> g(mu_);
    idle_.push_back(std::move(h));
}

std::string MemcachedStore::key_for(const Digest& id) { return kKeyPrefix + id.hex(); }

void MemcachedStore::note_get_error(const Digest& id, const char* what) {
    ++get_errors_;
    if (!warned_.exchange(true))
        log_warn("%s: %s %s failed (%s); counted as a miss, further errors not logged", uri_.c_str(), "get",
                 id.hex().c_str(), what);
    else
        log_debug("%s: get %s: %s", uri_.c_str(), id.hex().c_str(), what);
}

bool MemcachedStore::has(const Digest& id) {
    Lease l(*this);
    std::string key = key_for(id);
    memcached_return_t rc = memcached_exist(l.get(), key.data(), key.size());
    if (rc == MEMCACHED_SUCCESS) return true;
    if (rc != MEMCACHED_NOTFOUND) note_get_error(id, mc_error(l.get(), rc).c_str());
    return false;
}

std::optional<std::vector<uint8_t>> MemcachedStore::get(const Digest& id) {
    Lease l(*this);
    std::string key = key_for(id);
    size_t len = 0;
    uint32_t flags = 0;
    memcached_return_t rc = MEMCACHED_SUCCESS;
    char* v = memcached_get(l.get(), key.data(), key.size(), &len, &flags, &rc);
    std::unique_ptr<char, void (*)(void*)> owned(v, std::free);
    if (rc == MEMCACHED_NOTFOUND) {
        ++misses_;
        return std::nullopt;
    }
    if (rc != MEMCACHED_SUCCESS) {
        note_get_error(id, mc_error(l.get(), rc).c_str());
        return std::nullopt;
    }
    ++hits_;
    bytes_read_ += len;
    const auto* p = reinterpret_cast<const uint8_t*>(v);
    return v ? std::vector<uint8_t>(p, p + len) : std::vector<uint8_t>();
}

bool MemcachedStore::put(const Digest& id, std::span<const uint8_t> data) {
    Lease l(*this);
    std::string key = key_for(id);
    // add: an object has one content, so an existing one is left alone.
    memcached_return_t rc = memcached_add(l.get(), key.data(), key.size(),
                                          reinterpret_cast<const char*>(data.data()), data.size(), 0, 0);
    if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_STORED) {
        bytes_written_ += data.size();
        return true;
    }
    if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS) return false;
    ++put_errors_;
    throw UnavailableError(uri_ + ": set " + id.hex() + " (" + std::to_string(data.size()) +
                           " bytes): " + mc_error(l.get(), rc));
}

std::vector<Digest> MemcachedStore::list() {
    throw UsageError(uri_ + ": a memcached store cannot list its objects");
}

bool MemcachedStore::remove(const Digest& id) {
    Lease l(*this);
    std::string key = key_for(id);
    memcached_return_t rc = memcached_delete(l.get(), key.data(), key.size(), 0);
    return rc == MEMCACHED_SUCCESS || rc == MEMCACHED_DELETED;
}

MemcachedCounters MemcachedStore::counters() const {
    return {hits_.load(), misses_.load(), get_errors_.load(), put_errors_.load(), bytes_read_.load(),
            bytes_written_.load()};
}

std::unique_ptr<Store> make_memcached_store(const std::string& uri, const std::string& rest) {
    std::string s = rest;
    if (s.rfind("//", 0) != 0) throw UsageError("store " + uri + ": expected memcached://host:port,...");
    s = s.substr(2);
    UriParts parts = split_uri_options(s);
    s = parts.path;
    while (!s.empty() && s.back() == '/') s.pop_back();
    int timeout_ms = 100;
    for (const auto& [k, v] : parts.options) {
        if (k == "timeout_ms") {
            char* end = nullptr;
            long n = std::strtol(v.c_str(), &end, 10);
            if (v.empty() || *end || n < 1 || n > 60000)
                throw UsageError("store " + uri + ": bad timeout_ms '" + v + "' (1..60000)");
            timeout_ms = static_cast<int>(n);
        } else {
            throw UsageError("store " + uri + ": unknown option '" + k + "' (memcached:// takes timeout_ms=N)");
        }
    }
    std::vector<MemcachedStore::Server> servers;
    size_t pos = 0;
    while (pos <= s.size()) {
        size_t comma = s.find(',', pos);
        if (comma == std::string::npos) comma = s.size();
        std::string hp = s.substr(pos, comma - pos);
        pos = comma + 1;
        if (hp.empty()) throw UsageError("store " + uri + ": empty server in the list");
        MemcachedStore::Server srv;
        auto c = hp.rfind(':');
        srv.host = hp.substr(0, c);
        if (c != std::string::npos) {
            std::string p = hp.substr(c + 1);
            char* end = nullptr;
            long n = std::strtol(p.c_str(), &end, 10);
            if (p.empty() || *end || n < 1 || n > 65535)
                throw UsageError("store " + uri + ": bad port '" + p + "' for " + srv.host);
            srv.port = static_cast<uint16_t>(n);
        }
        if (srv.host.empty()) throw UsageError("store " + uri + ": server '" + hp + "' has no host");
        servers.push_back(srv);
    }
    return std::make_unique<MemcachedStore>(uri, std::move(servers), timeout_ms);
}

}  // namespace kindling

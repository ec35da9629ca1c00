// The leases routerd holds (routerd(1) --lease-hold-ms).  After an invoke the sandbox
// is kept here for a moment instead of going back to assignd: the next invoke of the
// same function+version takes it without either assignd round trip.  One unused for
// the hold time goes back to assignd, so its idle TTL, drain and placement see it
// idle; while held, assignd counts it busy (its lease is still out).
//
// It also counts the leases out per function (in use or held).  When that count has
// reached the function's concurrency limit assignd could only make the caller wait,
// so the caller waits here for a lease to come back; past the deadline it is
// throttled (429), as assignd would.  Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"

namespace kindling::route {

// A sandbox assignd granted this router (POST /v1/acquire), for one function+version.
struct Lease {
    std::string function;  // counts against this function's limit
    std::string key;       // function + '\0' + version: the invokes it may serve
    std::string sandbox, vsock;
    std::string id;        // assignd's lease id, for POST /v1/release
    std::string instance;  // the assignd that granted it
    uint64_t drains = 0;   // its drain count then
    bool cold = false;     // restored for the invoke it was granted for
    Clock::time_point since;  // when it was put in the cache (its hold starts)
};

// The key of a function+version's leases.
std::string lease_key(const std::string& function, const std::string& version);

class LeaseCache {
public:
    // `hold`: how long a lease is held unused before expired() hands it back (0:
    // holding is off).  `clock` times the hold; it must outlive the cache.
    explicit LeaseCache(std::chrono::milliseconds hold, const Clock& clock = Clock::steady())
        : hold_(hold), clock_(clock) {}
    std::chrono::milliseconds hold() const { return hold_; }

    enum class Take { kHeld, kAcquire, kThrottled };
    // kHeld: `out` is a held lease of `key` (function+version).  kAcquire: none is
    // held and the function has fewer than `limit` leases out; one is reserved for
    // the caller, who asks assignd and then calls put() or ended().  kThrottled: the
    // function had `limit` leases out until `deadline` (real time) and none came back.
    Take take(const std::string& key, const std::string& function, size_t limit,
              std::chrono::steady_clock::time_point deadline, Lease& out);
    // A held lease of `key`, without waiting or reserving anything.
    std::optional<Lease> take_held(const std::string& key);
    // Keeps a lease (of lease.key) for the next invoke, or hands it straight to a
    // caller of take() waiting for one of its key; its hold starts now.  False when
    // holding is off: the caller releases it to assignd and calls ended().
    bool put(Lease lease);
    // A lease of `function` is over (released, destroyed, or never granted).
    void ended(const std::string& function);
    // Leases held for the hold time or longer (expired), or all of them (take_all),
    // removed and no longer counted: the caller releases them (or forgets them when
    // assignd restarted).
    std::vector<Lease> expired();
    std::vector<Lease> take_all();
    size_t held() const;
    // Leases out (in use or held): of one function, of all.
    size_t out(const std::string& function) const;
    size_t out() const;
    // When (on the cache's clock) the longest-waiting caller of take() for
    // `function` started waiting.
    std::optional<Clock::time_point> oldest_wait(const std::string& function) const;

private:
    // A caller of take() waiting for a lease to come back: put() hands a lease of its
    // key straight to the oldest such waiter, ended() hands it the freed slot, and
    // wakes only that thread.  First come, first served; nothing to steal.
    struct Waiter {
        const std::string* key;
        std::condition_variable cv;
        std::optional<Lease> lease;  // handed over by put()
        bool slot = false;           // handed over by ended(): acquire from assignd
        Clock::time_point since;
    };
    struct Function {
        size_t out = 0;  // leases out: in use or held
        std::deque<Waiter*> waiters;
    };
    // The most recently held lease of `key`, removed (under mu_).
    std::optional<Lease> pop_held_locked(const std::string& key);
    // A freed slot of `fn` to its oldest waiter, if any (under mu_).
    void hand_slot(Function& fn);
    std::vector<Lease> remove_if_locked(bool all);

    std::chrono::milliseconds hold_;
    const Clock& clock_;
    mutable std::mutex mu_;
    std::map<std::string, std::vector<Lease>> held_;  // key -> leases, most recent at back
    std::map<std::string, Function> functions_;
};

}  // namespace kindling::route

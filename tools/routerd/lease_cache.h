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
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace kindling::routerd {

struct HeldLease {
    std::string function;  // counts against this function's limit
    std::string sandbox, vsock, lease;
    std::string instance;  // the assignd that granted it
    uint64_t drains = 0;   // its drain count then
    std::chrono::steady_clock::time_point since;
};

class LeaseCache {
public:
    using Clock = std::chrono::steady_clock;
    explicit LeaseCache(std::chrono::milliseconds hold) : hold_(hold) {}
    std::chrono::milliseconds hold() const { return hold_; }

    enum class Take { kHeld, kAcquire, kThrottled };
    // kHeld: `out` is a held lease of `key` (function+version).  kAcquire: none is
    // held and the function has fewer than `limit` leases out; one is reserved for
    // the caller, who asks assignd and then calls put() or ended().  kThrottled: the
    // function had `limit` leases out until `deadline` and none came back.
    Take take(const std::string& key, const std::string& function, size_t limit, Clock::time_point deadline,
              HeldLease& out);
    // A held lease of `key`, without waiting or reserving anything.
    std::optional<HeldLease> take_held(const std::string& key);
    // Keeps a lease for the next invoke.  False when holding is off: the caller
    // releases it to assignd and calls ended().
    bool put(const std::string& key, HeldLease h);
    // A lease of `function` is over (released, destroyed, or never granted).
    void ended(const std::string& function);
    // Leases held longer than the hold time (or all of them), removed and no longer
    // counted: the caller releases them (or forgets them when assignd restarted).
    std::vector<HeldLease> expired(Clock::time_point now);
    std::vector<HeldLease> take_all();
    size_t held() const;
    // Leases out (in use or held): of one function, of all.
    size_t out(const std::string& function) const;
    size_t out() const;
    // When the longest-waiting caller of take() for `function` started waiting.
    std::optional<Clock::time_point> oldest_wait(const std::string& function) const;

private:
    // A caller of take() waiting for a lease to come back: put() hands a lease of its
    // key straight to the oldest such waiter, ended() hands it the freed slot, and
    // wakes only that thread.  First come, first served; nothing to steal.
    struct Waiter {
        const std::string* key;
        std::condition_variable cv;
        std::optional<HeldLease> lease;  // handed over by put()
        bool slot = false;               // handed over by ended(): acquire from assignd
        Clock::time_point since;
    };
    struct Function {
        size_t out = 0;                 // leases out: in use or held
        std::deque<Waiter*> waiters;
    };
    // The most recently held lease of `key`, removed (under mu_).
    std::optional<HeldLease> pop_held_locked(const std::string& key);
    // A freed slot of `fn` to its oldest waiter, if any (under mu_).
    void hand_slot(Function& fn);
    std::vector<HeldLease> remove_if_locked(Clock::time_point now, bool all);

    std::chrono::milliseconds hold_;
    mutable std::mutex mu_;
    std::map<std::string, std::vector<HeldLease>> held_;  // key -> leases, most recent at back
    std::map<std::string, Function> functions_;
};

}  // namespace kindling::routerd

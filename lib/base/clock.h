// Time for code whose behaviour depends on it (journal group commit, idle TTLs, lease
// hold times, cache timeouts), so that tests can move time instead of sleeping.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace kindling {

class Clock {
public:
    using duration = std::chrono::steady_clock::duration;
    using time_point = std::chrono::steady_clock::time_point;

    virtual ~Clock() = default;
    virtual time_point now() const = 0;

    // The process's steady clock (CLOCK_MONOTONIC).
    static const Clock& steady();
};

// A clock that moves only when told: for tests.  Thread-safe.
class ManualClock : public Clock {
public:
    explicit ManualClock(time_point start = time_point{} + std::chrono::hours(1)) : now_(start) {}
    time_point now() const override { return now_.load(); }
    void advance(duration d) { now_.store(now_.load() + d); }

private:
    std::atomic<time_point> now_;
};

// Waits on `cv` (with `lock` held) until `pred()` holds or `clock` reaches `deadline`;
// returns pred().  With the steady clock this is cv.wait_until(lock, deadline, pred).
// A ManualClock's advance() notifies no one: the waiter sees it when it next wakes (a
// notify, or the real time that was left to the deadline), so keep such waits short.
template <class Predicate>
bool wait_until(const Clock& clock, std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                Clock::time_point deadline, Predicate pred) {
    while (!pred()) {
        Clock::time_point now = clock.now();
        if (now >= deadline) return pred();
        cv.wait_for(lock, std::min<Clock::duration>(deadline - now, std::chrono::hours(24)));
    }
    return true;
}

}  // namespace kindling

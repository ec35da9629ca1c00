// Time for code whose behaviour depends on it (journal group commit, idle TTLs, lease
// hold times, cache timeouts), so that tests can move time instead of sleeping.
#pragma once

#include <atomic>
#include <chrono>

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

}  // namespace kindling

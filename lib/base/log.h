// printf-style logging to stderr with the tool's name as prefix.  Warnings are
// rate-limited per call site (LogThrottle): a guest or a client that can trigger a
// warning in a loop cannot fill the disk the daemon's stderr goes to.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace kindling {

enum class LogLevel { kQuiet = -1, kNormal = 0, kVerbose = 1, kDebug = 2 };

void log_init(const char* tool_name, LogLevel level);
LogLevel log_level();
const char* log_tool_name();

// Sets the level for a scope and puts the previous one back (tests that silence
// expected warnings must not silence the tests that run after them).
class ScopedLogLevel {
public:
    explicit ScopedLogLevel(LogLevel l) : old_(log_level()) { log_init(log_tool_name(), l); }
    ~ScopedLogLevel() { log_init(log_tool_name(), old_); }
    ScopedLogLevel(const ScopedLogLevel&) = delete;
    ScopedLogLevel& operator=(const ScopedLogLevel&) = delete;

private:
    LogLevel old_;
};

// "TOOL: error: ..." — always printed.
void log_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// "TOOL: warning: ..." — suppressed by -q; rate-limited per format string (the
// call site): after a burst, the rest are dropped and counted, and the next one let
// through is preceded by "N similar warnings suppressed".
void log_warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// "TOOL: ..." — suppressed by -q.
void log_info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// -v and -vv.
void log_verbose(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// A token bucket per key (a call site's format string): `burst` messages at once,
// then one per `interval`.  A fixed number of keys; past that, keys share a bucket.
// Thread-safe.
class LogThrottle {
public:
    using Clock = std::chrono::steady_clock;
    static constexpr size_t kSlots = 64;

    LogThrottle(unsigned burst, Clock::duration interval) : burst_(burst), interval_(interval) {}

    struct Verdict {
        bool emit = false;
        uint64_t suppressed = 0;  // dropped since the last one emitted (when emit)
    };
    Verdict admit(const void* key, Clock::time_point now);

private:
    struct Slot {
        const void* key = nullptr;
        double tokens = 0;
        Clock::time_point last{};
        uint64_t suppressed = 0;
    };
    std::mutex mu_;
    unsigned burst_;
    Clock::duration interval_;
    Slot slots_[kSlots];
};

// log_warn's: 20 at once, then one a second per call site.
inline constexpr unsigned kWarnBurst = 20;
inline constexpr std::chrono::seconds kWarnInterval{1};

}  // namespace kindling

#include "base/log.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <functional>

namespace kindling {

namespace {
const char* g_tool = "kindling";
LogLevel g_level = LogLevel::kNormal;

void emit(const char* kind, const char* fmt, va_list ap) {
    // One write per line so lines from several threads do not interleave.
    char buf[2048];
    int n = std::snprintf(buf, sizeof buf, "%s: %s", g_tool, kind);
    if (n < 0) return;
    size_t off = static_cast<size_t>(n) < sizeof buf ? static_cast<size_t>(n) : sizeof buf - 1;
    int m = std::vsnprintf(buf + off, sizeof buf - off, fmt, ap);
    if (m < 0) return;
    size_t len = off + static_cast<size_t>(m);
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    buf[len++] = '\n';
    std::fwrite(buf, 1, len, stderr);
}
}  // namespace

LogThrottle::Verdict LogThrottle::admit(const void* key, Clock::time_point now) {
    std::lock_guard lk(mu_);
    size_t h = std::hash<const void*>{}(key) % kSlots;
    Slot* s = &slots_[h];
    for (size_t i = 0; i < kSlots; ++i) {
        Slot& c = slots_[(h + i) % kSlots];
        if (c.key == key || c.key == nullptr) {
            s = &c;
            break;
        }
    }
    if (s->key == nullptr) {
        s->key = key;
        s->tokens = burst_;
        s->last = now;
    }
    double refill = std::chrono::duration<double>(now - s->last) / std::chrono::duration<double>(interval_);
    if (refill > 0) {
        s->tokens = std::min<double>(burst_, s->tokens + refill);
        s->last = now;
    }
    if (s->tokens < 1) {
        ++s->suppressed;
        return {};
    }
    s->tokens -= 1;
    Verdict v{true, s->suppressed};
    s->suppressed = 0;
    return v;
}

void log_init(const char* tool_name, LogLevel level) {
    g_tool = tool_name;
    g_level = level;
}
LogLevel log_level() { return g_level; }
const char* log_tool_name() { return g_tool; }

#define KINDLING_LOG(min, kind)              \
    do {                                     \
        if (g_level < (min)) return;         \
        va_list ap;                          \
        va_start(ap, fmt);                   \
        emit(kind, fmt, ap);                 \
        va_end(ap);                          \
    } while (0)

void log_error(const char* fmt, ...) { KINDLING_LOG(LogLevel::kQuiet, "error: "); }
void log_warn(const char* fmt, ...) {
    if (g_level < LogLevel::kNormal) return;
    static LogThrottle throttle(kWarnBurst, kWarnInterval);
    auto v = throttle.admit(fmt, LogThrottle::Clock::now());
    if (!v.emit) return;
    if (v.suppressed) {
        char note[160];
        std::snprintf(note, sizeof note, "%s: warning: %llu similar warnings suppressed\n", g_tool,
                      static_cast<unsigned long long>(v.suppressed));
        std::fputs(note, stderr);
    }
    va_list ap;
    va_start(ap, fmt);
    emit("warning: ", fmt, ap);
    va_end(ap);
}
void log_info(const char* fmt, ...) { KINDLING_LOG(LogLevel::kNormal, ""); }
void log_verbose(const char* fmt, ...) { KINDLING_LOG(LogLevel::kVerbose, ""); }
void log_debug(const char* fmt, ...) { KINDLING_LOG(LogLevel::kDebug, "debug: "); }

}  // namespace kindling

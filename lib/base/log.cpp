#include "base/log.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>

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
void log_warn(const char* fmt, ...) { KINDLING_LOG(LogLevel::kNormal, "warning: "); }
void log_info(const char* fmt, ...) { KINDLING_LOG(LogLevel::kNormal, ""); }
void log_verbose(const char* fmt, ...) { KINDLING_LOG(LogLevel::kVerbose, ""); }
void log_debug(const char* fmt, ...) { KINDLING_LOG(LogLevel::kDebug, "debug: "); }

}  // namespace kindling

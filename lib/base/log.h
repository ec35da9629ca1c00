// printf-style logging to stderr with the tool's name as prefix.
#pragma once

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
// "TOOL: warning: ..." — suppressed by -q.
void log_warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// "TOOL: ..." — suppressed by -q.
void log_info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// -v and -vv.
void log_verbose(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace kindling

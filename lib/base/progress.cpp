#include "base/progress.h"

#include <unistd.h>

#include <cstdio>

#include "base/log.h"

namespace kindling {

bool progress_enabled(bool force_on, bool force_off) {
    if (force_off) return false;
    if (force_on) return true;
    return ::isatty(STDERR_FILENO) && log_level() >= LogLevel::kNormal;
}

void ProgressBar::update(uint64_t done, uint64_t total) {
    if (!enabled_) return;
    constexpr int kWidth = 30;
    double frac = total ? double(done) / double(total) : 1.0;
    int fill = static_cast<int>(frac * kWidth);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    double mbs = secs > 0 ? double(done) / secs / 1e6 : 0;
    char bar[kWidth + 1];
    for (int i = 0; i < kWidth; ++i) bar[i] = i < fill ? '#' : '.';
    bar[kWidth] = '\0';
    std::fprintf(stderr, "\r%s [%s] %3d%% %8.1f MB/s", label_.c_str(), bar,
                 static_cast<int>(frac * 100), mbs);
    std::fflush(stderr);
    drawn_ = true;
}

void ProgressBar::finish() {
    if (drawn_) std::fputc('\n', stderr);
    drawn_ = false;
}

}  // namespace kindling

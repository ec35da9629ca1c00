// A one-line progress bar on stderr, drawn only when enabled (stderr is a terminal,
// or --progress).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace kindling {

// Whether to draw: --no-progress wins, then --progress; otherwise only when stderr
// is a terminal and the log level is not quiet.
bool progress_enabled(bool force_on, bool force_off);

class ProgressBar {
public:
    ProgressBar(std::string label, bool enabled) : label_(std::move(label)), enabled_(enabled) {}
    ~ProgressBar() { finish(); }
    void update(uint64_t done, uint64_t total);
    void finish();

private:
    std::string label_;
    bool enabled_;
    bool drawn_ = false;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace kindling

// Shared helpers of the C++ benchmarks: timing, percentiles, spawning the tools,
// and connecting to a nano guest over hybrid vsock.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "bench/vsock_client.h"

extern char** environ;

namespace bench {

using Clock = std::chrono::steady_clock;
inline double us_since(Clock::time_point t) {
    return std::chrono::duration<double, std::micro>(Clock::now() - t).count();
}

struct Summary {
    double p10, p50, p90, p99;
};
inline Summary summarize(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))]; };
    return {at(0.10), at(0.50), at(0.90), at(0.99)};
}

// One line of percentiles: values divided by `scale` (1000: us -> ms).
inline void print_row(const char* name, const Summary& s, const char* unit, double scale) {
    std::printf("  %-44s p50 %8.2f %s   p10 %8.2f   p90 %8.2f   p99 %8.2f\n", name, s.p50 / scale, unit, s.p10 / scale,
                s.p90 / scale, s.p99 / scale);
}

// posix_spawn of args (args[0] a path); stdin/stdout redirected when >= 0.
inline pid_t spawn(const std::vector<std::string>& args, int stdin_fd = -1, int stdout_fd = -1) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (stdin_fd >= 0) posix_spawn_file_actions_adddup2(&fa, stdin_fd, 0);
    if (stdout_fd >= 0) posix_spawn_file_actions_adddup2(&fa, stdout_fd, 1);
    pid_t pid;
    if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) {
        std::perror(argv[0]);
        std::exit(1);
    }
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

// The exit status, or 128 + the signal that killed it.
inline int wait_exit(pid_t pid) {
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// Retries the hybrid-vsock handshake until the VMM's socket is there and the
// guest accepts, or 5 s pass.
inline bool connect_retry(VsockClient& c, const std::string& uds) {
    auto t = Clock::now();
    while (us_since(t) < 5e6) {
        if (c.connect(uds, 9000)) return true;
        std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    return false;
}

}  // namespace bench

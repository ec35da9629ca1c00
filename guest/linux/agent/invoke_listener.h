// The vsock side of the agent: the same line-framed invoke protocol as nano guests
// (kindling-nano(7) "THE INVOKE PROTOCOL"), so routerd, assignd and snap-make treat
// both guest kinds alike.  INVOKE n + n bytes -> OK m + response | ERR m + Lambda
// error JSON; STATS -> OK m + JSON counters; EXIT status -> OK 0, then the VM stops.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "runtime_api.h"

namespace kindling::agent {

struct ListenerConfig {
    uint32_t port = 9000;
    size_t max_request = 6 * 1024 * 1024;  // Lambda's synchronous payload limit
    size_t max_connections = 16;
};

class InvokeListener {
public:
    // `before_invoke` runs before each invocation (the restore check); `stats`
    // returns the JSON object STATS answers; `exit_vm` stops the machine.
    InvokeListener(ListenerConfig cfg, RuntimeApi& runtime, std::function<void()> before_invoke,
                   std::function<std::string()> stats, std::function<void(int)> exit_vm);

    // Binds AF_VSOCK (any CID) on the port and serves connections, each on its own
    // thread, at most max_connections at once.  Does not return; throws if the
    // socket cannot be set up.
    [[noreturn]] void serve();

private:
    void serve_connection(int fd);

    ListenerConfig cfg_;
    RuntimeApi& runtime_;
    std::function<void()> before_invoke_;
    std::function<std::string()> stats_;
    std::function<void(int)> exit_vm_;
    std::atomic<size_t> live_{0};
};

}  // namespace kindling::agent

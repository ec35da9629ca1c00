// The protocol between routerd and assignd (issue 7).  HTTP/1.1 + JSON on a Unix
// socket (lib/http/http_server), so a person can drive it with curl:
//
//   POST /v1/acquire   {"function": "hello", "version": "1",
//                       "snapshot": {"dir": "/snap/hello"}             -- a local layer
//                                 | {"manifest": "ID", "store": "URI"}  -- through snapfs
//                       "mem_mib": 128, "concurrency": 10, "wait_ms": 5000}
//     200 {"sandbox": "sb-7", "vsock": "/run/kindling/sb-7.sock", "lease": "L7-3",
//          "cold": true, "restore_ms": 3.2, "instance": "9f2c...", "drains": 0}
//         instance: random per assignd process; a new one means leases held
//         from before were voided by a restart.  drains: /v1/drain calls so far;
//         a lease from before a drain must not be held on to (routerd).
//         An idle sandbox of function+version if there is one (warm), else a new
//         one restored from the snapshot (cold).  A burst of N acquires on a cold
//         function places at most N sandboxes, never more (no placement storm).
//     429 {"error": "TooManyRequestsException", "message": "..."}  -- the function's
//         concurrency limit, or host capacity, is reached and no sandbox freed up
//         within wait_ms
//     400 bad request, 503 placement failed (the message says why)
//   POST /v1/release   {"lease": "L7-3", "outcome": "ok" | "error" | "destroy"}
//     204  ok/error: the sandbox goes back to idle; destroy: it is killed (a timed-out
//          invoke: never reuse it).  An unknown or already released lease is 404, and
//          so is the lease of a sandbox that died meanwhile (the message says so).
//   GET  /v1/sandboxes [{"id", "function", "version", "state": "creating|idle|busy|dead",
//                        "pid", "vsock", "invokes", "last_used_ms"}]
//   GET  /v1/instance  {"instance": "9f2c...", "drains": 3}  -- cheap: routerd polls
//                      it while it holds leases, to notice a restart or a drain
//   POST /v1/drain     {"function": "hello"}  (all functions if absent): idle
//                      sandboxes stopped, busy ones stopped on release
//   GET  /metrics      Prometheus text
//
// A sandbox is one `fc-launch --restore` process; its death (pidfd) marks it dead.
#pragma once

#include <cstdint>
#include <string>

namespace kindling {

inline constexpr const char* kAssignAcquirePath = "/v1/acquire";
inline constexpr const char* kAssignReleasePath = "/v1/release";
inline constexpr const char* kAssignSandboxesPath = "/v1/sandboxes";
inline constexpr const char* kAssignDrainPath = "/v1/drain";
inline constexpr const char* kAssignInstancePath = "/v1/instance";

enum class SandboxState { kCreating, kIdle, kBusy, kDead };

inline const char* sandbox_state_name(SandboxState s) {
    switch (s) {
    case SandboxState::kCreating: return "creating";
    case SandboxState::kIdle: return "idle";
    case SandboxState::kBusy: return "busy";
    case SandboxState::kDead: return "dead";
    }
    return "?";
}

}  // namespace kindling

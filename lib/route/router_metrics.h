// routerd's counters and invoke latency, and its /metrics page (Prometheus text).
// Every part of the router counts into one RouterMetrics; all members may be
// updated from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "base/metrics.h"

namespace kindling::route {

struct RouterMetrics {
    // kindling_routerd_invocations_total{type}: invokes accepted, once each.
    std::atomic<uint64_t> invokes_sync{0}, invokes_event{0}, invokes_dry_run{0};
    // kindling_routerd_errors_total{kind}.
    std::atomic<uint64_t> function_errors{0}, timeouts{0}, auth_failures{0}, not_found{0}, too_large{0},
        service_errors{0};
    std::atomic<uint64_t> throttles{0};
    // kindling_routerd_sandbox_starts_total{start}: invokes on a restored sandbox
    // (cold) or one that was idle or held (warm).
    std::atomic<uint64_t> cold_starts{0}, warm_starts{0};
    std::atomic<uint64_t> held_lease_hits{0};
    std::atomic<uint64_t> event_retries{0}, events_dropped{0};
    // kindling_routerd_rejections_total{reason}: 429s for routerd's own bounds.
    std::atomic<uint64_t> rejected_worker_queue{0}, rejected_event_queue{0}, rejected_tenant{0};
    // Seconds from a sync invoke's arrival (an event's start) to its settled answer.
    Histogram invoke_seconds{{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10}};

    struct Gauges {
        size_t held_leases = 0;     // the lease cache's
        size_t queued_invokes = 0;  // waiting for a worker
        size_t pending_events = 0;  // Event invocations accepted, not finished
    };
    // The /metrics page.
    std::string text(const Gauges& g) const;
};

}  // namespace kindling::route

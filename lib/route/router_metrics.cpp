#include "route/router_metrics.h"

namespace kindling::route {

std::string RouterMetrics::text(const Gauges& g) const {
    MetricsText m;
    const char* inv = "kindling_routerd_invocations_total";
    m.family(inv, "counter", "Invocations accepted, by invocation type.");
    m.sample(inv, invokes_sync.load(), "type", "RequestResponse");
    m.sample(inv, invokes_event.load(), "type", "Event");
    m.sample(inv, invokes_dry_run.load(), "type", "DryRun");
    const char* err = "kindling_routerd_errors_total";
    m.family(err, "counter", "Failed requests and invocations, by kind.");
    m.sample(err, function_errors.load(), "kind", "function");
    m.sample(err, timeouts.load(), "kind", "timeout");
    m.sample(err, auth_failures.load(), "kind", "auth");
    m.sample(err, not_found.load(), "kind", "not_found");
    m.sample(err, too_large.load(), "kind", "too_large");
    m.sample(err, service_errors.load(), "kind", "service");
    m.counter("kindling_routerd_throttles_total", "Invocations answered 429 (concurrency limit).", throttles.load());
    const char* starts = "kindling_routerd_sandbox_starts_total";
    m.family(starts, "counter", "Invocations on a restored (cold) or running (warm) sandbox.");
    m.sample(starts, cold_starts.load(), "start", "cold");
    m.sample(starts, warm_starts.load(), "start", "warm");
    m.counter("kindling_routerd_held_lease_hits_total", "Invocations on a lease routerd held (no assignd round trip).",
              held_lease_hits.load());
    m.gauge("kindling_routerd_held_leases", "Leases held for the next invoke.", g.held_leases);
    const char* rej = "kindling_routerd_rejections_total";
    m.family(rej, "counter", "Requests answered 429 for routerd's own bounds, by bound.");
    m.sample(rej, rejected_worker_queue.load(), "reason", "worker_queue");
    m.sample(rej, rejected_event_queue.load(), "reason", "event_queue");
    m.sample(rej, rejected_tenant.load(), "reason", "tenant_concurrency");
    m.gauge("kindling_routerd_queued_invokes", "Invocations waiting for a worker.", g.queued_invokes);
    m.gauge("kindling_routerd_pending_events", "Event invocations accepted and not yet finished.", g.pending_events);
    m.counter("kindling_routerd_event_retries_total", "Event invocations retried.", event_retries.load());
    m.counter("kindling_routerd_events_dropped_total", "Event invocations dropped (retries spent or function gone).",
              events_dropped.load());
    m.histogram("kindling_routerd_invoke_duration_seconds", "Invocation latency in routerd.", invoke_seconds);
    return m.text();
}

}  // namespace kindling::route

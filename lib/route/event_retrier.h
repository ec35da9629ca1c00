// routerd's Event invocations (X-Amz-Invocation-Type: Event): accepted into the
// durable EventQueue, then run on the worker pool; a failed one is retried twice,
// after the retry delay and after twice that, as Lambda does, then dropped.  An event
// whose function or version is gone is dropped.  Delivery is at least once: events
// pending when routerd stopped run again when it starts.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "route/event_queue.h"
#include "route/router_metrics.h"
#include "route/worker_pool.h"

namespace kindling::route {

class EventRetrier {
public:
    enum class Delivery { kDone, kFailed, kFunctionGone };
    // Runs one event on a worker (blocking): its invoke succeeded, failed (retry), or
    // its function or version no longer exists.
    using Deliver = std::function<Delivery(const QueuedEvent&)>;

    // `queue_dir`: EventQueue's (empty: in memory).  Events pending in it start at
    // once.  At most `max_pending` events are accepted and not yet finished (events
    // replayed at start count, and may exceed it).  `workers` and `metrics` must
    // outlive the retrier.
    EventRetrier(const std::string& queue_dir, std::chrono::milliseconds retry_delay, WorkerPool& workers,
                 RouterMetrics& metrics, Deliver deliver, size_t max_pending = 10000);
    ~EventRetrier();
    EventRetrier(const EventRetrier&) = delete;
    EventRetrier& operator=(const EventRetrier&) = delete;

    bool durable() const { return queue_.durable(); }
    // Appends `e` to the queue (fsync'ed: SysError when that fails, and the caller
    // answers 500, not 202), then schedules it now.  False, and nothing queued, when
    // max_pending events are pending (the caller answers 429).
    bool accept(const QueuedEvent& e);
    size_t pending() const { return pending_.load(); }
    // Joins the scheduling thread; scheduled events stay in the queue.  Idempotent.
    void stop();

private:
    struct Scheduled {
        std::chrono::steady_clock::time_point when;
        QueuedEvent event;
        int attempt;
    };
    void schedule(QueuedEvent e, int attempt, std::chrono::steady_clock::time_point when);
    void loop();
    // On a worker.
    void run(const Scheduled& s);
    void finished(const std::string& id);

    EventQueue queue_;
    std::chrono::milliseconds retry_delay_;
    WorkerPool& workers_;
    RouterMetrics& metrics_;
    Deliver deliver_;
    const size_t max_pending_;
    std::atomic<size_t> pending_{0};  // accepted (or replayed), not yet done or dropped

    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<Scheduled> scheduled_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace kindling::route

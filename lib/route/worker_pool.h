// routerd's worker threads: what may block (an assignd round trip, an Event's fsync,
// a cold start, a Log-Type: Tail invoke) runs here, never on the HTTP I/O thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kindling::route {

class WorkerPool {
public:
    // Starts `threads` workers (at least one); try_submit() queues at most
    // `max_queued` jobs that no worker has started yet.
    explicit WorkerPool(unsigned threads, size_t max_queued = 1024);
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    // Runs `job` on a worker, first come first served.  An exception it throws is
    // logged.  After stop() the job is dropped.
    // Always queued: for the router's own work (giving leases back), which must not
    // be lost and is bounded by what it follows.
    void submit(std::function<void()> job);
    // Like submit(), unless max_queued jobs are already waiting: then false and the
    // job is not queued (the caller answers 429).  For work a client asked for.
    bool try_submit(std::function<void()> job);
    size_t queued();
    // Joins the workers once their running jobs return; jobs not started are
    // dropped.  Idempotent.
    void stop();

private:
    void loop();

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    size_t max_queued_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace kindling::route

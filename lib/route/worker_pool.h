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
    // Starts `threads` workers (at least one).
    explicit WorkerPool(unsigned threads);
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    // Runs `job` on a worker, first come first served.  An exception it throws is
    // logged.  After stop() the job is dropped.
    void submit(std::function<void()> job);
    // Joins the workers once their running jobs return; jobs not started are
    // dropped.  Idempotent.
    void stop();

private:
    void loop();

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace kindling::route

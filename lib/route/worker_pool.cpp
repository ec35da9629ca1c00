#include "route/worker_pool.h"

#include <algorithm>
#include <exception>

#include "base/log.h"

namespace kindling::route {

WorkerPool::WorkerPool(unsigned threads, size_t max_queued) : max_queued_(max_queued) {
    for (unsigned i = 0; i < std::max(1u, threads); ++i) threads_.emplace_back([this] { loop(); });
}

WorkerPool::~WorkerPool() { stop(); }

void WorkerPool::stop() {
    {
        std::lock_guard lk(mu_);
        if (stopping_) return;
        stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
    jobs_.clear();
}

void WorkerPool::submit(std::function<void()> job) {
    {
        std::lock_guard lk(mu_);
        if (stopping_) return;
        jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
}

bool WorkerPool::try_submit(std::function<void()> job) {
    {
        std::lock_guard lk(mu_);
        if (stopping_) return true;  // dropped, as submit() drops it
        if (jobs_.size() >= max_queued_) return false;
        jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
    return true;
}

size_t WorkerPool::queued() {
    std::lock_guard lk(mu_);
    return jobs_.size();
}

void WorkerPool::loop() {
    for (;;) {
        std::function<void()> job;
        {
            std::unique_lock lk(mu_);
            cv_.wait(lk, [&] { return stopping_ || !jobs_.empty(); });
            if (stopping_) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        try {
            job();
        } catch (const std::exception& e) {
            log_error("worker: %s", e.what());
        }
    }
}

}  // namespace kindling::route

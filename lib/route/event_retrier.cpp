#include "route/event_retrier.h"

#include <memory>

#include "base/log.h"

namespace kindling::route {

using SteadyClock = std::chrono::steady_clock;

EventRetrier::EventRetrier(const std::string& queue_dir, std::chrono::milliseconds retry_delay,
                           WorkerPool& workers, RouterMetrics& metrics, Deliver deliver, size_t max_pending)
    : queue_(queue_dir),
      retry_delay_(retry_delay),
      workers_(workers),
      metrics_(metrics),
      deliver_(std::move(deliver)),
      max_pending_(max_pending) {
    if (!queue_.durable()) log_warn("no --queue-dir: Event invocations are kept in memory only");
    auto now = SteadyClock::now();
    for (auto& e : queue_.take_pending()) {
        ++pending_;
        schedule(std::move(e), 0, now);
    }
    thread_ = std::thread([this] { loop(); });
}

EventRetrier::~EventRetrier() { stop(); }

void EventRetrier::stop() {
    {
        std::lock_guard lk(mu_);
        if (stopping_) return;
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

bool EventRetrier::accept(const QueuedEvent& e) {
    if (++pending_ > max_pending_) {
        --pending_;
        return false;
    }
    try {
        queue_.append(e);  // fsync'ed before the 202
    } catch (...) {
        --pending_;
        throw;
    }
    schedule(e, 0, SteadyClock::now());
    return true;
}

void EventRetrier::finished(const std::string& id) {
    queue_.done(id);
    --pending_;
}

void EventRetrier::schedule(QueuedEvent e, int attempt, SteadyClock::time_point when) {
    {
        std::lock_guard lk(mu_);
        scheduled_.push_back(Scheduled{when, std::move(e), attempt});
    }
    cv_.notify_one();
}

void EventRetrier::loop() {
    std::unique_lock lk(mu_);
    while (!stopping_) {
        auto now = SteadyClock::now();
        auto next = now + std::chrono::seconds(1);
        for (size_t i = 0; i < scheduled_.size();) {
            if (scheduled_[i].when <= now) {
                Scheduled s = std::move(scheduled_[i]);
                scheduled_.erase(scheduled_.begin() + static_cast<long>(i));
                // Events already accepted are never lost: with every worker busy and
                // the job queue full, try again shortly.
                auto job = std::make_shared<Scheduled>(std::move(s));
                if (!workers_.try_submit([this, job] { run(*job); })) {
                    job->when = now + std::chrono::milliseconds(50);
                    scheduled_.push_back(std::move(*job));
                    next = std::min(next, now + std::chrono::milliseconds(50));
                    break;
                }
                continue;
            }
            next = std::min(next, scheduled_[i].when);
            ++i;
        }
        cv_.wait_until(lk, next);
    }
}

void EventRetrier::run(const Scheduled& s) {
    const QueuedEvent& e = s.event;
    switch (deliver_(e)) {
    case Delivery::kDone:
        log_verbose("event %s: %s:%s done", e.id.c_str(), e.function.c_str(), e.version.c_str());
        finished(e.id);
        return;
    case Delivery::kFunctionGone:
        log_warn("event %s: function %s:%s no longer exists; dropped", e.id.c_str(), e.function.c_str(),
                 e.version.c_str());
        metrics_.events_dropped++;
        finished(e.id);
        return;
    case Delivery::kFailed:
        if (s.attempt < 2) {
            metrics_.event_retries++;
            auto delay = retry_delay_ * (1 << s.attempt);
            log_info("event %s: %s:%s failed (attempt %d); retrying in %lld ms", e.id.c_str(), e.function.c_str(),
                     e.version.c_str(), s.attempt + 1, static_cast<long long>(delay.count()));
            schedule(e, s.attempt + 1, SteadyClock::now() + delay);
        } else {
            metrics_.events_dropped++;
            log_warn("event %s: %s:%s failed 3 times; dropped", e.id.c_str(), e.function.c_str(), e.version.c_str());
            finished(e.id);
        }
        return;
    }
}

}  // namespace kindling::route

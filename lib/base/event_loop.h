// A small epoll event loop: fd readiness callbacks, cross-thread wakeups, timers.
// Callbacks run on the thread that calls run()/run_once(); add/remove are
// thread-safe with respect to each other but a callback must not be removed while
// another thread is dispatching it (the owner removes its fds from the loop thread).
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "base/fd.h"

namespace kindling {

class EventLoop {
public:
    using Callback = std::function<void(uint32_t events)>;

    EventLoop();
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    void add(int fd, uint32_t events, Callback cb);
    void modify(int fd, uint32_t events);
    void remove(int fd);

    // Waits up to timeout_ms (-1 forever) and dispatches ready callbacks.
    // Returns the number dispatched (0 on timeout or wakeup).
    int run_once(int timeout_ms);
    // Runs until stop() is called.
    void run();
    void stop();
    bool stopped() const;
    // Clears a stop() so run() can be called again.
    void rearm();

    // Wakes a thread blocked in run_once() (safe from any thread or signal handler).
    void wake();

    int epoll_fd() const { return epfd_.get(); }

private:
    UniqueFd epfd_;
    UniqueFd wake_fd_;
    std::mutex mu_;
    std::unordered_map<int, std::shared_ptr<Callback>> callbacks_;
    bool stop_ = false;
};

}  // namespace kindling

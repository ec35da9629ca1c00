#include "base/event_loop.h"

#include <sys/eventfd.h>

#include <cerrno>
#include <vector>

#include "base/error.h"

namespace kindling {

EventLoop::EventLoop() {
    epfd_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epfd_) throw_errno("epoll_create1");
    wake_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_fd_) throw_errno("eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_.get();
    if (::epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &ev) < 0) throw_errno("epoll_ctl");
}

EventLoop::~EventLoop() = default;

void EventLoop::add(int fd, uint32_t events, Callback cb) {
    std::lock_guard lk(mu_);
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (::epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) throw_errno("epoll_ctl add");
    callbacks_[fd] = std::make_shared<Callback>(std::move(cb));
}

void EventLoop::modify(int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (::epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, fd, &ev) < 0) throw_errno("epoll_ctl mod");
}

void EventLoop::remove(int fd) {
    std::lock_guard lk(mu_);
    ::epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr);
    callbacks_.erase(fd);
}

int EventLoop::run_once(int timeout_ms) {
    epoll_event evs[32];
    int n = ::epoll_wait(epfd_.get(), evs, 32, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return 0;
        throw_errno("epoll_wait");
    }
    int dispatched = 0;
    for (int i = 0; i < n; ++i) {
        int fd = evs[i].data.fd;
        if (fd == wake_fd_.get()) {
            uint64_t v;
            (void)!::read(fd, &v, sizeof v);
            continue;
        }
        std::shared_ptr<Callback> cb;
        {
            std::lock_guard lk(mu_);
            auto it = callbacks_.find(fd);
            if (it == callbacks_.end()) continue;
            cb = it->second;
        }
        (*cb)(evs[i].events);
        ++dispatched;
    }
    return dispatched;
}

void EventLoop::run() {
    while (!stopped()) run_once(-1);
}

void EventLoop::stop() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    wake();
}

void EventLoop::rearm() {
    std::lock_guard lk(mu_);
    stop_ = false;
}

bool EventLoop::stopped() const {
    std::lock_guard lk(const_cast<std::mutex&>(mu_));
    return stop_;
}

void EventLoop::wake() {
    uint64_t one = 1;
    (void)!::write(wake_fd_.get(), &one, sizeof one);
}

}  // namespace kindling

#include "devices/virtio/vsock_muxer.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/log.h"

namespace kindling {

namespace {

constexpr size_t kMaxHandshakeLine = 32;  // "CONNECT 4294967295\n" is 19
constexpr size_t kMaxRstQueue = 4096;
constexpr uint32_t kConnEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
constexpr int kListenBacklog = 128;

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

}  // namespace

VsockMuxer::VsockMuxer(uint64_t guest_cid, std::string uds_path, EventLoop& loop, VsockOptions opts, Dispatch dispatch)
    : guest_cid_(guest_cid), loop_(loop), opts_(opts), dispatch_(std::move(dispatch)) {
    if (opts_.buf_alloc == 0) throw ConfigError("vsock: buf_alloc must not be 0");
    timer_fd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
    if (!timer_fd_) throw_errno("vsock: timerfd_create");
    listener_ = listen_unix(uds_path, "vsock", SOCK_NONBLOCK, kListenBacklog);
    try {
        loop_.add(listener_.fd.get(), EPOLLIN, [this](uint32_t) { dispatch_([&] { on_listen(); }); });
        loop_.add(timer_fd_.get(), EPOLLIN, [this](uint32_t) { dispatch_([&] { on_timer(); }); });
    } catch (...) {
        loop_.remove(listener_.fd.get());
        listener_.remove_path();
        throw;
    }
}

VsockMuxer::~VsockMuxer() {
    close_all();
    loop_.remove(timer_fd_.get());
    loop_.remove(listener_.fd.get());
    listener_.remove_path();  // only if it is still ours (not replaced by someone else)
}

// ---- the connection table -------------------------------------------------------

VsockConnection* VsockMuxer::find(uint64_t id) {
    auto it = conns_.find(id);
    return it == conns_.end() ? nullptr : it->second.get();
}

VsockConnection& VsockMuxer::add_connection(UniqueFd fd, VsockConnection::State st) {
    const uint64_t id = next_id_++;
    const int raw = fd.get();
    VsockConnection::Owner& owner = *this;
    auto c = std::make_unique<VsockConnection>(owner, opts_, guest_cid_, id, std::move(fd), st);
    VsockConnection& ref = *c;
    conns_.emplace(id, std::move(c));
    try {
        loop_.add(raw, kConnEvents, [this, id](uint32_t ev) { dispatch_([&] { on_conn_event(id, ev); }); });
    } catch (...) {
        conns_.erase(id);
        throw;
    }
    return ref;
}

void VsockMuxer::close(VsockConnection& c, bool rst_to_guest) {
    // A guest that already heard of the connection must hear of its end.
    if (rst_to_guest && c.guest_knows()) queue_rst(c.host_port, c.guest_port);
    loop_.remove(c.fd.get());
    if (c.state != VsockConnection::State::kHandshake) {
        by_key_.erase(key(c.host_port, c.guest_port));
        if (c.host_initiated) local_ports_.erase(c.host_port);
    }
    conns_.erase(c.id);  // closes the socket; ready_ entries for it are skipped
}

void VsockMuxer::close_all() {
    for (auto& [id, c] : conns_) loop_.remove(c->fd.get());
    conns_.clear();
    by_key_.clear();
    local_ports_.clear();
    ready_.clear();
    rst_queue_.clear();
    arm_timer();
}

void VsockMuxer::forget_guest_connections() {
    std::vector<uint64_t> known;
    for (auto& [id, c] : conns_)
        if (c->guest_knows()) known.push_back(id);
    for (uint64_t id : known) close(*conns_.at(id), false);
    rst_queue_.clear();
}

// ---- deadlines ------------------------------------------------------------------

void VsockMuxer::set_deadline(VsockConnection& c, Clock::time_point t) {
    c.deadline = t;
    if (t < timer_at_) arm_timer();
}

void VsockMuxer::arm_timer() {
    Clock::time_point next = Clock::time_point::max();
    for (auto& [id, c] : conns_) next = std::min(next, c->deadline);
    timer_at_ = next;
    itimerspec its{};
    if (next != Clock::time_point::max()) {
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(next - Clock::now()).count();
        if (ns < 1) ns = 1;  // 0 would disarm
        its.it_value.tv_sec = ns / 1000000000;
        its.it_value.tv_nsec = ns % 1000000000;
    }
    ::timerfd_settime(timer_fd_.get(), 0, &its, nullptr);
}

void VsockMuxer::on_timer() {
    uint64_t ticks;
    (void)!::read(timer_fd_.get(), &ticks, sizeof ticks);
    auto now = Clock::now();
    std::vector<uint64_t> expired;
    for (auto& [id, c] : conns_)
        if (c->deadline <= now) expired.push_back(id);
    for (uint64_t id : expired) {
        VsockConnection* c = find(id);
        if (!c) continue;
        log_verbose("vsock: %s connection (host port %u, guest port %u) timed out",
                    c->state == VsockConnection::State::kHandshake    ? "handshake of"
                    : c->state == VsockConnection::State::kConnecting ? "guest did not answer"
                                                                      : "closing",
                    c->host_port, c->guest_port);
        close(*c, true);
    }
    arm_timer();
}

// ---- host -> guest: the listener and the CONNECT handshake -----------------------

void VsockMuxer::on_listen() {
    for (;;) {
        int fd = ::accept4(listener_.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (!would_block(errno)) log_warn("vsock: accept on %s: %s", listener_.path.c_str(), std::strerror(errno));
            return;
        }
        UniqueFd cfd(fd);
        if (conns_.size() >= opts_.max_connections) {
            log_warn("vsock: %s: refusing a host connection: %zu connections open (the VM's limit)",
                     listener_.path.c_str(), conns_.size());
            continue;
        }
        VsockConnection& c = add_connection(std::move(cfd), VsockConnection::State::kHandshake);
        c.host_initiated = true;
        set_deadline(c, Clock::now() + opts_.connect_timeout);
        read_handshake(c);  // the line may already be there
    }
}

void VsockMuxer::read_handshake(VsockConnection& c) {
    // Peek first, so bytes after the line stay in the socket for the guest.
    char buf[kMaxHandshakeLine];
    ssize_t n;
    do n = ::recv(c.fd.get(), buf, sizeof buf, MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && would_block(errno)) return;
    if (n <= 0) {
        close(c, false);
        return;
    }
    auto* nl = static_cast<char*>(std::memchr(buf, '\n', static_cast<size_t>(n)));
    if (!nl) {
        if (static_cast<size_t>(n) == sizeof buf) {
            log_verbose("vsock: host client sent no \"CONNECT <port>\" line; closing it");
            close(c, false);
        }
        return;
    }
    size_t line = static_cast<size_t>(nl - buf) + 1;
    (void)!::recv(c.fd.get(), buf, line, 0);  // consume exactly the line
    // Firecracker's format: "CONNECT <decimal port>\n".
    std::string_view s(buf, line - 1);
    uint64_t port = 0;
    bool ok = s.substr(0, 8) == "CONNECT " && s.size() > 8 && s.size() <= 8 + 10;
    for (size_t i = 8; ok && i < s.size(); ++i) {
        ok = s[i] >= '0' && s[i] <= '9';
        port = port * 10 + static_cast<uint64_t>(s[i] - '0');
    }
    if (!ok || port > 0xffffffffull) {
        log_verbose("vsock: bad host handshake \"%.*s\"; closing it", static_cast<int>(s.size()), s.data());
        close(c, false);
        return;
    }
    // A fresh local port: no two host-initiated connections share one.
    uint32_t lp = next_local_port_;
    while (local_ports_.count(lp) || by_key_.count(key(lp, static_cast<uint32_t>(port)))) {
        if (++lp == 0) lp = 1u << 30;
    }
    next_local_port_ = lp + 1 == 0 ? 1u << 30 : lp + 1;
    local_ports_.insert(lp);
    c.connect_to_guest(lp, static_cast<uint32_t>(port));
    by_key_[key(c.host_port, c.guest_port)] = &c;
    set_deadline(c, Clock::now() + opts_.connect_timeout);
    schedule(c);
}

void VsockMuxer::on_conn_event(uint64_t id, uint32_t events) {
    VsockConnection* c = find(id);
    if (!c) return;  // closed while the event was in flight
    if (c->state == VsockConnection::State::kHandshake)
        read_handshake(*c);
    else
        c->on_host_event(events);
}

// ---- guest -> host ---------------------------------------------------------------

void VsockMuxer::on_guest_packet(const VsockTxPacket& p) {
    const VsockHeader& h = p.header();
    if (h.src_cid != guest_cid_) {
        // A guest cannot speak for another CID; drop without a reply (§5.10.6.6).
        log_debug("vsock: dropping packet from CID %" PRIu64 " (guest is %" PRIu64 ")", h.src_cid, guest_cid_);
        return;
    }
    if (h.dst_cid != kVsockHostCid || h.type != kVsockTypeStream) {
        if (h.op != kVsockOpRst) queue_rst(h.dst_port, h.src_port);
        return;
    }
    auto it = by_key_.find(key(h.dst_port, h.src_port));
    if (it == by_key_.end()) {
        if (h.op == kVsockOpRequest)
            guest_connect(h);
        else if (h.op != kVsockOpRst)
            queue_rst(h.dst_port, h.src_port);  // §5.10.6.6: unknown connection
        return;
    }
    it->second->on_guest_packet(p);
}

void VsockMuxer::guest_connect(const VsockHeader& h) {
    if (conns_.size() >= opts_.max_connections) {
        log_warn("vsock: %s: refusing guest connection to port %u: %zu connections open (the VM's limit)",
                 listener_.path.c_str(), h.dst_port, conns_.size());
        queue_rst(h.dst_port, h.src_port);
        return;
    }
    const std::string path = listener_.path + "_" + std::to_string(h.dst_port);
    int err = 0;
    UniqueFd fd = try_connect_unix(path, &err, SOCK_NONBLOCK);
    if (!fd) {
        log_verbose("vsock: guest connection to port %u: %s: %s", h.dst_port, path.c_str(), std::strerror(err));
        queue_rst(h.dst_port, h.src_port);
        return;
    }
    VsockConnection& c = add_connection(std::move(fd), VsockConnection::State::kEstablished);
    c.accept_from_guest(h);
    by_key_[key(c.host_port, c.guest_port)] = &c;
    schedule(c);
}

// ---- host -> guest: the rx queue ---------------------------------------------------

void VsockMuxer::queue_rst(uint32_t host_port, uint32_t guest_port) {
    if (rst_queue_.size() >= kMaxRstQueue) {
        log_debug("vsock: RST queue full; dropping RST for guest port %u", guest_port);
        return;
    }
    rst_queue_.push_back(vsock_host_header(guest_cid_, host_port, guest_port, kVsockOpRst));
}

void VsockMuxer::schedule(VsockConnection& c) {
    if (!c.queued && c.wants_rx()) {
        c.queued = true;
        ready_.push_back(c.id);
    }
}

bool VsockMuxer::send_owed_rsts(VsockRxQueue& rx) {
    while (!rst_queue_.empty()) {
        if (!rx.send_control(rst_queue_.front())) return false;
        rst_queue_.pop_front();
    }
    return true;
}

void VsockMuxer::deliver(VsockRxQueue& rx) {
    // One pass fills every rx buffer the guest has given us; the device raises the
    // interrupt once for the whole batch.
    if (!send_owed_rsts(rx)) return;
    while (!ready_.empty()) {
        uint64_t id = ready_.front();
        ready_.pop_front();
        VsockConnection* c = find(id);
        if (!c) continue;
        c->queued = false;
        switch (c->fill_rx(rx)) {
        case VsockConnection::Serviced::kNoBuffers:
            c->queued = true;
            ready_.push_front(id);
            return;
        case VsockConnection::Serviced::kClosed:
            break;
        case VsockConnection::Serviced::kSent:
            schedule(*c);  // to the back: connections take turns
            break;
        }
        // A close above may have queued an RST.
        if (!send_owed_rsts(rx)) return;
    }
}

}  // namespace kindling

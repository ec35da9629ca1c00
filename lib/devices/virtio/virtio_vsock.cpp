#include "devices/virtio/virtio_vsock.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>

#include <cerrno>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <cstring>

#include "base/error.h"
#include "base/log.h"
#include "devices/interrupt.h"

namespace kindling {

namespace {

constexpr size_t kHdr = sizeof(VsockHeader);
constexpr size_t kMaxHandshakeLine = 32;  // "CONNECT 4294967295\n" is 19
constexpr size_t kMaxRstQueue = 4096;
constexpr uint32_t kEventTransportReset = 0;  // §5.10.6.7 VIRTIO_VSOCK_EVENT_TRANSPORT_RESET
constexpr uint32_t kConnEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

sockaddr_un unix_addr(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.size() >= sizeof a.sun_path) throw SysError("vsock: " + path, ENAMETOOLONG);
    std::memcpy(a.sun_path, path.data(), path.size());
    return a;
}

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

}  // namespace

// ---- device ------------------------------------------------------------------

VirtioVsock::VirtioVsock(uint64_t guest_cid, std::string uds_path, EventLoop& loop, Options opts)
    : guest_cid_(guest_cid), uds_path_(std::move(uds_path)), loop_(loop), opts_(opts) {
    if (opts_.buf_alloc == 0) throw ConfigError("vsock: buf_alloc must not be 0");
    timer_fd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
    if (!timer_fd_) throw_errno("vsock: timerfd_create");
    listen_socket();
    try {
        loop_.add(listen_fd_.get(), EPOLLIN, [this](uint32_t) { from_loop([&] { on_listen(); }); });
        loop_.add(timer_fd_.get(), EPOLLIN, [this](uint32_t) { from_loop([&] { on_timer(); }); });
    } catch (...) {
        loop_.remove(listen_fd_.get());
        ::unlink(uds_path_.c_str());
        throw;
    }
}

VirtioVsock::~VirtioVsock() {
    std::lock_guard lk(mu_);
    close_all();
    loop_.remove(timer_fd_.get());
    loop_.remove(listen_fd_.get());
    // Remove the socket file only if it is still ours (not replaced by someone else).
    struct stat st {};
    if (::lstat(uds_path_.c_str(), &st) == 0 && st.st_dev == listen_dev_ && st.st_ino == listen_ino_)
        ::unlink(uds_path_.c_str());
}

void VirtioVsock::listen_socket() {
    sockaddr_un addr = unix_addr(uds_path_);
    listen_fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!listen_fd_) throw_errno("vsock: socket");
    if (::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
        if (errno != EADDRINUSE) throw_errno("vsock: bind " + uds_path_);
        // Something is at the path.  Replace it only if it is a socket nobody listens on.
        struct stat st {};
        if (::lstat(uds_path_.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode))
            throw SysError("vsock: " + uds_path_ + " exists and is not a socket", EADDRINUSE);
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!probe) throw_errno("vsock: socket");
        if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 || would_block(errno))
            throw SysError("vsock: " + uds_path_ + ": another process is listening there", EADDRINUSE);
        if (errno != ECONNREFUSED && errno != ENOENT) throw_errno("vsock: probe " + uds_path_);
        log_verbose("vsock: replacing stale socket %s", uds_path_.c_str());
        if (::unlink(uds_path_.c_str()) < 0 && errno != ENOENT) throw_errno("vsock: unlink " + uds_path_);
        if (::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
            throw_errno("vsock: bind " + uds_path_);
    }
    struct stat st {};
    if (::stat(uds_path_.c_str(), &st) == 0) {
        listen_dev_ = st.st_dev;
        listen_ino_ = st.st_ino;
    }
    if (::listen(listen_fd_.get(), 128) < 0) {
        int err = errno;
        ::unlink(uds_path_.c_str());
        throw SysError("vsock: listen " + uds_path_, err);
    }
}

uint64_t VirtioVsock::device_features() const {
    return 1ull << 0;  // VIRTIO_VSOCK_F_STREAM (§5.10.3)
}

void VirtioVsock::read_config(uint64_t offset, uint8_t* data, size_t len) {
    // §5.10.4: struct virtio_vsock_config { le64 guest_cid; }
    uint64_t cid = guest_cid_;
    if (offset >= sizeof cid) return;
    std::memcpy(data, reinterpret_cast<const uint8_t*>(&cid) + offset, std::min<uint64_t>(len, sizeof cid - offset));
}

void VirtioVsock::activate(std::span<Virtqueue> queues, Interrupt& used, uint64_t acked_features) {
    rxq_ = &queues[0];
    txq_ = &queues[1];
    evq_ = &queues[2];
    used_ = &used;
    acked_features_ = acked_features;
    // Host clients may have connected before the driver came up.
    deliver_rx();
    signal_guest();
}

void VirtioVsock::reset() {
    // The guest forgot every connection with its driver; so do we.  Host clients
    // the guest has not heard of yet (Linux resets every device at probe) wait for
    // the new driver.
    std::vector<uint64_t> known;
    for (auto& [id, c] : conns_)
        if (c->state != State::kHandshake && !(c->state == State::kConnecting && !c->request_sent)) known.push_back(id);
    for (uint64_t id : known) close_connection(*conns_.at(id), false);
    rst_queue_.clear();
    reset_owed_ = false;  // a new driver starts with no connections to drop
    acked_features_ = 0;
    rxq_ = txq_ = evq_ = nullptr;
    used_ = nullptr;
}

void VirtioVsock::notify(uint16_t queue) {
    if (!rxq_) return;
    try {
        if (queue == 1) process_tx();
        // rx: new buffers may unblock connections; tx: replies and credit may be owed;
        // event: a buffer for an owed TRANSPORT_RESET, which rx traffic waits behind.
        if (queue <= 1 || reset_owed_) deliver_rx();
    } catch (const std::exception& e) {  // never into the vCPU thread
        log_warn("virtio-vsock: %s", e.what());
    }
    signal_guest();
}

size_t VirtioVsock::connection_count() {
    std::lock_guard lk(mu_);
    return conns_.size();
}

void VirtioVsock::reset_connections() {
    std::lock_guard lk(mu_);
    close_all();
}

bool VirtioVsock::send_transport_reset() {
    std::lock_guard lk(mu_);
    if (!push_transport_reset()) return false;
    signal_guest();
    return true;
}

bool VirtioVsock::push_transport_reset() {
    if (!evq_ || !evq_->pop(chain_)) return false;
    uint32_t id = kEventTransportReset;
    if (chain_.writable_bytes < sizeof id) {
        evq_->fail("event buffer at head %u has %" PRIu64 " writable bytes, less than an event (4)", chain_.head,
                   chain_.writable_bytes);
        return false;
    }
    chain_.write(0, &id, sizeof id);
    evq_->push(chain_.head, sizeof id);
    return true;
}

bool VirtioVsock::deliver_owed_reset() {
    if (!reset_owed_) return true;
    if (!evq_ || evq_->failed()) return false;
    if (!evq_->started()) {
        // The driver made no event queue ready: it cannot hear of resets, and rx
        // must not wait for one forever.
        reset_owed_ = false;
        return true;
    }
    if (!evq_->has_available()) return false;
    discard_tx();
    if (!push_transport_reset()) return false;
    reset_owed_ = false;
    return true;
}

void VirtioVsock::discard_tx() {
    // While a TRANSPORT_RESET is owed, everything on tx was queued before the guest
    // could know of it: packets of connections the reset ends.  Give the buffers
    // back unread; any answer (RST, or a host connection for an old REQUEST) would
    // only reach a guest that is about to drop everything.
    size_t n = 0;
    while (txq_ && txq_->pop(chain_)) {
        txq_->push(chain_.head, 0);
        ++n;
    }
    if (n) log_verbose("vsock: discarded %zu packets the guest queued before the transport reset", n);
}

VirtioVsockState VirtioVsock::save() {
    std::lock_guard lk(mu_);
    if (!conns_.empty()) log_verbose("vsock: snapshot: closing %zu connections", conns_.size());
    close_all();
    // The running guest still believes in its connections: if this VM resumes it
    // must drop them as well (Firecracker sends the event on SnapshotCreate).
    if (rxq_) reset_owed_ = true;
    return {guest_cid_, acked_features_, next_local_port_};
}

void VirtioVsock::restore(const VirtioVsockState& s, const std::string& what) {
    std::lock_guard lk(mu_);
    if (s.next_local_port < (1u << 30))
        throw DataError(what + ": next local port " + std::to_string(s.next_local_port) + " is below 2^30");
    if (rxq_ && s.acked_features != acked_features_) {
        char msg[160];
        std::snprintf(msg, sizeof msg, ": features 0x%" PRIx64 " differ from the transport's negotiated 0x%" PRIx64,
                      s.acked_features, acked_features_);
        throw DataError(what + msg);
    }
    if (s.guest_cid != guest_cid_)
        log_verbose("vsock: restored with guest CID %" PRIu64 " (was %" PRIu64 "); the guest re-reads it on reset",
                    guest_cid_, s.guest_cid);
    next_local_port_ = s.next_local_port;
    if (!rxq_) return;  // the driver is not running: it will reset the device first
    reset_owed_ = true;
    try {
        deliver_rx();
    } catch (const std::exception& e) {
        log_warn("virtio-vsock: %s", e.what());
    }
    signal_guest();
}

bool VirtioVsock::transport_reset_pending() {
    std::lock_guard lk(mu_);
    return reset_owed_;
}

namespace {

enum VsockField : uint16_t {
    kFieldGuestCid = 1,
    kFieldAckedFeatures = 2,
    kFieldNextLocalPort = 3,
};

}  // namespace

void VirtioVsock::save_to(TlvWriter& out) {
    const VirtioVsockState s = save();
    out.integer(kFieldGuestCid, s.guest_cid);
    out.integer(kFieldAckedFeatures, s.acked_features);
    out.integer(kFieldNextLocalPort, s.next_local_port);
}

void VirtioVsock::restore_from(TlvReader& in) {
    TlvFields f(in);
    VirtioVsockState s;
    s.guest_cid = f.integer<uint64_t>(kFieldGuestCid, "guest_cid");
    s.acked_features = f.integer<uint64_t>(kFieldAckedFeatures, "acked_features");
    s.next_local_port = f.integer<uint32_t>(kFieldNextLocalPort, "next_local_port");
    f.finish();
    restore(s, in.context());
}

void VirtioVsock::signal_guest() {
    if (!used_) return;
    bool n = false;
    for (Virtqueue* q : {rxq_, txq_, evq_}) n |= q->take_notify_needed();
    if (n) used_->trigger();
}

template <class Fn>
void VirtioVsock::from_loop(Fn&& fn) {
    std::lock_guard lk(mu_);
    try {
        fn();
        deliver_rx();
        signal_guest();
    } catch (const std::exception& e) {
        log_warn("virtio-vsock: %s", e.what());
    }
}

// ---- connections --------------------------------------------------------------

VirtioVsock::Connection* VirtioVsock::find(uint64_t id) {
    auto it = conns_.find(id);
    return it == conns_.end() ? nullptr : it->second.get();
}

VirtioVsock::Connection& VirtioVsock::add_connection(UniqueFd fd, State st) {
    auto c = std::make_unique<Connection>();
    c->id = next_id_++;
    c->state = st;
    int raw = fd.get();
    c->fd = std::move(fd);
    uint64_t id = c->id;
    Connection& ref = *c;
    conns_.emplace(id, std::move(c));
    try {
        loop_.add(raw, kConnEvents, [this, id](uint32_t ev) { from_loop([&] { on_conn_event(id, ev); }); });
    } catch (...) {
        conns_.erase(id);
        throw;
    }
    return ref;
}

void VirtioVsock::close_connection(Connection& c, bool rst_to_guest) {
    // A guest that already heard of the connection must hear of its end.
    bool guest_knows = c.state == State::kEstablished || c.state == State::kClosing ||
                       (c.state == State::kConnecting && c.request_sent);
    if (rst_to_guest && guest_knows) queue_rst(c.host_port, c.guest_port);
    loop_.remove(c.fd.get());
    if (c.state != State::kHandshake) {
        by_key_.erase(key(c.host_port, c.guest_port));
        if (c.host_initiated) local_ports_.erase(c.host_port);
    }
    conns_.erase(c.id);  // closes the socket; ready_ entries for it are skipped
}

void VirtioVsock::close_all() {
    for (auto& [id, c] : conns_) loop_.remove(c->fd.get());
    conns_.clear();
    by_key_.clear();
    local_ports_.clear();
    ready_.clear();
    rst_queue_.clear();
    arm_timer();
}

void VirtioVsock::set_deadline(Connection& c, Clock::time_point t) {
    c.deadline = t;
    if (t < timer_at_) arm_timer();
}

void VirtioVsock::arm_timer() {
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

void VirtioVsock::on_timer() {
    uint64_t ticks;
    (void)!::read(timer_fd_.get(), &ticks, sizeof ticks);
    auto now = Clock::now();
    std::vector<uint64_t> expired;
    for (auto& [id, c] : conns_)
        if (c->deadline <= now) expired.push_back(id);
    for (uint64_t id : expired) {
        Connection* c = find(id);
        if (!c) continue;
        log_verbose("vsock: %s connection (host port %u, guest port %u) timed out",
                    c->state == State::kHandshake   ? "handshake of"
                    : c->state == State::kConnecting ? "guest did not answer"
                                                     : "closing",
                    c->host_port, c->guest_port);
        close_connection(*c, true);
    }
    arm_timer();
}

void VirtioVsock::on_listen() {
    for (;;) {
        int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (!would_block(errno)) log_warn("vsock: accept on %s: %s", uds_path_.c_str(), std::strerror(errno));
            return;
        }
        UniqueFd cfd(fd);
        if (conns_.size() >= opts_.max_connections) {
            log_warn("vsock: %s: refusing a host connection: %zu connections open", uds_path_.c_str(), conns_.size());
            continue;
        }
        Connection& c = add_connection(std::move(cfd), State::kHandshake);
        c.host_initiated = true;
        set_deadline(c, Clock::now() + opts_.connect_timeout);
        read_handshake(c);  // the line may already be there
    }
}

void VirtioVsock::read_handshake(Connection& c) {
    // Peek first, so bytes after the line stay in the socket for the guest.
    char buf[kMaxHandshakeLine];
    ssize_t n;
    do n = ::recv(c.fd.get(), buf, sizeof buf, MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && would_block(errno)) return;
    if (n <= 0) {
        close_connection(c, false);
        return;
    }
    auto* nl = static_cast<char*>(std::memchr(buf, '\n', static_cast<size_t>(n)));
    if (!nl) {
        if (static_cast<size_t>(n) == sizeof buf) {
            log_verbose("vsock: host client sent no \"CONNECT <port>\" line; closing it");
            close_connection(c, false);
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
        close_connection(c, false);
        return;
    }
    // A fresh local port: no two host-initiated connections share one.
    uint32_t lp = next_local_port_;
    while (local_ports_.count(lp) || by_key_.count(key(lp, static_cast<uint32_t>(port)))) {
        if (++lp == 0) lp = 1u << 30;
    }
    next_local_port_ = lp + 1 == 0 ? 1u << 30 : lp + 1;
    local_ports_.insert(lp);
    c.host_port = lp;
    c.guest_port = static_cast<uint32_t>(port);
    c.state = State::kConnecting;
    c.pending |= kPendRequest;
    c.host_readable = true;  // data after the line may already be waiting (edge consumed)
    by_key_[key(c.host_port, c.guest_port)] = &c;
    set_deadline(c, Clock::now() + opts_.connect_timeout);
    schedule(c);
}

void VirtioVsock::on_conn_event(uint64_t id, uint32_t events) {
    Connection* c = find(id);
    if (!c) return;  // closed while the event was in flight
    switch (c->state) {
    case State::kHandshake:
        read_handshake(*c);
        return;
    case State::kConnecting:
        // Nothing flows before the guest answers; only notice the client leaving
        // (a half-close after the CONNECT line is fine: EOF reaches the guest later).
        if (events & (EPOLLHUP | EPOLLERR)) close_connection(*c, true);
        return;
    case State::kEstablished:
    case State::kClosing:
        break;
    }
    if (events & EPOLLHUP) c->host_hup = true;
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && c->out_off < c->out.size())
        if (!flush_out(*c)) return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->host_readable = true;
    schedule(*c);
}

// ---- guest -> host --------------------------------------------------------------

void VirtioVsock::process_tx() {
    if (reset_owed_) {
        discard_tx();
        return;
    }
    while (txq_->pop(chain_)) {
        if (chain_.readable_bytes < kHdr) {
            txq_->fail("packet at head %u has %" PRIu64 " readable bytes, less than a header (44)", chain_.head,
                       chain_.readable_bytes);
            return;
        }
        VsockHeader h;
        chain_.read(0, &h, kHdr);
        if (h.op == kVsockOpRw && h.len > chain_.readable_bytes - kHdr) {
            txq_->fail("packet at head %u claims %u payload bytes but carries %" PRIu64, chain_.head, h.len,
                       chain_.readable_bytes - kHdr);
            return;
        }
        handle_packet(h, chain_);
        txq_->push(chain_.head, 0);
    }
}

void VirtioVsock::queue_rst(uint32_t host_port, uint32_t guest_port) {
    if (rst_queue_.size() >= kMaxRstQueue) {
        log_debug("vsock: RST queue full; dropping RST for guest port %u", guest_port);
        return;
    }
    VsockHeader h{};
    h.src_cid = kVsockHostCid;
    h.dst_cid = guest_cid_;
    h.src_port = host_port;
    h.dst_port = guest_port;
    h.type = kVsockTypeStream;
    h.op = kVsockOpRst;
    rst_queue_.push_back(h);
}

void VirtioVsock::handle_packet(const VsockHeader& h, const DescriptorChain& chain) {
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
    Connection& c = *it->second;
    // Every packet carries the guest's current receive credit.
    c.peer_buf_alloc = h.buf_alloc;
    c.peer_fwd_cnt = h.fwd_cnt;
    if (peer_credit(c) > 0) c.credit_requested = false;

    if (h.op == kVsockOpRst) {
        close_connection(c, false);
        return;
    }
    if (c.state == State::kConnecting) {
        if (h.op != kVsockOpResponse) {
            close_connection(c, true);
            return;
        }
        c.state = State::kEstablished;
        c.deadline = Clock::time_point::max();
        std::string ok = "OK " + std::to_string(c.host_port) + "\n";
        c.out.insert(c.out.end(), ok.begin(), ok.end());
        c.out_uncounted += ok.size();
        c.host_readable = true;
        if (!flush_out(c)) return;
        schedule(c);
        return;
    }
    switch (h.op) {
    case kVsockOpRw:
        guest_data(c, h, chain);
        return;
    case kVsockOpCreditUpdate:
        break;
    case kVsockOpCreditRequest:
        c.pending |= kPendCreditUpdate;
        break;
    case kVsockOpShutdown:
        if (h.flags & kVsockShutdownRcv) c.guest_shut_recv = true;
        if (h.flags & kVsockShutdownSend) c.guest_shut_send = true;
        if (c.guest_shut_recv && c.guest_shut_send) {
            c.state = State::kClosing;
            if (c.deadline == Clock::time_point::max()) set_deadline(c, Clock::now() + opts_.connect_timeout);
        }
        after_flush(c);  // may shut the host side or finish the close
        return;
    default:  // REQUEST/RESPONSE on a live connection, or an unknown op
        log_debug("vsock: unexpected op %u on guest port %u; resetting", h.op, c.guest_port);
        close_connection(c, true);
        return;
    }
    schedule(c);
}

void VirtioVsock::guest_connect(const VsockHeader& h) {
    if (conns_.size() >= opts_.max_connections) {
        log_warn("vsock: refusing guest connection to port %u: %zu connections open", h.dst_port, conns_.size());
        queue_rst(h.dst_port, h.src_port);
        return;
    }
    std::string path = uds_path_ + "_" + std::to_string(h.dst_port);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    bool ok = false;
    if (fd && path.size() < sizeof(sockaddr_un::sun_path)) {
        sockaddr_un a = unix_addr(path);
        ok = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    }
    if (!ok) {
        log_verbose("vsock: guest connection to port %u: %s: %s", h.dst_port, path.c_str(), std::strerror(errno));
        queue_rst(h.dst_port, h.src_port);
        return;
    }
    Connection& c = add_connection(std::move(fd), State::kEstablished);
    c.host_port = h.dst_port;
    c.guest_port = h.src_port;
    c.peer_buf_alloc = h.buf_alloc;
    c.peer_fwd_cnt = h.fwd_cnt;
    c.pending |= kPendResponse;
    c.host_readable = true;
    by_key_[key(c.host_port, c.guest_port)] = &c;
    schedule(c);
}

void VirtioVsock::guest_data(Connection& c, const VsockHeader& h, const DescriptorChain& chain) {
    if (h.len == 0) return;
    if (c.guest_shut_send) {
        log_debug("vsock: guest port %u sent data after SHUTDOWN; resetting", c.guest_port);
        close_connection(c, true);
        return;
    }
    // §5.10.6.3: the guest may have at most buf_alloc bytes in flight towards us.
    uint32_t buffered = c.rx_cnt - c.fwd_cnt;
    if (h.len > opts_.buf_alloc - buffered) {
        log_warn("vsock: guest port %u sent %u bytes with only %u bytes of credit; resetting the connection",
                 c.guest_port, h.len, opts_.buf_alloc - buffered);
        close_connection(c, true);
        return;
    }
    c.rx_cnt += h.len;
    size_t sent = 0;
    iov_.clear();
    chain.readable_iov(kHdr, h.len, iov_);
    if (c.out_off == c.out.size() && iov_.size() <= IOV_MAX) {
        // Nothing queued: hand the payload to the host straight from guest memory.
        msghdr m{};
        m.msg_iov = iov_.data();
        m.msg_iovlen = iov_.size();
        ssize_t n;
        do n = ::sendmsg(c.fd.get(), &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && !would_block(errno)) {
            log_verbose("vsock: host side of guest port %u: %s; resetting", c.guest_port, std::strerror(errno));
            close_connection(c, true);
            return;
        }
        if (n > 0) sent = static_cast<size_t>(n);
        c.fwd_cnt += static_cast<uint32_t>(sent);
        c.out.clear();
        c.out_off = 0;
    }
    if (sent < h.len) {
        size_t old = c.out.size();
        c.out.resize(old + (h.len - sent));
        chain.read(kHdr + sent, c.out.data() + old, h.len - sent);
    }
    maybe_credit_update(c);
    schedule(c);
}

bool VirtioVsock::flush_out(Connection& c) {
    const uint64_t id = c.id;
    while (c.out_off < c.out.size()) {
        ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (would_block(errno)) break;
            log_verbose("vsock: host side of guest port %u: %s; resetting", c.guest_port, std::strerror(errno));
            close_connection(c, true);
            return false;
        }
        size_t k = static_cast<size_t>(n);
        c.out_off += k;
        size_t ours = std::min(k, c.out_uncounted);
        c.out_uncounted -= ours;
        c.fwd_cnt += static_cast<uint32_t>(k - ours);
    }
    if (c.out_off == c.out.size()) {
        c.out.clear();
        c.out_off = 0;
        if (c.out.capacity() > 64 * 1024) c.out.shrink_to_fit();  // idle connections keep little
    }
    maybe_credit_update(c);
    after_flush(c);
    return find(id) != nullptr;
}

void VirtioVsock::after_flush(Connection& c) {
    if (c.out_off < c.out.size()) return;
    if (c.guest_shut_send && !c.host_wr_shut) {
        ::shutdown(c.fd.get(), SHUT_WR);  // the host reader sees EOF
        c.host_wr_shut = true;
    }
    // The guest closed both ways and everything it sent is delivered: §5.10.6.5
    // ends a clean close with our RST.
    if (c.guest_shut_send && c.guest_shut_recv) close_connection(c, true);
}

void VirtioVsock::maybe_credit_update(Connection& c) {
    if (c.state != State::kEstablished) return;
    // Tell the guest about freed space before it runs dry: when its view of our
    // free space has fallen under half and we have freed something since.
    uint32_t guest_view_free = opts_.buf_alloc - (c.rx_cnt - c.fwd_cnt_sent);
    if (c.fwd_cnt != c.fwd_cnt_sent && guest_view_free < opts_.buf_alloc / 2) {
        c.pending |= kPendCreditUpdate;
        schedule(c);
    }
}

// ---- host -> guest --------------------------------------------------------------

uint32_t VirtioVsock::peer_credit(const Connection& c) const {
    uint32_t in_flight = c.tx_cnt - c.peer_fwd_cnt;
    return in_flight >= c.peer_buf_alloc ? 0 : c.peer_buf_alloc - in_flight;
}

bool VirtioVsock::wants_rx(Connection& c) {
    if (c.state == State::kHandshake) return false;
    if (c.pending) return true;
    if (c.state != State::kEstablished || !c.host_readable || c.host_eof || c.guest_shut_recv) return false;
    if (peer_credit(c) > 0) return true;
    // Host data waits for guest credit: ask once; the guest's next update reopens it.
    if (!c.credit_requested) {
        c.credit_requested = true;
        c.pending |= kPendCreditRequest;
        return true;
    }
    return false;
}

void VirtioVsock::schedule(Connection& c) {
    if (!c.queued && wants_rx(c)) {
        c.queued = true;
        ready_.push_back(c.id);
    }
}

VsockHeader VirtioVsock::header_for(Connection& c, uint16_t op) {
    VsockHeader h{};
    h.src_cid = kVsockHostCid;
    h.dst_cid = guest_cid_;
    h.src_port = c.host_port;
    h.dst_port = c.guest_port;
    h.type = kVsockTypeStream;
    h.op = op;
    h.buf_alloc = opts_.buf_alloc;
    h.fwd_cnt = c.fwd_cnt;
    return h;
}

bool VirtioVsock::send_control(const VsockHeader& h) {
    if (!rxq_->pop(chain_)) return false;
    if (chain_.writable_bytes < kHdr) {
        rxq_->fail("rx buffer at head %u has %" PRIu64 " writable bytes, less than a header (44)", chain_.head,
                   chain_.writable_bytes);
        return false;
    }
    chain_.write(0, &h, kHdr);
    rxq_->push(chain_.head, kHdr);
    return true;
}

VirtioVsock::Serviced VirtioVsock::service(Connection& c) {
    if (c.pending) {
        // Order matters only between REQUEST/RESPONSE (first) and SHUTDOWN (last).
        uint32_t bit = c.pending & kPendRequest    ? kPendRequest
                       : c.pending & kPendResponse ? kPendResponse
                       : c.pending & kPendCreditRequest ? kPendCreditRequest
                       : c.pending & kPendCreditUpdate  ? kPendCreditUpdate
                                                        : kPendShutdown;
        uint16_t op = bit == kPendRequest        ? kVsockOpRequest
                      : bit == kPendResponse     ? kVsockOpResponse
                      : bit == kPendCreditRequest ? kVsockOpCreditRequest
                      : bit == kPendCreditUpdate  ? kVsockOpCreditUpdate
                                                  : kVsockOpShutdown;
        VsockHeader h = header_for(c, op);
        if (bit == kPendShutdown) h.flags = c.shutdown_flags;
        if (!send_control(h)) return Serviced::kNoBuffers;
        c.pending &= ~bit;
        c.fwd_cnt_sent = c.fwd_cnt;
        if (bit == kPendCreditUpdate || bit == kPendResponse || bit == kPendRequest) c.pending &= ~kPendCreditUpdate;
        if (bit == kPendRequest) c.request_sent = true;
        return Serviced::kSent;
    }
    // Data: read the host socket straight into the guest's rx buffer, never more
    // than the guest's credit allows.
    uint32_t credit = peer_credit(c);
    if (credit == 0) return Serviced::kSent;  // rescheduled once credit arrives
    if (!rxq_->pop(chain_)) return Serviced::kNoBuffers;
    if (chain_.writable_bytes < kHdr) {
        rxq_->fail("rx buffer at head %u has %" PRIu64 " writable bytes, less than a header (44)", chain_.head,
                   chain_.writable_bytes);
        return Serviced::kNoBuffers;
    }
    uint64_t room = std::min<uint64_t>({chain_.writable_bytes - kHdr, credit, kMaxPacketPayload});
    if (room == 0) {  // a header-only buffer cannot carry data; wait for a bigger one
        rxq_->undo_pop();
        return Serviced::kNoBuffers;
    }
    iov_.clear();
    chain_.writable_iov(kHdr, room, iov_);
    ssize_t n;
    do n = ::readv(c.fd.get(), iov_.data(), static_cast<int>(iov_.size()));
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        VsockHeader h = header_for(c, kVsockOpRw);
        h.len = static_cast<uint32_t>(n);
        chain_.write(0, &h, kHdr);
        rxq_->push(chain_.head, static_cast<uint32_t>(kHdr + n));
        c.tx_cnt += static_cast<uint32_t>(n);
        c.fwd_cnt_sent = c.fwd_cnt;
        return Serviced::kSent;
    }
    rxq_->undo_pop();
    if (n < 0 && would_block(errno)) {
        c.host_readable = false;
        return Serviced::kSent;
    }
    if (n < 0) {
        log_verbose("vsock: host side of guest port %u: %s; resetting", c.guest_port, std::strerror(errno));
        close_connection(c, true);
        return Serviced::kClosed;
    }
    // EOF: the host will send no more.  If it closed entirely it will not read
    // either; then the guest answers SHUTDOWN(both) with RST (§5.10.6.5).
    c.host_eof = true;
    c.host_readable = false;
    c.shutdown_flags |= kVsockShutdownSend | (c.host_hup ? kVsockShutdownRcv : 0);
    c.pending |= kPendShutdown;
    if (c.host_hup) {
        c.state = State::kClosing;
        set_deadline(c, Clock::now() + opts_.connect_timeout);
    }
    return Serviced::kSent;
}

void VirtioVsock::deliver_rx() {
    if (!rxq_ || rxq_->failed()) return;
    if (!deliver_owed_reset()) return;
    // One pass fills every rx buffer the guest has given us; the caller raises the
    // interrupt once for the whole batch.
    while (!rst_queue_.empty()) {
        if (!send_control(rst_queue_.front())) return;
        rst_queue_.pop_front();
    }
    while (!ready_.empty()) {
        uint64_t id = ready_.front();
        ready_.pop_front();
        Connection* c = find(id);
        if (!c) continue;
        c->queued = false;
        switch (service(*c)) {
        case Serviced::kNoBuffers:
            c->queued = true;
            ready_.push_front(id);
            return;
        case Serviced::kClosed:
            break;
        case Serviced::kSent:
            schedule(*c);  // to the back: connections take turns
            break;
        }
        // A close above may have queued an RST.
        while (!rst_queue_.empty()) {
            if (!send_control(rst_queue_.front())) return;
            rst_queue_.pop_front();
        }
    }
}

}  // namespace kindling

#include "devices/virtio/vsock_connection.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>

#include "base/log.h"

namespace kindling {

namespace {

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

}  // namespace

VsockConnection::VsockConnection(Owner& owner, const VsockOptions& opts, uint64_t guest_cid, uint64_t id_, UniqueFd fd_,
                                 State st)
    : id(id_), fd(std::move(fd_)), state(st), owner_(owner), opts_(opts), guest_cid_(guest_cid) {}

bool VsockConnection::guest_knows() const {
    return state == State::kEstablished || state == State::kClosing || (state == State::kConnecting && request_sent);
}

void VsockConnection::connect_to_guest(uint32_t hp, uint32_t gp) {
    host_port = hp;
    guest_port = gp;
    state = State::kConnecting;
    pending_ |= kPendRequest;
    host_readable = true;  // data after the CONNECT line may already be waiting (edge consumed)
}

void VsockConnection::accept_from_guest(const VsockHeader& h) {
    host_port = h.dst_port;
    guest_port = h.src_port;
    peer_buf_alloc_ = h.buf_alloc;
    peer_fwd_cnt_ = h.fwd_cnt;
    pending_ |= kPendResponse;
    host_readable = true;
}

// ---- guest -> host --------------------------------------------------------------

void VsockConnection::on_guest_packet(const VsockTxPacket& p) {
    const VsockHeader& h = p.header();
    // Every packet carries the guest's current receive credit.
    peer_buf_alloc_ = h.buf_alloc;
    peer_fwd_cnt_ = h.fwd_cnt;
    if (peer_credit() > 0) credit_requested_ = false;

    if (h.op == kVsockOpRst) {
        owner_.close(*this, false);
        return;
    }
    if (state == State::kConnecting) {
        if (h.op != kVsockOpResponse) {
            owner_.close(*this, true);
            return;
        }
        state = State::kEstablished;
        deadline = Clock::time_point::max();
        std::string ok = "OK " + std::to_string(host_port) + "\n";
        out_.insert(out_.end(), ok.begin(), ok.end());
        out_uncounted_ += ok.size();
        host_readable = true;
        if (!flush_out()) return;
        owner_.schedule(*this);
        return;
    }
    switch (h.op) {
    case kVsockOpRw:
        guest_data(p);
        return;
    case kVsockOpCreditUpdate:
        break;
    case kVsockOpCreditRequest:
        pending_ |= kPendCreditUpdate;
        break;
    case kVsockOpShutdown:
        if (h.flags & kVsockShutdownRcv) guest_shut_recv_ = true;
        if (h.flags & kVsockShutdownSend) guest_shut_send_ = true;
        if (guest_shut_recv_ && guest_shut_send_) {
            state = State::kClosing;
            if (deadline == Clock::time_point::max()) owner_.set_deadline(*this, Clock::now() + opts_.connect_timeout);
        }
        after_flush();  // may shut the host side or finish the close
        return;
    default:  // REQUEST/RESPONSE on a live connection, or an unknown op
        log_debug("vsock: unexpected op %u on guest port %u; resetting", h.op, guest_port);
        owner_.close(*this, true);
        return;
    }
    owner_.schedule(*this);
}

void VsockConnection::guest_data(const VsockTxPacket& p) {
    const VsockHeader& h = p.header();
    if (h.len == 0) return;
    if (guest_shut_send_) {
        log_debug("vsock: guest port %u sent data after SHUTDOWN; resetting", guest_port);
        owner_.close(*this, true);
        return;
    }
    // §5.10.6.3: the guest may have at most buf_alloc bytes in flight towards us.
    uint32_t buffered = rx_cnt_ - fwd_cnt_;
    if (h.len > opts_.buf_alloc - buffered) {
        log_warn("vsock: guest port %u sent %u bytes with only %u bytes of credit; resetting the connection",
                 guest_port, h.len, opts_.buf_alloc - buffered);
        owner_.close(*this, true);
        return;
    }
    rx_cnt_ += h.len;
    size_t sent = 0;
    const std::vector<iovec>& iov = p.payload_iov(h.len);
    if (out_off_ == out_.size() && iov.size() <= IOV_MAX) {
        // Nothing queued: hand the payload to the host straight from guest memory.
        msghdr m{};
        m.msg_iov = const_cast<iovec*>(iov.data());
        m.msg_iovlen = iov.size();
        ssize_t n;
        do n = ::sendmsg(fd.get(), &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && !would_block(errno)) {
            log_verbose("vsock: host side of guest port %u: %s; resetting", guest_port, std::strerror(errno));
            owner_.close(*this, true);
            return;
        }
        if (n > 0) sent = static_cast<size_t>(n);
        fwd_cnt_ += static_cast<uint32_t>(sent);
        out_.clear();
        out_off_ = 0;
    }
    if (sent < h.len) {
        size_t old = out_.size();
        out_.resize(old + (h.len - sent));
        p.read_payload(sent, out_.data() + old, h.len - sent);
    }
    maybe_credit_update();
    owner_.schedule(*this);
}

bool VsockConnection::flush_out() {
    while (out_off_ < out_.size()) {
        ssize_t n = ::send(fd.get(), out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (would_block(errno)) break;
            log_verbose("vsock: host side of guest port %u: %s; resetting", guest_port, std::strerror(errno));
            owner_.close(*this, true);
            return false;
        }
        size_t k = static_cast<size_t>(n);
        out_off_ += k;
        size_t ours = std::min(k, out_uncounted_);
        out_uncounted_ -= ours;
        fwd_cnt_ += static_cast<uint32_t>(k - ours);
    }
    if (out_off_ == out_.size()) {
        out_.clear();
        out_off_ = 0;
        if (out_.capacity() > 64 * 1024) out_.shrink_to_fit();  // idle connections keep little
    }
    maybe_credit_update();
    return !after_flush();
}

bool VsockConnection::after_flush() {
    if (out_off_ < out_.size()) return false;
    if (guest_shut_send_ && !host_wr_shut_) {
        ::shutdown(fd.get(), SHUT_WR);  // the host reader sees EOF
        host_wr_shut_ = true;
    }
    // The guest closed both ways and everything it sent is delivered: §5.10.6.5
    // ends a clean close with our RST.
    if (guest_shut_send_ && guest_shut_recv_) {
        owner_.close(*this, true);
        return true;
    }
    return false;
}

void VsockConnection::maybe_credit_update() {
    if (state != State::kEstablished) return;
    // Tell the guest about freed space before it runs dry: when its view of our
    // free space has fallen under half and we have freed something since.
    uint32_t guest_view_free = opts_.buf_alloc - (rx_cnt_ - fwd_cnt_sent_);
    if (fwd_cnt_ != fwd_cnt_sent_ && guest_view_free < opts_.buf_alloc / 2) {
        pending_ |= kPendCreditUpdate;
        owner_.schedule(*this);
    }
}

void VsockConnection::on_host_event(uint32_t events) {
    switch (state) {
    case State::kHandshake:  // the muxer reads the CONNECT line
        return;
    case State::kConnecting:
        // Nothing flows before the guest answers; only notice the client leaving
        // (a half-close after the CONNECT line is fine: EOF reaches the guest later).
        if (events & (EPOLLHUP | EPOLLERR)) owner_.close(*this, true);
        return;
    case State::kEstablished:
    case State::kClosing:
        break;
    }
    if (events & EPOLLHUP) host_hup_ = true;
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && out_off_ < out_.size())
        if (!flush_out()) return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) host_readable = true;
    owner_.schedule(*this);
}

// ---- host -> guest --------------------------------------------------------------

uint32_t VsockConnection::peer_credit() const {
    uint32_t in_flight = tx_cnt_ - peer_fwd_cnt_;
    return in_flight >= peer_buf_alloc_ ? 0 : peer_buf_alloc_ - in_flight;
}

bool VsockConnection::wants_rx() {
    if (state == State::kHandshake) return false;
    if (pending_) return true;
    if (state != State::kEstablished || !host_readable || host_eof_ || guest_shut_recv_) return false;
    if (peer_credit() > 0) return true;
    // Host data waits for guest credit: ask once; the guest's next update reopens it.
    if (!credit_requested_) {
        credit_requested_ = true;
        pending_ |= kPendCreditRequest;
        return true;
    }
    return false;
}

VsockHeader VsockConnection::header(uint16_t op) const {
    VsockHeader h = vsock_host_header(guest_cid_, host_port, guest_port, op);
    h.buf_alloc = opts_.buf_alloc;
    h.fwd_cnt = fwd_cnt_;
    return h;
}

VsockConnection::Serviced VsockConnection::fill_rx(VsockRxQueue& rx) {
    if (pending_) {
        // Order matters only between REQUEST/RESPONSE (first) and SHUTDOWN (last).
        uint32_t bit = pending_ & kPendRequest          ? kPendRequest
                       : pending_ & kPendResponse       ? kPendResponse
                       : pending_ & kPendCreditRequest  ? kPendCreditRequest
                       : pending_ & kPendCreditUpdate   ? kPendCreditUpdate
                                                        : kPendShutdown;
        uint16_t op = bit == kPendRequest         ? kVsockOpRequest
                      : bit == kPendResponse      ? kVsockOpResponse
                      : bit == kPendCreditRequest ? kVsockOpCreditRequest
                      : bit == kPendCreditUpdate  ? kVsockOpCreditUpdate
                                                  : kVsockOpShutdown;
        VsockHeader h = header(op);
        if (bit == kPendShutdown) h.flags = shutdown_flags_;
        if (!rx.send_control(h)) return Serviced::kNoBuffers;
        pending_ &= ~bit;
        fwd_cnt_sent_ = fwd_cnt_;
        if (bit == kPendCreditUpdate || bit == kPendResponse || bit == kPendRequest) pending_ &= ~kPendCreditUpdate;
        if (bit == kPendRequest) request_sent = true;
        return Serviced::kSent;
    }
    // Data: read the host socket straight into the guest's rx buffer, never more
    // than the guest's credit allows.
    uint32_t credit = peer_credit();
    if (credit == 0) return Serviced::kSent;  // rescheduled once credit arrives
    if (!rx.take()) return Serviced::kNoBuffers;
    uint64_t room = std::min<uint64_t>({rx.payload_room(), credit, kVsockMaxRxPayload});
    if (room == 0) {  // a header-only buffer cannot carry data; wait for a bigger one
        rx.give_back();
        return Serviced::kNoBuffers;
    }
    const std::vector<iovec>& iov = rx.payload_iov(room);
    ssize_t n;
    do n = ::readv(fd.get(), iov.data(), static_cast<int>(iov.size()));
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        VsockHeader h = header(kVsockOpRw);
        h.len = static_cast<uint32_t>(n);
        rx.push(h);
        tx_cnt_ += static_cast<uint32_t>(n);
        fwd_cnt_sent_ = fwd_cnt_;
        return Serviced::kSent;
    }
    rx.give_back();
    if (n < 0 && would_block(errno)) {
        host_readable = false;
        return Serviced::kSent;
    }
    if (n < 0) {
        log_verbose("vsock: host side of guest port %u: %s; resetting", guest_port, std::strerror(errno));
        owner_.close(*this, true);
        return Serviced::kClosed;
    }
    // EOF: the host will send no more.  If it closed entirely it will not read
    // either; then the guest answers SHUTDOWN(both) with RST (§5.10.6.5).
    host_eof_ = true;
    host_readable = false;
    shutdown_flags_ |= kVsockShutdownSend | (host_hup_ ? kVsockShutdownRcv : 0);
    pending_ |= kPendShutdown;
    if (host_hup_) {
        state = State::kClosing;
        owner_.set_deadline(*this, Clock::now() + opts_.connect_timeout);
    }
    return Serviced::kSent;
}

}  // namespace kindling

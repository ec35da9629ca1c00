#include "devices/virtio/virtio_vsock.h"

#include <algorithm>
#include <cinttypes>
#include <functional>
#include <cstdio>
#include <cstring>

#include "base/error.h"
#include "base/log.h"
#include "devices/interrupt.h"

namespace kindling {

namespace {

constexpr size_t kHdr = sizeof(VsockHeader);
constexpr uint32_t kEventTransportReset = 0;  // §5.10.6.7 VIRTIO_VSOCK_EVENT_TRANSPORT_RESET

}  // namespace

VirtioVsock::VirtioVsock(uint64_t guest_cid, std::string uds_path, EventLoop& loop, Options opts)
    : guest_cid_(guest_cid),
      muxer_(guest_cid, std::move(uds_path), loop, opts, [this](const std::function<void()>& fn) { from_loop(fn); }) {}

VirtioVsock::~VirtioVsock() {
    std::lock_guard lk(mu_);
    muxer_.close_all();
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
    muxer_.forget_guest_connections();
    reset_owed_ = false;  // a new driver starts with no connections to drop
    reset_unacked_ = false;
    acked_features_ = 0;
    rxq_ = txq_ = evq_ = nullptr;
    used_ = nullptr;
}

void VirtioVsock::notify(uint16_t queue) {
    if (!rxq_) return;
    try {
        if (queue == 1) process_tx();
        // rx: new buffers may unblock connections; tx: replies and credit may be owed;
        // event: a buffer for an owed TRANSPORT_RESET, or the refill that says the
        // driver has handled it; rx traffic waits behind both.
        if (queue <= 1 || reset_owed_ || reset_unacked_) deliver_rx();
    } catch (const std::exception& e) {  // never into the vCPU thread
        log_warn("virtio-vsock: %s", e.what());
    }
    signal_guest();
}

size_t VirtioVsock::connection_count() {
    std::lock_guard lk(mu_);
    return muxer_.connection_count();
}

void VirtioVsock::reset_connections() {
    std::lock_guard lk(mu_);
    muxer_.close_all();
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
    if (reset_unacked_) {
        if (!evq_ || evq_->failed()) return false;
        if (evq_->avail_index() == reset_avail_) return false;
        reset_unacked_ = false;
    }
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
    reset_avail_ = evq_->avail_index();
    if (!push_transport_reset()) return false;
    reset_owed_ = false;
    reset_unacked_ = true;
    return false;
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
    if (muxer_.connection_count())
        log_verbose("vsock: snapshot: closing %zu connections", muxer_.connection_count());
    muxer_.close_all();
    // The running guest still believes in its connections: if this VM resumes it
    // must drop them as well (Firecracker sends the event on SnapshotCreate).
    if (rxq_) reset_owed_ = true;
    return {guest_cid_, acked_features_, muxer_.next_local_port()};
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
    muxer_.set_next_local_port(s.next_local_port);
    reset_unacked_ = false;
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
    return reset_owed_ || reset_unacked_;
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

// ---- the queues ------------------------------------------------------------------

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
        muxer_.on_guest_packet(VsockTxPacket(h, chain_, iov_));
        txq_->push(chain_.head, 0);
    }
}

void VirtioVsock::deliver_rx() {
    if (!rxq_ || rxq_->failed()) return;
    if (!deliver_owed_reset()) return;
    VsockRxQueue rx(*rxq_, chain_, iov_);
    muxer_.deliver(rx);
}

}  // namespace kindling

// virtio-vsock (virtio 1.2 §5.10), stream sockets only, with Firecracker's hybrid
// vsock on the host side (vsock_muxer.h: host clients reach the guest through
// "CONNECT <port>\n" on `uds_path`, the guest reaches "<uds_path>_<port>").
//
// This is the device: its three virtqueues (rx, tx, event), the packets crossing
// them (vsock_packet.h), the event queue's TRANSPORT_RESET, and snapshots.  Packets
// from the guest go to the muxer; when the guest has rx buffers, the muxer fills
// them from its connections (vsock_connection.h: state machine and credit).
//
// Threads: host-socket callbacks run on whatever thread drives the EventLoop;
// queue work runs on the vCPU thread (MMIO notify, poll()).  Both take mutex().
// The EventLoop must outlive the device, and the device must be destroyed while
// no other thread is dispatching the loop (join the loop thread first, or destroy
// it on the thread that runs the loop).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/event_loop.h"
#include "devices/virtio/virtio_device.h"
#include "devices/virtio/virtqueue.h"
#include "devices/virtio/vsock_connection.h"
#include "devices/virtio/vsock_muxer.h"
#include "devices/virtio/vsock_packet.h"

namespace kindling {

// What a snapshot keeps of the vsock device itself (the transport's registers and
// queues are VirtioMmioState).  Connections are not kept: snapshotting resets them.
struct VirtioVsockState {
    uint64_t guest_cid = 0;       // informational: the restoring device's own CID wins
    uint64_t acked_features = 0;  // as activated; checked against the restored transport
    uint32_t next_local_port = 1u << 30;  // host ports keep counting, never reused soon after restore
};

class VirtioVsock : public VirtioDevice {
public:
    using Options = VsockOptions;
    static constexpr uint16_t kQueueSize = 256;
    static constexpr uint32_t kMaxPacketPayload = kVsockMaxRxPayload;

    // Binds and listens on `uds_path` and registers it in `loop` (VsockMuxer: a live
    // listener at the path is AddressInUseError (EADDRINUSE) naming the path,
    // anything there that is not a socket a SysError; a stale socket file is
    // replaced).  ConfigError when opts.buf_alloc is 0.
    VirtioVsock(uint64_t guest_cid, std::string uds_path, EventLoop& loop, Options opts);
    VirtioVsock(uint64_t guest_cid, std::string uds_path, EventLoop& loop)
        : VirtioVsock(guest_cid, std::move(uds_path), loop, Options{}) {}
    // Closes every socket and removes the listening socket file.
    ~VirtioVsock() override;

    uint64_t guest_cid() const { return guest_cid_; }
    const std::string& uds_path() const { return muxer_.uds_path(); }

    // Closes every connection (host sockets closed, no packets to the guest); the
    // listener stays.
    void reset_connections();
    // Puts VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the event queue now.  False when the
    // driver gave no buffer.  (Snapshots use the owed reset below instead.)
    bool send_transport_reset();
    size_t connection_count();

    // Snapshots (DESIGN.md: vsock connections are reset on snapshot; Firecracker
    // does the same).  The VM is paused and nothing may run the EventLoop between
    // save() and the end of the memory dump (any device activity writes guest memory).
    //
    // save(): closes every host connection (clients see EOF; their sockets and any
    // buffered bytes are dropped) and returns the device state.  If the driver is
    // active the running guest is owed a TRANSPORT_RESET, delivered on the next
    // poll()/notify/loop event, so the original VM, if resumed, drops its
    // connections too.
    //
    // restore(): call on a fresh device after VirtioMmio::restore() has activated it.
    // TRANSPORT_RESET is sent on the event queue; if the driver has no event buffer
    // there yet, it is sent as soon as one appears.  While it is owed, nothing goes
    // to the rx queue and tx packets are handed back unread (queued before the guest
    // knew: they belong to connections the reset ends).  Once sent, rx still waits
    // until the driver has handled it (it makes a new event buffer available): a
    // new connection must not be dropped with the old ones.  A driver without a
    // ready event queue gets no reset.
    // A device restored while its driver is not running just forgets the reset (the
    // driver resets the device before it uses it).  Throws DataError when the
    // features differ from those the transport activated the device with.
    VirtioVsockState save();
    void restore(const VirtioVsockState& s, const std::string& what = "virtio-vsock state");
    // True while a TRANSPORT_RESET is owed to the guest or not yet handled by it.
    bool transport_reset_pending();
    // Persistent: VirtioVsockState's fields; save_to() is save(), restore_from()
    // is restore() with the reader's context as `what`.
    void save_to(TlvWriter& out) override;
    void restore_from(TlvReader& in) override;

    // VirtioDevice
    const char* name() const override { return "virtio-vsock"; }
    uint32_t device_id() const override { return kVirtioIdVsock; }
    uint64_t device_features() const override;
    uint16_t num_queues() const override { return 3; }
    uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
    void read_config(uint64_t offset, uint8_t* data, size_t len) override;
    void activate(std::span<Virtqueue> queues, Interrupt& used, uint64_t acked_features) override;
    void notify(uint16_t queue) override;
    void reset() override;

private:
    void process_tx();
    void deliver_rx();
    bool push_transport_reset();
    bool deliver_owed_reset();  // true when nothing is owed (any more) and the driver has handled it
    void discard_tx();
    void signal_guest();
    // Runs fn with the lock held and ends with deliver_rx + signal; exceptions from
    // an EventLoop callback are logged, never thrown into the loop.
    template <class Fn>
    void from_loop(Fn&& fn);

    const uint64_t guest_cid_;
    VsockMuxer muxer_;

    uint64_t acked_features_ = 0;
    bool reset_owed_ = false;  // TRANSPORT_RESET not yet on the event queue
    // A TRANSPORT_RESET is on the event queue but the driver has not handled it yet.
    // Linux handles rx and event interrupts in separate work items, rx first: a
    // connection REQUEST delivered now would be reset along with the old ones.  rx
    // waits until the driver makes a new event buffer available (Linux refills the
    // event queue right after handling the events), i.e. its available index moves
    // past reset_avail_.
    bool reset_unacked_ = false;
    uint16_t reset_avail_ = 0;

    Virtqueue* rxq_ = nullptr;
    Virtqueue* txq_ = nullptr;
    Virtqueue* evq_ = nullptr;
    Interrupt* used_ = nullptr;
    DescriptorChain chain_;
    std::vector<iovec> iov_;
};

}  // namespace kindling

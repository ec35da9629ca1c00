// virtio-vsock (virtio 1.2 §5.10), stream sockets only, with Firecracker's hybrid
// vsock on the host side:
//
//   host -> guest: a client connects to the Unix socket `uds_path` and writes
//                  "CONNECT <port>\n"; the device sends REQUEST to the guest from
//                  CID 2 and a fresh local port; on the guest's RESPONSE it writes
//                  "OK <local_port>\n" to the client.  RST or no answer within
//                  connect_timeout closes the client.
//   guest -> host: a REQUEST to CID 2 port P connects to the Unix socket
//                  "<uds_path>_P"; RST when that fails.
//
// Then bytes flow as RW packets with credit-based flow control in both directions
// (§5.10.6.3): we never send more than the guest's buf_alloc allows, we advertise
// `buf_alloc` bytes of our own per connection and buffer at most that much for a
// slow host reader, and we stop reading a host socket while the guest has no
// credit or no rx buffers.  Host sockets are non-blocking and edge-triggered in the
// EventLoop, so a stalled connection costs no wakeups.
//
// Threads: host-socket callbacks run on whatever thread drives the EventLoop;
// queue work runs on the vCPU thread (MMIO notify, poll()).  Both take mutex().
// The EventLoop must outlive the device, and the device must be destroyed while
// no other thread is dispatching the loop (join the loop thread first, or destroy
// it on the thread that runs the loop).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/event_loop.h"
#include "base/fd.h"
#include "devices/virtio/virtio_device.h"
#include "devices/virtio/virtqueue.h"

namespace kindling {

// §5.10.6 packet header (little-endian, 44 bytes on the wire).
struct __attribute__((packed)) VsockHeader {
    uint64_t src_cid;
    uint64_t dst_cid;
    uint32_t src_port;
    uint32_t dst_port;
    uint32_t len;
    uint16_t type;
    uint16_t op;
    uint32_t flags;
    uint32_t buf_alloc;
    uint32_t fwd_cnt;
};
static_assert(sizeof(VsockHeader) == 44);

enum VsockOp : uint16_t {
    kVsockOpRequest = 1,
    kVsockOpResponse = 2,
    kVsockOpRst = 3,
    kVsockOpShutdown = 4,
    kVsockOpRw = 5,
    kVsockOpCreditUpdate = 6,
    kVsockOpCreditRequest = 7,
};
inline constexpr uint16_t kVsockTypeStream = 1;
inline constexpr uint32_t kVsockShutdownRcv = 1;   // sender will receive no more
inline constexpr uint32_t kVsockShutdownSend = 2;  // sender will send no more
inline constexpr uint64_t kVsockHostCid = 2;

// What a snapshot keeps of the vsock device itself (the transport's registers and
// queues are VirtioMmioState).  Connections are not kept: snapshotting resets them.
struct VirtioVsockState {
    uint64_t guest_cid = 0;       // informational: the restoring device's own CID wins
    uint64_t acked_features = 0;  // as activated; checked against the restored transport
    uint32_t next_local_port = 1u << 30;  // host ports keep counting, never reused soon after restore
};

class VirtioVsock : public VirtioDevice {
public:
    struct Options {
        uint32_t buf_alloc = 256 * 1024;  // our receive buffer per connection (advertised credit)
        std::chrono::milliseconds connect_timeout{2000};  // CONNECT line, guest RESPONSE, close handshake
        size_t max_connections = 1024;
    };
    static constexpr uint16_t kQueueSize = 256;
    static constexpr uint32_t kMaxPacketPayload = 64 * 1024;  // per RW packet to the guest

    // Binds and listens on `uds_path` and registers it in `loop`.  Throws SysError
    // with EADDRINUSE naming the path when something already listens there, or when
    // the path exists and is not a socket; a stale socket file is replaced.
    VirtioVsock(uint64_t guest_cid, std::string uds_path, EventLoop& loop, Options opts);
    VirtioVsock(uint64_t guest_cid, std::string uds_path, EventLoop& loop)
        : VirtioVsock(guest_cid, std::move(uds_path), loop, Options{}) {}
    // Closes every socket and removes the listening socket file.
    ~VirtioVsock() override;

    uint64_t guest_cid() const { return guest_cid_; }
    const std::string& uds_path() const { return uds_path_; }

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
    // to the rx queue (no new connection can precede the reset) and tx packets are
    // handed back unread (queued before the guest knew: they belong to connections
    // the reset ends).  A driver without a ready event queue gets no reset.
    // A device restored while its driver is not running just forgets the reset (the
    // driver resets the device before it uses it).  Throws DataError when the
    // features differ from those the transport activated the device with.
    VirtioVsockState save();
    void restore(const VirtioVsockState& s, const std::string& what = "virtio-vsock state");
    // True while a TRANSPORT_RESET is owed to the guest.
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
    using Clock = std::chrono::steady_clock;
    enum class State {
        kHandshake,    // host client accepted, waiting for "CONNECT <port>\n"
        kConnecting,   // REQUEST owed/sent to the guest, waiting for RESPONSE
        kEstablished,
        kClosing,      // SHUTDOWN both ways sent or received; waiting for RST / flush
    };
    // Control packets owed to the guest (at most one of each at a time).
    enum Pending : uint32_t {
        kPendRequest = 1,
        kPendResponse = 2,
        kPendCreditUpdate = 4,
        kPendCreditRequest = 8,
        kPendShutdown = 16,
    };
    struct Connection {
        uint64_t id = 0;
        UniqueFd fd;
        State state = State::kHandshake;
        bool host_initiated = false;
        uint32_t host_port = 0;   // our side (CID 2)
        uint32_t guest_port = 0;
        Clock::time_point deadline = Clock::time_point::max();
        uint32_t pending = 0;
        uint32_t shutdown_flags = 0;  // for kPendShutdown
        bool queued = false;          // in ready_
        bool request_sent = false;

        // guest -> host: bytes not yet taken by the host socket, bounded by buf_alloc.
        std::vector<uint8_t> out;
        size_t out_off = 0;
        size_t out_uncounted = 0;  // leading bytes of `out` that are ours ("OK n\n"), not guest payload
        uint32_t rx_cnt = 0;        // guest payload bytes received
        uint32_t fwd_cnt = 0;       // ... of which the host socket took
        uint32_t fwd_cnt_sent = 0;  // fwd_cnt last told to the guest
        bool guest_shut_send = false;
        bool guest_shut_recv = false;
        bool host_wr_shut = false;

        // host -> guest
        uint32_t peer_buf_alloc = 0;
        uint32_t peer_fwd_cnt = 0;
        uint32_t tx_cnt = 0;  // payload bytes sent to the guest
        bool credit_requested = false;
        bool host_readable = false;  // edge-triggered: set on EPOLLIN, cleared on EAGAIN
        bool host_eof = false;
        bool host_hup = false;
    };
    enum class Serviced { kSent, kNoBuffers, kClosed };

    static uint64_t key(uint32_t host_port, uint32_t guest_port) {
        return static_cast<uint64_t>(host_port) << 32 | guest_port;
    }

    void listen_socket();
    void on_listen();
    void on_conn_event(uint64_t id, uint32_t events);
    void on_timer();
    void read_handshake(Connection& c);
    Connection* find(uint64_t id);
    Connection& add_connection(UniqueFd fd, State st);
    void close_connection(Connection& c, bool rst_to_guest);
    void close_all();
    void set_deadline(Connection& c, Clock::time_point t);
    void arm_timer();

    void process_tx();
    void handle_packet(const VsockHeader& h, const DescriptorChain& chain);
    void guest_connect(const VsockHeader& h);
    void guest_data(Connection& c, const VsockHeader& h, const DescriptorChain& chain);
    bool flush_out(Connection& c);  // false when the connection was closed
    void after_flush(Connection& c);
    void maybe_credit_update(Connection& c);

    uint32_t peer_credit(const Connection& c) const;
    bool wants_rx(Connection& c);
    void schedule(Connection& c);
    void queue_rst(uint32_t host_port, uint32_t guest_port);
    void deliver_rx();
    Serviced service(Connection& c);
    bool send_control(const VsockHeader& h);
    bool push_transport_reset();
    bool deliver_owed_reset();  // true when nothing is owed (any more)
    void discard_tx();
    VsockHeader header_for(Connection& c, uint16_t op);
    void signal_guest();
    // Runs fn with the lock held and ends with deliver_rx + signal; exceptions from
    // an EventLoop callback are logged, never thrown into the loop.
    template <class Fn>
    void from_loop(Fn&& fn);

    uint64_t guest_cid_;
    std::string uds_path_;
    EventLoop& loop_;
    Options opts_;
    UniqueFd listen_fd_;
    dev_t listen_dev_ = 0;
    ino_t listen_ino_ = 0;
    UniqueFd timer_fd_;
    Clock::time_point timer_at_ = Clock::time_point::max();

    std::unordered_map<uint64_t, std::unique_ptr<Connection>> conns_;  // by id
    std::unordered_map<uint64_t, Connection*> by_key_;                 // by key(host_port, guest_port)
    std::set<uint32_t> local_ports_;  // host ports handed out for host-initiated connections
    std::deque<uint64_t> ready_;      // connection ids with something for the guest
    std::deque<VsockHeader> rst_queue_;  // RSTs owed for connections already gone
    uint64_t next_id_ = 1;
    uint32_t next_local_port_ = 1u << 30;

    uint64_t acked_features_ = 0;
    bool reset_owed_ = false;  // TRANSPORT_RESET not yet on the event queue

    Virtqueue* rxq_ = nullptr;
    Virtqueue* txq_ = nullptr;
    Virtqueue* evq_ = nullptr;
    Interrupt* used_ = nullptr;
    DescriptorChain chain_;
    std::vector<iovec> iov_;
};

}  // namespace kindling

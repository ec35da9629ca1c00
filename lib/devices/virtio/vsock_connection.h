// One vsock stream connection between a guest port and a host Unix socket: its
// state machine (virtio 1.2 §5.10.6.4-5: REQUEST/RESPONSE, SHUTDOWN, RST) and
// credit-based flow control both ways (§5.10.6.3).  Towards the host it never
// buffers more than the buf_alloc it advertises; towards the guest it never sends
// more than the guest's buf_alloc allows, and stops reading its host socket while
// the guest has no credit or no rx buffers.
//
// The muxer (vsock_muxer.h) creates connections, routes the guest's packets and the
// host socket's events to them, and asks them for packets when the guest has rx
// buffers.  A connection asks its Owner (the muxer) to schedule it for the rx queue,
// to arm its deadline and to close it; a close destroys the connection, so a method
// that closes returns at once.  Everything runs with the device's lock held.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/fd.h"
#include "devices/virtio/vsock_packet.h"

namespace kindling {

struct VsockOptions {
    uint32_t buf_alloc = 256 * 1024;  // our receive buffer per connection (advertised credit)
    std::chrono::milliseconds connect_timeout{2000};  // CONNECT line, guest RESPONSE, close handshake
    // Connections of the VM, both directions; more are refused (RST to the guest,
    // the host client closed) with a rate-limited warning.  A function needs a few
    // (routerd pools 4 per sandbox).
    size_t max_connections = 32;
    // What the VM's connections can hold at most: each buffers guest -> host bytes
    // up to buf_alloc (a guest sending past its credit is reset); host -> guest
    // bytes go straight from the socket into the guest's rx buffers.
    size_t max_buffered_bytes() const { return max_connections * buf_alloc; }
};

class VsockConnection {
public:
    using Clock = std::chrono::steady_clock;

    enum class State {
        kHandshake,    // host client accepted, waiting for "CONNECT <port>\n"
        kConnecting,   // REQUEST owed/sent to the guest, waiting for RESPONSE
        kEstablished,
        kClosing,      // SHUTDOWN both ways sent or received; waiting for RST / flush
    };
    enum class Serviced { kSent, kNoBuffers, kClosed };

    class Owner {
    public:
        // The connection may have something for the guest.
        virtual void schedule(VsockConnection& c) = 0;
        // The connection must be closed by `t` unless something ends the wait.
        virtual void set_deadline(VsockConnection& c, Clock::time_point t) = 0;
        // Closes and destroys the connection; with rst_to_guest, an RST tells the
        // guest if it knew of the connection.
        virtual void close(VsockConnection& c, bool rst_to_guest) = 0;

    protected:
        ~Owner() = default;
    };

    // `opts` must outlive the connection.
    VsockConnection(Owner& owner, const VsockOptions& opts, uint64_t guest_cid, uint64_t id, UniqueFd fd, State st);

    // A host client asked for guest port `guest_port` ("CONNECT"): owe the guest a
    // REQUEST from `host_port`.
    void connect_to_guest(uint32_t host_port, uint32_t guest_port);
    // The guest's REQUEST `h` reached a host listener: owe it a RESPONSE.
    void accept_from_guest(const VsockHeader& h);

    // A packet from the guest on this connection (the muxer matched its ports).
    void on_guest_packet(const VsockTxPacket& p);
    // Readiness of the host socket (any state but kHandshake).
    void on_host_event(uint32_t events);

    // True when the connection has a packet for the guest now.  May owe the guest a
    // CREDIT_REQUEST (once) when host data waits for credit.
    bool wants_rx();
    // Puts the connection's next packet into the rx queue: an owed control packet,
    // or host data read straight into the guest's buffer.
    Serviced fill_rx(VsockRxQueue& rx);

    // The guest heard of this connection (so it must hear of its end).
    bool guest_knows() const;

    const uint64_t id;
    UniqueFd fd;
    State state;
    bool host_initiated = false;
    uint32_t host_port = 0;  // our side (CID 2)
    uint32_t guest_port = 0;
    Clock::time_point deadline = Clock::time_point::max();
    bool queued = false;        // in the muxer's ready queue
    bool request_sent = false;  // the guest has seen our REQUEST
    bool host_readable = false;  // edge-triggered: set on EPOLLIN, cleared on EAGAIN

private:
    // Control packets owed to the guest (at most one of each at a time).
    enum Pending : uint32_t {
        kPendRequest = 1,
        kPendResponse = 2,
        kPendCreditUpdate = 4,
        kPendCreditRequest = 8,
        kPendShutdown = 16,
    };

    uint32_t peer_credit() const;
    VsockHeader header(uint16_t op) const;
    void guest_data(const VsockTxPacket& p);
    bool flush_out();    // false when the connection was closed
    bool after_flush();  // true when the connection was closed
    void maybe_credit_update();

    Owner& owner_;
    const VsockOptions& opts_;
    const uint64_t guest_cid_;

    uint32_t pending_ = 0;
    uint32_t shutdown_flags_ = 0;  // for kPendShutdown

    // guest -> host: bytes not yet taken by the host socket, bounded by buf_alloc.
    std::vector<uint8_t> out_;
    size_t out_off_ = 0;
    size_t out_uncounted_ = 0;  // leading bytes of out_ that are ours ("OK n\n"), not guest payload
    uint32_t rx_cnt_ = 0;        // guest payload bytes received
    uint32_t fwd_cnt_ = 0;       // ... of which the host socket took
    uint32_t fwd_cnt_sent_ = 0;  // fwd_cnt last told to the guest
    bool guest_shut_send_ = false;
    bool guest_shut_recv_ = false;
    bool host_wr_shut_ = false;

    // host -> guest
    uint32_t peer_buf_alloc_ = 0;
    uint32_t peer_fwd_cnt_ = 0;
    uint32_t tx_cnt_ = 0;  // payload bytes sent to the guest
    bool credit_requested_ = false;
    bool host_eof_ = false;
    bool host_hup_ = false;
};

}  // namespace kindling

// The host side of Firecracker's hybrid vsock: connections between the guest's
// ports and Unix sockets on the host.
//
//   host -> guest: a client connects to the Unix socket `uds_path` and writes
//                  "CONNECT <port>\n"; the muxer opens a connection from CID 2 and a
//                  fresh local port (counting up from 2^30, never one in use); the
//                  connection answers "OK <local_port>\n" once the guest accepts.
//                  No line, or no answer, within connect_timeout closes the client.
//   guest -> host: a REQUEST to CID 2 port P connects to the Unix socket
//                  "<uds_path>_P"; RST when that fails.
//
// The muxer owns the listener, the connection table (by id and by port pair), the
// RSTs owed to the guest for connections already gone, the order in which
// connections take turns on the rx queue, and one timer for every connection's
// deadline.  Host sockets are non-blocking and edge-triggered in the EventLoop.
// Every method runs with the device's lock held; the muxer's own EventLoop
// callbacks go through `dispatch`, which takes that lock and afterwards lets the
// device deliver what became ready.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>

#include "base/event_loop.h"
#include "base/fd.h"
#include "base/unix_socket.h"
#include "devices/virtio/vsock_connection.h"
#include "devices/virtio/vsock_packet.h"

namespace kindling {

class VsockMuxer : private VsockConnection::Owner {
public:
    using Dispatch = std::function<void(const std::function<void()>&)>;

    // Binds and listens on `uds_path` and registers it in `loop`.  A live listener
    // at the path is AddressInUseError (EADDRINUSE) naming the path, anything there
    // that is not a socket a SysError; a stale socket file is replaced.  `loop` must
    // outlive the muxer.
    VsockMuxer(uint64_t guest_cid, std::string uds_path, EventLoop& loop, VsockOptions opts, Dispatch dispatch);
    // Closes every socket and removes the listening socket file if it is still ours.
    ~VsockMuxer();

    const std::string& uds_path() const { return listener_.path; }

    // A packet from the guest's tx queue.
    void on_guest_packet(const VsockTxPacket& p);
    // Fills the guest's rx buffers: owed RSTs first, then the connections with
    // something to send, taking turns, until the buffers run out.
    void deliver(VsockRxQueue& rx);

    // The driver reset the device: closes the connections the guest knew of (no
    // RSTs); host clients it has not heard of yet wait for the next driver.
    void forget_guest_connections();
    // Closes every connection (host sockets closed, nothing to the guest).
    void close_all();
    size_t connection_count() const { return conns_.size(); }

    // Where the next host-initiated connection's local port search starts (>= 2^30).
    uint32_t next_local_port() const { return next_local_port_; }
    void set_next_local_port(uint32_t port) { next_local_port_ = port; }

private:
    using Clock = VsockConnection::Clock;

    static uint64_t key(uint32_t host_port, uint32_t guest_port) {
        return static_cast<uint64_t>(host_port) << 32 | guest_port;
    }

    // VsockConnection::Owner
    void schedule(VsockConnection& c) override;
    void set_deadline(VsockConnection& c, Clock::time_point t) override;
    void close(VsockConnection& c, bool rst_to_guest) override;

    void on_listen();
    void on_conn_event(uint64_t id, uint32_t events);
    void on_timer();
    void read_handshake(VsockConnection& c);
    void guest_connect(const VsockHeader& h);
    VsockConnection* find(uint64_t id);
    VsockConnection& add_connection(UniqueFd fd, VsockConnection::State st);
    void queue_rst(uint32_t host_port, uint32_t guest_port);
    bool send_owed_rsts(VsockRxQueue& rx);  // false when the buffers ran out
    void arm_timer();

    const uint64_t guest_cid_;
    EventLoop& loop_;
    const VsockOptions opts_;
    Dispatch dispatch_;
    UnixListener listener_;
    UniqueFd timer_fd_;
    Clock::time_point timer_at_ = Clock::time_point::max();

    std::unordered_map<uint64_t, std::unique_ptr<VsockConnection>> conns_;  // by id
    std::unordered_map<uint64_t, VsockConnection*> by_key_;                 // by key(host_port, guest_port)
    std::set<uint32_t> local_ports_;     // host ports handed out for host-initiated connections
    std::deque<uint64_t> ready_;         // connection ids with something for the guest
    std::deque<VsockHeader> rst_queue_;  // RSTs owed for connections already gone
    uint64_t next_id_ = 1;
    uint32_t next_local_port_ = 1u << 30;
};

}  // namespace kindling

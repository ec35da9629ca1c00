// The virtio-vsock wire format (virtio 1.2 §5.10.6) and how packets cross the
// virtqueues: a VsockTxPacket is one the guest sent (header copied out, payload read
// in place from its buffers); a VsockRxQueue puts packets into the guest's rx
// buffers, one packet per buffer.  Nothing here knows connections or host sockets.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <vector>

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
inline constexpr uint32_t kVsockMaxRxPayload = 64 * 1024;  // per RW packet to the guest

// A stream packet from the host (CID 2) to the guest; the other fields are zero.
VsockHeader vsock_host_header(uint64_t guest_cid, uint32_t host_port, uint32_t guest_port, uint16_t op);

// A packet from the guest's tx queue.  The device has checked that the chain holds
// the header and, for RW, the `len` payload bytes the header claims.
class VsockTxPacket {
public:
    // `iov` is scratch space, reused by payload_iov().
    VsockTxPacket(const VsockHeader& h, const DescriptorChain& chain, std::vector<iovec>& iov)
        : header_(h), chain_(chain), iov_(iov) {}

    const VsockHeader& header() const { return header_; }
    // Copies payload bytes [offset, offset+n) out; returns the bytes copied.
    size_t read_payload(uint64_t offset, void* out, size_t n) const;
    // iovecs covering the first n payload bytes, in guest memory.
    const std::vector<iovec>& payload_iov(uint64_t n) const;

private:
    VsockHeader header_;
    const DescriptorChain& chain_;
    std::vector<iovec>& iov_;
};

// The guest's rx queue, filled one packet per buffer.  A buffer too small for a
// header is hostile: it fails the queue (the transport sets DEVICE_NEEDS_RESET) and
// counts as no buffer.
class VsockRxQueue {
public:
    // `chain` and `iov` are scratch space owned by the device.
    VsockRxQueue(Virtqueue& q, DescriptorChain& chain, std::vector<iovec>& iov) : q_(q), chain_(chain), iov_(iov) {}

    // A header-only packet into the next buffer; false when there is none.
    bool send_control(const VsockHeader& h);

    // A data packet: take() the next buffer (false when there is none), read into
    // payload_iov(n) for at most payload_room() bytes, then push() it with its header
    // (h.len payload bytes written) or give_back() it untouched.
    bool take();
    uint64_t payload_room() const { return chain_.writable_bytes - sizeof(VsockHeader); }
    const std::vector<iovec>& payload_iov(uint64_t n);
    void push(const VsockHeader& h);
    void give_back() { q_.undo_pop(); }

private:
    bool pop_buffer();

    Virtqueue& q_;
    DescriptorChain& chain_;
    std::vector<iovec>& iov_;
};

}  // namespace kindling

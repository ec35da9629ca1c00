#include "devices/virtio/vsock_packet.h"

#include <cinttypes>

namespace kindling {

namespace {
constexpr size_t kHdr = sizeof(VsockHeader);
}  // namespace

VsockHeader vsock_host_header(uint64_t guest_cid, uint32_t host_port, uint32_t guest_port, uint16_t op) {
    VsockHeader h{};
    h.src_cid = kVsockHostCid;
    h.dst_cid = guest_cid;
    h.src_port = host_port;
    h.dst_port = guest_port;
    h.type = kVsockTypeStream;
    h.op = op;
    return h;
}

size_t VsockTxPacket::read_payload(uint64_t offset, void* out, size_t n) const {
    return chain_.read(kHdr + offset, out, n);
}

const std::vector<iovec>& VsockTxPacket::payload_iov(uint64_t n) const {
    iov_.clear();
    chain_.readable_iov(kHdr, n, iov_);
    return iov_;
}

bool VsockRxQueue::pop_buffer() {
    if (!q_.pop(chain_)) return false;
    if (chain_.writable_bytes < kHdr) {
        q_.fail("rx buffer at head %u has %" PRIu64 " writable bytes, less than a header (44)", chain_.head,
                chain_.writable_bytes);
        return false;
    }
    return true;
}

bool VsockRxQueue::send_control(const VsockHeader& h) {
    if (!pop_buffer()) return false;
    chain_.write(0, &h, kHdr);
    q_.push(chain_.head, kHdr);
    return true;
}

bool VsockRxQueue::take() { return pop_buffer(); }

const std::vector<iovec>& VsockRxQueue::payload_iov(uint64_t n) {
    iov_.clear();
    chain_.writable_iov(kHdr, n, iov_);
    return iov_;
}

void VsockRxQueue::push(const VsockHeader& h) {
    chain_.write(0, &h, kHdr);
    q_.push(chain_.head, static_cast<uint32_t>(kHdr + h.len));
}

}  // namespace kindling

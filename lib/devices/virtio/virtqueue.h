// Device side of a split virtqueue (virtio 1.2 §2.7).
//
// Everything in the rings is written by the guest, concurrently with us, and is
// hostile: every descriptor is copied out of guest memory once and then checked
// (index in range, buffer inside guest RAM, sane length, no loops, readable before
// writable).  A violation marks the queue failed, logs one line, and calls the
// failure handler (the transport sets DEVICE_NEEDS_RESET); after that the queue
// yields nothing until the driver resets the device.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace kindling {

class GuestMemory;

// A popped descriptor chain, resolved to host memory.  Device-readable buffers come
// first in the chain (the ring guarantees the order), then device-writable ones.
struct DescriptorChain {
    struct Buffer {
        uint8_t* host = nullptr;
        uint32_t len = 0;
    };
    uint16_t head = 0;
    std::vector<Buffer> readable;
    std::vector<Buffer> writable;
    uint64_t readable_bytes = 0;
    uint64_t writable_bytes = 0;

    void clear() {
        readable.clear();
        writable.clear();
        readable_bytes = writable_bytes = 0;
    }
    // Gather/scatter at a byte offset into the readable/writable part; return the
    // bytes copied (short when the part ends first).
    size_t read(uint64_t offset, void* out, size_t n) const;
    size_t write(uint64_t offset, const void* in, size_t n) const;
    // Appends iovecs covering [offset, offset+n) of the readable/writable part
    // (clipped at its end); returns the bytes covered.
    size_t readable_iov(uint64_t offset, uint64_t n, std::vector<iovec>& out) const;
    size_t writable_iov(uint64_t offset, uint64_t n, std::vector<iovec>& out) const;
};

// Driver-programmed configuration and the device's ring positions: all a snapshot
// needs (VirtioMmio::save/restore carry it, VirtioMmio::save_to writes it).  Nothing
// else survives: notification suppression (VIRTQ_AVAIL_F_NO_INTERRUPT) lives in
// guest memory, and we offer no VIRTIO_F_EVENT_IDX.
struct VirtqueueState {
    uint16_t size = 0;
    bool ready = false;
    uint64_t desc_addr = 0;
    uint64_t avail_addr = 0;
    uint64_t used_addr = 0;
    uint16_t next_avail = 0;
    uint16_t next_used = 0;
};

class Virtqueue {
public:
    // Longest buffer a chain may describe in total; anything longer is hostile.
    static constexpr uint64_t kMaxChainBytes = 256ull << 20;
    static constexpr uint16_t kMaxQueueSize = 32768;  // virtio 1.2 §2.7
    // Entries an indirect table may have.  Linux does not bound indirect tables by
    // the queue size, so neither do we; QEMU uses the same limit.
    static constexpr uint32_t kMaxIndirect = 1024;

    Virtqueue(const GuestMemory& mem, std::string device_name, uint16_t index, uint16_t max_size);

    uint16_t index() const { return index_; }
    uint16_t max_size() const { return max_size_; }

    // Driver-programmed configuration; the transport sets these before activation.
    VirtqueueState& config() { return st_; }
    const VirtqueueState& config() const { return st_; }

    // Called on failure (after the log line).  Set by the transport.
    void set_failure_handler(std::function<void()> fn) { on_failure_ = std::move(fn); }

    // Checks the ring layout (size a power of two, rings aligned and inside guest
    // memory) and starts the queue.  A queue that is not ready is left stopped and
    // that is not an error.  Returns false when the queue failed.
    bool start(bool indirect_desc);
    // Why the configured layout cannot start (size not a power of two up to
    // max_size(), misaligned rings, rings outside guest memory); "" when it can.
    std::string layout_error() const;
    // Back to the power-on state (keeps the failure handler).
    void reset();

    bool started() const { return started_; }
    bool failed() const { return failed_; }

    // True when the driver has made a chain available that we have not popped.
    // (May fail the queue when the avail index is hostile.)
    bool has_available();
    // The driver's available index (how many chains it has ever made available, mod
    // 2^16); 0 when the queue is not started.
    uint16_t avail_index() const;
    // Pops the next available chain into `chain`; false when there is none, the
    // queue is stopped, or the chain is hostile (then the queue has failed).
    bool pop(DescriptorChain& chain);
    // Gives back the chain just popped, untouched, so the next pop() returns it again.
    void undo_pop();
    // Returns a chain to the driver: `written` bytes were written to its
    // device-writable part.  Published with release order.
    void push(uint16_t head, uint32_t written);
    // True when buffers were pushed since the last call and the driver has not
    // suppressed interrupts (VIRTQ_AVAIL_F_NO_INTERRUPT).  Clears the pushed mark.
    bool take_notify_needed();

    // Marks the queue failed and logs "DEVICE: queue N: <message>" once.  Devices use
    // it for malformed requests found inside otherwise valid chains.
    void fail(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
    // Marks the queue failed without a log line or handler call (a sibling failed).
    void stop_failed() { failed_ = true; }

private:
    struct Desc {
        uint64_t addr;
        uint32_t len;
        uint16_t flags;
        uint16_t next;
    };
    bool add_buffer(DescriptorChain& chain, const Desc& d, uint32_t idx, bool in_indirect, bool& seen_writable);
    bool walk_indirect(DescriptorChain& chain, const Desc& d, uint16_t idx, bool& seen_writable);

    const GuestMemory& mem_;
    std::string device_name_;
    uint16_t index_;
    uint16_t max_size_;
    VirtqueueState st_;
    std::function<void()> on_failure_;

    bool started_ = false;
    bool failed_ = false;
    bool indirect_ = false;
    bool pushed_ = false;
    uint8_t* desc_ = nullptr;   // struct virtq_desc[size]
    uint8_t* avail_ = nullptr;  // struct virtq_avail
    uint8_t* used_ = nullptr;   // struct virtq_used
};

}  // namespace kindling

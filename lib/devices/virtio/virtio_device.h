// What a virtio device is, independent of how it reaches the guest (kvmtool's
// rule: a device never knows its transport).  VirtioMmio carries a VirtioDevice
// today; nothing here mentions MMIO.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>

#include "devices/persistent.h"

namespace kindling {

class Interrupt;
class Virtqueue;

// virtio 1.2 §2.1 device status bits.
inline constexpr uint32_t kVirtioStatusAcknowledge = 0x01;
inline constexpr uint32_t kVirtioStatusDriver = 0x02;
inline constexpr uint32_t kVirtioStatusDriverOk = 0x04;
inline constexpr uint32_t kVirtioStatusFeaturesOk = 0x08;
inline constexpr uint32_t kVirtioStatusNeedsReset = 0x40;
inline constexpr uint32_t kVirtioStatusFailed = 0x80;

// virtio 1.2 §6 reserved feature bits.
inline constexpr uint64_t kVirtioFRingIndirectDesc = 1ull << 28;
inline constexpr uint64_t kVirtioFRingEventIdx = 1ull << 29;
inline constexpr uint64_t kVirtioFVersion1 = 1ull << 32;

// virtio 1.2 §5 device ids.
inline constexpr uint32_t kVirtioIdBlock = 2;
inline constexpr uint32_t kVirtioIdVsock = 19;

// Locking: every device has one mutex.  The transport holds it while it calls any
// of the virtual methods below (so they never lock it themselves); a device's own
// event-loop callbacks and public methods lock it.  Queues passed to activate()
// may only be touched with it held.
class VirtioDevice : public Persistent {
public:
    virtual ~VirtioDevice() = default;

    // For log lines: "virtio-vsock", "virtio-blk".
    virtual const char* name() const = 0;
    virtual uint32_t device_id() const = 0;
    // Device-specific feature bits; the transport adds the ring features it implements.
    virtual uint64_t device_features() const = 0;
    virtual uint16_t num_queues() const = 0;
    virtual uint16_t queue_max_size(uint16_t queue) const { return 256; }

    // Device-specific configuration space (virtio 1.2 §4.2.2: at offset 0x100 on mmio).
    // Reads beyond the space return zeros; writes the device does not accept are ignored.
    virtual void read_config(uint64_t offset, uint8_t* data, size_t len) = 0;
    virtual void write_config(uint64_t offset, const uint8_t* data, size_t len) {}

    // The driver set DRIVER_OK.  `queues` stay valid until reset(); `used` is the
    // device's "I used buffers" signal (raise it once per batch, not per buffer).
    // Queues the driver did not make ready are present but never yield buffers.
    virtual void activate(std::span<Virtqueue> queues, Interrupt& used, uint64_t acked_features) = 0;
    // The driver made buffers available on `queue` (a QueueNotify write, or a poll).
    virtual void notify(uint16_t queue) = 0;
    // The driver reset the device (status 0): forget the queues, drop guest-visible state.
    virtual void reset() = 0;

    // Persistent: the state of the device itself, not of its transport (the
    // transport saves it nested in its own fields and restores it after it has
    // restored the queues and activated the device).  persist_id() is name().
    // Unlike the methods above, save_to() and restore_from() take mutex()
    // themselves: the transport calls them outside its lock.
    std::string persist_id() const override { return name(); }

    std::mutex& mutex() { return mu_; }

protected:
    std::mutex mu_;
};

}  // namespace kindling

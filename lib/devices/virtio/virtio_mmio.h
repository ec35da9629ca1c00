// The virtio-mmio transport (virtio 1.2 §4.2, "Version 2" / modern only).  Owns the
// registers, the queues and the feature negotiation; carries one VirtioDevice.
//
// Register it on the MMIO bus with a window of kVirtioMmioWindow bytes.  Threads:
// read()/write() come from vCPU threads (MMIO exits), poll() from the vCPU thread
// on KN_PORT_WAIT; everything takes the device's mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "devices/bus.h"
#include "devices/interrupt.h"
#include "devices/persistent.h"
#include "devices/virtio/virtio_device.h"
#include "devices/virtio/virtqueue.h"

namespace kindling {

class GuestMemory;

inline constexpr uint64_t kVirtioMmioWindow = 0x1000;

// The transport's registers and every queue's configuration and position: what a
// snapshot keeps of a virtio-mmio device (the device's own state is separate).
// save_to() writes it as TLV fields.
struct VirtioMmioState {
    uint32_t status = 0;
    uint32_t interrupt_status = 0;
    uint32_t device_features_sel = 0;
    uint32_t driver_features_sel = 0;
    uint64_t driver_features = 0;
    uint32_t queue_sel = 0;
    uint32_t config_generation = 0;
    std::vector<VirtqueueState> queues;  // one per device queue, in order
};

class VirtioMmio : public BusDevice, public Persistent {
public:
    // Register offsets, virtio 1.2 §4.2.2.
    enum Reg : uint32_t {
        kMagicValue = 0x000,
        kVersion = 0x004,
        kDeviceId = 0x008,
        kVendorId = 0x00c,
        kDeviceFeatures = 0x010,
        kDeviceFeaturesSel = 0x014,
        kDriverFeatures = 0x020,
        kDriverFeaturesSel = 0x024,
        kQueueSel = 0x030,
        kQueueNumMax = 0x034,
        kQueueNum = 0x038,
        kQueueReady = 0x044,
        kQueueNotify = 0x050,
        kInterruptStatus = 0x060,
        kInterruptAck = 0x064,
        kStatus = 0x070,
        kQueueDescLow = 0x080,
        kQueueDescHigh = 0x084,
        kQueueDriverLow = 0x090,
        kQueueDriverHigh = 0x094,
        kQueueDeviceLow = 0x0a0,
        kQueueDeviceHigh = 0x0a4,
        kShmSel = 0x0ac,
        kShmLenLow = 0x0b0,
        kShmLenHigh = 0x0b4,
        kShmBaseLow = 0x0b8,
        kShmBaseHigh = 0x0bc,
        kConfigGeneration = 0x0fc,
        kConfig = 0x100,
    };
    static constexpr uint32_t kMagic = 0x74726976;  // "virt"
    static constexpr uint32_t kVendor = 0x4b444c4e;  // "KDLN"
    // InterruptStatus bits (§4.2.2).
    static constexpr uint32_t kIntUsedBuffer = 1;
    static constexpr uint32_t kIntConfigChange = 2;

    // `irq` is how the guest hears about used buffers and config changes (irqfd for
    // linux guests, the end of a KN_PORT_WAIT for nano guests).  Both `mem` and
    // `irq` must outlive this object.  `id` is its persist_id(): where the machine
    // put it ("virtio-mmio@0xd0000000").
    VirtioMmio(const GuestMemory& mem, std::shared_ptr<VirtioDevice> device, Interrupt& irq,
               std::string id = "virtio-mmio");
    ~VirtioMmio() override;

    void read(uint64_t offset, uint8_t* data, size_t len) override;
    void write(uint64_t offset, const uint8_t* data, size_t len) override;

    // Processes every queue as if the driver had notified it, then raises the
    // interrupt at most once for everything that was used.  Cheap when nothing is
    // pending.  The nano guest's KN_PORT_WAIT calls this on every device.
    void poll();

    VirtioDevice& device() { return *device_; }
    // True between DRIVER_OK and the next reset, unless the device failed.
    bool active();
    bool needs_reset();
    // Snapshots.  save() copies the registers and queue positions (the VM is
    // paused; call it after the device's own save, see VirtioVsock::save()).
    //
    // restore() puts a saved state into this transport, normally freshly built over
    // guest memory that already holds the snapshot's contents and before any vCPU
    // runs.  A device that was running is running again at once: queues started at
    // the saved ring positions, the device activated with the saved features, no
    // driver re-initialisation; a device that needed a reset still needs one; a
    // driver caught mid-initialisation carries on from where it was.  Pending
    // interrupt status is raised again (a spurious interrupt is harmless to a
    // virtio driver, a lost one is not).  Activation may already read the rings, so
    // guest memory must be readable (uffd handler serving) by then.
    //
    // Throws DataError "WHAT: DEVICE: ..." (or "DEVICE state: ..." without `what`)
    // when the state cannot belong to this device: wrong number of queues, features
    // it does not offer, DRIVER_OK without FEATURES_OK, a running queue whose layout
    // is invalid or outside guest memory.  On a throw the transport is left reset.
    VirtioMmioState save();
    void restore(const VirtioMmioState& s, const std::string& what = "");

    // Persistent: the device's id (virtio 1.2 §5), the device's own state as a
    // nested body, then the registers and one nested body per queue.  save_to()
    // saves the device first (vsock ends its connections there), then save().
    // restore_from() refuses state saved from another kind of device, restore()s
    // the transport, then restores the device, whose context is "CONTEXT: NAME"
    // ("/x/vmstate: device virtio-mmio@0xd0000000: virtio-vsock").
    std::string persist_id() const override { return id_; }
    void save_to(TlvWriter& out) override;
    void restore_from(TlvReader& in) override;

private:
    // What the device raises: sets InterruptStatus and triggers (or, inside poll(),
    // defers to one trigger at the end).
    class UsedSignal : public Interrupt {
    public:
        explicit UsedSignal(VirtioMmio& t) : t_(t) {}
        void trigger() override;

    private:
        VirtioMmio& t_;
    };

    uint32_t read_reg(uint32_t reg);
    void write_reg(uint32_t reg, uint32_t v);
    void set_status(uint32_t v);
    void reset_locked();
    void restore_locked(const VirtioMmioState& s, const std::string& what);
    void on_queue_failure();
    void raise(uint32_t bits);
    Virtqueue* selected_queue();
    uint64_t offered_features() const;

    const GuestMemory& mem_;
    std::shared_ptr<VirtioDevice> device_;
    std::string id_;
    Interrupt& irq_;
    UsedSignal used_signal_;
    std::vector<Virtqueue> queues_;
    VirtioMmioState st_;
    bool activated_ = false;
    bool batching_ = false;
    bool batch_raised_ = false;
};

}  // namespace kindling

// The devices of one VM: builds them from the VM's config, owns the two buses they
// sit on and the interrupts they raise, and walks them on snapshot save and restore
// (Firecracker's device_manager/persist.rs).  Each device writes and reads its own
// fields (devices/persistent.h); this class only files them under the devices' ids.
//
// The layout is fixed, so a snapshot's device ids name the same devices on restore:
//   nano guests   COM1 serial, polled (no IRQ); virtio devices whose interrupt ends
//                 the guest's KN_PORT_WAIT (take_virtio_event())
//   linux guests  COM1 serial on IRQ 4, the i8042 on IRQ 1, virtio devices on IRQ 5,
//                 6, ... (KVM irqfds)
//   virtio-mmio   one 4 KiB window each from KN_MMIO_BASE: vsock first, then the
//                 drives in config order; persist id "virtio-mmio@0x<base>"
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "devices/bus.h"
#include "snapshot/vmstate.h"
#include "vmm/vm_config.h"

namespace kindling {

class EventLoop;
class GuestMemory;
class I8042;
class Interrupt;
class Persistent;
class Serial;
class VirtioMmio;
class Vm;

class DeviceManager {
public:
    static constexpr uint32_t kFirstVirtioIrq = 5;

    struct Options {
        bool nano = false;
        int console_fd = 1;  // where the serial port's output goes (not owned)
        // Linux guests: the guest asked for a reset through the i8042.  Runs on a
        // vCPU thread; must not throw.
        std::function<void()> on_guest_reset;
    };

    // Builds every device `config` asks for, in the layout above.  `vm` (irqfds for
    // linux guests), `mem` and `loop` (vsock's host sockets) must outlive this.
    // Throws what building a device throws (vsock's socket path in use, a drive
    // that cannot be opened).
    DeviceManager(Vm& vm, const GuestMemory& mem, EventLoop& loop, const VmConfig& config, Options opts);
    ~DeviceManager();
    DeviceManager(const DeviceManager&) = delete;
    DeviceManager& operator=(const DeviceManager&) = delete;

    // Port I/O and MMIO dispatch for the vCPU threads.  More devices may be added
    // (the nano ports) until the vCPUs run.
    Bus& pio_bus() { return pio_; }
    Bus& mmio_bus() { return mmio_; }
    // nullptr for nano guests.
    I8042* i8042() { return i8042_.get(); }

    // Where each virtio-mmio device is, in window order (boot parameters and the
    // kernel command line announce them).
    struct VirtioSlot {
        uint64_t base;
        uint32_t irq;  // linux guests
        uint32_t device_id;
    };
    std::vector<VirtioSlot> virtio_slots() const;

    // Nano guests' KN_PORT_WAIT: processes every virtio queue as if notified.
    void poll_virtio();
    // Nano guests: whether a virtio device signalled the guest since the last call.
    bool take_virtio_event() { return virtio_event_.exchange(false); }

    // Every device's state in a fixed order: the virtio devices first (vsock ends
    // its host connections when saved), then serial, then the i8042.  The VM is
    // paused and nothing runs the device loop.
    std::vector<DeviceSection> save();

    // Restores every device from `sections` (the devices are freshly built and no
    // vCPU has run).  The sections must match the devices one to one: a device
    // without a section ("ORIGIN: no state for device ID") and a section no device
    // claims ("ORIGIN: state for device ID, which this machine does not have") are
    // DataErrors raised before any device is touched.  A device's own complaint is
    // "ORIGIN: device ID: ...".
    void restore(const std::vector<DeviceSection>& sections, const std::string& origin);

private:
    std::vector<Persistent*> persistent_devices();

    // Declared before the devices, which hold references to them.
    std::atomic<bool> virtio_event_{false};
    std::vector<std::unique_ptr<Interrupt>> interrupts_;
    Bus pio_;
    Bus mmio_;
    std::shared_ptr<Serial> serial_;
    std::shared_ptr<I8042> i8042_;
    std::vector<std::shared_ptr<VirtioMmio>> virtio_;
    std::vector<VirtioSlot> slots_;
};

}  // namespace kindling

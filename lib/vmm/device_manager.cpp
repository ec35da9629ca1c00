#include "vmm/device_manager.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <set>

#include "base/error.h"
#include "base/event_loop.h"
#include "base/fd.h"
#include "devices/i8042.h"
#include "devices/interrupt.h"
#include "devices/persistent.h"
#include "devices/serial.h"
#include "devices/virtio/virtio_blk.h"
#include "devices/virtio/virtio_mmio.h"
#include "devices/virtio/virtio_vsock.h"
#include "kindling/nano_abi.h"
#include "kvm/kvm.h"

namespace kindling {

namespace {

// Nano guests: ends a KN_PORT_WAIT.
class NanoInterrupt : public Interrupt {
public:
    NanoInterrupt(std::atomic<bool>& flag, EventLoop& loop) : flag_(flag), loop_(loop) {}
    void trigger() override {
        if (!flag_.exchange(true)) loop_.wake();
    }

private:
    std::atomic<bool>& flag_;
    EventLoop& loop_;
};

// Linux guests: an eventfd registered with KVM as an irqfd.
class IrqFdInterrupt : public Interrupt {
public:
    IrqFdInterrupt(Vm& vm, uint32_t gsi) : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
        if (!fd_) throw_errno("eventfd");
        vm.add_irqfd(fd_.get(), gsi);
    }
    void trigger() override {
        uint64_t one = 1;
        (void)!::write(fd_.get(), &one, sizeof one);
    }

private:
    UniqueFd fd_;
};

std::string mmio_id(uint64_t base) {
    char b[48];
    std::snprintf(b, sizeof b, "virtio-mmio@0x%" PRIx64, base);
    return b;
}

}  // namespace

DeviceManager::DeviceManager(Vm& vm, const GuestMemory& mem, EventLoop& loop, const VmConfig& config, Options opts) {
    if (opts.nano) {
        serial_ = std::make_shared<Serial>(opts.console_fd, nullptr);
    } else {
        auto serial_irq = std::make_unique<IrqFdInterrupt>(vm, Serial::kCom1Irq);
        serial_ = std::make_shared<Serial>(opts.console_fd, serial_irq.get());
        interrupts_.push_back(std::move(serial_irq));
        auto kbd_irq = std::make_unique<IrqFdInterrupt>(vm, I8042::kKeyboardIrq);
        i8042_ = std::make_shared<I8042>(std::move(opts.on_guest_reset), kbd_irq.get());
        I8042::attach(pio_, i8042_);
        interrupts_.push_back(std::move(kbd_irq));
    }
    pio_.add(Serial::kCom1Base, Serial::kPortCount, serial_);

    std::vector<std::shared_ptr<VirtioDevice>> devs;
    if (config.vsock) devs.push_back(std::make_shared<VirtioVsock>(config.vsock->guest_cid, config.vsock->uds_path, loop));
    for (const auto& d : config.drives)
        devs.push_back(std::make_shared<VirtioBlk>(d.path_on_host, d.is_read_only, d.drive_id, d.copy_on_write));
    for (size_t i = 0; i < devs.size(); ++i) {
        const VirtioSlot slot{KN_MMIO_BASE + i * KN_MMIO_STRIDE, kFirstVirtioIrq + static_cast<uint32_t>(i),
                              devs[i]->device_id()};
        std::unique_ptr<Interrupt> irq;
        if (opts.nano) irq = std::make_unique<NanoInterrupt>(virtio_event_, loop);
        else irq = std::make_unique<IrqFdInterrupt>(vm, slot.irq);
        auto mmio = std::make_shared<VirtioMmio>(mem, devs[i], *irq, mmio_id(slot.base));
        mmio_.add(slot.base, kVirtioMmioWindow, mmio);
        interrupts_.push_back(std::move(irq));
        virtio_.push_back(std::move(mmio));
        slots_.push_back(slot);
    }
}

DeviceManager::~DeviceManager() = default;

std::vector<DeviceManager::VirtioSlot> DeviceManager::virtio_slots() const { return slots_; }

void DeviceManager::poll_virtio() {
    for (auto& d : virtio_) d->poll();
}

std::vector<Persistent*> DeviceManager::persistent_devices() {
    std::vector<Persistent*> out;
    for (auto& v : virtio_) out.push_back(v.get());
    out.push_back(serial_.get());
    if (i8042_) out.push_back(i8042_.get());
    return out;
}

std::vector<DeviceSection> DeviceManager::save() {
    std::vector<DeviceSection> out;
    for (Persistent* p : persistent_devices()) {
        TlvWriter w;
        p->save_to(w);
        out.push_back({p->persist_id(), w.take()});
    }
    return out;
}

void DeviceManager::restore(const std::vector<DeviceSection>& sections, const std::string& origin) {
    const std::vector<Persistent*> devices = persistent_devices();
    std::vector<const DeviceSection*> matched;
    std::set<std::string> ids;
    for (Persistent* p : devices) {
        const std::string id = p->persist_id();
        const DeviceSection* found = nullptr;
        for (const auto& s : sections)
            if (s.id == id) found = &s;
        if (!found) throw DataError(origin + ": no state for device " + id);
        matched.push_back(found);
        ids.insert(id);
    }
    for (const auto& s : sections)
        if (!ids.count(s.id)) throw DataError(origin + ": state for device " + s.id + ", which this machine does not have");
    for (size_t i = 0; i < devices.size(); ++i) {
        TlvReader r(matched[i]->state, origin + ": device " + matched[i]->id);
        devices[i]->restore_from(r);
    }
}

}  // namespace kindling

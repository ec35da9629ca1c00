#include "kvm/vm_state.h"

#include <sys/ioctl.h>

#include <cerrno>
#include <string>

#include "base/error.h"

namespace kindling {

namespace {

int ioctl_retry(int fd, unsigned long req, const void* arg) { return kvm_ioctl(fd, req, arg); }

// False when the VM has no such device (ENXIO: no irqchip/PIT created; ENOTTY, EINVAL:
// KVM does not know the ioctl).
bool optional_ioctl(int fd, unsigned long req, const void* arg, const char* name) {
    if (ioctl_retry(fd, req, arg) == 0) return true;
    if (errno == ENXIO || errno == ENOTTY || errno == EINVAL) return false;
    throw_errno(name);
}

void must(int fd, unsigned long req, const void* arg, const std::string& name) {
    if (ioctl_retry(fd, req, arg) < 0) {
        int e = errno;
        if (e == ENXIO) throw SysError(name + ": the snapshot has an in-kernel irqchip/PIT but this VM has none", e);
        throw SysError(name, e);
    }
}

std::optional<kvm_irqchip> get_chip(int fd, uint32_t id) {
    kvm_irqchip c{};
    c.chip_id = id;
    if (!optional_ioctl(fd, KVM_GET_IRQCHIP, &c, "KVM_GET_IRQCHIP")) return std::nullopt;
    return c;
}

}  // namespace

VmKvmState save_vm(const Vm& vm) {
    VmKvmState s;
    const int fd = vm.fd();
    kvm_pit_state2 pit{};
    if (optional_ioctl(fd, KVM_GET_PIT2, &pit, "KVM_GET_PIT2")) s.pit = pit;
    if (ioctl_retry(fd, KVM_GET_CLOCK, &s.clock) < 0) throw_errno("KVM_GET_CLOCK");
    s.pic_master = get_chip(fd, KVM_IRQCHIP_PIC_MASTER);
    if (s.pic_master) {
        s.pic_slave = get_chip(fd, KVM_IRQCHIP_PIC_SLAVE);
        s.ioapic = get_chip(fd, KVM_IRQCHIP_IOAPIC);
    }
    return s;
}

void restore_vm(Vm& vm, const VmKvmState& s) {
    const int fd = vm.fd();
    if (s.pit) must(fd, KVM_SET_PIT2, &*s.pit, "KVM_SET_PIT2");
    kvm_clock_data c{};
    c.clock = s.clock.clock;
    // KVM_SET_CLOCK accepts only KVM_CLOCK_REALTIME (+ the read-only bits on newer
    // kernels); flags = 0 sets the guest clock to exactly the saved value.
    c.flags = 0;
    must(fd, KVM_SET_CLOCK, &c, "KVM_SET_CLOCK");
    if (s.pic_master) must(fd, KVM_SET_IRQCHIP, &*s.pic_master, "KVM_SET_IRQCHIP (PIC master)");
    if (s.pic_slave) must(fd, KVM_SET_IRQCHIP, &*s.pic_slave, "KVM_SET_IRQCHIP (PIC slave)");
    if (s.ioapic) must(fd, KVM_SET_IRQCHIP, &*s.ioapic, "KVM_SET_IRQCHIP (IOAPIC)");
}

}  // namespace kindling

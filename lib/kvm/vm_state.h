// Save and restore of the VM-wide KVM state: the kvmclock and, when the VM has an
// in-kernel irqchip (linux guests), the PIT and the PIC/IOAPIC registers.  Order as
// Firecracker (vmm/src/vstate/vm.rs): PIT2, CLOCK, PIC master, PIC slave, IOAPIC.
//
// Named VmKvmState because kindling::VmState is the run state (vmm/vm_config.h).
#pragma once

#include <linux/kvm.h>

#include <optional>

#include "kvm/kvm.h"

namespace kindling {

struct VmKvmState {
    kvm_clock_data clock{};                 // KVM_GET_CLOCK
    std::optional<kvm_pit_state2> pit;      // KVM_GET_PIT2; absent without a PIT
    std::optional<kvm_irqchip> pic_master;  // KVM_GET_IRQCHIP chip 0; absent without an irqchip
    std::optional<kvm_irqchip> pic_slave;   // chip 1
    std::optional<kvm_irqchip> ioapic;      // chip 2

    bool has_irqchip() const { return pic_master.has_value(); }
};

// The VM must be paused (no vCPU in KVM_RUN).  Throws SysError naming the ioctl.
VmKvmState save_vm(const Vm& vm);

// Into a VM built the same way (memory slots set; create_irqchip_and_pit() done when
// the snapshot has an irqchip — otherwise SysError, "snapshot has an irqchip but ...").
// The clock is set without KVM_CLOCK_REALTIME: the guest's clock continues from the
// value it had when the snapshot was taken, as in Firecracker.
void restore_vm(Vm& vm, const VmKvmState& s);

}  // namespace kindling

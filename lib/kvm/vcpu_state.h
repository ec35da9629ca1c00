// Save and restore of one vCPU's KVM state, in Firecracker's order
// (vmm/src/vstate/vcpu/x86_64.rs): CPUID2 → MP_STATE → REGS → SREGS → XSAVE → XCRS →
// DEBUGREGS → LAPIC → MSRs → VCPU_EVENTS, then KVMCLOCK_CTRL after a restore.
//
// Preconditions (Documentation/virt/kvm/api.rst):
// - save: the vCPU is not inside KVM_RUN (the VM is paused) and complete_pending_io()
//   has been called on it since its last exit.
// - restore: a freshly created vCPU that has never run, in a VM whose memory slots
//   (and, for a snapshot with a LAPIC, in-kernel irqchip) already exist.
//
// State that KVM says is unsupported (KVM_CHECK_EXTENSION, ENOTTY/EINVAL from the
// ioctl) is recorded as absent and skipped on restore — see the optionals below.
//
// Measured on the PVM host (kvm_pvm, Linux 6.18): every ioctl above works, with
// KVM_CAP_XSAVE2 = 4096 (so the legacy KVM_GET_XSAVE is used), LAPIC absent without
// an irqchip (EINVAL), KVM_KVMCLOCK_CTRL EINVAL (no guest kvmclock), no
// KVM_CAP_NESTED_STATE (not saved: kindling guests never run VMX/SVM) and no
// KVM_CAP_TSC_CONTROL (a snapshot cannot be moved to a host with another TSC rate
// without drift).  KVM_GET_MSR_INDEX_LIST gives 40 MSRs, all readable, but not the
// MTRRs or TSC_AUX; KVM refuses MSR_KVM_ASYNC_PF_INT = 0 without a LAPIC.
// Save of one nano vCPU ~80 us, restore ~160 us (69 MSRs).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "kvm/kvm.h"

namespace kindling {

// uapi's struct kvm_xsave ends in a flex array, so in C++ its sizeof is 4100, not
// 4096, and KVM_GET_XSAVE/KVM_SET_XSAVE/KVM_GET_XSAVE2 from the header encode the wrong
// size (the kernel answers EINVAL — measured).  The real legacy region is 4096 bytes.
struct KvmXsaveRegion {
    uint32_t region[1024];
};
inline constexpr unsigned long kKvmGetXsave = _IOR(KVMIO, 0xa4, KvmXsaveRegion);
inline constexpr unsigned long kKvmSetXsave = _IOW(KVMIO, 0xa5, KvmXsaveRegion);
inline constexpr unsigned long kKvmGetXsave2 = _IOR(KVMIO, 0xcf, KvmXsaveRegion);
inline constexpr size_t kXsaveLegacySize = sizeof(KvmXsaveRegion);

inline constexpr uint32_t kMsrIa32Tsc = 0x10;
inline constexpr uint32_t kMsrIa32TscDeadline = 0x6e0;

struct VcpuState {
    uint32_t index = 0;  // KVM vCPU id
    std::vector<kvm_cpuid_entry2> cpuid;
    kvm_mp_state mp_state{};
    kvm_regs regs{};
    kvm_sregs sregs{};
    // KVM_GET_XSAVE (4096 bytes) or KVM_GET_XSAVE2 (KVM_CAP_XSAVE2 bytes, when larger).
    // Empty when KVM has no XSAVE ioctls; then `fpu` holds KVM_GET_FPU instead.
    std::vector<uint8_t> xsave;
    std::optional<kvm_fpu> fpu;
    std::optional<kvm_xcrs> xcrs;            // KVM_CAP_XCRS
    std::optional<kvm_debugregs> debugregs;  // KVM_CAP_DEBUGREGS
    std::optional<kvm_lapic_state> lapic;    // only with an in-kernel irqchip
    // Every MSR KVM reports (KVM_GET_MSR_INDEX_LIST) plus the MTRRs and TSC_AUX,
    // filtered to those KVM_GET_MSRS can read on this vCPU, in restore order: IA32_TSC
    // first, IA32_TSC_DEADLINE (armed relative to the TSC) last.
    std::vector<kvm_msr_entry> msrs;
    std::optional<kvm_vcpu_events> events;  // KVM_CAP_VCPU_EVENTS
    uint32_t tsc_khz = 0;                   // KVM_GET_TSC_KHZ; 0 = unknown
};

// Reads the vCPU's state.  Throws SysError naming the ioctl and the vCPU on any
// failure other than "unsupported".
VcpuState save_vcpu(const Kvm& kvm, Vcpu& vcpu);

// Writes `s` into `vcpu` in the same order, then tells the guest's kvmclock that it
// was paused (KVM_KVMCLOCK_CTRL, best effort: EINVAL when the guest has no kvmclock).
// An MSR that KVM refuses is accepted only if the vCPU already holds the saved value
// (e.g. MSR_KVM_ASYNC_PF_INT = 0 on a VM without a LAPIC); otherwise SysError.
// When the host's TSC frequency differs from the saved one and KVM_CAP_TSC_CONTROL
// is available, the vCPU's TSC is scaled to the saved frequency first.
void restore_vcpu(const Kvm& kvm, Vcpu& vcpu, const VcpuState& s);

// Finishes an instruction that exited to userspace (KVM_EXIT_IO, KVM_EXIT_MMIO): api.rst
// "the corresponding operations are complete (and guest state is consistent) only
// after userspace has re-entered the kernel with KVM_RUN" — so re-enter once with
// immediate_exit=1, which completes it without running any further guest
// instruction.  For an IN or MMIO read, the exit's data must already be filled in.
// Harmless for any other exit (KVM returns EINTR at once).  Call on a paused vCPU
// before save_vcpu.
void complete_pending_io(Vcpu& vcpu);

// The MSR indices save_vcpu considers (before filtering by what the vCPU can read).
std::vector<uint32_t> msr_candidates(const Kvm& kvm);

}  // namespace kindling

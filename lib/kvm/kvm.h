// Thin owners of the KVM file descriptors: the system (/dev/kvm), a VM, a vCPU.
// Everything here is plain ioctl plumbing (Documentation/virt/kvm/api.rst); what
// to put in the registers is decided by the boot code (nano_boot, linux_boot).
#pragma once

#include <linux/kvm.h>

#include <atomic>
#include <future>
#include <mutex>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "kvm/guest_memory.h"

namespace kindling {

// The uapi headers declare kvm_cpuid2, kvm_msrs and kvm_msr_list with
// __DECLARE_FLEX_ARRAY, which in C++ adds an empty struct member and makes sizeof()
// 4-8 bytes too large — so the ioctl numbers computed from them in C++ are wrong
// and the kernel answers EINVAL/ENOTTY.  Define those ioctls from the real C layout.
struct KvmCountHeader {
    uint32_t count;
    uint32_t padding;
};
struct KvmMsrListHeader {
    uint32_t nmsrs;
};
inline constexpr unsigned long kKvmGetSupportedCpuid = _IOWR(KVMIO, 0x05, KvmCountHeader);
inline constexpr unsigned long kKvmGetMsrIndexList = _IOWR(KVMIO, 0x02, KvmMsrListHeader);
inline constexpr unsigned long kKvmGetMsrs = _IOWR(KVMIO, 0x88, KvmCountHeader);
inline constexpr unsigned long kKvmSetMsrs = _IOW(KVMIO, 0x89, KvmCountHeader);
inline constexpr unsigned long kKvmSetCpuid2 = _IOW(KVMIO, 0x90, KvmCountHeader);
inline constexpr unsigned long kKvmGetCpuid2 = _IOWR(KVMIO, 0x91, KvmCountHeader);

// ioctl(2) retried on EINTR; returns its result (-1 with errno on failure).
int kvm_ioctl(int fd, unsigned long req, const void* arg);
// The same, throwing SysError(what) on failure.
int kvm_ioctl_or_throw(int fd, unsigned long req, const void* arg, const char* what);

class Kvm {
public:
    // Opens /dev/kvm (or $KINDLING_KVM_DEV).  Missing device -> UnavailableError (69),
    // no permission -> exit 77, wrong API version -> UnavailableError.
    Kvm();

    int fd() const { return fd_.get(); }
    int vcpu_mmap_size() const { return vcpu_mmap_size_; }
    bool has_cap(long cap) const;
    // KVM_GET_SUPPORTED_CPUID.  Fetched on a helper thread started by the
    // constructor: it costs ~0.35 ms here (each host CPUID traps when the host is
    // itself a VM), and the VM, its memory and the image load meanwhile.
    const std::vector<kvm_cpuid_entry2>& supported_cpuid() const;

private:
    UniqueFd fd_;
    int vcpu_mmap_size_ = 0;
    mutable std::future<std::vector<kvm_cpuid_entry2>> cpuid_future_;
    mutable std::vector<kvm_cpuid_entry2> cpuid_;
    mutable std::once_flag cpuid_once_;
};

class Vm {
public:
    explicit Vm(const Kvm& kvm);

    int fd() const { return fd_.get(); }
    const Kvm& kvm() const { return kvm_; }

    // Registers each RAM region as a memory slot (optionally with dirty logging).
    void set_memory(const GuestMemory& mem, bool log_dirty = false);
    // In-kernel irqchip (PIC + IOAPIC + LAPIC) and PIT — the linux path only.
    void create_irqchip_and_pit();
    // Routes an eventfd to a GSI: writing the eventfd raises the interrupt.
    void add_irqfd(int eventfd, uint32_t gsi);
    uint32_t tsc_khz() const;

private:
    const Kvm& kvm_;
    UniqueFd fd_;
};

class Vcpu {
public:
    Vcpu(Vm& vm, int index);

    int fd() const { return fd_.get(); }
    int index() const { return index_; }
    kvm_run* run_state() const { return reinterpret_cast<kvm_run*>(run_.data()); }

    // KVM_RUN; returns false when interrupted by a signal (EINTR), throws on
    // any other failure.
    bool run();

    kvm_regs get_regs() const;
    void set_regs(const kvm_regs& r);
    kvm_sregs get_sregs() const;
    void set_sregs(const kvm_sregs& s);
    void set_fpu(const kvm_fpu& f);
    void set_cpuid(const std::vector<kvm_cpuid_entry2>& entries);
    // Sets what it can; returns how many MSRs KVM accepted.
    int set_msrs(const std::vector<kvm_msr_entry>& msrs);
    void set_xcr0(uint64_t value);

    // CPUID for this vCPU: the host-supported set with the APIC id and the
    // hypervisor bit patched in.
    static std::vector<kvm_cpuid_entry2> cpuid_for(const Kvm& kvm, int index, int count);

private:
    int index_;
    UniqueFd fd_;
    Mapping run_;
};

// Firecracker's boot MSRs (arch/x86_64/msr.rs create_boot_msr_entries), including
// MTRRdefType = 0x806 (MTRRs enabled, default type write-back) which Linux reads.
std::vector<kvm_msr_entry> boot_msrs();

}  // namespace kindling

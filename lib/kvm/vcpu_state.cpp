#include "kvm/vcpu_state.h"

#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/error.h"
#include "base/log.h"

namespace kindling {

namespace {

int ioctl_retry(int fd, unsigned long req, const void* arg) { return kvm_ioctl(fd, req, arg); }

std::string vcpu_what(const Vcpu& v, const char* ioctl_name) {
    return std::string(ioctl_name) + " (vCPU " + std::to_string(v.index()) + ")";
}

void must(const Vcpu& v, unsigned long req, const void* arg, const char* name) {
    if (ioctl_retry(v.fd(), req, arg) < 0) throw_errno(vcpu_what(v, name));
}

// True when the ioctl worked; false when KVM says it does not support it (ENOTTY,
// EINVAL, ENXIO); throws on anything else.
bool optional_ioctl(const Vcpu& v, unsigned long req, const void* arg, const char* name) {
    if (ioctl_retry(v.fd(), req, arg) == 0) return true;
    if (errno == ENOTTY || errno == EINVAL || errno == ENXIO) return false;
    throw_errno(vcpu_what(v, name));
}

std::vector<kvm_cpuid_entry2> get_cpuid2(const Vcpu& v) {
    for (uint32_t n = 64; n <= 4096; n *= 2) {
        std::vector<uint8_t> buf(sizeof(KvmCountHeader) + n * sizeof(kvm_cpuid_entry2));
        auto* h = reinterpret_cast<KvmCountHeader*>(buf.data());
        h->count = n;
        if (ioctl_retry(v.fd(), kKvmGetCpuid2, h) == 0) {
            std::vector<kvm_cpuid_entry2> out(h->count);
            std::memcpy(out.data(), h + 1, h->count * sizeof(kvm_cpuid_entry2));
            return out;
        }
        if (errno != E2BIG) throw_errno(vcpu_what(v, "KVM_GET_CPUID2"));
    }
    throw SysError(vcpu_what(v, "KVM_GET_CPUID2"), E2BIG);
}

// KVM_GET_MSRS stops at the first MSR it cannot read and returns how many it read.
// Reads `indices` in one call when all are readable; otherwise drops each failing
// index and carries on after it.
std::vector<kvm_msr_entry> read_msrs(const Vcpu& v, const std::vector<uint32_t>& indices) {
    std::vector<kvm_msr_entry> out;
    out.reserve(indices.size());
    std::vector<uint8_t> buf(sizeof(KvmCountHeader) + indices.size() * sizeof(kvm_msr_entry));
    size_t next = 0;
    while (next < indices.size()) {
        const size_t n = indices.size() - next;
        std::memset(buf.data(), 0, buf.size());
        auto* h = reinterpret_cast<KvmCountHeader*>(buf.data());
        auto* e = reinterpret_cast<kvm_msr_entry*>(h + 1);
        h->count = static_cast<uint32_t>(n);
        for (size_t i = 0; i < n; ++i) e[i].index = indices[next + i];
        int r = ioctl_retry(v.fd(), kKvmGetMsrs, h);
        if (r < 0) throw_errno(vcpu_what(v, "KVM_GET_MSRS"));
        out.insert(out.end(), e, e + r);
        next += static_cast<size_t>(r);
        if (static_cast<size_t>(r) < n) ++next;  // indices[next-1] is unreadable: drop it
    }
    return out;
}

uint64_t read_one_msr(const Vcpu& v, uint32_t index, bool& ok) {
    struct {
        KvmCountHeader h;
        kvm_msr_entry e;
    } one{};
    one.h.count = 1;
    one.e.index = index;
    ok = ioctl_retry(v.fd(), kKvmGetMsrs, &one) == 1;
    return one.e.data;
}

// KVM_SET_MSRS also stops at the first MSR it refuses.  A refused MSR is fine when
// the vCPU already holds that value (its power-on value, e.g. MSR_KVM_ASYNC_PF_INT = 0
// without a LAPIC); anything else would silently lose guest state.
void write_msrs(const Vcpu& v, const std::vector<kvm_msr_entry>& msrs) {
    std::vector<uint8_t> buf(sizeof(KvmCountHeader) + msrs.size() * sizeof(kvm_msr_entry));
    size_t next = 0;
    while (next < msrs.size()) {
        const size_t n = msrs.size() - next;
        auto* h = reinterpret_cast<KvmCountHeader*>(buf.data());
        h->count = static_cast<uint32_t>(n);
        h->padding = 0;
        std::memcpy(h + 1, msrs.data() + next, n * sizeof(kvm_msr_entry));
        int r = ioctl_retry(v.fd(), kKvmSetMsrs, h);
        if (r < 0) throw_errno(vcpu_what(v, "KVM_SET_MSRS"));
        next += static_cast<size_t>(r);
        if (static_cast<size_t>(r) == n) break;
        const kvm_msr_entry& bad = msrs[next];
        bool ok = false;
        uint64_t cur = read_one_msr(v, bad.index, ok);
        if (!ok || cur != bad.data) {
            char msg[160];
            std::snprintf(msg, sizeof msg, "KVM_SET_MSRS (vCPU %d): KVM refused MSR 0x%x = 0x%llx", v.index(), bad.index,
                          static_cast<unsigned long long>(bad.data));
            throw SysError(msg, EINVAL);
        }
        log_debug("vCPU %d: KVM refused MSR 0x%x but it already holds 0x%llx", v.index(), bad.index,
                  static_cast<unsigned long long>(bad.data));
        ++next;
    }
}

size_t xsave_size(const Kvm& kvm) {
    int r = ::ioctl(kvm.fd(), KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    return r > static_cast<int>(kXsaveLegacySize) ? static_cast<size_t>(r) : kXsaveLegacySize;
}

}  // namespace

std::vector<uint32_t> msr_candidates(const Kvm& kvm) {
    std::vector<uint32_t> out;
    for (uint32_t n = 256; n <= 16384; n *= 2) {
        std::vector<uint8_t> buf(sizeof(KvmMsrListHeader) + n * sizeof(uint32_t));
        auto* h = reinterpret_cast<KvmMsrListHeader*>(buf.data());
        h->nmsrs = n;
        if (ioctl_retry(kvm.fd(), kKvmGetMsrIndexList, h) == 0) {
            auto* idx = reinterpret_cast<uint32_t*>(h + 1);
            out.assign(idx, idx + h->nmsrs);
            break;
        }
        if (errno != E2BIG) throw_errno("KVM_GET_MSR_INDEX_LIST");
    }
    // KVM's list leaves out MSRs it emulates but does not "save" itself: the MTRRs
    // (Linux reads MTRRdefType, which boot_msrs() sets) and TSC_AUX (RDTSCP/RDPID) —
    // measured missing from the list on the PVM host.  Unreadable ones are dropped
    // by the probe in save_vcpu.
    std::vector<uint32_t> extra = {0x2ff, 0x250, 0x258, 0x259, 0xc0000103};
    for (uint32_t m = 0x268; m <= 0x26f; ++m) extra.push_back(m);  // fixed-range MTRRs
    for (uint32_t m = 0x200; m < 0x210; ++m) extra.push_back(m);   // 8 variable MTRR pairs
    for (uint32_t m : extra)
        if (std::find(out.begin(), out.end(), m) == out.end()) out.push_back(m);
    // x2APIC registers (0x800-0x8ff) travel in the LAPIC state; setting them as MSRs
    // would fail without x2APIC mode and duplicate KVM_SET_LAPIC otherwise.
    std::erase_if(out, [](uint32_t m) { return m >= 0x800 && m < 0x900; });
    // IA32_TSC first and IA32_TSC_DEADLINE last: KVM arms the deadline timer by
    // comparing the deadline with the current TSC, so a deadline written before the TSC
    // is restored can fire at once or never (Firecracker defers it for this reason).
    std::stable_partition(out.begin(), out.end(), [](uint32_t m) { return m == kMsrIa32Tsc; });
    std::stable_partition(out.begin(), out.end(), [](uint32_t m) { return m != kMsrIa32TscDeadline; });
    return out;
}

VcpuState save_vcpu(const Kvm& kvm, Vcpu& v) {
    VcpuState s;
    s.index = static_cast<uint32_t>(v.index());
    s.cpuid = get_cpuid2(v);
    must(v, KVM_GET_MP_STATE, &s.mp_state, "KVM_GET_MP_STATE");
    must(v, KVM_GET_REGS, &s.regs, "KVM_GET_REGS");
    must(v, KVM_GET_SREGS, &s.sregs, "KVM_GET_SREGS");

    const size_t xs = xsave_size(kvm);
    s.xsave.assign(xs, 0);
    bool have_xsave = kvm.has_cap(KVM_CAP_XSAVE) &&
                      (xs > kXsaveLegacySize ? optional_ioctl(v, kKvmGetXsave2, s.xsave.data(), "KVM_GET_XSAVE2")
                                             : optional_ioctl(v, kKvmGetXsave, s.xsave.data(), "KVM_GET_XSAVE"));
    if (!have_xsave) {
        s.xsave.clear();
        kvm_fpu f{};
        must(v, KVM_GET_FPU, &f, "KVM_GET_FPU");
        s.fpu = f;
    }

    if (kvm.has_cap(KVM_CAP_XCRS)) {
        kvm_xcrs x{};
        if (optional_ioctl(v, KVM_GET_XCRS, &x, "KVM_GET_XCRS")) s.xcrs = x;
    }
    if (kvm.has_cap(KVM_CAP_DEBUGREGS)) {
        kvm_debugregs d{};
        if (optional_ioctl(v, KVM_GET_DEBUGREGS, &d, "KVM_GET_DEBUGREGS")) s.debugregs = d;
    }
    {
        // EINVAL without an in-kernel irqchip (nano guests): recorded as absent.
        kvm_lapic_state l{};
        if (optional_ioctl(v, KVM_GET_LAPIC, &l, "KVM_GET_LAPIC")) s.lapic = l;
    }
    s.msrs = read_msrs(v, msr_candidates(kvm));
    if (kvm.has_cap(KVM_CAP_VCPU_EVENTS)) {
        kvm_vcpu_events e{};
        if (optional_ioctl(v, KVM_GET_VCPU_EVENTS, &e, "KVM_GET_VCPU_EVENTS")) s.events = e;
    }
    int khz = ioctl_retry(v.fd(), KVM_GET_TSC_KHZ, nullptr);
    s.tsc_khz = khz > 0 ? static_cast<uint32_t>(khz) : 0;
    return s;
}

void restore_vcpu(const Kvm& kvm, Vcpu& v, const VcpuState& s) {
    // The TSC frequency first (Firecracker does the same): MSR_IA32_TSC and the
    // deadline timer are meaningful only at the saved rate.
    if (s.tsc_khz) {
        int cur = ioctl_retry(v.fd(), KVM_GET_TSC_KHZ, nullptr);
        // Within 250 ppm counts as the same clock (Firecracker's tolerance).
        if (cur > 0 && std::llabs(static_cast<long long>(cur) - s.tsc_khz) * 4000 > s.tsc_khz) {
            if (kvm.has_cap(KVM_CAP_TSC_CONTROL)) {
                if (ioctl_retry(v.fd(), KVM_SET_TSC_KHZ, reinterpret_cast<void*>(static_cast<uintptr_t>(s.tsc_khz))) < 0)
                    throw_errno(vcpu_what(v, "KVM_SET_TSC_KHZ"));
            } else {
                log_warn("vCPU %d: snapshot TSC runs at %u kHz, this host at %d kHz and KVM cannot scale it; "
                         "guest time will drift",
                         v.index(), s.tsc_khz, cur);
            }
        }
    }

    {
        std::vector<uint8_t> buf(sizeof(KvmCountHeader) + s.cpuid.size() * sizeof(kvm_cpuid_entry2));
        auto* h = reinterpret_cast<KvmCountHeader*>(buf.data());
        h->count = static_cast<uint32_t>(s.cpuid.size());
        std::memcpy(h + 1, s.cpuid.data(), s.cpuid.size() * sizeof(kvm_cpuid_entry2));
        must(v, kKvmSetCpuid2, h, "KVM_SET_CPUID2");
    }
    must(v, KVM_SET_MP_STATE, &s.mp_state, "KVM_SET_MP_STATE");
    must(v, KVM_SET_REGS, &s.regs, "KVM_SET_REGS");
    must(v, KVM_SET_SREGS, &s.sregs, "KVM_SET_SREGS");

    if (!s.xsave.empty()) {
        // KVM_SET_XSAVE reads as many bytes as this host's XSAVE area (KVM_CAP_XSAVE2);
        // never hand it a shorter buffer.  The tail beyond the saved area is zero, which
        // XSTATE_BV marks as "init state".
        std::vector<uint8_t> buf = s.xsave;
        if (buf.size() < xsave_size(kvm)) buf.resize(xsave_size(kvm), 0);
        must(v, kKvmSetXsave, buf.data(), "KVM_SET_XSAVE");
    } else if (s.fpu) {
        must(v, KVM_SET_FPU, &*s.fpu, "KVM_SET_FPU");
    }
    if (s.xcrs) must(v, KVM_SET_XCRS, &*s.xcrs, "KVM_SET_XCRS");
    if (s.debugregs) must(v, KVM_SET_DEBUGREGS, &*s.debugregs, "KVM_SET_DEBUGREGS");
    if (s.lapic) must(v, KVM_SET_LAPIC, &*s.lapic, "KVM_SET_LAPIC");
    write_msrs(v, s.msrs);
    if (s.events) must(v, KVM_SET_VCPU_EVENTS, &*s.events, "KVM_SET_VCPU_EVENTS");

    // Tell a kvmclock guest it was paused, so its soft-lockup watchdog does not fire.
    // EINVAL = the guest never enabled kvmclock (every nano guest); nothing to do.
    if (ioctl_retry(v.fd(), KVM_KVMCLOCK_CTRL, nullptr) < 0 && errno != EINVAL && errno != ENOTTY)
        log_verbose("vCPU %d: KVM_KVMCLOCK_CTRL: %s", v.index(), std::strerror(errno));
}

void complete_pending_io(Vcpu& v) {
    kvm_run* run = v.run_state();
    const uint8_t saved = run->immediate_exit;
    run->immediate_exit = 1;
    // Not retried on EINTR: EINTR is the expected answer.  KVM completes the pending
    // instruction before it looks at immediate_exit (x86.c kvm_arch_vcpu_ioctl_run).
    int r = ::ioctl(v.fd(), KVM_RUN, 0);
    int err = errno;
    run->immediate_exit = saved;
    if (r < 0 && err != EINTR && err != EAGAIN) throw SysError(vcpu_what(v, "KVM_RUN (completing pending I/O)"), err);
}

}  // namespace kindling

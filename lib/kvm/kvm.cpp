#include "kvm/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/error.h"
#include "seccomp/thread_filter.h"

namespace kindling {

int kvm_ioctl(int fd, unsigned long req, const void* arg) {
    int r;
    do r = ::ioctl(fd, req, arg);
    while (r < 0 && errno == EINTR);
    return r;
}

int kvm_ioctl_or_throw(int fd, unsigned long req, const void* arg, const char* what) {
    int r = kvm_ioctl(fd, req, arg);
    if (r < 0) throw_errno(what);
    return r;
}

namespace {
int xioctl(int fd, unsigned long req, const void* arg, const char* what) { return kvm_ioctl_or_throw(fd, req, arg, what); }
}  // namespace

Kvm::Kvm() {
    const char* dev = std::getenv("KINDLING_KVM_DEV");
    std::string path = dev && *dev ? dev : "/dev/kvm";
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENXIO || e == ENODEV)
            throw UnavailableError(path + ": KVM is not available on this host (" + std::strerror(e) + ")");
        throw SysError(path, e);
    }
    fd_.reset(fd);
    int api = ::ioctl(fd, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) throw UnavailableError(path + ": unexpected KVM API version " + std::to_string(api));
    vcpu_mmap_size_ = xioctl(fd, KVM_GET_VCPU_MMAP_SIZE, nullptr, "KVM_GET_VCPU_MMAP_SIZE");

    cpuid_future_ = std::async(std::launch::async, [fd] {
        enter_thread(ThreadKind::kHelper, "kvm_cpuid");
        std::vector<kvm_cpuid_entry2> out;
        for (uint32_t n = 256; n <= 4096; n *= 2) {  // 75 entries on this host: one call
            std::vector<uint8_t> buf(sizeof(KvmCountHeader) + n * sizeof(kvm_cpuid_entry2));
            auto* h = reinterpret_cast<KvmCountHeader*>(buf.data());
            h->count = n;
            if (::ioctl(fd, kKvmGetSupportedCpuid, h) == 0) {
                auto* e = reinterpret_cast<kvm_cpuid_entry2*>(h + 1);
                out.assign(e, e + h->count);
                return out;
            }
            if (errno != E2BIG) throw_errno("KVM_GET_SUPPORTED_CPUID");
        }
        throw Error("KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
    });
}

const std::vector<kvm_cpuid_entry2>& Kvm::supported_cpuid() const {
    std::call_once(cpuid_once_, [this] { cpuid_ = cpuid_future_.get(); });
    return cpuid_;
}

bool Kvm::has_cap(long cap) const { return ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap) > 0; }

Vm::Vm(const Kvm& kvm) : kvm_(kvm) {
    int fd;
    do fd = ::ioctl(kvm.fd(), KVM_CREATE_VM, 0);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) throw_errno("KVM_CREATE_VM");
    fd_.reset(fd);
}

void Vm::set_memory(const GuestMemory& mem, bool log_dirty) {
    uint32_t slot = 0;
    for (const auto& r : mem.regions()) {
        kvm_userspace_memory_region reg{};
        reg.slot = slot++;
        reg.flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0;
        reg.guest_phys_addr = r.gpa;
        reg.memory_size = r.size;
        reg.userspace_addr = reinterpret_cast<uint64_t>(r.host);
        xioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &reg, "KVM_SET_USER_MEMORY_REGION");
    }
}

void Vm::create_irqchip_and_pit() {
    // VT-x needs these two pages below 4 GiB; on other hosts the ioctls are harmless
    // or absent, so failures are ignored.
    (void)::ioctl(fd_.get(), KVM_SET_TSS_ADDR, 0xfffbd000ul);
    uint64_t ident = 0xfffbc000;
    (void)::ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &ident);
    xioctl(fd_.get(), KVM_CREATE_IRQCHIP, nullptr, "KVM_CREATE_IRQCHIP");
    kvm_pit_config pit{};
    pit.flags = KVM_PIT_SPEAKER_DUMMY;
    xioctl(fd_.get(), KVM_CREATE_PIT2, &pit, "KVM_CREATE_PIT2");
}

void Vm::add_irqfd(int eventfd, uint32_t gsi) {
    kvm_irqfd irq{};
    irq.fd = static_cast<uint32_t>(eventfd);
    irq.gsi = gsi;
    xioctl(fd_.get(), KVM_IRQFD, &irq, "KVM_IRQFD");
}

uint32_t Vm::tsc_khz() const {
    int r = ::ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
    return r > 0 ? static_cast<uint32_t>(r) : 0;
}

Vcpu::Vcpu(Vm& vm, int index) : index_(index) {
    int fd;
    do fd = ::ioctl(vm.fd(), KVM_CREATE_VCPU, index);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) throw_errno("KVM_CREATE_VCPU " + std::to_string(index));
    fd_.reset(fd);
    run_ = Mapping::map(static_cast<size_t>(vm.kvm().vcpu_mmap_size()), PROT_READ | PROT_WRITE, MAP_SHARED,
                        fd, 0, "mmap kvm_run");
}

bool Vcpu::run() {
    if (::ioctl(fd_.get(), KVM_RUN, 0) == 0) return true;
    if (errno == EINTR || errno == EAGAIN) return false;
    throw_errno("KVM_RUN (vCPU " + std::to_string(index_) + ")");
}

kvm_regs Vcpu::get_regs() const {
    kvm_regs r{};
    xioctl(fd_.get(), KVM_GET_REGS, &r, "KVM_GET_REGS");
    return r;
}
void Vcpu::set_regs(const kvm_regs& r) { xioctl(fd_.get(), KVM_SET_REGS, &r, "KVM_SET_REGS"); }
kvm_sregs Vcpu::get_sregs() const {
    kvm_sregs s{};
    xioctl(fd_.get(), KVM_GET_SREGS, &s, "KVM_GET_SREGS");
    return s;
}
void Vcpu::set_sregs(const kvm_sregs& s) { xioctl(fd_.get(), KVM_SET_SREGS, &s, "KVM_SET_SREGS"); }
void Vcpu::set_fpu(const kvm_fpu& f) { xioctl(fd_.get(), KVM_SET_FPU, &f, "KVM_SET_FPU"); }

void Vcpu::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) {
    std::vector<uint8_t> buf(sizeof(KvmCountHeader) + entries.size() * sizeof(kvm_cpuid_entry2));
    auto* h = reinterpret_cast<KvmCountHeader*>(buf.data());
    h->count = static_cast<uint32_t>(entries.size());
    std::memcpy(h + 1, entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
    xioctl(fd_.get(), kKvmSetCpuid2, h, "KVM_SET_CPUID2");
}

int Vcpu::set_msrs(const std::vector<kvm_msr_entry>& msrs) {
    std::vector<uint8_t> buf(sizeof(KvmCountHeader) + msrs.size() * sizeof(kvm_msr_entry));
    auto* h = reinterpret_cast<KvmCountHeader*>(buf.data());
    h->count = static_cast<uint32_t>(msrs.size());
    std::memcpy(h + 1, msrs.data(), msrs.size() * sizeof(kvm_msr_entry));
    return xioctl(fd_.get(), kKvmSetMsrs, h, "KVM_SET_MSRS");
}

void Vcpu::set_xcr0(uint64_t value) {
    kvm_xcrs x{};
    x.nr_xcrs = 1;
    x.xcrs[0].xcr = 0;
    x.xcrs[0].value = value;
    xioctl(fd_.get(), KVM_SET_XCRS, &x, "KVM_SET_XCRS");
}

std::vector<kvm_cpuid_entry2> Vcpu::cpuid_for(const Kvm& kvm, int index, int count) {
    std::vector<kvm_cpuid_entry2> out = kvm.supported_cpuid();
    for (auto& e : out) {
        switch (e.function) {
        case 1:
            // EBX[31:24] initial APIC id, EBX[23:16] logical processor count;
            // ECX[31] "running on a hypervisor".
            e.ebx = (e.ebx & 0x0000ffffu) | (static_cast<uint32_t>(index) << 24) |
                    (static_cast<uint32_t>(count) << 16);
            e.ecx |= 1u << 31;
            break;
        case 0xb:
        case 0x1f:
            e.edx = static_cast<uint32_t>(index);  // x2APIC id
            break;
        default:
            break;
        }
    }
    return out;
}

std::vector<kvm_msr_entry> boot_msrs() {
    auto e = [](uint32_t idx, uint64_t v) {
        kvm_msr_entry m{};
        m.index = idx;
        m.data = v;
        return m;
    };
    return {
        e(0x174, 0),         // IA32_SYSENTER_CS
        e(0x175, 0),         // IA32_SYSENTER_ESP
        e(0x176, 0),         // IA32_SYSENTER_EIP
        e(0xc0000081, 0),    // STAR
        e(0xc0000083, 0),    // CSTAR
        e(0xc0000102, 0),    // KERNEL_GS_BASE
        e(0xc0000084, 0),    // SYSCALL_MASK
        e(0xc0000082, 0),    // LSTAR
        e(0x10, 0),          // IA32_TSC
        e(0x1a0, 1),         // IA32_MISC_ENABLE: fast strings
        e(0x2ff, 0x806),     // MTRRdefType: enabled, default write-back
    };
}

}  // namespace kindling

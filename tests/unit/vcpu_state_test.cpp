// vCPU and VM state save/restore against the real KVM: a tiny ring-3 guest is
// stopped in the middle of an IN instruction, saved, restored into a second VM, and
// both machines must then compute the same thing.
#include <doctest/doctest.h>

#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>

#include "base/error.h"
#include "kvm/guest_memory.h"
#include "kvm/kvm.h"
#include "kvm/nano_boot.h"
#include "kvm/vcpu_state.h"
#include "kvm/vm_state.h"

using namespace kindling;

namespace {

constexpr uint64_t kMemSize = 4ull << 20;
constexpr uint64_t kCode = 0x100000;
constexpr uint64_t kPml4 = 0x4000;
constexpr uint16_t kPort = 0x80;

// in eax,dx; add ebx,eax; movq xmm1,rbx; mov eax,ebx; out dx,eax; jmp back
const uint8_t kGuestCode[] = {0xED, 0x01, 0xC3, 0x66, 0x48, 0x0F, 0x6E, 0xCB, 0x89, 0xD8, 0xEF, 0xEB, 0xF3};

bool have_kvm() {
    const char* dev = std::getenv("KINDLING_KVM_DEV");
    return ::access(dev && *dev ? dev : "/dev/kvm", R_OK | W_OK) == 0;
}

constexpr uint64_t kMmio = 0xd0000000;  // no memory slot here: every access exits

// Identity map of RAM with 2 MiB user pages (the nano layout), plus one uncached
// 2 MiB page at kMmio.
void build_page_tables(GuestMemory& mem) {
    const uint64_t f = 0x7;  // present, writable, user
    uint64_t pml4 = (kPml4 + 0x1000) | f, pdpt0 = (kPml4 + 0x2000) | f, pdpt3 = (kPml4 + 0x3000) | f;
    mem.write_obj(kPml4, pml4);
    mem.write_obj(kPml4 + 0x1000, pdpt0);
    mem.write_obj(kPml4 + 0x1000 + 3 * 8, pdpt3);
    for (uint64_t i = 0; i < kMemSize / (2 << 20); ++i) {
        uint64_t pde = (i * (2 << 20)) | f | 0x80;
        mem.write_obj(kPml4 + 0x2000 + i * 8, pde);
    }
    uint64_t mmio = kMmio | f | 0x80 | 0x18;  // huge, PCD|PWT
    mem.write_obj(kPml4 + 0x3000 + ((kMmio - 0xc0000000) >> 21) * 8, mmio);
}

struct TestVm {
    Vm vm;
    GuestMemory mem{kMemSize};
    std::vector<std::unique_ptr<Vcpu>> vcpus;

    TestVm(const Kvm& kvm, bool irqchip, int nvcpus = 1) : vm(kvm) {
        vm.set_memory(mem);
        if (irqchip) vm.create_irqchip_and_pit();
        for (int i = 0; i < nvcpus; ++i) vcpus.push_back(std::make_unique<Vcpu>(vm, i));
    }
    Vcpu& vcpu() { return *vcpus[0]; }
};

// Boot state: CPL3 long mode at kCode, plus register values nothing would set by chance.
void boot(const Kvm& kvm, TestVm& t) {
    build_page_tables(t.mem);
    t.mem.write(kCode, kGuestCode, sizeof kGuestCode);
    Vcpu& v = t.vcpu();
    v.set_cpuid(Vcpu::cpuid_for(kvm, 0, 1));
    kvm_regs r{};
    kvm_sregs s = v.get_sregs();
    NanoBootState st;
    st.rip = kCode;
    st.rsp = kMemSize - 16;
    st.cr3 = kPml4;
    apply_nano_boot_state(st, r, s);
    r.rdx = kPort;
    r.rbx = 0x50000000;
    r.rcx = 0x1122334455667788;
    r.rsi = 0x0badc0ffee0ddf00;
    r.r8 = 8;
    r.r15 = 0xfedcba9876543210;
    s.fs.base = 0x7f0000001000;
    s.gs.base = 0x7f0000002000;
    v.set_sregs(s);
    v.set_regs(r);
    kvm_fpu fpu{};
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    v.set_fpu(fpu);
    auto m = [](uint32_t i, uint64_t d) {
        kvm_msr_entry e{};
        e.index = i;
        e.data = d;
        return e;
    };
    std::vector<kvm_msr_entry> msrs = {
        m(0x174, 0x10), m(0x175, 0xffff800000001000), m(0x176, 0xffff800000002000),  // SYSENTER
        m(0xc0000081, 0x0023001000000000), m(0xc0000082, 0xffffffff81000000),          // STAR, LSTAR
        m(0xc0000102, 0x7f0000003000),                                                 // KERNEL_GS_BASE
        m(0x2ff, 0x806),                                                               // MTRRdefType
        m(0x277, 0x0007040600070406),                                                  // PAT
    };
    CHECK(v.set_msrs(msrs) == static_cast<int>(msrs.size()));
    kvm_debugregs d{};
    d.db[0] = 0x1000;
    d.db[1] = 0x2000;
    d.dr6 = 0xffff0ff0;
    d.dr7 = 0x400;
    REQUIRE(::ioctl(v.fd(), KVM_SET_DEBUGREGS, &d) == 0);
}

// Runs until the next port exit; returns its direction.
int run_to_io(Vcpu& v) {
    for (int i = 0; i < 100; ++i) {
        if (!v.run()) continue;
        kvm_run* run = v.run_state();
        REQUIRE_MESSAGE(run->exit_reason == KVM_EXIT_IO, "exit reason " << run->exit_reason);
        CHECK(run->io.port == kPort);
        CHECK(run->io.size == 4);
        return run->io.direction;
    }
    FAIL("no I/O exit");
    return -1;
}

uint32_t& io_data(Vcpu& v) {
    kvm_run* run = v.run_state();
    return *reinterpret_cast<uint32_t*>(reinterpret_cast<uint8_t*>(run) + run->io.data_offset);
}

template <class T>
bool same_bytes(const T& a, const T& b) {
    return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <class T>
bool same_bytes(const std::optional<T>& a, const std::optional<T>& b) {
    return a.has_value() == b.has_value() && (!a || same_bytes(*a, *b));
}

// Everything KVM reports back must be equal, except the TSC, which moved on.
void check_same(const VcpuState& a, const VcpuState& b) {
    CHECK(a.index == b.index);
    REQUIRE(a.cpuid.size() == b.cpuid.size());
    CHECK(std::memcmp(a.cpuid.data(), b.cpuid.data(), a.cpuid.size() * sizeof(kvm_cpuid_entry2)) == 0);
    CHECK(same_bytes(a.mp_state, b.mp_state));
    CHECK(same_bytes(a.regs, b.regs));
    CHECK(same_bytes(a.sregs, b.sregs));
    CHECK(a.xsave == b.xsave);
    CHECK(same_bytes(a.fpu, b.fpu));
    CHECK(same_bytes(a.xcrs, b.xcrs));
    CHECK(same_bytes(a.debugregs, b.debugregs));
    CHECK(same_bytes(a.lapic, b.lapic));
    CHECK(same_bytes(a.events, b.events));
    CHECK(a.tsc_khz == b.tsc_khz);
    REQUIRE(a.msrs.size() == b.msrs.size());
    for (size_t i = 0; i < a.msrs.size(); ++i) {
        CAPTURE(a.msrs[i].index);
        CHECK(a.msrs[i].index == b.msrs[i].index);
        if (a.msrs[i].index == kMsrIa32Tsc) {
            CHECK(b.msrs[i].data >= a.msrs[i].data);  // restored, then kept counting
            CHECK(b.msrs[i].data - a.msrs[i].data < 10ull * 1000 * 1000 * 1000);
        } else {
            CHECK(a.msrs[i].data == b.msrs[i].data);
        }
    }
}

uint64_t msr_value(const VcpuState& s, uint32_t index) {
    for (const auto& m : s.msrs)
        if (m.index == index) return m.data;
    FAIL("MSR " << index << " not saved");
    return 0;
}

}  // namespace

TEST_CASE("vcpu_state: a guest stopped inside IN resumes identically in a second VM") {
    if (!have_kvm()) {
        MESSAGE("skipped: /dev/kvm is not available");
        return;
    }
    Kvm kvm;
    TestVm a(kvm, false);
    boot(kvm, a);

    // Stop A on "in eax,dx" with the value supplied but the instruction not finished.
    REQUIRE(run_to_io(a.vcpu()) == KVM_EXIT_IO_IN);
    io_data(a.vcpu()) = 0x1111;
    complete_pending_io(a.vcpu());
    kvm_regs r = a.vcpu().get_regs();
    CHECK((r.rax & 0xffffffff) == 0x1111);  // IN completed ...
    CHECK(r.rip == kCode + 1);              // ... and nothing after it ran
    CHECK(r.rbx == 0x50000000);

    VcpuState saved = save_vcpu(kvm, a.vcpu());
    VmKvmState saved_vm = save_vm(a.vm);
    CHECK(!saved.lapic);  // no irqchip: recorded as absent
    CHECK(!saved_vm.pit);
    CHECK(!saved_vm.has_irqchip());
    CHECK(saved.regs.rcx == 0x1122334455667788);
    CHECK(saved.sregs.fs.base == 0x7f0000001000);
    CHECK(msr_value(saved, 0xc0000082) == 0xffffffff81000000);
    CHECK(msr_value(saved, 0x2ff) == 0x806);
    CHECK(msr_value(saved, 0x277) == 0x0007040600070406);
    REQUIRE(saved.debugregs);
    CHECK(saved.debugregs->db[1] == 0x2000);
    CHECK(saved.xsave.size() >= kXsaveLegacySize);
    CHECK(saved.msrs.front().index == kMsrIa32Tsc);
    CHECK(saved.msrs.back().index == kMsrIa32TscDeadline);

    TestVm b(kvm, false);
    std::memcpy(b.mem.base(), a.mem.base(), kMemSize);
    auto t0 = std::chrono::steady_clock::now();
    restore_vm(b.vm, saved_vm);
    restore_vcpu(kvm, b.vcpu(), saved);
    auto t1 = std::chrono::steady_clock::now();
    VcpuState again = save_vcpu(kvm, b.vcpu());
    auto t2 = std::chrono::steady_clock::now();
    MESSAGE("save one vCPU: " << std::chrono::duration<double, std::micro>(t2 - t1).count()
                              << " us, restore: " << std::chrono::duration<double, std::micro>(t1 - t0).count()
                              << " us, " << saved.msrs.size() << " MSRs, xsave " << saved.xsave.size() << " bytes");
    check_same(saved, again);

    // Both machines go on the same way: add, movq xmm1, out of ebx+eax.
    REQUIRE(run_to_io(a.vcpu()) == KVM_EXIT_IO_OUT);
    REQUIRE(run_to_io(b.vcpu()) == KVM_EXIT_IO_OUT);
    CHECK(io_data(a.vcpu()) == 0x50001111);
    CHECK(io_data(b.vcpu()) == 0x50001111);
    VcpuState sa = save_vcpu(kvm, a.vcpu()), sb = save_vcpu(kvm, b.vcpu());
    CHECK(same_bytes(sa.regs, sb.regs));
    CHECK(sa.xsave == sb.xsave);  // xmm1 = rbx in both
    // And a second round trip through IN: the restored machine takes new input.
    REQUIRE(run_to_io(b.vcpu()) == KVM_EXIT_IO_IN);
    io_data(b.vcpu()) = 0x22;
    REQUIRE(run_to_io(b.vcpu()) == KVM_EXIT_IO_OUT);
    CHECK(io_data(b.vcpu()) == 0x50001133);
}

TEST_CASE("vcpu_state: an MMIO read is completed before the save") {
    if (!have_kvm()) {
        MESSAGE("skipped: /dev/kvm is not available");
        return;
    }
    Kvm kvm;
    TestVm a(kvm, false);
    boot(kvm, a);
    // mov eax,[rsi]; out dx,eax
    const uint8_t code[] = {0x8B, 0x06, 0xEF};
    a.mem.write(kCode, code, sizeof code);
    kvm_regs r = a.vcpu().get_regs();
    r.rsi = kMmio + 0x40;
    a.vcpu().set_regs(r);
    bool exited = false;
    for (int i = 0; i < 100 && !exited; ++i) exited = a.vcpu().run();
    REQUIRE(exited);
    kvm_run* run = a.vcpu().run_state();
    REQUIRE(run->exit_reason == KVM_EXIT_MMIO);
    CHECK(run->mmio.phys_addr == kMmio + 0x40);
    CHECK(!run->mmio.is_write);
    REQUIRE(run->mmio.len == 4);
    const uint32_t value = 0xabcd1234;
    std::memcpy(run->mmio.data, &value, 4);
    complete_pending_io(a.vcpu());
    r = a.vcpu().get_regs();
    CHECK((r.rax & 0xffffffff) == value);
    CHECK(r.rip == kCode + 2);

    VcpuState saved = save_vcpu(kvm, a.vcpu());
    TestVm b(kvm, false);
    std::memcpy(b.mem.base(), a.mem.base(), kMemSize);
    restore_vcpu(kvm, b.vcpu(), saved);
    REQUIRE(run_to_io(b.vcpu()) == KVM_EXIT_IO_OUT);
    CHECK(io_data(b.vcpu()) == value);
}

TEST_CASE("vcpu_state: complete_pending_io is harmless without a pending exit") {
    if (!have_kvm()) {
        MESSAGE("skipped: /dev/kvm is not available");
        return;
    }
    Kvm kvm;
    TestVm a(kvm, false);
    boot(kvm, a);
    kvm_regs before = a.vcpu().get_regs();
    complete_pending_io(a.vcpu());
    complete_pending_io(a.vcpu());
    kvm_regs after = a.vcpu().get_regs();
    CHECK(same_bytes(before, after));
    CHECK(a.vcpu().run_state()->immediate_exit == 0);
    REQUIRE(run_to_io(a.vcpu()) == KVM_EXIT_IO_IN);
}

TEST_CASE("vcpu_state: irqchip VM — LAPIC, PIT, PIC, IOAPIC and an AP's MP state round-trip") {
    if (!have_kvm()) {
        MESSAGE("skipped: /dev/kvm is not available");
        return;
    }
    Kvm kvm;
    auto prepare = [&](TestVm& t) {
        for (size_t i = 0; i < t.vcpus.size(); ++i) {
            Vcpu& v = *t.vcpus[i];
            v.set_cpuid(Vcpu::cpuid_for(kvm, static_cast<int>(i), 2));
        }
    };
    TestVm a(kvm, true, 2);
    prepare(a);
    // Distinctive LAPIC (task priority, LINT0 ExtINT like the linux boot), an AP
    // waiting for SIPI, an IOAPIC redirection entry and a PIC mask.
    kvm_lapic_state l{};
    REQUIRE(::ioctl(a.vcpu().fd(), KVM_GET_LAPIC, &l) == 0);
    uint32_t tpr = 0x20, lint0 = 0x700;
    std::memcpy(l.regs + 0x80, &tpr, 4);
    std::memcpy(l.regs + 0x350, &lint0, 4);
    REQUIRE(::ioctl(a.vcpu().fd(), KVM_SET_LAPIC, &l) == 0);
    kvm_mp_state mp{KVM_MP_STATE_UNINITIALIZED};
    REQUIRE(::ioctl(a.vcpus[1]->fd(), KVM_SET_MP_STATE, &mp) == 0);
    kvm_irqchip io{};
    io.chip_id = KVM_IRQCHIP_IOAPIC;
    REQUIRE(::ioctl(a.vm.fd(), KVM_GET_IRQCHIP, &io) == 0);
    io.chip.ioapic.redirtbl[4].bits = 0x0000000000000034ull;  // COM1: vector 0x34
    io.chip.ioapic.id = 0;
    REQUIRE(::ioctl(a.vm.fd(), KVM_SET_IRQCHIP, &io) == 0);
    kvm_irqchip pic{};
    pic.chip_id = KVM_IRQCHIP_PIC_MASTER;
    REQUIRE(::ioctl(a.vm.fd(), KVM_GET_IRQCHIP, &pic) == 0);
    pic.chip.pic.imr = 0xef;
    pic.chip.pic.irq_base = 0x30;
    REQUIRE(::ioctl(a.vm.fd(), KVM_SET_IRQCHIP, &pic) == 0);

    std::vector<VcpuState> saved;
    for (auto& v : a.vcpus) saved.push_back(save_vcpu(kvm, *v));
    VmKvmState vm_saved = save_vm(a.vm);
    REQUIRE(saved[0].lapic);
    CHECK(saved[1].mp_state.mp_state == KVM_MP_STATE_UNINITIALIZED);
    REQUIRE(vm_saved.has_irqchip());
    REQUIRE(vm_saved.pit);
    CHECK(vm_saved.pic_master->chip.pic.imr == 0xef);
    CHECK(vm_saved.ioapic->chip.ioapic.redirtbl[4].bits == 0x34);

    TestVm b(kvm, true, 2);
    restore_vm(b.vm, vm_saved);
    for (size_t i = 0; i < 2; ++i) restore_vcpu(kvm, *b.vcpus[i], saved[i]);
    for (size_t i = 0; i < 2; ++i) {
        CAPTURE(i);
        check_same(saved[i], save_vcpu(kvm, *b.vcpus[i]));
    }
    VmKvmState vm_again = save_vm(b.vm);
    CHECK(same_bytes(vm_saved.pic_master, vm_again.pic_master));
    CHECK(same_bytes(vm_saved.pic_slave, vm_again.pic_slave));
    CHECK(same_bytes(vm_saved.ioapic, vm_again.ioapic));
    // The PIT's counters are loaded with the time of the restore; channel setup must match.
    for (int c = 0; c < 3; ++c) {
        CHECK(vm_saved.pit->channels[c].mode == vm_again.pit->channels[c].mode);
        CHECK(vm_saved.pit->channels[c].count == vm_again.pit->channels[c].count);
    }
    CHECK(vm_again.clock.clock >= vm_saved.clock.clock);

    // A nano-style VM (no irqchip) cannot take this snapshot: a clear error.
    TestVm c(kvm, false);
    CHECK_THROWS_WITH_AS(restore_vm(c.vm, vm_saved), doctest::Contains("has an in-kernel irqchip"), SysError);
}

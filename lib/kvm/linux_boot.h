// Boot of a linux guest with the 64-bit boot protocol (Documentation/x86/boot.rst
// "64-bit Boot Protocol"), laid out as Firecracker does (arch/x86_64): the kernel
// (ELF vmlinux or bzImage) in RAM, the zero page (struct boot_params) at 0x7000,
// the command line at 0x20000, a GDT at 0x500, an empty IDT at 0x520, page tables
// at 0x9000/0xa000/0xb000 identity-mapping the first 1 GiB with 2 MiB pages, and
// the initrd at the top of low RAM.  The vCPU starts in long mode at CPL0 with
// interrupts off and rsi pointing at the zero page.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kvm/guest_memory.h"

namespace kindling {

enum class KernelFormat { kUnknown, kElf, kBzImage };

const char* kernel_format_name(KernelFormat f);

// Looks only at the headers: ELF magic -> kElf; "HdrS" at 0x202 -> kBzImage.
// A file that is neither (or too short to tell) is kUnknown; a file that cannot
// be opened throws SysError.
KernelFormat detect_kernel_format(const std::string& path);

// Fixed guest-physical layout (the same addresses as Firecracker).
inline constexpr uint64_t kLinuxGdtAddr = 0x500;
inline constexpr uint64_t kLinuxIdtAddr = 0x520;
inline constexpr uint64_t kLinuxZeroPageAddr = 0x7000;
inline constexpr uint64_t kLinuxBootStack = 0x8ff0;
inline constexpr uint64_t kLinuxPml4Addr = 0x9000;
inline constexpr uint64_t kLinuxPdptAddr = 0xa000;
inline constexpr uint64_t kLinuxPdAddr = 0xb000;
inline constexpr uint64_t kLinuxCmdlineAddr = 0x20000;
inline constexpr uint64_t kLinuxEbdaStart = 0x9fc00;  // end of the first RAM entry
// struct kn_generation (kindling-linux(7)): in the legacy hole, which the e820 map
// does not give the kernel as RAM, so the agent reads it through /dev/mem.
inline constexpr uint64_t kLinuxGenerationAddr = kLinuxEbdaStart;
inline constexpr uint64_t kLinuxHighMemStart = 0x100000;  // bzImage load address
// The agent's control page (kindling-linux(7)): in the MMIO hole, just below the
// first virtio-mmio window (KN_MMIO_BASE).  A 32-bit write at +0 does what
// KN_PORT_EXIT does, at +4 what KN_PORT_READY does.  The agent writes it through
// /dev/mem, from user mode, with no I/O permission bitmap involved: its port writes
// took a #GP in VMs restored from snapshots inside the nested test host.
inline constexpr uint64_t kLinuxControlAddr = 0xCFFFF000;
// Firecracker's x86 command-line capacity for kernels without a setup header,
// the terminating NUL included (Linux's COMMAND_LINE_SIZE).
inline constexpr uint64_t kLinuxElfCmdlineMax = 2048;

// E820 types (Linux arch/x86/include/asm/e820/types.h).
inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;

struct E820Entry {
    uint64_t addr = 0;
    uint64_t size = 0;
    uint32_t type = kE820Ram;
};

struct LinuxBootParams {
    std::string cmdline;
    std::string initrd_path;  // empty: no initrd
};

// Everything the vCPU needs, plus where things went (for logs and tests).
struct LinuxBootState {
    KernelFormat format = KernelFormat::kUnknown;
    uint64_t kernel_start = 0;  // lowest guest-physical byte of the loaded kernel
    uint64_t kernel_end = 0;    // one past the highest, including init_size for bzImage
    uint64_t initrd_addr = 0;
    uint64_t initrd_size = 0;
    std::vector<E820Entry> e820;

    uint64_t rip = 0;
    uint64_t rsi = kLinuxZeroPageAddr;
    uint64_t rsp = kLinuxBootStack;
    uint64_t rbp = kLinuxBootStack;
    uint64_t rflags = 0x2;
    uint64_t cr0 = 0;
    uint64_t cr3 = 0;
    uint64_t cr4 = 0;
    uint64_t efer = 0;
    kvm_dtable gdt{};
    kvm_dtable idt{};
    kvm_segment code{};  // CS, selector 0x08
    kvm_segment data{};  // DS, ES, FS, GS, SS, selector 0x10
    kvm_segment tss{};   // TR, selector 0x18
};

// Loads `kernel_path` (and the initrd) into `mem` and writes the zero page,
// command line, GDT, IDT and page tables.  Throws:
//   DataError   the kernel is not an x86-64 vmlinux/bzImage or is malformed
//               ("PATH: <reason>"), or a segment lies outside guest memory;
//   ConfigError the command line is too long for the kernel, or memory is too
//               small for the kernel plus the initrd;
//   SysError    a file cannot be read.
LinuxBootState setup_linux(GuestMemory& mem, const std::string& kernel_path, const LinuxBootParams& p);

// Writes the entry state into the vCPU's registers.  `regs` is overwritten;
// in `sregs` the segments, descriptor tables, control registers and EFER are
// set and everything else (APIC base, interrupt bitmap) is kept, so pass what
// KVM_GET_SREGS returned.
void apply_linux_boot_state(const LinuxBootState& st, kvm_regs& regs, kvm_sregs& sregs);

}  // namespace kindling

#include "kvm/linux_boot.h"

#include <asm/bootparam.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "base/error.h"
#include "base/io.h"
#include "kvm/elf.h"

namespace kindling {

namespace {

static_assert(sizeof(boot_params) == 4096, "zero page is one page");
static_assert(offsetof(boot_params, hdr) == 0x1f1, "setup header at 0x1f1 (zero-page.rst)");

constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS"
constexpr uint16_t kBootFlag = 0xaa55;
constexpr uint64_t kSetupHeaderOffset = 0x1f1;
constexpr uint64_t kHdrSOffset = 0x202;
constexpr uint16_t kMinProtocol = 0x206;  // cmdline_size appeared in 2.06
constexpr uint64_t kBzEntryOffset = 0x200;  // 64-bit entry: startup_64 (boot.rst)
constexpr uint64_t kPageSize = 0x1000;
constexpr uint64_t kTwoMiB = 2ull << 20;
// boot.rst: heap_end_ptr = heap end - 0x200, heap ending at 0xfe00 of the setup
// segment as for a modern loader.  Only the real-mode setup code uses it.
constexpr uint16_t kHeapEndPtr = 0xfe00 - 0x200;
constexpr uint32_t kFirecrackerKernelAlignment = 0x01000000;

std::string hex(uint64_t v) {
    char b[24];
    std::snprintf(b, sizeof b, "0x%" PRIx64, v);
    return b;
}

std::string mib(uint64_t v) { return std::to_string(v >> 20) + " MiB"; }

uint64_t align_down(uint64_t v, uint64_t a) { return v & ~(a - 1); }
uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

// Firecracker's gdt_entry(): flags (access byte + G/DB/L/AVL nibble), base, limit.
constexpr uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
    return ((uint64_t(base) & 0xff000000ull) << (56 - 24)) | ((uint64_t(flags) & 0x0000f0ffull) << 40) |
           ((uint64_t(limit) & 0x000f0000ull) << (48 - 16)) | ((uint64_t(base) & 0x00ffffffull) << 16) |
           (uint64_t(limit) & 0x0000ffffull);
}

// The descriptor KVM wants for a GDT entry (the hidden part of a loaded segment).
kvm_segment segment_from_gdt(uint64_t e, uint16_t index) {
    kvm_segment s{};
    s.base = ((e & 0xff00000000000000ull) >> 32) | ((e & 0x000000ff00000000ull) >> 16) |
             ((e & 0x00000000ffff0000ull) >> 16);
    uint32_t limit = static_cast<uint32_t>(((e & 0x000f000000000000ull) >> 32) | (e & 0xffffull));
    s.g = (e >> 55) & 1;
    s.limit = s.g ? (limit << 12) | 0xfff : limit;
    s.selector = static_cast<uint16_t>(index * 8);
    s.type = (e >> 40) & 0xf;
    s.present = (e >> 47) & 1;
    s.dpl = (e >> 45) & 3;
    s.db = (e >> 54) & 1;
    s.s = (e >> 44) & 1;
    s.l = (e >> 53) & 1;
    s.avl = (e >> 52) & 1;
    s.unusable = s.present ? 0 : 1;
    return s;
}

// Firecracker's boot GDT: null, 64-bit code, data, TSS (selectors 0x08/0x10/0x18).
constexpr uint64_t kGdt[4] = {
    gdt_entry(0, 0, 0),
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
};

constexpr uint64_t kCr0Pe = 1ull << 0, kCr0Et = 1ull << 4, kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kEferLme = 1ull << 8, kEferLma = 1ull << 10;

uint64_t low_ram_end(const GuestMemory& mem) {
    for (const auto& r : mem.regions())
        if (r.gpa == 0) return r.size;
    return 0;
}

struct LoadedKernel {
    uint64_t entry = 0;
    uint64_t start = 0;
    uint64_t end = 0;
    uint64_t cmdline_max = 0;         // longest command line, NUL excluded
    uint64_t initrd_addr_max = 0;     // 0: no limit beyond low RAM
    bool has_header = false;
    setup_header hdr{};
};

LoadedKernel load_elf(GuestMemory& mem, const std::string& path) {
    ElfImage img = read_elf(path);
    LoadedKernel k;
    k.entry = img.entry;
    k.start = UINT64_MAX;
    k.cmdline_max = kLinuxElfCmdlineMax - 1;
    bool entry_loaded = false;
    for (size_t i = 0; i < img.loads.size(); ++i) {
        const auto& s = img.loads[i];
        if (s.memsz == 0) continue;
        const std::string seg = "segment " + std::to_string(i) + " [" + hex(s.paddr) + ", +" + hex(s.memsz) + ")";
        if (s.paddr < kLinuxHighMemStart)
            throw DataError(path + ": " + seg + " overlaps the boot area below 1 MiB (not a vmlinux?)");
        uint8_t* dst = mem.host_ptr(s.paddr, s.memsz);
        if (!dst)
            throw DataError(path + ": " + seg + " lies outside guest memory (" + mib(mem.size()) + ")");
        std::memcpy(dst, img.data() + s.file_offset, s.filesz);
        std::memset(dst + s.filesz, 0, s.memsz - s.filesz);
        k.start = std::min(k.start, s.paddr);
        k.end = std::max(k.end, s.paddr + s.memsz);
        if (img.entry >= s.paddr && img.entry - s.paddr < s.memsz) entry_loaded = true;
    }
    if (k.end == 0) throw DataError(path + ": no loadable segments");
    if (!entry_loaded)
        throw DataError(path + ": entry point " + hex(img.entry) + " is not inside any loadable segment");
    return k;
}

LoadedKernel load_bzimage(GuestMemory& mem, const std::string& path) {
    UniqueFd fd = open_file(path, O_RDONLY);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw_errno("stat " + path);
    const uint64_t file_size = static_cast<uint64_t>(st.st_size);

    // The boot sector up to the end of the setup header: 0x202 + the byte at 0x201.
    uint8_t boot[0x300] = {};
    size_t got = pread_full(fd.get(), boot, sizeof boot, 0, path);
    if (got < kHdrSOffset + 4) throw DataError(path + ": truncated bzImage (no setup header)");
    uint32_t magic;
    std::memcpy(&magic, boot + kHdrSOffset, 4);
    if (magic != kHdrSMagic) throw DataError(path + ": not a bzImage (no \"HdrS\" magic at 0x202)");
    const uint64_t hdr_end = std::min<uint64_t>(0x202 + boot[0x201], kSetupHeaderOffset + sizeof(setup_header));
    if (got < hdr_end) throw DataError(path + ": truncated bzImage (setup header cut short)");

    LoadedKernel k;
    k.has_header = true;
    std::memcpy(&k.hdr, boot + kSetupHeaderOffset, hdr_end - kSetupHeaderOffset);
    const setup_header& h = k.hdr;
    if (h.boot_flag != kBootFlag) throw DataError(path + ": bad boot sector flag " + hex(h.boot_flag) + " (want 0xaa55)");
    if (h.version < kMinProtocol)
        throw DataError(path + ": boot protocol " + std::to_string(h.version >> 8) + "." +
                        std::to_string(h.version & 0xff) + " is too old (need 2.06 or later)");
    if (!(h.loadflags & LOADED_HIGH))
        throw DataError(path + ": not a bzImage (zImage loaded low is not supported)");
    if (!(h.xloadflags & XLF_KERNEL_64))
        throw DataError(path + ": kernel has no 64-bit entry point (XLF_KERNEL_64 clear; 32-bit kernel?)");

    // The real-mode part is the boot sector plus setup_sects sectors (0 means 4);
    // the protected-mode part follows and goes to 1 MiB (boot.rst "Loading the rest").
    const uint64_t setup_sects = h.setup_sects ? h.setup_sects : 4;
    const uint64_t setup_size = (setup_sects + 1) * 512;
    if (file_size <= setup_size)
        throw DataError(path + ": truncated bzImage (" + std::to_string(file_size) + " bytes, setup alone is " +
                        std::to_string(setup_size) + ")");
    const uint64_t pm_size = file_size - setup_size;
    if (pm_size < uint64_t(h.syssize) * 16)
        throw DataError(path + ": truncated bzImage (kernel part is " + std::to_string(pm_size) +
                        " bytes, header says " + std::to_string(uint64_t(h.syssize) * 16) + ")");

    uint8_t* dst = mem.host_ptr(kLinuxHighMemStart, pm_size);
    if (!dst)
        throw DataError(path + ": kernel (" + std::to_string(pm_size) + " bytes at 1 MiB) does not fit in guest memory (" +
                        mib(mem.size()) + ")");
    if (pread_full(fd.get(), dst, pm_size, static_cast<off_t>(setup_size), path) != pm_size)
        throw DataError(path + ": file shrank while loading");

    k.entry = kLinuxHighMemStart + kBzEntryOffset;
    k.start = kLinuxHighMemStart;
    k.end = kLinuxHighMemStart + pm_size;
    k.cmdline_max = h.cmdline_size;
    k.initrd_addr_max = h.initrd_addr_max;
    // Protocol 2.10+: the kernel decompresses to pref_address (or above, if
    // relocatable) and needs init_size bytes there.  Keep the initrd clear of it.
    if (h.version >= 0x20a && h.init_size > 0) {
        uint64_t base = h.pref_address;
        if (h.relocatable_kernel && h.kernel_alignment > 0 && (h.kernel_alignment & (h.kernel_alignment - 1)) == 0)
            base = std::max(base, align_up(kLinuxHighMemStart, h.kernel_alignment));
        if (!mem.contains(base, h.init_size))
            throw ConfigError(path + ": kernel needs [" + hex(base) + ", +" + hex(h.init_size) +
                              ") while booting, beyond guest memory (" + mib(mem.size()) + "); give the VM more memory");
        k.end = std::max(k.end, base + h.init_size);
    }
    return k;
}

void write_page_tables(GuestMemory& mem) {
    // PML4[0] -> PDPT, PDPT[0] -> PD, PD: 512 x 2 MiB present|writable|huge.
    mem.write_obj<uint64_t>(kLinuxPml4Addr, kLinuxPdptAddr | 0x03);
    mem.write_obj<uint64_t>(kLinuxPdptAddr, kLinuxPdAddr | 0x03);
    for (uint64_t i = 0; i < 512; ++i) mem.write_obj<uint64_t>(kLinuxPdAddr + i * 8, (i * kTwoMiB) | 0x83);
}

std::vector<E820Entry> make_e820(const GuestMemory& mem) {
    std::vector<E820Entry> map;
    for (const auto& r : mem.regions()) {
        if (r.gpa == 0) {
            // [0, EBDA) and [1 MiB, end of low RAM), as Firecracker announces them;
            // the legacy hole [0x9fc00, 1 MiB) is not RAM to the guest.
            map.push_back({0, kLinuxEbdaStart, kE820Ram});
            if (r.size > kLinuxHighMemStart) map.push_back({kLinuxHighMemStart, r.size - kLinuxHighMemStart, kE820Ram});
        } else {
            map.push_back({r.gpa, r.size, kE820Ram});
        }
    }
    return map;
}

uint64_t load_initrd(GuestMemory& mem, const std::string& path, uint64_t lowest, uint64_t highest_end,
                     uint64_t& size_out) {
    UniqueFd fd = open_file(path, O_RDONLY);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw_errno("stat " + path);
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size == 0) throw DataError(path + ": initrd is empty");
    if (size > highest_end || align_down(highest_end - size, kPageSize) < lowest)
        throw ConfigError(path + ": initrd (" + std::to_string(size) + " bytes) does not fit between the kernel end " +
                          hex(lowest) + " and " + hex(highest_end) + "; give the VM more memory");
    const uint64_t addr = align_down(highest_end - size, kPageSize);
    uint8_t* dst = mem.host_ptr(addr, size);
    if (!dst) throw ConfigError(path + ": initrd does not fit in guest memory");
    if (read_full(fd.get(), dst, size, path) != size) throw DataError(path + ": file shrank while loading");
    size_out = size;
    return addr;
}

}  // namespace

const char* kernel_format_name(KernelFormat f) {
    switch (f) {
    case KernelFormat::kElf: return "ELF vmlinux";
    case KernelFormat::kBzImage: return "bzImage";
    case KernelFormat::kUnknown: break;
    }
    return "unknown";
}

KernelFormat detect_kernel_format(const std::string& path) {
    UniqueFd fd = open_file(path, O_RDONLY);
    uint8_t b[kHdrSOffset + 4] = {};
    size_t n = pread_full(fd.get(), b, sizeof b, 0, path);
    if (n >= SELFMAG && std::memcmp(b, ELFMAG, SELFMAG) == 0) return KernelFormat::kElf;
    uint32_t magic = 0;
    if (n >= sizeof b) std::memcpy(&magic, b + kHdrSOffset, 4);
    if (magic == kHdrSMagic) return KernelFormat::kBzImage;
    return KernelFormat::kUnknown;
}

LinuxBootState setup_linux(GuestMemory& mem, const std::string& kernel_path, const LinuxBootParams& p) {
    const uint64_t low_end = low_ram_end(mem);
    if (low_end < 2 * kLinuxHighMemStart)
        throw ConfigError("a linux guest needs at least 2 MiB of memory (have " + std::to_string(mem.size() >> 10) +
                          " KiB)");

    LinuxBootState st;
    st.format = detect_kernel_format(kernel_path);
    LoadedKernel k;
    switch (st.format) {
    case KernelFormat::kElf: k = load_elf(mem, kernel_path); break;
    case KernelFormat::kBzImage: k = load_bzimage(mem, kernel_path); break;
    case KernelFormat::kUnknown:
        throw DataError(kernel_path + ": not a kernel image (neither an ELF vmlinux nor a bzImage)");
    }

    if (p.cmdline.find('\0') != std::string::npos) throw ConfigError("kernel command line contains a NUL byte");
    if (p.cmdline.size() > k.cmdline_max)
        throw ConfigError("kernel command line is " + std::to_string(p.cmdline.size()) + " bytes; " + kernel_path +
                          " accepts at most " + std::to_string(k.cmdline_max));
    // The command line lives below the EBDA; k.cmdline_max never reaches it, but
    // a bzImage header is input like any other.
    if (kLinuxCmdlineAddr + p.cmdline.size() + 1 > kLinuxEbdaStart)
        throw ConfigError("kernel command line is too long (" + std::to_string(p.cmdline.size()) + " bytes)");
    mem.write(kLinuxCmdlineAddr, p.cmdline.c_str(), p.cmdline.size() + 1);

    st.rip = k.entry;
    st.kernel_start = k.start;
    st.kernel_end = k.end;
    st.e820 = make_e820(mem);

    if (!p.initrd_path.empty()) {
        uint64_t top = low_end;
        if (k.initrd_addr_max != 0) top = std::min(top, uint64_t(k.initrd_addr_max) + 1);
        st.initrd_addr = load_initrd(mem, p.initrd_path, align_up(k.end, kPageSize), top, st.initrd_size);
    }

    // The zero page (zero-page.rst): the kernel's own setup header when it has one,
    // with the fields a boot loader writes (boot.rst "Details of header fields").
    boot_params bp{};
    if (k.has_header) {
        bp.hdr = k.hdr;
        bp.hdr.loadflags |= CAN_USE_HEAP;
        bp.hdr.heap_end_ptr = kHeapEndPtr;
    } else {
        bp.hdr.boot_flag = kBootFlag;
        bp.hdr.header = kHdrSMagic;
        bp.hdr.kernel_alignment = kFirecrackerKernelAlignment;
        bp.hdr.cmdline_size = static_cast<uint32_t>(p.cmdline.size() + 1);
    }
    bp.hdr.type_of_loader = 0xff;  // "undefined" loader id
    bp.hdr.cmd_line_ptr = static_cast<uint32_t>(kLinuxCmdlineAddr);
    bp.ext_cmd_line_ptr = 0;
    bp.hdr.ramdisk_image = static_cast<uint32_t>(st.initrd_addr);
    bp.hdr.ramdisk_size = static_cast<uint32_t>(st.initrd_size);
    bp.ext_ramdisk_image = static_cast<uint32_t>(st.initrd_addr >> 32);
    bp.ext_ramdisk_size = static_cast<uint32_t>(st.initrd_size >> 32);
    if (st.e820.size() > E820_MAX_ENTRIES_ZEROPAGE) throw ConfigError("too many e820 entries");
    bp.e820_entries = static_cast<uint8_t>(st.e820.size());
    for (size_t i = 0; i < st.e820.size(); ++i) {
        bp.e820_table[i].addr = st.e820[i].addr;
        bp.e820_table[i].size = st.e820[i].size;
        bp.e820_table[i].type = st.e820[i].type;
    }
    mem.write_obj(kLinuxZeroPageAddr, bp);

    mem.write(kLinuxGdtAddr, kGdt, sizeof kGdt);
    mem.write_obj<uint64_t>(kLinuxIdtAddr, 0);
    write_page_tables(mem);

    st.gdt.base = kLinuxGdtAddr;
    st.gdt.limit = sizeof kGdt - 1;
    st.idt.base = kLinuxIdtAddr;
    st.idt.limit = sizeof(uint64_t) - 1;
    st.code = segment_from_gdt(kGdt[1], 1);
    st.data = segment_from_gdt(kGdt[2], 2);
    st.tss = segment_from_gdt(kGdt[3], 3);
    // Firecracker ORs PE, PG into KVM's reset CR0 (which has ET); CD/NW are left
    // out here so the state does not depend on what the vCPU had before.
    st.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
    st.cr3 = kLinuxPml4Addr;
    st.cr4 = kCr4Pae;
    st.efer = kEferLme | kEferLma;
    return st;
}

void apply_linux_boot_state(const LinuxBootState& st, kvm_regs& regs, kvm_sregs& s) {
    regs = kvm_regs{};
    regs.rip = st.rip;
    regs.rsi = st.rsi;
    regs.rsp = st.rsp;
    regs.rbp = st.rbp;
    regs.rflags = st.rflags;

    s.gdt = st.gdt;
    s.idt = st.idt;
    s.cs = st.code;
    s.ds = s.es = s.fs = s.gs = s.ss = st.data;
    s.tr = st.tss;
    s.cr0 = st.cr0;
    s.cr3 = st.cr3;
    s.cr4 = st.cr4;
    s.efer = st.efer;
}

}  // namespace kindling

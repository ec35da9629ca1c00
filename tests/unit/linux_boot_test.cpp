#include <doctest/doctest.h>

#include <asm/bootparam.h>
#include <elf.h>
#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "kvm/guest_memory.h"
#include "kvm/linux_boot.h"

using namespace kindling;

namespace {

constexpr uint64_t kMiB = 1ull << 20;

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/kindling-linux-boot.XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    std::string write(const std::string& name, const std::vector<uint8_t>& bytes) const {
        std::string p = path + "/" + name;
        std::ofstream f(p, std::ios::binary);
        f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        return p;
    }
};

template <class T>
void put(std::vector<uint8_t>& b, size_t off, const T& v) {
    if (b.size() < off + sizeof v) b.resize(off + sizeof v);
    std::memcpy(b.data() + off, &v, sizeof v);
}

struct Seg {
    uint64_t paddr;
    std::vector<uint8_t> data;
    uint64_t memsz;
};

// A static ELF64 image: header, program headers, then each segment's bytes.
std::vector<uint8_t> make_elf(uint64_t entry, const std::vector<Seg>& segs, uint16_t machine = EM_X86_64,
                              uint8_t cls = ELFCLASS64) {
    std::vector<uint8_t> b;
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = cls;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = machine;
    eh.e_version = EV_CURRENT;
    eh.e_entry = entry;
    eh.e_phoff = sizeof eh;
    eh.e_ehsize = sizeof eh;
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = static_cast<uint16_t>(segs.size());
    put(b, 0, eh);
    uint64_t off = sizeof eh + segs.size() * sizeof(Elf64_Phdr);
    for (size_t i = 0; i < segs.size(); ++i) {
        Elf64_Phdr ph{};
        ph.p_type = PT_LOAD;
        ph.p_flags = PF_R | PF_X;
        ph.p_offset = off;
        ph.p_vaddr = 0xffffffff80000000ull + segs[i].paddr;
        ph.p_paddr = segs[i].paddr;
        ph.p_filesz = segs[i].data.size();
        ph.p_memsz = segs[i].memsz;
        put(b, sizeof eh + i * sizeof ph, ph);
        b.resize(off);
        b.insert(b.end(), segs[i].data.begin(), segs[i].data.end());
        off += segs[i].data.size();
    }
    return b;
}

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
    return v;
}

// A bzImage as the kernel's build lays it out: boot sector with the setup
// header at 0x1f1, setup_sects sectors of real-mode code, then the
// protected-mode part.
struct BzOptions {
    uint8_t setup_sects = 0;  // 0 means 4
    uint16_t version = 0x20f;
    uint16_t xloadflags = XLF_KERNEL_64;
    uint8_t loadflags = LOADED_HIGH;
    uint32_t cmdline_size = 2047;
    uint32_t initrd_addr_max = 0x7fffffff;
    uint32_t init_size = 4 * kMiB;
    size_t pm_size = 8192;
    int64_t syssize_delta = 0;
};

std::vector<uint8_t> make_bzimage(const BzOptions& o, std::vector<uint8_t>* pm_out = nullptr) {
    const size_t setup = ((o.setup_sects ? o.setup_sects : 4) + 1) * 512;
    std::vector<uint8_t> b(setup, 0);
    setup_header h{};
    h.setup_sects = o.setup_sects;
    h.syssize = static_cast<uint32_t>((o.pm_size + 15) / 16 + o.syssize_delta);
    h.boot_flag = 0xaa55;
    h.jump = 0x66eb;  // jmp short +0x66: header ends at 0x202 + 0x66 = 0x268
    h.header = 0x53726448;
    h.version = o.version;
    h.loadflags = o.loadflags;
    h.code32_start = 0x100000;
    h.initrd_addr_max = o.initrd_addr_max;
    h.kernel_alignment = 0x200000;
    h.xloadflags = o.xloadflags;
    h.cmdline_size = o.cmdline_size;
    h.pref_address = 0x1000000;
    h.init_size = o.init_size;
    std::memcpy(b.data() + 0x1f1, &h, sizeof h);
    std::vector<uint8_t> pm = pattern(o.pm_size, 0x5a);
    b.insert(b.end(), pm.begin(), pm.end());
    if (pm_out) *pm_out = pm;
    return b;
}

boot_params zero_page(const GuestMemory& mem) {
    boot_params bp{};
    REQUIRE(mem.read_obj(kLinuxZeroPageAddr, bp));
    return bp;
}

std::string cmdline_at(const GuestMemory& mem) {
    const char* p = reinterpret_cast<const char*>(mem.host_ptr(kLinuxCmdlineAddr, 1));
    return std::string(p);
}

std::string error_of(GuestMemory& mem, const std::string& path, const LinuxBootParams& p = {}) {
    try {
        setup_linux(mem, path, p);
    } catch (const DataError& e) {
        return std::string("DataError: ") + e.what();
    } catch (const ConfigError& e) {
        return std::string("ConfigError: ") + e.what();
    }
    return "no error";
}

}  // namespace

TEST_CASE("detect_kernel_format reads only the headers") {
    TempDir d;
    CHECK(detect_kernel_format(d.write("vmlinux", make_elf(0x1000000, {{0x1000000, {1, 2, 3}, 3}}))) ==
          KernelFormat::kElf);
    CHECK(detect_kernel_format(d.write("bzImage", make_bzimage({}))) == KernelFormat::kBzImage);
    CHECK(detect_kernel_format(d.write("garbage", pattern(4096, 1))) == KernelFormat::kUnknown);
    CHECK(detect_kernel_format(d.write("empty", {})) == KernelFormat::kUnknown);
    CHECK(detect_kernel_format(d.write("short", {0x7f, 'E'})) == KernelFormat::kUnknown);
    CHECK_THROWS_AS(detect_kernel_format(d.path + "/missing"), SysError);
}

TEST_CASE("ELF vmlinux: segments at p_paddr, entry e_entry, bss zeroed, zero page filled") {
    TempDir d;
    auto text = pattern(5000, 3);
    auto data = pattern(300, 9);
    std::string path = d.write("vmlinux", make_elf(0x1000000, {{0x1000000, text, 5000}, {0x1400000, data, 0x3000}}));
    GuestMemory mem(64 * kMiB);
    std::memset(mem.host_ptr(0x1400000, 0x3000), 0xaa, 0x3000);  // bss must be cleared

    LinuxBootState st = setup_linux(mem, path, {"console=ttyS0 reboot=k panic=1", ""});
    CHECK(st.format == KernelFormat::kElf);
    CHECK(st.rip == 0x1000000);
    CHECK(st.kernel_start == 0x1000000);
    CHECK(st.kernel_end == 0x1403000);
    CHECK(std::memcmp(mem.host_ptr(0x1000000, text.size()), text.data(), text.size()) == 0);
    CHECK(std::memcmp(mem.host_ptr(0x1400000, data.size()), data.data(), data.size()) == 0);
    const uint8_t* bss = mem.host_ptr(0x1400000 + data.size(), 0x3000 - data.size());
    CHECK(std::all_of(bss, bss + 0x3000 - data.size(), [](uint8_t b) { return b == 0; }));

    CHECK(cmdline_at(mem) == "console=ttyS0 reboot=k panic=1");
    boot_params bp = zero_page(mem);
    CHECK(+bp.hdr.boot_flag == 0xaa55);
    CHECK(+bp.hdr.header == 0x53726448);
    CHECK(+bp.hdr.type_of_loader == 0xff);
    CHECK(+bp.hdr.cmd_line_ptr == 0x20000);
    CHECK(+bp.hdr.kernel_alignment == 0x1000000);
    CHECK(+bp.hdr.ramdisk_image == 0);
    CHECK(+bp.hdr.ramdisk_size == 0);
    REQUIRE(+bp.e820_entries == 2);
    CHECK(+bp.e820_table[0].addr == 0);
    CHECK(+bp.e820_table[0].size == 0x9fc00);
    CHECK(+bp.e820_table[0].type == 1);
    CHECK(+bp.e820_table[1].addr == 0x100000);
    CHECK(+bp.e820_table[1].size == 63 * kMiB);
    CHECK(+bp.e820_table[1].type == 1);
}

TEST_CASE("bzImage: protected-mode part at 1 MiB, 64-bit entry +0x200, setup header copied") {
    TempDir d;
    std::vector<uint8_t> pm;
    BzOptions o;
    o.setup_sects = 0;  // 0 means 4
    std::string path = d.write("bzImage", make_bzimage(o, &pm));
    GuestMemory mem(64 * kMiB);
    LinuxBootState st = setup_linux(mem, path, {"console=ttyS0", ""});
    CHECK(st.format == KernelFormat::kBzImage);
    CHECK(st.rip == 0x100200);
    CHECK(st.kernel_start == 0x100000);
    CHECK(st.kernel_end == 0x1000000 + 4 * kMiB);  // pref_address + init_size
    CHECK(std::memcmp(mem.host_ptr(0x100000, pm.size()), pm.data(), pm.size()) == 0);

    boot_params bp = zero_page(mem);
    CHECK(+bp.hdr.header == 0x53726448);
    CHECK(+bp.hdr.version == 0x20f);
    CHECK(+bp.hdr.xloadflags == XLF_KERNEL_64);
    CHECK(+bp.hdr.cmdline_size == 2047);
    CHECK(+bp.hdr.pref_address == 0x1000000);
    CHECK(+bp.hdr.type_of_loader == 0xff);
    CHECK((+bp.hdr.loadflags & LOADED_HIGH) != 0);
    CHECK((+bp.hdr.loadflags & CAN_USE_HEAP) != 0);
    CHECK(+bp.hdr.heap_end_ptr == 0xfe00 - 0x200);
    CHECK(+bp.hdr.cmd_line_ptr == 0x20000);
    CHECK(cmdline_at(mem) == "console=ttyS0");
    CHECK(+bp.e820_entries == 2);

    // setup_sects != 0: the protected-mode part starts after that many sectors.
    o.setup_sects = 7;
    path = d.write("bzImage7", make_bzimage(o, &pm));
    GuestMemory mem2(64 * kMiB);
    setup_linux(mem2, path, {});
    CHECK(std::memcmp(mem2.host_ptr(0x100000, pm.size()), pm.data(), pm.size()) == 0);
}

TEST_CASE("initrd goes to the top of low RAM, page aligned, below initrd_addr_max") {
    TempDir d;
    auto initrd = pattern(10000, 77);
    std::string rd = d.write("initrd", initrd);

    GuestMemory mem(64 * kMiB);
    std::string elf = d.write("vmlinux", make_elf(0x1000000, {{0x1000000, {1}, 0x1000}}));
    LinuxBootState st = setup_linux(mem, elf, {"", rd});
    CHECK(st.initrd_size == initrd.size());
    CHECK(st.initrd_addr == ((64 * kMiB - initrd.size()) & ~0xfffull));
    CHECK(std::memcmp(mem.host_ptr(st.initrd_addr, initrd.size()), initrd.data(), initrd.size()) == 0);
    boot_params bp = zero_page(mem);
    CHECK(+bp.hdr.ramdisk_image == st.initrd_addr);
    CHECK(+bp.hdr.ramdisk_size == initrd.size());

    BzOptions o;
    o.initrd_addr_max = 48 * kMiB - 1;
    GuestMemory mem2(64 * kMiB);
    st = setup_linux(mem2, d.write("bzImage", make_bzimage(o)), {"", rd});
    CHECK(st.initrd_addr == ((48 * kMiB - initrd.size()) & ~0xfffull));
    CHECK(+zero_page(mem2).hdr.ramdisk_image == st.initrd_addr);

    // No room between the kernel's init area and the top of RAM.
    GuestMemory small(20 * kMiB + 8192);
    CHECK(error_of(small, d.write("bz2", make_bzimage({})), {"", rd}).rfind("ConfigError", 0) == 0);
    CHECK(error_of(mem, elf, {"", d.write("empty-initrd", {})}).find("initrd is empty") != std::string::npos);
}

TEST_CASE("e820 puts RAM past 3 GiB at 4 GiB") {
    TempDir d;
    GuestMemory mem(4096 * kMiB);  // MAP_NORESERVE: costs address space only
    setup_linux(mem, d.write("vmlinux", make_elf(0x1000000, {{0x1000000, {1}, 1}})), {});
    boot_params bp = zero_page(mem);
    REQUIRE(+bp.e820_entries == 3);
    CHECK(+bp.e820_table[0].addr == 0);
    CHECK(+bp.e820_table[0].size == 0x9fc00);
    CHECK(+bp.e820_table[1].addr == 0x100000);
    CHECK(+bp.e820_table[1].size == 0xC0000000ull - 0x100000);
    CHECK(+bp.e820_table[2].addr == 0x100000000ull);
    CHECK(+bp.e820_table[2].size == 1024 * kMiB);
}

TEST_CASE("command line length limits: 2048 with the NUL for ELF, cmdline_size for bzImage") {
    TempDir d;
    std::string elf = d.write("vmlinux", make_elf(0x1000000, {{0x1000000, {1}, 1}}));
    GuestMemory mem(32 * kMiB);
    setup_linux(mem, elf, {std::string(2047, 'a'), ""});
    CHECK(cmdline_at(mem) == std::string(2047, 'a'));
    std::string e = error_of(mem, elf, {std::string(2048, 'a'), ""});
    CHECK(e.rfind("ConfigError", 0) == 0);
    CHECK(e.find("2048 bytes") != std::string::npos);
    CHECK(e.find("at most 2047") != std::string::npos);

    BzOptions o;
    o.cmdline_size = 100;
    std::string bz = d.write("bzImage", make_bzimage(o));
    setup_linux(mem, bz, {std::string(100, 'b'), ""});
    e = error_of(mem, bz, {std::string(101, 'b'), ""});
    CHECK(e.find("at most 100") != std::string::npos);
    CHECK(error_of(mem, elf, {std::string("a\0b", 3), ""}).find("NUL") != std::string::npos);
}

TEST_CASE("bad kernels are rejected with DataError naming the file and the reason") {
    TempDir d;
    GuestMemory mem(32 * kMiB);
    auto expect = [&](const std::string& path, const char* reason) {
        std::string e = error_of(mem, path);
        INFO(e);
        CHECK(e.rfind("DataError: " + path + ": ", 0) == 0);
        CHECK(e.find(reason) != std::string::npos);
    };
    expect(d.write("garbage", pattern(8192, 5)), "not a kernel image");
    expect(d.write("empty", {}), "not a kernel image");

    auto elf = make_elf(0x1000000, {{0x1000000, pattern(100, 1), 100}});
    expect(d.write("truncated-elf", std::vector<uint8_t>(elf.begin(), elf.begin() + 40)), "truncated");
    expect(d.write("truncated-seg", std::vector<uint8_t>(elf.begin(), elf.end() - 10)), "outside the file");
    expect(d.write("arm64", make_elf(0x1000000, {{0x1000000, {1}, 1}}, EM_AARCH64)), "not x86-64");
    expect(d.write("elf32", make_elf(0x1000000, {{0x1000000, {1}, 1}}, EM_X86_64, ELFCLASS32)), "64-bit");
    expect(d.write("too-high", make_elf(0x4000000, {{0x4000000, {1}, 1}})), "outside guest memory");
    expect(d.write("low", make_elf(0x8000, {{0x8000, {1}, 1}})), "below 1 MiB");
    expect(d.write("bad-entry", make_elf(0x2000000, {{0x1000000, {1}, 1}})), "entry point");

    BzOptions o;
    o.version = 0x205;
    expect(d.write("old-proto", make_bzimage(o)), "too old");
    o = {};
    o.xloadflags = 0;
    expect(d.write("bz32", make_bzimage(o)), "64-bit");
    o = {};
    o.loadflags = 0;
    expect(d.write("zimage", make_bzimage(o)), "zImage");
    o = {};
    o.syssize_delta = 100;
    expect(d.write("bz-truncated", make_bzimage(o)), "truncated");
    auto bz = make_bzimage({});
    expect(d.write("bz-setup-only", std::vector<uint8_t>(bz.begin(), bz.begin() + 5 * 512)), "truncated");
    o = {};
    o.pm_size = 40 * kMiB;
    expect(d.write("bz-huge", make_bzimage(o)), "does not fit");
}

TEST_CASE("entry state: Firecracker's GDT, page tables and long-mode registers") {
    TempDir d;
    GuestMemory mem(64 * kMiB);
    LinuxBootState st = setup_linux(mem, d.write("bzImage", make_bzimage({})), {});

    uint64_t gdt[4];
    REQUIRE(mem.read(0x500, gdt, sizeof gdt));
    CHECK(gdt[0] == 0);
    CHECK(gdt[1] == 0x00af9b000000ffffull);
    CHECK(gdt[2] == 0x00cf93000000ffffull);
    CHECK(gdt[3] == 0x008f8b000000ffffull);
    uint64_t v = 1;
    REQUIRE(mem.read_obj(0x520, v));
    CHECK(v == 0);
    REQUIRE(mem.read_obj(0x9000, v));
    CHECK(v == 0xa003);
    REQUIRE(mem.read_obj(0xa000, v));
    CHECK(v == 0xb003);
    REQUIRE(mem.read_obj(0xb000, v));
    CHECK(v == 0x83);
    REQUIRE(mem.read_obj(0xb000 + 511 * 8, v));
    CHECK(v == ((511ull << 21) | 0x83));

    kvm_regs regs;
    std::memset(&regs, 0x55, sizeof regs);
    kvm_sregs sregs{};
    sregs.apic_base = 0xfee00900;
    apply_linux_boot_state(st, regs, sregs);
    CHECK(regs.rip == 0x100200);
    CHECK(regs.rsi == 0x7000);
    CHECK(regs.rsp == 0x8ff0);
    CHECK(regs.rbp == 0x8ff0);
    CHECK(regs.rflags == 2);
    CHECK(regs.rax == 0);
    CHECK(sregs.apic_base == 0xfee00900);  // kept
    CHECK(sregs.gdt.base == 0x500);
    CHECK(sregs.gdt.limit == 31);
    CHECK(sregs.idt.base == 0x520);
    CHECK(sregs.idt.limit == 7);
    CHECK(sregs.cs.selector == 0x08);
    CHECK(sregs.cs.l == 1);
    CHECK(sregs.cs.db == 0);
    CHECK(sregs.cs.type == 0xb);
    CHECK(sregs.cs.present == 1);
    CHECK(sregs.cs.s == 1);
    CHECK(sregs.cs.g == 1);
    CHECK(sregs.cs.limit == 0xffffffff);
    CHECK(sregs.cs.base == 0);
    for (const kvm_segment* s : {&sregs.ds, &sregs.es, &sregs.fs, &sregs.gs, &sregs.ss}) {
        CHECK(s->selector == 0x10);
        CHECK(s->type == 3);
        CHECK(s->db == 1);
        CHECK(s->l == 0);
    }
    CHECK(sregs.tr.selector == 0x18);
    CHECK(sregs.tr.type == 0xb);
    CHECK(sregs.tr.s == 0);
    CHECK(sregs.cr0 == 0x80000011);
    CHECK(sregs.cr3 == 0x9000);
    CHECK(sregs.cr4 == 0x20);
    CHECK(sregs.efer == 0x500);
}

#include "kvm/nano_boot.h"

#include <sys/random.h>

#include <cstring>

#include "base/error.h"

namespace kindling {

namespace {

constexpr uint64_t kPresent = 1, kWrite = 2, kUser = 4, kPwt = 8, kPcd = 0x10, kHuge = 0x80;
constexpr uint64_t kPml4 = KN_PAGE_TABLES_ADDR;  // 0x4000
constexpr uint64_t kPdpt = kPml4 + 0x1000;       // 0x5000
constexpr uint64_t kPd0 = kPdpt + 0x1000;        // 0x6000..0x8fff: 3 PDs for [0, 3 GiB)
constexpr uint64_t kPdMmio = kPd0 + 3 * 0x1000;  // 0x9000: PD for [3 GiB, 4 GiB)
constexpr uint64_t kTwoMiB = 2ull << 20;

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

void fill_random(void* p, size_t n) {
    auto* b = static_cast<uint8_t*>(p);
    while (n > 0) {
        ssize_t r = ::getrandom(b, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno("getrandom");
        }
        b += r;
        n -= static_cast<size_t>(r);
    }
}

void build_page_tables(GuestMemory& mem) {
    auto* base = mem.host_ptr(kPml4, kPdMmio + 0x1000 - kPml4);
    std::memset(base, 0, kPdMmio + 0x1000 - kPml4);
    auto table = [&](uint64_t gpa) { return reinterpret_cast<uint64_t*>(mem.host_ptr(gpa, 0x1000)); };
    const uint64_t f = kPresent | kWrite | kUser;
    table(kPml4)[0] = kPdpt | f;
    for (int i = 0; i < 3; ++i) table(kPdpt)[i] = (kPd0 + i * 0x1000) | f;
    table(kPdpt)[3] = kPdMmio | f;
    // Identity-map RAM with 2 MiB user pages.  Page 0 stays mapped: PVM touches
    // guest-virtual page 0 when it handles a ring-3 port access, and an OUT with
    // page 0 unmapped turns into a triple fault (measured on this host).
    const uint64_t ram = mem.size();
    uint64_t* pd = table(kPd0);
    for (uint64_t a = 0; a < ram; a += kTwoMiB) pd[a / kTwoMiB] = a | f | kHuge;
    // Device windows: one uncached 2 MiB page at KN_MMIO_BASE; every access exits.
    table(kPdMmio)[(KN_MMIO_BASE - 0xC0000000ull) / kTwoMiB] = KN_MMIO_BASE | f | kHuge | kPcd | kPwt;
}

}  // namespace

bool is_nano_image(const ElfImage& img) {
    for (const auto& n : img.notes)
        if (n.name == KN_ELF_NOTE_NAME && n.type == KN_ELF_NOTE_TYPE) return true;
    return false;
}

void write_generation(GuestMemory& mem, uint64_t gpa) {
    kn_generation g;
    fill_random(&g, sizeof g);
    mem.write_obj(gpa, g);
}

NanoBootState setup_nano(GuestMemory& mem, const ElfImage& img, const NanoBootParams& p) {
    if (mem.size() > KN_MAX_MEM)
        throw ConfigError("a nano guest can have at most " + std::to_string(KN_MAX_MEM >> 20) + " MiB of memory");
    if (p.cmdline.size() >= KN_CMDLINE_MAX)
        throw ConfigError("command line too long (" + std::to_string(p.cmdline.size()) + " bytes, max " +
                          std::to_string(KN_CMDLINE_MAX - 1) + ")");
    if (p.devices.size() > KN_MAX_DEVICES) throw ConfigError("too many devices for a nano guest");

    uint64_t image_end = 0;
    for (size_t i = 0; i < img.loads.size(); ++i) {
        const auto& s = img.loads[i];
        if (s.paddr < KN_IMAGE_MIN_ADDR)
            throw DataError(img.path + ": segment " + std::to_string(i) + " at 0x" + std::to_string(s.paddr) +
                            " is below 1 MiB (not a nano image?)");
        uint8_t* dst = mem.host_ptr(s.paddr, s.memsz);
        if (!dst)
            throw ConfigError(img.path + ": image does not fit in " + std::to_string(mem.size() >> 20) +
                              " MiB of guest memory");
        std::memcpy(dst, img.data() + s.file_offset, s.filesz);
        // Fresh anonymous memory is already zero; .bss needs no memset.
        image_end = std::max(image_end, s.paddr + s.memsz);
    }
    image_end = align_up(image_end, 0x1000);
    uint64_t stack_top = mem.size() & ~0xfull;
    if (image_end + p.stack_size > stack_top)
        throw ConfigError(img.path + ": " + std::to_string(mem.size() >> 20) +
                          " MiB of memory leaves no room for the stack; give the VM more memory");
    if (!mem.contains(img.entry, 1)) throw DataError(img.path + ": entry point outside guest memory");

    build_page_tables(mem);

    kn_boot_info bi{};
    bi.magic = KN_BOOT_MAGIC;
    bi.version = KN_BOOT_VERSION;
    bi.mem_size = mem.size();
    bi.image_end = image_end;
    bi.stack_top = stack_top;
    bi.stack_size = p.stack_size;
    bi.cmdline = KN_CMDLINE_ADDR;
    bi.generation = KN_GENERATION_ADDR;
    bi.tsc_khz = p.tsc_khz;
    bi.guest_cid = p.guest_cid;
    bi.num_devices = static_cast<uint32_t>(p.devices.size());
    for (size_t i = 0; i < p.devices.size(); ++i) bi.devices[i] = p.devices[i];
    mem.write_obj(KN_BOOT_INFO_ADDR, bi);
    mem.write(KN_CMDLINE_ADDR, p.cmdline.c_str(), p.cmdline.size() + 1);
    write_generation(mem);

    NanoBootState st;
    st.rip = img.entry;
    st.rsp = stack_top;
    st.rdi = KN_BOOT_INFO_ADDR;
    st.cr3 = kPml4;
    st.image_end = image_end;
    return st;
}

void apply_nano_boot_state(const NanoBootState& st, kvm_regs& regs, kvm_sregs& s) {
    regs = kvm_regs{};
    regs.rip = st.rip;
    regs.rsp = st.rsp;
    regs.rdi = st.rdi;
    regs.rflags = 0x2 | (3u << 12);  // reserved bit 1, IOPL=3: port I/O from ring 3

    s.cr3 = st.cr3;
    s.cr0 = 0x80050033;  // PG | AM | WP | NE | ET | MP | PE
    s.cr4 = (1u << 5) | (1u << 9) | (1u << 10);  // PAE | OSFXSR | OSXMMEXCPT
    s.efer = 0x500 | 0x800;  // LMA | LME | NXE
    kvm_segment code{};
    code.base = 0;
    code.limit = 0xffffffff;
    code.selector = 0x2b;  // GDT index 5, RPL 3 (no GDT is needed: nothing reloads it)
    code.type = 11;        // execute/read, accessed
    code.present = 1;
    code.dpl = 3;
    code.s = 1;
    code.l = 1;
    code.g = 1;
    kvm_segment data = code;
    data.selector = 0x23;
    data.type = 3;  // read/write, accessed
    data.l = 0;
    data.db = 1;
    s.cs = code;
    s.ds = s.es = s.fs = s.gs = s.ss = data;
}

}  // namespace kindling

#include "snapshot/vmstate.h"

#include <bit>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <set>
#include <type_traits>

#include "base/error.h"
#include "base/io.h"
#include "hash/crc32c.h"

namespace kindling {

namespace {

static_assert(std::endian::native == std::endian::little, "vmstate stores KVM structs in x86-64 byte order");

enum SectionId : uint32_t {
    kSecMachine = 1,
    kSecVcpu = 2,
    kSecVm = 3,
    kSecDevice = 4,
};

const char* section_name(uint32_t id) {
    switch (id) {
    case kSecMachine: return "machine";
    case kSecVcpu: return "vcpu";
    case kSecVm: return "vm";
    case kSecDevice: return "device";
    }
    return "unknown";
}

// Field tags, per section.
enum MachineField : uint16_t { kMfKind = 1, kMfMemSize = 2, kMfVcpuCount = 3 };
enum VcpuField : uint16_t {
    kVfIndex = 1,
    kVfCpuid = 2,
    kVfMpState = 3,
    kVfRegs = 4,
    kVfSregs = 5,
    kVfXsave = 6,
    kVfFpu = 7,
    kVfXcrs = 8,
    kVfDebugregs = 9,
    kVfLapic = 10,
    kVfMsrs = 11,
    kVfEvents = 12,
    kVfTscKhz = 13,
};
enum VmField : uint16_t { kVmClock = 1, kVmPit = 2, kVmPicMaster = 3, kVmPicSlave = 4, kVmIoapic = 5 };
enum DeviceField : uint16_t { kDfName = 1, kDfData = 2 };

constexpr size_t kMaxXsave = 1 << 20;  // AMX makes it ~11 KiB today
constexpr size_t kMaxName = 256;

std::string hex32(uint32_t v) {
    char b[16];
    std::snprintf(b, sizeof b, "0x%08" PRIx32, v);
    return b;
}

// --- writing ------------------------------------------------------------------------

class Writer {
public:
    std::vector<uint8_t>& out() { return b_; }

    template <class T>
    void put(T v) {
        static_assert(std::is_integral_v<T>);
        uint8_t tmp[sizeof(T)];
        for (size_t i = 0; i < sizeof(T); ++i) tmp[i] = static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i));
        b_.insert(b_.end(), tmp, tmp + sizeof(T));
    }
    void put_bytes(const void* p, size_t n) {
        const auto* c = static_cast<const uint8_t*>(p);
        b_.insert(b_.end(), c, c + n);
    }
    void patch_u64(size_t at, uint64_t v) {
        for (size_t i = 0; i < 8; ++i) b_[at + i] = static_cast<uint8_t>(v >> (8 * i));
    }
    void patch_u32(size_t at, uint32_t v) {
        for (size_t i = 0; i < 4; ++i) b_[at + i] = static_cast<uint8_t>(v >> (8 * i));
    }

    // Fields: u16 tag, u32 length, bytes.
    void field_bytes(uint16_t tag, const void* p, size_t n) {
        put<uint16_t>(tag);
        put<uint32_t>(static_cast<uint32_t>(n));
        put_bytes(p, n);
    }
    template <class T>
    void field_int(uint16_t tag, T v) {
        put<uint16_t>(tag);
        put<uint32_t>(sizeof(T));
        put<T>(v);
    }
    // A KVM struct as its raw ABI bytes.
    template <class T>
    void field_raw(uint16_t tag, const T& v) {
        static_assert(std::is_trivially_copyable_v<T>);
        field_bytes(tag, &v, sizeof v);
    }

    // Sections: u32 id, u64 length (patched by end_section), body.
    size_t begin_section(uint32_t id) {
        put<uint32_t>(id);
        size_t at = b_.size();
        put<uint64_t>(0);
        return at;
    }
    void end_section(size_t at) { patch_u64(at, b_.size() - at - 8); }

private:
    std::vector<uint8_t> b_;
};

// --- reading ------------------------------------------------------------------------

// A bounds-checked cursor over [data, data+size).  Every failure is a DataError
// "CONTEXT: message".
class Reader {
public:
    Reader(std::span<const uint8_t> b, std::string context) : b_(b), ctx_(std::move(context)) {}

    size_t left() const { return b_.size() - pos_; }
    size_t pos() const { return pos_; }
    bool done() const { return pos_ == b_.size(); }
    const std::string& context() const { return ctx_; }

    [[noreturn]] void fail(const std::string& msg) const { throw DataError(ctx_ + ": " + msg); }

    template <class T>
    T get(const char* what) {
        static_assert(std::is_integral_v<T>);
        if (left() < sizeof(T))
            fail(std::string("truncated ") + what + " at offset " + std::to_string(pos_) + " (" + std::to_string(left()) +
                 " bytes left, need " + std::to_string(sizeof(T)) + ")");
        uint64_t v = 0;
        for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<uint64_t>(b_[pos_ + i]) << (8 * i);
        pos_ += sizeof(T);
        return static_cast<T>(v);
    }
    // `what` names the thing being taken, `container` what it must fit in.
    std::span<const uint8_t> take(uint64_t n, const std::string& what, const char* container) {
        if (n > left())
            fail(what + " overruns " + container + " (length " + std::to_string(n) + ", " + std::to_string(left()) +
                 " bytes left)");
        auto s = b_.subspan(pos_, static_cast<size_t>(n));
        pos_ += static_cast<size_t>(n);
        return s;
    }

private:
    std::span<const uint8_t> b_;
    size_t pos_ = 0;
    std::string ctx_;
};

// A decoded field: tag and its bytes.  Helpers check the length against the type.
struct Field {
    uint16_t tag;
    std::span<const uint8_t> data;
};

// Splits a section body into fields, rejecting duplicates.
std::vector<Field> read_fields(Reader& r) {
    std::vector<Field> out;
    std::set<uint16_t> seen;
    while (!r.done()) {
        const size_t at = r.pos();
        uint16_t tag = r.get<uint16_t>("field tag");
        uint32_t len = r.get<uint32_t>("field length");
        auto data = r.take(len, "field " + std::to_string(tag) + " at offset " + std::to_string(at), "its section");
        if (!seen.insert(tag).second) r.fail("field " + std::to_string(tag) + " appears twice");
        out.push_back({tag, data});
    }
    return out;
}

[[noreturn]] void unknown_field(const Reader& r, uint16_t tag) {
    r.fail("unknown field " + std::to_string(tag) + " (written by a newer kindling?)");
}

template <class T>
T field_raw(const Reader& r, const Field& f, const char* name) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (f.data.size() != sizeof(T))
        r.fail(std::string(name) + ": " + std::to_string(f.data.size()) + " bytes, expected " + std::to_string(sizeof(T)));
    T v;
    std::memcpy(&v, f.data.data(), sizeof v);
    return v;
}

template <class T>
T field_int(const Reader& r, const Field& f, const char* name) {
    if (f.data.size() != sizeof(T))
        r.fail(std::string(name) + ": " + std::to_string(f.data.size()) + " bytes, expected " + std::to_string(sizeof(T)));
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<uint64_t>(f.data[i]) << (8 * i);
    return static_cast<T>(v);
}

template <class T>
std::vector<T> field_array(const Reader& r, const Field& f, const char* name) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (f.data.size() % sizeof(T) != 0)
        r.fail(std::string(name) + ": " + std::to_string(f.data.size()) + " bytes is not a whole number of " +
               std::to_string(sizeof(T)) + "-byte entries");
    std::vector<T> v(f.data.size() / sizeof(T));
    if (!v.empty()) std::memcpy(v.data(), f.data.data(), f.data.size());
    return v;
}

bool field_bool(const Reader& r, const Field& f, const char* name) {
    uint8_t v = field_int<uint8_t>(r, f, name);
    if (v > 1) r.fail(std::string(name) + ": " + std::to_string(v) + " is not a boolean");
    return v == 1;
}

void require(const Reader& r, bool present, const char* name) {
    if (!present) r.fail(std::string("missing field ") + name);
}

// --- sections ------------------------------------------------------------------------

void write_vcpu(Writer& w, const VcpuState& v) {
    w.field_int<uint32_t>(kVfIndex, v.index);
    w.field_bytes(kVfCpuid, v.cpuid.data(), v.cpuid.size() * sizeof(kvm_cpuid_entry2));
    w.field_raw(kVfMpState, v.mp_state);
    w.field_raw(kVfRegs, v.regs);
    w.field_raw(kVfSregs, v.sregs);
    if (!v.xsave.empty()) w.field_bytes(kVfXsave, v.xsave.data(), v.xsave.size());
    if (v.fpu) w.field_raw(kVfFpu, *v.fpu);
    if (v.xcrs) w.field_raw(kVfXcrs, *v.xcrs);
    if (v.debugregs) w.field_raw(kVfDebugregs, *v.debugregs);
    if (v.lapic) w.field_raw(kVfLapic, *v.lapic);
    w.field_bytes(kVfMsrs, v.msrs.data(), v.msrs.size() * sizeof(kvm_msr_entry));
    if (v.events) w.field_raw(kVfEvents, *v.events);
    w.field_int<uint32_t>(kVfTscKhz, v.tsc_khz);
}

VcpuState read_vcpu(Reader& r) {
    VcpuState v;
    bool index = false, cpuid = false, mp = false, regs = false, sregs = false, msrs = false;
    for (const Field& f : read_fields(r)) {
        switch (f.tag) {
        case kVfIndex: v.index = field_int<uint32_t>(r, f, "index"); index = true; break;
        case kVfCpuid: v.cpuid = field_array<kvm_cpuid_entry2>(r, f, "cpuid"); cpuid = true; break;
        case kVfMpState: v.mp_state = field_raw<kvm_mp_state>(r, f, "mp_state"); mp = true; break;
        case kVfRegs: v.regs = field_raw<kvm_regs>(r, f, "regs"); regs = true; break;
        case kVfSregs: v.sregs = field_raw<kvm_sregs>(r, f, "sregs"); sregs = true; break;
        case kVfXsave:
            if (f.data.size() < kXsaveLegacySize || f.data.size() > kMaxXsave || f.data.size() % 4 != 0)
                r.fail("xsave: " + std::to_string(f.data.size()) + " bytes is not a valid XSAVE area size");
            v.xsave.assign(f.data.begin(), f.data.end());
            break;
        case kVfFpu: v.fpu = field_raw<kvm_fpu>(r, f, "fpu"); break;
        case kVfXcrs: {
            kvm_xcrs x = field_raw<kvm_xcrs>(r, f, "xcrs");
            if (x.nr_xcrs > KVM_MAX_XCRS) r.fail("xcrs: nr_xcrs " + std::to_string(x.nr_xcrs) + " > " + std::to_string(KVM_MAX_XCRS));
            v.xcrs = x;
            break;
        }
        case kVfDebugregs: v.debugregs = field_raw<kvm_debugregs>(r, f, "debugregs"); break;
        case kVfLapic: v.lapic = field_raw<kvm_lapic_state>(r, f, "lapic"); break;
        case kVfMsrs: v.msrs = field_array<kvm_msr_entry>(r, f, "msrs"); msrs = true; break;
        case kVfEvents: v.events = field_raw<kvm_vcpu_events>(r, f, "vcpu_events"); break;
        case kVfTscKhz: v.tsc_khz = field_int<uint32_t>(r, f, "tsc_khz"); break;
        default: unknown_field(r, f.tag);
        }
    }
    require(r, index, "index");
    require(r, cpuid, "cpuid");
    require(r, mp, "mp_state");
    require(r, regs, "regs");
    require(r, sregs, "sregs");
    require(r, msrs, "msrs");
    if (v.xsave.empty() && !v.fpu) r.fail("missing field xsave (or fpu)");
    return v;
}

void write_vm(Writer& w, const VmKvmState& s) {
    w.field_raw(kVmClock, s.clock);
    if (s.pit) w.field_raw(kVmPit, *s.pit);
    if (s.pic_master) w.field_raw(kVmPicMaster, *s.pic_master);
    if (s.pic_slave) w.field_raw(kVmPicSlave, *s.pic_slave);
    if (s.ioapic) w.field_raw(kVmIoapic, *s.ioapic);
}

VmKvmState read_vm(Reader& r) {
    VmKvmState s;
    bool clock = false;
    auto chip = [&](const Field& f, const char* name, uint32_t id) {
        kvm_irqchip c = field_raw<kvm_irqchip>(r, f, name);
        if (c.chip_id != id) r.fail(std::string(name) + ": chip id " + std::to_string(c.chip_id) + ", expected " + std::to_string(id));
        return c;
    };
    for (const Field& f : read_fields(r)) {
        switch (f.tag) {
        case kVmClock: s.clock = field_raw<kvm_clock_data>(r, f, "clock"); clock = true; break;
        case kVmPit: s.pit = field_raw<kvm_pit_state2>(r, f, "pit"); break;
        case kVmPicMaster: s.pic_master = chip(f, "pic_master", KVM_IRQCHIP_PIC_MASTER); break;
        case kVmPicSlave: s.pic_slave = chip(f, "pic_slave", KVM_IRQCHIP_PIC_SLAVE); break;
        case kVmIoapic: s.ioapic = chip(f, "ioapic", KVM_IRQCHIP_IOAPIC); break;
        default: unknown_field(r, f.tag);
        }
    }
    require(r, clock, "clock");
    if (s.pic_master.has_value() != s.pic_slave.has_value() || s.pic_master.has_value() != s.ioapic.has_value())
        r.fail("irqchip state is incomplete (PIC master, PIC slave and IOAPIC go together)");
    return s;
}

}  // namespace

const char* machine_kind_name(MachineKind k) {
    switch (k) {
    case MachineKind::kNano: return "nano";
    case MachineKind::kLinux: return "linux";
    }
    return "?";
}

const DeviceBlob* MachineState::device(std::string_view name) const {
    for (const auto& d : devices)
        if (d.name == name) return &d;
    return nullptr;
}

std::vector<uint8_t> encode_vmstate(const MachineState& s) {
    Writer w;
    w.put_bytes(kVmstateMagic, sizeof kVmstateMagic);
    w.put<uint32_t>(kVmstateVersion);
    w.put<uint64_t>(0);  // payload length, patched below
    w.put<uint32_t>(0);  // CRC32C, patched below

    size_t sec = w.begin_section(kSecMachine);
    w.field_int<uint8_t>(kMfKind, static_cast<uint8_t>(s.kind));
    w.field_int<uint64_t>(kMfMemSize, s.mem_size);
    w.field_int<uint32_t>(kMfVcpuCount, static_cast<uint32_t>(s.vcpus.size()));
    w.end_section(sec);
    for (const auto& v : s.vcpus) {
        sec = w.begin_section(kSecVcpu);
        write_vcpu(w, v);
        w.end_section(sec);
    }
    sec = w.begin_section(kSecVm);
    write_vm(w, s.vm);
    w.end_section(sec);
    for (const auto& d : s.devices) {
        sec = w.begin_section(kSecDevice);
        w.field_bytes(kDfName, d.name.data(), d.name.size());
        w.field_bytes(kDfData, d.data.data(), d.data.size());
        w.end_section(sec);
    }

    std::vector<uint8_t>& b = w.out();
    const size_t payload = b.size() - kVmstateHeaderSize;
    w.patch_u64(12, payload);
    w.patch_u32(20, crc32c(0, b.data() + kVmstateHeaderSize, payload));
    return std::move(b);
}

MachineState decode_vmstate(std::span<const uint8_t> bytes, const std::string& origin) {
    Reader hdr(bytes, origin);
    if (bytes.size() < kVmstateHeaderSize)
        hdr.fail("truncated: " + std::to_string(bytes.size()) + " bytes, the header alone is " +
                 std::to_string(kVmstateHeaderSize));
    if (std::memcmp(bytes.data(), kVmstateMagic, sizeof kVmstateMagic) != 0)
        hdr.fail("not a kindling vmstate file (bad magic)");
    hdr.take(sizeof kVmstateMagic, "magic", "the file");
    const uint32_t version = hdr.get<uint32_t>("version");
    if (version != kVmstateVersion)
        hdr.fail("format version " + std::to_string(version) + " is not supported (this kindling reads version " +
                 std::to_string(kVmstateVersion) + ")");
    const uint64_t length = hdr.get<uint64_t>("payload length");
    const uint32_t stored = hdr.get<uint32_t>("CRC32C");
    if (length != hdr.left())
        hdr.fail(std::string(length > hdr.left() ? "truncated" : "trailing bytes") + ": the header says " +
                 std::to_string(length) + " payload bytes, the file has " + std::to_string(hdr.left()));
    auto payload = bytes.subspan(kVmstateHeaderSize);
    const uint32_t computed = crc32c(0, payload.data(), payload.size());
    if (computed != stored) hdr.fail("CRC32C mismatch (stored " + hex32(stored) + ", computed " + hex32(computed) + ")");

    MachineState s;
    Reader r(payload, origin);
    bool machine = false, vm = false;
    uint32_t vcpu_count = 0;
    std::set<std::string> names;
    while (!r.done()) {
        const size_t at = kVmstateHeaderSize + r.pos();
        const uint32_t id = r.get<uint32_t>("section id");
        const uint64_t len = r.get<uint64_t>("section length");
        std::string where = std::string(section_name(id)) + " section at offset " + std::to_string(at);
        if (id < kSecMachine || id > kSecDevice)
            r.fail("unknown section id " + std::to_string(id) + " at offset " + std::to_string(at) +
                   " (written by a newer kindling?)");
        auto body = r.take(len, where, "the file");
        if (id != kSecMachine && !machine) r.fail(where + ": the machine section must come first");
        switch (id) {
        case kSecMachine: {
            Reader br(body, origin + ": " + where);
            if (machine) br.fail("more than one machine section");
            bool kind = false, mem = false, count = false;
            for (const Field& f : read_fields(br)) {
                switch (f.tag) {
                case kMfKind: {
                    uint8_t k = field_int<uint8_t>(br, f, "kind");
                    if (k != static_cast<uint8_t>(MachineKind::kNano) && k != static_cast<uint8_t>(MachineKind::kLinux))
                        br.fail("unknown machine kind " + std::to_string(k));
                    s.kind = static_cast<MachineKind>(k);
                    kind = true;
                    break;
                }
                case kMfMemSize: s.mem_size = field_int<uint64_t>(br, f, "mem_size"); mem = true; break;
                case kMfVcpuCount: vcpu_count = field_int<uint32_t>(br, f, "vcpu_count"); count = true; break;
                default: unknown_field(br, f.tag);
                }
            }
            require(br, kind, "kind");
            require(br, mem, "mem_size");
            require(br, count, "vcpu_count");
            if (s.mem_size == 0 || s.mem_size % 4096 != 0)
                br.fail("memory size " + std::to_string(s.mem_size) + " is not a non-zero multiple of 4096");
            if (vcpu_count == 0 || vcpu_count > kVmstateMaxVcpus)
                br.fail("vCPU count " + std::to_string(vcpu_count) + " is out of range (1.." + std::to_string(kVmstateMaxVcpus) + ")");
            machine = true;
            break;
        }
        case kSecVcpu: {
            Reader br(body, origin + ": vCPU " + std::to_string(s.vcpus.size()) + " (" + where + ")");
            if (s.vcpus.size() == vcpu_count) br.fail("more vCPU sections than the machine's " + std::to_string(vcpu_count));
            s.vcpus.push_back(read_vcpu(br));
            if (s.vcpus.back().index != s.vcpus.size() - 1)
                br.fail("vCPU index " + std::to_string(s.vcpus.back().index) + " out of order");
            break;
        }
        case kSecVm: {
            Reader br(body, origin + ": " + where);
            if (vm) br.fail("more than one vm section");
            s.vm = read_vm(br);
            vm = true;
            break;
        }
        case kSecDevice: {
            Reader br(body, origin + ": " + where);
            DeviceBlob d;
            bool name = false, data = false;
            for (const Field& f : read_fields(br)) {
                switch (f.tag) {
                case kDfName:
                    if (f.data.empty() || f.data.size() > kMaxName) br.fail("device name of " + std::to_string(f.data.size()) + " bytes");
                    d.name.assign(f.data.begin(), f.data.end());
                    name = true;
                    break;
                case kDfData: d.data.assign(f.data.begin(), f.data.end()); data = true; break;
                default: unknown_field(br, f.tag);
                }
            }
            require(br, name, "name");
            require(br, data, "data");
            if (!names.insert(d.name).second) br.fail("device " + d.name + " appears twice");
            s.devices.push_back(std::move(d));
            break;
        }
        }
    }
    if (!machine) r.fail("no machine section");
    if (s.vcpus.size() != vcpu_count)
        r.fail("the machine has " + std::to_string(vcpu_count) + " vCPUs but " + std::to_string(s.vcpus.size()) +
               " vCPU sections are present");
    if (!vm) r.fail("no vm section");
    if (s.kind == MachineKind::kNano && s.vm.has_irqchip()) r.fail("a nano machine with an in-kernel irqchip");
    return s;
}

MachineState read_vmstate(const std::string& path) {
    std::vector<uint8_t> b = read_file_bytes(path);
    return decode_vmstate(b, path);
}

// --- devices ------------------------------------------------------------------------

namespace {

// Device blobs: a u32 format tag then fields, so a blob handed to the wrong decoder
// (serial bytes to the virtio decoder) fails with a clear message.
enum DeviceFormat : uint32_t {
    kFmtSerial = 0x4c524553,     // "SERL"
    kFmtI8042 = 0x32343069,      // "i042"
    kFmtVirtioMmio = 0x4f495256, // "VRIO"
};

Reader device_reader(std::span<const uint8_t> b, const std::string& what, uint32_t fmt, const char* kind) {
    Reader r(b, what);
    uint32_t got = r.get<uint32_t>("format tag");
    if (got != fmt) r.fail(std::string("not ") + kind + " state (format tag " + hex32(got) + ")");
    return r;
}

}  // namespace

std::vector<uint8_t> encode_serial_state(const SerialState& s) {
    Writer w;
    w.put<uint32_t>(kFmtSerial);
    const uint8_t regs[7] = {s.dll, s.dlm, s.ier, s.lcr, s.mcr, s.scr, s.fcr};
    w.field_bytes(1, regs, sizeof regs);
    w.field_int<uint8_t>(2, s.thr_empty_pending ? 1 : 0);
    w.field_bytes(3, s.rx.data(), s.rx.size());
    return std::move(w.out());
}

SerialState decode_serial_state(std::span<const uint8_t> b, const std::string& what) {
    Reader r = device_reader(b, what, kFmtSerial, "serial");
    SerialState s;
    bool regs = false;
    for (const Field& f : read_fields(r)) {
        switch (f.tag) {
        case 1: {
            if (f.data.size() != 7) r.fail("registers: " + std::to_string(f.data.size()) + " bytes, expected 7");
            s.dll = f.data[0], s.dlm = f.data[1], s.ier = f.data[2], s.lcr = f.data[3];
            s.mcr = f.data[4], s.scr = f.data[5], s.fcr = f.data[6];
            regs = true;
            break;
        }
        case 2: s.thr_empty_pending = field_bool(r, f, "thr_empty_pending"); break;
        case 3:
            if (f.data.size() > Serial::kRxCapacity)
                r.fail("receive buffer of " + std::to_string(f.data.size()) + " bytes exceeds the FIFO (" +
                       std::to_string(Serial::kRxCapacity) + ")");
            s.rx.assign(f.data.begin(), f.data.end());
            break;
        default: unknown_field(r, f.tag);
        }
    }
    require(r, regs, "registers");
    return s;
}

std::vector<uint8_t> encode_i8042_state(const I8042State& s) {
    Writer w;
    w.put<uint32_t>(kFmtI8042);
    const uint8_t regs[4] = {s.status, s.control, s.outp, s.pending_cmd};
    w.field_bytes(1, regs, sizeof regs);
    w.field_bytes(2, s.out.data(), s.out.size());
    return std::move(w.out());
}

I8042State decode_i8042_state(std::span<const uint8_t> b, const std::string& what) {
    Reader r = device_reader(b, what, kFmtI8042, "i8042");
    I8042State s;
    bool regs = false;
    for (const Field& f : read_fields(r)) {
        switch (f.tag) {
        case 1:
            if (f.data.size() != 4) r.fail("registers: " + std::to_string(f.data.size()) + " bytes, expected 4");
            s.status = f.data[0], s.control = f.data[1], s.outp = f.data[2], s.pending_cmd = f.data[3];
            regs = true;
            break;
        case 2:
            if (f.data.size() > I8042::kBufferSize)
                r.fail("output buffer of " + std::to_string(f.data.size()) + " bytes exceeds " + std::to_string(I8042::kBufferSize));
            s.out.assign(f.data.begin(), f.data.end());
            break;
        default: unknown_field(r, f.tag);
        }
    }
    require(r, regs, "registers");
    return s;
}

std::vector<uint8_t> encode_virtio_mmio_state(const VirtioMmioSnapshot& s) {
    Writer w;
    w.put<uint32_t>(kFmtVirtioMmio);
    w.field_int<uint32_t>(1, s.device_id);
    {
        Writer t;
        t.put<uint32_t>(s.transport.status);
        t.put<uint32_t>(s.transport.interrupt_status);
        t.put<uint32_t>(s.transport.device_features_sel);
        t.put<uint32_t>(s.transport.driver_features_sel);
        t.put<uint64_t>(s.transport.driver_features);
        t.put<uint32_t>(s.transport.queue_sel);
        t.put<uint32_t>(s.transport.config_generation);
        w.field_bytes(2, t.out().data(), t.out().size());
    }
    for (const auto& q : s.transport.queues) {
        // One field per queue, in queue order (tag 3 repeats; see decode).
        Writer t;
        t.put<uint16_t>(q.size);
        t.put<uint8_t>(q.ready ? 1 : 0);
        t.put<uint64_t>(q.desc_addr);
        t.put<uint64_t>(q.avail_addr);
        t.put<uint64_t>(q.used_addr);
        t.put<uint16_t>(q.next_avail);
        t.put<uint16_t>(q.next_used);
        w.field_bytes(3, t.out().data(), t.out().size());
    }
    w.field_bytes(4, s.device.data(), s.device.size());
    return std::move(w.out());
}

VirtioMmioSnapshot decode_virtio_mmio_state(std::span<const uint8_t> b, const std::string& what) {
    Reader r = device_reader(b, what, kFmtVirtioMmio, "virtio-mmio");
    VirtioMmioSnapshot s;
    bool id = false, transport = false, device = false;
    // Queue fields repeat, so this section is read without read_fields' duplicate check.
    while (!r.done()) {
        const size_t at = r.pos();
        uint16_t tag = r.get<uint16_t>("field tag");
        uint32_t len = r.get<uint32_t>("field length");
        Field f{tag, r.take(len, "field " + std::to_string(tag) + " at offset " + std::to_string(at), "the blob")};
        if (tag != 3 && ((tag == 1 && id) || (tag == 2 && transport) || (tag == 4 && device)))
            r.fail("field " + std::to_string(tag) + " appears twice");
        switch (tag) {
        case 1: s.device_id = field_int<uint32_t>(r, f, "device_id"); id = true; break;
        case 2: {
            Reader t(f.data, what + ": transport");
            s.transport.status = t.get<uint32_t>("status");
            s.transport.interrupt_status = t.get<uint32_t>("interrupt_status");
            s.transport.device_features_sel = t.get<uint32_t>("device_features_sel");
            s.transport.driver_features_sel = t.get<uint32_t>("driver_features_sel");
            s.transport.driver_features = t.get<uint64_t>("driver_features");
            s.transport.queue_sel = t.get<uint32_t>("queue_sel");
            s.transport.config_generation = t.get<uint32_t>("config_generation");
            if (!t.done()) t.fail(std::to_string(t.left()) + " unexpected trailing bytes");
            transport = true;
            break;
        }
        case 3: {
            Reader t(f.data, what + ": queue " + std::to_string(s.transport.queues.size()));
            VirtqueueState q;
            q.size = t.get<uint16_t>("size");
            uint8_t ready = t.get<uint8_t>("ready");
            if (ready > 1) t.fail("ready: " + std::to_string(ready) + " is not a boolean");
            q.ready = ready == 1;
            q.desc_addr = t.get<uint64_t>("desc_addr");
            q.avail_addr = t.get<uint64_t>("avail_addr");
            q.used_addr = t.get<uint64_t>("used_addr");
            q.next_avail = t.get<uint16_t>("next_avail");
            q.next_used = t.get<uint16_t>("next_used");
            if (!t.done()) t.fail(std::to_string(t.left()) + " unexpected trailing bytes");
            if (q.size > Virtqueue::kMaxQueueSize) t.fail("queue size " + std::to_string(q.size) + " exceeds 32768");
            if (s.transport.queues.size() >= 64) t.fail("more than 64 queues");
            s.transport.queues.push_back(q);
            break;
        }
        case 4: s.device.assign(f.data.begin(), f.data.end()); device = true; break;
        default: unknown_field(r, tag);
        }
    }
    require(r, id, "device_id");
    require(r, transport, "transport");
    require(r, device, "device");
    return s;
}

}  // namespace kindling

#include "snapshot/vmstate.h"

#include <bit>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>

#include "base/error.h"
#include "base/io.h"
#include "base/tlv.h"
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
enum DeviceField : uint16_t { kDfId = 1, kDfState = 2 };

constexpr size_t kMaxXsave = 1 << 20;  // AMX makes it ~11 KiB today
constexpr size_t kMaxDeviceId = 256;

std::string hex32(uint32_t v) {
    char b[16];
    std::snprintf(b, sizeof b, "0x%08" PRIx32, v);
    return b;
}

// --- sections ------------------------------------------------------------------------

void write_vcpu(TlvWriter& w, const VcpuState& v) {
    w.integer<uint32_t>(kVfIndex, v.index);
    w.array(kVfCpuid, std::span(v.cpuid));
    w.raw(kVfMpState, v.mp_state);
    w.raw(kVfRegs, v.regs);
    w.raw(kVfSregs, v.sregs);
    if (!v.xsave.empty()) w.bytes(kVfXsave, v.xsave);
    if (v.fpu) w.raw(kVfFpu, *v.fpu);
    if (v.xcrs) w.raw(kVfXcrs, *v.xcrs);
    if (v.debugregs) w.raw(kVfDebugregs, *v.debugregs);
    if (v.lapic) w.raw(kVfLapic, *v.lapic);
    w.array(kVfMsrs, std::span(v.msrs));
    if (v.events) w.raw(kVfEvents, *v.events);
    w.integer<uint32_t>(kVfTscKhz, v.tsc_khz);
}

VcpuState read_vcpu(TlvReader& r) {
    TlvFields f(r);
    VcpuState v;
    v.index = f.integer<uint32_t>(kVfIndex, "index");
    v.cpuid = f.array<kvm_cpuid_entry2>(kVfCpuid, "cpuid");
    v.mp_state = f.raw<kvm_mp_state>(kVfMpState, "mp_state");
    v.regs = f.raw<kvm_regs>(kVfRegs, "regs");
    v.sregs = f.raw<kvm_sregs>(kVfSregs, "sregs");
    if (auto b = f.find(kVfXsave)) {
        if (b->size() < kXsaveLegacySize || b->size() > kMaxXsave || b->size() % 4 != 0)
            f.fail("xsave: " + std::to_string(b->size()) + " bytes is not a valid XSAVE area size");
        v.xsave.assign(b->begin(), b->end());
    }
    if (auto b = f.find(kVfFpu)) v.fpu = f.as_raw<kvm_fpu>(*b, "fpu");
    if (auto b = f.find(kVfXcrs)) {
        kvm_xcrs x = f.as_raw<kvm_xcrs>(*b, "xcrs");
        if (x.nr_xcrs > KVM_MAX_XCRS)
            f.fail("xcrs: nr_xcrs " + std::to_string(x.nr_xcrs) + " > " + std::to_string(KVM_MAX_XCRS));
        v.xcrs = x;
    }
    if (auto b = f.find(kVfDebugregs)) v.debugregs = f.as_raw<kvm_debugregs>(*b, "debugregs");
    if (auto b = f.find(kVfLapic)) v.lapic = f.as_raw<kvm_lapic_state>(*b, "lapic");
    v.msrs = f.array<kvm_msr_entry>(kVfMsrs, "msrs");
    if (auto b = f.find(kVfEvents)) v.events = f.as_raw<kvm_vcpu_events>(*b, "vcpu_events");
    if (auto b = f.find(kVfTscKhz)) v.tsc_khz = f.as_integer<uint32_t>(*b, "tsc_khz");
    f.finish();
    if (v.xsave.empty() && !v.fpu) f.fail("missing field xsave (or fpu)");
    return v;
}

void write_vm(TlvWriter& w, const VmKvmState& s) {
    w.raw(kVmClock, s.clock);
    if (s.pit) w.raw(kVmPit, *s.pit);
    if (s.pic_master) w.raw(kVmPicMaster, *s.pic_master);
    if (s.pic_slave) w.raw(kVmPicSlave, *s.pic_slave);
    if (s.ioapic) w.raw(kVmIoapic, *s.ioapic);
}

VmKvmState read_vm(TlvReader& r) {
    TlvFields f(r);
    VmKvmState s;
    auto chip = [&](uint16_t tag, const char* name, uint32_t id) -> std::optional<kvm_irqchip> {
        auto b = f.find(tag);
        if (!b) return std::nullopt;
        kvm_irqchip c = f.as_raw<kvm_irqchip>(*b, name);
        if (c.chip_id != id)
            f.fail(std::string(name) + ": chip id " + std::to_string(c.chip_id) + ", expected " + std::to_string(id));
        return c;
    };
    s.clock = f.raw<kvm_clock_data>(kVmClock, "clock");
    if (auto b = f.find(kVmPit)) s.pit = f.as_raw<kvm_pit_state2>(*b, "pit");
    s.pic_master = chip(kVmPicMaster, "pic_master", KVM_IRQCHIP_PIC_MASTER);
    s.pic_slave = chip(kVmPicSlave, "pic_slave", KVM_IRQCHIP_PIC_SLAVE);
    s.ioapic = chip(kVmIoapic, "ioapic", KVM_IRQCHIP_IOAPIC);
    f.finish();
    if (s.pic_master.has_value() != s.pic_slave.has_value() || s.pic_master.has_value() != s.ioapic.has_value())
        f.fail("irqchip state is incomplete (PIC master, PIC slave and IOAPIC go together)");
    return s;
}

// Sections: u32 id, u64 length (patched by end_section), body.
size_t begin_section(TlvWriter& w, uint32_t id) {
    w.put<uint32_t>(id);
    const size_t at = w.size();
    w.put<uint64_t>(0);
    return at;
}

void end_section(TlvWriter& w, size_t at) { w.patch<uint64_t>(at, w.size() - at - 8); }

}  // namespace

const char* machine_kind_name(MachineKind k) {
    switch (k) {
    case MachineKind::kNano: return "nano";
    case MachineKind::kLinux: return "linux";
    }
    return "?";
}

const DeviceSection* MachineState::device(std::string_view id) const {
    for (const auto& d : devices)
        if (d.id == id) return &d;
    return nullptr;
}

std::vector<uint8_t> encode_vmstate(const MachineState& s) {
    TlvWriter w;
    w.put_bytes(std::span(reinterpret_cast<const uint8_t*>(kVmstateMagic), sizeof kVmstateMagic));
    w.put<uint32_t>(kVmstateVersion);
    w.put<uint64_t>(0);  // payload length, patched below
    w.put<uint32_t>(0);  // CRC32C, patched below

    size_t sec = begin_section(w, kSecMachine);
    w.integer<uint8_t>(kMfKind, static_cast<uint8_t>(s.kind));
    w.integer<uint64_t>(kMfMemSize, s.mem_size);
    w.integer<uint32_t>(kMfVcpuCount, static_cast<uint32_t>(s.vcpus.size()));
    end_section(w, sec);
    for (const auto& v : s.vcpus) {
        sec = begin_section(w, kSecVcpu);
        write_vcpu(w, v);
        end_section(w, sec);
    }
    sec = begin_section(w, kSecVm);
    write_vm(w, s.vm);
    end_section(w, sec);
    for (const auto& d : s.devices) {
        sec = begin_section(w, kSecDevice);
        w.string(kDfId, d.id);
        w.bytes(kDfState, d.state);
        end_section(w, sec);
    }

    const size_t payload = w.size() - kVmstateHeaderSize;
    w.patch<uint64_t>(12, payload);
    w.patch<uint32_t>(20, crc32c(0, w.data().data() + kVmstateHeaderSize, payload));
    return w.take();
}

MachineState decode_vmstate(std::span<const uint8_t> bytes, const std::string& origin) {
    TlvReader hdr(bytes, origin);
    if (bytes.size() < kVmstateHeaderSize)
        hdr.fail("truncated: " + std::to_string(bytes.size()) + " bytes, the header alone is " +
                 std::to_string(kVmstateHeaderSize));
    if (std::memcmp(bytes.data(), kVmstateMagic, sizeof kVmstateMagic) != 0)
        hdr.fail("not a kindling vmstate file (bad magic)");
    hdr.take(sizeof kVmstateMagic, "magic", "the file");
    const uint32_t version = hdr.get<uint32_t>("version");
    if (version < kVmstateVersion)
        hdr.fail("format version " + std::to_string(version) + ", this kindling reads " +
                 std::to_string(kVmstateVersion) + ": recreate the snapshot");
    if (version > kVmstateVersion)
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
    TlvReader r(payload, origin);
    bool machine = false, vm = false;
    uint32_t vcpu_count = 0;
    std::set<std::string> ids;
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
            TlvReader br(body, origin + ": " + where);
            if (machine) br.fail("more than one machine section");
            TlvFields f(br);
            const uint8_t k = f.integer<uint8_t>(kMfKind, "kind");
            if (k != static_cast<uint8_t>(MachineKind::kNano) && k != static_cast<uint8_t>(MachineKind::kLinux))
                f.fail("unknown machine kind " + std::to_string(k));
            s.kind = static_cast<MachineKind>(k);
            s.mem_size = f.integer<uint64_t>(kMfMemSize, "mem_size");
            vcpu_count = f.integer<uint32_t>(kMfVcpuCount, "vcpu_count");
            f.finish();
            if (s.mem_size == 0 || s.mem_size % 4096 != 0)
                f.fail("memory size " + std::to_string(s.mem_size) + " is not a non-zero multiple of 4096");
            if (vcpu_count == 0 || vcpu_count > kVmstateMaxVcpus)
                f.fail("vCPU count " + std::to_string(vcpu_count) + " is out of range (1.." +
                       std::to_string(kVmstateMaxVcpus) + ")");
            machine = true;
            break;
        }
        case kSecVcpu: {
            TlvReader br(body, origin + ": vCPU " + std::to_string(s.vcpus.size()) + " (" + where + ")");
            if (s.vcpus.size() == vcpu_count) br.fail("more vCPU sections than the machine's " + std::to_string(vcpu_count));
            s.vcpus.push_back(read_vcpu(br));
            if (s.vcpus.back().index != s.vcpus.size() - 1)
                br.fail("vCPU index " + std::to_string(s.vcpus.back().index) + " out of order");
            break;
        }
        case kSecVm: {
            TlvReader br(body, origin + ": " + where);
            if (vm) br.fail("more than one vm section");
            s.vm = read_vm(br);
            vm = true;
            break;
        }
        case kSecDevice: {
            TlvReader br(body, origin + ": " + where);
            TlvFields f(br);
            DeviceSection d;
            d.id = f.string(kDfId, "device id", kMaxDeviceId);
            if (d.id.empty()) f.fail("empty device id");
            auto state = f.bytes(kDfState, "state");
            d.state.assign(state.begin(), state.end());
            f.finish();
            if (!ids.insert(d.id).second) f.fail("device " + d.id + " appears twice");
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

}  // namespace kindling

// The vmstate codec: round trips and every way a file can be bad.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "hash/crc32c.h"
#include "snapshot/vmstate.h"

using namespace kindling;

namespace {

template <class T>
void fill_pattern(T& v, uint8_t seed) {
    auto* p = reinterpret_cast<uint8_t*>(&v);
    for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(seed + i * 7);
}

template <class T>
bool same_bytes(const T& a, const T& b) {
    return std::memcmp(&a, &b, sizeof(T)) == 0;
}

VcpuState sample_vcpu(uint32_t index, bool full) {
    VcpuState v;
    v.index = index;
    v.cpuid.resize(3);
    for (size_t i = 0; i < v.cpuid.size(); ++i) fill_pattern(v.cpuid[i], static_cast<uint8_t>(index * 10 + i));
    v.mp_state.mp_state = KVM_MP_STATE_RUNNABLE;
    fill_pattern(v.regs, static_cast<uint8_t>(1 + index));
    fill_pattern(v.sregs, static_cast<uint8_t>(2 + index));
    if (full) {
        v.xsave.resize(4096 + 64 * index);
        for (size_t i = 0; i < v.xsave.size(); ++i) v.xsave[i] = static_cast<uint8_t>(i * 13 + index);
        kvm_xcrs x{};
        x.nr_xcrs = 1;
        x.xcrs[0].value = 7;
        v.xcrs = x;
        kvm_debugregs d{};
        fill_pattern(d, 9);
        v.debugregs = d;
        kvm_lapic_state l{};
        fill_pattern(l, 11);
        v.lapic = l;
        kvm_vcpu_events e{};
        fill_pattern(e, 12);
        v.events = e;
    } else {
        kvm_fpu f{};
        fill_pattern(f, 5);
        v.fpu = f;
    }
    for (uint32_t i = 0; i < 5; ++i) {
        kvm_msr_entry m{};
        m.index = 0x10 + i;
        m.data = 0x1000000000ull * i + index;
        v.msrs.push_back(m);
    }
    v.tsc_khz = 2100000;
    return v;
}

MachineState sample_state(bool linux) {
    MachineState s;
    s.kind = linux ? MachineKind::kLinux : MachineKind::kNano;
    s.mem_size = 128ull << 20;
    s.vcpus.push_back(sample_vcpu(0, true));
    if (linux) s.vcpus.push_back(sample_vcpu(1, false));
    fill_pattern(s.vm.clock, 3);
    if (linux) {
        kvm_pit_state2 pit{};
        fill_pattern(pit, 4);
        s.vm.pit = pit;
        kvm_irqchip c{};
        fill_pattern(c, 6);
        c.chip_id = KVM_IRQCHIP_PIC_MASTER;
        s.vm.pic_master = c;
        c.chip_id = KVM_IRQCHIP_PIC_SLAVE;
        s.vm.pic_slave = c;
        c.chip_id = KVM_IRQCHIP_IOAPIC;
        s.vm.ioapic = c;
    }
    // Device state is the devices' business: the codec carries it untouched.
    s.devices.push_back({"serial", {1, 0, 1, 0, 0, 0, 0x0c}});
    s.devices.push_back({"empty", {}});
    return s;
}

void check_vcpu_equal(const VcpuState& a, const VcpuState& b) {
    CHECK(a.index == b.index);
    REQUIRE(a.cpuid.size() == b.cpuid.size());
    CHECK(std::memcmp(a.cpuid.data(), b.cpuid.data(), a.cpuid.size() * sizeof(kvm_cpuid_entry2)) == 0);
    CHECK(same_bytes(a.mp_state, b.mp_state));
    CHECK(same_bytes(a.regs, b.regs));
    CHECK(same_bytes(a.sregs, b.sregs));
    CHECK(a.xsave == b.xsave);
    CHECK(a.fpu.has_value() == b.fpu.has_value());
    if (a.fpu && b.fpu) CHECK(same_bytes(*a.fpu, *b.fpu));
    CHECK(a.xcrs.has_value() == b.xcrs.has_value());
    if (a.xcrs && b.xcrs) CHECK(same_bytes(*a.xcrs, *b.xcrs));
    CHECK(a.debugregs.has_value() == b.debugregs.has_value());
    CHECK(a.lapic.has_value() == b.lapic.has_value());
    if (a.lapic && b.lapic) CHECK(same_bytes(*a.lapic, *b.lapic));
    CHECK(a.events.has_value() == b.events.has_value());
    if (a.events && b.events) CHECK(same_bytes(*a.events, *b.events));
    REQUIRE(a.msrs.size() == b.msrs.size());
    CHECK(std::memcmp(a.msrs.data(), b.msrs.data(), a.msrs.size() * sizeof(kvm_msr_entry)) == 0);
    CHECK(a.tsc_khz == b.tsc_khz);
}

void put_le(std::vector<uint8_t>& b, size_t at, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

// Rewrites the header's length and CRC so a deliberately bad payload gets past them.
std::vector<uint8_t> reseal(std::vector<uint8_t> b) {
    put_le(b, 12, b.size() - kVmstateHeaderSize, 8);
    put_le(b, 20, crc32c(0, b.data() + kVmstateHeaderSize, b.size() - kVmstateHeaderSize), 4);
    return b;
}

// A vmstate file from hand-built sections: {id, body}.
std::vector<uint8_t> build_file(const std::vector<std::pair<uint32_t, std::vector<uint8_t>>>& sections) {
    std::vector<uint8_t> b(kVmstateHeaderSize, 0);
    std::memcpy(b.data(), kVmstateMagic, 8);
    put_le(b, 8, kVmstateVersion, 4);
    for (const auto& [id, body] : sections) {
        size_t at = b.size();
        b.resize(at + 12);
        put_le(b, at, id, 4);
        put_le(b, at + 4, body.size(), 8);
        b.insert(b.end(), body.begin(), body.end());
    }
    return reseal(b);
}

void add_field(std::vector<uint8_t>& body, uint16_t tag, const std::vector<uint8_t>& data) {
    size_t at = body.size();
    body.resize(at + 6);
    put_le(body, at, tag, 2);
    put_le(body, at + 2, data.size(), 4);
    body.insert(body.end(), data.begin(), data.end());
}

std::vector<uint8_t> le(uint64_t v, int n) {
    std::vector<uint8_t> b(n);
    put_le(b, 0, v, n);
    return b;
}

std::vector<uint8_t> machine_body(uint32_t vcpus = 1) {
    std::vector<uint8_t> m;
    add_field(m, 1, le(1, 1));
    add_field(m, 2, le(1 << 20, 8));
    add_field(m, 3, le(vcpus, 4));
    return m;
}

std::string decode_error(const std::vector<uint8_t>& b) {
    try {
        decode_vmstate(b, "/x/vmstate");
    } catch (const DataError& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("vmstate: round trip, nano and linux") {
    for (bool linux : {false, true}) {
        CAPTURE(linux);
        MachineState in = sample_state(linux);
        std::vector<uint8_t> b = encode_vmstate(in);
        CHECK(std::memcmp(b.data(), "KNVMSTAT", 8) == 0);
        MachineState out = decode_vmstate(b, "/x/vmstate");
        CHECK(out.kind == in.kind);
        CHECK(out.mem_size == in.mem_size);
        REQUIRE(out.vcpus.size() == in.vcpus.size());
        for (size_t i = 0; i < in.vcpus.size(); ++i) check_vcpu_equal(in.vcpus[i], out.vcpus[i]);
        CHECK(same_bytes(out.vm.clock, in.vm.clock));
        CHECK(out.vm.has_irqchip() == linux);
        CHECK(out.vm.pit.has_value() == linux);
        if (linux) {
            CHECK(same_bytes(*out.vm.pit, *in.vm.pit));
            CHECK(same_bytes(*out.vm.ioapic, *in.vm.ioapic));
            CHECK(same_bytes(*out.vm.pic_slave, *in.vm.pic_slave));
        }
        REQUIRE(out.devices.size() == 2);
        REQUIRE(out.device("serial"));
        CHECK(out.device("serial")->state == in.devices[0].state);
        CHECK(out.device("empty")->state.empty());
        CHECK(out.device("nope") == nullptr);
        CHECK(encode_vmstate(out) == b);  // canonical
    }
}

TEST_CASE("vmstate: bad header, length and CRC") {
    std::vector<uint8_t> good = encode_vmstate(sample_state(true));

    for (size_t n : {0, 10, 23}) {
        CAPTURE(n);
        CHECK(decode_error(std::vector<uint8_t>(good.begin(), good.begin() + n)) ==
              "/x/vmstate: truncated: " + std::to_string(n) + " bytes, the header alone is 24");
    }
    auto cut = std::vector<uint8_t>(good.begin(), good.end() - 1);
    CHECK(decode_error(cut) == "/x/vmstate: truncated: the header says " + std::to_string(good.size() - 24) +
                                   " payload bytes, the file has " + std::to_string(good.size() - 25));
    auto longer = good;
    longer.push_back(0);
    CHECK(decode_error(longer).find("/x/vmstate: trailing bytes: the header says") == 0);

    auto magic = good;
    magic[0] = 'X';
    CHECK(decode_error(magic) == "/x/vmstate: not a kindling vmstate file (bad magic)");

    // A snapshot from before the devices wrote their own state, and one from a
    // newer kindling.
    auto old = good;
    put_le(old, 8, 1, 4);
    CHECK(decode_error(old) == "/x/vmstate: format version 1, this kindling reads 2: recreate the snapshot");
    auto newer = good;
    put_le(newer, 8, 3, 4);
    CHECK(decode_error(newer) == "/x/vmstate: format version 3 is not supported (this kindling reads version 2)");

    auto flipped = good;
    flipped[good.size() / 2] ^= 0x40;
    const uint32_t stored = crc32c(0, good.data() + 24, good.size() - 24);
    const uint32_t computed = crc32c(0, flipped.data() + 24, flipped.size() - 24);
    char want[128];
    std::snprintf(want, sizeof want, "/x/vmstate: CRC32C mismatch (stored 0x%08x, computed 0x%08x)", stored, computed);
    CHECK(decode_error(flipped) == want);
}

TEST_CASE("vmstate: bad sections and fields (with a valid CRC)") {
    std::vector<uint8_t> vm;
    add_field(vm, 1, std::vector<uint8_t>(sizeof(kvm_clock_data), 0));

    // A well-formed minimal nano machine decodes.
    VcpuState v = sample_vcpu(0, false);
    std::vector<uint8_t> vcpu;
    {
        MachineState s;
        s.mem_size = 1 << 20;
        s.vcpus.push_back(v);
        std::vector<uint8_t> full = encode_vmstate(s);
        // Pull the vCPU body out of a real encoding: it follows the machine section.
        size_t at = 24;
        uint64_t mlen = 0;
        for (int i = 0; i < 8; ++i) mlen |= static_cast<uint64_t>(full[at + 4 + i]) << (8 * i);
        at += 12 + mlen;
        uint64_t vlen = 0;
        for (int i = 0; i < 8; ++i) vlen |= static_cast<uint64_t>(full[at + 4 + i]) << (8 * i);
        vcpu.assign(full.begin() + at + 12, full.begin() + at + 12 + vlen);
        CHECK(build_file({{1, machine_body()}, {2, vcpu}, {3, vm}}) == full);
    }
    CHECK(decode_error(build_file({{1, machine_body()}, {2, vcpu}, {3, vm}})) == "(no error)");

    // A section longer than what is left.
    auto over = build_file({{1, machine_body()}, {2, vcpu}, {3, vm}});
    const size_t vm_at = over.size() - vm.size() - 12;
    put_le(over, vm_at + 4, vm.size() + 1000, 8);
    CHECK(decode_error(reseal(over)) == "/x/vmstate: vm section at offset " + std::to_string(vm_at) +
                                            " overruns the file (length " + std::to_string(vm.size() + 1000) + ", " +
                                            std::to_string(vm.size()) + " bytes left)");
    // A field longer than its section.
    std::vector<uint8_t> bad_field = vm;
    put_le(bad_field, 2, 5000, 4);
    CHECK(decode_error(build_file({{1, machine_body()}, {2, vcpu}, {3, bad_field}})).find("field 1 at offset 0 overruns its section (length 5000") !=
          std::string::npos);
    // A truncated section header.
    auto trunc = build_file({{1, machine_body()}, {2, vcpu}, {3, vm}});
    trunc.resize(trunc.size() - vm.size() - 5);
    CHECK(decode_error(reseal(trunc)).find("truncated section length") != std::string::npos);

    CHECK(decode_error(build_file({{1, machine_body()}, {2, vcpu}, {3, vm}, {99, {}}})).find(
              "unknown section id 99") != std::string::npos);
    CHECK(decode_error(build_file({{1, machine_body()}, {2, vcpu}, {3, vm}, {99, {}}})).find("newer kindling") !=
          std::string::npos);
    CHECK(decode_error(build_file({{2, vcpu}, {1, machine_body()}, {3, vm}})).find("the machine section must come first") !=
          std::string::npos);
    CHECK(decode_error(build_file({{1, machine_body()}, {3, vm}})) ==
          "/x/vmstate: the machine has 1 vCPUs but 0 vCPU sections are present");
    CHECK(decode_error(build_file({{1, machine_body()}, {2, vcpu}, {2, vcpu}, {3, vm}})).find("more vCPU sections") !=
          std::string::npos);
    CHECK(decode_error(build_file({{1, machine_body()}, {2, vcpu}})) == "/x/vmstate: no vm section");
    CHECK(decode_error(build_file({{1, machine_body(0)}, {3, vm}})).find("vCPU count 0 is out of range") != std::string::npos);

    auto extra = vcpu;
    add_field(extra, 77, {1, 2, 3});
    CHECK(decode_error(build_file({{1, machine_body()}, {2, extra}, {3, vm}})).find("unknown field 77 (written by a newer kindling?)") !=
          std::string::npos);
    auto dup = vcpu;
    add_field(dup, 13, le(1, 4));  // tsc_khz again
    CHECK(decode_error(build_file({{1, machine_body()}, {2, dup}, {3, vm}})).find("field 13 appears twice") != std::string::npos);

    // regs with the wrong size: the message names the field and both sizes.
    std::vector<uint8_t> short_regs;
    add_field(short_regs, 1, le(0, 4));
    add_field(short_regs, 2, {});
    add_field(short_regs, 3, std::vector<uint8_t>(sizeof(kvm_mp_state)));
    add_field(short_regs, 4, std::vector<uint8_t>(100));
    CHECK(decode_error(build_file({{1, machine_body()}, {2, short_regs}, {3, vm}})) ==
          "/x/vmstate: vCPU 0 (vcpu section at offset 67): regs: 100 bytes, expected " + std::to_string(sizeof(kvm_regs)));

    // A vCPU without required fields.
    std::vector<uint8_t> no_regs;
    add_field(no_regs, 1, le(0, 4));
    CHECK(decode_error(build_file({{1, machine_body()}, {2, no_regs}, {3, vm}})).find("missing field cpuid") !=
          std::string::npos);
}

TEST_CASE("vmstate: every truncation and every single-byte change is caught or harmless") {
    std::vector<uint8_t> good = encode_vmstate(sample_state(true));
    // Truncations with the header resealed: the section walk must notice.
    size_t errors = 0;
    for (size_t n = 24; n < good.size(); n += 7) {
        auto b = reseal(std::vector<uint8_t>(good.begin(), good.begin() + n));
        try {
            decode_vmstate(b, "/x/vmstate");
        } catch (const DataError&) {
            ++errors;
        }
    }
    CHECK(errors == (good.size() - 24 + 6) / 7);
    // Random corruption with a valid CRC: never crashes, never reads out of bounds
    // (run under -fsanitize=address to be sure); either an error or a decode.
    std::mt19937 rng(7);
    for (int i = 0; i < 3000; ++i) {
        auto b = good;
        b[24 + rng() % (b.size() - 24)] = static_cast<uint8_t>(rng());
        b = reseal(b);
        try {
            decode_vmstate(b, "/x/vmstate");
        } catch (const DataError&) {
        }
    }
}

TEST_CASE("vmstate: device sections") {
    std::vector<uint8_t> vm;
    add_field(vm, 1, std::vector<uint8_t>(sizeof(kvm_clock_data), 0));
    MachineState one;
    one.mem_size = 1 << 20;
    one.vcpus.push_back(sample_vcpu(0, false));
    std::vector<uint8_t> full = encode_vmstate(one);
    // The vCPU body follows the machine section.
    size_t at = 24;
    uint64_t mlen = 0, vlen = 0;
    for (int i = 0; i < 8; ++i) mlen |= static_cast<uint64_t>(full[at + 4 + i]) << (8 * i);
    at += 12 + mlen;
    for (int i = 0; i < 8; ++i) vlen |= static_cast<uint64_t>(full[at + 4 + i]) << (8 * i);
    std::vector<uint8_t> vcpu(full.begin() + at + 12, full.begin() + at + 12 + vlen);
    auto device = [](const std::string& id, const std::vector<uint8_t>& state) {
        std::vector<uint8_t> b;
        add_field(b, 1, std::vector<uint8_t>(id.begin(), id.end()));
        add_field(b, 2, state);
        return b;
    };
    auto file = [&](std::vector<std::vector<uint8_t>> devices) {
        std::vector<std::pair<uint32_t, std::vector<uint8_t>>> secs = {{1, machine_body()}, {2, vcpu}, {3, vm}};
        for (auto& d : devices) secs.push_back({4, d});
        return build_file(secs);
    };
    CHECK(decode_error(file({device("serial", {9}), device("i8042", {})})) == "(no error)");
    MachineState s = decode_vmstate(file({device("serial", {9}), device("i8042", {})}), "/x/vmstate");
    REQUIRE(s.devices.size() == 2);
    CHECK(s.devices[0].id == "serial");
    CHECK(s.devices[0].state == std::vector<uint8_t>{9});
    CHECK(s.devices[1].id == "i8042");

    CHECK(decode_error(file({device("serial", {}), device("serial", {})})).find("device serial appears twice") !=
          std::string::npos);
    CHECK(decode_error(file({device("", {})})).find("empty device id") != std::string::npos);
    CHECK(decode_error(file({device(std::string(300, 'x'), {})})).find("device id of 300 bytes, at most 256") !=
          std::string::npos);
    std::vector<uint8_t> no_state;
    add_field(no_state, 1, {'s'});
    CHECK(decode_error(file({no_state})).find("missing field state") != std::string::npos);
    std::vector<uint8_t> extra = device("serial", {});
    add_field(extra, 3, {});
    CHECK(decode_error(file({extra})).find("unknown field 3 (written by a newer kindling?)") != std::string::npos);
}

// The `vmstate` file of a snapshot: everything about a paused machine except its
// memory — the machine's shape, every vCPU's KVM state, the VM's KVM state, and each
// device's state as the device wrote it.
//
// Layout (all integers little-endian):
//   header   "KNVMSTAT" | u32 format version | u64 payload length | u32 CRC32C(payload)
//   payload  a sequence of sections:  u32 section id | u64 length | body
//   body     TLV fields (base/tlv.h):  u16 field tag  | u32 length | bytes
// Sections: machine (exactly one, first), vcpu (one per vCPU, in index order),
// vm (exactly one), device (any number: an id and the device's own fields, which
// this codec does not look into; see devices/persistent.h).  KVM structs are stored
// as their raw x86-64 ABI bytes and their length is checked against sizeof.  An
// unknown section or field is an error ("written by a newer kindling?"), never
// silently skipped: a restore that drops state it does not understand would not
// give back the same machine.
//
// Format versions: 1 kept each device's state in a codec of its own here; 2 has
// the devices write their own fields.  A file of another version is refused.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvm/vcpu_state.h"
#include "kvm/vm_state.h"

namespace kindling {

enum class MachineKind : uint8_t { kNano = 1, kLinux = 2 };
const char* machine_kind_name(MachineKind k);  // "nano", "linux"

// One device's saved state: its Persistent::persist_id() and the fields it wrote.
struct DeviceSection {
    std::string id;
    std::vector<uint8_t> state;
};

struct MachineState {
    MachineKind kind = MachineKind::kNano;
    uint64_t mem_size = 0;  // bytes of guest RAM
    std::vector<VcpuState> vcpus;
    VmKvmState vm;
    std::vector<DeviceSection> devices;  // ids unique

    // The section with that id, or nullptr.
    const DeviceSection* device(std::string_view id) const;
};

inline constexpr char kVmstateMagic[8] = {'K', 'N', 'V', 'M', 'S', 'T', 'A', 'T'};
inline constexpr uint32_t kVmstateVersion = 2;
inline constexpr size_t kVmstateHeaderSize = 24;
inline constexpr uint32_t kVmstateMaxVcpus = 256;

std::vector<uint8_t> encode_vmstate(const MachineState& s);

// Checks everything before it trusts anything: size, magic, version, payload length,
// CRC32C, then every section and field length against what is left.  Any problem is
// a DataError "ORIGIN: what is wrong" (ORIGIN is normally the file's path); an older
// format version is "ORIGIN: format version N, this kindling reads M: recreate the
// snapshot".  Device state is checked by the devices themselves on restore.
MachineState decode_vmstate(std::span<const uint8_t> bytes, const std::string& origin);

// read_file_bytes + decode_vmstate.  SysError if the file cannot be read.
MachineState read_vmstate(const std::string& path);

}  // namespace kindling

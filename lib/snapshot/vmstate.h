// The `vmstate` file of a snapshot: everything about a paused machine except its
// memory — the machine's shape, every vCPU's KVM state, the VM's KVM state, and one
// opaque blob per device.
//
// Layout (all integers little-endian):
//   header   "KNVMSTAT" | u32 format version | u64 payload length | u32 CRC32C(payload)
//   payload  a sequence of sections:  u32 section id | u64 length | body
//   body     a sequence of fields:    u16 field tag  | u32 length | bytes
// Sections: machine (exactly one, first), vcpu (one per vCPU, in index order),
// vm (exactly one), device (any number).  KVM structs are stored as their raw x86-64
// ABI bytes and their length is checked against sizeof.  An unknown section or field
// is an error ("written by a newer kindling?"), never silently skipped: a restore
// that drops state it does not understand would not give back the same machine.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "devices/i8042.h"
#include "devices/serial.h"
#include "devices/virtio/virtio_mmio.h"
#include "devices/virtio/virtqueue.h"
#include "kvm/vcpu_state.h"
#include "kvm/vm_state.h"

namespace kindling {

enum class MachineKind : uint8_t { kNano = 1, kLinux = 2 };
const char* machine_kind_name(MachineKind k);  // "nano", "linux"

// One device's saved state, produced by the device's encoder below.  `name` is the
// Machine's choice and must be unique ("serial", "i8042", "virtio-mmio@0xd0000000").
struct DeviceBlob {
    std::string name;
    std::vector<uint8_t> data;
};

struct MachineState {
    MachineKind kind = MachineKind::kNano;
    uint64_t mem_size = 0;  // bytes of guest RAM
    std::vector<VcpuState> vcpus;
    VmKvmState vm;
    std::vector<DeviceBlob> devices;

    // The blob with that name, or nullptr.
    const DeviceBlob* device(std::string_view name) const;
};

inline constexpr char kVmstateMagic[8] = {'K', 'N', 'V', 'M', 'S', 'T', 'A', 'T'};
inline constexpr uint32_t kVmstateVersion = 1;
inline constexpr size_t kVmstateHeaderSize = 24;
inline constexpr uint32_t kVmstateMaxVcpus = 256;

std::vector<uint8_t> encode_vmstate(const MachineState& s);

// Checks everything before it trusts anything: size, magic, version, payload length,
// CRC32C, then every section and field length against what is left.  Any problem is
// a DataError "ORIGIN: what is wrong" (ORIGIN is normally the file's path).
MachineState decode_vmstate(std::span<const uint8_t> bytes, const std::string& origin);

// read_file_bytes + decode_vmstate.  SysError if the file cannot be read.
MachineState read_vmstate(const std::string& path);

// --- Device state blobs -----------------------------------------------------------
// Encoders for the devices' save() structs, in the same tagged form as the vmstate
// itself; each decoder throws DataError "WHAT: ..." naming `what` (e.g.
// "/x/vmstate: device serial").

std::vector<uint8_t> encode_serial_state(const SerialState& s);
SerialState decode_serial_state(std::span<const uint8_t> b, const std::string& what);

std::vector<uint8_t> encode_i8042_state(const I8042State& s);
I8042State decode_i8042_state(std::span<const uint8_t> b, const std::string& what);

// A virtio-mmio device: the transport's registers with each queue's configuration
// and position (VirtioMmio::save()), and the device's own state as the device's
// opaque blob (VirtioDevice::save_state_blob(); empty for devices that keep none).
struct VirtioMmioSnapshot {
    uint32_t device_id = 0;  // virtio 1.2 §5: for the Machine to check on restore
    VirtioMmioState transport;
    std::vector<uint8_t> device;
};

std::vector<uint8_t> encode_virtio_mmio_state(const VirtioMmioSnapshot& s);
VirtioMmioSnapshot decode_virtio_mmio_state(std::span<const uint8_t> b, const std::string& what);

}  // namespace kindling

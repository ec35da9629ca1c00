// What a user asks of fc-launch, from flags or from the Firecracker-style API.
// Field names follow Firecracker's API bodies (docs: firecracker/src/api_server/swagger).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "devices/device_config.h"

namespace kindling {

enum class GuestKind { kAuto, kLinux, kNano };

struct BootSource {
    std::string kernel_image_path;  // vmlinux, bzImage or a nano ELF
    std::string initrd_path;        // linux only; empty = none
    std::string boot_args;          // kernel command line, or the nano command line
    GuestKind kind = GuestKind::kAuto;  // auto: nano if the ELF has the kindling note
};

struct MachineConfig {
    uint32_t vcpu_count = 1;
    uint64_t mem_size_mib = 128;
    bool smt = false;
    bool track_dirty_pages = false;
};

struct VmConfig {
    BootSource boot;
    MachineConfig machine;
    std::vector<DriveConfig> drives;
    std::optional<VsockConfig> vsock;
};

enum class VmState { kNotStarted, kRunning, kPaused, kStopped };

inline const char* vm_state_name(VmState s) {
    switch (s) {
    case VmState::kNotStarted: return "Not started";
    case VmState::kRunning: return "Running";
    case VmState::kPaused: return "Paused";
    case VmState::kStopped: return "Stopped";
    }
    return "?";
}

enum class MemoryBackendKind {
    kUffd,          // private anonymous memory filled from the snapshot (copy-on-read)
    kUffdExternal,  // the uffd is handed to an external handler (Firecracker's protocol)
    kFile,  // MAP_PRIVATE of the mem file: shares page cache (needs allow_shared_pages)
};

struct SnapshotRequest {
    std::string dir;
    bool diff = false;
    std::string parent_dir;  // diff: the parent layer (default: the layer restored from)
    std::vector<std::string> tags;
};

struct RestoreRequest {
    std::string dir;  // top layer of the snapshot
    MemoryBackendKind backend = MemoryBackendKind::kUffd;
    bool allow_shared_pages = false;
    bool resume = true;
    bool track_dirty_pages = false;             // needed to take a diff snapshot later
    std::optional<std::string> vsock_uds_path;  // host side of vsock for this clone
    std::string uffd_socket;                    // kUffdExternal: the handler's Unix socket
    std::string record_access;                  // write the page access order here
    std::string prefetch;                       // install this access log's pages first
};

// What the API server drives.  Each call either succeeds or throws a kindling::Error
// (ConfigError/UsageError for a request that is wrong, which the API answers with
// 400 and {"fault_message": what()}).  Called from the API thread.
class VmmControl {
public:
    virtual ~VmmControl() = default;
    virtual void set_boot_source(const BootSource& b) = 0;
    virtual void set_machine_config(const MachineConfig& m) = 0;
    virtual MachineConfig machine_config() const = 0;
    virtual void set_drive(const DriveConfig& d) = 0;
    virtual void set_vsock(const VsockConfig& v) = 0;
    virtual void start() = 0;               // InstanceStart
    virtual void send_ctrl_alt_del() = 0;   // SendCtrlAltDel
    virtual void pause() = 0;               // PATCH /vm {"state":"Paused"}
    virtual void resume() = 0;              // PATCH /vm {"state":"Resumed"}
    virtual VmState state() const = 0;
    // PUT /snapshot/create: writes a layer of the paused VM.
    virtual void create_snapshot(const SnapshotRequest& req) = 0;
    // PUT /snapshot/load: builds the VM from a snapshot instead of booting it.
    virtual void restore(const RestoreRequest& req) = 0;
};

}  // namespace kindling

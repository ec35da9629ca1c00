// What a user configures for each pluggable device, and what a snapshot layer records
// about it (snapshot.json "devices").  One type for both: lib/vmm takes it from flags
// and the API, lib/snapshot stores and restores it.  Field names follow Firecracker's
// API bodies (PUT /drives/{id}, PUT /vsock).
#pragma once

#include <cstdint>
#include <string>

namespace kindling {

// A virtio-blk device backed by a host file.
struct DriveConfig {
    std::string drive_id;
    std::string path_on_host;
    bool is_root_device = false;
    bool is_read_only = false;
};

// The virtio-vsock device: the guest's context id and the host-side Unix socket.
struct VsockConfig {
    uint32_t guest_cid = 3;
    std::string uds_path;
};

}  // namespace kindling

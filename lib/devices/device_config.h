// What a user configures for each pluggable device, and what a snapshot layer records
// about it (snapshot.json "devices").  One type for both: lib/vmm takes it from flags
// and the API, lib/snapshot stores and restores it.  Field names follow Firecracker's
// API bodies (PUT /drives/{id}, PUT /vsock).
#pragma once

#include <cstdint>
#include <string>

namespace kindling {

// A virtio-blk device backed by a host file.  In a snapshot layer's record a relative
// path_on_host names a file in the layer's directory (snap-make --rootfs's overlay).
struct DriveConfig {
    std::string drive_id;
    std::string path_on_host;
    bool is_root_device = false;
    bool is_read_only = false;
    // kindling's own: the guest may write, but its writes stay private to this VM
    // (VirtioBlk copy-on-write; the file is never written), so every clone restored
    // from one snapshot sees the file as the snapshot left it.
    bool copy_on_write = false;
};

// The virtio-vsock device: the guest's context id and the host-side Unix socket.
struct VsockConfig {
    uint32_t guest_cid = 3;
    std::string uds_path;
};

}  // namespace kindling

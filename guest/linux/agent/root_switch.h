// The agent's switch from its initramfs to the function's root (kindling-linux(7) "ROOT
// IMAGE AND OVERLAY"): a read-only image (squashfs, or ext4 mounted read-only) under a
// read-write ext4 overlay device, joined by overlayfs, becomes / for the runtime.
#pragma once

#include <string>

namespace kindling::agent {

struct RootConfig {
    std::string image;    // kindling.root=: block device of the read-only image; empty: keep the initramfs
    std::string overlay;  // kindling.overlay=: block device of the ext4 overlay; empty: a tmpfs upper layer
};

// Mounts `c.image` read-only on /run/kindling/image, `c.overlay` on /run/kindling/overlay
// (upper/ and work/ made there), an overlayfs of the two, moves /proc /sys /dev /tmp
// /run into it and makes it the root (MS_MOVE onto /, chroot), as switch_root does.
// PID 1 only, after /proc /sys /dev /tmp /run are mounted.  Throws Error naming the
// device and the cause (exit code 66 when a device does not appear, 65 when it holds no
// file system the kernel can mount); nothing is switched then.
void switch_root(const RootConfig& c);

}  // namespace kindling::agent

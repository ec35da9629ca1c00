// The snapfs mounts behind sandboxes restored from a layer in a store (issue 7).  A
// manifest is mounted once, read-only, under RUN_DIR/mnt/ID and shared by every
// sandbox of that layer: snapfs serves each reader its own copy, and each VM copies
// its pages into its own memory.  The mount point is the sandbox's snapshot dir.
#pragma once

#include <map>
#include <mutex>
#include <string>

namespace kindling {

class SnapfsMounts {
public:
    // `snapfs`: the binary (a path, or a name looked up in $PATH).
    SnapfsMounts(std::string snapfs, std::string run_dir)
        : snapfs_(std::move(snapfs)), run_dir_(std::move(run_dir)) {}
    ~SnapfsMounts() { unmount_all(); }
    SnapfsMounts(const SnapfsMounts&) = delete;
    SnapfsMounts& operator=(const SnapfsMounts&) = delete;

    // The snapshot dir of layer `manifest` in `store`.  The first call mounts it and
    // returns once snapfs has (snapfs detaches; its stderr goes to RUN_DIR/mnt/ID.log);
    // a failure is an Error (exit 69) carrying snapfs's message.  Thread-safe.
    std::string mount(const std::string& manifest, const std::string& store);
    // Detaches every mount made (umount2 MNT_DETACH; a failure is logged) and forgets
    // them.  Idempotent.
    void unmount_all();

private:
    std::string snapfs_;
    std::string run_dir_;
    std::mutex mu_;
    std::map<std::string, std::string> mounts_;  // manifest id -> mount point
};

}  // namespace kindling

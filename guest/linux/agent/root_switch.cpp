#include "root_switch.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "base/log.h"

namespace kindling::agent {

namespace {

constexpr const char* kImageDir = "/run/kindling/image";
constexpr const char* kOverlayDir = "/run/kindling/overlay";
constexpr const char* kNewRoot = "/newroot";

// virtio-blk devices are probed before PID 1 starts, but devtmpfs creates their nodes
// asynchronously: wait a little for `dev` before calling it missing.
void wait_for_block_device(const std::string& what, const std::string& dev) {
    struct stat st {};
    for (int i = 0; i < 100; ++i) {
        if (::stat(dev.c_str(), &st) == 0) {
            if (!S_ISBLK(st.st_mode)) throw Error(what + " " + dev + ": not a block device", kExitNoInput);
            return;
        }
        ::usleep(20000);
    }
    throw Error(what + " " + dev + ": no such device (is the drive attached? fc-launch --drive)", kExitNoInput);
}

void make_dir(const std::string& path) {
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) throw_errno("mkdir " + path);
}

void must_mount(const char* src, const std::string& target, const char* type, unsigned long flags, const char* data) {
    if (::mount(src, target.c_str(), type, flags, data) != 0)
        throw_errno(std::string("mount ") + type + " " + src + " on " + target);
}

}  // namespace

void switch_root(const RootConfig& c) {
    make_dir("/run/kindling");
    make_dir(kImageDir);
    make_dir(kOverlayDir);
    make_dir(kNewRoot);

    wait_for_block_device("root image", c.image);
    // squashfs, or an ext4 image mounted read-only (noload: no journal replay).
    if (::mount(c.image.c_str(), kImageDir, "squashfs", MS_RDONLY, nullptr) != 0) {
        int squash_err = errno;
        if (::mount(c.image.c_str(), kImageDir, "ext4", MS_RDONLY, "noload") != 0)
            throw Error("root image " + c.image + ": cannot mount it read-only as squashfs (" + std::strerror(squash_err) +
                            ") or ext4 (" + std::strerror(errno) + ")",
                        kExitDataErr);
    }

    if (c.overlay.empty()) {
        must_mount("tmpfs", kOverlayDir, "tmpfs", MS_NOSUID, "mode=0755");
    } else {
        wait_for_block_device("overlay", c.overlay);
        if (::mount(c.overlay.c_str(), kOverlayDir, "ext4", MS_NOATIME, nullptr) != 0)
            throw Error("overlay " + c.overlay + ": cannot mount it as ext4 (" + std::strerror(errno) +
                            "); format it with mkfs.ext4 (snap-make --rootfs does)",
                        kExitDataErr);
    }
    const std::string upper = std::string(kOverlayDir) + "/upper", work = std::string(kOverlayDir) + "/work";
    make_dir(upper);
    make_dir(work);
    const std::string opts = std::string("lowerdir=") + kImageDir + ",upperdir=" + upper + ",workdir=" + work;
    must_mount("overlay", kNewRoot, "overlay", 0, opts.c_str());

    // The API file systems move along (with what is mounted below them: /dev/shm, and
    // the image and overlay under /run/kindling, which stay visible to the runtime).
    for (const char* d : {"/proc", "/sys", "/dev", "/tmp", "/run"}) {
        const std::string target = std::string(kNewRoot) + d;
        make_dir(target);
        must_mount(d, target, nullptr, MS_MOVE, nullptr);
    }
    // switch_root(8): the new root replaces the initramfs's rootfs, which cannot be
    // unmounted (pivot_root does not work on it).
    if (::chdir(kNewRoot) != 0) throw_errno(std::string("chdir ") + kNewRoot);
    must_mount(".", "/", nullptr, MS_MOVE, nullptr);
    if (::chroot(".") != 0) throw_errno("chroot");
    if (::chdir("/") != 0) throw_errno("chdir /");
    log_verbose("root: %s (read-only) under %s", c.image.c_str(), c.overlay.empty() ? "tmpfs" : c.overlay.c_str());
}

}  // namespace kindling::agent

// snap-make: boot a nano or Linux guest (or restore a base layer), wait until it reports
// the requested initialisation stage, pause it there and write a snapshot layer.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/io.h"
#include "base/log.h"
#include "base/tool.h"
#include "cli/cli.h"
#include "kindling/nano_abi.h"
#include "seccomp/thread_filter.h"
#include "snapshot/snapshot_dir.h"
#include "vmm/machine.h"

using namespace kindling;

namespace {

struct Flags {
    CommonFlags common;
    std::string nano;
    std::string kernel;  // a Linux guest (vmlinux or bzImage)
    std::string initrd;
    std::string out;
    std::string base;
    uint32_t stage = KN_READY_SERVING;
    uint64_t mem_mib = 128;
    std::string boot_args;
    std::vector<std::string> tags;
    double timeout_s = 60;
    std::string console;
    std::string rootfs;  // a read-only root image (scripts/mkroot.sh) with an overlay in the layer
    uint64_t overlay_mib = 64;
    bool no_seccomp = false;
};

constexpr const char* kOverlayFile = "overlay.ext4";
constexpr const char* kRootImageFile = "rootfs.img";

// OUT.snap-make.XXXXXX: the overlay and the layer until both are complete; removed
// unless release()d.
class WorkDir {
public:
    explicit WorkDir(const std::string& out) {
        std::string t = out + ".snap-make.XXXXXX";
        if (!::mkdtemp(t.data())) throw_errno("create " + t);
        path_ = t;
    }
    ~WorkDir() {
        std::error_code ec;
        if (!path_.empty()) std::filesystem::remove_all(path_, ec);
    }
    WorkDir(const WorkDir&) = delete;
    WorkDir& operator=(const WorkDir&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// A sparse file of `mib` MiB formatted ext4 by mkfs.ext4 (e2fsprogs), inode tables and
// journal initialised now, so the guest's kernel does not write them in the
// background (in every clone).
void make_overlay(const std::string& path, uint64_t mib) {
    {
        UniqueFd fd = open_file(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (::ftruncate(fd.get(), static_cast<off_t>(mib << 20)) < 0) throw_errno("truncate " + path);
    }
    const char* argv[] = {"mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard",
                          "-L", "kindling-overlay", path.c_str(), nullptr};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    int err = ::posix_spawnp(&pid, "mkfs.ext4", &fa, nullptr, const_cast<char* const*>(argv), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (err == ENOENT) throw Error("mkfs.ext4 not found: the overlay needs e2fsprogs (scripts/install-deps.sh)", kExitUnavailable);
    if (err) throw SysError("run mkfs.ext4", err);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) throw_errno("wait for mkfs.ext4");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) throw Error("mkfs.ext4 " + path + " failed");
}

// The finished layer in `work`/layer: the root image and the overlay move in,
// snapshot.json names them by paths relative to the layer and marks the overlay
// copy-on-write (every clone restored from the layer writes privately), then the
// layer becomes `out`.
void adopt_drives(const WorkDir& work, const std::string& out) {
    const std::string layer = work.path() + "/layer";
    const std::string overlay = work.path() + "/" + kOverlayFile;
    {
        UniqueFd fd = open_file(overlay, O_RDONLY);
        if (::fsync(fd.get()) < 0) throw_errno("fsync " + overlay);
    }
    LayerInfo info = read_layer_info(layer);
    size_t found = 0;
    for (auto& d : info.config.drives) {
        std::string name = std::filesystem::path(d.path_on_host).lexically_normal().filename().string();
        if (std::filesystem::path(d.path_on_host).lexically_normal() != std::filesystem::path(work.path()) / name) continue;
        if (name != kOverlayFile && name != kRootImageFile) continue;
        d.path_on_host = name;
        d.copy_on_write = name == kOverlayFile;
        ++found;
    }
    if (found != 2) throw Error("snapshot.json in " + layer + " does not name the root image and the overlay in " + work.path());
    for (const char* name : {kRootImageFile, kOverlayFile}) {
        std::string from = work.path() + "/" + name;
        if (::rename(from.c_str(), (layer + "/" + name).c_str()) < 0) throw_errno("rename " + from);
    }
    write_file_atomic(layer + "/snapshot.json", encode_layer_json(info));
    fsync_dir(layer);
    if (::renameat2(AT_FDCWD, layer.c_str(), AT_FDCWD, out.c_str(), RENAME_NOREPLACE) < 0) throw_errno("rename " + layer + " to " + out);
    fsync_dir(std::filesystem::path(out).parent_path().empty() ? "." : std::filesystem::path(out).parent_path().string());
}

int run(Flags& f) {
    apply_common_flags(f.common);
    if (!f.nano.empty() + !f.kernel.empty() + !f.base.empty() != 1)
        throw UsageError("give one of --nano FILE or --kernel FILE (a full layer) or --base DIR (a diff layer over it)");
    if (!f.initrd.empty() && f.kernel.empty()) throw UsageError("--initrd goes with --kernel");
    if (!f.rootfs.empty() && f.kernel.empty()) throw UsageError("--rootfs goes with --kernel");
    if (f.rootfs.empty() && f.overlay_mib != 64) throw UsageError("--overlay-size goes with --rootfs");
    if (!f.base.empty() && (f.mem_mib != 128 || !f.boot_args.empty()))
        throw UsageError("--mem and --boot-args come from the base layer when --base is given");
    if (::access(f.out.c_str(), F_OK) == 0) throw SysError(f.out, EEXIST);
    signal(SIGPIPE, SIG_IGN);
    // The threads that run or serve the guest (vCPU, device, uffd) filter themselves
    // as in fc-launch; this thread writes the layer (and runs mkfs.ext4) and stays
    // unfiltered, an operator's tool rather than a VMM facing the guest.
    if (!f.no_seccomp) enable_thread_filters();

    UniqueFd console_fd = open_file(f.console.empty() ? "/dev/null" : f.console, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    Machine::Options opts;
    opts.console_fd = console_fd.get();
    opts.pause_at_stage = f.stage;
    Machine m(opts);

    // The VM gets a vsock device (restored clones need it) whose host socket lives
    // next to the output only while snap-make runs.
    std::string uds = f.out + ".snap-make.vsock";
    ::unlink(uds.c_str());
    // --rootfs: the image read-only (/dev/vda), a fresh ext4 overlay (/dev/vdb) written
    // directly while the function initialises, then kept in the layer.
    std::unique_ptr<WorkDir> work;
    std::string boot_args = f.boot_args;
    if (!f.rootfs.empty()) {
        work = std::make_unique<WorkDir>(f.out);
        // The layer keeps the image (a snapshot references no file outside it):
        // a hard link, or a copy across filesystems.
        std::string image = work->path() + "/" + kRootImageFile;
        if (::link(f.rootfs.c_str(), image.c_str()) < 0) {
            if (errno != EXDEV && errno != EPERM) throw_errno("--rootfs " + f.rootfs);
            std::error_code ec;
            if (!std::filesystem::copy_file(f.rootfs, image, ec)) throw SysError("--rootfs " + f.rootfs + ": copy into the layer", ec.value());
        }
        make_overlay(work->path() + "/" + kOverlayFile, f.overlay_mib);
        m.set_drive(DriveConfig{"rootfs", image, false, true, false});
        m.set_drive(DriveConfig{"overlay", work->path() + "/" + kOverlayFile, false, false, false});
        boot_args += std::string(boot_args.empty() ? "" : " ") + "kindling.root=/dev/vda kindling.overlay=/dev/vdb";
    }

    auto t0 = std::chrono::steady_clock::now();
    if (!f.base.empty()) {
        RestoreRequest r;
        r.dir = f.base;
        r.track_dirty_pages = true;
        r.vsock_uds_path = uds;
        m.restore(r);
    } else {
        MachineConfig mc;
        mc.mem_size_mib = f.mem_mib;
        m.set_machine_config(mc);
        m.set_vsock(VsockConfig{3, uds});
        BootSource b;
        b.kernel_image_path = f.nano.empty() ? f.kernel : f.nano;
        b.kind = f.nano.empty() ? GuestKind::kLinux : GuestKind::kNano;
        b.initrd_path = f.initrd;
        b.boot_args = boot_args;
        m.set_boot_source(b);
        m.start();
    }

    // Wait for the stage (the vCPU pauses itself there) or for the guest to stop.
    auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(f.timeout_s));
    bool paused = m.wait_until_paused(timeout);
    double init_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!paused) {
        bool stopped = m.state() == VmState::kStopped;
        std::string why = stopped ? "the guest stopped first: " + m.stop_reason()
                                  : "timed out after " + std::to_string(static_cast<int>(f.timeout_s)) + " s";
        m.stop(kExitSoftware, "snap-make gave up");
        m.wait_for_exit();
        ::unlink(uds.c_str());
        throw Error("guest never reported initialisation stage " + std::to_string(f.stage) + ": " + why,
                    stopped ? kExitDataErr : kExitTempFail);
    }

    SnapshotRequest s;
    s.dir = work ? work->path() + "/layer" : f.out;
    s.diff = !f.base.empty();
    s.parent_dir = f.base;
    s.tags = f.tags;
    auto t1 = std::chrono::steady_clock::now();
    try {
        m.create_snapshot(s);
    } catch (...) {
        m.stop(kExitSoftware, "snapshot failed");
        m.wait_for_exit();
        throw;
    }
    double write_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
    m.stop(0, "snapshot written");
    m.wait_for_exit();
    if (work) adopt_drives(*work, f.out);

    LayerInfo info = read_layer_info(f.out);
    if (f.common.json) {
        nlohmann::json j = {{"dir", f.out},
                            {"id", info.id},
                            {"kind", s.diff ? "diff" : "full"},
                            {"parent", f.base.empty() ? nlohmann::json(nullptr) : nlohmann::json(f.base)},
                            {"stage", f.stage},
                            {"mem_size", info.mem_size()},
                            {"mem_data_bytes", info.mem_data_bytes},
                            {"vmstate_bytes", info.vmstate.size},
                            {"init_ms", init_ms},
                            {"write_ms", write_ms}};
        std::printf("%s\n", j.dump().c_str());
    } else {
        std::printf("%s\n", f.out.c_str());
        log_verbose("%s layer %s: %.1f MiB of data in %llu MiB of memory; init %.0f ms, write %.0f ms",
                    s.diff ? "diff" : "full", info.id.c_str(), info.mem_data_bytes / 1048576.0,
                    static_cast<unsigned long long>(info.mem_size() >> 20), init_ms, write_ms);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    log_init("snap-make", LogLevel::kNormal);
    CLI::App app{"snap-make: boot a nano or Linux guest (or restore --base), wait until it reports an\n"
                 "initialisation stage, pause there and write a snapshot layer to --out.",
                 "snap-make"};
    Flags f;
    add_common_flags(app, f.common);
    app.add_option("--nano", f.nano, "Nano guest ELF to boot (a full layer)");
    app.add_option("--kernel", f.kernel, "Linux guest kernel (vmlinux or bzImage) to boot (a full layer); its agent reports the stage");
    app.add_option("--initrd", f.initrd, "Initramfs for --kernel");
    app.add_option("--base", f.base, "Parent layer to restore; writes a diff layer over it");
    app.add_option("--out", f.out, "Snapshot directory to create")->required();
    app.add_option("--stage", f.stage, "Initialisation stage to snapshot at (0 = serving, the default; 1 = runtime up)");
    app.add_option("--mem", f.mem_mib, "Guest memory in MiB (default 128)")->check(CLI::Range(1, 3072));
    app.add_option("--boot-args", f.boot_args, "Guest command line");
    app.add_option("--tag", f.tags, "Free-form layer tag recorded in snapshot.json (repeatable)");
    app.add_option("--timeout", f.timeout_s, "Seconds to wait for the stage (default 60)");
    app.add_option("--console", f.console, "Write the guest console to FILE (default: discarded)");
    app.add_flag("--no-seccomp", f.no_seccomp, "Debugging only: run the guest's threads without seccomp filters");
    app.add_option("--rootfs", f.rootfs,
                   "Root image (scripts/mkroot.sh) for --kernel: attached read-only as /dev/vda, with a new ext4 "
                   "overlay as /dev/vdb that the layer keeps (OUT/overlay.ext4; copy-on-write in every restore)");
    app.add_option("--overlay-size", f.overlay_mib, "Size of the --rootfs overlay in MiB (default 64)")->check(CLI::Range(8, 1 << 20));
    int rc = parse_cli(app, argc, argv);
    if (rc >= 0) return rc;
    return run_tool("snap-make", [&] { return run(f); });
}

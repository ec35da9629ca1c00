// snap-make: boot a nano or Linux guest (or restore a base layer), wait until it reports
// the requested initialisation stage, pause it there and write a snapshot layer.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/io.h"
#include "base/log.h"
#include "base/tool.h"
#include "cli/cli.h"
#include "kindling/nano_abi.h"
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
};

int run(Flags& f) {
    apply_common_flags(f.common);
    if (!f.nano.empty() + !f.kernel.empty() + !f.base.empty() != 1)
        throw UsageError("give one of --nano FILE or --kernel FILE (a full layer) or --base DIR (a diff layer over it)");
    if (!f.initrd.empty() && f.kernel.empty()) throw UsageError("--initrd goes with --kernel");
    if (!f.base.empty() && (f.mem_mib != 128 || !f.boot_args.empty()))
        throw UsageError("--mem and --boot-args come from the base layer when --base is given");
    if (::access(f.out.c_str(), F_OK) == 0) throw SysError(f.out, EEXIST);
    signal(SIGPIPE, SIG_IGN);

    UniqueFd console_fd = open_file(f.console.empty() ? "/dev/null" : f.console, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    Machine::Options opts;
    opts.console_fd = console_fd.get();
    opts.pause_at_stage = f.stage;
    Machine m(opts);

    // The VM gets a vsock device (restored clones need it) whose host socket lives
    // next to the output only while snap-make runs.
    std::string uds = f.out + ".snap-make.vsock";
    ::unlink(uds.c_str());
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
        b.boot_args = f.boot_args;
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
    s.dir = f.out;
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
    int rc = parse_cli(app, argc, argv);
    if (rc >= 0) return rc;
    return run_tool("snap-make", [&] { return run(f); });
}

// fc-launch: boot a nano or linux guest in a KVM microVM.  Wiring only: flags and
// the API feed a Machine; its exit status becomes ours.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/io.h"
#include "base/log.h"
#include "base/tool.h"
#include "cli/cli.h"
#include "http/http_server.h"
#include "jail/jail.h"
#include "seccomp/thread_filter.h"
#include "snapshot/uffd_memory.h"
#include "vmm/fc_api.h"
#include "vmm/machine.h"

using namespace kindling;

namespace {

struct Flags {
    CommonFlags common;
    std::string kernel;
    std::string nano;
    std::string initrd;
    std::string boot_args;
    uint32_t vcpus = 1;
    uint64_t mem_mib = 0;
    std::string vsock;
    uint32_t cid = 3;
    std::vector<std::string> drives;
    std::string api_sock;
    std::string console;
    std::string id = "anonymous-instance";
    std::string restore;
    std::string mem_backend = "uffd";
    bool allow_shared_pages = false;
    bool track_dirty_pages = false;
    bool paused = false;
    std::string record_access;
    std::string prefetch;
    std::string jail;
    uid_t uid = 0;
    gid_t gid = 0;
    std::string netns;
    std::string cgroup_parent = "kindling";
    uint64_t cgroup_memory_mib = 0;
    double cgroup_cpus = 0;
    bool no_seccomp = false;
};

// The jail's limits: derived from the VM's size, unless the flags say otherwise.
JailLimits jail_limits(const Flags& f, const MachineConfig& mc) {
    JailLimits l = jail_limits_for(mc.mem_size_mib, mc.vcpu_count);
    if (f.cgroup_memory_mib) l.cgroup.memory_bytes = f.cgroup_memory_mib << 20;
    if (f.cgroup_cpus > 0) l.cgroup.cpus = f.cgroup_cpus;
    return l;
}

RestoreRequest restore_request(const Flags& f) {
    RestoreRequest r;
    r.dir = f.restore;
    if (f.mem_backend == "uffd") {
        r.backend = MemoryBackendKind::kUffd;
    } else if (f.mem_backend == "file") {
        r.backend = MemoryBackendKind::kFile;
    } else if (f.mem_backend.rfind("uffd:", 0) == 0 && f.mem_backend.size() > 5) {
        r.backend = MemoryBackendKind::kUffdExternal;
        r.uffd_socket = f.mem_backend.substr(5);
    } else {
        throw UsageError("--mem-backend " + f.mem_backend + ": expected uffd, uffd:SOCKET or file");
    }
    r.allow_shared_pages = f.allow_shared_pages;
    r.track_dirty_pages = f.track_dirty_pages;
    r.resume = !f.paused;
    if (!f.vsock.empty()) r.vsock_uds_path = f.vsock;
    r.record_access = f.record_access;
    r.prefetch = f.prefetch;
    return r;
}

DriveConfig parse_drive(const std::string& spec, size_t index) {
    // PATH[,ro|,cow][,root]
    DriveConfig d;
    d.drive_id = "drive" + std::to_string(index);
    size_t pos = 0;
    bool first = true;
    while (pos <= spec.size()) {
        size_t comma = spec.find(',', pos);
        std::string part = spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        if (first) d.path_on_host = part;
        else if (part == "ro") d.is_read_only = true;
        else if (part == "root") d.is_root_device = true;
        else if (part == "cow") d.copy_on_write = true;
        else throw UsageError("--drive " + spec + ": unknown option '" + part + "' (expected ro, cow or root)");
        first = false;
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    if (d.path_on_host.empty()) throw UsageError("--drive needs a path");
    if (d.is_read_only && d.copy_on_write) throw UsageError("--drive " + spec + ": ro and cow exclude each other");
    return d;
}

int run(Flags& f) {
    apply_common_flags(f.common);
    if (!f.kernel.empty() && !f.nano.empty()) throw UsageError("give --kernel or --nano, not both");
    bool have_image = !f.kernel.empty() || !f.nano.empty();
    if (have_image && !f.restore.empty()) throw UsageError("give --kernel/--nano or --restore, not both");
    if (!have_image && f.restore.empty() && f.api_sock.empty())
        throw UsageError("nothing to boot: give --kernel FILE, --nano FILE, --restore DIR or --api-sock PATH (see --help)");
    if (f.restore.empty() && (f.mem_backend != "uffd" || f.allow_shared_pages || f.paused || !f.record_access.empty() || !f.prefetch.empty()))
        throw UsageError("--mem-backend, --allow-shared-pages, --paused, --record-access and --prefetch go with --restore");
    // Core dumps and ptrace by other users would expose guest memory and keys.
    ::prctl(PR_SET_DUMPABLE, 0);
    std::optional<Jail> jail;
    if (!f.jail.empty()) {
        if (!f.record_access.empty())
            throw UsageError("--record-access writes a host file after the guest ran, which a jailed VMM cannot: record without --jail");
        if (f.uid == 0 || f.gid == 0) throw UsageError("--jail needs --uid and --gid (not 0; one uid per VMM)");
        jail.emplace(JailOptions{f.jail, f.uid, f.gid, f.netns, f.cgroup_parent, f.id == "anonymous-instance" ? "" : f.id});
        if (std::optional<int> status = jail->spawn()) return *status;  // the relay, after the VMM exited
    } else if (f.uid || f.gid || !f.netns.empty() || f.cgroup_memory_mib || f.cgroup_cpus > 0) {
        throw UsageError("--uid, --gid, --netns, --cgroup-memory and --cgroup-cpus go with --jail");
    }

    // Signals are handled synchronously by this thread; block them everywhere first
    // so every thread created later inherits the mask.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    sigset_t kick;
    sigemptyset(&kick);
    sigaddset(&kick, SIGRTMIN);
    pthread_sigmask(SIG_BLOCK, &kick, nullptr);
    signal(SIGPIPE, SIG_IGN);
    if (!f.no_seccomp) enable_thread_filters();

    UniqueFd console_fd;
    int cfd = f.common.json ? 2 : 1;
    if (!f.console.empty()) {
        console_fd = open_file(f.console, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
        cfd = console_fd.get();
    }

    Machine::Options mo{cfd};
    if (jail) mo.before_guest_runs = [&](const MachineConfig& mc) { jail->enter(jail_limits(f, mc)); };
    mo.hold_vcpus = have_image || !f.restore.empty();  // until this thread is filtered, below
    Machine m(std::move(mo));
    // Bind the API socket before anything boots: a taken path fails fast.
    FirecrackerApi api(m, f.id);
    std::unique_ptr<HttpServer> server;
    if (!f.api_sock.empty()) server = std::make_unique<HttpServer>("unix:" + f.api_sock, api.handler(), FirecrackerApi::server_options());
    MachineConfig mc;
    mc.vcpu_count = f.vcpus;
    if (f.mem_mib) mc.mem_size_mib = f.mem_mib;
    mc.track_dirty_pages = f.track_dirty_pages;
    m.set_machine_config(mc);
    if (!f.vsock.empty() && f.restore.empty()) m.set_vsock(VsockConfig{f.cid, f.vsock});
    for (size_t i = 0; i < f.drives.size(); ++i) m.set_drive(parse_drive(f.drives[i], i));
    if (have_image) {
        BootSource b;
        b.kernel_image_path = f.nano.empty() ? f.kernel : f.nano;
        b.kind = f.nano.empty() ? GuestKind::kAuto : GuestKind::kNano;
        b.initrd_path = f.initrd;
        b.boot_args = f.boot_args;
        m.set_boot_source(b);
        m.start();
    } else if (!f.restore.empty()) {
        m.restore(restore_request(f));
    }
    if (server) {
        server->start();
        log_verbose("API on %s", server->address().c_str());
    }
    // This thread has created every thread it will (the API thread creates any
    // later ones, under its own filter); now it filters itself, then the vCPUs run.
    enter_thread(ThreadKind::kVmm, nullptr);
    m.release_vcpus();

    UniqueFd sfd(::signalfd(-1, &sigs, SFD_CLOEXEC));
    if (!sfd) throw_errno("signalfd");
    pollfd fds[2] = {{m.stopped_fd(), POLLIN, 0}, {sfd.get(), POLLIN, 0}};
    for (;;) {
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            throw_errno("poll");
        }
        if (fds[0].revents) break;
        if (fds[1].revents) {
            signalfd_siginfo si{};
            (void)!::read(sfd.get(), &si, sizeof si);
            m.stop(128 + static_cast<int>(si.ssi_signo), std::string("stopped by ") + strsignal(static_cast<int>(si.ssi_signo)));
        }
    }
    int status = m.wait_for_exit();
    if (server) server->stop();
    const auto& st = m.stats();
    if (f.common.json) {
        nlohmann::json j = {{"exit_status", status},
                            {"reason", m.stop_reason()},
                            {"exits", st.exits.load()},
                            {"pio_exits", st.pio_exits.load()},
                            {"mmio_exits", st.mmio_exits.load()},
                            {"waits", st.waits.load()},
                            {"batched_mmio", st.batched_mmio.load()}};
        if (const UffdMemory* u = m.uffd()) {
            UffdStats us = u->stats();
            j["memory"] = {{"backend", "uffd"},
                           {"faults", us.faults},
                           {"pages_copied", us.pages_copied},
                           {"zero_pages", us.zero_pages},
                           {"bytes_copied", us.bytes_copied},
                           {"prefetched_pages", us.prefetched_pages},
                           {"prefetch_ms", us.prefetch_ns / 1e6},
                           {"fault_us_avg", us.faults ? us.fault_ns_total / 1e3 / us.faults : 0.0},
                           {"fault_us_max", us.fault_ns_max / 1e3}};
        }
        std::printf("%s\n", j.dump().c_str());
    }
    // A guest that stops on its own (exit port, reset) is not an error; anything
    // the VMM had to stop is reported.
    if (status != 0 && m.stop_reason().rfind("guest exited", 0) != 0) log_error("%s", m.stop_reason().c_str());
    else log_verbose("%s", m.stop_reason().c_str());
    return status;
}

}  // namespace

int main(int argc, char** argv) {
    log_init("fc-launch", LogLevel::kNormal);
    CLI::App app{"fc-launch: boot a nano or linux guest in a KVM microVM.\n"
                 "The guest's console goes to stdout (or --console FILE); fc-launch exits with\n"
                 "the guest's exit status.",
                 "fc-launch"};
    Flags f;
    add_common_flags(app, f.common);
    app.add_option("--kernel", f.kernel, "Kernel (vmlinux/bzImage) or nano ELF; nano images are detected by their note");
    app.add_option("--nano", f.nano, "Nano guest ELF (forces the nano boot path)");
    app.add_option("--initrd", f.initrd, "Initial ramdisk (linux guests)");
    app.add_option("--boot-args", f.boot_args, "Kernel or nano command line");
    app.add_option("--vcpus", f.vcpus, "Number of vCPUs (nano guests: 1)")->check(CLI::Range(1, 32));
    app.add_option("--mem", f.mem_mib, "Guest memory in MiB (default 128)")->check(CLI::Range(1, 1 << 20));
    app.add_option("--vsock", f.vsock, "Unix socket for the hybrid vsock device (host side; with --restore: overrides the snapshot's)");
    app.add_option("--cid", f.cid, "Guest vsock context id (default 3)")->check(CLI::Range(3, 0x7fffffff));
    app.add_option("--drive", f.drives, "virtio-blk drive: PATH[,ro|,cow][,root] (repeatable; cow: the guest's writes stay in this process, the file is not written)");
    app.add_option("--api-sock", f.api_sock, "Serve the Firecracker-compatible API on this Unix socket");
    app.add_option("--restore", f.restore, "Restore the VM from this snapshot directory instead of booting");
    app.add_option("--mem-backend", f.mem_backend,
                   "Restore memory: uffd (default, copy-on-read), uffd:SOCKET (external handler) or file");
    app.add_flag("--allow-shared-pages", f.allow_shared_pages, "Permit --mem-backend file (shares page cache between VMs)");
    app.add_flag("--track-dirty-pages", f.track_dirty_pages, "Log dirty pages so a diff snapshot can be taken");
    app.add_flag("--paused", f.paused, "Restore paused; resume with PATCH /vm");
    app.add_option("--record-access", f.record_access, "Restore: write the order of first page accesses to FILE");
    app.add_option("--prefetch", f.prefetch, "Restore: install the pages of this access log before the vCPUs run");
    app.add_option("--id", f.id, "Instance id reported by the API (GET /)");
    app.add_option("--console", f.console, "Write the guest console to FILE instead of stdout");
    app.add_option("--jail", f.jail,
                   "Run the VMM jailed with DIR as its root (created and removed if absent): own pid, mount, ipc, uts "
                   "and network namespaces, --uid/--gid, no capabilities, rlimits, a cgroup (root only; see fc-launch(1))");
    app.add_option("--uid", f.uid, "--jail: the uid the VMM runs as (not 0; one per VMM)");
    app.add_option("--gid", f.gid, "--jail: the gid the VMM runs as (not 0)");
    app.add_option("--netns", f.netns, "--jail: join this network namespace (e.g. /run/netns/NAME) instead of a new one");
    app.add_option("--cgroup-parent", f.cgroup_parent, "--jail: the cgroup the VM's cgroup is made in (default kindling)");
    app.add_option("--cgroup-memory", f.cgroup_memory_mib, "--jail: memory.max in MiB (default: guest memory + 64)")->check(CLI::Range(1, 1 << 22));
    app.add_option("--cgroup-cpus", f.cgroup_cpus, "--jail: CPUs' worth of time (default: guest MiB / 1769, as Lambda)")->check(CLI::Range(0.01, 1024.0));
    app.add_flag("--no-seccomp", f.no_seccomp, "Debugging only: run without the per-thread seccomp filters");
    int rc = parse_cli(app, argc, argv);
    if (rc >= 0) return rc;
    return run_tool("fc-launch", [&] { return run(f); });
}

// assignd: sandbox assignment and placement for routerd (man/assignd.1.scd).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "assign/assign_service.h"
#include "assign/journal.h"
#include "base/error.h"
#include "base/log.h"
#include "base/tool.h"
#include "cli/cli.h"

using namespace kindling;

namespace {

struct Flags {
    CommonFlags common;
    std::string socket, journal, run_dir;
    size_t capacity = 64;
    double idle_ttl = 300;
    double ready_timeout = 10;
    std::string fc_launch, snapfs;
    std::string jail, jail_netns;
    std::vector<std::string> snapshot_roots;
    uint32_t jail_uid = 0, jail_gid = 0;
};

// fc-launch next to assignd if there is one (a build tree), else from $PATH.
std::string sibling(const std::string& name) {
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        auto p = self.parent_path() / name;
        if (::access(p.c_str(), X_OK) == 0) return p.string();
    }
    return name;
}

int run(Flags& f) {
    // Signals are taken with sigwait on this thread; every thread started after this
    // inherits the mask (sandboxes get an empty mask at spawn).
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

    AssignOptions o;
    o.socket = f.socket;
    o.run_dir = std::filesystem::absolute(f.run_dir).string();
    o.fc_launch = f.fc_launch.empty() ? sibling("fc-launch") : f.fc_launch;
    o.snapfs = f.snapfs.empty() ? sibling("snapfs") : f.snapfs;
    o.capacity = f.capacity;
    o.idle_ttl_ms = static_cast<int64_t>(f.idle_ttl * 1000);
    o.ready_timeout_ms = static_cast<int64_t>(f.ready_timeout * 1000);
    o.snapshot_roots = f.snapshot_roots;
    if (!f.jail.empty()) {
        if (f.jail_uid == 0 || f.jail_gid == 0) throw UsageError("--jail needs --jail-uid and --jail-gid (not 0)");
        if (::geteuid() != 0) throw Error("--jail needs root (fc-launch --jail does)", kExitNoPerm);
        std::filesystem::create_directories(f.jail);
        o.jail = SandboxJail{std::filesystem::absolute(f.jail).string(), f.jail_uid, 65536, f.jail_gid, f.jail_netns};
    } else if (f.jail_uid || f.jail_gid || !f.jail_netns.empty()) {
        throw UsageError("--jail-uid, --jail-gid and --jail-netns go with --jail");
    }
    AssignService svc(o, open_journal(f.journal));
    svc.start();
    std::printf("%s\n", svc.address().c_str());
    std::fflush(stdout);
    log_info("listening on %s (journal %s, run dir %s, capacity %zu, idle TTL %g s)", svc.address().c_str(),
             f.journal.c_str(), o.run_dir.c_str(), o.capacity, f.idle_ttl);
    for (;;) {
        int sig = 0;
        sigwait(&sigs, &sig);
        if (sig == SIGPIPE) continue;
        log_info("%s: stopping", strsignal(sig));
        break;
    }
    svc.stop();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    log_init("assignd", LogLevel::kNormal);
    CLI::App app{"assignd: assigns sandboxes to invokes for routerd; places new ones on this host by restoring\n"
                 "the function's snapshot with fc-launch; every state change is journaled.",
                 "assignd"};
    Flags f;
    add_common_flags(app, f.common, false);
    app.add_option("--socket", f.socket, "API Unix socket (HTTP/JSON, lib/assign/assign_api.h)")->required();
    app.add_option("--journal", f.journal, "Sandbox journal: file:PATH")->required();
    app.add_option("--run-dir", f.run_dir, "Directory for sandbox vsock sockets and logs (created)")->required();
    app.add_option("--capacity", f.capacity, "Live sandboxes on this host at most (default 64)")
        ->check(CLI::Range(1, 100000));
    app.add_option("--idle-ttl", f.idle_ttl, "Seconds an idle sandbox is kept (default 300)")
        ->check(CLI::Range(0.01, 86400.0 * 365));
    app.add_option("--ready-timeout", f.ready_timeout,
                   "Seconds a restore may take until its vsock socket accepts (default 10)")
        ->check(CLI::Range(0.1, 3600.0));
    app.add_option("--fc-launch", f.fc_launch, "fc-launch binary (default: next to assignd, else $PATH)");
    app.add_option("--snapfs", f.snapfs, "snapfs binary (default: next to assignd, else $PATH)");
    app.add_option("--snapshot-root", f.snapshot_roots,
                   "Restore only snapshot dirs inside DIR (repeatable; default: any absolute dir)");
    app.add_option("--jail", f.jail, "Jail every sandbox: fc-launch --jail DIR/sb-N (root only; see assignd(1))");
    app.add_option("--jail-uid", f.jail_uid, "--jail: sandbox sb-N runs as uid FIRST + N % 65536")
        ->check(CLI::Range(1u, 4294967295u - 65536u));
    app.add_option("--jail-gid", f.jail_gid, "--jail: the gid every sandbox runs as")->check(CLI::Range(1u, 4294967294u));
    app.add_option("--jail-netns", f.jail_netns, "--jail: the network namespace sandboxes join (default: a new one each)");
    app.footer("Prints the API socket path on stdout once listening.  SIGTERM/SIGINT: stop accepting, stop\n"
               "every sandbox, exit 0.  Exit status: 64 usage; 65 corrupt journal; 73 socket in use;\n"
               "75 journal locked by another assignd; 78 bad journal URI.  See assignd(1).");
    int rc = parse_cli(app, argc, argv);
    if (rc >= 0) return rc;
    return run_tool("assignd", [&] {
        apply_common_flags(f.common);
        return run(f);
    });
}

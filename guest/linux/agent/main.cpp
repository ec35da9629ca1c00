// kindling-agent: PID 1 of a kindling Linux guest (kindling-linux(7)).  Mounts what
// a function needs, brings up loopback, serves the Lambda Runtime API on
// 127.0.0.1:9001 to the function's `bootstrap`, and the invoke protocol on vsock
// port 9000 to the host.  Reports KN_READY_SERVING to the VMM once the runtime first
// asks for work, so snap-make snapshots an initialised function.  After a snapshot
// restore (a new generation id from the VMM) it reseeds the kernel RNG before the
// next invocation runs.  With kindling.root= it first switches from its initramfs to a
// read-only root image under a read-write overlay (root_switch.h).
#include <fcntl.h>
#include <linux/random.h>
#include <net/if.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/log.h"
#include "invoke_listener.h"
#include "kindling/nano_abi.h"
#include "root_switch.h"
#include "runtime_api.h"

using namespace kindling;
using namespace kindling::agent;

namespace {

struct AgentConfig {
    RuntimeConfig runtime;
    ListenerConfig listener;
    RootConfig root;
    uint64_t generation_addr = 0;  // guest-physical address of struct kn_generation; 0: none
    uint64_t control_addr = 0;     // guest-physical address of the VMM's control page; 0: none
    bool debug = false;
};

void mount_fs(const char* type, const char* target, const char* opts = nullptr) {
    ::mkdir(target, 0755);
    if (::mount(type, target, type, MS_NOSUID, opts) != 0 && errno != EBUSY)
        log_warn("mount %s on %s: %s", type, target, std::strerror(errno));
}

void bring_up_loopback() {
    int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return log_warn("loopback: socket: %s", std::strerror(errno));
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (::ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
        if (::ioctl(s, SIOCSIFFLAGS, &ifr) != 0) log_warn("loopback: up: %s", std::strerror(errno));
    }
    ::close(s);
}

// kindling.NAME=VALUE words of the kernel command line.
AgentConfig read_config() {
    AgentConfig c;
    c.runtime.environment["AWS_REGION"] = "us-east-1";
    c.runtime.environment["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";
    c.runtime.environment["LANG"] = "C.UTF-8";
    c.runtime.environment["TZ"] = ":UTC";
    // /proc files report size 0: read to EOF.
    std::ifstream in("/proc/cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t pos = 0;
    while (pos < cmdline.size()) {
        size_t end = cmdline.find_first_of(" \n", pos);
        if (end == std::string::npos) end = cmdline.size();
        std::string w = cmdline.substr(pos, end - pos);
        pos = end + 1;
        if (!w.starts_with("kindling.")) continue;
        size_t eq = w.find('=');
        std::string key = w.substr(9, eq == std::string::npos ? std::string::npos : eq - 9);
        std::string val = eq == std::string::npos ? "" : w.substr(eq + 1);
        try {
            if (key == "bootstrap") c.runtime.bootstrap = val;
            else if (key == "task_root") c.runtime.task_root = val;
            else if (key == "handler") c.runtime.handler = val;
            else if (key == "function") c.runtime.function_name = val;
            else if (key == "memory") c.runtime.memory_mb = std::stoull(val);
            else if (key == "timeout_ms") c.runtime.timeout = std::chrono::milliseconds(std::stoull(val));
            else if (key == "max_response") c.runtime.max_response = std::stoull(val);
            else if (key == "port") c.listener.port = static_cast<uint32_t>(std::stoul(val));
            else if (key == "root") c.root.image = val;
            else if (key == "overlay") c.root.overlay = val;
            else if (key == "generation") c.generation_addr = std::stoull(val, nullptr, 0);
            else if (key == "control") c.control_addr = std::stoull(val, nullptr, 0);
            else if (key == "debug") c.debug = true;
            else if (key.starts_with("env.")) c.runtime.environment[key.substr(4)] = val;
        } catch (const std::exception&) {
            log_warn("ignoring %s: not a number", w.c_str());
        }
    }
    return c;
}

// The VMM's exit and ready registers (kindling-linux(7) THE AGENT).  fc-launch
// offers them on a control page (kindling.control=ADDRESS), written through a
// /dev/mem mapping, and as the ports KN_PORT_EXIT / KN_PORT_READY.  The page is
// preferred: user-mode port I/O goes through the TSS I/O bitmap, and that took a
// #GP in VMs restored from snapshots inside the nested test host.  ioperm is per
// thread (and inherited by threads created later), so main() sets this up before
// starting any thread.
class VmmRegisters {
public:
    void open(uint64_t control_addr) {
        if (control_addr) {
            int fd = ::open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
            void* p = fd < 0 ? MAP_FAILED
                             : ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(control_addr));
            if (p != MAP_FAILED) page_ = static_cast<volatile uint32_t*>(p);
            else log_warn("control page at %#llx: %s; using ports", static_cast<unsigned long long>(control_addr),
                          std::strerror(errno));
            if (fd >= 0) ::close(fd);
            if (page_) return;
        }
        ports_ = ::ioperm(KN_PORT_EXIT, 8, 1) == 0;
        if (!ports_) log_warn("ioperm: %s: no ready report, EXIT falls back to a reboot", std::strerror(errno));
    }
    // Nothing happens when neither way is open (open() said so).
    void exit(uint32_t status) { write(0, KN_PORT_EXIT, status); }
    void ready(uint32_t stage) { write(1, KN_PORT_READY, stage); }

private:
    void write(size_t word, uint16_t port, uint32_t v) {
        if (page_) page_[word] = v;
        else if (ports_) ::outl(v, port);
    }
    volatile uint32_t* page_ = nullptr;
    bool ports_ = false;
};
VmmRegisters g_vmm;

// An initialisation stage (kindling-nano(7) KN_PORT_READY): KN_READY_RUNTIME once
// the agent is up, before the runtime starts; KN_READY_SERVING at the runtime's
// first /next.  snap-make pauses at the one it was asked for.
void report_stage(uint32_t stage) { g_vmm.ready(stage); }

[[noreturn]] void stop_vm(int status) {
    ::sync();
    g_vmm.exit(static_cast<uint32_t>(status));
    ::reboot(RB_AUTOBOOT);  // reboot=k: the i8042 reset ends fc-launch
    _exit(status);
}

// Watches the generation page and reseeds the kernel RNG when a restore changed it.
class RestoreWatch {
public:
    RestoreWatch(uint64_t addr, RuntimeApi& runtime) : addr_(addr), runtime_(runtime) {
        if (addr_) read(last_);
    }

    // Before every invocation: a new generation id means this VM is a fresh clone
    // of a snapshot; its kernel CRNG state is shared with every other clone until
    // reseeded with the entropy the VMM wrote.
    void check() {
        if (!addr_) return;
        std::lock_guard lk(mu_);
        kn_generation g{};
        if (!read(g) || (g.id_lo == last_.id_lo && g.id_hi == last_.id_hi)) return;
        last_ = g;
        generation_++;
        reseed(g);
        run_hooks();
        runtime_.note_restore(generation_);
        log_verbose("restore detected (generation %llu): kernel RNG reseeded", static_cast<unsigned long long>(generation_));
    }

    uint64_t reseeds() const { return generation_; }

private:
    bool read(kn_generation& g) {
        int fd = ::open("/dev/mem", O_RDONLY | O_CLOEXEC | O_SYNC);
        if (fd < 0) {
            log_warn("generation page: /dev/mem: %s", std::strerror(errno));
            addr_ = 0;
            return false;
        }
        ssize_t n = ::pread(fd, &g, sizeof g, static_cast<off_t>(addr_));
        ::close(fd);
        return n == sizeof g;
    }

    static void reseed(const kn_generation& g) {
        int fd = ::open("/dev/urandom", O_RDWR | O_CLOEXEC);
        if (fd < 0) return log_error("reseed: /dev/urandom: %s", std::strerror(errno));
        // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
        alignas(rand_pool_info) uint8_t e[sizeof(rand_pool_info) + sizeof g.entropy + 16] = {};
        auto* info = reinterpret_cast<rand_pool_info*>(e);
        info->entropy_count = static_cast<int>(sizeof g.entropy * 8);
        info->buf_size = static_cast<int>(sizeof g.entropy + 16);
        std::memcpy(e + sizeof(rand_pool_info), g.entropy, sizeof g.entropy);
        std::memcpy(e + sizeof(rand_pool_info) + sizeof g.entropy, &g.id_lo, 16);
        if (::ioctl(fd, RNDADDENTROPY, info) != 0) log_error("reseed: RNDADDENTROPY: %s", std::strerror(errno));
        if (::ioctl(fd, RNDRESEEDCRNG) != 0) log_error("reseed: RNDRESEEDCRNG: %s", std::strerror(errno));
        ::close(fd);
    }

    // Executables in /etc/kindling/restore.d, in name order, each waited for.
    static void run_hooks() {
        const char* dir = "/etc/kindling/restore.d";
        DIR* d = ::opendir(dir);
        if (!d) return;
        std::vector<std::string> names;
        while (dirent* e = ::readdir(d))
            if (e->d_name[0] != '.') names.emplace_back(e->d_name);
        ::closedir(d);
        std::sort(names.begin(), names.end());
        for (const auto& n : names) {
            std::string path = std::string(dir) + "/" + n;
            if (::access(path.c_str(), X_OK) != 0) continue;
            pid_t pid = ::fork();
            if (pid == 0) {
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, nullptr);
                ::execl(path.c_str(), path.c_str(), static_cast<char*>(nullptr));
                _exit(127);
            }
            int st = 0;
            if (pid > 0) ::waitpid(pid, &st, 0);
        }
    }

    std::mutex mu_;
    uint64_t addr_;
    RuntimeApi& runtime_;
    kn_generation last_{};
    uint64_t generation_ = 0;
};

}  // namespace

int main() {
    log_init("kindling-agent", LogLevel::kNormal);
    // SIGCHLD goes to a signalfd; the runtime is spawned with an empty mask.
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigaddset(&chld, SIGPIPE);
    sigprocmask(SIG_BLOCK, &chld, nullptr);

    if (::getpid() == 1) {
        mount_fs("proc", "/proc");
        mount_fs("sysfs", "/sys");
        mount_fs("devtmpfs", "/dev");
        mount_fs("tmpfs", "/tmp", "mode=1777");
        mount_fs("tmpfs", "/run", "mode=0755");
        ::mkdir("/dev/shm", 01777);
        mount_fs("tmpfs", "/dev/shm", "mode=1777");
        int con = ::open("/dev/console", O_RDWR | O_CLOEXEC);
        if (con >= 0) {
            ::dup2(con, 1);
            ::dup2(con, 2);
            ::close(con);
        }
    }
    AgentConfig cfg = read_config();
    if (cfg.debug) log_init("kindling-agent", LogLevel::kVerbose);
    g_vmm.open(cfg.control_addr);
    if (!cfg.root.overlay.empty() && cfg.root.image.empty()) {
        log_error("kindling.overlay=%s needs kindling.root=", cfg.root.overlay.c_str());
        stop_vm(kExitUsage);
    }
    if (!cfg.root.image.empty()) {
        if (::getpid() != 1) {
            log_error("kindling.root= needs the agent to run as PID 1");
            stop_vm(kExitUsage);
        }
        try {
            switch_root(cfg.root);
        } catch (const Error& e) {
            log_error("%s", e.what());
            stop_vm(e.exit_code());
        }
    }
    bring_up_loopback();

    try {
        RuntimeApi runtime(cfg.runtime, [] { report_stage(KN_READY_SERVING); });
        RestoreWatch restore(cfg.generation_addr, runtime);
        runtime.start([] { report_stage(KN_READY_RUNTIME); });

        std::thread reaper([&runtime] {
            sigset_t s;
            sigemptyset(&s);
            sigaddset(&s, SIGCHLD);
            int sfd = ::signalfd(-1, &s, SFD_CLOEXEC);
            for (;;) {
                signalfd_siginfo si;
                if (sfd >= 0 && ::read(sfd, &si, sizeof si) < 0 && errno != EINTR) break;
                int st = 0;
                pid_t pid;
                while ((pid = ::waitpid(-1, &st, WNOHANG)) > 0) runtime.child_exited(pid, st);
                if (sfd < 0) ::usleep(100000);
            }
        });
        reaper.detach();

        auto stats = [&runtime, &restore] {
            RuntimeApi::Counters c = runtime.counters();
            return "{\"invokes\":" + std::to_string(c.invokes) + ",\"errors\":" + std::to_string(c.errors) +
                   ",\"timeouts\":" + std::to_string(c.timeouts) + ",\"runtime_starts\":" + std::to_string(c.runtime_starts) +
                   ",\"runtime_exits\":" + std::to_string(c.runtime_exits) + ",\"reseeds\":" + std::to_string(restore.reseeds()) + "}";
        };
        InvokeListener listener(cfg.listener, runtime, [&restore] { restore.check(); }, stats, stop_vm);
        listener.serve();
    } catch (const std::exception& e) {
        log_error("%s", e.what());
        stop_vm(70);
    }
}

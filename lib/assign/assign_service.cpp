#include "assign/assign_service.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <list>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "assign/assign_api.h"
#include "assign/journal.h"
#include "assign/sandbox_table.h"
#include "base/error.h"
#include "base/event_loop.h"
#include "base/io.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/unix_socket.h"
#include "http/http_server.h"

extern char** environ;

namespace kindling {

using json = nlohmann::json;

namespace {

constexpr size_t kKeepDead = 64;
constexpr uint64_t kCompactMinBytes = 1 << 20;  // dead sandboxes kept for /v1/sandboxes

HttpResponse error_json(int status, const std::string& error, const std::string& message) {
    return HttpResponse::json(status, json{{"error", error}, {"message", message}}.dump());
}

// glibc's wrapper is missing from some versions; the system call is Linux 5.3+.
std::string random_instance() {
    std::random_device rd;
    char buf[17];
    std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
    return buf;
}

int pidfd_open(pid_t pid, unsigned flags) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags)); }

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

bool socket_accepts(const std::string& path) {
    int err = 0;
    return try_connect_unix(path, &err).valid();
}

// The --vsock path of process `pid` if it is an fc-launch, else "".  (After a restart
// a recorded pid may have been reused by anything.)
std::string fc_launch_vsock(int64_t pid) {
    // /proc files report size 0: read to EOF rather than by size.
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> argv;
    size_t start = 0;
    for (size_t i = 0; i < cmd.size(); i++)
        if (cmd[i] == '\0') argv.push_back(cmd.substr(start, i - start)), start = i + 1;
    if (argv.empty() || std::filesystem::path(argv[0]).filename() != "fc-launch") return "";
    for (size_t i = 0; i + 1 < argv.size(); i++)
        if (argv[i] == "--vsock") return argv[i + 1];
    return "";
}

bool is_our_fc_launch(int64_t pid, const std::string& vsock) { return fc_launch_vsock(pid) == vsock; }

// N of a run-dir file named sb-N.<anything>, or 0.
uint64_t sandbox_number(const std::string& filename) {
    if (filename.rfind("sb-", 0) != 0) return 0;
    size_t dot = filename.find('.');
    std::string digits = filename.substr(3, dot == std::string::npos ? std::string::npos : dot - 3);
    if (digits.empty() || digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos) return 0;
    return std::stoull(digits);
}

}  // namespace

struct AssignService::Impl {
    struct Waiter {
        std::string function, version, snapshot_dir;
        std::string manifest, store;  // a layer in a store: restored through a snapfs mount
        size_t concurrency = 0;
        int64_t start_ms = 0, deadline_ms = 0;
        HttpResponder respond;
    };
    using Outbox = std::vector<std::pair<HttpResponder, HttpResponse>>;
    struct Placement {
        std::string id;
        Waiter waiter;
    };

    AssignOptions opt;
    // Tells routerd apart one assignd process from the next: leases do not survive
    // a restart.
    const std::string instance = random_instance();
    // Drains so far: a lease routerd holds from before a drain goes back on release.
    std::atomic<uint64_t> drains{0};
    std::unique_ptr<Journal> journal;
    std::unique_ptr<HttpServer> server;

    std::mutex mu;
    SandboxTable table;
    std::list<Waiter> waiters;
    std::map<std::string, std::string> void_leases;  // lease -> why (sandbox died)
    std::map<int64_t, int64_t> stopping;             // pid -> SIGKILL deadline
    std::atomic<bool> stopping_all{false};

    // Metrics (under mu).
    uint64_t acquires_warm = 0, acquires_cold = 0, throttles = 0, restores = 0,
             restore_failures = 0, deaths = 0, reaped = 0;
    Histogram restore_seconds{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}};

    EventLoop loop;
    std::mutex pidfd_mu;
    struct Watched {
        UniqueFd fd;
        int64_t pid = 0;
    };
    std::map<std::string, Watched> pidfds;  // sandbox id -> its fc-launch
    std::thread watcher;
    std::atomic<bool> watcher_stop{false};

    struct PlacementThread {
        std::thread thread;
        std::shared_ptr<std::atomic<bool>> done = std::make_shared<std::atomic<bool>>(false);
    };
    std::mutex threads_mu;
    std::list<PlacementThread> placements;

    Impl(AssignOptions o, std::unique_ptr<Journal> j) : opt(std::move(o)), journal(std::move(j)), table(*journal) {}

    // ---- startup ----

    void rebuild() {
        std::lock_guard lk(mu);
        table.rebuild();
        uint64_t seq = 0;
        size_t alive = 0, lost = 0;
        for (const Sandbox* cs : table.all()) {
            Sandbox* s = table.find(cs->id);
            if (s->state == SandboxState::kDead) continue;
            UniqueFd pfd;
            if (s->pid > 0 && is_our_fc_launch(s->pid, s->vsock) && std::filesystem::exists(s->vsock))
                pfd.reset(pidfd_open(static_cast<pid_t>(s->pid), 0));
            // Checked again after pidfd_open: the pidfd now pins this process.
            if (pfd && is_our_fc_launch(s->pid, s->vsock)) {
                table.to_idle(*s);
                watch(s->id, s->pid, std::move(pfd));
                alive++;
                log_info("%s: %s/%s pid %lld rebuilt from the journal: idle", s->id.c_str(),
                         s->function.c_str(), s->version.c_str(), static_cast<long long>(s->pid));
            } else {
                seq = table.to_dead(*s);
                lost++;
                log_warn("%s: pid %lld is gone: dead", s->id.c_str(), static_cast<long long>(s->pid));
            }
        }
        if (seq) journal->sync(seq);
        reap_strays();
        log_info("journal %s: %zu sandboxes alive, %zu dead", journal->describe().c_str(), alive, lost);
    }

    // A crash between spawning a sandbox and journaling its pid leaves an fc-launch the
    // journal does not know, and one still restoring is marked dead above while its
    // process runs on.  Both serve a socket in our run dir: kill them.  Ids seen in the
    // run dir (sockets, logs) are never handed out again.
    void reap_strays() {
        std::error_code ec;
        std::filesystem::path dir = std::filesystem::path(opt.run_dir).lexically_normal();
        if (!dir.has_filename()) dir = dir.parent_path();  // "run/" -> "run"
        for (const auto& e : std::filesystem::directory_iterator(dir, ec))
            table.note_id(sandbox_number(e.path().filename().string()));
        for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
            std::string name = e.path().filename().string();
            if (name.find_first_not_of("0123456789") != std::string::npos) continue;
            int64_t pid = std::stoll(name);
            std::filesystem::path vsock = fc_launch_vsock(pid);
            if (vsock.empty() || vsock.lexically_normal().parent_path() != dir) continue;
            uint64_t n = sandbox_number(vsock.filename().string());
            if (n == 0) continue;
            table.note_id(n);
            const Sandbox* s = table.find("sb-" + std::to_string(n));
            if (s && s->pid == pid && s->state != SandboxState::kDead) continue;
            log_warn("stray fc-launch pid %lld serving %s (not live in the journal): killed",
                     static_cast<long long>(pid), vsock.c_str());
            ::kill(static_cast<pid_t>(-pid), SIGKILL);  // its process group, as stop_sandbox
            ::kill(static_cast<pid_t>(pid), SIGKILL);
        }
    }

    // ---- pidfd watcher ----

    void watch(const std::string& id, int64_t pid, UniqueFd pfd) {
        int fd = pfd.get();
        {
            std::lock_guard lk(pidfd_mu);
            pidfds[id] = Watched{std::move(pfd), pid};
        }
        loop.add(fd, EPOLLIN, [this, id, fd](uint32_t) { on_exit(id, fd); });
    }

    // Runs on the watcher thread.
    void on_exit(const std::string& id, int fd) {
        loop.remove(fd);
        siginfo_t si{};
        std::string how = "exited";
        if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fd), &si, WEXITED | WNOHANG) == 0 &&
            si.si_pid != 0) {
            how = si.si_code == CLD_EXITED ? "exited with status " + std::to_string(si.si_status)
                                           : std::string("killed by ") + strsignal(si.si_status);
        }
        int64_t pid = 0;
        {
            std::lock_guard lk(pidfd_mu);
            pid = pidfds[id].pid;
            pidfds.erase(id);
        }
        Outbox out;
        {
            std::lock_guard lk(mu);
            stopping.erase(pid);
            if (Sandbox* s = table.find(id); s && s->pid == pid) {
                if (s->state != SandboxState::kDead) {
                    if (!s->lease.empty())
                        void_leases[s->lease] = "sandbox " + id + " died (fc-launch " + how + ")";
                    log_warn("%s: fc-launch pid %lld %s while %s: dead", id.c_str(),
                             static_cast<long long>(s->pid), how.c_str(), sandbox_state_name(s->state));
                    table.to_dead(*s);
                    deaths++;
                    prune_dead();
                    pump(out);
                }
            }
        }
        flush(out);
    }

    void watcher_loop() {
        while (!watcher_stop) {
            loop.run_once(50);
            tick();
        }
    }

    void tick() {
        Outbox out;
        {
            std::lock_guard lk(mu);
            int64_t now = steady_ms();
            for (auto it = waiters.begin(); it != waiters.end();) {
                if (now >= it->deadline_ms) {
                    throttles++;
                    out.emplace_back(std::move(it->respond), throttle_response(*it));
                    it = waiters.erase(it);
                } else {
                    ++it;
                }
            }
            for (Sandbox* s : table.idle_lru()) {
                if (now - s->last_used_ms < opt.idle_ttl_ms) break;
                log_info("%s: idle for %lld ms: reaped", s->id.c_str(),
                         static_cast<long long>(now - s->last_used_ms));
                reaped++;
                stop_sandbox(*s);
            }
            for (auto& [pid, deadline] : stopping)
                if (now >= deadline) {
                    ::kill(static_cast<pid_t>(-pid), SIGKILL);
                    deadline = now + 1000;
                }
            // Every invoke appends two records: rewrite the journal as the table once
            // it has grown to 4x its last compacted size (and at least 1 MiB).
            JournalStats js = journal->stats();
            if (js.bytes > kCompactMinBytes && js.bytes > 4 * js.compacted_bytes) {
                log_info("journal %s: %llu bytes: compacting", journal->describe().c_str(),
                         static_cast<unsigned long long>(js.bytes));
                journal->compact(table.state_records());
            }
        }
        flush(out);
        // Placement threads that finished are joined here, never left detached.
        std::lock_guard lk(threads_mu);
        for (auto it = placements.begin(); it != placements.end();) {
            if (*it->done) {
                it->thread.join();
                it = placements.erase(it);
            } else {
                ++it;
            }
        }
    }

    // ---- state changes (under mu) ----

    // Forgets the sandbox (journaled destroyed) and stops its process group.
    void stop_sandbox(Sandbox& s) {
        int64_t pid = s.pid;
        if (!s.lease.empty()) void_leases[s.lease] = "sandbox " + s.id + " was stopped";
        table.destroy(s.id);
        if (pid > 0) {
            ::kill(static_cast<pid_t>(-pid), SIGTERM);
            stopping[pid] = steady_ms() + opt.stop_timeout_ms;
        }
    }

    void prune_dead() {
        std::vector<std::string> dead;
        for (const Sandbox* s : table.all())
            if (s->state == SandboxState::kDead) dead.push_back(s->id);
        for (size_t i = 0; i + kKeepDead < dead.size(); i++) table.destroy(dead[i]);
        while (void_leases.size() > 1024) void_leases.erase(void_leases.begin());
    }

    HttpResponse throttle_response(const Waiter& w) {
        return error_json(429, "TooManyRequestsException",
                          "Rate Exceeded: function " + w.function + " has reached its concurrency limit (" +
                              std::to_string(w.concurrency) + ") or the host its capacity (" +
                              std::to_string(opt.capacity) + ") and no sandbox freed up in " +
                              std::to_string(w.deadline_ms - w.start_ms) + " ms");
    }

    HttpResponse acquired(const Sandbox& s, bool cold, double restore_ms) const {
        json j = {{"sandbox", s.id}, {"vsock", s.vsock}, {"lease", s.lease}, {"cold", cold}, {"instance", instance}, {"drains", drains.load()}};
        if (cold) j["restore_ms"] = std::round(restore_ms * 1000) / 1000;
        return HttpResponse::json(200, j.dump());
    }

    // Serves waiting acquires in arrival order: a warm sandbox if one is idle, else a
    // new placement if the function's concurrency and the host's capacity allow
    // (evicting the least recently used idle sandbox of another function when the
    // host is full).  Called whenever something frees up.
    void pump(Outbox& out) {
        if (stopping_all) return;
        for (auto it = waiters.begin(); it != waiters.end();) {
            Waiter& w = *it;
            if (Sandbox* s = table.take_idle(w.function, w.version)) {
                acquires_warm++;
                out.emplace_back(std::move(w.respond), acquired(*s, false, 0));
                it = waiters.erase(it);
                continue;
            }
            if (table.active(w.function) >= w.concurrency) {
                ++it;
                continue;
            }
            if (table.live() >= opt.capacity) {
                auto idle = table.idle_lru();
                if (idle.empty()) {
                    ++it;
                    continue;
                }
                log_info("%s: evicted (host at capacity %zu)", idle.front()->id.c_str(), opt.capacity);
                stop_sandbox(*idle.front());
            }
            Sandbox& s = table.create(w.function, w.version, opt.run_dir);
            start_placement(Placement{s.id, std::move(w)});
            it = waiters.erase(it);
        }
    }

    void flush(Outbox& out) {
        for (auto& [respond, r] : out)
            if (respond) respond(std::move(r));
        out.clear();
    }

    // ---- placement ----

    void start_placement(Placement p) {
        std::lock_guard lk(threads_mu);
        PlacementThread& t = placements.emplace_back();
        t.thread = std::thread([this, p = std::move(p), done = t.done]() mutable {
            place(std::move(p));
            *done = true;
        });
    }

    int64_t spawn(const Sandbox& s, const std::string& snapshot_dir) {
        std::string log_path = opt.run_dir + "/" + s.id + ".log";
        ::unlink(s.vsock.c_str());
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        // Own process group: a terminal's ^C or assignd's own death doesn't take the
        // sandboxes with it, and stopping one signals its whole group.
        sigset_t none, defaults;
        sigemptyset(&none);
        sigemptyset(&defaults);
        for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD}) sigaddset(&defaults, sig);
        posix_spawnattr_setpgroup(&attr, 0);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &defaults);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        std::vector<std::string> args = {opt.fc_launch, "--restore", snapshot_dir, "--vsock", s.vsock};
        // REAP: a page access log kept alongside the snapshot (recorded by a first
        // restore with --record-access DIR/access.log) is prefetched before the
        // sandbox's vCPUs run.
        if (std::string log = snapshot_dir + "/access.log"; ::access(log.c_str(), R_OK) == 0) {
            args.push_back("--prefetch");
            args.push_back(log);
        }
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_t pid = 0;
        int rc = ::posix_spawnp(&pid, opt.fc_launch.c_str(), &fa, &attr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (rc != 0) throw SysError("spawn " + opt.fc_launch, rc);
        return pid;
    }

    std::string log_tail(const std::string& id) {
        try {
            std::string l = read_file(opt.run_dir + "/" + id + ".log");
            while (!l.empty() && l.back() == '\n') l.pop_back();
            size_t nl = l.rfind('\n');
            return nl == std::string::npos ? l : l.substr(nl + 1);
        } catch (const std::exception&) {
            return "";
        }
    }

    // A manifest in a store is mounted once with snapfs under RUN_DIR/mnt/ID (shared
    // by every sandbox of that layer: snapfs serves each reader its own copy, and
    // each VM copies its pages into its own memory); the mount is the snapshot dir.
    std::string ensure_mounted(const std::string& manifest, const std::string& store) {
        std::lock_guard lk(mounts_mu);
        auto it = mounts.find(manifest);
        if (it != mounts.end()) return it->second;
        std::string mnt = opt.run_dir + "/mnt/" + manifest;
        std::filesystem::create_directories(mnt);
        std::vector<std::string> args = {opt.snapfs, manifest, mnt, "--store", store, "-q"};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        std::string log_path = opt.run_dir + "/mnt/" + manifest + ".log";
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        pid_t pid = 0;
        int rc = ::posix_spawnp(&pid, opt.snapfs.c_str(), &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        if (rc != 0) throw SysError("spawn " + opt.snapfs, rc);
        int st = 0;
        while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        // snapfs returns once mounted (it detaches), or fails with the reason on stderr.
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            std::string why;
            try {
                why = read_file(log_path);
            } catch (const std::exception&) {
            }
            while (!why.empty() && why.back() == '\n') why.pop_back();
            throw Error("snapfs " + manifest + " --store " + store + " failed: " + why, kExitUnavailable);
        }
        log_info("mounted layer %s from %s at %s", manifest.c_str(), store.c_str(), mnt.c_str());
        mounts.emplace(manifest, mnt);
        return mnt;
    }

    void unmount_all() {
        std::lock_guard lk(mounts_mu);
        for (auto& [id, mnt] : mounts)
            if (::umount2(mnt.c_str(), MNT_DETACH) < 0) log_warn("unmount %s: %s", mnt.c_str(), std::strerror(errno));
        mounts.clear();
    }

    void place(Placement p) {
        int64_t t0 = steady_ms();
        auto t0p = std::chrono::steady_clock::now();
        Waiter& w = p.waiter;
        std::string failure;
        try {
            int64_t pid;
            uint64_t seq;
            std::string vsock;
            if (!w.manifest.empty()) w.snapshot_dir = ensure_mounted(w.manifest, w.store);
            {
                std::lock_guard lk(mu);
                Sandbox* s = table.find(p.id);
                if (!s) throw Error("sandbox vanished");
                vsock = s->vsock;
                pid = spawn(*s, w.snapshot_dir);
                seq = table.set_pid(p.id, pid);
            }
            UniqueFd pfd(pidfd_open(static_cast<pid_t>(pid), 0));
            if (!pfd) throw_errno("pidfd_open " + std::to_string(pid));
            watch(p.id, pid, std::move(pfd));
            journal->sync(seq);  // durable before anyone uses the sandbox
            for (;;) {
                {
                    std::lock_guard lk(mu);
                    Sandbox* s = table.find(p.id);
                    if (!s || s->state == SandboxState::kDead) {
                        std::string tail = log_tail(p.id);
                        throw Error("fc-launch died during restore" + (tail.empty() ? "" : ": " + tail));
                    }
                }
                if (socket_accepts(vsock)) break;
                if (stopping_all) throw Error("assignd is stopping");
                if (steady_ms() - t0 > opt.ready_timeout_ms)
                    throw Error("restore did not finish in " + std::to_string(opt.ready_timeout_ms) + " ms");
                std::this_thread::sleep_for(std::chrono::microseconds(500));
            }
        } catch (const std::exception& e) {
            failure = e.what();
        }
        double restore_ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0p).count();
        Outbox out;
        {
            std::lock_guard lk(mu);
            Sandbox* s = table.find(p.id);
            if (failure.empty() && s && s->state == SandboxState::kCreating) {
                table.to_busy(*s);
                acquires_cold++;
                restores++;
                restore_seconds.record(restore_ms / 1000);
                log_verbose("%s: restored %s/%s in %.1f ms", s->id.c_str(), w.function.c_str(),
                            w.version.c_str(), restore_ms);
                out.emplace_back(std::move(w.respond), acquired(*s, true, restore_ms));
            } else {
                if (failure.empty()) failure = "sandbox stopped during restore";
                restore_failures++;
                log_error("%s: placement of %s/%s failed: %s", p.id.c_str(), w.function.c_str(),
                          w.version.c_str(), failure.c_str());
                if (s) {
                    if (s->pid > 0 && s->state != SandboxState::kDead) {
                        stop_sandbox(*s);
                    } else {
                        table.destroy(p.id);
                    }
                }
                out.emplace_back(std::move(w.respond),
                                 error_json(503, "ServiceException", "placement failed: " + failure));
                pump(out);
            }
        }
        flush(out);
    }

    // ---- API ----

    void handle(const HttpRequest& req, HttpResponder respond) {
        std::string_view path = req.path();
        try {
            if (path == kAssignAcquirePath && req.method == "POST") return acquire(req, respond);  // moves respond only once the request parsed
            if (path == kAssignReleasePath && req.method == "POST") return respond(release(req));
            if (path == kAssignSandboxesPath && req.method == "GET") return respond(list());
            if (path == kAssignDrainPath && req.method == "POST") return respond(drain(req));
            if (path == "/metrics" && req.method == "GET") return respond(metrics());
            if (path == kAssignInstancePath && req.method == "GET")
                return respond(HttpResponse::json(200, json{{"instance", instance}, {"drains", drains.load()}}.dump()));
            if (path == kAssignAcquirePath || path == kAssignReleasePath || path == kAssignSandboxesPath ||
                path == kAssignDrainPath || path == kAssignInstancePath || path == "/metrics")
                return respond(error_json(405, "MethodNotAllowed", req.method + " " + std::string(path)));
            respond(error_json(404, "NotFound", "no such endpoint: " + std::string(path)));
        } catch (const DataError& e) {
            respond(error_json(400, "InvalidRequestContentException", e.what()));
        }
    }

    static json parse_body(const HttpRequest& req) {
        json j = json::parse(req.body, nullptr, false);
        if (j.is_discarded() || !j.is_object()) throw DataError("request body is not a JSON object");
        return j;
    }

    static std::string get_string(const json& j, const char* name, bool required, std::string def = "") {
        auto it = j.find(name);
        if (it == j.end() || it->is_null()) {
            if (required) throw DataError(std::string("missing \"") + name + "\"");
            return def;
        }
        if (!it->is_string()) throw DataError(std::string("\"") + name + "\" must be a string");
        return it->get<std::string>();
    }

    static int64_t get_int(const json& j, const char* name, int64_t def, int64_t lo, int64_t hi) {
        auto it = j.find(name);
        if (it == j.end() || it->is_null()) return def;
        if (!it->is_number_integer()) throw DataError(std::string("\"") + name + "\" must be an integer");
        int64_t v = it->get<int64_t>();
        if (v < lo || v > hi)
            throw DataError(std::string("\"") + name + "\" must be in " + std::to_string(lo) + ".." +
                            std::to_string(hi));
        return v;
    }

    void acquire(const HttpRequest& req, HttpResponder& respond) {
        json j = parse_body(req);
        Waiter w;
        w.function = get_string(j, "function", true);
        if (w.function.empty() || w.function.size() > 256) throw DataError("\"function\" must be 1..256 characters");
        w.version = get_string(j, "version", false, "$LATEST");
        auto snap = j.find("snapshot");
        if (snap == j.end() || !snap->is_object()) throw DataError("missing \"snapshot\" object");
        if (snap->contains("manifest")) {
            w.manifest = get_string(*snap, "manifest", true);
            w.store = get_string(*snap, "store", true);
            if (w.manifest.size() != 64 || w.manifest.find_first_not_of("0123456789abcdef") != std::string::npos)
                throw DataError("snapshot manifest must be 64 lowercase hex digits");
            if (w.store.empty()) throw DataError("snapshot store must not be empty");
        } else {
            w.snapshot_dir = get_string(*snap, "dir", true);
            if (w.snapshot_dir.empty() || w.snapshot_dir[0] != '/')
                throw DataError("snapshot dir must be an absolute path");
        }
        w.concurrency = static_cast<size_t>(get_int(j, "concurrency", 1000, 1, 1000000));
        int64_t wait_ms = get_int(j, "wait_ms", 0, 0, 900000);
        get_int(j, "mem_mib", 128, 1, 1 << 20);
        w.start_ms = steady_ms();
        w.deadline_ms = w.start_ms + wait_ms;
        w.respond = std::move(respond);
        Outbox out;
        {
            std::lock_guard lk(mu);
            if (stopping_all) {
                out.emplace_back(std::move(w.respond), error_json(503, "ServiceException", "assignd is stopping"));
            } else {
                waiters.push_back(std::move(w));
                auto mine = std::prev(waiters.end());
                pump(out);
                // Still waiting with no time to wait: throttled now.  (pump erased it
                // if it was served, so look it up by identity.)
                for (auto it = waiters.begin(); it != waiters.end(); ++it)
                    if (it == mine && wait_ms == 0) {
                        throttles++;
                        out.emplace_back(std::move(it->respond), throttle_response(*it));
                        waiters.erase(it);
                        break;
                    }
            }
        }
        flush(out);
    }

    HttpResponse release(const HttpRequest& req) {
        json j = parse_body(req);
        std::string lease = get_string(j, "lease", true);
        std::string outcome = get_string(j, "outcome", false, "ok");
        if (outcome != "ok" && outcome != "error" && outcome != "destroy")
            throw DataError("\"outcome\" must be ok, error or destroy");
        Outbox out;
        HttpResponse r = HttpResponse::no_content();
        {
            std::lock_guard lk(mu);
            Sandbox* s = table.find_lease(lease);
            if (!s) {
                auto v = void_leases.find(lease);
                return error_json(404, "ResourceNotFoundException",
                                  "lease " + lease + ": " +
                                      (v != void_leases.end() ? v->second : "unknown or already released"));
            }
            if (outcome == "destroy" || s->stop_on_release || stopping_all) {
                log_info("%s: released (%s): stopped", s->id.c_str(), outcome.c_str());
                stop_sandbox(*s);
            } else {
                table.to_idle(*s);
            }
            pump(out);
        }
        flush(out);
        return r;
    }

    HttpResponse list() {
        std::lock_guard lk(mu);
        json arr = json::array();
        int64_t now = steady_ms(), wall = wall_ms();
        for (const Sandbox* s : table.all())
            arr.push_back({{"id", s->id},
                           {"function", s->function},
                           {"version", s->version},
                           {"state", sandbox_state_name(s->state)},
                           {"pid", s->pid},
                           {"vsock", s->vsock},
                           {"invokes", s->invokes},
                           {"last_used_ms", wall - (now - s->last_used_ms)}});
        return HttpResponse::json(200, arr.dump());
    }

    HttpResponse drain(const HttpRequest& req) {
        std::string fn;
        if (!req.body.empty()) fn = get_string(parse_body(req), "function", false);
        std::lock_guard lk(mu);
        size_t stopped = 0, later = 0;
        for (const Sandbox* cs : table.all()) {
            Sandbox* s = table.find(cs->id);
            if (!fn.empty() && s->function != fn) continue;
            if (s->state == SandboxState::kIdle) {
                stop_sandbox(*s);
                stopped++;
            } else if (s->state == SandboxState::kBusy || s->state == SandboxState::kCreating) {
                s->stop_on_release = true;
                later++;
            }
        }
        drains++;
        log_info("drain %s: %zu stopped, %zu on release", fn.empty() ? "(all)" : fn.c_str(), stopped, later);
        return HttpResponse::json(200, json{{"stopped", stopped}, {"stopping_on_release", later}}.dump());
    }

    HttpResponse metrics() {
        JournalStats js = journal->stats();
        MetricsText m;
        std::lock_guard lk(mu);
        m.family("kindling_assign_sandboxes", "gauge", "Sandboxes on this host by state.");
        for (SandboxState st : {SandboxState::kCreating, SandboxState::kIdle, SandboxState::kBusy, SandboxState::kDead})
            m.sample("kindling_assign_sandboxes", uint64_t{table.count(st)}, "state", sandbox_state_name(st));
        m.family("kindling_assign_acquires_total", "counter", "Acquires served, warm (an idle sandbox) or cold (restored).");
        m.sample("kindling_assign_acquires_total", acquires_warm, "kind", "warm");
        m.sample("kindling_assign_acquires_total", acquires_cold, "kind", "cold");
        m.counter("kindling_assign_throttles_total", "Acquires answered 429.", throttles);
        m.counter("kindling_assign_restores_total", "Sandboxes restored.", restores);
        m.counter("kindling_assign_restore_failures_total", "Placements that failed.", restore_failures);
        m.histogram("kindling_assign_restore_seconds", "Spawn of fc-launch until its vsock socket accepts.",
                    restore_seconds);
        m.counter("kindling_assign_deaths_total", "Sandboxes whose fc-launch died unasked.", deaths);
        m.counter("kindling_assign_reaped_total", "Idle sandboxes stopped after the idle TTL.", reaped);
        m.counter("kindling_assign_journal_appends_total", "Journal records appended.", js.appends);
        m.counter("kindling_assign_journal_syncs_total", "Journal fdatasyncs (group commits).", js.syncs);
        m.counter("kindling_assign_journal_compactions_total", "Journal rewrites as the live table.", js.compactions);
        m.gauge("kindling_assign_journal_bytes", "Journal file size.", js.bytes);
        HttpResponse r{200, {}, m.text()};
        r.headers.set("Content-Type", MetricsText::kContentType);
        return r;
    }

    // ---- shutdown ----

    std::mutex mounts_mu;
    std::map<std::string, std::string> mounts;  // manifest id -> snapfs mountpoint

    void stop_all() {
        stopping_all = true;
        Outbox out;
        std::vector<int64_t> pids;
        {
            std::lock_guard lk(mu);
            for (auto& w : waiters)
                out.emplace_back(std::move(w.respond), error_json(503, "ServiceException", "assignd is stopping"));
            waiters.clear();
        }
        flush(out);
        // Placements in flight see stopping_all and give up.
        {
            std::lock_guard lk(threads_mu);
            for (auto& t : placements)
                if (t.thread.joinable()) t.thread.join();
            placements.clear();
        }
        {
            std::lock_guard lk(mu);
            for (const Sandbox* cs : table.all()) {
                Sandbox* s = table.find(cs->id);
                if (s->state == SandboxState::kDead) continue;
                pids.push_back(s->pid);
                stop_sandbox(*s);
            }
        }
        // Wait for them (the watcher reaps them), then SIGKILL what is left.
        int64_t deadline = steady_ms() + opt.stop_timeout_ms + 1000;
        for (;;) {
            {
                std::lock_guard lk(pidfd_mu);
                if (pidfds.empty()) break;
            }
            if (steady_ms() > deadline) {
                log_warn("sandboxes did not stop in time");
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        log_info("stopped %zu sandboxes", pids.size());
        unmount_all();
    }
};

AssignService::AssignService(AssignOptions options, std::unique_ptr<Journal> journal)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(journal))) {
    std::filesystem::create_directories(impl_->opt.run_dir);
    impl_->rebuild();
    HttpServerOptions so;
    so.label = "assignd API socket";
    so.server_name = "assignd";
    so.error_formatter = [](int status, const std::string& msg) {
        return error_json(status, status == 400 ? "InvalidRequestContentException" : "ServiceException", msg);
    };
    Impl* im = impl_.get();
    impl_->server = std::make_unique<HttpServer>(
        "unix:" + impl_->opt.socket,
        HttpAsyncHandler([im](const HttpRequest& req, HttpResponder r) { im->handle(req, std::move(r)); }), so);
}

AssignService::~AssignService() {
    try {
        stop();
    } catch (const std::exception& e) {
        log_error("%s", e.what());
    }
}

void AssignService::start() {
    impl_->watcher = std::thread([im = impl_.get()] { im->watcher_loop(); });
    impl_->server->start();
}

void AssignService::stop() {
    if (!impl_->server) return;
    impl_->server->stop();
    impl_->stop_all();
    impl_->watcher_stop = true;
    impl_->loop.wake();
    if (impl_->watcher.joinable()) impl_->watcher.join();
    impl_->journal->close();
    impl_->server.reset();
}

std::string AssignService::address() const { return impl_->server ? impl_->server->address() : ""; }

}  // namespace kindling

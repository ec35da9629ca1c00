// bench/restore: the issue-3 figures.  init-heavy (a 64 MiB table built in its init)
// from cold boot + init against restores from its snapshot with each memory backend
// (file, uffd lazy, uffd + REAP prefetch), time to first answer at a 16 MiB and a
// 64 MiB working set; restore -> first answer for a small function; restores per
// second with many clones started at once on this host's cores; and the uffd
// counters fc-launch --json reports at exit (faults, bytes copied, cost per fault).
//
// Every time is from just before posix_spawn of fc-launch to the first answer read
// on the vsock (the CONNECT handshake included), as in bench/boot.  The snapshot
// files are in the page cache (just written): this measures the VMM, not the chunk
// tiers.  Cases are interleaved run by run so load drift hits them all alike.
//
// Usage: restore-bench BUILD_DIR [RUNS] [COLD_RUNS] [CLONES] [ROUNDS]
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/vsock_client.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double us_since(Clock::time_point t) {
    return std::chrono::duration<double, std::micro>(Clock::now() - t).count();
}

struct Summary {
    double p10, p50, p90;
};
Summary summarize(std::vector<double> v) {
    if (v.empty()) return {0, 0, 0};
    std::sort(v.begin(), v.end());
    auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))]; };
    return {at(0.10), at(0.50), at(0.90)};
}
double median(const std::vector<double>& v) { return summarize(v).p50; }

// ---- children: every fc-launch/snap-make we start, so a signal or the watchdog
// can kill them all (async-signal-safe: lock-free atomics and kill()).
constexpr int kMaxChildren = 256;
std::array<std::atomic<pid_t>, kMaxChildren> g_children{};
std::atomic<bool> g_aborted{false};
static_assert(std::atomic<pid_t>::is_always_lock_free);

void kill_children() {
    for (auto& c : g_children) {
        pid_t p = c.load();
        if (p > 0) ::kill(p, SIGKILL);
    }
}
void add_child(pid_t pid) {
    for (auto& c : g_children) {
        pid_t expect = 0;
        if (c.compare_exchange_strong(expect, pid)) return;
    }
    ::kill(pid, SIGKILL);
    throw std::runtime_error("too many children");
}
void remove_child(pid_t pid) {
    for (auto& c : g_children) {
        pid_t expect = pid;
        if (c.compare_exchange_strong(expect, 0)) return;
    }
}
// SIGALRM is the watchdog of one step; SIGINT/SIGTERM stop the bench.  Killing the
// VMMs closes their sockets, so every blocked read returns and the step fails.
extern "C" void on_signal(int) {
    g_aborted = true;
    kill_children();
}

// Arms the watchdog for one step; steps do not nest.
class Watchdog {
public:
    explicit Watchdog(unsigned seconds) { ::alarm(seconds); }
    ~Watchdog() { ::alarm(0); }
    Watchdog(const Watchdog&) = delete;
    Watchdog& operator=(const Watchdog&) = delete;
};

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// One child process: stdout to a pipe we read at the end (fc-launch --json prints
// there when the VM stops), stderr to a file shown when something goes wrong.
class Child {
public:
    Child(const std::vector<std::string>& args, std::string err_path) : err_path_(std::move(err_path)) {
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        int out[2];
        if (::pipe2(out, O_CLOEXEC) < 0) throw std::runtime_error("pipe2 failed");
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        posix_spawn_file_actions_addopen(&fa, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        ::close(out[1]);
        if (rc != 0) {
            ::close(out[0]);
            throw std::runtime_error(args[0] + ": spawn failed: " + std::strerror(rc));
        }
        out_fd_ = out[0];
        add_child(pid_);
    }
    ~Child() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            reap();
        }
        if (out_fd_ >= 0) ::close(out_fd_);
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    // Reads stdout to its end and reaps the process; returns its exit status.
    int finish() {
        char b[4096];
        for (;;) {
            ssize_t n = ::read(out_fd_, b, sizeof b);
            if (n < 0 && errno == EINTR && !g_aborted) continue;
            if (n <= 0) break;
            out_.append(b, static_cast<size_t>(n));
        }
        return reap();
    }
    const std::string& out() const { return out_; }
    std::string errors() const { return slurp(err_path_); }
    // The last JSON object on stdout (fc-launch/snap-make --json).
    json out_json() const {
        auto p = out_.rfind("\n{");
        return json::parse(out_.substr(p == std::string::npos ? 0 : p + 1), nullptr, false);
    }

private:
    int reap() {
        int st = 0;
        while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
        }
        remove_child(pid_);
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    pid_t pid_ = -1;
    int out_fd_ = -1;
    std::string err_path_, out_;
};

// Retries the hybrid-vsock handshake until the VMM listens and the guest accepts.
bool connect_retry(bench::VsockClient& c, const std::string& uds, std::chrono::microseconds pause) {
    auto t = Clock::now();
    while (us_since(t) < 10e6 && !g_aborted) {
        if (c.connect(uds, 9000)) return true;
        std::this_thread::sleep_for(pause);
    }
    return false;
}

std::string g_dir;  // the temp dir
std::string g_fc;   // fc-launch

// Watches the temp dir for new files, so waiting for a VMM's socket costs no CPU:
// a client polling connect() would compete with the VMM for this host's 2 cores.
class DirWatch {
public:
    DirWatch() : fd_(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK)) {
        if (fd_ < 0 || ::inotify_add_watch(fd_, g_dir.c_str(), IN_CREATE) < 0)
            throw std::runtime_error(std::string("inotify: ") + std::strerror(errno));
    }
    ~DirWatch() { ::close(fd_); }
    DirWatch(const DirWatch&) = delete;
    DirWatch& operator=(const DirWatch&) = delete;
    // Waits until `path` exists (bounded by the watchdog and 10 s).
    bool wait_for(const std::string& path) {
        auto t = Clock::now();
        while (::access(path.c_str(), F_OK) != 0) {
            if (g_aborted || us_since(t) > 10e6) return false;
            pollfd p{fd_, POLLIN, 0};
            ::poll(&p, 1, 100);
            char b[4096];
            while (::read(fd_, b, sizeof b) > 0) {
            }
        }
        return true;
    }

private:
    int fd_;
};

// One VM from spawn to first answer; then EXIT 0 and its --json counters.
struct Sample {
    double listen_us = 0, accept_us = 0, answer_us = 0;
    double again_us = 0;  // the same request once more on the warm VM (0 if not asked)
    std::string answer;
    json stats;
};

Sample first_answer(std::vector<std::string> args, const std::string& request, const std::string& tag,
                    bool again = false, unsigned timeout_s = 60) {
    Watchdog wd(timeout_s);
    std::string uds = g_dir + "/" + tag + ".sock";
    ::unlink(uds.c_str());
    args.insert(args.end(), {"--vsock", uds, "--json", "-q", "--console", "/dev/null"});
    Sample s;
    DirWatch watch;
    auto t0 = Clock::now();
    Child vm(args, g_dir + "/" + tag + ".err");
    bench::VsockClient c;
    // The socket file exists from bind(); connect() succeeds once the VMM listens.
    if (!watch.wait_for(uds) || !connect_retry(c, uds, std::chrono::microseconds(20)))
        throw std::runtime_error(tag + ": could not connect: " + vm.errors());
    s.accept_us = us_since(t0);
    s.listen_us = std::chrono::duration<double, std::micro>(c.connected_at - t0).count();
    bool err = false;
    try {
        s.answer = c.invoke(request, &err);
    } catch (const std::exception& e) {
        throw std::runtime_error(tag + ": " + e.what() + ": " + vm.errors());
    }
    s.answer_us = us_since(t0);
    if (err) throw std::runtime_error(tag + ": the function answered ERR " + s.answer);
    if (again) {
        auto t1 = Clock::now();
        if (c.invoke(request) != s.answer) throw std::runtime_error(tag + ": a second invoke answered differently");
        s.again_us = us_since(t1);
    }
    c.send_raw("EXIT 0\n");
    int rc = vm.finish();
    if (rc != 0) throw std::runtime_error(tag + ": fc-launch exited " + std::to_string(rc) + ": " + vm.errors());
    s.stats = vm.out_json();
    return s;
}

json snap_make(const std::string& build, const std::string& elf, unsigned mem, const std::string& boot_args,
               const std::string& out) {
    Watchdog wd(180);
    std::vector<std::string> a = {build + "/bin/snap-make", "--nano", build + "/guest/" + elf, "--mem",
                                  std::to_string(mem), "--out", out, "--json", "-q"};
    if (!boot_args.empty()) a.insert(a.end(), {"--boot-args", boot_args});
    Child c(a, out + ".err");
    if (int rc = c.finish(); rc != 0)
        throw std::runtime_error("snap-make " + out + " exited " + std::to_string(rc) + ": " + c.errors());
    return c.out_json();
}

void print_row(const char* name, const std::vector<double>& us) {
    Summary s = summarize(us);
    std::printf("    %-44s p50 %8.2f ms   p10 %8.2f   p90 %8.2f\n", name, s.p50 / 1000, s.p10 / 1000, s.p90 / 1000);
}

double mem_field(const Sample& s, const char* k) {
    if (!s.stats.contains("memory")) return 0;
    const json& m = s.stats["memory"];
    return m.contains(k) ? m[k].get<double>() : 0;
}
double median_field(const std::vector<Sample>& v, const char* k) {
    std::vector<double> x;
    for (auto& s : v) x.push_back(mem_field(s, k));
    return median(x);
}
std::vector<double> answer_times(const std::vector<Sample>& v) {
    std::vector<double> x;
    for (auto& s : v) x.push_back(s.answer_us);
    return x;
}

struct Config {
    std::string build;
    int runs, cold_runs, clones, rounds;
};

// Figure 1 and 3 for one working set.
void init_heavy(const Config& cf, int touch) {
    const std::string args = "table=64 touch=" + std::to_string(touch);
    std::string snap = g_dir + "/heavy" + std::to_string(touch), log = snap + ".access";
    json made = snap_make(cf.build, "init-heavy.elf", 128, args, snap);
    // REAP: record the working set once with a restore that serves the same request.
    Sample rec = first_answer({g_fc, "--restore", snap, "--record-access", log}, "walk", "record");
    const std::string expect = rec.answer;

    struct Case {
        const char* name;
        std::vector<std::string> args;
        int runs;
        std::vector<Sample> got;
    };
    std::vector<Case> cases = {
        {"(a) cold boot + init -> first answer",
         {g_fc, "--kernel", cf.build + "/guest/init-heavy.elf", "--mem", "128", "--boot-args", args},
         cf.cold_runs,
         {}},
        {"(b) restore, file (shared page cache)",
         {g_fc, "--restore", snap, "--mem-backend", "file", "--allow-shared-pages"},
         cf.runs,
         {}},
        {"(c) restore, uffd lazy", {g_fc, "--restore", snap}, cf.runs, {}},
        {"(d) restore, uffd + prefetch (REAP)", {g_fc, "--restore", snap, "--prefetch", log}, cf.runs, {}},
    };
    for (size_t k = 1; k < cases.size(); ++k) first_answer(cases[k].args, "walk", "warm");  // warm-up, discarded
    for (int i = 0; i < cf.runs; ++i)
        for (auto& c : cases) {
            if (i >= c.runs) continue;
            Sample s = first_answer(c.args, "walk", "heavy", true);
            if (s.answer != expect)
                throw std::runtime_error(std::string(c.name) + ": answered " + s.answer + ", expected " + expect);
            c.got.push_back(std::move(s));
        }

    json info = json::parse(expect, nullptr, false);
    int pages = info.is_object() ? info.value("pages", 0) : 0;
    std::printf("\n  init-heavy table=64 MiB --mem 128, touch=%d: working set %d pages (%.1f MiB); "
                "snapshot init_ms %.0f, mem data %.1f MiB\n",
                touch, pages, pages * 4096.0 / (1 << 20), made.value("init_ms", 0.0),
                made.value("mem_data_bytes", 0.0) / (1 << 20));
    for (auto& c : cases) print_row(c.name, answer_times(c.got));
    std::printf("    where the time goes (p50, ms):        %14s %14s %12s %12s\n", "VMM listening", "guest accepted",
                "first walk", "walk again");
    for (auto& c : cases) {
        std::vector<double> li, ac, wa, ag;
        for (auto& s : c.got)
            li.push_back(s.listen_us), ac.push_back(s.accept_us), wa.push_back(s.answer_us - s.accept_us),
                ag.push_back(s.again_us);
        std::printf("      %-36s %14.2f %14.2f %12.2f %12.2f\n", std::string(c.name, 3).c_str(), median(li) / 1000,
                    median(ac) / 1000, median(wa) / 1000, median(ag) / 1000);
    }
    double a = median(answer_times(cases[0].got)), b = median(answer_times(cases[1].got)),
           l = median(answer_times(cases[2].got)), p = median(answer_times(cases[3].got));
    std::printf("    ratios (p50): (a)/(d) %.1fx (goal >= 50x)   (c)/(d) %.2fx%s   (c)/(b) %.2fx   (d)/(b) %.2fx\n",
                a / p, l / p, touch == 100 ? " (goal >= 3x; REAP 3.7x)" : "", l / b, p / b);
    std::printf("    uffd counters at exit (p50):  %8s %8s %9s %10s %10s %11s\n", "faults", "copied", "MiB", "fault_us",
                "prefetched", "prefetch_ms");
    for (size_t k = 2; k < 4; ++k) {
        auto& g = cases[k].got;
        std::printf("      %-28s %8.0f %8.0f %9.1f %10.2f %10.0f %11.2f\n", k == 2 ? "(c) lazy" : "(d) prefetch",
                    median_field(g, "faults"), median_field(g, "pages_copied"),
                    median_field(g, "bytes_copied") / (1 << 20), median_field(g, "fault_us_avg"),
                    median_field(g, "prefetched_pages"), median_field(g, "prefetch_ms"));
    }
    double faults = median_field(cases[2].got, "faults");
    double pf = median_field(cases[3].got, "prefetch_ms") * 1000, pp = median_field(cases[3].got, "prefetched_pages");
    std::vector<double> touch_d;
    for (auto& s : cases[3].got) touch_d.push_back(s.answer_us - s.accept_us - s.again_us);
    if (faults > 0 && pp > 0 && pages > 0)
        std::printf("    per page (us): lazy fault end to end ((c)-(d))/faults + prefetch/page %.1f;  prefetch %.2f;\n"
                    "      handler time per lazy fault (fault_us) %.1f;  guest first touch of a prefetched page "
                    "((d) first walk - walk again)/pages %.1f\n",
                    (l - p) / faults + pf / pp, pf / pp, median_field(cases[2].got, "fault_us_avg"),
                    median(touch_d) / pages);
}

// Restore -> first answer for a small function, with where the time goes.
void small_function(const Config& cf, const std::string& snap) {
    std::string log = snap + ".access";
    first_answer({g_fc, "--restore", snap, "--record-access", log}, "", "record");
    struct Case {
        const char* name;
        std::vector<std::string> args;
        std::vector<Sample> got;
    };
    std::vector<Case> cases = {
        {"restore, uffd lazy", {g_fc, "--restore", snap}, {}},
        {"restore, uffd + prefetch", {g_fc, "--restore", snap, "--prefetch", log}, {}},
        {"restore, file (shared page cache)", {g_fc, "--restore", snap, "--mem-backend", "file", "--allow-shared-pages"}, {}},
    };
    std::vector<double> floor;
    for (auto& c : cases) first_answer(c.args, "", "warm");
    const int n = cf.runs * 2;
    for (int i = 0; i < n; ++i) {
        for (auto& c : cases) {
            Sample s = first_answer(c.args, "", "small");
            if (s.answer.size() != 36) throw std::runtime_error("uuid answered " + s.answer);
            c.got.push_back(std::move(s));
        }
        // The floor: starting the VMM process at all (exec, dynamic linking, exit).
        Watchdog wd(10);
        auto t0 = Clock::now();
        Child v({g_fc, "--version"}, g_dir + "/version.err");
        v.finish();
        floor.push_back(us_since(t0));
    }
    std::printf("\n  small function: uuid, --mem 128, restore -> first answer (%d runs each)\n", n);
    for (auto& c : cases) print_row(c.name, answer_times(c.got));
    print_row("floor: spawn fc-launch --version -> exit", floor);
    auto& lazy = cases[0].got;
    std::vector<double> listen, accept;
    for (auto& s : lazy) listen.push_back(s.listen_us), accept.push_back(s.accept_us);
    std::printf("    uffd lazy: spawn -> VMM listening p50 %.2f ms, -> guest accepted CONNECT %.2f ms, -> answer %.2f ms;"
                " %.0f faults, fault_us %.1f\n",
                median(listen) / 1000, median(accept) / 1000, median(answer_times(lazy)) / 1000,
                median_field(lazy, "faults"), median_field(lazy, "fault_us_avg"));
    std::printf("    goal: restore -> first answer <= 5 ms (Firecracker): uffd lazy p50 %.2f ms\n",
                median(answer_times(lazy)) / 1000);
}

// Figure 2: N clones of one snapshot started at once, each with its own socket.
void concurrent(const Config& cf, const std::string& snap) {
    std::vector<double> rates, all_ms, latency;
    uint64_t total_answers = 0;
    for (int r = 0; r < cf.rounds; ++r) {
        Watchdog wd(120);
        std::vector<std::unique_ptr<Child>> vms(cf.clones);
        std::vector<std::unique_ptr<bench::VsockClient>> conns(cf.clones);
        std::vector<std::string> answers(cf.clones), errors(cf.clones);
        std::vector<double> done(cf.clones);
        std::atomic<bool> go{false};
        Clock::time_point t0;
        std::vector<std::thread> th;
        for (int i = 0; i < cf.clones; ++i)
            th.emplace_back([&, i] {
                while (!go.load()) std::this_thread::yield();
                try {
                    std::string uds = g_dir + "/c" + std::to_string(i) + ".sock";
                    vms[i] = std::make_unique<Child>(
                        std::vector<std::string>{g_fc, "--restore", snap, "--vsock", uds, "-q", "--console", "/dev/null"},
                        g_dir + "/c" + std::to_string(i) + ".err");
                    conns[i] = std::make_unique<bench::VsockClient>();
                    if (!connect_retry(*conns[i], uds, std::chrono::microseconds(500)))
                        throw std::runtime_error("could not connect");
                    answers[i] = conns[i]->invoke("");
                    done[i] = us_since(t0);
                } catch (const std::exception& e) {
                    errors[i] = e.what();
                }
            });
        for (int i = 0; i < cf.clones; ++i) ::unlink((g_dir + "/c" + std::to_string(i) + ".sock").c_str());
        t0 = Clock::now();
        go = true;
        for (auto& t : th) t.join();
        std::set<std::string> distinct;
        for (int i = 0; i < cf.clones; ++i) {
            if (!errors[i].empty())
                throw std::runtime_error("clone " + std::to_string(i) + ": " + errors[i] + ": " +
                                         (vms[i] ? vms[i]->errors() : std::string()));
            distinct.insert(answers[i]);
            latency.push_back(done[i]);
        }
        if (static_cast<int>(distinct.size()) != cf.clones)
            throw std::runtime_error("clones answered " + std::to_string(distinct.size()) + " distinct uuids of " +
                                     std::to_string(cf.clones));
        double all = *std::max_element(done.begin(), done.end());
        all_ms.push_back(all / 1000);
        rates.push_back(cf.clones / (all / 1e6));
        total_answers += distinct.size();
        for (int i = 0; i < cf.clones; ++i) conns[i]->send_raw("EXIT 0\n");
        for (int i = 0; i < cf.clones; ++i)
            if (int rc = vms[i]->finish(); rc != 0)
                throw std::runtime_error("clone " + std::to_string(i) + " exited " + std::to_string(rc) + ": " +
                                         vms[i]->errors());
    }
    unsigned cores = std::thread::hardware_concurrency();
    Summary s = summarize(rates), a = summarize(all_ms), l = summarize(latency);
    std::printf("\n  concurrent restores: %d clones of the uuid snapshot started at once (uffd lazy, own --vsock each), "
                "%d rounds, %u cores\n",
                cf.clones, cf.rounds, cores);
    std::printf("    %-44s p50 %8.1f /s   p10 %8.1f   p90 %8.1f\n", "restores/s (all answered one invoke)", s.p50, s.p10,
                s.p90);
    std::printf("    %-44s p50 %8.2f ms   p10 %8.2f   p90 %8.2f\n", "start -> all answered", a.p50, a.p10, a.p90);
    std::printf("    %-44s p50 %8.2f ms   p10 %8.2f   p90 %8.2f\n", "start -> each clone's answer", l.p50 / 1000,
                l.p10 / 1000, l.p90 / 1000);
    std::printf("    vs Firecracker's 5 restores/s per core = %u/s here: %.1fx;  %llu uuids, all distinct\n", 5 * cores,
                s.p50 / (5.0 * cores), static_cast<unsigned long long>(total_answers));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: restore-bench BUILD_DIR [RUNS] [COLD_RUNS] [CLONES] [ROUNDS]\n");
        return 64;
    }
    Config cf{argv[1], argc > 2 ? std::atoi(argv[2]) : 15, argc > 3 ? std::atoi(argv[3]) : 5,
              argc > 4 ? std::atoi(argv[4]) : 32, argc > 5 ? std::atoi(argv[5]) : 3};
    cf.runs = std::max(cf.runs, 1);
    cf.cold_runs = std::clamp(cf.cold_runs, 1, cf.runs);
    cf.clones = std::clamp(cf.clones, 1, kMaxChildren - 8);
    cf.rounds = std::max(cf.rounds, 1);
    g_fc = cf.build + "/bin/fc-launch";

    struct sigaction sa{};
    sa.sa_handler = on_signal;  // no SA_RESTART: blocked calls return EINTR
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGALRM, SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);  // a VMM that died makes writes fail, not kill us

    char tmpl[] = "/tmp/restore-bench.XXXXXX";
    if (!::mkdtemp(tmpl)) {
        std::perror("mkdtemp");
        return 70;
    }
    g_dir = tmpl;
    int status = 0;
    try {
        const std::string B = cf.build;
        std::printf("bench/restore: %d runs per restore case, %d cold boots per working set; time = spawn of fc-launch "
                    "-> first answer read (CONNECT 9000 + one INVOKE), page cache warm\n",
                    cf.runs, cf.cold_runs);
        std::printf("  reproduce (S = snapshot dir, V = vsock socket; each VM stopped with EXIT 0 for its --json):\n"
                    "    snap-make --nano %s/guest/init-heavy.elf --mem 128 --boot-args \"table=64 touch=T\" --out S   "
                    "(T = 25, 100)\n"
                    "    (a) fc-launch --kernel %s/guest/init-heavy.elf --mem 128 --boot-args \"table=64 touch=T\" "
                    "--vsock V;  INVOKE walk\n"
                    "    (b) fc-launch --restore S --vsock V --mem-backend file --allow-shared-pages;  INVOKE walk\n"
                    "    (c) fc-launch --restore S --vsock V;  INVOKE walk\n"
                    "    (d) fc-launch --restore S --vsock V --record-access LOG;  INVOKE walk   (once), then\n"
                    "        fc-launch --restore S --vsock V --prefetch LOG;  INVOKE walk\n"
                    "    small: snap-make --nano %s/guest/uuid.elf --out U;  fc-launch --restore U --vsock V;  INVOKE \"\"\n"
                    "    concurrent: %d x fc-launch --restore U --vsock V_i at once;  INVOKE \"\" on each\n",
                    B.c_str(), B.c_str(), B.c_str(), cf.clones);
        std::fflush(stdout);
        init_heavy(cf, 25);
        std::fflush(stdout);
        init_heavy(cf, 100);
        std::fflush(stdout);
        std::string small = g_dir + "/uuid";
        snap_make(cf.build, "uuid.elf", 128, "", small);
        small_function(cf, small);
        std::fflush(stdout);
        concurrent(cf, small);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "restore-bench: %s%s\n", g_aborted ? "interrupted or timed out: " : "", e.what());
        status = 1;
    }
    kill_children();
    std::string rm = "rm -rf '" + g_dir + "'";
    (void)!std::system(rm.c_str());
    return status;
}

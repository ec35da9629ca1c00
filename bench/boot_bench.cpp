// bench/boot: nano cold start (process start -> first invoke answered) against
// fork+exec of the same function as a native process, VMM memory overhead, and the
// warm invoke round trip over vsock with VM exits per invoke.
//
// Usage: boot-bench BUILD_DIR [RUNS]
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"

namespace {

using bench::Clock;
using bench::connect_retry;
using bench::print_row;
using bench::spawn;
using bench::summarize;
using bench::Summary;
using bench::us_since;
using bench::wait_exit;

std::vector<double> g_listen_us, g_accept_us;  // spawn -> VMM listening; -> guest accepted

double cold_start_once(const std::string& fc, const std::string& elf, const std::string& uds,
                       const std::vector<std::string>& extra = {}) {
    ::unlink(uds.c_str());
    int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    std::vector<std::string> args = {fc, "--kernel", elf, "--vsock", uds, "--mem", "32", "-q"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto t0 = Clock::now();
    pid_t pid = spawn(args, -1, devnull);
    bench::VsockClient c;
    if (!connect_retry(c, uds)) {
        std::fprintf(stderr, "boot-bench: could not connect to %s\n", uds.c_str());
        std::exit(1);
    }
    double accepted = us_since(t0);
    std::string r = c.invoke("{\"bench\":1}");
    double us = us_since(t0);
    if (extra.empty()) {  // the baseline's breakdown
        g_listen_us.push_back(std::chrono::duration<double, std::micro>(c.connected_at - t0).count());
        g_accept_us.push_back(accepted);
    }
    c.send_raw("EXIT 0\n");
    int rc = wait_exit(pid);
    ::close(devnull);
    if (r.find("hello") == std::string::npos || rc != 0) {
        std::fprintf(stderr, "boot-bench: unexpected answer '%s' or exit %d\n", r.c_str(), rc);
        std::exit(1);
    }
    return us;
}

double native_once(const std::string& exe) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) std::exit(1);
    auto t0 = Clock::now();
    pid_t pid = spawn({exe}, in[0], out[1]);
    ::close(in[0]);
    ::close(out[1]);
    const char req[] = "{\"bench\":1}";
    (void)!::write(in[1], req, sizeof req - 1);
    ::close(in[1]);
    std::string resp;
    char b[4096];
    ssize_t n;
    while ((n = ::read(out[0], b, sizeof b)) > 0) resp.append(b, static_cast<size_t>(n));
    ::close(out[0]);
    wait_exit(pid);
    double us = us_since(t0);
    if (resp.find("hello") == std::string::npos) {
        std::fprintf(stderr, "boot-bench: native answered '%s'\n", resp.c_str());
        std::exit(1);
    }
    return us;
}

// RSS of the whole process, of its guest memory, and the anonymous RSS outside the
// guest, from /proc/PID/smaps, in KiB.
void rss_of(pid_t pid, uint64_t guest_kib, uint64_t& total, uint64_t& guest, uint64_t& anonymous) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/smaps");
    std::string line;
    total = guest = anonymous = 0;
    uint64_t size = 0, rss = 0, anon = 0;
    while (std::getline(f, line)) {
        std::istringstream is(line);
        std::string key;
        is >> key;
        uint64_t v = 0;
        if (key == "Size:" && is >> v) size = v;
        if (key == "Rss:" && is >> v) rss = v;
        // Anonymous, not Private_Dirty: the pages of a freshly linked binary are still
        // dirty in the page cache and would count as the VMM's own.
        if (key == "Anonymous:" && is >> v) anon = v;
        if (key != "VmFlags:") continue;  // the last line of a mapping
        // Guest RAM carries a huge-page advice (hg or nh; a nano boot splits it into
        // three mappings, fc-launch's nano_small_pages), or has the guest's size.
        bool in_guest = size == guest_kib || line.find(" hg") != std::string::npos ||
                        line.find(" nh") != std::string::npos;
        total += rss;
        if (in_guest) guest += rss;
        else anonymous += anon;
    }
}

// The warm round trip's floor without a VM: the same client write + read over a
// Unix socket to a thread that blocks in epoll_wait, reads and answers.  Both
// thread wake-ups are there, the VM exit is not.
std::vector<double> host_echo_round_trips(int n) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) std::exit(1);
    std::thread echo([fd = sv[1]] {
        int ep = ::epoll_create1(EPOLL_CLOEXEC);
        epoll_event ev{EPOLLIN, {}};
        ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        char b[256];
        for (;;) {
            ::epoll_wait(ep, &ev, 1, -1);
            ssize_t r = ::read(fd, b, sizeof b);
            if (r <= 0) break;
            (void)!::write(fd, b, static_cast<size_t>(r));
        }
        ::close(ep);
    });
    std::vector<double> out;
    char b[256];
    for (int i = 0; i < n + 200; ++i) {
        auto t = Clock::now();
        (void)!::write(sv[0], "INVOKE 7\n{\"n\":1}", 16);
        (void)!::read(sv[0], b, sizeof b);
        if (i >= 200) out.push_back(us_since(t));
    }
    ::close(sv[0]);
    echo.join();
    ::close(sv[1]);
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: boot-bench BUILD_DIR [RUNS [NAME=FC-LAUNCH-ARGS...]]\n");
        return 64;
    }
    // Variants: cold starts with more fc-launch flags (space-separated; {tmp} is this
    // run's temp dir), each run next to a baseline run, compared pairwise.
    struct Variant {
        std::string name;
        std::vector<std::string> args;
        std::vector<double> us, added_us;
    };
    std::vector<Variant> variants;
    std::string o = argv[1];
    int runs = argc > 2 ? std::atoi(argv[2]) : 30;
    std::string fc = o + "/bin/fc-launch", elf = o + "/guest/hello.elf", native = o + "/guest/native/hello";
    char tmpl[] = "/tmp/boot-bench.XXXXXX";
    std::string dir = ::mkdtemp(tmpl);
    std::string uds = dir + "/v.sock";
    for (int i = 3; i < argc; ++i) {
        std::string spec = argv[i];
        size_t eq = spec.find('=');
        if (eq == std::string::npos) {
            std::fprintf(stderr, "boot-bench: variant '%s': expected NAME=ARGS\n", argv[i]);
            return 64;
        }
        Variant v{spec.substr(0, eq), {}, {}, {}};
        std::istringstream words(spec.substr(eq + 1));
        for (std::string w; words >> w;) {
            if (size_t t = w.find("{tmp}"); t != std::string::npos) w.replace(t, 5, dir);
            v.args.push_back(w);
        }
        variants.push_back(std::move(v));
    }

    std::printf("bench/boot: %d runs each (times in ms unless noted)\n", runs);
    cold_start_once(fc, elf, uds);  // warm the page cache and KVM module state
    for (Variant& v : variants) cold_start_once(fc, elf, uds, v.args);
    std::vector<double> cold, nat;
    for (int i = 0; i < runs; ++i) {
        cold.push_back(cold_start_once(fc, elf, uds));
        nat.push_back(native_once(native));
        for (Variant& v : variants) {
            v.us.push_back(cold_start_once(fc, elf, uds, v.args));
            v.added_us.push_back(v.us.back() - cold.back());
        }
    }
    Summary sc = summarize(cold), sn = summarize(nat);
    print_row("nano cold start -> first answer", sc, "ms", 1000);
    print_row("native fork+exec -> answer (floor)", sn, "ms", 1000);
    std::printf("  ratio cold/native (p50): %.1fx   goal: cold start <= 2 ms\n", sc.p50 / sn.p50);
    std::printf("    of which: spawn -> VMM listening p50 %.2f ms, -> guest accepted CONNECT p50 %.2f ms\n",
                summarize(g_listen_us).p50 / 1000, summarize(g_accept_us).p50 / 1000);
    for (const Variant& v : variants) {
        std::string name = "cold start with " + v.name;
        print_row(name.c_str(), summarize(v.us), "ms", 1000);
        print_row("  added (paired with the baseline)", summarize(v.added_us), "ms", 1000);
    }
    if (!variants.empty() && std::getenv("BOOT_COLD_ONLY")) return 0;

    // Warm invokes on one VM, with the exit counters from --json.
    ::unlink(uds.c_str());
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0) return 1;
    const uint64_t mem_mib = 32;
    pid_t pid = spawn({fc, "--kernel", elf, "--vsock", uds, "--mem", std::to_string(mem_mib), "--json", "-q",
                       "--console", dir + "/console"},
                      -1, out[1]);
    ::close(out[1]);
    bench::VsockClient c;
    if (!connect_retry(c, uds)) return 1;
    const int warm_n = 2000;
    std::vector<double> warm;
    for (int i = 0; i < 200; ++i) c.invoke("{}");
    for (int i = 0; i < warm_n; ++i) {
        auto t = Clock::now();
        c.invoke("{\"n\":1}");
        warm.push_back(us_since(t));
    }
    uint64_t total_kib, guest_kib, dirty_kib;
    rss_of(pid, mem_mib << 10, total_kib, guest_kib, dirty_kib);
    c.send_raw("EXIT 0\n");
    std::string js;
    char b[4096];
    ssize_t n;
    while ((n = ::read(out[0], b, sizeof b)) > 0) js.append(b, static_cast<size_t>(n));
    wait_exit(pid);
    auto field = [&](const char* k) {
        auto p = js.find(std::string("\"") + k + "\":");
        return p == std::string::npos ? 0.0 : std::atof(js.c_str() + p + std::strlen(k) + 3);
    };
    Summary sw = summarize(warm);
    print_row("warm invoke round trip (us)", sw, "us", 1);
    Summary sh = summarize(host_echo_round_trips(warm_n));
    print_row("  floor: Unix socket echo to a thread (us)", sh, "us", 1);
    std::printf("    spread p99-p10: %.0f us with the VM, %.0f us for the floor (host scheduling of the two wake-ups,\n"
                "    vCPU thread out of epoll_wait and client out of read, on shared cores); the VM adds ~%.0f us at p10\n"
                "    (one PVM exit for KN_PORT_WAIT re-entering the guest, and the guest's work)\n",
                sw.p99 - sw.p10, sh.p99 - sh.p10, sw.p10 - sh.p10);
    double invokes = warm_n + 200 + 0.0;
    std::printf("  VM exits per warm invoke: %.2f (%.0f exits, %.0f waits for %.0f invokes incl. boot)\n",
                field("exits") / invokes, field("exits"), field("waits"), invokes);
    std::printf("  VMM memory overhead: %.2f MiB (RSS %.2f MiB - guest pages %.2f MiB)   goal: <= 3 MiB\n",
                (total_kib - guest_kib) / 1024.0, total_kib / 1024.0, guest_kib / 1024.0);
    std::printf("    of which anonymous (heap, stacks, data; not shareable; was Private_Dirty, which also\n"
                "    counted a freshly linked binary's dirty page-cache pages): %.2f MiB\n",
                dirty_kib / 1024.0);
    std::printf("    the rest is fc-launch's own file pages (static-pie: no libc/libm/ld.so), shared between VMMs\n");
    std::string rm = "rm -rf " + dir;
    (void)!std::system(rm.c_str());
    return 0;
}

// bench/seccomp: what fc-launch's per-thread seccomp filters cost.  In one run,
// alternating so drift hits both sides alike: nano cold start (process start ->
// first invoke answered) with the filters and with --no-seccomp; the warm invoke
// round trip on two VMs (one of each) in alternating blocks, per VM exit; and the
// filter's cost per allowed system call measured in-process on a thread that
// installed the vCPU filter.
//
// Usage: seccomp-bench BUILD_DIR [RUNS]
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "bench/bench_util.h"
#include "seccomp/thread_filter.h"

namespace {

using namespace bench;

double cold_start_once(const std::string& fc, const std::string& elf, const std::string& uds, bool filters) {
    ::unlink(uds.c_str());
    int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    std::vector<std::string> args = {fc, "--kernel", elf, "--vsock", uds, "--mem", "32", "-q"};
    if (!filters) args.push_back("--no-seccomp");
    auto t0 = Clock::now();
    pid_t pid = spawn(args, -1, devnull);
    VsockClient c;
    if (!connect_retry(c, uds)) {
        std::fprintf(stderr, "seccomp-bench: could not connect to %s\n", uds.c_str());
        std::exit(1);
    }
    std::string r = c.invoke("{\"bench\":1}");
    double us = us_since(t0);
    c.send_raw("EXIT 0\n");
    int rc = wait_exit(pid);
    ::close(devnull);
    if (r.find("hello") == std::string::npos || rc != 0) {
        std::fprintf(stderr, "seccomp-bench: unexpected answer '%s' or exit %d\n", r.c_str(), rc);
        std::exit(1);
    }
    return us;
}

// A warm VM: fc-launch with --json on a pipe, one vsock connection.
struct WarmVm {
    pid_t pid = -1;
    int json_fd = -1;
    VsockClient c;
    std::vector<double> rtt_us;

    WarmVm(const std::string& fc, const std::string& elf, const std::string& uds, const std::string& console,
           bool filters) {
        ::unlink(uds.c_str());
        int out[2];
        if (pipe2(out, O_CLOEXEC) < 0) std::exit(1);
        std::vector<std::string> args = {fc, "--kernel", elf, "--vsock", uds, "--mem", "32", "--json", "-q",
                                         "--console", console};
        if (!filters) args.push_back("--no-seccomp");
        pid = spawn(args, -1, out[1]);
        ::close(out[1]);
        json_fd = out[0];
        if (!connect_retry(c, uds)) std::exit(1);
        for (int i = 0; i < 200; ++i) c.invoke("{}");
    }
    void block(int n) {
        for (int i = 0; i < n; ++i) {
            auto t = Clock::now();
            c.invoke("{\"n\":1}");
            rtt_us.push_back(us_since(t));
        }
    }
    // Stops the VM; VM exits per invoke from its --json counters.
    double exits_per_invoke() {
        c.send_raw("EXIT 0\n");
        std::string js;
        char b[4096];
        ssize_t n;
        while ((n = ::read(json_fd, b, sizeof b)) > 0) js.append(b, static_cast<size_t>(n));
        ::close(json_fd);
        wait_exit(pid);
        auto p = js.find("\"exits\":");
        double exits = p == std::string::npos ? 0 : std::atof(js.c_str() + p + 8);
        return exits / (rtt_us.size() + 200.0);
    }
};

// ns per getpid() on a fresh thread, with or without the vCPU thread's filter.
double syscall_ns(bool filtered) {
    double ns = 0;
    std::thread t([&] {
        if (filtered) kindling::install_thread_filter(kindling::ThreadKind::kVcpu);
        const int n = 200000;
        auto t0 = Clock::now();
        for (int i = 0; i < n; ++i) ::syscall(SYS_getpid);
        ns = us_since(t0) * 1000 / n;
    });
    t.join();
    return ns;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: seccomp-bench BUILD_DIR [RUNS]\n");
        return 64;
    }
    std::string o = argv[1];
    int runs = argc > 2 ? std::atoi(argv[2]) : 30;
    std::string fc = o + "/bin/fc-launch", elf = o + "/guest/hello.elf";
    char tmpl[] = "/tmp/seccomp-bench.XXXXXX";
    std::string dir = ::mkdtemp(tmpl);
    std::string uds = dir + "/v.sock";

    std::printf("bench/seccomp: %d runs each, alternating filters on/off (--no-seccomp)\n", runs);
    cold_start_once(fc, elf, uds, true);  // warm the page cache and KVM module state
    std::vector<double> on, off, diff;
    for (int i = 0; i < runs; ++i) {
        bool first_on = i % 2 == 0;
        double a = cold_start_once(fc, elf, uds, first_on);
        double b = cold_start_once(fc, elf, uds, !first_on);
        on.push_back(first_on ? a : b);
        off.push_back(first_on ? b : a);
        diff.push_back(on.back() - off.back());
    }
    Summary son = summarize(on), soff = summarize(off);
    print_row("nano cold start, seccomp on", son, "ms", 1000);
    print_row("nano cold start, --no-seccomp", soff, "ms", 1000);
    print_row("added by seccomp (paired on - off)", summarize(diff), "us", 1);
    std::printf("  goal: jail + seccomp together add < 500 us to cold start\n");

    // Warm invokes: one VM each, alternating blocks of 250.
    WarmVm von(fc, elf, dir + "/on.sock", dir + "/on.console", true);
    WarmVm voff(fc, elf, dir + "/off.sock", dir + "/off.console", false);
    for (int i = 0; i < 8; ++i) {
        von.block(250);
        voff.block(250);
    }
    double epi_on = von.exits_per_invoke(), epi_off = voff.exits_per_invoke();
    Summary won = summarize(von.rtt_us), woff = summarize(voff.rtt_us);
    print_row("warm invoke round trip, seccomp on (us)", won, "us", 1);
    print_row("warm invoke round trip, --no-seccomp (us)", woff, "us", 1);
    std::printf("  VM exits per warm invoke: %.2f on, %.2f off; p50 difference per exit: %+.2f us\n", epi_on, epi_off,
                (won.p50 - woff.p50) / (epi_on > 0 ? epi_on : 1));

    std::vector<double> plain, filtered;
    for (int i = 0; i < 5; ++i) {
        plain.push_back(syscall_ns(false));
        filtered.push_back(syscall_ns(true));
    }
    double p = summarize(plain).p50, f = summarize(filtered).p50;
    std::printf("  getpid(): %.0f ns plain, %.0f ns under the vCPU filter: %+.0f ns per allowed system call\n", p, f,
                f - p);
    std::string rm = "rm -rf " + dir;
    (void)!std::system(rm.c_str());
    return 0;
}

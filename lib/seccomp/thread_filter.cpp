#include "seccomp/thread_filter.h"

#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>

#include "base/error.h"
#include "base/log.h"
#include "seccomp/filter_program.h"

namespace kindling {

namespace {

std::atomic<bool> g_enabled{false};
// Set before the filter goes on; read by the SIGSYS handler (initial-exec TLS in a
// static archive: safe in a signal handler).
thread_local const char* t_kind = "unfiltered";

struct LineBuffer {
    char buf[256];
    size_t len = 0;
    void put(const char* s) {
        while (*s && len < sizeof buf - 1) buf[len++] = *s++;
    }
    void put(long v) {
        char digits[24];
        size_t n = 0;
        unsigned long u = v < 0 ? 0ul - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
        do digits[n++] = static_cast<char>('0' + u % 10);
        while ((u /= 10) && n < sizeof digits);
        if (v < 0) put("-");
        while (n && len < sizeof buf - 1) buf[len++] = digits[--n];
    }
};

// Async-signal-safe only: no allocation, no stdio, no locks; the trapped thread may
// have been inside malloc.
void on_sigsys(int, siginfo_t* si, void*) {
    LineBuffer b;
    b.put(log_tool_name());
    b.put(": seccomp: ");
    b.put(t_kind);
    b.put(" thread made a forbidden system call ");
    b.put(static_cast<long>(si->si_syscall));
    if (const char* name = syscall_name(si->si_syscall)) {
        b.put(" (");
        b.put(name);
        b.put(")");
    }
    b.buf[b.len++] = '\n';
    (void)!::write(2, b.buf, b.len);
    ::syscall(SYS_exit_group, kExitSeccomp);
}

void install_sigsys_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa {};
        sa.sa_sigaction = on_sigsys;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_SIGINFO;
        if (::sigaction(SIGSYS, &sa, nullptr) != 0) throw_errno("seccomp: sigaction SIGSYS");
    });
}

}  // namespace

void enable_thread_filters() {
    install_sigsys_handler();
    g_enabled.store(true, std::memory_order_release);
}

bool thread_filters_enabled() { return g_enabled.load(std::memory_order_acquire); }

void install_thread_filter(ThreadKind kind) {
    install_sigsys_handler();
    t_kind = thread_kind_name(kind);
    // Without CAP_SYS_ADMIN the kernel takes a filter only under no_new_privs (per
    // thread, inherited); fc-launch never execs, so it costs nothing.
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw_errno("seccomp: PR_SET_NO_NEW_PRIVS");
    FilterProgram p = filter_program(kind);
    sock_fprog prog{p.len, const_cast<sock_filter*>(p.insns)};
    if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
        throw_errno(std::string("seccomp: installing the ") + t_kind + " thread's filter");
}

void enter_thread(ThreadKind kind, const char* name) {
    if (name) ::pthread_setname_np(::pthread_self(), name);
    t_kind = thread_kind_name(kind);
    if (!thread_filters_enabled()) return;
#if defined(__SANITIZE_ADDRESS__)
    // LeakSanitizer's exit-time check runs on the main thread, and its ptrace tracer
    // under the main thread's filter hangs the exit (found with a probe; the call it
    // needs is not yet known): sanitizer builds leave the main thread unfiltered.
    if (kind == ThreadKind::kVmm) return;
#endif
    auto t0 = std::chrono::steady_clock::now();
    install_thread_filter(kind);
    log_debug("seccomp: %s thread's filter installed in %.0f us", t_kind,
              std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
}

const char* syscall_name(long nr) { return nr >= 0 && nr < kSyscallNameCount ? kSyscallNames[nr] : nullptr; }

}  // namespace kindling

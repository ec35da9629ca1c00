// seccomp_probe KIND CALL — installs exactly the seccomp filter fc-launch gives a
// thread of KIND (vmm, vcpu, api, device, uffd, helper), the way fc-launch does
// (enable_thread_filters, then enter_thread on a new thread), and on that thread:
//   allowed   makes calls every kind may make (write to stdout, a futex through a
//             mutex, mmap/munmap), prints "allowed" and exits 0;
//   socket    socket(AF_INET): forbidden to every kind (no network);
//   ioctl     ioctl(TIOCSTI): a request number no kind may use;
//   fork      clone without CLONE_THREAD (a new process): forbidden to every kind;
//   open      open("/dev/null"): prints "open: ok" where the kind may open files,
//             "open: Permission denied" where its filter fails it (EACCES).
// A forbidden call must end the process through the SIGSYS handler: one line
// "seccomp-probe: seccomp: KIND thread made a forbidden system call N (NAME)" on
// stderr and exit status 159.  Test-only: fc-launch itself has no such trigger.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "base/log.h"
#include "seccomp/thread_filter.h"

using namespace kindling;

int main(int argc, char** argv) {
    log_init("seccomp-probe", LogLevel::kNormal);
    if (argc != 3) {
        std::fprintf(stderr, "usage: seccomp_probe vmm|vcpu|api|device|uffd|helper allowed|socket|ioctl|fork|open\n");
        return 64;
    }
    std::string kind_name = argv[1], call = argv[2];
    const ThreadKind* kind = nullptr;
    for (const ThreadKind& k : kAllThreadKinds)
        if (kind_name == thread_kind_name(k)) kind = &k;
    if (!kind) {
        std::fprintf(stderr, "seccomp_probe: unknown kind %s\n", argv[1]);
        return 64;
    }
    enable_thread_filters();
    int rc = 0;
    std::thread t([&] {
        try {
            enter_thread(*kind, "probe");
        } catch (const std::exception& e) {
            std::fprintf(stderr, "seccomp_probe: %s\n", e.what());
            rc = 70;
            return;
        }
        if (call == "allowed") {
            std::mutex mu;
            std::lock_guard lk(mu);
            void* p = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED || ::munmap(p, 1 << 20) != 0) rc = 1;
            const char msg[] = "allowed\n";
            if (::write(1, msg, sizeof msg - 1) != sizeof msg - 1) rc = 1;
        } else if (call == "socket") {
            ::socket(AF_INET, SOCK_STREAM, 0);
        } else if (call == "ioctl") {
            char c = 'x';
            ::ioctl(0, TIOCSTI, &c);
        } else if (call == "open") {
            int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
            std::string line = std::string("open: ") + (fd >= 0 ? "ok" : std::strerror(errno)) + "\n";
            (void)!::write(1, line.data(), line.size());  // not stdio: its first use calls fstat
            if (fd >= 0) ::close(fd);
            return;
        } else if (call == "fork") {
            ::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
        } else {
            std::fprintf(stderr, "seccomp_probe: unknown call %s\n", call.c_str());
            rc = 64;
            return;
        }
        if (call != "allowed") {
            std::fprintf(stderr, "seccomp_probe: %s was not stopped\n", call.c_str());
            rc = 1;
        }
    });
    t.join();
    return rc;
}

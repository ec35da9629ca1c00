#include "seccomp/allow_list.h"

#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <cerrno>

// The lists come from reading the code each thread runs and from `strace -f` of
// real runs (nano boot and invokes over vsock, restores with --record-access,
// --prefetch, --mem-backend file and uffd:SOCKET, full and diff snapshots and a
// snapshot load over the API socket, pause/resume, SIGTERM, a Linux boot with
// vsock and a drive), grouped by the thread's name.  A call missing here stops
// fc-launch with exit 159 and names the thread kind and the call.

namespace kindling {

namespace {

using Rules = std::vector<SyscallRule>;

void add(Rules& r, std::initializer_list<long> nrs) {
    for (long nr : nrs) r.push_back({nr});
}
// ioctl(fd, request) for exactly these requests (compared as 32 bits: the kernel's
// ioctl request is an unsigned int).
void add_ioctls(Rules& r, std::initializer_list<unsigned long> requests) {
    for (unsigned long req : requests) r.push_back({SYS_ioctl, 1, 0xffffffffu, req & 0xffffffffu});
}
// ioctl(fd, request) for every request of one ioctl type (KVMIO 0xAE, UFFDIO 0xAA):
// the API thread builds, snapshots and restores VMs, which takes ~40 of them.
void add_ioctl_type(Rules& r, unsigned type) { r.push_back({SYS_ioctl, 1, 0xff00u, uint64_t(type) << 8}); }

// What every thread's C++ runtime needs: allocation (mmap/mprotect never with
// PROT_EXEC: nothing maps code once fc-launch runs), futexes, thread exit, the kick
// signal (pthread_kill = getpid + tgkill; its handler returns by rt_sigreturn),
// logging to stderr, clocks and sleeps, and the SIGSYS handler's write + exit_group.
void add_common(Rules& r) {
    r.push_back({SYS_mmap, 2, PROT_EXEC, 0});
    r.push_back({SYS_mprotect, 2, PROT_EXEC, 0});
    add(r, {SYS_munmap, SYS_madvise, SYS_brk, SYS_mremap, SYS_futex, SYS_write, SYS_writev, SYS_close, SYS_exit,
            SYS_exit_group, SYS_rt_sigreturn, SYS_rt_sigprocmask, SYS_getpid, SYS_gettid, SYS_tgkill,
            SYS_clock_gettime, SYS_gettimeofday, SYS_clock_nanosleep, SYS_nanosleep, SYS_sched_yield,
            SYS_restart_syscall, SYS_sched_getaffinity});
}

// fc-launch --jail drops to its uid/gid on the thread that starts the guest
// (Machine's before_guest_runs: the main thread, or the API thread with --api-sock
// alone); glibc applies set*id to every thread of the process, each repeating the
// call from a signal handler, so the threads that may exist by then (main, API,
// uffd, helper) may make them.  Without capabilities they can only drop.
void add_setid(Rules& r) { add(r, {SYS_setgroups, SYS_setresgid, SYS_setresuid}); }

// Threads that never open a file still may have glibc try: malloc opens
// /proc/sys/vm/overcommit_memory once per process, on whichever thread first shrinks
// a thread heap (found: a vCPU after a burst of vsock traffic), and takes a failure
// as "no".  So openat (glibc's only open on x86-64) fails with EACCES on those
// threads instead of stopping the VMM.
void deny_open(Rules& r) { r.push_back({SYS_openat, -1, 0, 0, EACCES}); }

// Device backends in an EventLoop (the vCPU thread of a nano guest, the device
// thread of a Linux guest, or a vCPU's MMIO write): vsock host sockets (accept a
// host connection, connect to the host's listener for a guest connection, readv,
// send/sendmsg, shutdown), eventfds (wakeups, irqfd interrupts), EventLoop timers,
// virtio-blk on its open file, console output (write).
void add_devices(Rules& r) {
    add(r, {SYS_epoll_wait, SYS_epoll_pwait, SYS_epoll_ctl, SYS_timerfd_settime, SYS_read, SYS_readv, SYS_accept4,
            SYS_connect, SYS_recvfrom, SYS_sendto, SYS_sendmsg, SYS_shutdown, SYS_preadv, SYS_pwritev,
            SYS_fdatasync});
    r.push_back({SYS_socket, 0, 0xffffffffu, AF_UNIX});  // the host side of vsock only: no network
}

// fc-launch's main thread once the VM runs: it waits (poll on the stopped eventfd
// and a signalfd), kicks and joins the other threads, writes --record-access's log
// (atomically: temp file, fsync, rename), removes its sockets, prints --json.
void add_vmm(Rules& r) {
    add(r, {SYS_poll, SYS_ppoll, SYS_read, SYS_signalfd4, SYS_epoll_ctl, SYS_timerfd_settime, SYS_openat,
            SYS_newfstatat, SYS_fstat, SYS_lseek, SYS_fsync, SYS_fdatasync, SYS_rename, SYS_renameat2,
            SYS_unlink, SYS_unlinkat});
}

// The API thread: serves HTTP on its Unix socket and, with --api-sock alone, does
// everything the main thread does to build or restore a VM and to write snapshots
// (open and map files, KVM and userfaultfd ioctls, listen on the vsock socket,
// create the vCPU, device, uffd and helper threads).  Those threads inherit this
// filter and stack their own, so this list must hold theirs (a unit test checks).
void add_api(Rules& r) {
    add_devices(r);
    add_vmm(r);
    add(r, {SYS_epoll_create1, SYS_eventfd2, SYS_timerfd_create, SYS_accept, SYS_recvmsg, SYS_bind, SYS_umask, SYS_listen,
            SYS_getsockname, SYS_getpeername, SYS_setsockopt, SYS_getsockopt, SYS_fcntl, SYS_dup, SYS_dup3,
            SYS_stat, SYS_lstat, SYS_statx, SYS_readlink, SYS_readlinkat, SYS_access, SYS_faccessat,
            SYS_faccessat2, SYS_getdents64, SYS_mkdir, SYS_mkdirat, SYS_rmdir, SYS_ftruncate, SYS_fallocate,
            SYS_pread64, SYS_pwrite64, SYS_mincore, SYS_sysinfo, SYS_getrandom, SYS_userfaultfd, SYS_poll,
            SYS_rt_sigaction, SYS_set_robust_list, SYS_rseq, SYS_sched_getaffinity, SYS_prctl, SYS_seccomp});
    // Threads only (pthread_create): no fork, no new process.
    r.push_back({SYS_clone, 0, CLONE_THREAD, CLONE_THREAD});
    r.push_back({SYS_clone3, -1, 0, 0, ENOSYS});
    add_ioctl_type(r, KVMIO);
    add_ioctl_type(r, UFFDIO);
    add_ioctls(r, {FIONBIO, FIONREAD});
    // Entering fc-launch's jail (lib/jail Jail::enter) when this thread starts the
    // guest: pivot into the jail directory, rlimits, drop the capabilities.
    add(r, {SYS_mount, SYS_umount2, SYS_pivot_root, SYS_chdir, SYS_setrlimit, SYS_prlimit64, SYS_capset});
    add_setid(r);
}

// Sanitizer builds (make SAN=...; GCC defines __SANITIZE_ADDRESS__ for ASan and
// LSan): the runtimes' own calls.  ASan unmaps a thread's alternate signal stack
// at its exit; LeakSanitizer's exit-time check (on the main thread, under kVmm)
// makes the process dumpable, clones a tracer task without CLONE_THREAD that
// ptraces every thread (listed from /proc/self/task) and reads /proc/self/maps;
// a report may spawn a symbolizer (fork + exec).  A test build, so these are
// allowed to every kind rather than traced one by one.
void add_sanitizer_runtime(Rules& r) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    add(r, {SYS_sigaltstack, SYS_clone, SYS_fork, SYS_vfork, SYS_execve, SYS_ptrace, SYS_wait4, SYS_waitid,
            SYS_prctl, SYS_openat, SYS_open, SYS_read, SYS_pread64, SYS_getdents64, SYS_newfstatat, SYS_fstat,
            SYS_lseek, SYS_readlink, SYS_readlinkat, SYS_rt_sigaction, SYS_kill, SYS_tkill, SYS_getppid,
            SYS_getrlimit, SYS_prlimit64, SYS_set_robust_list, SYS_rseq, SYS_set_tid_address, SYS_pipe2,
            SYS_dup2, SYS_dup3, SYS_uname, SYS_getrandom, SYS_process_vm_readv});
#else
    (void)r;
#endif
}

}  // namespace

const char* thread_kind_name(ThreadKind kind) {
    switch (kind) {
    case ThreadKind::kVmm: return "vmm";
    case ThreadKind::kVcpu: return "vcpu";
    case ThreadKind::kApi: return "api";
    case ThreadKind::kDevice: return "device";
    case ThreadKind::kUffd: return "uffd";
    case ThreadKind::kHelper: return "helper";
    }
    return "unknown";
}

std::vector<SyscallRule> allow_list(ThreadKind kind) {
    Rules r;
    add_common(r);
    switch (kind) {
    case ThreadKind::kVmm:
        add_vmm(r);
        add_setid(r);
        break;
    case ThreadKind::kVcpu:
        add_devices(r);
        deny_open(r);
        // KVM_RUN, and the registers for a crash report; nothing that changes the VM.
        add_ioctls(r, {KVM_RUN, KVM_GET_REGS});
        break;
    case ThreadKind::kApi:
        add_api(r);
        break;
    case ThreadKind::kDevice:
        add_devices(r);
        deny_open(r);
        break;
    case ThreadKind::kUffd:
        deny_open(r);
        add_setid(r);
        // Wait for faults, read the layer files (pread when not mapped), install pages.
        add(r, {SYS_poll, SYS_ppoll, SYS_read, SYS_pread64, SYS_preadv});
        add_ioctls(r, {UFFDIO_COPY, UFFDIO_ZEROPAGE, UFFDIO_WAKE});
        break;
    case ThreadKind::kHelper:
        deny_open(r);
        add_setid(r);
        // KVM_GET_SUPPORTED_CPUID, numbered from the C layout as lib/kvm/kvm.h does
        // (kvm_cpuid2's C++ sizeof is wrong): an 8-byte header.
        add_ioctls(r, {_IOWR(KVMIO, 0x05, uint64_t)});
        break;
    }
    add_sanitizer_runtime(r);
    return r;
}

}  // namespace kindling

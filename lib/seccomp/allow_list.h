// What each kind of fc-launch thread may ask of the kernel: the allow-lists that
// the build compiles into seccomp BPF (lib/seccomp/bpf_gen, with libseccomp) and
// thread_filter installs.  Plain data, so the lists read as a table and a test can
// compare them.
#pragma once

#include <cstdint>
#include <vector>

namespace kindling {

// One kind per distinct job; a thread's kind names it in the SIGSYS message.
enum class ThreadKind : uint8_t {
    kVmm,     // fc-launch's main thread once the VM runs: waits, stops, tears down
    kVcpu,    // KVM_RUN and exit handling; for nano guests also the device EventLoop
    kApi,     // the Firecracker API thread; with --api-sock alone it builds the VM
    kDevice,  // Linux guests' device EventLoop (vsock host sockets, irqfd)
    kUffd,    // the userfaultfd handler and the prefetcher of a restore
    kHelper,  // start-up helper: KVM_GET_SUPPORTED_CPUID off the main thread
};
inline constexpr ThreadKind kAllThreadKinds[] = {ThreadKind::kVmm,    ThreadKind::kVcpu, ThreadKind::kApi,
                                                 ThreadKind::kDevice, ThreadKind::kUffd, ThreadKind::kHelper};

// "vcpu", "api", ... (the word in "vcpu thread made a forbidden system call").
const char* thread_kind_name(ThreadKind kind);

// A syscall allowed outright (arg < 0), or only when (args[arg] & mask) == value.
// Several rules for one syscall are alternatives.  A rule with `fail_errno` set
// does not allow: the call fails with that errno (clone3 -> ENOSYS, so glibc falls
// back to clone, whose flags a filter can see).
struct SyscallRule {
    long nr;
    int arg = -1;
    uint64_t mask = 0;
    uint64_t value = 0;
    int fail_errno = 0;
};

// The rules of one kind, including what every thread needs (and, in sanitizer
// builds, what the sanitizer runtimes need).
std::vector<SyscallRule> allow_list(ThreadKind kind);

}  // namespace kindling

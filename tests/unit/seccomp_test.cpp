// seccomp: the allow-lists' invariants and the compiled programs (installing a
// filter is for tests/helpers/seccomp_probe: it cannot be undone in this process).
#include <doctest/doctest.h>

#include <linux/filter.h>
#include <linux/kvm.h>
#include <sys/syscall.h>

#include <cstring>
#include <string>

#include "seccomp/allow_list.h"
#include "seccomp/filter_program.h"
#include "seccomp/thread_filter.h"

using namespace kindling;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizerBuild = true;
#else
constexpr bool kSanitizerBuild = false;
#endif

// Does `big` allow at least whatever `rule` allows?
bool covers(const std::vector<SyscallRule>& big, const SyscallRule& rule) {
    for (const SyscallRule& b : big) {
        if (b.nr != rule.nr || b.fail_errno != rule.fail_errno) continue;
        if (b.arg < 0) return true;
        // b allows args with (a & b.mask) == b.value; rule's set is within it when
        // rule fixes every bit b looks at to the same value.
        if (rule.arg == b.arg && (b.mask & ~rule.mask) == 0 && (rule.value & b.mask) == b.value) return true;
    }
    return false;
}

}  // namespace

TEST_CASE("seccomp: the API thread's list holds those of the threads it creates") {
    // With --api-sock alone the API thread builds the VM: the vCPU, device, uffd and
    // helper threads inherit its filter and stack their own (thread_filter.h).
    std::vector<SyscallRule> api = allow_list(ThreadKind::kApi);
    for (ThreadKind child : {ThreadKind::kVcpu, ThreadKind::kDevice, ThreadKind::kUffd, ThreadKind::kHelper}) {
        for (const SyscallRule& r : allow_list(child)) {
            std::string what = std::string(thread_kind_name(child)) + " syscall " + std::to_string(r.nr) + " (" +
                               (syscall_name(r.nr) ? syscall_name(r.nr) : "?") + ")";
            INFO(what);
            // A call the child fails with an errno must not trap under the API's
            // filter (the strictest answer wins: a trap would beat the errno).
            if (r.fail_errno) CHECK((covers(api, SyscallRule{r.nr}) || covers(api, r)));
            else CHECK(covers(api, r));
        }
    }
}

TEST_CASE("seccomp: every kind may write its SIGSYS line and exit") {
    for (ThreadKind k : kAllThreadKinds) {
        std::string kind = thread_kind_name(k);
        INFO(kind);
        std::vector<SyscallRule> l = allow_list(k);
        CHECK(covers(l, {SYS_write}));
        CHECK(covers(l, {SYS_exit_group}));
        CHECK(covers(l, {SYS_rt_sigreturn}));
        // Sanitizer builds let every kind fork and exec a symbolizer for a report
        // (allow_list.cpp add_sanitizer_runtime); release builds never exec.
        if (!kSanitizerBuild) CHECK_FALSE(covers(l, {SYS_execve}));
        CHECK_FALSE(covers(l, {SYS_socket}));  // AF_UNIX at most, never any family
    }
}

TEST_CASE("seccomp: only the vCPU thread runs the guest") {
    const SyscallRule kvm_run{SYS_ioctl, 1, 0xffffffffu, KVM_RUN & 0xffffffffu};
    CHECK(covers(allow_list(ThreadKind::kVcpu), kvm_run));
    CHECK(covers(allow_list(ThreadKind::kApi), kvm_run));  // builds and snapshots: every KVM ioctl
    for (ThreadKind k : {ThreadKind::kVmm, ThreadKind::kDevice, ThreadKind::kUffd, ThreadKind::kHelper}) {
        std::string kind = thread_kind_name(k);
        INFO(kind);
        CHECK_FALSE(covers(allow_list(k), kvm_run));
    }
}

TEST_CASE("seccomp: compiled programs check the architecture and fit the kernel's limit") {
    for (ThreadKind k : kAllThreadKinds) {
        std::string kind = thread_kind_name(k);
        INFO(kind);
        FilterProgram p = filter_program(k);
        REQUIRE(p.insns != nullptr);
        CHECK(p.len > 4);
        CHECK(p.len <= BPF_MAXINSNS);
        // libseccomp starts with: load seccomp_data.arch, compare with AUDIT_ARCH_X86_64.
        CHECK(p.insns[0].code == (BPF_LD | BPF_W | BPF_ABS));
        CHECK(p.insns[0].k == 4);
        CHECK(p.insns[1].k == 0xc000003eu);
    }
}

TEST_CASE("seccomp: system call names for the SIGSYS line") {
    CHECK(std::string(syscall_name(SYS_socket)) == "socket");
    CHECK(std::string(syscall_name(SYS_ioctl)) == "ioctl");
    CHECK(syscall_name(-1) == nullptr);
    CHECK(syscall_name(100000) == nullptr);
}

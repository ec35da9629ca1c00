// Per-thread seccomp filters for fc-launch (seccomp(2), Firecracker's model): each
// thread installs the filter of its kind on itself, first thing, before it touches
// anything a guest controls.  A forbidden system call raises SIGSYS
// (SECCOMP_RET_TRAP); the handler writes one line, e.g.
//   fc-launch: seccomp: vcpu thread made a forbidden system call 41 (socket)
// and the process exits with kExitSeccomp.
//
// Stacking: a thread inherits the filters of the thread that created it and adds its
// own; the kernel runs all of them and the strictest answer wins.  So a thread may
// only create threads whose allow-lists are subsets of its own (allow_list.cpp keeps
// api ⊇ vcpu, device, uffd, helper, the kinds the API thread creates when it builds
// the VM), and fc-launch's main thread installs its narrow kVmm filter only after it
// has created every thread it will create.
//
// The BPF programs are compiled once, by libseccomp at build time (bpf_gen), so a
// thread pays only the seccomp(2) call (~50-100 us on this PVM host, most of it the
// kernel's BPF JIT), not libseccomp's ~250 us per filter.
#pragma once

#include "seccomp/allow_list.h"

namespace kindling {

// 128 + SIGSYS: what a shell reports for a process killed by SIGSYS, and what
// fc-launch exits with after a forbidden system call (fc-launch(1), EXIT STATUS).
inline constexpr int kExitSeccomp = 159;

// Turns filters on for this process (fc-launch does, unless --no-seccomp) and
// installs the SIGSYS handler.  Before that, enter_thread only names threads.
void enable_thread_filters();
bool thread_filters_enabled();

// On the calling thread: sets its name (`name`, <= 15 characters, nullptr keeps
// the current one) for /proc/PID/task/TID/comm, records its kind for the SIGSYS
// message, and, when filters are enabled, sets no_new_privs and installs the kind's
// filter.  Throws SysError if the kernel refuses the filter.
void enter_thread(ThreadKind kind, const char* name);

// Installs `kind`'s filter and the SIGSYS handler on the calling thread whether or
// not filters are enabled (the test probe: exactly fc-launch's filter).
void install_thread_filter(ThreadKind kind);

// The name of system call `nr` ("socket"), or nullptr; async-signal-safe.
const char* syscall_name(long nr);

}  // namespace kindling

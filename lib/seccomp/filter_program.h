// The compiled BPF of each kind's filter: generated at build time by bpf_gen from
// allow_list.cpp (libseccomp), into $(O)/gen/seccomp/filter_program.cpp.
#pragma once

#include <linux/filter.h>

#include "seccomp/allow_list.h"

namespace kindling {

struct FilterProgram {
    const sock_filter* insns;
    unsigned short len;
};

FilterProgram filter_program(ThreadKind kind);

// Indexed by x86-64 system call number; nullptr where none.
extern const char* const kSyscallNames[];
extern const long kSyscallNameCount;

}  // namespace kindling

// Boot of a nano guest (guest/nano/include/kindling/nano_abi.h, man
// kindling-nano(7)): copy the image, build user-mode identity page tables, fill
// the boot-info page, and describe the initial 64-bit CPL3 register state.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kvm/elf.h"
#include "kvm/guest_memory.h"
#include "kindling/nano_abi.h"

namespace kindling {

// True if the ELF carries the kindling nano note.
bool is_nano_image(const ElfImage& img);

struct NanoBootParams {
    std::string cmdline;
    std::vector<kn_device> devices;
    uint64_t tsc_khz = 0;
    uint64_t guest_cid = 0;
    uint64_t stack_size = 1 << 20;
};

struct NanoBootState {
    uint64_t rip = 0;
    uint64_t rsp = 0;
    uint64_t rdi = 0;
    uint64_t cr3 = 0;
    uint64_t image_end = 0;
};

// Lays the guest out in `mem`.  Throws DataError for an image that does not fit
// the ABI (segments below 1 MiB or beyond RAM) and ConfigError when RAM is too
// small or too large for a nano guest.
NanoBootState setup_nano(GuestMemory& mem, const ElfImage& img, const NanoBootParams& p);

// Writes a fresh random generation id and entropy into the generation page at `gpa`
// (KN_GENERATION_ADDR for nano guests, kLinuxGenerationAddr for Linux guests).
void write_generation(GuestMemory& mem, uint64_t gpa = KN_GENERATION_ADDR);

// Fills registers for the entry state: long mode, CPL3, IOPL=3, SSE enabled.
void apply_nano_boot_state(const NanoBootState& st, kvm_regs& regs, kvm_sregs& sregs);

}  // namespace kindling

/* Time since boot from the TSC.  fc-launch reports the TSC frequency in the boot
 * info; without it, CPUID leaf 0x15/0x16 (SDM vol. 2A, CPUID) gives an estimate. */
#include "internal.h"

static uint64_t tsc0, khz;

static void cpuid(uint32_t leaf, uint32_t r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(0));
}

void clock_init(void) {
    tsc0 = rdtsc();
    khz = kn_boot->tsc_khz;
    if (khz) return;
    uint32_t r[4];
    cpuid(0, r);
    uint32_t max = r[0];
    if (max >= 0x15) {
        cpuid(0x15, r); /* eax/ebx = TSC/crystal ratio, ecx = crystal Hz */
        if (r[0] && r[1] && r[2]) khz = (uint64_t)r[2] * r[1] / r[0] / 1000;
    }
    if (!khz && max >= 0x16) {
        cpuid(0x16, r); /* eax = base MHz */
        khz = (uint64_t)(r[0] & 0xffff) * 1000;
    }
    if (!khz) khz = 2000000; /* a guess beats dividing by zero */
}

uint64_t nano_now_ns(void) {
    uint64_t c = rdtsc() - tsc0;
    /* c * 1e6 / khz without 128-bit arithmetic. */
    return c / khz * 1000000u + (c % khz) * 1000000u / khz;
}

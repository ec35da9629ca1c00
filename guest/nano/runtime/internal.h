/* Runtime-private declarations shared by the files of guest/nano/runtime. */
#ifndef NANO_RUNTIME_INTERNAL_H
#define NANO_RUNTIME_INTERNAL_H

#include "kindling/nano.h"
#include "kindling/nano_abi.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

extern const struct kn_boot_info* kn_boot;

/* Counters of what the runtime asked of the VMM; every one of these is a VM exit. */
struct nano_stats {
    uint64_t waits;
    uint64_t console_writes;
    uint64_t mmio_reads;
    uint64_t mmio_writes;
    uint64_t mmio_batches;
    uint64_t invokes;
    uint64_t errors;
    uint64_t connections;
    uint64_t reseeds;
    uint64_t transport_resets; /* vsock TRANSPORT_RESET events (snapshot restores) */
    uint64_t ready_ns; /* TSC time from entry to KN_PORT_READY stage 0 (serving) */
};
extern struct nano_stats nano_stats;

static inline void outl(uint16_t port, uint32_t v) {
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}
static inline void outb(uint16_t port, uint8_t v) {
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}
static inline uint32_t inl(uint16_t port) {
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory");
    return v;
}
static inline uint64_t rdtsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}
/* x86 is TSO: ring updates need only keep the compiler from reordering. */
static inline void barrier(void) { __asm__ volatile("" : : : "memory"); }

/* Block in the VMM (KN_PORT_WAIT): it services every virtqueue first. */
void nano_wait(uint32_t timeout_us);

/* console.c */
void console_init(void);
void console_write(const char* p, size_t n);

/* format.c: the printf engine; sink gets chunks of output. */
typedef void (*format_sink)(void* ctx, const char* p, size_t n);
int format(format_sink sink, void* ctx, const char* fmt, va_list ap);

/* heap.c */
void heap_init(uint64_t start, uint64_t end);
void* heap_alloc_permanent(size_t n, size_t align); /* never freed; taken from the top */
size_t heap_free_bytes(void);

/* cmdline.c */
void cmdline_init(const char* src);
uint64_t option_u64(const char* key, uint64_t dflt);

/* clock.c, random.c */
void clock_init(void);
void random_init(void);
void random_check_generation(void);

/* invoke.c */
void invoke_init(void);

/* Parse a decimal number; returns the number of characters used (0 = none/overflow). */
size_t parse_u64(const char* s, size_t n, uint64_t* out);

#endif

/* The nano runtime API: what a function written for a kindling nano guest sees.
 *
 * A function is one C file that defines
 *
 *     int handler(const uint8_t* req, size_t len, struct nano_response* out);
 *
 * and optionally
 *
 *     int nano_init(void);   // runs once before the guest reports ready (and before
 *                            // any snapshot is taken); nonzero aborts the boot
 *
 * The handler answers by appending bytes to `out` (nano_append, nano_appendf, or by
 * pointing out->data at memory of its own that stays valid until the next invoke)
 * and returning 0, or by calling nano_fail(out, ...) and returning its value (-1):
 * the caller then gets an error with that text.  See kindling-nano(7).
 *
 * The same file also builds as an ordinary Linux program (NANO_NATIVE defined),
 * linked with a small host main that reads the request from stdin.
 */
#ifndef KINDLING_NANO_H
#define KINDLING_NANO_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef NANO_NATIVE
#include <stdlib.h>
#include <string.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define NANO_PRINTF(f, a) __attribute__((format(printf, f, a)))

struct nano_response {
    uint8_t* data; /* the response: the runtime's buffer, or memory of the handler's own
                      that stays valid until the next invoke */
    size_t len;    /* bytes at data */
    int failed;    /* 1 after nano_fail (data/len hold the error text), -1 out of memory */
    /* Runtime use: the buffer nano_append grows. */
    uint8_t* buf;
    size_t cap;
};

/* Defined by the function. */
int handler(const uint8_t* req, size_t len, struct nano_response* out);
int nano_init(void) __attribute__((weak));

/* Building a response.  Each returns 0, or -1 when memory runs out (the runtime
 * then answers with an "out of memory" error). */
int nano_reserve(struct nano_response* out, size_t extra);
int nano_append(struct nano_response* out, const void* p, size_t n);
int nano_append_str(struct nano_response* out, const char* s);
int nano_appendf(struct nano_response* out, const char* fmt, ...) NANO_PRINTF(2, 3);
/* Replace whatever was appended by an error text; returns -1 for `return nano_fail(...)`. */
int nano_fail(struct nano_response* out, const char* fmt, ...) NANO_PRINTF(2, 3);

/* Console (the VM's serial log; stderr in a native build).  Output is buffered and
 * written with one VM exit per line (or per batch with console=batch). */
int nano_printf(const char* fmt, ...) NANO_PRINTF(1, 2);
int nano_vprintf(const char* fmt, va_list ap);
void nano_flush(void);
int nano_snprintf(char* buf, size_t size, const char* fmt, ...) NANO_PRINTF(3, 4);
int nano_vsnprintf(char* buf, size_t size, const char* fmt, va_list ap);

/* Memory: a first-fit free-list heap over the RAM the image and stack leave free. */
void* nano_malloc(size_t n);
void* nano_calloc(size_t count, size_t n);
void* nano_realloc(void* p, size_t n);
void nano_free(void* p);

/* Time since boot from the TSC, and the CSPRNG (ChaCha20, fast key erasure, reseeded
 * from the generation page whenever the VM is restored from a snapshot). */
uint64_t nano_now_ns(void);
void nano_random(void* buf, size_t n);

/* Runtime command line (boot args): value of `key=value`, "" for a bare `key`, NULL if
 * absent.  The pointer stays valid for the life of the guest. */
const char* nano_option(const char* key);

/* 1 if s[0..n) is a whole decimal number that fits in 64 bits (stored in *out), else 0. */
int nano_parse_u64(const char* s, size_t n, uint64_t* out);

/* A decimal `key=N` option in [min, max] into *out (`dflt` when absent).  Returns 0, or
 * -1 after printing "WHO: bad option key=value (want a number from MIN to MAX)". */
int nano_option_num(const char* who, const char* key, uint64_t dflt, uint64_t min, uint64_t max, uint64_t* out);

/* Deterministic helpers for functions whose answers must be the same on every run
 * and every restore (unlike nano_random): SplitMix64, a seeded generator, and FNV-1a
 * over 64-bit words, a cheap checksum in which any changed bit changes the result. */
static inline uint64_t nano_splitmix64(uint64_t* state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
#define NANO_FNV_INIT 0xcbf29ce484222325ull
static inline uint64_t nano_fnv_word(uint64_t h, uint64_t w) { return (h ^ w) * 0x100000001b3ull; }

/* From nano_init: report initialisation stage `stage` (2, 3, ... increasing) to the
 * VMM, so snap-make can cut a snapshot layer here: the runtime reports stage 1
 * (KN_READY_RUNTIME) before nano_init and 0 (serving) after it.  A stage out of
 * order stops the VM with status 70.  See KN_PORT_READY in kindling-nano(7). */
void nano_ready_stage(uint32_t stage);

/* Stop the VM now with this exit status (console flushed first). */
void nano_exit(int status) __attribute__((noreturn));

/* Optional, for functions that check the VMM itself (guest/nano/fn/state.c): when a
 * function defines it, the runtime makes its blocking port writes -- every
 * KN_PORT_READY and every KN_PORT_WAIT of the serve loop, which is where a pause or
 * snapshot finds the vCPU -- by calling this instead of its own OUT.  It must
 * perform exactly one 32-bit OUT of `value` to `port`; whatever it keeps in
 * registers meanwhile is machine state the VMM has to save and restore. */
void nano_blocking_out(uint16_t port, uint32_t value) __attribute__((weak));

#ifndef NANO_NATIVE
/* The freestanding runtime provides these (the compiler may also emit calls). */
void* memcpy(void* dst, const void* src, size_t n);
void* memmove(void* dst, const void* src, size_t n);
void* memset(void* dst, int c, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);
int strcmp(const char* a, const char* b);
int strncmp(const char* a, const char* b, size_t n);
char* strchr(const char* s, int c);
#endif

#ifdef __cplusplus
}
#endif

#endif

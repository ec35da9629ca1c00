/* state: a checker for "a restored VM is the exact machine that was snapshotted".
 *
 * What it owns, all deterministic from `seed=N` (default 1) and the requests served:
 *   memory    a `mem=MiB` region (default 16) filled by a seeded generator; a list of
 *             heap blocks (nano_malloc) of varying sizes; a page of .bss
 *   counters  invokes since boot and a monotonic `bumps` counter, in memory
 *   registers every blocking port write of the runtime (KN_PORT_READY, KN_PORT_WAIT:
 *             where a pause or a snapshot finds the vCPU) goes through
 *             nano_blocking_out below, which loads 13 general registers (rbx, rbp,
 *             rcx, rsi, rdi, r8-r15), all 16 xmm registers, MXCSR, the x87 control
 *             word and st(0) with values derived from (seed, bumps), makes the OUT,
 *             and afterwards stores what the registers hold and compares.  Those
 *             values exist only in the registers while the vCPU is out: a VMM that
 *             lost REGS or XSAVE state across a snapshot shows up as mismatches and
 *             a different fingerprint.
 *   clock     nano_now_ns() must never go back between invokes (a VMM that forgot
 *             to restore the TSC makes it jump back to near zero)
 *
 * nano_init fills the region, reports initialisation stage 2, then builds the heap
 * blocks and the .bss page, so a snapshot cut in layers has memory of this
 * function's in both the runtime and the function layer.
 *
 * Requests: "check" answers the JSON below; "bump" increments `bumps`, rewrites one
 * page of the region, adds (or rewrites) a heap block and changes the register
 * values, then answers like check.  Everything outside "volatile" is a function of
 * the seed and the requests served; "fingerprint" covers all of it except
 * `invokes`, so the same VM before a snapshot and after a restore must answer the
 * same fingerprint.
 *
 *   {"fingerprint":"<16 hex>",
 *    "memory":{"region_mib":M,"region":"<16 hex>","heap_blocks":N,"heap":"<16 hex>","bss":"<16 hex>"},
 *    "counters":{"invokes":I,"bumps":B},
 *    "registers":{"mismatches":0,"first_bad":"","rbx":"<16 hex>",...,"xmm15":"<32 hex>",
 *                 "mxcsr":"<8 hex>","fcw":"<4 hex>","st0":"<16 hex>"},
 *    "clock":{"backwards":0},
 *    "volatile":{"now_ns":T,"tsc":C,"tsc_khz":K,"blocking_outs":W,"generation":"<32 hex>"}}
 */
#include <kindling/nano.h>
#include <kindling/nano_abi.h>

#define PAGE 4096u
#define MAX_BLOCKS 4096u
#define NGPR 13
#define NXMM 16

/* Shared with the assembly below: offsets are fixed (checked by the asserts). */
struct regs {
    uint64_t gpr[NGPR]; /* 0: rbx rbp rcx rsi rdi r8 r9 r10 r11 r12 r13 r14 r15 */
    uint64_t pad0;
    uint8_t xmm[NXMM][16]; /* 112 */
    uint32_t mxcsr;        /* 368 */
    uint16_t fcw;          /* 372 */
    uint16_t pad1;
    uint64_t st0; /* 376: a double, loaded with fldl and stored with fstpl */
};
struct held {
    struct regs want, seen; /* seen at 384 */
};
_Static_assert(__builtin_offsetof(struct regs, xmm) == 112, "xmm offset");
_Static_assert(__builtin_offsetof(struct regs, mxcsr) == 368, "mxcsr offset");
_Static_assert(__builtin_offsetof(struct regs, fcw) == 372, "fcw offset");
_Static_assert(__builtin_offsetof(struct regs, st0) == 376, "st0 offset");
_Static_assert(__builtin_offsetof(struct held, seen) == 384, "seen offset");

static const char* const gpr_names[NGPR] = {"rbx", "rbp", "rcx", "rsi", "rdi", "r8", "r9",
                                            "r10", "r11", "r12", "r13", "r14", "r15"};

/* void hold_registers(uint32_t value, uint32_t port, struct held* h)
 * Loads h->want into the registers, OUTs value to port, stores the registers into
 * h->seen.  SysV: rbx, rbp, r12-r15, the MXCSR control bits and the x87 control word
 * belong to the caller and are put back; the rest may be clobbered. */
__asm__(".section .text.hold_registers, \"ax\"\n"
        ".type hold_registers, @function\n"
        "hold_registers:\n"
        "    push %rbx\n"
        "    push %rbp\n"
        "    push %r12\n"
        "    push %r13\n"
        "    push %r14\n"
        "    push %r15\n"
        "    sub $24, %rsp\n" /* 0: h, 8: caller's MXCSR, 12: caller's FCW */
        "    mov %rdx, (%rsp)\n"
        "    stmxcsr 8(%rsp)\n"
        "    fnstcw 12(%rsp)\n"
        "    mov %rdx, %rcx\n"
        "    mov %edi, %eax\n"
        "    mov %esi, %edx\n"
        "    ldmxcsr 368(%rcx)\n"
        "    fldcw 372(%rcx)\n"
        "    fldl 376(%rcx)\n"
        "    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
        "    movdqu 112+16*\\n(%rcx), %xmm\\n\n"
        "    .endr\n"
        "    mov 0(%rcx), %rbx\n"
        "    mov 8(%rcx), %rbp\n"
        "    mov 24(%rcx), %rsi\n"
        "    mov 32(%rcx), %rdi\n"
        "    mov 40(%rcx), %r8\n"
        "    mov 48(%rcx), %r9\n"
        "    mov 56(%rcx), %r10\n"
        "    mov 64(%rcx), %r11\n"
        "    mov 72(%rcx), %r12\n"
        "    mov 80(%rcx), %r13\n"
        "    mov 88(%rcx), %r14\n"
        "    mov 96(%rcx), %r15\n"
        "    mov 16(%rcx), %rcx\n"
        "    outl %eax, %dx\n"
        "    push %rcx\n"
        "    mov 8(%rsp), %rcx\n"
        "    add $384, %rcx\n" /* &h->seen */
        "    pop 16(%rcx)\n"
        "    mov %rbx, 0(%rcx)\n"
        "    mov %rbp, 8(%rcx)\n"
        "    mov %rsi, 24(%rcx)\n"
        "    mov %rdi, 32(%rcx)\n"
        "    mov %r8, 40(%rcx)\n"
        "    mov %r9, 48(%rcx)\n"
        "    mov %r10, 56(%rcx)\n"
        "    mov %r11, 64(%rcx)\n"
        "    mov %r12, 72(%rcx)\n"
        "    mov %r13, 80(%rcx)\n"
        "    mov %r14, 88(%rcx)\n"
        "    mov %r15, 96(%rcx)\n"
        "    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
        "    movdqu %xmm\\n, 112+16*\\n(%rcx)\n"
        "    .endr\n"
        "    stmxcsr 368(%rcx)\n"
        "    fnstcw 372(%rcx)\n"
        "    fstpl 376(%rcx)\n"
        "    ldmxcsr 8(%rsp)\n"
        "    fldcw 12(%rsp)\n"
        "    add $24, %rsp\n"
        "    pop %r15\n"
        "    pop %r14\n"
        "    pop %r13\n"
        "    pop %r12\n"
        "    pop %rbp\n"
        "    pop %rbx\n"
        "    ret\n"
        ".size hold_registers, . - hold_registers\n"
        ".previous\n");
void hold_registers(uint32_t value, uint32_t port, struct held* h);

struct block {
    struct block* next;
    uint32_t len;
    uint32_t tag;
    uint64_t data[]; /* len words */
};

static uint64_t seed, mem_mib, region_words, region_pages;
static uint64_t* region;
static struct block *blocks, *blocks_tail;
static uint64_t nblocks;
static uint64_t bss_page[PAGE / 8];
static uint64_t invokes, bumps, clock_backwards, last_now;
static struct held held;
static int armed;
static uint64_t outs, mismatches;
static int first_bad = -1; /* register index: gprs, then xmm, mxcsr, fcw, st0 */

static uint64_t fnv_words(uint64_t h, const uint64_t* w, uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) h = nano_fnv_word(h, w[i]);
    return h;
}

/* Register values for the current bump count: what must come back after each OUT. */
static void set_want(void) {
    uint64_t s = seed ^ (bumps * 0xd1342543de82ef95ull);
    struct regs* w = &held.want;
    for (int i = 0; i < NGPR; ++i) w->gpr[i] = nano_splitmix64(&s);
    for (int i = 0; i < NXMM; ++i) {
        uint64_t a = nano_splitmix64(&s), b = nano_splitmix64(&s);
        memcpy(w->xmm[i], &a, 8);
        memcpy(w->xmm[i] + 8, &b, 8);
    }
    /* MXCSR: all exceptions masked, flush-to-zero on, rounding mode cycling with bumps
     * (SDM vol. 1 §10.2.3); FCW: all x87 exceptions masked, 64-bit precision, rounding
     * mode cycling (§8.1.5).  st(0): a double in [1, 2), which x87 holds exactly. */
    w->mxcsr = 0x9f80u | (uint32_t)((bumps + 1) & 3) << 13;
    w->fcw = (uint16_t)(0x037fu | (uint32_t)((bumps + 1) & 3) << 10);
    w->st0 = (nano_splitmix64(&s) & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
}

static int compare_held(void) {
    const struct regs *w = &held.want, *s = &held.seen;
    int bad = 0, first = -1;
    for (int i = 0; i < NGPR; ++i)
        if (w->gpr[i] != s->gpr[i]) bad++, first = first < 0 ? i : first;
    for (int i = 0; i < NXMM; ++i)
        if (memcmp(w->xmm[i], s->xmm[i], 16) != 0) bad++, first = first < 0 ? NGPR + i : first;
    /* Only the control bits: an OUT never sets exception flags, but be exact about
     * what is compared. */
    if ((w->mxcsr & ~0x3fu) != (s->mxcsr & ~0x3fu)) bad++, first = first < 0 ? NGPR + NXMM : first;
    if ((w->fcw & 0x0f3fu) != (s->fcw & 0x0f3fu)) bad++, first = first < 0 ? NGPR + NXMM + 1 : first;
    if (w->st0 != s->st0) bad++, first = first < 0 ? NGPR + NXMM + 2 : first;
    if (bad && first_bad < 0) first_bad = first;
    return bad;
}

void nano_blocking_out(uint16_t port, uint32_t value) {
    if (!armed) {
        __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port) : "memory");
        return;
    }
    hold_registers(value, port, &held);
    outs++;
    mismatches += (uint64_t)compare_held();
}

static void fill_page(uint64_t page, uint64_t salt) {
    uint64_t s = seed ^ (salt * 0xa0761d6478bd642full) ^ page;
    uint64_t* w = region + page * (PAGE / 8);
    for (unsigned i = 0; i < PAGE / 8; ++i) w[i] = nano_splitmix64(&s);
}

static int add_block(uint64_t salt) {
    uint64_t s = seed ^ (salt * 0xe7037ed1a0b428dbull);
    uint32_t len = 8 + (uint32_t)(nano_splitmix64(&s) % 504); /* 64 B .. 4 KiB */
    struct block* b = nano_malloc(sizeof *b + len * 8);
    if (!b) return -1;
    b->next = 0;
    b->len = len;
    b->tag = (uint32_t)salt;
    for (uint32_t i = 0; i < len; ++i) b->data[i] = nano_splitmix64(&s);
    if (blocks_tail) blocks_tail->next = b;
    else blocks = b;
    blocks_tail = b;
    nblocks++;
    return 0;
}

int nano_init(void) {
    if (nano_option_num("state", "mem", 16, 1, 2048, &mem_mib) ||
        nano_option_num("state", "seed", 1, 0, ~0ull >> 1, &seed))
        return 78; /* EX_CONFIG */
    region_words = (mem_mib << 20) / 8;
    region_pages = (mem_mib << 20) / PAGE;
    uint8_t* raw = nano_malloc((mem_mib << 20) + PAGE);
    if (!raw) {
        nano_printf("state: no room for a %llu MiB region (give the VM more memory)\n", (unsigned long long)mem_mib);
        return 71; /* EX_OSERR */
    }
    region = (uint64_t*)(((uintptr_t)raw + PAGE - 1) & ~(uintptr_t)(PAGE - 1));
    for (uint64_t p = 0; p < region_pages; ++p) fill_page(p, 0);
    /* The region as a "runtime" layer, the rest as the function's: a layered
     * restore (base, runtime, function) must give back the same fingerprint. */
    nano_ready_stage(2);
    for (uint64_t i = 0; i < 64; ++i)
        if (add_block(i) != 0) return 71;
    uint64_t s = seed ^ 0x62737321ull;
    for (unsigned i = 0; i < PAGE / 8; ++i) bss_page[i] = nano_splitmix64(&s);
    set_want();
    armed = 1; /* from the KN_PORT_READY on, every blocking OUT holds the values */
    return 0;
}

static void bump(void) {
    bumps++;
    fill_page((bumps * 0x9e3779b1ull) % region_pages, bumps);
    if (nblocks >= MAX_BLOCKS || add_block(64 + bumps) != 0) {
        /* Full (or out of memory): rewrite the block the counter points at. */
        struct block* b = blocks;
        for (uint64_t i = bumps % nblocks; i > 0; --i) b = b->next;
        uint64_t s = seed ^ bumps;
        for (uint32_t i = 0; i < b->len; ++i) b->data[i] = nano_splitmix64(&s);
    }
    bss_page[bumps % (PAGE / 8)] ^= bumps * 0x9e3779b97f4a7c15ull;
    set_want();
}

static int append_hex(struct nano_response* out, const uint8_t* p, size_t n) {
    /* Little-endian bytes as one big hex number, most significant first. */
    static const char hex[] = "0123456789abcdef";
    if (nano_reserve(out, 2 * n) != 0) return -1;
    for (size_t i = n; i-- > 0;) {
        out->data[out->len++] = (uint8_t)hex[p[i] >> 4];
        out->data[out->len++] = (uint8_t)hex[p[i] & 15];
    }
    return 0;
}

static const char* reg_name(int i, char buf[8]) {
    if (i < NGPR) return gpr_names[i];
    if (i < NGPR + NXMM) {
        nano_snprintf(buf, 8, "xmm%d", i - NGPR);
        return buf;
    }
    return i == NGPR + NXMM ? "mxcsr" : i == NGPR + NXMM + 1 ? "fcw" : "st0";
}

static int answer(struct nano_response* out) {
    uint64_t region_sum = fnv_words(NANO_FNV_INIT, region, region_words);
    uint64_t heap_sum = NANO_FNV_INIT;
    for (const struct block* b = blocks; b; b = b->next)
        heap_sum = fnv_words(nano_fnv_word(nano_fnv_word(heap_sum, b->len), b->tag), b->data, b->len);
    uint64_t bss_sum = fnv_words(NANO_FNV_INIT, bss_page, PAGE / 8);
    const struct regs* s = &held.seen;
    uint64_t reg_sum = fnv_words(NANO_FNV_INIT, (const uint64_t*)s, sizeof *s / 8);

    uint64_t f = NANO_FNV_INIT;
    f = nano_fnv_word(f, region_sum);
    f = nano_fnv_word(f, heap_sum);
    f = nano_fnv_word(f, nblocks);
    f = nano_fnv_word(f, bss_sum);
    f = nano_fnv_word(f, bumps);
    f = nano_fnv_word(f, reg_sum);
    f = nano_fnv_word(f, mismatches);
    f = nano_fnv_word(f, clock_backwards);

    char nb[8];
    int rc = nano_appendf(out,
                          "{\"fingerprint\":\"%016llx\",\"memory\":{\"region_mib\":%llu,\"region\":\"%016llx\","
                          "\"heap_blocks\":%llu,\"heap\":\"%016llx\",\"bss\":\"%016llx\"},"
                          "\"counters\":{\"invokes\":%llu,\"bumps\":%llu},"
                          "\"registers\":{\"mismatches\":%llu,\"first_bad\":\"%s\"",
                          (unsigned long long)f, (unsigned long long)mem_mib, (unsigned long long)region_sum,
                          (unsigned long long)nblocks, (unsigned long long)heap_sum, (unsigned long long)bss_sum,
                          (unsigned long long)invokes, (unsigned long long)bumps, (unsigned long long)mismatches,
                          first_bad < 0 ? "" : reg_name(first_bad, nb));
    for (int i = 0; rc == 0 && i < NGPR; ++i) rc = nano_appendf(out, ",\"%s\":\"%016llx\"", gpr_names[i],
                                                                (unsigned long long)s->gpr[i]);
    for (int i = 0; rc == 0 && i < NXMM; ++i) {
        rc = nano_appendf(out, ",\"xmm%d\":\"", i);
        if (rc == 0) rc = append_hex(out, s->xmm[i], 16);
        if (rc == 0) rc = nano_append_str(out, "\"");
    }
    if (rc != 0) return -1;
    const volatile struct kn_generation* g = (const volatile struct kn_generation*)(uintptr_t)KN_GENERATION_ADDR;
    const volatile struct kn_boot_info* bi = (const volatile struct kn_boot_info*)(uintptr_t)KN_BOOT_INFO_ADDR;
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return nano_appendf(out,
                        ",\"mxcsr\":\"%08x\",\"fcw\":\"%04x\",\"st0\":\"%016llx\"},\"clock\":{\"backwards\":%llu},"
                        "\"volatile\":{\"now_ns\":%llu,\"tsc\":%llu,\"tsc_khz\":%llu,\"blocking_outs\":%llu,"
                        "\"generation\":\"%016llx%016llx\"}}",
                        s->mxcsr, s->fcw, (unsigned long long)s->st0, (unsigned long long)clock_backwards,
                        (unsigned long long)last_now, (unsigned long long)hi << 32 | lo,
                        (unsigned long long)bi->tsc_khz, (unsigned long long)outs, (unsigned long long)g->id_hi,
                        (unsigned long long)g->id_lo);
}

int handler(const uint8_t* req, size_t len, struct nano_response* out) {
    invokes++;
    uint64_t now = nano_now_ns();
    if (now < last_now) clock_backwards++;
    last_now = now;
    while (len > 0 && (req[len - 1] == '\n' || req[len - 1] == '\r' || req[len - 1] == ' ')) --len;
    if (len == 5 && memcmp(req, "check", 5) == 0) return answer(out);
    if (len == 4 && memcmp(req, "bump", 4) == 0) {
        bump();
        return answer(out);
    }
    return nano_fail(out, "unknown request '%.*s' (expected check or bump)", (int)(len > 30 ? 30 : len),
                     (const char*)req);
}

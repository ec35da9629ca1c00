/* init-heavy: stands in for a runtime that takes seconds to load (a JVM, a Python
 * interpreter importing its packages).  nano_init builds a table of `table=MiB`
 * (default 128): a pseudo-random cyclic permutation of the 32-bit entry indices,
 * drawn by a seeded generator (`seed=N`) with Sattolo's shuffle, which writes every
 * page and then makes one cache miss per entry.  It shuffles `rounds=N` times
 * (default 4; each round starts again from the identity, the generator running on,
 * so every round changes the result): about 0.6 s per round for 128 MiB on an
 * idle host here, several seconds in all.  It reports initialisation stage 2 (the
 * "runtime" is loaded), then warms the working set of `touch=PERCENT` pages once
 * (the function's own init, which writes next to nothing), and only then does the
 * guest report ready.  Every answer is a function of the options and the request alone, so a VM
 * restored from a snapshot must answer exactly as the one that was snapshotted.
 *
 * Requests (text, one line):
 *   ""  or "walk"        read `touch=PERCENT` (default 100) of the table's pages
 *   "walk P"             read P percent of the pages (0-100): the same pages on
 *                        every invoke, scattered over the table -- a working set
 *                        smaller than memory, for lazy-restore benchmarks
 *                          -> {"percent":P,"pages":N,"sum":"<16 hex>"}
 *   "get K1 K2 ..."      the entries at those keys (at most 1024)
 *                          -> {"values":[V1,V2,...],"sum":"<16 hex>"}
 *   "chase K STEPS"      follow the permutation STEPS times from K (random reads)
 *                          -> {"start":K,"steps":STEPS,"end":E,"sum":"<16 hex>"}
 *   "info"               {"table_mib":M,"entries":N,"pages":P,"seed":S,"rounds":R,
 *                          "touch":T,"warm_pages":N,"warm_sum":"<16 hex>",
 *                          "init_ms":MS,"warm_ms":MS} -- the _ms fields are the only
 *                          time-dependent ones
 */
#include <kindling/nano.h>

#define PAGE 4096u
#define MAX_KEYS 1024u

static uint32_t* table;
static uint64_t entries, pages, table_mib, seed, touch, rounds, cluster;
static uint64_t init_ns, warm_ns, warm_sum, warm_pages;

/* Page p is in the P percent working set when the golden-ratio hash of its run of
 * `cluster=N` pages falls below P% of 2^32: a fixed set, spread evenly over the
 * table.  N = 1 (the default) scatters single pages, the worst case for loading
 * memory in 512 KiB chunks; real heaps cluster. */
static int page_selected(uint64_t p, uint64_t percent) {
    if (percent >= 100) return 1;
    uint32_t r = (uint32_t)((p / cluster + seed) * 0x9e3779b1u);
    return r < (uint32_t)((percent << 32) / 100);
}

static uint64_t walk_sum(uint64_t percent, uint64_t* npages) {
    uint64_t h = NANO_FNV_INIT, n = 0;
    for (uint64_t p = 0; p < pages; ++p) {
        if (!page_selected(p, percent)) continue;
        const uint64_t* w = (const uint64_t*)(table + p * (PAGE / sizeof(uint32_t)));
        for (unsigned i = 0; i < PAGE / sizeof(uint64_t); ++i) h = nano_fnv_word(h, w[i]);
        ++n;
    }
    *npages = n;
    return h;
}

int nano_init(void) {
    /* Entries are 32-bit indices, so at most 2^32 of them (16 GiB, beyond KN_MAX_MEM). */
    const char* me = "init-heavy";
    if (nano_option_num(me, "table", 128, 1, 3072, &table_mib) || nano_option_num(me, "seed", 1, 0, ~0ull >> 1, &seed) ||
        nano_option_num(me, "touch", 100, 0, 100, &touch) || nano_option_num(me, "rounds", 4, 1, 1000, &rounds) ||
        nano_option_num(me, "cluster", 1, 1, 1u << 20, &cluster))
        return 78; /* EX_CONFIG */
    uint64_t t0 = nano_now_ns();
    uint64_t bytes = table_mib << 20;
    uint8_t* raw = nano_malloc(bytes + PAGE);
    if (!raw) {
        nano_printf("init-heavy: no room for a %llu MiB table (give the VM more memory)\n",
                    (unsigned long long)table_mib);
        return 71; /* EX_OSERR */
    }
    table = (uint32_t*)(((uintptr_t)raw + PAGE - 1) & ~(uintptr_t)(PAGE - 1));
    entries = bytes / sizeof(uint32_t);
    pages = bytes / PAGE;
    uint64_t s = seed;
    for (uint64_t r = 0; r < rounds; ++r) {
        for (uint64_t i = 0; i < entries; ++i) table[i] = (uint32_t)i;
        /* Sattolo's algorithm: swapping only with earlier entries yields a single
         * cycle, so a chase from any key visits the whole table before it returns. */
        for (uint64_t i = entries - 1; i > 0; --i) {
            uint64_t j = (nano_splitmix64(&s) >> 32) * i >> 32; /* uniform enough in [0, i) */
            uint32_t t = table[i];
            table[i] = table[j];
            table[j] = t;
        }
    }
    init_ns = nano_now_ns() - t0;
    nano_printf("init-heavy: %llu MiB table (%llu entries, %llu pages, seed %llu, %llu rounds) built in %llu ms\n",
                (unsigned long long)table_mib, (unsigned long long)entries, (unsigned long long)pages,
                (unsigned long long)seed, (unsigned long long)rounds, (unsigned long long)(init_ns / 1000000));
    /* The table stands in for a language runtime: report it as its own stage, so
     * snap-make can keep it in a runtime layer under the function's. */
    nano_ready_stage(2);
    /* The function's own start-up: warm its working set once, as a JIT would.  It
     * reads pages and writes almost none, so the function layer stays small. */
    t0 = nano_now_ns();
    warm_sum = walk_sum(touch, &warm_pages);
    warm_ns = nano_now_ns() - t0;
    return 0;
}

static int walk(uint64_t percent, struct nano_response* out) {
    uint64_t n;
    uint64_t h = walk_sum(percent, &n);
    return nano_appendf(out, "{\"percent\":%llu,\"pages\":%llu,\"sum\":\"%016llx\"}", (unsigned long long)percent,
                        (unsigned long long)n, (unsigned long long)h);
}

/* Splits the request into words; returns how many (at most max), or -1 if more. */
static int split(const char* p, size_t len, const char** w, size_t* wl, int max) {
    int n = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) ++i;
        if (i == len) break;
        size_t start = i;
        while (i < len && p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') ++i;
        if (n == max) return -1;
        w[n] = p + start;
        wl[n] = i - start;
        ++n;
    }
    return n;
}

static int word_is(const char* w, size_t n, const char* s) { return n == strlen(s) && memcmp(w, s, n) == 0; }

int handler(const uint8_t* req, size_t len, struct nano_response* out) {
    static const char* w[MAX_KEYS + 1];
    static size_t wl[MAX_KEYS + 1];
    int n = split((const char*)req, len, w, wl, MAX_KEYS + 1);
    if (n < 0) return nano_fail(out, "too many words (at most %u keys)", MAX_KEYS);
    if (n == 0 || (n == 1 && word_is(w[0], wl[0], "walk"))) return walk(touch, out);

    if (word_is(w[0], wl[0], "walk")) {
        uint64_t pct;
        if (n != 2 || !nano_parse_u64(w[1], wl[1], &pct) || pct > 100)
            return nano_fail(out, "usage: walk [PERCENT from 0 to 100]");
        return walk(pct, out);
    }
    if (word_is(w[0], wl[0], "get")) {
        if (n < 2) return nano_fail(out, "usage: get KEY...");
        uint64_t h = NANO_FNV_INIT;
        if (nano_append_str(out, "{\"values\":[") != 0) return -1;
        for (int i = 1; i < n; ++i) {
            uint64_t k;
            if (!nano_parse_u64(w[i], wl[i], &k) || k >= entries)
                return nano_fail(out, "key '%.*s' is not a number below %llu", (int)(wl[i] > 30 ? 30 : wl[i]), w[i],
                                 (unsigned long long)entries);
            h = nano_fnv_word(nano_fnv_word(h, k), table[k]);
            if (nano_appendf(out, "%s%u", i > 1 ? "," : "", table[k]) != 0) return -1;
        }
        return nano_appendf(out, "],\"sum\":\"%016llx\"}", (unsigned long long)h);
    }
    if (word_is(w[0], wl[0], "chase")) {
        uint64_t k, steps;
        if (n != 3 || !nano_parse_u64(w[1], wl[1], &k) || !nano_parse_u64(w[2], wl[2], &steps) || k >= entries ||
            steps > entries)
            return nano_fail(out, "usage: chase KEY STEPS (KEY below %llu, STEPS at most that)",
                             (unsigned long long)entries);
        uint64_t h = NANO_FNV_INIT, x = k;
        for (uint64_t i = 0; i < steps; ++i) {
            x = table[x];
            h = nano_fnv_word(h, x);
        }
        return nano_appendf(out, "{\"start\":%llu,\"steps\":%llu,\"end\":%llu,\"sum\":\"%016llx\"}",
                            (unsigned long long)k, (unsigned long long)steps, (unsigned long long)x,
                            (unsigned long long)h);
    }
    if (n == 1 && word_is(w[0], wl[0], "info"))
        return nano_appendf(out,
                            "{\"table_mib\":%llu,\"entries\":%llu,\"pages\":%llu,\"seed\":%llu,\"rounds\":%llu,"
                            "\"touch\":%llu,\"warm_pages\":%llu,\"warm_sum\":\"%016llx\",\"init_ms\":%llu,"
                            "\"warm_ms\":%llu}",
                            (unsigned long long)table_mib, (unsigned long long)entries, (unsigned long long)pages,
                            (unsigned long long)seed, (unsigned long long)rounds, (unsigned long long)touch,
                            (unsigned long long)warm_pages, (unsigned long long)warm_sum,
                            (unsigned long long)(init_ns / 1000000), (unsigned long long)(warm_ns / 1000000));
    return nano_fail(out, "unknown request '%.*s' (expected walk [PERCENT], get KEY..., chase KEY STEPS or info)",
                     (int)(wl[0] > 30 ? 30 : wl[0]), w[0]);
}

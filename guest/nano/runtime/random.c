/* The CSPRNG: ChaCha20 (RFC 8439 block function) as a fast-key-erasure generator
 * (every request rekeys from its own first 32 output bytes, so a later memory
 * snapshot cannot recover earlier output).  Seeded from the generation page's 32
 * bytes of VMM entropy; when the generation id changes (the VM was restored from a
 * snapshot, see the VMGenID idea in kindling-nano(7)) the key is replaced by one
 * mixed from the old key and the new entropy, so clones of one snapshot diverge. */
#include "internal.h"

static uint32_t key[8];
static uint64_t seen_lo, seen_hi;

static inline uint32_t rotl(uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }

#define QR(a, b, c, d)                                                     \
    a += b, d ^= a, d = rotl(d, 16), c += d, b ^= c, b = rotl(b, 12),     \
    a += b, d ^= a, d = rotl(d, 8), c += d, b ^= c, b = rotl(b, 7)

static void chacha20_block(const uint32_t k[8], uint32_t counter, const uint32_t nonce[3], uint32_t out[16]) {
    uint32_t s[16] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574, k[0], k[1], k[2], k[3],
                      k[4],       k[5],       k[6],       k[7],       counter, nonce[0], nonce[1], nonce[2]};
    uint32_t x[16];
    memcpy(x, s, sizeof x);
    for (int i = 0; i < 10; ++i) {
        QR(x[0], x[4], x[8], x[12]);
        QR(x[1], x[5], x[9], x[13]);
        QR(x[2], x[6], x[10], x[14]);
        QR(x[3], x[7], x[11], x[15]);
        QR(x[0], x[5], x[10], x[15]);
        QR(x[1], x[6], x[11], x[12]);
        QR(x[2], x[7], x[8], x[13]);
        QR(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; ++i) out[i] = x[i] + s[i];
}

/* Mix fresh material into the key: key' = first 32 bytes of ChaCha20(key ^ m). */
static void mix(const uint8_t m[32], uint64_t tweak) {
    uint32_t k[8], blk[16];
    for (int i = 0; i < 8; ++i) {
        uint32_t w;
        memcpy(&w, m + 4 * i, 4);
        k[i] = key[i] ^ w;
    }
    uint32_t nonce[3] = {(uint32_t)tweak, (uint32_t)(tweak >> 32), 0x6b6e6e6f};
    chacha20_block(k, 0, nonce, blk);
    memcpy(key, blk, sizeof key);
    memset(blk, 0, sizeof blk);
    memset(k, 0, sizeof k);
}

static void reseed(void) {
    const volatile struct kn_generation* g = (const volatile struct kn_generation*)(uintptr_t)kn_boot->generation;
    uint8_t e[32];
    seen_lo = g->id_lo;
    seen_hi = g->id_hi;
    for (int i = 0; i < 32; ++i) e[i] = g->entropy[i];
    mix(e, rdtsc() ^ seen_lo ^ (seen_hi << 1));
    memset(e, 0, sizeof e);
    nano_stats.reseeds++;
}

void random_init(void) { reseed(); }

void random_check_generation(void) {
    const volatile struct kn_generation* g = (const volatile struct kn_generation*)(uintptr_t)kn_boot->generation;
    if (g->id_lo != seen_lo || g->id_hi != seen_hi) reseed();
}

void nano_random(void* buf, size_t n) {
    random_check_generation();
    uint8_t* out = buf;
    uint32_t blk[16];
    const uint32_t nonce[3] = {0, 0, 0};
    uint32_t counter = 0;
    chacha20_block(key, counter++, nonce, blk);
    uint32_t next_key[8];
    memcpy(next_key, blk, 32);
    size_t k = MIN(n, 32);
    memcpy(out, (uint8_t*)blk + 32, k);
    out += k;
    n -= k;
    while (n > 0) {
        chacha20_block(key, counter++, nonce, blk);
        k = MIN(n, 64);
        memcpy(out, blk, k);
        out += k;
        n -= k;
        if (counter == 0) { /* 256 GiB in one request: rekey and go on */
            chacha20_block(key, 0xffffffffu, nonce, blk);
            memcpy(key, blk, 32);
        }
    }
    memcpy(key, next_key, sizeof key);
    memset(blk, 0, sizeof blk);
    memset(next_key, 0, sizeof next_key);
}

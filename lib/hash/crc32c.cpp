#include "hash/crc32c.h"

#include <nmmintrin.h>

#include <array>
#include <cstring>

namespace kindling {

namespace {

constexpr uint32_t kPoly = 0x82F63B78;  // reflected 0x1EDC6F41

using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables make_tables() {
    Tables t{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = c & 1 ? (c >> 1) ^ kPoly : c >> 1;
        t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
        for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
    return t;
}

constexpr Tables kTables = make_tables();

__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(uint32_t crc, const uint8_t* p, size_t n) {
    uint64_t c = ~crc;
    while (n && (reinterpret_cast<uintptr_t>(p) & 7)) {
        c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
        --n;
    }
    while (n >= 8) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        n -= 8;
    }
    while (n--) c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
    return ~static_cast<uint32_t>(c);
}

bool have_sse42() {
    static const bool yes = __builtin_cpu_supports("sse4.2");
    return yes;
}

// GF(2) polynomial arithmetic modulo the CRC polynomial, in the reflected bit order
// the CRC uses (bit 31 = x^0).  This is how zlib's crc32_combine works.
uint32_t multmodp(uint32_t a, uint32_t b) {
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ kPoly : b >> 1;
    }
    return p;
}

// x^(2^k) mod P for every k a 64-bit byte count can need (k = 3..66).
std::array<uint32_t, 72> make_x2n() {
    std::array<uint32_t, 72> t{};
    uint32_t p = 1u << 30;  // x^1
    for (auto& e : t) {
        e = p;
        p = multmodp(p, p);
    }
    return t;
}

// x^(n * 2^k) mod P.
uint32_t x2nmodp(uint64_t n, unsigned k) {
    static const std::array<uint32_t, 72> x2n = make_x2n();
    uint32_t p = 1u << 31;  // x^0
    while (n) {
        if (n & 1) p = multmodp(x2n[k], p);
        n >>= 1;
        ++k;
    }
    return p;
}

}  // namespace

uint32_t crc32c_portable(uint32_t crc, const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    uint32_t c = ~crc;
    while (n && (reinterpret_cast<uintptr_t>(p) & 7)) {
        c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xff];
        --n;
    }
    while (n >= 8) {
        uint32_t lo, hi;
        std::memcpy(&lo, p, 4);
        std::memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = kTables[7][lo & 0xff] ^ kTables[6][(lo >> 8) & 0xff] ^ kTables[5][(lo >> 16) & 0xff] ^
            kTables[4][lo >> 24] ^ kTables[3][hi & 0xff] ^ kTables[2][(hi >> 8) & 0xff] ^
            kTables[1][(hi >> 16) & 0xff] ^ kTables[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xff];
    return ~c;
}

uint32_t crc32c(uint32_t crc, const void* data, size_t n) {
    if (have_sse42()) return crc32c_sse42(crc, static_cast<const uint8_t*>(data), n);
    return crc32c_portable(crc, data, n);
}

uint32_t crc32c_extend_zeros(uint32_t crc, uint64_t n) {
    // Feeding a zero byte multiplies the (uninverted) register by x^8 mod P.
    if (n == 0) return crc;
    return ~multmodp(x2nmodp(n, 3), ~crc);
}

}  // namespace kindling

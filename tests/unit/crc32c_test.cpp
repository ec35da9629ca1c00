// CRC32C check values (RFC 3720 B.4), streaming, and extension by zeros.
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "hash/crc32c.h"

using namespace kindling;

TEST_CASE("crc32c: check values and streaming") {
    const char* s = "123456789";
    CHECK(crc32c(0, s, 9) == 0xE3069283u);
    CHECK(crc32c_portable(0, s, 9) == 0xE3069283u);
    CHECK(crc32c(0, nullptr, 0) == 0);
    // RFC 3720 B.4: 32 bytes of zeros, of 0xff, ascending.
    std::vector<uint8_t> z(32, 0), ff(32, 0xff), inc(32);
    for (int i = 0; i < 32; ++i) inc[i] = static_cast<uint8_t>(i);
    CHECK(crc32c(0, z.data(), 32) == 0x8A9136AAu);
    CHECK(crc32c(0, ff.data(), 32) == 0x62A8AB43u);
    CHECK(crc32c(0, inc.data(), 32) == 0x46DD794Eu);

    std::mt19937_64 rng(42);
    std::vector<uint8_t> data(100000);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    for (size_t start : {0, 1, 3, 7}) {
        for (size_t len : {0, 1, 8, 15, 64, 4099, 99990}) {
            CAPTURE(start);
            CAPTURE(len);
            uint32_t whole = crc32c(0, data.data() + start, len);
            CHECK(whole == crc32c_portable(0, data.data() + start, len));
            size_t cut = len / 3;
            CHECK(crc32c(crc32c(0, data.data() + start, cut), data.data() + start + cut, len - cut) == whole);
        }
    }
}

TEST_CASE("crc32c: extending by zeros equals hashing zeros") {
    std::vector<uint8_t> zeros(3 << 20, 0);
    uint32_t head = crc32c(0, "kindling", 8);
    for (uint64_t n : {0ull, 1ull, 7ull, 4096ull, 65537ull, 3ull << 20}) {
        CAPTURE(n);
        CHECK(crc32c_extend_zeros(head, n) == crc32c(head, zeros.data(), n));
        CHECK(crc32c_extend_zeros(0, n) == crc32c(0, zeros.data(), n));
    }
    // Composition: n zeros then m zeros.
    CHECK(crc32c_extend_zeros(crc32c_extend_zeros(head, 1000), 2000000) == crc32c_extend_zeros(head, 2001000));
}

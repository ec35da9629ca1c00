// lib/chunk: digests, OpenSSL wrappers against published vectors, and the
// convergent chunk codec (determinism, layer/tenant separation, tamper detection).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "chunk/chunk_codec.h"
#include "chunk/crypto.h"
#include "hash/digest.h"
#include "chunk/layer_keys.h"

using namespace kindling;

namespace {

std::vector<uint8_t> unhex(const std::string& h) {
    std::vector<uint8_t> out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoi(h.substr(i, 2), nullptr, 16)));
    return out;
}

std::span<const uint8_t> bytes_of(const std::string& s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = static_cast<uint8_t>(rng());
    return v;
}

std::vector<uint8_t> text_bytes(size_t n) {
    std::string s;
    while (s.size() < n) s += "the quick brown fox jumps over the lazy dog " + std::to_string(s.size() % 977) + "\n";
    return {s.begin(), s.begin() + static_cast<long>(n)};
}

Secret secret_of(uint8_t fill) { return Secret(std::vector<uint8_t>(32, fill)); }

}  // namespace

TEST_CASE("SHA-256 and hex round trip (FIPS 180-2 'abc')") {
    Digest d = sha256(bytes_of("abc"));
    CHECK(d.hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(Digest::from_hex(d.hex()) == d);
    CHECK(Digest::from_hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD") == d);
    CHECK_FALSE(Digest::from_hex("ba78"));
    CHECK_FALSE(Digest::from_hex(std::string(63, 'a') + "g"));
    CHECK(object_matches(d, bytes_of("abc")));
    CHECK_FALSE(object_matches(d, bytes_of("abd")));
}

TEST_CASE("HMAC-SHA256 matches RFC 4231 test case 2") {
    Digest d = hmac_sha256(bytes_of("Jefe"), bytes_of("what do ya want for nothing?"));
    CHECK(d.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("HKDF-SHA256 matches RFC 5869 test case 1") {
    std::vector<uint8_t> ikm(22, 0x0b);
    auto salt = unhex("000102030405060708090a0b0c");
    auto info = unhex("f0f1f2f3f4f5f6f7f8f9");
    Key k = hkdf_sha256(ikm, {reinterpret_cast<const char*>(salt.data()), salt.size()},
                        {reinterpret_cast<const char*>(info.data()), info.size()});
    CHECK(to_hex(k) == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf");
}

TEST_CASE("AES-256-GCM matches the GCM spec test cases 13 and 14") {
    Key key{};
    GcmNonce nonce{};
    Aes256Gcm aes;
    std::vector<uint8_t> out(16);
    aes.seal(key, nonce, {}, out.data());
    CHECK(to_hex(out) == "530f8afbc74536b9a963b4f1c4cb738b");

    std::vector<uint8_t> plain(16, 0), sealed(32);
    aes.seal(key, nonce, plain, sealed.data());
    CHECK(to_hex(sealed) == "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
    std::vector<uint8_t> back(16, 0xff);
    CHECK(aes.open(key, nonce, sealed, back.data()));
    CHECK(back == plain);
    sealed[3] ^= 1;
    CHECK_FALSE(aes.open(key, nonce, sealed, back.data()));
}

TEST_CASE("is_all_zero sees a single set byte anywhere") {
    std::vector<uint8_t> z(kChunkSize, 0);
    CHECK(is_all_zero(z));
    for (size_t pos : {size_t{0}, size_t{63}, size_t{64}, size_t{kChunkSize - 1}, size_t{12345}}) {
        z[pos] = 1;
        CHECK_FALSE(is_all_zero(z));
        z[pos] = 0;
    }
    CHECK(is_all_zero(std::span<const uint8_t>(z.data(), 3)));
}

TEST_CASE("sealing is convergent: same plain text and secret give the same chunk") {
    Secret s = secret_of(7);
    LayerKeys k1(LayerKind::kRuntime, s.bytes()), k2(LayerKind::kBase, s.bytes());
    auto plain = text_bytes(kChunkSize);
    ChunkSealer a(k1, 1), b(k2, 1);
    SealedChunk ca, cb;
    a.seal(plain, ca);
    b.seal(plain, cb);
    CHECK(ca.compressed);
    CHECK(ca.blob.size() < plain.size() / 4);
    CHECK(ca.id == cb.id);  // base and runtime share the convergence secret
    CHECK(ca.blob == cb.blob);
    CHECK(ca.plain_hash == sha256(plain));
    CHECK(ca.id == sha256(ca.blob));
    // key = HMAC-SHA256(layer_secret, SHA-256(plain)): the key is the chunk_key of the hash.
    CHECK(ca.key == k1.chunk_key(ca.plain_hash));
}

TEST_CASE("chunk format regression vector") {
    // Pinned output of this implementation: a change here changes every chunk id and
    // breaks dedup with stores written before it.
    Secret s = secret_of(0x42);
    LayerKeys keys(LayerKind::kFunction, s.bytes());
    std::vector<uint8_t> plain(1000);
    for (size_t i = 0; i < plain.size(); ++i) plain[i] = static_cast<uint8_t>(i * 7);
    ChunkSealer sealer(keys, 0);
    SealedChunk c;
    sealer.seal(plain, c);
    CHECK_FALSE(c.compressed);
    CHECK(c.blob.size() == plain.size() + kGcmTagSize);
    CHECK(c.id.hex() == "7de6b2e48a55773a6465e0f29f7fcf9c19ea7fc733b62a139f3fedbf23bc93e6");
    CHECK(to_hex(c.key) == "e56aead846c8c13407989edcb22755917984391c949c6a2168b00f0ee3ae6181");
}

TEST_CASE("tenant keys separate function chunks; convergence and tenant labels differ") {
    auto plain = random_bytes(kChunkSize, 1);
    Secret t1 = secret_of(1), t2 = secret_of(2);
    LayerKeys f1(LayerKind::kFunction, t1.bytes()), f2(LayerKind::kFunction, t2.bytes());
    LayerKeys conv_same_bytes(LayerKind::kRuntime, t1.bytes());
    ChunkSealer s1(f1, 0), s2(f2, 0), s3(conv_same_bytes, 0);
    SealedChunk c1, c2, c3;
    s1.seal(plain, c1);
    s2.seal(plain, c2);
    s3.seal(plain, c3);
    CHECK(c1.plain_hash == c2.plain_hash);
    CHECK(c1.id != c2.id);
    CHECK(c1.key != c2.key);
    CHECK(c1.id != c3.id);  // a tenant key equal to a convergence secret still differs
    // Same tenant, same content: deduplicated.
    SealedChunk again;
    s1.seal(plain, again);
    CHECK(again.id == c1.id);
}

TEST_CASE("open restores the plain text and rejects a wrong key or changed bytes") {
    Secret s = secret_of(9);
    LayerKeys keys(LayerKind::kBase, s.bytes());
    ChunkSealer sealer(keys, 1);
    ChunkOpener opener;
    for (auto plain : {text_bytes(kChunkSize), random_bytes(kChunkSize, 5), text_bytes(777)}) {
        SealedChunk c;
        sealer.seal(plain, c);
        ChunkEncoding enc = c.compressed ? ChunkEncoding{true, ChunkSealer::zstd_version(), 1} : ChunkEncoding{};
        std::vector<uint8_t> out(plain.size());
        opener.open(c.blob, c.key, enc, out);
        CHECK(out == plain);

        std::fill(out.begin(), out.end(), 0);
        Key wrong = c.key;
        wrong[0] ^= 1;
        CHECK_THROWS_AS(opener.open(c.blob, wrong, enc, out), DataError);
        auto bad = c.blob;
        bad[bad.size() / 2] ^= 0x80;
        CHECK_THROWS_AS(opener.open(bad, c.key, enc, out), DataError);
        // The tag check happens before anything reaches `out`.
        CHECK(std::all_of(out.begin(), out.end(), [](uint8_t b) { return b == 0; }));
        auto shorter = c.blob;
        shorter.resize(shorter.size() - 1);
        CHECK_THROWS_AS(opener.open(shorter, c.key, enc, out), DataError);
    }
}

TEST_CASE("raw and compressed encodings of one plain text never share a nonce") {
    ChunkEncoding raw{}, z1{true, 10504, 1}, z2{true, 10505, 1}, z3{true, 10504, 3};
    CHECK(chunk_nonce(raw) != chunk_nonce(z1));
    CHECK(chunk_nonce(z1) != chunk_nonce(z2));
    CHECK(chunk_nonce(z1) != chunk_nonce(z3));
}

TEST_CASE("incompressible chunks are stored raw even when compression is on") {
    Secret s = secret_of(3);
    LayerKeys keys(LayerKind::kBase, s.bytes());
    ChunkSealer sealer(keys, 1);
    SealedChunk c;
    auto plain = random_bytes(kChunkSize, 11);
    sealer.seal(plain, c);
    CHECK_FALSE(c.compressed);
    CHECK(c.blob.size() == kChunkSize + kGcmTagSize);
}

TEST_CASE("secrets: hex and raw key files, environment, errors") {
    CHECK(parse_secret_hex("00112233445566778899aabbccddeeff", "X").bytes().size() == 16);
    CHECK(parse_secret_hex(" 0011 2233445566778899aabbccddeeff\n", "X").bytes().size() == 16);
    CHECK_THROWS_AS(parse_secret_hex("0011", "X"), ConfigError);
    CHECK_THROWS_AS(parse_secret_hex("zz112233445566778899aabbccddeeff", "X"), ConfigError);
    CHECK(std::string(secret_env_var(LayerKind::kFunction)) == "KINDLING_TENANT_KEY");
    CHECK(std::string(secret_env_var(LayerKind::kRuntime)) == "KINDLING_CONVERGENCE_SECRET");
    ::unsetenv("KINDLING_TENANT_KEY");
    try {
        load_layer_secret(LayerKind::kFunction, "");
        FAIL("no throw");
    } catch (const ConfigError& e) {
        CHECK(std::string(e.what()).find("KINDLING_TENANT_KEY") != std::string::npos);
        CHECK(e.exit_code() == kExitConfig);
    }
    ::setenv("KINDLING_TENANT_KEY", "000102030405060708090a0b0c0d0e0f1011", 1);
    CHECK(load_layer_secret(LayerKind::kFunction, "").bytes().size() == 18);
    ::unsetenv("KINDLING_TENANT_KEY");
}

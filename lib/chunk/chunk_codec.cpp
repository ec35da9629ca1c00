#include "chunk/chunk_codec.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "base/byte_order.h"
#include "base/error.h"

namespace kindling {

GcmNonce chunk_nonce(const ChunkEncoding& enc) {
    GcmNonce n{};
    n[0] = 'k';
    n[1] = 'c';
    n[2] = 1;  // nonce layout version
    n[3] = enc.compressed ? 1 : 0;
    if (enc.compressed) {
        store_le(&n[4], static_cast<uint32_t>(enc.zstd_version));
        store_le(&n[8], static_cast<uint32_t>(enc.zstd_level));
    }
    return n;
}

bool is_all_zero(std::span<const uint8_t> data) {
    const uint8_t* p = data.data();
    size_t n = data.size();
    // Word-wise OR; the compiler vectorises the loop.
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        uint64_t w[8];
        std::memcpy(w, p + i, 64);
        for (uint64_t x : w) acc |= x;
        if (acc) return false;
    }
    for (; i < n; ++i) acc |= p[i];
    return acc == 0;
}

uint32_t ChunkSealer::zstd_version() { return ZSTD_versionNumber(); }

ChunkSealer::ChunkSealer(const LayerKeys& keys, int zstd_level)
    : keys_(keys), level_(zstd_level) {
    if (level_ != 0) {
        cctx_.reset(ZSTD_createCCtx());
        if (!cctx_) throw std::bad_alloc();
        zbuf_.resize(ZSTD_compressBound(kChunkSize));
    }
}

void ChunkSealer::seal(std::span<const uint8_t> plain, SealedChunk& out) {
    seal(plain, sha256(plain), out);
}

void ChunkSealer::seal(std::span<const uint8_t> plain, const Digest& plain_hash, SealedChunk& out) {
    if (plain.size() > kChunkSize) throw std::length_error("chunk larger than 512 KiB");
    out.plain_hash = plain_hash;
    out.key = keys_.chunk_key(out.plain_hash);
    std::span<const uint8_t> payload = plain;
    out.compressed = false;
    if (level_ != 0) {
        size_t z = ZSTD_compressCCtx(cctx_.get(), zbuf_.data(), zbuf_.size(), plain.data(),
                                     plain.size(), level_);
        if (ZSTD_isError(z))
            throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(z));
        // Keep the compressed form only when it saves space: random pages then cost
        // no decompression on restore.
        if (z < plain.size()) {
            payload = {zbuf_.data(), z};
            out.compressed = true;
        }
    }
    ChunkEncoding enc;
    if (out.compressed) enc = {true, zstd_version(), level_};
    out.blob.resize(payload.size() + kGcmTagSize);
    aes_.seal(out.key, chunk_nonce(enc), payload, out.blob.data());
    out.id = sha256(out.blob);
}

ChunkOpener::ChunkOpener() : dctx_(ZSTD_createDCtx()) {
    if (!dctx_) throw std::bad_alloc();
}

void ChunkOpener::open(std::span<const uint8_t> blob, const Key& key, const ChunkEncoding& enc,
                       std::span<uint8_t> out) {
    if (blob.size() < kGcmTagSize) throw DataError("decryption failed: stored object too short");
    size_t payload_len = blob.size() - kGcmTagSize;
    if (!enc.compressed) {
        if (payload_len != out.size())
            throw DataError("decryption failed: stored length " + std::to_string(payload_len) +
                            " does not match plain length " + std::to_string(out.size()));
        if (!aes_.open(key, chunk_nonce(enc), blob, out.data())) {
            wipe(out.data(), out.size());
            throw DataError("decryption failed: authentication tag mismatch");
        }
        return;
    }
    if (payload_len > ZSTD_compressBound(kChunkSize))
        throw DataError("decryption failed: stored object too large");
    zbuf_.resize(payload_len);
    if (!aes_.open(key, chunk_nonce(enc), blob, zbuf_.data())) {
        wipe(zbuf_.data(), zbuf_.size());
        throw DataError("decryption failed: authentication tag mismatch");
    }
    size_t n = ZSTD_decompressDCtx(dctx_.get(), out.data(), out.size(), zbuf_.data(), payload_len);
    if (ZSTD_isError(n) || n != out.size()) {
        wipe(out.data(), out.size());
        throw DataError(std::string("decompression failed: ") +
                        (ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong plain length"));
    }
}

}  // namespace kindling

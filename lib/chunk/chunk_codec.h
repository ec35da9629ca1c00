// One chunk through convergent encryption and back (DESIGN.md "Chunks, encryption,
// manifests"):
//
//   h   = SHA-256(plain)
//   key = HMAC-SHA256(layer_secret, h)
//   payload = zstd(plain) when compression is on and it saves space, else plain
//   blob = AES-256-GCM(key, nonce, payload) = ciphertext || 16-byte tag
//   id  = SHA-256(blob)
//
// The nonce is fixed per encoding: one key per content makes a fixed nonce safe, as
// long as one key never seals two different payloads.  The same plain text can be
// sealed raw or compressed, and two zstd versions may compress it differently, so the
// nonce carries the encoding, the zstd version and level: a different payload under
// the same key always gets a different nonce.
#pragma once

#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "chunk/crypto.h"
#include "hash/digest.h"
#include "chunk/layer_keys.h"

namespace kindling {

inline constexpr uint32_t kChunkSize = 512 * 1024;

// How a chunk's payload was encoded; recorded in the manifest (zstd version and level
// once per manifest, the compressed flag per chunk).
struct ChunkEncoding {
    bool compressed = false;
    uint32_t zstd_version = 0;
    int32_t zstd_level = 0;
};

GcmNonce chunk_nonce(const ChunkEncoding& enc);

bool is_all_zero(std::span<const uint8_t> data);

struct ZstdCCtxDeleter {
    void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct ZstdDCtxDeleter {
    void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

struct SealedChunk {
    ChunkId id;
    Digest plain_hash;
    Key key;
    bool compressed = false;
    std::vector<uint8_t> blob;  // ciphertext || tag; capacity reused between chunks
};

// Seals chunks for one layer.  Holds per-thread cipher and zstd contexts: one per
// worker thread.
class ChunkSealer {
public:
    // zstd_level 0 turns compression off.
    ChunkSealer(const LayerKeys& keys, int zstd_level);
    void seal(std::span<const uint8_t> plain, SealedChunk& out);
    // The same, with SHA-256(plain) already computed by the caller.
    void seal(std::span<const uint8_t> plain, const Digest& plain_hash, SealedChunk& out);
    // The encoding a compressed chunk from this sealer carries.
    static uint32_t zstd_version();

private:
    const LayerKeys& keys_;
    int level_;
    Aes256Gcm aes_;
    std::unique_ptr<ZSTD_CCtx, ZstdCCtxDeleter> cctx_;
    std::vector<uint8_t> zbuf_;
};

// Opens sealed chunks; per-thread like ChunkSealer.
class ChunkOpener {
public:
    ChunkOpener();
    // Decrypts `blob` with `key` into `out` (exactly the plain length).  Throws
    // DataError "decryption failed ..." or "decompression failed ..." (without naming
    // the chunk: callers add that).  On failure `out` holds nothing of the plain text.
    void open(std::span<const uint8_t> blob, const Key& key, const ChunkEncoding& enc,
              std::span<uint8_t> out);

private:
    Aes256Gcm aes_;
    std::unique_ptr<ZSTD_DCtx, ZstdDCtxDeleter> dctx_;
    std::vector<uint8_t> zbuf_;
};

}  // namespace kindling

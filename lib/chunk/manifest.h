// The manifest of one layer: which files, which chunks, and the keys to open them
// (DESIGN.md "Chunks, encryption, manifests").  Binary, little-endian, versioned:
//
//   "KNDLMANI" u16 version=1  u8 layer_kind  u8 flags(bit0: has parent)
//   u32 chunk_size  u32 zstd_version  i32 zstd_level  u8[32] parent id (zeros if none)
//   u32 n_entries, each: u8 type(0 file, 1 dir) u16 path_len path u32 mode u64 size
//                        u32 first_chunk u32 chunk_count
//   u32 n_chunks,  each: u64 offset u8 flags(bit0 zero, bit1 compressed)
//                        u32 plain_len u32 stored_len u8[32] id
//   u32 key_table_len  u8[12] nonce  key table ciphertext  u8[16] tag
//   u8[32] HMAC-SHA256(manifest MAC key, every byte before it)
//
// The key table holds, for each non-zero chunk in order, its key and its plain-text
// hash (64 bytes), sealed with AES-256-GCM under the layer's key-table key.  Its nonce
// is SIV-style, HMAC(siv key, table)[0..12), so the same layer always encodes to the
// same bytes (and the same manifest id) without ever reusing a nonce for two tables.
//
// The manifest id is SHA-256 of the encoded bytes; the manifest is stored under it.
// Decoding checks the HMAC before it parses or decrypts anything past the header.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "chunk/chunk_codec.h"
#include "chunk/crypto.h"
#include "hash/digest.h"
#include "chunk/layer_keys.h"

namespace kindling {

inline constexpr uint16_t kManifestVersion = 1;

struct ManifestEntry {
    std::string path;  // relative, '/'-separated; "." is the snapshot directory itself
    bool is_dir = false;
    uint32_t mode = 0;  // permission bits (07777)
    uint64_t size = 0;
    uint32_t first_chunk = 0;
    uint32_t chunk_count = 0;
};

struct ManifestChunk {
    uint64_t offset = 0;  // within its file
    ChunkId id;           // zeros for a zero chunk
    uint32_t plain_len = 0;
    uint32_t stored_len = 0;  // bytes in the store (0 for a zero chunk)
    bool zero = false;
    bool compressed = false;
    // From the encrypted key table (zeros for a zero chunk).
    Digest plain_hash;
    Key key{};
};

struct Manifest {
    LayerKind kind = LayerKind::kBase;
    std::optional<Digest> parent;
    uint32_t chunk_size = kChunkSize;
    uint32_t zstd_version = 0;
    int32_t zstd_level = 0;
    std::vector<ManifestEntry> entries;
    std::vector<ManifestChunk> chunks;

    ChunkEncoding encoding(const ManifestChunk& c) const {
        return c.compressed ? ChunkEncoding{true, zstd_version, zstd_level} : ChunkEncoding{};
    }
    ~Manifest();
};

std::vector<uint8_t> encode_manifest(const Manifest& m, const LayerKeys& keys);

// The layer kind from the (not yet authenticated) header, to pick the secret.
// DataError when the bytes are not a manifest of a known version.
LayerKind peek_manifest_kind(std::span<const uint8_t> bytes);

// DataError "wrong key or tampered manifest" when the HMAC does not match; DataError
// naming the problem for a well-authenticated but malformed manifest.
Manifest decode_manifest(std::span<const uint8_t> bytes, const LayerKeys& keys);

// A relative path that cannot leave the output directory: no leading '/', no empty,
// "." or ".." components (except the root entry ".").
bool is_safe_relative_path(const std::string& p);

}  // namespace kindling

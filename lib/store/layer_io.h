// Moving one snapshot layer between a directory and a store: put (chunk, seal,
// store, write the manifest), get (fetch, check, open, reassemble sparse), verify and
// stat.  The chunk and manifest formats live in lib/chunk; this file adds the files,
// the threads and the store.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "chunk/layer_keys.h"
#include "chunk/manifest.h"
#include "store/store.h"

namespace kindling {

// Called from the calling thread about ten times a second while work runs, and once
// at the end with done == total.  It may throw to cancel the operation (on SIGINT,
// say): the workers stop, and get_layer removes what it wrote.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

struct LayerStats {
    uint64_t files = 0;
    uint64_t logical_bytes = 0;  // sum of file sizes
    uint64_t chunks = 0;
    uint64_t zero_chunks = 0;
    uint64_t data_bytes = 0;      // bytes in non-zero chunks, repeats counted
    uint64_t unique_chunks = 0;   // distinct non-zero chunk ids
    uint64_t unique_plain_bytes = 0;
    uint64_t stored_bytes = 0;    // bytes of the distinct chunks in the store
    uint64_t compressed_chunks = 0;
    // logical bytes per stored byte (zero chunks, repeats and compression all count).
    double dedup_ratio() const {
        return stored_bytes ? double(logical_bytes) / double(stored_bytes) : 0.0;
    }
};

LayerStats layer_stats(const Manifest& m);

unsigned default_threads();

struct PutOptions {
    LayerKind kind = LayerKind::kBase;
    std::optional<Digest> parent;
    int zstd_level = 1;  // 0: no compression
    unsigned threads = 0;  // 0: default_threads()
    ProgressFn progress;
};

struct PutResult {
    Digest manifest_id;
    LayerStats stats;
    uint64_t new_chunks = 0;  // chunks this put added to the store
    uint64_t new_bytes = 0;
    uint64_t manifest_bytes = 0;
};

// Cuts every regular file under `snapdir` into chunks and stores them and the
// manifest.  Errors name the file and chunk: "DIR/mem: chunk 17 at offset 8912896: ...".
PutResult put_layer(const std::string& snapdir, Store& store, const LayerKeys& keys,
                    const PutOptions& opts);

// Fetches a manifest's bytes and checks them against the id.  Error 66 when the store
// does not hold it, DataError when the bytes do not hash to the id.
std::vector<uint8_t> fetch_manifest(Store& store, const Digest& id);

// fetch_manifest + the secret for its layer kind (key_file, else the environment) +
// decode_manifest.
Manifest open_manifest(Store& store, const Digest& id, const std::string& key_file);

// Fetches one non-zero chunk, checks the stored bytes against its id, decrypts and
// decompresses it into `plain` (exactly c.plain_len bytes).  Errors start with
// "chunk ID: ": 66 when the store does not hold it, 65 when the bytes do not match the
// id or do not open, the store's own error when the read fails.  Callers add where.
void fetch_chunk(Store& store, const Manifest& m, const ManifestChunk& c, ChunkOpener& opener,
                 std::span<uint8_t> plain);

struct GetOptions {
    unsigned threads = 0;
    bool sync = true;  // fsync files and directories before the rename
    ProgressFn progress;
    // Manifest chunk indices to fetch first, in this order (an access log's working
    // set, say); the other chunks follow in manifest order.
    std::vector<uint32_t> first;
};

// Reassembles the layer into `out_dir`, which must not exist (or be an empty
// directory).  Files are written into a temp directory beside it and renamed into
// place at the end, so a failure leaves nothing at `out_dir`.  Zero chunks stay holes.
void get_layer(Store& store, const Manifest& m, const std::string& out_dir,
               const GetOptions& opts);

struct ChunkProblem {
    std::string path;  // file inside the layer
    uint32_t chunk = 0;  // index within the file
    uint64_t offset = 0;
    ChunkId id;
    std::string what;
    int exit_code = 0;
    std::string message() const;  // "PATH: chunk N at offset X: WHAT"
};

// Fetches and checks every distinct chunk: the id against the bytes, decryption,
// decompression, the plain length and SHA-256 of the plain text.  Returns the
// problems, empty when the layer is whole.
// `first`: as GetOptions::first.
std::vector<ChunkProblem> verify_layer(Store& store, const Manifest& m, unsigned threads,
                                       const ProgressFn& progress,
                                       const std::vector<uint32_t>& first = {});

}  // namespace kindling

// snapfs: a read-only FUSE mount of snapshot layers from a chunk store (DESIGN.md
// "snapfs", issue 6).  Files appear whole, at their sizes and modes; a read fetches,
// checks, decrypts and decompresses only the chunks it covers (ChunkCache); zero
// chunks are holes (SEEK_DATA/SEEK_HOLE answer at chunk granularity) and cost nothing.
//
// Copy-on-read: files are opened FOPEN_DIRECT_IO, so the kernel keeps no page cache of
// them and every reader gets its own copy.  The exception is `mem`, which fc-launch's
// uffd backend maps MAP_SHARED to UFFDIO_COPY from: the kernel refuses shared maps of
// direct-I/O FUSE files unless the server can set FUSE_DIRECT_IO_ALLOW_MMAP (libfuse
// >= 3.16), so `mem` goes through the page cache, dropped on every open (keep_cache=0)
// and after the last close.  Guest memory stays private either way: UFFDIO_COPY.
//
// Layers: one layer is mounted at the root; several are mounted side by side as
// MOUNTPOINT/NAME/, so a diff layer's relative parent path ("../base") resolves.
//
// Access log (--record, --prefetch), text, one chunk per line in first-read order:
//     snapfs-access 1
//     LAYER<TAB>PATH<TAB>CHUNK      LAYER "." for a single-layer mount; CHUNK is the
//                                    chunk index within PATH (offset / 512 KiB)
// --prefetch also takes an fc-launch page log (access_log.h, "KNACCESS"): its pages
// name chunks of every layer's `mem`.  Without --prefetch, a layer's own access.log
// (such a page log, kept in the snapshot) is prefetched once mounted (REAP).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "hash/digest.h"
#include "chunk/manifest.h"
#include "fuse/chunk_cache.h"
#include "store/store.h"

namespace kindling {

struct SnapfsLayer {
    std::string name;  // empty: mounted at the root (only when it is the only layer)
    Digest id;
    Manifest manifest;
};

struct SnapfsOptions {
    ChunkCacheOptions cache;
    std::string record_path;    // write the access log here on unmount
    std::string prefetch_path;  // fetch in this order in the background
    // Without prefetch_path: prefetch in the order of the layer's own access.log, if
    // it has one (REAP: recorded by a first restore).
    bool reap = true;
    bool foreground = true;
    bool direct_io_everywhere = true;  // `mem` too (then it can only be read, not mmapped)
};

// Checks that `path` can take a mount: an existing, empty directory that is not a
// mount point already.  Error (66 missing, 73 not empty or in use) naming the cause.
void check_mountpoint(const std::string& path);

// Parses an access log (either format) into (layer, chunk) pairs for `layers`.
// DataError on a malformed file; lines naming unknown files are skipped.
std::vector<std::pair<uint32_t, uint32_t>> read_snapfs_access_log(const std::string& path,
                                                                  const std::vector<SnapfsLayer>& layers);
// The same for bytes already read; `path` names them in errors.
std::vector<std::pair<uint32_t, uint32_t>> parse_snapfs_access_log(const std::vector<uint8_t>& bytes,
                                                                   const std::string& path,
                                                                   const std::vector<SnapfsLayer>& layers);

class Snapfs {
public:
    Snapfs(Store& store, std::vector<SnapfsLayer> layers, SnapfsOptions opts);
    ~Snapfs();

    // Mounts at `mountpoint` (check_mountpoint first), optionally daemonizes, serves
    // until unmounted or SIGINT/SIGTERM/SIGHUP, unmounts and writes the access log.
    // Errors before the mount is up throw; nothing stays mounted.
    void run(const std::string& mountpoint);

    ChunkCacheStats stats() const;
    uint64_t logical_bytes() const;
    // Store reads still stuck after unmount (a hung store).  When non-zero, this
    // object and the store must not be destroyed: the caller exits instead.
    size_t stuck_fetches() const;

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace kindling

// Writes one snapshot layer (snapshot_dir.h) atomically: every file goes into
// DIR.tmp.XXXXXX, is fsync'd, and the directory is renamed to DIR.  A failure leaves
// no DIR and no temp directory behind.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "kvm/guest_memory.h"
#include "snapshot/layer_info.h"

namespace kindling {

enum class MemScan {
    // Read every page to find the zero ones.  Always correct.
    kReadAll,
    // Skip pages mincore() says were never faulted in: they are zero.  Only for
    // anonymous guest memory that is not uffd- or file-backed (a booted VM, not a
    // restored one), where it avoids touching — and faulting in — untouched memory.
    kSkipNonResident,
};

struct WriteOptions {
    bool fsync = true;     // fsync files and directories (off only for tests/benchmarks)
    bool replace = false;  // replace an existing DIR (else: error "DIR already exists")
    MemScan scan = MemScan::kReadAll;
};

// Writes a full layer.  `vmstate` is encode_vmstate()'s output; `mem` must be
// cfg.mem_size_mib MiB.  Returns what it wrote to snapshot.json.
LayerInfo write_full_layer(const std::string& dir, const LayerConfig& cfg, std::span<const uint8_t> vmstate,
                           const GuestMemory& mem, const WriteOptions& opts = {});

// Writes a diff layer over the layer in `parent_dir` (which must exist, be valid and
// describe the same machine): only the pages set in `dirty` (guest-page order, see
// DirtyBitmap) are stored.
LayerInfo write_diff_layer(const std::string& dir, const LayerConfig& cfg, const std::string& parent_dir,
                           std::span<const uint8_t> vmstate, const GuestMemory& mem,
                           std::span<const uint64_t> dirty, const WriteOptions& opts = {});

}  // namespace kindling

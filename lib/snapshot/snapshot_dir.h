// A snapshot layer on disk: one directory holding
//   snapshot.json  format version, layer id, kind (full/diff), machine and device
//                  config, parent layer (relative path + id), tags, and the size and
//                  CRC32C of every other file
//   vmstate        the machine state (vmstate.h)
//   mem            guest memory, exactly the machine's size, guest pages in order
//                  (RAM regions concatenated); sparse: only non-zero pages are written,
//                  the rest are holes
//   mem.bitmap     diff layers only: one bit per 4 KiB page (u64 words, little-endian,
//                  bit i of word w = page 64w+i): the pages this layer holds; `mem`
//                  keeps them at their natural offset
//
// A full layer holds every page.  A diff layer holds the pages dirtied since its
// parent; restore stacks them: function over runtime over base (DESIGN.md
// "Snapshots").  Layers are written atomically: into DIR.tmp.XXXXXX, fsync'd, then
// renamed to DIR.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "devices/device_config.h"
#include "kvm/guest_memory.h"
#include "snapshot/vmstate.h"

namespace kindling {

inline constexpr uint32_t kSnapshotFormatVersion = 1;
inline constexpr uint64_t kSnapshotPageSize = 4096;
inline constexpr size_t kMaxLayerDepth = 64;

enum class LayerKind { kFull, kDiff };

// What the caller says about the machine being snapshotted.
struct LayerConfig {
    MachineKind machine_kind = MachineKind::kNano;
    uint32_t vcpu_count = 1;
    uint64_t mem_size_mib = 0;
    std::optional<VsockConfig> vsock;
    std::vector<DriveConfig> drives;
    std::vector<std::string> tags;  // free-form: "base", "runtime", "function:hello"
};

struct FileSummary {
    uint64_t size = 0;
    uint32_t crc32c = 0;
};

struct ParentRef {
    std::string path;  // as stored: relative to this layer's directory, or absolute
    std::string id;
};

// snapshot.json, parsed and validated.
struct LayerInfo {
    uint32_t format_version = kSnapshotFormatVersion;
    std::string id;  // 32 hex digits, random per layer
    LayerKind kind = LayerKind::kFull;
    LayerConfig config;
    std::optional<ParentRef> parent;  // diff layers only
    FileSummary vmstate;
    FileSummary mem;                  // CRC32C of the whole file, holes read as zeros
    uint64_t mem_data_bytes = 0;      // bytes written (non-zero pages this layer holds)
    std::optional<FileSummary> bitmap;  // diff layers only

    uint64_t mem_size() const { return config.mem_size_mib << 20; }
    uint64_t page_count() const { return mem_size() / kSnapshotPageSize; }
};

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

// Reads and validates DIR/snapshot.json and checks the other files against it
// (present, sizes, the bitmap's CRC).  DataError naming the file on any problem;
// SysError when a file cannot be read.  Does not follow the parent.
LayerInfo read_layer_info(const std::string& dir);

// A dirty-page bitmap in guest-page order, built from KVM_GET_DIRTY_LOG's per-slot
// bitmaps (slot i = GuestMemory region i; its first page is the sum of the sizes of
// the regions before it, divided by 4096).
class DirtyBitmap {
public:
    explicit DirtyBitmap(uint64_t pages) : pages_(pages), words_((pages + 63) / 64, 0) {}
    uint64_t pages() const { return pages_; }
    void set(uint64_t page) { words_[page / 64] |= 1ull << (page % 64); }
    bool test(uint64_t page) const { return words_[page / 64] >> (page % 64) & 1; }
    // ORs in one slot's KVM bitmap (`slot_pages` bits) starting at `first_page`.
    void add_slot_log(uint64_t first_page, std::span<const uint64_t> slot_bits, uint64_t slot_pages);
    std::span<const uint64_t> words() const { return words_; }

private:
    uint64_t pages_;
    std::vector<uint64_t> words_;
};

// A stack of layers, top first, opened from the top layer's directory by following
// each layer's parent down to a full layer.  Answers, for every guest page, which
// layer's `mem` serves it at which offset — or that it is zero (a hole in the layer
// that holds it, so a uffd handler can use UFFDIO_ZEROPAGE without reading).
class LayerStack {
public:
    struct Layer {
        std::string dir;
        LayerInfo info;
        UniqueFd mem;  // O_RDONLY
    };
    struct PageSource {
        int layer = -1;       // index into layers(); -1 = the page is zero
        uint64_t offset = 0;  // byte offset in that layer's mem
        bool zero() const { return layer < 0; }
    };
    // Consecutive pages served from consecutive offsets of one layer (or all zero).
    struct Run {
        uint64_t first_page = 0;
        uint64_t pages = 0;
        PageSource source;
    };

    // Opens DIR and every parent.  DataError naming the layer and the file on any
    // inconsistency: a missing parent, a parent whose id does not match, layers of
    // different machines, a loop, a diff layer at the bottom, more than 64 layers.
    static LayerStack open(const std::string& dir);

    const std::vector<Layer>& layers() const { return layers_; }
    const LayerInfo& top() const { return layers_.front().info; }
    uint64_t mem_size() const { return top().mem_size(); }
    uint64_t page_count() const { return top().page_count(); }

    PageSource page(uint64_t page) const;
    std::vector<Run> runs() const;

    // The top layer's vmstate, checked against snapshot.json (size, CRC32C) and
    // against the machine it describes (memory size, vCPU count, kind).
    MachineState read_vmstate() const;

    // Reads the whole guest image into `dst` (mem_size() bytes).  With
    // `dst_is_zero`, zero pages are not written (fresh anonymous memory).
    void read_memory(uint8_t* dst, bool dst_is_zero = false) const;

    // Reads every layer's `mem` and checks its CRC32C against snapshot.json (the
    // lazy restore paths never read all of it, so this is a separate, slow check).
    void verify_memory() const;

private:
    std::vector<Layer> layers_;
    std::vector<uint8_t> source_;  // per page: layer index, or kZero
    static constexpr uint8_t kZero = 0xff;
};

}  // namespace kindling

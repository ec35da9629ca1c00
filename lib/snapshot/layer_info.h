// snapshot.json: what one layer directory says about itself (format version, id,
// kind, machine and device config, parent, tags, and the size and CRC32C of every
// other file), its JSON codec, and the checks that the files match it.  The layout
// of the directory: snapshot_dir.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "devices/device_config.h"
#include "snapshot/vmstate.h"

namespace kindling {

inline constexpr uint32_t kSnapshotFormatVersion = 1;
inline constexpr uint64_t kSnapshotPageSize = 4096;

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

// The text of snapshot.json for `info` (pretty-printed, newline-terminated).
std::string encode_layer_json(const LayerInfo& info);

// Parses and validates snapshot.json's `text`; `file` names it in errors.  DataError
// "FILE: FIELD: reason" on any missing, mistyped or out-of-range field, and on an
// unsupported format version.
LayerInfo decode_layer_json(const std::string& file, const std::string& text);

// Reads and validates DIR/snapshot.json and checks the other files against it
// (vmstate and mem present with the sizes it states; mem.bitmap present in a diff
// layer).  DataError naming the file on any problem; SysError when a file cannot be
// read.  Does not follow the parent.  A drive's relative path_on_host comes back
// prefixed with "DIR/" (files the layer holds itself, e.g. snap-make's overlay).
LayerInfo read_layer_info(const std::string& dir);

// What a layer's snapshot.json may reference (its parent layer, its drives): only
// files in the directory that holds the layer -- its siblings and what lies below --
// so a snapshot directory is never a capability for other host files.  Paths are
// stored relative to the layer and resolved through symlinks before the check.
//
// The scope of layer `dir`: its parent directory, resolved.
std::string layer_scope(const std::string& dir);
// Whether `path`, resolved, lies in `scope` (a layer_scope()).
bool in_layer_scope(const std::string& scope, const std::string& path);
// `path` as layer `dir` stores it: relative to `dir`.  Throws UsageError naming
// `what` if it lies outside dir's scope (a restore would refuse it).
std::string layer_reference(const std::string& dir, const std::string& path, const std::string& what);

// Reads the file at `path` whole and checks it against its snapshot.json summary.
// DataError naming the path on a size or CRC32C mismatch.
std::vector<uint8_t> read_layer_file(const std::string& path, const FileSummary& expected);

// DataError "PATH: CRC32C mismatch (snapshot.json X, file Y)" unless they are equal.
void check_layer_crc(const std::string& path, uint32_t expected, uint32_t actual);

}  // namespace kindling

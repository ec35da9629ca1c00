// The layers a restore reads, top first: for every guest page, the layer whose `mem`
// serves it, or that it is zero.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/fd.h"
#include "snapshot/layer_info.h"
#include "snapshot/vmstate.h"

namespace kindling {

inline constexpr size_t kMaxLayerDepth = 64;

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

    // Where guest page `page` comes from.  Error when it is beyond page_count().
    PageSource page(uint64_t page) const;
    // Every page, as maximal runs in page order.
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

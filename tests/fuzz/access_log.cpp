// The page access log (lib/snapshot/access_log, `fc-launch --prefetch`, and a layer's
// access.log that snapfs reads from the store) and snapfs's text access log
// (lib/fuse parse_snapfs_access_log).  Also tried with the trailing CRC32C fixed, so
// mutations get past it.
#include <vector>

#include "base/error.h"
#include "fuse/snapfs.h"
#include "hash/crc32c.h"
#include "snapshot/access_log.h"
#include "tests/fuzz/fuzz.h"

using namespace kindling;

namespace {

// Two layers, each with a 4-chunk `mem` and a 1-chunk `disk`, as snapfs mounts them.
const std::vector<SnapfsLayer>& layers() {
    static const std::vector<SnapfsLayer> ls = [] {
        std::vector<SnapfsLayer> v(2);
        v[0].name = "base";
        v[1].name = "fn";
        for (auto& l : v) {
            l.manifest.entries.push_back({".", true, 0755, 0, 0, 0});
            l.manifest.entries.push_back({"mem", false, 0600, 4 * uint64_t{kChunkSize}, 0, 4});
            l.manifest.entries.push_back({"disk", false, 0600, 100, 4, 1});
            l.manifest.chunks.resize(5);
        }
        return v;
    }();
    return ls;
}

void decode(const std::vector<uint8_t>& b) {
    try {
        AccessLog log = decode_access_log(b, "fuzz");
        std::string again = encode_access_log(log);
        if (decode_access_log(std::span(reinterpret_cast<const uint8_t*>(again.data()), again.size()), "re-encoded")
                .pages != log.pages)
            std::abort();
    } catch (const DataError&) {
    }
    try {
        for (auto [li, ci] : parse_snapfs_access_log(b, "fuzz", layers()))
            if (li >= layers().size() || ci >= layers()[li].manifest.chunks.size()) std::abort();
    } catch (const DataError&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<uint8_t> b(data, data + size);
    decode(b);
    if (size >= 4) {
        uint32_t crc = crc32c(0, b.data(), b.size() - 4);
        std::memcpy(b.data() + b.size() - 4, &crc, 4);
        decode(b);
    }
    return 0;
}

// The vmstate decoder (lib/snapshot/vmstate): a snapshot's `vmstate` file is input.
// Whatever decodes must encode again and decode to the same bytes.  The CRC32C over
// the payload is recomputed (when the header is there) so mutations reach the
// sections instead of dying at the checksum.
#include <cstdlib>
#include <vector>

#include "base/error.h"
#include "hash/crc32c.h"
#include "snapshot/vmstate.h"
#include "tests/fuzz/fuzz.h"

using namespace kindling;

namespace {

void decode_round_trip(std::span<const uint8_t> bytes) {
    MachineState s;
    try {
        s = decode_vmstate(bytes, "fuzz");
    } catch (const DataError&) {
        return;
    }
    std::vector<uint8_t> again = encode_vmstate(s);
    MachineState t = decode_vmstate(again, "fuzz re-encoded");
    if (encode_vmstate(t) != again) std::abort();  // the codec is not a fixed point
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    decode_round_trip({data, size});
    if (size >= kVmstateHeaderSize) {
        std::vector<uint8_t> fixed(data, data + size);
        uint32_t crc = crc32c(0, fixed.data() + kVmstateHeaderSize, fixed.size() - kVmstateHeaderSize);
        std::memcpy(fixed.data() + 20, &crc, 4);
        decode_round_trip(fixed);
    }
    return 0;
}

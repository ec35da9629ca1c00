// The chunk manifest codec (lib/chunk/manifest): manifests come from a store.  The
// target holds the keys, so besides the raw input it also tries the input with a
// valid HMAC appended (the HMAC is checked first; without this nothing past it would
// be reached).  A manifest that decodes must encode to the very same bytes.
#include <cstdlib>
#include <vector>

#include "base/error.h"
#include "chunk/crypto.h"
#include "chunk/manifest.h"
#include "tests/fuzz/fuzz.h"

using namespace kindling;

namespace {

const std::vector<uint8_t> kSecret(32, 0x5a);

const LayerKeys& keys_for(LayerKind k) {
    static const LayerKeys base(LayerKind::kBase, kSecret), runtime(LayerKind::kRuntime, kSecret),
        function(LayerKind::kFunction, kSecret);
    return k == LayerKind::kBase ? base : k == LayerKind::kRuntime ? runtime : function;
}

void decode_and_check(std::span<const uint8_t> bytes, const LayerKeys& keys) {
    try {
        Manifest m = decode_manifest(bytes, keys);
        std::vector<uint8_t> again = encode_manifest(m, keys);
        if (again.size() != bytes.size() || !std::equal(again.begin(), again.end(), bytes.begin())) std::abort();
    } catch (const DataError&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::span<const uint8_t> in(data, size);
    LayerKind kind;
    try {
        kind = peek_manifest_kind(in);
    } catch (const DataError&) {
        return 0;
    }
    const LayerKeys& keys = keys_for(kind);
    decode_and_check(in, keys);
    std::vector<uint8_t> signed_bytes(data, data + size);
    Digest mac = hmac_sha256({keys.manifest_mac_key().data(), keys.manifest_mac_key().size()}, signed_bytes);
    signed_bytes.insert(signed_bytes.end(), mac.bytes.begin(), mac.bytes.end());
    decode_and_check(signed_bytes, keys);
    return 0;
}

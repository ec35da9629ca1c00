// snapshot.json (lib/snapshot/layer_info): a layer directory comes from a store or a
// user.  What decodes must encode and decode to the same text.
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "snapshot/layer_info.h"
#include "tests/fuzz/fuzz.h"

using namespace kindling;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    LayerInfo info;
    try {
        info = decode_layer_json("snapshot.json", std::string(fuzz::as_text(data, size)));
    } catch (const DataError&) {
        return 0;
    }
    (void)info.page_count();
    std::string text = encode_layer_json(info);
    LayerInfo again = decode_layer_json("re-encoded snapshot.json", text);
    if (encode_layer_json(again) != text) std::abort();
    return 0;
}

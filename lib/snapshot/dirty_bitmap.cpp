#include "snapshot/dirty_bitmap.h"

#include "base/byte_order.h"
#include "base/error.h"

namespace kindling {

void DirtyBitmap::add_slot_log(uint64_t first_page, std::span<const uint64_t> slot_bits, uint64_t slot_pages) {
    if (first_page > pages_ || slot_pages > pages_ - first_page || slot_bits.size() * 64 < slot_pages)
        throw Error("DirtyBitmap: slot of " + std::to_string(slot_pages) + " pages at page " + std::to_string(first_page) +
                    " does not fit " + std::to_string(pages_) + " pages");
    for (uint64_t w = 0; w < (slot_pages + 63) / 64; ++w) {
        uint64_t bits = slot_bits[w];
        if (w == slot_pages / 64) bits &= (1ull << (slot_pages % 64)) - 1;  // last partial word
        while (bits) {
            int b = __builtin_ctzll(bits);
            set(first_page + w * 64 + static_cast<uint64_t>(b));
            bits &= bits - 1;
        }
    }
}

std::string encode_page_bitmap(std::span<const uint64_t> words) {
    std::string out;
    out.reserve(words.size() * 8);
    for (uint64_t w : words) append_le(out, w);
    return out;
}

std::vector<uint64_t> read_page_bitmap(const std::string& dir, const LayerInfo& l) {
    const std::string path = dir + "/mem.bitmap";
    std::vector<uint8_t> b = read_layer_file(path, *l.bitmap);
    std::vector<uint64_t> words(b.size() / 8);
    for (size_t i = 0; i < words.size(); ++i) words[i] = load_le<uint64_t>(&b[i * 8]);
    const uint64_t pages = l.page_count();
    if (pages % 64 && !words.empty() && (words.back() >> (pages % 64)))
        throw DataError(path + ": bits set beyond the machine's " + std::to_string(pages) + " pages");
    return words;
}

}  // namespace kindling

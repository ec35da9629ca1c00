// One bit per 4 KiB guest page, in guest-page order (u64 words; bit i of word w =
// page 64w+i): the pages a diff layer holds.  Built from KVM's dirty log when the
// layer is written; stored little-endian as the layer's mem.bitmap.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "snapshot/layer_info.h"

namespace kindling {

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
    // Error when the slot does not fit the bitmap; bits past `slot_pages` are ignored.
    void add_slot_log(uint64_t first_page, std::span<const uint64_t> slot_bits, uint64_t slot_pages);
    std::span<const uint64_t> words() const { return words_; }

private:
    uint64_t pages_;
    std::vector<uint64_t> words_;
};

// The bytes of mem.bitmap for `words`: each word little-endian, in order.
std::string encode_page_bitmap(std::span<const uint64_t> words);

// Reads DIR/mem.bitmap of the diff layer `info`, checked against snapshot.json (size,
// CRC32C) and against the machine (no bit beyond its last page).  DataError naming
// the file on any mismatch.
std::vector<uint64_t> read_page_bitmap(const std::string& dir, const LayerInfo& info);

}  // namespace kindling

#include "devices/bus.h"

#include "base/error.h"

namespace kindling {

void Bus::add(uint64_t base, uint64_t len, std::shared_ptr<BusDevice> dev) {
    auto next = ranges_.lower_bound(base);
    if (next != ranges_.end() && next->first < base + len) throw Error("bus: overlapping device range");
    if (next != ranges_.begin()) {
        auto prev = std::prev(next);
        if (prev->first + prev->second.len > base) throw Error("bus: overlapping device range");
    }
    ranges_.emplace(base, Range{len, std::move(dev)});
}

const std::pair<const uint64_t, Bus::Range>* Bus::find(uint64_t addr, size_t len) const {
    auto it = ranges_.upper_bound(addr);
    if (it == ranges_.begin()) return nullptr;
    --it;
    uint64_t off = addr - it->first;
    if (off >= it->second.len || len > it->second.len - off) return nullptr;
    return &*it;
}

bool Bus::read(uint64_t addr, uint8_t* data, size_t len) const {
    auto* r = find(addr, len);
    if (!r) return false;
    r->second.dev->read(addr - r->first, data, len);
    return true;
}

bool Bus::write(uint64_t addr, const uint8_t* data, size_t len) const {
    auto* r = find(addr, len);
    if (!r) return false;
    r->second.dev->write(addr - r->first, data, len);
    return true;
}

}  // namespace kindling

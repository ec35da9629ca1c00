// The split virtqueue (lib/devices/virtio/virtqueue) on its own, as a device uses it:
// the layout the driver programs (size, ring addresses, indirect descriptors), guest
// memory holding whatever the input says (descriptor tables, indirect tables, loops,
// addresses past the end), then pops, gathers/scatters at offsets, pushes and
// undo_pops in the order the input picks.  Every chain a pop hands out must lie in
// guest memory and within the chain limits.
#include <cstdlib>

#include "devices/virtio/virtqueue.h"
#include "kvm/guest_memory.h"
#include "tests/fuzz/fuzz.h"

using namespace kindling;

namespace {

constexpr uint64_t kMemSize = 64 * 1024;

void check_inside(const GuestMemory& mem, const DescriptorChain& c) {
    uint64_t r = 0, w = 0;
    for (const auto& b : c.readable) {
        if (b.host < mem.base() || b.host + b.len > mem.base() + kMemSize) std::abort();
        r += b.len;
    }
    for (const auto& b : c.writable) {
        if (b.host < mem.base() || b.host + b.len > mem.base() + kMemSize) std::abort();
        w += b.len;
    }
    if (r != c.readable_bytes || w != c.writable_bytes || r + w > Virtqueue::kMaxChainBytes) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static bool init = (fuzz::quiet(), true);
    (void)init;
    fuzz::Input in(data, size);
    GuestMemory mem(kMemSize);
    Virtqueue q(mem, "fuzz", 0, 256);
    uint8_t how = in.take<uint8_t>();
    VirtqueueState& st = q.config();
    st.size = how & 0x80 ? in.take<uint16_t>() : static_cast<uint16_t>(1u << (how % 9));
    st.ready = true;
    // Rings at fixed, valid places unless the input asks for its own addresses.
    st.desc_addr = how & 0x40 ? in.take<uint64_t>() : 0x0000;
    st.avail_addr = how & 0x40 ? in.take<uint64_t>() : 0x1000;
    st.used_addr = how & 0x40 ? in.take<uint64_t>() : 0x2000;
    st.next_avail = st.next_used = how & 0x20 ? in.take<uint16_t>() : 0;
    // Guest memory: the rings' pages and the start of the buffer area from the input.
    auto image = in.bytes(in.take<uint16_t>() % 0x4000);
    mem.write(0, image.data(), image.size());
    if (!q.start(how & 0x10)) return 0;
    DescriptorChain c;
    bool popped = false;
    uint8_t buf[4096];
    while (in.left() > 0) {
        switch (in.take<uint8_t>() % 6) {
        case 0:
            if (!popped && q.pop(c)) check_inside(mem, c), popped = true;
            break;
        case 1:  // a device pushes only what it popped, at most what it could write
            if (popped) q.push(c.head, in.take<uint32_t>() % (c.writable_bytes + 1)), popped = false;
            break;
        case 2:
            if (popped) q.undo_pop(), popped = false;
            break;
        case 3: (void)c.read(in.take<uint32_t>() % (c.readable_bytes + 1), buf, in.take<uint16_t>() % sizeof buf); break;
        case 4: {
            uint64_t off = in.take<uint32_t>() % (c.writable_bytes + 1);
            std::vector<iovec> iov;
            c.writable_iov(off, in.take<uint16_t>(), iov);
            (void)c.write(off, buf, in.take<uint16_t>() % sizeof buf);
            break;
        }
        case 5: {  // the guest writes its memory meanwhile (avail index, descriptors)
            uint16_t gpa = in.take<uint16_t>() % 0x3000;
            auto b = in.bytes(in.take<uint8_t>() % 32);
            mem.write(gpa, b.data(), b.size());
            (void)q.has_available();
            break;
        }
        }
        if (q.failed()) break;
    }
    (void)q.take_notify_needed();
    return 0;
}

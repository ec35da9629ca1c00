// The driver side of virtio-mmio and split rings, written the way a guest does it,
// for tests and benchmarks that play the guest without running one.  Header-only;
// not used by the VMM.  Not hardened: it trusts the device.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <vector>

#include "devices/interrupt.h"
#include "devices/virtio/virtio_mmio.h"
#include "kvm/guest_memory.h"

namespace kindling {

// Counts trigger() calls.
class CountingInterrupt : public Interrupt {
public:
    void trigger() override { count.fetch_add(1); }
    std::atomic<int> count{0};
};

class TestVirtioDriver {
public:
    struct Buf {
        uint64_t addr;
        uint32_t len;
        bool device_writes;
    };
    struct Used {
        uint32_t id;
        uint32_t len;
    };
    struct Ring {
        uint16_t size = 0;
        uint64_t desc = 0, avail = 0, used = 0;
        uint16_t avail_idx = 0;
        uint16_t used_seen = 0;
        std::vector<uint16_t> free;
        std::vector<uint16_t> chain_len;  // by head
    };

    // Rings and buffers are carved from guest memory starting at `heap`.
    TestVirtioDriver(GuestMemory& mem, VirtioMmio& dev, uint64_t heap = 0x10000) : mem_(mem), dev_(dev), heap_(heap) {}
    // The driver of a restored VM: a real guest keeps its ring positions, free
    // descriptors and heap in its own memory, which the snapshot carries; a test
    // copies this host-side bookkeeping along with the memory instead.
    TestVirtioDriver(GuestMemory& mem, VirtioMmio& dev, const TestVirtioDriver& before_snapshot)
        : mem_(mem), dev_(dev), heap_(before_snapshot.heap_), rings_(before_snapshot.rings_) {}

    uint32_t reg(uint32_t off) {
        uint32_t v = 0;
        dev_.read(off, reinterpret_cast<uint8_t*>(&v), 4);
        return v;
    }
    void set_reg(uint32_t off, uint32_t v) { dev_.write(off, reinterpret_cast<const uint8_t*>(&v), 4); }

    uint64_t alloc(uint64_t len, uint64_t align = 16) {
        heap_ = (heap_ + align - 1) & ~(align - 1);
        uint64_t a = heap_;
        heap_ += len;
        if (!mem_.contains(a, len)) throw std::runtime_error("test driver: out of guest memory");
        return a;
    }

    // virtio 1.2 §3.1.1 initialisation: reset, ACK, DRIVER, features, FEATURES_OK,
    // queues, DRIVER_OK.  Queue sizes: `sizes[i]` (0 = leave queue i not ready).
    // Returns the final status register.
    uint32_t init(uint64_t features, const std::vector<uint16_t>& sizes) {
        set_reg(VirtioMmio::kStatus, 0);
        set_reg(VirtioMmio::kStatus, kVirtioStatusAcknowledge);
        set_reg(VirtioMmio::kStatus, kVirtioStatusAcknowledge | kVirtioStatusDriver);
        set_reg(VirtioMmio::kDriverFeaturesSel, 0);
        set_reg(VirtioMmio::kDriverFeatures, static_cast<uint32_t>(features));
        set_reg(VirtioMmio::kDriverFeaturesSel, 1);
        set_reg(VirtioMmio::kDriverFeatures, static_cast<uint32_t>(features >> 32));
        uint32_t st = kVirtioStatusAcknowledge | kVirtioStatusDriver | kVirtioStatusFeaturesOk;
        set_reg(VirtioMmio::kStatus, st);
        if (!(reg(VirtioMmio::kStatus) & kVirtioStatusFeaturesOk)) return reg(VirtioMmio::kStatus);
        rings_.assign(sizes.size(), Ring{});
        for (uint32_t q = 0; q < sizes.size(); ++q) {
            if (!sizes[q]) continue;
            Ring& r = rings_[q];
            r.size = sizes[q];
            r.desc = alloc(16ull * r.size, 16);
            r.avail = alloc(6 + 2ull * r.size, 2);
            r.used = alloc(6 + 8ull * r.size, 4);
            for (int i = r.size - 1; i >= 0; --i) r.free.push_back(static_cast<uint16_t>(i));
            r.chain_len.assign(r.size, 0);
            set_reg(VirtioMmio::kQueueSel, q);
            set_reg(VirtioMmio::kQueueNum, r.size);
            set_reg(VirtioMmio::kQueueDescLow, static_cast<uint32_t>(r.desc));
            set_reg(VirtioMmio::kQueueDescHigh, static_cast<uint32_t>(r.desc >> 32));
            set_reg(VirtioMmio::kQueueDriverLow, static_cast<uint32_t>(r.avail));
            set_reg(VirtioMmio::kQueueDriverHigh, static_cast<uint32_t>(r.avail >> 32));
            set_reg(VirtioMmio::kQueueDeviceLow, static_cast<uint32_t>(r.used));
            set_reg(VirtioMmio::kQueueDeviceHigh, static_cast<uint32_t>(r.used >> 32));
            set_reg(VirtioMmio::kQueueReady, 1);
        }
        set_reg(VirtioMmio::kStatus, st | kVirtioStatusDriverOk);
        return reg(VirtioMmio::kStatus);
    }

    Ring& ring(uint16_t q) { return rings_.at(q); }

    // Writes descriptor `i` of queue q as given (for building hostile rings).
    void write_desc(uint16_t q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
        uint8_t d[16];
        std::memcpy(d, &addr, 8);
        std::memcpy(d + 8, &len, 4);
        std::memcpy(d + 12, &flags, 2);
        std::memcpy(d + 14, &next, 2);
        mem_.write(ring(q).desc + 16ull * i, d, 16);
    }
    // Puts `head` in the next avail slot and publishes the new index.
    void publish(uint16_t q, uint16_t head) {
        Ring& r = ring(q);
        mem_.write_obj(r.avail + 4 + 2ull * (r.avail_idx % r.size), head);
        ++r.avail_idx;
        set_avail_idx(q, r.avail_idx);
    }
    void set_avail_idx(uint16_t q, uint16_t idx) {
        __atomic_store_n(reinterpret_cast<uint16_t*>(mem_.host_ptr(ring(q).avail + 2, 2)), idx, __ATOMIC_RELEASE);
    }
    void set_avail_flags(uint16_t q, uint16_t flags) { mem_.write_obj(ring(q).avail, flags); }

    // Adds a chain of buffers (readable ones first) and makes it available.
    uint16_t add_chain(uint16_t q, const std::vector<Buf>& bufs) {
        Ring& r = ring(q);
        if (bufs.empty() || bufs.size() > r.free.size()) throw std::runtime_error("test driver: ring full");
        std::vector<uint16_t> ids;
        for (size_t i = 0; i < bufs.size(); ++i) {
            ids.push_back(r.free.back());
            r.free.pop_back();
        }
        for (size_t i = 0; i < bufs.size(); ++i) {
            uint16_t flags = (bufs[i].device_writes ? 2 : 0) | (i + 1 < bufs.size() ? 1 : 0);
            write_desc(q, ids[i], bufs[i].addr, bufs[i].len, flags, i + 1 < bufs.size() ? ids[i + 1] : 0);
        }
        r.chain_len[ids[0]] = static_cast<uint16_t>(bufs.size());
        publish(q, ids[0]);
        return ids[0];
    }

    uint16_t used_idx(uint16_t q) {
        return __atomic_load_n(reinterpret_cast<uint16_t*>(mem_.host_ptr(ring(q).used + 2, 2)), __ATOMIC_ACQUIRE);
    }
    // Takes the next used element, returning its descriptors to the free list.
    std::optional<Used> pop_used(uint16_t q) {
        Ring& r = ring(q);
        if (used_idx(q) == r.used_seen) return std::nullopt;
        Used u{};
        mem_.read(r.used + 4 + 8ull * (r.used_seen % r.size), &u, 8);
        ++r.used_seen;
        if (u.id < r.size && r.chain_len[u.id]) {
            uint16_t id = static_cast<uint16_t>(u.id);
            for (uint16_t i = 0, n = r.chain_len[u.id]; i < n; ++i) {
                uint8_t d[16];
                mem_.read(r.desc + 16ull * id, d, 16);
                r.free.push_back(id);
                uint16_t next;
                std::memcpy(&next, d + 14, 2);
                id = next;
            }
            r.chain_len[u.id] = 0;
        }
        return u;
    }

    void notify(uint16_t q) { set_reg(VirtioMmio::kQueueNotify, q); }

private:
    GuestMemory& mem_;
    VirtioMmio& dev_;
    uint64_t heap_;
    std::vector<Ring> rings_;
};

}  // namespace kindling

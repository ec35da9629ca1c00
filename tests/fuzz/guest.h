// A hostile guest for the virtio device targets: its moves come from the fuzz input
// and are what a guest can do — MMIO register reads and writes, writes anywhere in
// its memory (descriptor tables, rings, buffers), descriptor chains published on the
// avail ring, queue notifies, and the nano wait port's poll().  The ring bookkeeping
// is the guest's own, in guest memory, so nothing on this side trusts the device.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "devices/virtio/test_driver.h"
#include "devices/virtio/virtio_mmio.h"
#include "kvm/guest_memory.h"
#include "tests/fuzz/fuzz.h"

namespace kindling::fuzz {

class Guest {
public:
    static constexpr uint64_t kMemSize = 256 * 1024;
    static constexpr uint64_t kData = 0x20000;  // buffers live in [kData, kData + 64 KiB + 64 KiB)

    Guest(GuestMemory& mem, VirtioMmio& mmio, uint16_t queues) : mem_(mem), mmio_(mmio), queues_(queues) {
        drv_.emplace(mem, mmio, 0x1000);
    }

    // Runs the moves in `in` until it is used up; `device_move` gets the input for a
    // device-specific move (host side of vsock, ...).
    void run(Input& in, const std::function<void(Input&)>& device_move) {
        // Most inputs start from an initialised device; the first byte's top bit says not.
        if (!(in.take<uint8_t>() & 0x80)) init(in);
        while (in.left() > 0) {
            switch (in.take<uint8_t>() % 9) {
            case 0: init(in); break;
            case 1: mmio_write(in); break;
            case 2: {
                uint32_t v = 0;
                mmio_.read(in.take<uint16_t>() % 0x200, reinterpret_cast<uint8_t*>(&v), 1u << (in.take<uint8_t>() % 3));
                break;
            }
            case 3: {
                uint64_t gpa = in.take<uint32_t>() % kMemSize;
                auto b = in.bytes(in.take<uint8_t>());
                if (mem_.contains(gpa, b.size())) mem_.write(gpa, b.data(), b.size());
                break;
            }
            case 4: chain(in); break;
            case 5: drv_->set_reg(VirtioMmio::kQueueNotify, in.take<uint8_t>() % (queues_ + 1)); break;
            case 6: mmio_.poll(); break;
            case 7: device_move(in); break;
            case 8: drv_->set_reg(VirtioMmio::kInterruptAck, drv_->reg(VirtioMmio::kInterruptStatus)); break;
            }
        }
    }

private:
    // virtio 1.2 §3.1.1 with features and queue sizes from the input (sizes 1..256).
    void init(Input& in) {
        uint64_t features = kVirtioFVersion1 | (uint64_t{in.take<uint32_t>()} & 0x30000fffu);
        std::vector<uint16_t> sizes;
        for (uint16_t q = 0; q < queues_; ++q) sizes.push_back(static_cast<uint16_t>(1u << (in.take<uint8_t>() % 9)));
        drv_.emplace(mem_, mmio_, 0x1000);
        uint32_t status = drv_->init(features, sizes);
        rings_ = status & kVirtioStatusFeaturesOk ? sizes : std::vector<uint16_t>{};
    }

    void mmio_write(Input& in) {
        static constexpr uint32_t kRegs[] = {
            VirtioMmio::kDeviceFeaturesSel, VirtioMmio::kDriverFeatures, VirtioMmio::kDriverFeaturesSel,
            VirtioMmio::kQueueSel,          VirtioMmio::kQueueNum,       VirtioMmio::kQueueReady,
            VirtioMmio::kQueueNotify,       VirtioMmio::kInterruptAck,   VirtioMmio::kStatus,
            VirtioMmio::kQueueDescLow,      VirtioMmio::kQueueDescHigh,  VirtioMmio::kQueueDriverLow,
            VirtioMmio::kQueueDriverHigh,   VirtioMmio::kQueueDeviceLow, VirtioMmio::kQueueDeviceHigh,
            VirtioMmio::kShmSel,            VirtioMmio::kConfig,         VirtioMmio::kConfig + 8};
        uint8_t pick = in.take<uint8_t>();
        uint32_t off = pick < 0xf0 ? kRegs[pick % std::size(kRegs)] : in.take<uint16_t>() % 0x200;
        uint32_t v = in.take<uint32_t>();
        mmio_.write(off, reinterpret_cast<const uint8_t*>(&v), 1u << (in.take<uint8_t>() % 3));
    }

    // A chain of 1-4 buffers in the data area, at descriptor slots the input picks,
    // readable ones filled from the input, published on the avail ring.
    void chain(Input& in) {
        uint16_t q = in.take<uint8_t>() % queues_;
        if (q >= rings_.size() || rings_[q] == 0) return;
        const auto& r = drv_->ring(q);
        if (r.size == 0) return;
        unsigned n = in.take<uint8_t>() % 4 + 1;
        uint16_t slot = in.take<uint8_t>() % r.size, head = slot;
        for (unsigned i = 0; i < n; ++i) {
            uint64_t addr = kData + in.take<uint16_t>();
            uint32_t len = in.take<uint16_t>();
            uint8_t how = in.take<uint8_t>();
            bool writable = how & 1;
            uint16_t next = static_cast<uint16_t>((slot + 1) % r.size);
            if (!writable) {
                auto b = in.bytes(std::min<uint32_t>(len, how >> 1));
                if (mem_.contains(addr, b.size())) mem_.write(addr, b.data(), b.size());
            }
            drv_->write_desc(q, slot, addr, len, static_cast<uint16_t>((writable ? 2 : 0) | (i + 1 < n ? 1 : 0)), next);
            slot = next;
        }
        uint16_t idx = 0;
        mem_.read_obj(r.avail + 2, idx);  // the guest's own avail index (the input may have moved it)
        mem_.write_obj(r.avail + 4 + 2ull * (idx % r.size), head);
        drv_->set_avail_idx(q, static_cast<uint16_t>(idx + 1));
    }

    GuestMemory& mem_;
    VirtioMmio& mmio_;
    std::optional<TestVirtioDriver> drv_;
    uint16_t queues_;
    std::vector<uint16_t> rings_;
};

}  // namespace kindling::fuzz

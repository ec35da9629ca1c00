// Port-I/O and MMIO dispatch.  The VM builder registers each device's range
// explicitly (no static registration); the bus is immutable once vCPUs run, so
// lookups need no lock.  Devices do their own locking.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace kindling {

class BusDevice {
public:
    virtual ~BusDevice() = default;
    // `offset` is relative to the base the device was registered at.
    virtual void read(uint64_t offset, uint8_t* data, size_t len) = 0;
    virtual void write(uint64_t offset, const uint8_t* data, size_t len) = 0;
};

class Bus {
public:
    // Registers [base, base+len).  Throws if it overlaps an existing range.
    void add(uint64_t base, uint64_t len, std::shared_ptr<BusDevice> dev);

    // Dispatch; false when no device covers the access (the caller decides what an
    // access to nothing means: ignore, log, or stop the VM).
    bool read(uint64_t addr, uint8_t* data, size_t len) const;
    bool write(uint64_t addr, const uint8_t* data, size_t len) const;

private:
    struct Range {
        uint64_t len;
        std::shared_ptr<BusDevice> dev;
    };
    const std::pair<const uint64_t, Range>* find(uint64_t addr, size_t len) const;
    std::map<uint64_t, Range> ranges_;  // keyed by base
};

}  // namespace kindling

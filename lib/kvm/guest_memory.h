// Guest-physical memory as the VMM sees it: host mappings of RAM regions plus
// bounds-checked access.  Every address and length that comes from the guest goes
// through here; nothing dereferences a guest address without a check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/fd.h"

namespace kindling {

struct MemoryRegion {
    uint64_t gpa = 0;    // guest-physical base
    uint64_t size = 0;
    uint8_t* host = nullptr;
};

class GuestMemory {
public:
    // RAM of `size` bytes.  Below 3 GiB it is one region at 0; beyond, the part past
    // 3 GiB is placed at 4 GiB so [3 GiB, 4 GiB) stays free for MMIO.
    static constexpr uint64_t kMmioHoleStart = 0xC0000000ull;
    static constexpr uint64_t kMmioHoleEnd = 0x100000000ull;

    enum class Backing {
        kAnonymous,         // private anonymous, transparent huge pages where allowed
        kAnonymousSmall,    // private anonymous, 4 KiB pages (userfaultfd-served restore)
        kFilePrivate,       // MAP_PRIVATE of a file: shares the host page cache (restore "file")
    };
    // Private memory (MAP_NORESERVE).  `fd` is the file for kFilePrivate (its first
    // `size` bytes, RAM regions concatenated).  Throws SysError on failure.
    explicit GuestMemory(uint64_t size, Backing backing = Backing::kAnonymous, int fd = -1);
    GuestMemory(GuestMemory&&) = default;
    GuestMemory& operator=(GuestMemory&&) = default;

    uint64_t size() const { return size_; }
    const std::vector<MemoryRegion>& regions() const { return regions_; }
    uint8_t* base() const { return mapping_.data(); }

    // Host pointer for [gpa, gpa+len) if that range lies inside one RAM region,
    // else nullptr.  Overflow-safe for any guest-supplied gpa and len.
    uint8_t* host_ptr(uint64_t gpa, uint64_t len) const {
        for (const auto& r : regions_) {
            if (gpa >= r.gpa && gpa - r.gpa <= r.size && len <= r.size - (gpa - r.gpa))
                return r.host + (gpa - r.gpa);
        }
        return nullptr;
    }
    bool contains(uint64_t gpa, uint64_t len) const { return host_ptr(gpa, len) != nullptr; }

    bool read(uint64_t gpa, void* out, size_t len) const {
        const uint8_t* p = host_ptr(gpa, len);
        if (!p) return false;
        std::memcpy(out, p, len);
        return true;
    }
    bool write(uint64_t gpa, const void* in, size_t len) {
        uint8_t* p = host_ptr(gpa, len);
        if (!p) return false;
        std::memcpy(p, in, len);
        return true;
    }
    template <class T>
    bool read_obj(uint64_t gpa, T& out) const { return read(gpa, &out, sizeof(T)); }
    template <class T>
    bool write_obj(uint64_t gpa, const T& in) { return write(gpa, &in, sizeof(T)); }

private:
    Mapping mapping_;
    uint64_t size_ = 0;
    std::vector<MemoryRegion> regions_;
};

}  // namespace kindling

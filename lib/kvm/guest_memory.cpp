#include "kvm/guest_memory.h"

#include <sys/mman.h>

#include "base/error.h"

namespace kindling {

GuestMemory::GuestMemory(uint64_t size, Backing backing, int fd) : size_(size) {
    if (size == 0 || size % 4096 != 0) throw ConfigError("guest memory size must be a non-zero multiple of 4 KiB");
    std::string what = "mmap guest memory (" + std::to_string(size >> 20) + " MiB)";
    if (backing == Backing::kFilePrivate)
        mapping_ = Mapping::map(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0, what);
    else
        mapping_ = Mapping::map(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0, what);
    // Back with transparent huge pages where the host allows: fewer host faults.
    // Not for userfaultfd-served memory, which is installed page by page.
    if (backing == Backing::kAnonymous) ::madvise(mapping_.data(), size, MADV_HUGEPAGE);
    else if (backing == Backing::kAnonymousSmall) ::madvise(mapping_.data(), size, MADV_NOHUGEPAGE);
    uint64_t low = size < kMmioHoleStart ? size : kMmioHoleStart;
    regions_.push_back({0, low, mapping_.data()});
    if (size > low) regions_.push_back({kMmioHoleEnd, size - low, mapping_.data() + low});
}

}  // namespace kindling

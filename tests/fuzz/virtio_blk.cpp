// virtio-blk over virtio-mmio (lib/devices/virtio/virtio_blk) driven by a hostile
// guest (guest.h): requests, headers and rings from the input, on a 64 KiB disk
// file opened read-write, read-only or copy-on-write (the first byte's low bits).
#include <fstream>
#include <memory>

#include "base/error.h"
#include "devices/virtio/virtio_blk.h"
#include "tests/fuzz/guest.h"

using namespace kindling;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static fuzz::TempDir* dir = [] {
        fuzz::quiet();
        auto* d = new fuzz::TempDir;
        std::ofstream(d->path + "/disk") << std::string(64 * 1024, 'd');
        return d;
    }();
    fuzz::Input in(data, size);
    uint8_t mode = size ? data[0] : 0;
    GuestMemory mem(fuzz::Guest::kMemSize);
    CountingInterrupt irq;
    auto blk = std::make_shared<VirtioBlk>(dir->path + "/disk", mode & 1, "drive-0", mode & 2);
    VirtioMmio mmio(mem, blk, irq);
    fuzz::Guest guest(mem, mmio, 1);
    guest.run(in, [](fuzz::Input&) {});
    return 0;
}

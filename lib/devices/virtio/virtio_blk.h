// virtio-blk (virtio 1.2 §5.2) backed by a host file or block device.  Requests are
// served synchronously on the thread that notifies (vCPU), with preadv/pwritev
// straight into guest memory.  One request queue.
#pragma once

#include <cstdint>
#include <string>

#include "base/fd.h"
#include "devices/virtio/virtio_device.h"
#include "devices/virtio/virtqueue.h"

namespace kindling {

class VirtioBlk : public VirtioDevice {
public:
    static constexpr uint64_t kSectorSize = 512;
    static constexpr uint16_t kQueueSize = 256;
    // Data segments per request we tell the driver to stay under (config seg_max).
    static constexpr uint32_t kSegMax = kQueueSize - 2;

    // Opens `path` (read-write unless `read_only`).  `id` is what GET_ID returns
    // (at most 20 bytes are used; Firecracker passes the drive id).  Throws SysError
    // naming the path.  The capacity is the file size rounded down to sectors.
    VirtioBlk(const std::string& path, bool read_only, std::string id = "");

    uint64_t capacity_sectors() const { return capacity_; }
    bool read_only() const { return read_only_; }

    const char* name() const override { return "virtio-blk"; }
    uint32_t device_id() const override { return kVirtioIdBlock; }
    uint64_t device_features() const override;
    uint16_t num_queues() const override { return 1; }
    uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
    void read_config(uint64_t offset, uint8_t* data, size_t len) override;
    void activate(std::span<Virtqueue> queues, Interrupt& used, uint64_t acked_features) override;
    void notify(uint16_t queue) override;
    void reset() override;

    // Persistent: virtio-blk keeps no state of its own (requests complete on the
    // thread that notifies, so none is in flight while the VM is paused); its
    // transport keeps the queues.  Any saved field is refused as unknown.
    void save_to(TlvWriter&) override {}
    void restore_from(TlvReader& in) override { TlvFields(in).finish(); }

private:
    // Returns the used length (bytes written to the device-writable part), or -1
    // when the request was malformed and the queue has failed.
    int64_t handle(const DescriptorChain& chain);
    uint8_t do_io(bool write, uint64_t sector, const DescriptorChain& chain, uint64_t offset, uint64_t len);

    std::string path_;
    UniqueFd fd_;
    bool read_only_;
    std::string id_;
    uint64_t capacity_ = 0;

    Virtqueue* queue_ = nullptr;
    Interrupt* used_ = nullptr;
    DescriptorChain chain_;
    std::vector<iovec> iov_;
};

}  // namespace kindling

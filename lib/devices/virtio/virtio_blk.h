// virtio-blk (virtio 1.2 §5.2) backed by a host file or block device.  Requests are
// served synchronously on the thread that notifies (vCPU), with preadv/pwritev
// straight into guest memory.  One request queue.
//
// Copy-on-write drives keep the guest's writes private to this device: the file is
// opened read-only and mapped MAP_PRIVATE, so a written page becomes anonymous memory
// of this process (at most the drive's size) and unwritten pages read through to the
// file.  Clones restored from one snapshot each get their own view of its overlay.
#pragma once

#include <atomic>
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

    // Opens `path` (read-write unless `read_only` or `copy_on_write`).  `id` is what
    // GET_ID returns (at most 20 bytes are used; Firecracker passes the drive id).
    // Throws SysError naming the path.  The capacity is the file size rounded down to
    // sectors.  A copy-on-write drive never writes the file, which must not shrink
    // while the drive exists.
    VirtioBlk(const std::string& path, bool read_only, std::string id = "", bool copy_on_write = false);

    uint64_t capacity_sectors() const { return capacity_; }
    bool read_only() const { return read_only_; }
    bool copy_on_write() const { return copy_on_write_; }

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
    // transport keeps the queues.  Any saved field is refused as unknown.  A
    // copy-on-write drive the guest has written refuses to be saved (DataError): the
    // snapshot would point at the file without the writes the guest's state relies on.
    void save_to(TlvWriter&) override;
    void restore_from(TlvReader& in) override { TlvFields(in).finish(); }

private:
    // Returns the used length (bytes written to the device-writable part), or -1
    // when the request was malformed and the queue has failed.
    int64_t handle(const DescriptorChain& chain);
    uint8_t do_io(bool write, uint64_t sector, const DescriptorChain& chain, uint64_t offset, uint64_t len);
    void copy_private(bool write, uint64_t pos);

    std::string path_;
    UniqueFd fd_;
    bool read_only_;
    bool copy_on_write_;
    std::string id_;
    uint64_t capacity_ = 0;
    Mapping private_;                   // copy-on-write drives: the file, MAP_PRIVATE
    std::atomic<bool> written_{false};  // copy-on-write drives: the guest wrote

    Virtqueue* queue_ = nullptr;
    Interrupt* used_ = nullptr;
    DescriptorChain chain_;
    std::vector<iovec> iov_;
};

}  // namespace kindling

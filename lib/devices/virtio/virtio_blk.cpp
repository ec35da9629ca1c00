#include "devices/virtio/virtio_blk.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <cerrno>
#include <cinttypes>
#include <climits>
#include <cstring>

#include "base/error.h"
#include "base/io.h"
#include "base/log.h"
#include "devices/interrupt.h"

namespace kindling {

namespace {

// virtio 1.2 §5.2.3 feature bits.
constexpr uint64_t kBlkFSegMax = 1ull << 2;
constexpr uint64_t kBlkFRo = 1ull << 5;
constexpr uint64_t kBlkFFlush = 1ull << 9;

// §5.2.6 request types and status values.
constexpr uint32_t kTIn = 0;
constexpr uint32_t kTOut = 1;
constexpr uint32_t kTFlush = 4;
constexpr uint32_t kTGetId = 8;
constexpr uint8_t kSOk = 0;
constexpr uint8_t kSIoErr = 1;
constexpr uint8_t kSUnsupp = 2;

constexpr size_t kIdBytes = 20;  // VIRTIO_BLK_ID_BYTES

struct RequestHeader {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};
static_assert(sizeof(RequestHeader) == 16);

// §5.2.4 struct virtio_blk_config, up to num_queues (the fields we fill).
struct __attribute__((packed)) BlkConfig {
    uint64_t capacity;
    uint32_t size_max;
    uint32_t seg_max;
    uint16_t cylinders;
    uint8_t heads;
    uint8_t sectors;
    uint32_t blk_size;
    uint8_t physical_block_exp;
    uint8_t alignment_offset;
    uint16_t min_io_size;
    uint32_t opt_io_size;
    uint8_t writeback;
    uint8_t unused0;
    uint16_t num_queues;
};
static_assert(sizeof(BlkConfig) == 36);

}  // namespace

VirtioBlk::VirtioBlk(const std::string& path, bool read_only, std::string id, bool copy_on_write)
    : path_(path), read_only_(read_only), copy_on_write_(copy_on_write && !read_only), id_(std::move(id)) {
    fd_ = open_file(path, read_only || copy_on_write ? O_RDONLY : O_RDWR);
    struct stat st {};
    if (::fstat(fd_.get(), &st) < 0) throw_errno("stat " + path);
    uint64_t bytes = static_cast<uint64_t>(st.st_size);
    if (S_ISBLK(st.st_mode) && ::ioctl(fd_.get(), BLKGETSIZE64, &bytes) < 0) throw_errno("BLKGETSIZE64 " + path);
    capacity_ = bytes / kSectorSize;
    if (bytes % kSectorSize)
        log_warn("virtio-blk: %s: size %" PRIu64 " is not a multiple of 512; the last %" PRIu64 " bytes are not visible",
                 path.c_str(), bytes, bytes % kSectorSize);
    if (copy_on_write_ && capacity_) {
        // MAP_NORESERVE: only the pages the guest writes cost memory.
        private_ = Mapping::map(capacity_ * kSectorSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd_.get(), 0,
                                "map " + path + " copy-on-write");
    }
}

void VirtioBlk::save_to(TlvWriter&) {
    if (written_.load())
        throw DataError("virtio-blk: " + path_ +
                        ": the guest wrote to this copy-on-write drive; a snapshot cannot hold those writes");
}

uint64_t VirtioBlk::device_features() const {
    return kBlkFSegMax | kBlkFFlush | (read_only_ ? kBlkFRo : 0);
}

void VirtioBlk::read_config(uint64_t offset, uint8_t* data, size_t len) {
    BlkConfig c{};
    c.capacity = capacity_;
    c.seg_max = kSegMax;
    c.num_queues = 1;
    if (offset >= sizeof c) return;
    std::memcpy(data, reinterpret_cast<const uint8_t*>(&c) + offset, std::min<uint64_t>(len, sizeof c - offset));
}

void VirtioBlk::activate(std::span<Virtqueue> queues, Interrupt& used, uint64_t acked_features) {
    queue_ = &queues[0];
    used_ = &used;
}

void VirtioBlk::reset() {
    queue_ = nullptr;
    used_ = nullptr;
}

void VirtioBlk::notify(uint16_t queue) {
    if (!queue_ || queue != 0) return;
    while (queue_->pop(chain_)) {
        int64_t written = handle(chain_);
        if (written < 0) return;  // queue failed
        queue_->push(chain_.head, static_cast<uint32_t>(written));
    }
    if (queue_->take_notify_needed()) used_->trigger();
}

uint8_t VirtioBlk::do_io(bool write, uint64_t sector, const DescriptorChain& chain, uint64_t offset, uint64_t len) {
    // §5.2.6.1: out-of-range requests fail with IOERR; so do partial sectors.
    if (len % kSectorSize || sector > capacity_ || len / kSectorSize > capacity_ - sector) {
        log_debug("virtio-blk: %s: %s of %" PRIu64 " bytes at sector %" PRIu64 " outside %" PRIu64 " sectors",
                  path_.c_str(), write ? "write" : "read", len, sector, capacity_);
        return kSIoErr;
    }
    iov_.clear();
    if (write)
        chain.readable_iov(offset, len, iov_);
    else
        chain.writable_iov(offset, len, iov_);
    if (copy_on_write_) {
        copy_private(write, sector * kSectorSize);
        return kSOk;
    }
    off_t pos = static_cast<off_t>(sector * kSectorSize);
    size_t i = 0;
    while (i < iov_.size()) {
        int cnt = static_cast<int>(std::min<size_t>(iov_.size() - i, IOV_MAX));
        ssize_t n = write ? ::pwritev(fd_.get(), &iov_[i], cnt, pos) : ::preadv(fd_.get(), &iov_[i], cnt, pos);
        if (n < 0) {
            if (errno == EINTR) continue;
            log_warn("virtio-blk: %s: %s at sector %" PRIu64 ": %s", path_.c_str(), write ? "write" : "read", sector,
                     std::strerror(errno));
            return kSIoErr;
        }
        if (n == 0) {  // the file shrank under us
            log_warn("virtio-blk: %s: short %s at sector %" PRIu64, path_.c_str(), write ? "write" : "read", sector);
            return kSIoErr;
        }
        pos += n;
        size_t left = static_cast<size_t>(n);
        while (left && left >= iov_[i].iov_len) left -= iov_[i++].iov_len;
        if (left) {
            iov_[i].iov_base = static_cast<uint8_t*>(iov_[i].iov_base) + left;
            iov_[i].iov_len -= left;
        }
    }
    return kSOk;
}

// Bounds were checked by do_io: [pos, pos + total iov length) is inside the mapping.
void VirtioBlk::copy_private(bool write, uint64_t pos) {
    if (write) written_.store(true);
    for (const iovec& v : iov_) {
        uint8_t* file = private_.data() + pos;
        if (write) std::memcpy(file, v.iov_base, v.iov_len);
        else std::memcpy(v.iov_base, file, v.iov_len);
        pos += v.iov_len;
    }
}

int64_t VirtioBlk::handle(const DescriptorChain& chain) {
    // §5.2.6: header (device-readable), data, then one status byte (device-writable).
    RequestHeader h;
    if (chain.readable_bytes < sizeof h) {
        queue_->fail("request at head %u has %" PRIu64 " readable bytes, less than a request header (16)", chain.head,
                     chain.readable_bytes);
        return -1;
    }
    if (chain.writable_bytes < 1) {
        queue_->fail("request at head %u has no device-writable status byte", chain.head);
        return -1;
    }
    chain.read(0, &h, sizeof h);
    uint64_t status_off = chain.writable_bytes - 1;
    uint8_t status = kSOk;
    uint64_t written = 1;
    switch (h.type) {
    case kTIn:
        status = do_io(false, h.sector, chain, 0, status_off);
        if (status == kSOk) written += status_off;
        break;
    case kTOut:
        status = read_only_ ? kSIoErr : do_io(true, h.sector, chain, sizeof h, chain.readable_bytes - sizeof h);
        break;
    case kTFlush:
        if (!read_only_ && !copy_on_write_ && ::fdatasync(fd_.get()) < 0) {
            log_warn("virtio-blk: %s: flush: %s", path_.c_str(), std::strerror(errno));
            status = kSIoErr;
        }
        break;
    case kTGetId: {
        char id[kIdBytes] = {};
        std::memcpy(id, id_.data(), std::min(id_.size(), kIdBytes));
        size_t n = std::min<uint64_t>(kIdBytes, status_off);
        chain.write(0, id, n);
        written += n;
        break;
    }
    default:
        status = kSUnsupp;
    }
    chain.write(status_off, &status, 1);
    return static_cast<int64_t>(written);
}

}  // namespace kindling

/* virtio-mmio transport, driver side.  Every register access is a VM exit (~25 us
 * on PVM), so initialisation does only what the device needs to see: no magic,
 * version or device-id reads (the boot info names the device), no reset write (a
 * freshly built device is in reset), no high address halves (all RAM is below
 * KN_MAX_MEM < 4 GiB and the registers reset to 0). */
#include "virtio.h"

uint32_t mmio_read32(const struct virtio_mmio* d, uint32_t off) {
    nano_stats.mmio_reads++;
    return *(volatile uint32_t*)(d->base + off);
}

void mmio_write32(const struct virtio_mmio* d, uint32_t off, uint32_t v) {
    nano_stats.mmio_writes++;
    *(volatile uint32_t*)(d->base + off) = v;
}

int virtio_negotiate(struct virtio_mmio* d, uint32_t features_lo, uint32_t features_hi) {
    mmio_write32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
    mmio_write32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    /* We ask only for what we need; the device refusing shows up as FEATURES_OK not
     * sticking (§3.1.1 step 6), which saves reading DeviceFeatures. */
    mmio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    mmio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES, features_hi);
    if (features_lo) {
        mmio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        mmio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES, features_lo);
    }
    const uint32_t s = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
    mmio_write32(d, VIRTIO_MMIO_STATUS, s);
    if ((mmio_read32(d, VIRTIO_MMIO_STATUS) & s) != s) {
        mmio_write32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_FAILED);
        return -1;
    }
    return 0;
}

int virtq_setup(struct virtio_mmio* d, uint32_t index, struct virtq* q, uint16_t want) {
    mmio_write32(d, VIRTIO_MMIO_QUEUE_SEL, index);
    uint32_t max = mmio_read32(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
    if (max == 0) return -1; /* queue not available */
    uint16_t n = want;
    while (n > max) n >>= 1;
    if (n == 0) return -1;
    /* One allocation: descriptors (align 16), avail ring (align 2), used ring (align 4). */
    size_t desc_sz = 16u * n, avail_sz = 6u + 2u * n, used_sz = 6u + 8u * n;
    size_t used_off = (desc_sz + avail_sz + 3) & ~(size_t)3;
    uint8_t* mem = heap_alloc_permanent(used_off + used_sz, 16);
    if (!mem) return -1;
    memset(mem, 0, used_off + used_sz);
    q->size = n;
    q->avail_idx = 0;
    q->last_used = 0;
    q->desc = (struct virtq_desc*)mem;
    q->avail = (volatile struct virtq_avail*)(mem + desc_sz);
    q->used = (volatile struct virtq_used*)(mem + used_off);
    q->avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT; /* we poll; spare the VMM the IRQ */
    mmio_write32(d, VIRTIO_MMIO_QUEUE_NUM, n);
    mmio_write32(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)(uintptr_t)q->desc);
    mmio_write32(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)(uintptr_t)q->avail);
    mmio_write32(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)(uintptr_t)q->used);
    mmio_write32(d, VIRTIO_MMIO_QUEUE_READY, 1);
    return 0;
}

void virtio_driver_ok(struct virtio_mmio* d) {
    mmio_write32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                            VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

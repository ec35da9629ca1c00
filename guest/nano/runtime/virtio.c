/* virtio-mmio transport, driver side.  Every register access is a VM exit (~25 us
 * on PVM), so initialisation is two batches of accesses (KN_PORT_MMIO_BATCH) and
 * does only what the device needs to see: no magic, version or device-id reads (the
 * boot info names the device), no reset write (a freshly built device is in reset),
 * no high address halves (all RAM is below KN_MAX_MEM < 4 GiB and the registers
 * reset to 0). */
#include "virtio.h"

uint32_t mmio_read32(const struct virtio_mmio* d, uint32_t off) {
    nano_stats.mmio_reads++;
    return *(volatile uint32_t*)(d->base + off);
}

void mmio_write32(const struct virtio_mmio* d, uint32_t off, uint32_t v) {
    nano_stats.mmio_writes++;
    *(volatile uint32_t*)(d->base + off) = v;
}

#ifdef KN_PORT_MMIO_BATCH
#define BATCH_MAX KN_MMIO_BATCH_MAX
static struct kn_mmio_batch batch; /* in the image: below 4 GiB, fits the port value */
#else
#define BATCH_MAX 64u
#endif
static uint32_t direct_results[BATCH_MAX];
static int nresults;

static int batching(void) {
#ifdef KN_PORT_MMIO_BATCH
    static int mode = -1;
    if (mode < 0) {
        const char* o = nano_option("mmio");
        mode = !(o && strcmp(o, "direct") == 0);
    }
    return mode;
#else
    return 0;
#endif
}

static int batch_add(const struct virtio_mmio* d, uint32_t off, uint32_t v, int is_write) {
#ifdef KN_PORT_MMIO_BATCH
    if (batching()) {
        if (batch.count == BATCH_MAX) mmio_batch_run(); /* callers stay well below */
        struct kn_mmio_op* op = &batch.ops[batch.count];
        op->addr = (uint64_t)(uintptr_t)(d->base + off);
        op->value = v;
        op->size = 4;
        op->is_write = (uint8_t)is_write;
        return (int)batch.count++;
    }
#endif
    if (is_write) {
        mmio_write32(d, off, v);
        return -1;
    }
    if (nresults == BATCH_MAX) nresults = 0;
    direct_results[nresults] = mmio_read32(d, off);
    return nresults++;
}

void mmio_batch_write(const struct virtio_mmio* d, uint32_t off, uint32_t v) { batch_add(d, off, v, 1); }
int mmio_batch_read(const struct virtio_mmio* d, uint32_t off) { return batch_add(d, off, 0, 0); }

void mmio_batch_run(void) {
#ifdef KN_PORT_MMIO_BATCH
    if (batching() && batch.count > 0) {
        for (uint32_t i = 0; i < batch.count; ++i) {
            if (batch.ops[i].is_write) nano_stats.mmio_writes++;
            else nano_stats.mmio_reads++;
        }
        outl(KN_PORT_MMIO_BATCH, (uint32_t)(uintptr_t)&batch);
        nano_stats.mmio_batches++;
        for (uint32_t i = 0; i < batch.count; ++i) direct_results[i] = batch.ops[i].value;
        batch.count = 0;
        return;
    }
#endif
    nresults = 0;
}

uint32_t mmio_result(int handle) { return handle >= 0 && handle < (int)BATCH_MAX ? direct_results[handle] : 0; }

int virtio_init(struct virtio_mmio* d, uint32_t features_lo, uint32_t features_hi, struct virtq* qs,
                const uint16_t* want, int nq) {
    const uint32_t feat_ok = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
    int status, num_max[8];
    if (nq > 8) return -1;

    /* Batch 1: §3.1.1 steps 2-6, and each queue's maximum size.  We ask only for
     * the features we need; a refusal shows up as FEATURES_OK not sticking, which
     * saves reading DeviceFeatures. */
    mmio_batch_write(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
    mmio_batch_write(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    mmio_batch_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    mmio_batch_write(d, VIRTIO_MMIO_DRIVER_FEATURES, features_hi);
    if (features_lo) {
        mmio_batch_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        mmio_batch_write(d, VIRTIO_MMIO_DRIVER_FEATURES, features_lo);
    }
    mmio_batch_write(d, VIRTIO_MMIO_STATUS, feat_ok);
    status = mmio_batch_read(d, VIRTIO_MMIO_STATUS);
    for (int i = 0; i < nq; ++i) {
        mmio_batch_write(d, VIRTIO_MMIO_QUEUE_SEL, (uint32_t)i);
        num_max[i] = mmio_batch_read(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
    }
    mmio_batch_run();
    int ok = (mmio_result(status) & feat_ok) == feat_ok;

    /* Allocate the rings: descriptors (align 16), avail (align 2), used (align 4). */
    for (int i = 0; ok && i < nq; ++i) {
        uint32_t max = mmio_result(num_max[i]);
        uint16_t n = want[i];
        while (n > max) n >>= 1;
        size_t desc_sz = 16u * n, avail_sz = 6u + 2u * n, used_sz = 6u + 8u * n;
        size_t used_off = (desc_sz + avail_sz + 3) & ~(size_t)3;
        uint8_t* mem = n ? heap_alloc_permanent(used_off + used_sz, 16) : 0;
        if (!mem) {
            ok = 0;
            break;
        }
        memset(mem, 0, used_off + used_sz);
        struct virtq* q = &qs[i];
        q->size = n;
        q->avail_idx = 0;
        q->last_used = 0;
        q->desc = (struct virtq_desc*)mem;
        q->avail = (volatile struct virtq_avail*)(mem + desc_sz);
        q->used = (volatile struct virtq_used*)(mem + used_off);
    }
    if (!ok) {
        mmio_batch_write(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_FAILED);
        mmio_batch_run();
        return -1;
    }

    /* Batch 2: register every queue (§4.2.3.2), then DRIVER_OK (§3.1.1 step 8). */
    for (int i = 0; i < nq; ++i) {
        struct virtq* q = &qs[i];
        mmio_batch_write(d, VIRTIO_MMIO_QUEUE_SEL, (uint32_t)i);
        mmio_batch_write(d, VIRTIO_MMIO_QUEUE_NUM, q->size);
        mmio_batch_write(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)(uintptr_t)q->desc);
        mmio_batch_write(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)(uintptr_t)q->avail);
        mmio_batch_write(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)(uintptr_t)q->used);
        mmio_batch_write(d, VIRTIO_MMIO_QUEUE_READY, 1);
    }
    mmio_batch_write(d, VIRTIO_MMIO_STATUS, feat_ok | VIRTIO_STATUS_DRIVER_OK);
    mmio_batch_run();
    return 0;
}

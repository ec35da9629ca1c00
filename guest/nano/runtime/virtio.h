/* virtio 1.x over MMIO (virtio 1.2 §4.2.2) with split virtqueues (§2.7), polled.
 * The nano guest has no interrupts: it publishes buffers in guest memory and lets
 * KN_PORT_WAIT make the VMM process every queue, so no QueueNotify is ever written. */
#ifndef NANO_RUNTIME_VIRTIO_H
#define NANO_RUNTIME_VIRTIO_H

#include "internal.h"

/* Register offsets, virtio 1.2 §4.2.2 table "MMIO Device Register Layout". */
#define VIRTIO_MMIO_MAGIC 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100

/* Device status bits, §2.1. */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_FAILED 128

#define VIRTIO_F_VERSION_1_HI (1u << 0) /* feature bit 32, in the high feature word */

/* Split virtqueue layout, §2.7. */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct virtq_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[];
};

struct virtq_used_elem {
    uint32_t id;
    uint32_t len;
};

struct virtq_used {
    uint16_t flags;
    uint16_t idx;
    struct virtq_used_elem ring[];
};

struct virtq {
    uint16_t size;      /* power of two */
    uint16_t avail_idx; /* our copy of avail->idx */
    uint16_t last_used; /* next used->ring slot to consume */
    struct virtq_desc* desc;
    volatile struct virtq_avail* avail;
    volatile struct virtq_used* used;
};

struct virtio_mmio {
    volatile uint8_t* base;
    uint32_t device_id;
};

uint32_t mmio_read32(const struct virtio_mmio* d, uint32_t off);
void mmio_write32(const struct virtio_mmio* d, uint32_t off, uint32_t v);

/* Register accesses queued and performed by the VMM in one exit (KN_PORT_MMIO_BATCH),
 * in order.  Without that port (or with the option mmio=direct) each access is made
 * at once.  Reads return a handle for mmio_result after mmio_batch_run. */
void mmio_batch_write(const struct virtio_mmio* d, uint32_t off, uint32_t v);
int mmio_batch_read(const struct virtio_mmio* d, uint32_t off);
void mmio_batch_run(void);
uint32_t mmio_result(int handle);

/* Device initialisation (§3.1.1) for a device with `nq` queues: negotiate the
 * features, allocate queue i with at most want[i] entries and register it
 * (§4.2.3.2), then DRIVER_OK.  Two batches: 2 exits with KN_PORT_MMIO_BATCH, about
 * 6 + 7 * nq without.  Returns 0, or -1 with the device marked FAILED.  Rings can
 * be filled after it returns; the VMM sees them at the next KN_PORT_WAIT. */
int virtio_init(struct virtio_mmio* d, uint32_t features_lo, uint32_t features_hi, struct virtq* qs,
                const uint16_t* want, int nq);

/* Make descriptor chain `head` available to the device. */
static inline void virtq_push(struct virtq* q, uint16_t head) {
    q->avail->ring[q->avail_idx & (q->size - 1)] = head;
    barrier(); /* ring entry before index, §2.7.13 */
    q->avail->idx = ++q->avail_idx;
}

/* Next used element, if any; 1 when *e was filled. */
static inline int virtq_pop_used(struct virtq* q, struct virtq_used_elem* e) {
    if (q->last_used == q->used->idx) return 0;
    barrier(); /* index before entry */
    e->id = q->used->ring[q->last_used & (q->size - 1)].id;
    e->len = q->used->ring[q->last_used & (q->size - 1)].len;
    q->last_used++;
    return 1;
}

#endif

/* hostile: a deliberately malicious guest, to prove the VMM survives it.  The
 * command line picks the attack (mode=...); the guest performs it during init and,
 * if it is still running afterwards, prints "hostile: still alive" and exits 3.
 *
 *   desc-outside      tx descriptor pointing outside guest RAM
 *   desc-loop         tx descriptor chain that loops (0 -> 1 -> 0)
 *   huge-len          tx descriptor of 4 GiB - 1 bytes from inside RAM
 *   avail-jump        avail.idx jumps 30000 entries ahead of the ring
 *   bad-port          port I/O to ports nobody owns, and a wrong-width nano port
 *   bad-mmio          writes to read-only and unassigned MMIO, reads past the config
 *   wild-write-iovec  KN_PORT_WRITE whose iovec (or the iovec itself) is outside RAM
 *   fault             touches page 0, then an unmapped address (a triple fault)
 *   warn-flood        resets the vsock device and asks for FEATURES_OK without
 *                     VERSION_1, 20000 times: each refusal is a VMM warning (its
 *                     log must stay small)
 *   echo-error        no attack at init; serves, answering every request as an error
 *                     whose text is the request (hostile error bodies for the host)
 */
#include <kindling/nano.h>

#include "../runtime/vsock.h"

static uint8_t junk[64];

static struct virtq* tx_queue(const char* mode) {
    if (!vsock_present()) {
        nano_printf("hostile: mode=%s needs the vsock device (give fc-launch --vsock)\n", mode);
        nano_exit(69);
    }
    return vsock_queue(1);
}

/* Put a one-descriptor chain at head 0 of the tx queue and publish it. */
static void push_desc(struct virtq* q, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    q->desc[0].addr = addr;
    q->desc[0].len = len;
    q->desc[0].flags = flags;
    q->desc[0].next = next;
    virtq_push(q, 0);
}

static volatile uint8_t* mmio_base(void) {
    struct virtio_mmio* d = vsock_device();
    return d->base ? d->base : (volatile uint8_t*)(uintptr_t)KN_MMIO_BASE;
}

int nano_init(void) {
    const char* mode = nano_option("mode");
    if (!mode) {
        nano_printf("hostile: give mode=desc-outside|desc-loop|huge-len|avail-jump|bad-port|bad-mmio|"
                    "wild-write-iovec|fault|warn-flood|echo-error\n");
        return 64;
    }
    nano_printf("hostile: mode=%s\n", mode);
    if (strcmp(mode, "echo-error") == 0) return 0;
    if (strcmp(mode, "desc-outside") == 0) {
        push_desc(tx_queue(mode), 0xfff0000000ull, 44, 0, 0); /* 1 TiB: far past any RAM */
    } else if (strcmp(mode, "desc-loop") == 0) {
        struct virtq* q = tx_queue(mode);
        q->desc[1].addr = (uint64_t)(uintptr_t)junk;
        q->desc[1].len = 44;
        q->desc[1].flags = VIRTQ_DESC_F_NEXT;
        q->desc[1].next = 0;
        push_desc(q, (uint64_t)(uintptr_t)junk, 44, VIRTQ_DESC_F_NEXT, 1);
    } else if (strcmp(mode, "huge-len") == 0) {
        push_desc(tx_queue(mode), KN_IMAGE_MIN_ADDR, 0xffffffffu, 0, 0);
    } else if (strcmp(mode, "avail-jump") == 0) {
        struct virtq* q = tx_queue(mode);
        q->avail_idx = (uint16_t)(q->avail_idx + 30000);
        q->avail->idx = q->avail_idx;
    } else if (strcmp(mode, "bad-port") == 0) {
        outl(0x1234, 0xdeadbeef);
        (void)inl(0x1234);
        outb(KN_PORT_EXIT, 3); /* the exit port takes 32-bit writes only */
        outb(0x80, 0);
    } else if (strcmp(mode, "bad-mmio") == 0) {
        volatile uint8_t* b = mmio_base();
        *(volatile uint32_t*)(b + VIRTIO_MMIO_MAGIC) = 0x12345678;       /* read-only */
        (void)*(volatile uint32_t*)(b + 0xffc);                            /* past config */
        *(volatile uint64_t*)(b + VIRTIO_MMIO_QUEUE_DESC_LOW) = ~0ull;     /* 8-byte access */
        *(volatile uint8_t*)(b + VIRTIO_MMIO_STATUS + 1) = 0xff;           /* odd offset */
        *(volatile uint32_t*)(KN_MMIO_BASE + 0x1f0000) = 1;               /* no device here */
    } else if (strcmp(mode, "wild-write-iovec") == 0) {
        static struct kn_iovec iov;
        iov.addr = 0xfffffffffffff000ull; /* buffer outside RAM */
        iov.len = 4096;
        outl(KN_PORT_WRITE, (uint32_t)(uintptr_t)&iov);
        iov.addr = KN_IMAGE_MIN_ADDR; /* addr + len wraps around */
        iov.len = ~0ull;
        outl(KN_PORT_WRITE, (uint32_t)(uintptr_t)&iov);
        outl(KN_PORT_WRITE, 0xfffffff0u); /* the iovec itself outside RAM */
    } else if (strcmp(mode, "warn-flood") == 0) {
        (void)tx_queue(mode);
        volatile uint32_t* status = (volatile uint32_t*)(mmio_base() + VIRTIO_MMIO_STATUS);
        for (int i = 0; i < 20000; ++i) {
            *status = 0;                         /* reset: driver features back to 0 */
            *status = VIRTIO_STATUS_FEATURES_OK; /* refused: no VERSION_1 */
        }
    } else if (strcmp(mode, "fault") == 0) {
        (void)*(volatile uint32_t*)(uintptr_t)0;             /* page 0 (mapped on PVM hosts) */
        *(volatile uint32_t*)(uintptr_t)(1ull << 39) = 1;    /* PML4 entry 1: never mapped */
    } else {
        nano_printf("hostile: unknown mode '%s'\n", mode);
        return 64;
    }
    /* Let the VMM process the rings; a wait may end early, so give it a few tries. */
    for (int i = 0; i < 3; ++i) nano_wait(10000);
    nano_printf("hostile: still alive\n");
    nano_exit(3);
}

int handler(const uint8_t* req, size_t len, struct nano_response* out) {
    const char* mode = nano_option("mode");
    if (mode && strcmp(mode, "echo-error") == 0 && len <= INT32_MAX) return nano_fail(out, "%.*s", (int)len, req);
    return nano_fail(out, "hostile guests do not serve");
}

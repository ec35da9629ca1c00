/* virtio-vsock driver, virtio 1.2 §5.10, polled over virtio-mmio.
 *
 * Queues (§5.10.2): 0 rx, 1 tx, 2 event.  Every packet starts with the 44-byte
 * header (§5.10.6).  Receive buffers are two-descriptor chains (header, then a data
 * buffer), the layout every device implementation accepts; transmit packets are a
 * header descriptor, chained to the payload when there is one.  Payloads are sent
 * zero-copy from the application's buffers.
 *
 * Flow control (§5.10.6.3): we advertise buf_alloc bytes per connection and count
 * what the application consumed in fwd_cnt; the peer may have at most buf_alloc
 * bytes outstanding.  We send at most peer_buf_alloc - (tx_cnt - peer_fwd_cnt). */
#include "vsock.h"

#define VIRTIO_ID_VSOCK 19

#define VSOCK_TYPE_STREAM 1
#define VSOCK_OP_REQUEST 1
#define VSOCK_OP_RESPONSE 2
#define VSOCK_OP_RST 3
#define VSOCK_OP_SHUTDOWN 4
#define VSOCK_OP_RW 5
#define VSOCK_OP_CREDIT_UPDATE 6
#define VSOCK_OP_CREDIT_REQUEST 7
#define VSOCK_SHUTDOWN_RCV 1
#define VSOCK_SHUTDOWN_SEND 2
#define VSOCK_EVENT_TRANSPORT_RESET 0

#define VSOCK_HDR_SIZE 44
#define RX_QUEUE_SIZE 128       /* descriptors: 64 receive buffers */
#define TX_QUEUE_SIZE 256       /* descriptors: 128 packets in flight */
#define EVENT_QUEUE_SIZE 4
#define RX_BUF_SIZE (16u << 10) /* data bytes per receive buffer */
#define TX_MAX_PAYLOAD (64u << 10) /* Linux's and Firecracker's per-packet limit */
#define CLOSE_TIMEOUT_NS 2000000000ull /* SHUTDOWN sent, no RST: reset after 2 s */

/* Control packets a connection owes its peer. */
#define P_RESPONSE 1
#define P_CREDIT 2
#define P_SHUTDOWN 4
#define P_RST 8

struct vsock_hdr {
    uint64_t src_cid;
    uint64_t dst_cid;
    uint32_t src_port;
    uint32_t dst_port;
    uint32_t len;
    uint16_t type;
    uint16_t op;
    uint32_t flags;
    uint32_t buf_alloc;
    uint32_t fwd_cnt;
} __attribute__((packed));
_Static_assert(sizeof(struct vsock_hdr) == VSOCK_HDR_SIZE, "virtio_vsock_hdr is 44 bytes");

static struct virtio_mmio dev;
static struct virtq rxq, txq, evq;
static int present;
static uint64_t guest_cid;
static uint32_t listen_port, conn_buf_alloc;

static struct vsock_hdr* rx_hdr; /* one per receive buffer */
static uint8_t* rx_data;         /* RX_BUF_SIZE per receive buffer */
static uint32_t* ev_buf;
static uint16_t n_rx;

/* Transmit slot s uses descriptors 2s (header) and 2s+1 (payload). */
static struct vsock_hdr* tx_hdr;
static uint16_t* tx_free;
static uint16_t n_tx, n_tx_free;
static uint8_t* tx_owner;   /* conn index + 1, 0 for none */
static uint32_t* tx_serial; /* owner's serial when queued */

static struct vsock_conn conns[VSOCK_MAX_CONNS];
static uint32_t next_serial = 1;
/* Receive buffers the device had filled, and we had not read, when we saw the last
 * TRANSPORT_RESET: they belong to the transport that is gone (transport_reset). */
static uint16_t rx_stale;
static int trace; /* trace=vsock: log every packet on the console */

static const char* op_name(uint16_t op) {
    static const char* const names[] = {"INVALID", "REQUEST", "RESPONSE", "RST",
                                        "SHUTDOWN", "RW", "CREDIT_UPDATE", "CREDIT_REQUEST"};
    return op < 8 ? names[op] : "?";
}

int vsock_present(void) { return present; }
struct virtio_mmio* vsock_device(void) { return &dev; }
struct virtq* vsock_queue(int index) { return index == 0 ? &rxq : index == 1 ? &txq : &evq; }
int vsock_conn_index(const struct vsock_conn* c) { return (int)(c - conns); }

static void post_rx(uint16_t i) { virtq_push(&rxq, (uint16_t)(2 * i)); }

int vsock_init(uint32_t port, uint32_t buf_alloc) {
    const struct kn_device* d = 0;
    for (uint32_t i = 0; i < kn_boot->num_devices && i < KN_MAX_DEVICES; ++i)
        if (kn_boot->devices[i].device_id == VIRTIO_ID_VSOCK) {
            d = &kn_boot->devices[i];
            break;
        }
    if (!d) return -1;
    dev.base = (volatile uint8_t*)(uintptr_t)d->mmio_base;
    dev.device_id = d->device_id;
    guest_cid = kn_boot->guest_cid;
    listen_port = port;
    const char* t = nano_option("trace");
    trace = t && strcmp(t, "vsock") == 0;
    conn_buf_alloc = buf_alloc;

    struct virtq qs[3];
    static const uint16_t want[3] = {RX_QUEUE_SIZE, TX_QUEUE_SIZE, EVENT_QUEUE_SIZE};
    if (virtio_init(&dev, 0, VIRTIO_F_VERSION_1_HI, qs, want, 3) != 0) return -1;
    rxq = qs[0];
    txq = qs[1];
    evq = qs[2];

    n_rx = rxq.size / 2;
    rx_hdr = heap_alloc_permanent(n_rx * sizeof(struct vsock_hdr), 64);
    rx_data = heap_alloc_permanent((size_t)n_rx * RX_BUF_SIZE, 4096);
    n_tx = txq.size / 2;
    tx_hdr = heap_alloc_permanent(n_tx * sizeof(struct vsock_hdr), 64);
    tx_free = heap_alloc_permanent(n_tx * sizeof(uint16_t), 16);
    tx_owner = heap_alloc_permanent(n_tx, 16);
    tx_serial = heap_alloc_permanent(n_tx * sizeof(uint32_t), 16);
    ev_buf = heap_alloc_permanent(evq.size * sizeof(uint32_t), 16);
    if (!rx_hdr || !rx_data || !tx_hdr || !tx_free || !tx_owner || !tx_serial || !ev_buf) {
        mmio_batch_write(&dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_FAILED);
        mmio_batch_run();
        return -1;
    }
    /* Receive chains are fixed: buffer i = descriptors 2i -> 2i+1, device-writable. */
    for (uint16_t i = 0; i < n_rx; ++i) {
        struct virtq_desc* h = &rxq.desc[2 * i];
        h->addr = (uint64_t)(uintptr_t)&rx_hdr[i];
        h->len = VSOCK_HDR_SIZE;
        h->flags = VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT;
        h->next = (uint16_t)(2 * i + 1);
        struct virtq_desc* b = &rxq.desc[2 * i + 1];
        b->addr = (uint64_t)(uintptr_t)(rx_data + (size_t)i * RX_BUF_SIZE);
        b->len = RX_BUF_SIZE;
        b->flags = VIRTQ_DESC_F_WRITE;
        b->next = 0;
    }
    for (uint16_t i = 0; i < n_tx; ++i) {
        tx_free[i] = (uint16_t)(n_tx - 1 - i);
        tx_owner[i] = 0;
    }
    n_tx_free = n_tx;
    for (uint16_t i = 0; i < evq.size; ++i) {
        evq.desc[i].addr = (uint64_t)(uintptr_t)&ev_buf[i];
        evq.desc[i].len = sizeof(uint32_t);
        evq.desc[i].flags = VIRTQ_DESC_F_WRITE;
        evq.desc[i].next = 0;
    }
    /* No interrupt hint on rx and event: a used buffer there is what ends our
     * wait.  The tx hint is set before each wait (vsock_prepare_wait). */
    txq.avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
    for (uint16_t i = 0; i < n_rx; ++i) post_rx(i);
    for (uint16_t i = 0; i < evq.size; ++i) virtq_push(&evq, i);
    present = 1;
    return 0;
}

/* ---- transmit ---- */

static void fill_hdr(struct vsock_hdr* h, uint64_t dst_cid, uint32_t src_port, uint32_t dst_port, uint16_t op,
                     uint32_t flags, uint32_t len) {
    h->src_cid = guest_cid;
    h->dst_cid = dst_cid;
    h->src_port = src_port;
    h->dst_port = dst_port;
    h->len = len;
    h->type = VSOCK_TYPE_STREAM;
    h->op = op;
    h->flags = flags;
    h->buf_alloc = 0;
    h->fwd_cnt = 0;
}

/* Queue one packet; 0 on success, -1 if no transmit slot is free. */
static int tx_queue(struct vsock_conn* c, const struct vsock_hdr* h, const void* data, uint32_t len) {
    if (n_tx_free == 0) return -1;
    uint16_t s = tx_free[--n_tx_free];
    tx_hdr[s] = *h;
    if (c) {
        tx_hdr[s].buf_alloc = c->buf_alloc;
        tx_hdr[s].fwd_cnt = c->fwd_cnt;
        c->fwd_sent = c->fwd_cnt; /* every packet tells the peer our credit */
        c->tx_inflight++;
        tx_owner[s] = (uint8_t)(vsock_conn_index(c) + 1);
        tx_serial[s] = c->serial;
    } else {
        tx_owner[s] = 0;
    }
    struct virtq_desc* hd = &txq.desc[2 * s];
    hd->addr = (uint64_t)(uintptr_t)&tx_hdr[s];
    hd->len = VSOCK_HDR_SIZE;
    hd->flags = len ? VIRTQ_DESC_F_NEXT : 0;
    hd->next = (uint16_t)(2 * s + 1);
    if (len) {
        struct virtq_desc* pd = &txq.desc[2 * s + 1];
        pd->addr = (uint64_t)(uintptr_t)data;
        pd->len = len;
        pd->flags = 0;
        pd->next = 0;
    }
    virtq_push(&txq, (uint16_t)(2 * s));
    if (trace)
        nano_printf("vsock tx %s %u->%u len %u flags %u buf_alloc %u fwd_cnt %u\n", op_name(h->op), h->src_port,
                    h->dst_port, len, h->flags, tx_hdr[s].buf_alloc, tx_hdr[s].fwd_cnt);
    return 0;
}

static int tx_ctrl(struct vsock_conn* c, uint16_t op, uint32_t flags) {
    struct vsock_hdr h;
    fill_hdr(&h, c->peer_cid, c->local_port, c->peer_port, op, flags, 0);
    return tx_queue(c, &h, 0, 0);
}

/* RST for a packet that belongs to no connection (§5.10.6.4); best effort. */
static void tx_rst_reply(const struct vsock_hdr* in) {
    struct vsock_hdr h;
    fill_hdr(&h, in->src_cid, in->dst_port, in->src_port, VSOCK_OP_RST, 0, 0);
    tx_queue(0, &h, 0, 0);
}

static uint32_t tx_credit(const struct vsock_conn* c) {
    uint32_t outstanding = c->tx_cnt - c->peer_fwd_cnt;
    return outstanding >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - outstanding;
}

size_t vsock_send(struct vsock_conn* c, const void* data, size_t n) {
    if (c->state != VS_CONNECTED || (c->peer_shutdown & VSOCK_SHUTDOWN_RCV)) return 0;
    if (c->pending & P_RESPONSE) return 0; /* the RESPONSE has to go first */
    const uint8_t* p = data;
    size_t sent = 0;
    while (sent < n) {
        uint32_t credit = tx_credit(c);
        if (credit == 0) {
            if (!c->credit_requested && tx_ctrl(c, VSOCK_OP_CREDIT_REQUEST, 0) == 0) c->credit_requested = 1;
            break;
        }
        uint32_t k = (uint32_t)MIN(MIN(n - sent, (size_t)credit), (size_t)TX_MAX_PAYLOAD);
        struct vsock_hdr h;
        fill_hdr(&h, c->peer_cid, c->local_port, c->peer_port, VSOCK_OP_RW, 0, k);
        if (tx_queue(c, &h, p + sent, k) != 0) break;
        c->tx_cnt += k;
        sent += k;
    }
    return sent;
}

/* ---- connections ---- */

static struct vsock_conn* find_conn(const struct vsock_hdr* h) {
    for (int i = 0; i < VSOCK_MAX_CONNS; ++i) {
        struct vsock_conn* c = &conns[i];
        if ((c->state == VS_CONNECTED || c->state == VS_CLOSING) && c->peer_cid == h->src_cid &&
            c->peer_port == h->src_port && c->local_port == h->dst_port)
            return c;
    }
    return 0;
}

static void finalize(struct vsock_conn* c) {
    app_closed(c);
    nano_free(c->ring);
    c->ring = 0;
    c->state = VS_FREE;
    c->serial = next_serial++;
}

/* Forget c; its slot is reused once the device gave back every buffer it holds. */
static void drop_conn(struct vsock_conn* c) {
    c->state = VS_DEAD;
    c->pending = 0;
    c->ring_len = 0;
    if (c->tx_inflight == 0) finalize(c);
}

/* Make the device drop transmit packets it has not taken yet, unread: called when the
 * host has forgotten their connections, whose addresses it may hand out again.  The
 * device runs only while we are in KN_PORT_WAIT (or a port/MMIO exit), so it cannot
 * be reading these headers now; one that does not carry our CID is dropped without
 * a reply (a guest cannot speak for another CID, §5.10.6.6).  `owner` 0 = every
 * packet in flight, else only those of that connection. */
static void neuter_tx(const struct vsock_conn* owner) {
    uint8_t free_slot[TX_QUEUE_SIZE / 2] = {0};
    for (uint16_t i = 0; i < n_tx_free; ++i) free_slot[tx_free[i]] = 1;
    for (uint16_t s = 0; s < n_tx; ++s) {
        if (free_slot[s]) continue;
        if (owner && !(tx_owner[s] == vsock_conn_index(owner) + 1 && tx_serial[s] == owner->serial)) continue;
        tx_hdr[s].src_cid = ~(uint64_t)0;
    }
}

/* The peer has forgotten c: drop it without telling it, and let none of c's queued
 * packets reach the device; its transmit slots still come back through the used ring. */
static void forget_conn(struct vsock_conn* c) {
    neuter_tx(c);
    c->tx_inflight = 0;
    drop_conn(c);
}

static void reset_conn(struct vsock_conn* c) {
    tx_ctrl(c, VSOCK_OP_RST, 0);
    drop_conn(c);
}

void vsock_close(struct vsock_conn* c) {
    if (c->state != VS_CONNECTED) return;
    c->state = VS_CLOSING;
    c->pending |= P_SHUTDOWN;
    c->fwd_cnt += c->ring_len; /* staged input is dropped */
    c->ring_len = 0;
    c->deadline_ns = nano_now_ns() + CLOSE_TIMEOUT_NS;
}

static void accept_conn(const struct vsock_hdr* h) {
    struct vsock_conn* c = 0;
    for (int i = 0; i < VSOCK_MAX_CONNS && !c; ++i)
        if (conns[i].state == VS_FREE) c = &conns[i];
    if (!c) {
        tx_rst_reply(h); /* connection table full */
        return;
    }
    uint32_t serial = c->serial ? c->serial : next_serial++;
    memset(c, 0, sizeof *c);
    c->serial = serial;
    c->state = VS_CONNECTED;
    c->peer_cid = h->src_cid;
    c->peer_port = h->src_port;
    c->local_port = h->dst_port;
    c->buf_alloc = conn_buf_alloc;
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    c->pending = P_RESPONSE;
    nano_stats.connections++;
    app_accepted(c);
}

/* Give bytes to the application; stage what it does not take. */
static void deliver(struct vsock_conn* c, const uint8_t* p, uint32_t n) {
    c->rx_cnt += n;
    if (c->ring_len == 0 && !c->in_rx) {
        c->in_rx = 1;
        size_t k = app_received(c, p, n);
        c->in_rx = 0;
        c->fwd_cnt += (uint32_t)k;
        p += k;
        n -= (uint32_t)k;
    }
    if (n == 0) return;
    if (c->state != VS_CONNECTED) { /* closed meanwhile: drop the rest */
        c->fwd_cnt += n;
        return;
    }
    if (!c->ring) {
        c->ring = nano_malloc(c->buf_alloc);
        if (!c->ring) {
            reset_conn(c);
            return;
        }
        c->ring_head = 0;
    }
    /* Fits: the credit check bounds rx_cnt - fwd_cnt, which is ring_len, by buf_alloc. */
    uint32_t tail = (c->ring_head + c->ring_len) % c->buf_alloc;
    uint32_t first = MIN(n, c->buf_alloc - tail);
    memcpy(c->ring + tail, p, first);
    memcpy(c->ring, p + first, n - first);
    c->ring_len += n;
}

void vsock_rx_resume(struct vsock_conn* c) {
    if (c->in_rx) return;
    c->in_rx = 1;
    while (c->ring_len > 0 && c->state == VS_CONNECTED) {
        uint32_t seg = MIN(c->ring_len, c->buf_alloc - c->ring_head);
        size_t k = app_received(c, c->ring + c->ring_head, seg);
        c->fwd_cnt += (uint32_t)k;
        c->ring_head = (uint32_t)((c->ring_head + k) % c->buf_alloc);
        c->ring_len -= (uint32_t)k;
        if (k < seg) break;
    }
    if (c->state != VS_CONNECTED) {
        c->fwd_cnt += c->ring_len;
        c->ring_len = 0;
    }
    c->in_rx = 0;
}

/* `stale`: the packet was sent before a transport reset we have processed since. */
static void handle_packet(const struct vsock_hdr* h, const uint8_t* data, uint32_t len, int stale) {
    if (trace)
        nano_printf("vsock rx %s %u->%u len %u flags %u buf_alloc %u fwd_cnt %u%s\n", op_name(h->op), h->src_port,
                    h->dst_port, len, h->flags, h->buf_alloc, h->fwd_cnt, stale ? " (before reset)" : "");
    if (h->type != VSOCK_TYPE_STREAM) {
        if (h->op != VSOCK_OP_RST && !stale) tx_rst_reply(h);
        return;
    }
    struct vsock_conn* c = find_conn(h);
    if (c && h->op == VSOCK_OP_REQUEST && h->dst_port == listen_port) {
        /* The peer asks for an address we think is live, so it has forgotten that
         * connection: after a snapshot restore the host side starts from scratch
         * and may hand out the same host port again.  An RST would name the new
         * connection too, so drop the old one quietly and accept. */
        forget_conn(c);
        c = 0;
    }
    if (!c) {
        /* A packet for no connection gets an RST (§5.10.6.6) -- unless it predates a
         * transport reset: the host dropped those connections already, and the RST
         * could hit a new connection that reuses the address. */
        if (h->op == VSOCK_OP_REQUEST && h->dst_port == listen_port) accept_conn(h);
        else if (h->op != VSOCK_OP_RST && !stale) tx_rst_reply(h);
        return;
    }
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    if (tx_credit(c) > 0) c->credit_requested = 0;
    switch (h->op) {
    case VSOCK_OP_RW:
        if (c->state != VS_CONNECTED || (c->peer_shutdown & VSOCK_SHUTDOWN_SEND)) {
            c->rx_cnt += len;
            c->fwd_cnt += len; /* nobody reads it; keep the peer's credit moving */
            break;
        }
        if (c->rx_cnt - c->fwd_cnt + len > c->buf_alloc) { /* peer ignored our credit */
            reset_conn(c);
            break;
        }
        deliver(c, data, len);
        break;
    case VSOCK_OP_CREDIT_UPDATE:
        break;
    case VSOCK_OP_CREDIT_REQUEST:
        c->pending |= P_CREDIT;
        break;
    case VSOCK_OP_SHUTDOWN:
        c->peer_shutdown |= (uint8_t)(h->flags & (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND));
        /* A peer that will neither send nor receive wants our RST (§5.10.6.6);
         * one that only stopped sending still gets its answers (app_pump closes). */
        if ((c->peer_shutdown & VSOCK_SHUTDOWN_RCV) || c->state == VS_CLOSING) reset_conn(c);
        break;
    case VSOCK_OP_RST:
        drop_conn(c);
        break;
    default: /* RESPONSE (we never connect out), REQUEST (handled above) or unknown */
        reset_conn(c);
        break;
    }
}

/* VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (§5.10.6.7): the device sends it after a
 * snapshot restore (or whenever the VMM dropped the host side of every connection).
 * Every connection is gone, and the host will not remember anything about them: no
 * RST or SHUTDOWN is owed, our queued packets for them must not reach it, and the
 * host ports it hands out next may repeat old ones.  Our CID may have changed.
 * Listening goes on; the rings, their buffers and our receive window settings are
 * ours and stay as they are. */
static void transport_reset(void) {
    nano_stats.transport_resets++;
    neuter_tx(0);
    for (int i = 0; i < VSOCK_MAX_CONNS; ++i)
        if (conns[i].state != VS_FREE) {
            conns[i].tx_inflight = 0;
            drop_conn(&conns[i]);
        }
    /* What the device had put in the receive ring before the event was meant for the
     * old connections: no RST for those (handle_packet).  Later arrivals may be
     * counted in too, but for them this only means no RST for an unknown address. */
    rx_stale = (uint16_t)(rxq.used->idx - rxq.last_used);
    int lo = mmio_batch_read(&dev, VIRTIO_MMIO_CONFIG), hi = mmio_batch_read(&dev, VIRTIO_MMIO_CONFIG + 4);
    mmio_batch_run();
    guest_cid = mmio_result(lo) | (uint64_t)mmio_result(hi) << 32;
    if (trace) nano_printf("vsock transport reset: cid %llu\n", (unsigned long long)guest_cid);
}

static int poll_events(void) {
    struct virtq_used_elem e;
    int progress = 0;
    while (virtq_pop_used(&evq, &e)) {
        progress = 1;
        if (e.id >= evq.size) continue;
        if (e.len >= sizeof(uint32_t) && ev_buf[e.id] == VSOCK_EVENT_TRANSPORT_RESET) transport_reset();
        virtq_push(&evq, (uint16_t)e.id);
    }
    return progress;
}

static int poll_rx(void) {
    struct virtq_used_elem e;
    int progress = 0;
    while (virtq_pop_used(&rxq, &e)) {
        progress = 1;
        int stale = rx_stale > 0;
        if (stale) --rx_stale;
        if (e.id >= rxq.size || (e.id & 1)) continue; /* not a head we posted */
        uint16_t i = (uint16_t)(e.id / 2);
        struct vsock_hdr h = rx_hdr[i];
        if (e.len >= VSOCK_HDR_SIZE && h.len <= e.len - VSOCK_HDR_SIZE && h.len <= RX_BUF_SIZE)
            handle_packet(&h, rx_data + (size_t)i * RX_BUF_SIZE, h.len, stale);
        post_rx(i);
    }
    return progress;
}

static int poll_tx(void) {
    struct virtq_used_elem e;
    int progress = 0;
    while (virtq_pop_used(&txq, &e)) {
        progress = 1;
        if (e.id >= txq.size || (e.id & 1)) continue;
        uint16_t s = (uint16_t)(e.id / 2);
        if (n_tx_free >= n_tx) continue; /* more completions than we queued */
        tx_free[n_tx_free++] = s;
        if (tx_owner[s]) {
            struct vsock_conn* c = &conns[tx_owner[s] - 1];
            if (c->serial == tx_serial[s] && c->tx_inflight > 0) {
                c->tx_inflight--;
                if (c->tx_inflight == 0 && c->state == VS_DEAD) finalize(c);
            }
            tx_owner[s] = 0;
        }
    }
    return progress;
}

/* Send what each connection owes: RESPONSE, credit updates, SHUTDOWN. */
static void flush_control(struct vsock_conn* c) {
    if ((c->pending & P_RESPONSE) && tx_ctrl(c, VSOCK_OP_RESPONSE, 0) == 0) c->pending &= (uint8_t)~P_RESPONSE;
    if (c->pending & P_RESPONSE) return;
    /* Tell the peer about consumed bytes once it has used half its window since our
     * last report, so it never stalls on a window we have already drained. */
    if (c->state == VS_CONNECTED && c->fwd_cnt != c->fwd_sent && c->rx_cnt - c->fwd_sent >= c->buf_alloc / 2)
        c->pending |= P_CREDIT;
    if ((c->pending & P_CREDIT) && tx_ctrl(c, VSOCK_OP_CREDIT_UPDATE, 0) == 0) c->pending &= (uint8_t)~P_CREDIT;
    if ((c->pending & P_SHUTDOWN) &&
        tx_ctrl(c, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND) == 0)
        c->pending &= (uint8_t)~P_SHUTDOWN;
}

int vsock_poll(void) {
    if (!present) return 0;
    int progress = poll_events();
    /* Returned transmit buffers first: a connection whose answer went out can then
     * take the next request straight from the receive buffer, without staging it. */
    progress |= poll_tx();
    for (int i = 0; i < VSOCK_MAX_CONNS; ++i)
        if (conns[i].state == VS_CONNECTED) app_pump(&conns[i]);
    progress |= poll_rx();
    uint64_t now = 0;
    for (int i = 0; i < VSOCK_MAX_CONNS; ++i) {
        struct vsock_conn* c = &conns[i];
        if (c->state == VS_CONNECTED) {
            flush_control(c);
            if (c->state == VS_CONNECTED) app_pump(c);
        }
        if (c->state == VS_CONNECTED || c->state == VS_CLOSING) flush_control(c);
        if (c->state == VS_CLOSING) {
            if (!now) now = nano_now_ns();
            if (now >= c->deadline_ns) reset_conn(c);
        }
    }
    return progress;
}

uint32_t vsock_prepare_wait(void) {
    if (!present) return KN_WAIT_FOREVER;
    uint64_t timeout_us = KN_WAIT_FOREVER;
    int want_tx = n_tx_free == 0;
    uint64_t now = 0;
    for (int i = 0; i < VSOCK_MAX_CONNS; ++i) {
        struct vsock_conn* c = &conns[i];
        if (c->state == VS_CLOSING) {
            if (!now) now = nano_now_ns();
            uint64_t left = c->deadline_ns > now ? (c->deadline_ns - now) / 1000 + 1 : 0;
            if (left < timeout_us) timeout_us = left;
        }
        if (c->state == VS_CONNECTED && c->tx_inflight > 0 && app_waits_for_tx(c)) want_tx = 1;
        if (c->pending) want_tx = 1; /* owed control packets wait for free slots */
    }
    /* Completed transmits wake us only when something waits for them; otherwise
     * the next request does, which saves one exit per invoke (§2.7.10 hint). */
    txq.avail->flags = want_tx ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT;
    return (uint32_t)timeout_us;
}

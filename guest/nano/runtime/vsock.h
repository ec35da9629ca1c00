/* virtio-vsock driver (virtio 1.2 §5.10), stream sockets, listening only: the host
 * connects in (Firecracker's hybrid vsock: `CONNECT <port>` on the VMM's Unix
 * socket), the guest accepts and answers. */
#ifndef NANO_RUNTIME_VSOCK_H
#define NANO_RUNTIME_VSOCK_H

#include "virtio.h"

#define VSOCK_MAX_CONNS 16

enum vsock_conn_state {
    VS_FREE = 0,
    VS_CONNECTED,
    VS_CLOSING, /* we sent SHUTDOWN, waiting for the peer's RST */
    VS_DEAD,    /* gone; the slot is reused once our last tx buffer comes back */
};

struct vsock_conn {
    uint8_t state;
    uint8_t peer_shutdown; /* VIRTIO_VSOCK_SHUTDOWN_* flags the peer sent */
    uint8_t pending;       /* control packets we owe the peer (P_* in vsock.c) */
    uint8_t credit_requested;
    uint8_t in_rx;
    uint32_t serial; /* changes each time the slot is reused */
    uint64_t peer_cid;
    uint32_t peer_port, local_port;
    /* Our receive side (§5.10.6.3): we advertise buf_alloc and fwd_cnt. */
    uint32_t buf_alloc, fwd_cnt, rx_cnt, fwd_sent;
    /* Our send side: what the peer advertised, and what we sent. */
    uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
    uint32_t tx_inflight; /* our packets the device has not used yet */
    /* Bytes received but not yet taken by the application (at most buf_alloc). */
    uint8_t* ring;
    uint32_t ring_head, ring_len;
    uint64_t deadline_ns;
};

/* 0 if a vsock device was found and initialised; -1 if there is none (or it failed). */
int vsock_init(uint32_t listen_port, uint32_t buf_alloc);
int vsock_present(void);
/* Process the device's used rings and every connection; nonzero if anything moved. */
int vsock_poll(void);
/* Timeout for the next KN_PORT_WAIT in microseconds, and whether we want to be woken
 * when the device uses transmit buffers (sets the tx queue's NO_INTERRUPT hint). */
uint32_t vsock_prepare_wait(void);

/* Queue up to n bytes on c (limited by peer credit and free descriptors); returns the
 * number queued.  Zero copy: the bytes must stay unchanged until vsock_tx_idle(c). */
size_t vsock_send(struct vsock_conn* c, const void* data, size_t n);
static inline int vsock_tx_idle(const struct vsock_conn* c) { return c->tx_inflight == 0 && c->pending == 0; }
/* Graceful close (SHUTDOWN, then wait for RST); data still staged is dropped. */
void vsock_close(struct vsock_conn* c);
/* Hand staged bytes to the application again (it refused them earlier). */
void vsock_rx_resume(struct vsock_conn* c);
int vsock_conn_index(const struct vsock_conn* c);

/* For guest/nano/fn/hostile.c: the raw device and queues. */
struct virtio_mmio* vsock_device(void);
struct virtq* vsock_queue(int index); /* 0 rx, 1 tx, 2 event */

/* Implemented by the application (invoke.c). */
void app_accepted(struct vsock_conn* c);
/* Take bytes; return how many were taken (the rest is staged and offered again
 * through vsock_rx_resume). */
size_t app_received(struct vsock_conn* c, const uint8_t* p, size_t n);
/* Called for every live connection on each poll: send more, finish, close. */
void app_pump(struct vsock_conn* c);
/* Does c have work that waits for its transmit buffers to come back? */
int app_waits_for_tx(const struct vsock_conn* c);
/* The connection is gone; free what the application holds for it. */
void app_closed(struct vsock_conn* c);

#endif

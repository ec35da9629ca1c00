/* The nano guest ABI: what fc-launch promises a nano guest and what the guest may
 * ask of it.  Shared, byte for byte, by the VMM (C++) and the freestanding guest
 * runtime (C).  Documented for people in man/kindling-nano.7.
 *
 * A nano guest is a static x86-64 ELF.  fc-launch copies its PT_LOAD segments to
 * their physical addresses, identity-maps all guest RAM with user (U=1) 2 MiB pages
 * (page 0 included: PVM hosts need it mapped to handle ring-3 port I/O, so a NULL
 * dereference does not fault), and starts it in 64-bit mode at CPL 3
 * with RFLAGS.IOPL=3, so port I/O works without a kernel.  There is no IDT and no
 * interrupts: a fault in the guest is a triple fault, which stops the VM.
 *
 * Entry: rip = e_entry, rdi = KN_BOOT_INFO_ADDR, rsp = boot_info.stack_top
 * (16-byte aligned).  Every other general register is 0.
 */
#ifndef KINDLING_NANO_ABI_H
#define KINDLING_NANO_ABI_H

#include <stdint.h>

/* Fixed guest-physical layout (all below 1 MiB). */
#define KN_BOOT_INFO_ADDR 0x1000u  /* struct kn_boot_info */
#define KN_GENERATION_ADDR 0x2000u /* struct kn_generation */
#define KN_CMDLINE_ADDR 0x3000u    /* NUL-terminated, at most KN_CMDLINE_MAX bytes */
#define KN_CMDLINE_MAX 4096u
#define KN_PAGE_TABLES_ADDR 0x4000u /* VMM-built page tables, 0x4000..0xffff */
#define KN_IMAGE_MIN_ADDR 0x100000u /* PT_LOAD segments must lie at or above 1 MiB */

/* Guest RAM for nano guests lives in [0, KN_MAX_MEM); the MMIO window sits above. */
#define KN_MAX_MEM 0xC0000000ull      /* 3 GiB */
#define KN_MMIO_BASE 0xD0000000ull    /* first virtio-mmio device */
#define KN_MMIO_STRIDE 0x1000ull      /* one 4 KiB window per device */

/* Ports.  Use 8-bit OUT for KN_PORT_SERIAL and 32-bit OUT (outl) for the others. */
#define KN_PORT_SERIAL 0x3f8u /* outb: one byte to the console */
#define KN_PORT_WRITE 0x600u  /* outl(gpa of struct kn_iovec): write a buffer to the console */
#define KN_PORT_WAIT 0x604u   /* outl(timeout_us): service devices, then block (see below) */
#define KN_PORT_EXIT 0x608u   /* outl(status): stop the VM; fc-launch exits with status & 0xff */
#define KN_PORT_READY 0x60cu  /* outl(stage): an initialisation stage was reached (below) */
#define KN_PORT_MMIO_BATCH 0x610u /* outl(gpa of struct kn_mmio_batch): several MMIO accesses, one exit */

/* KN_PORT_WAIT: the VMM first processes every virtio queue of every device as if it
 * had been notified (so a guest needs no separate QueueNotify write), then blocks
 * the vCPU until a device has used a buffer or raised an event, or timeout_us
 * microseconds have passed.  KN_WAIT_FOREVER blocks with no timeout.  After it
 * returns the guest must re-check its rings: the wait may also end early. */
#define KN_WAIT_FOREVER 0xffffffffu

/* KN_PORT_READY: outl(KN_READY_SERVING) once initialisation is complete and the
 * guest serves requests -- snap-make snapshots here by default.  Before that, a
 * guest may report intermediate stages 1, 2, ... in increasing order (the runtime
 * reports KN_READY_RUNTIME when its own start-up is done, before the function's
 * init; a function may report more), so snap-make can cut layers: a base layer at
 * stage 1, a runtime layer at stage 2 restored from the base, and the function
 * layer at KN_READY_SERVING restored from that. */
#define KN_READY_SERVING 0u
#define KN_READY_RUNTIME 1u

/* KN_PORT_MMIO_BATCH: the VMM performs ops[0..count) in order exactly as if the
 * guest had made each access itself (same devices, same rules: an access to no
 * device stops the VM), storing each read's result in its `value`.  Device
 * initialisation costs one VM exit instead of ~25.  At most KN_MMIO_BATCH_MAX ops;
 * `size` is 1, 2 or 4. */
#define KN_MMIO_BATCH_MAX 64u

struct kn_mmio_op {
    uint64_t addr;
    uint32_t value;
    uint8_t size;
    uint8_t is_write;
    uint8_t reserved[2];
};

struct kn_mmio_batch {
    uint32_t count;
    uint32_t reserved;
    struct kn_mmio_op ops[KN_MMIO_BATCH_MAX];
};

/* Every nano image carries this ELF note (in a PT_NOTE segment) so fc-launch can
 * tell it from a Linux vmlinux: name "kindling", type KN_ELF_NOTE_TYPE,
 * descriptor = one uint32_t, the ABI version (KN_BOOT_VERSION). */
#define KN_ELF_NOTE_NAME "kindling"
#define KN_ELF_NOTE_TYPE 0x4f4e414eu /* "NANO" */

#define KN_BOOT_MAGIC 0x49424e4bu /* "KNBI" */
#define KN_BOOT_VERSION 1u
#define KN_MAX_DEVICES 8u

struct kn_iovec {
    uint64_t addr;
    uint64_t len;
};

struct kn_device {
    uint64_t mmio_base;  /* guest-physical base of the virtio-mmio window */
    uint32_t mmio_size;
    uint32_t device_id;  /* virtio device id: 19 = vsock, 2 = block */
};

struct kn_boot_info {
    uint32_t magic;       /* KN_BOOT_MAGIC */
    uint32_t version;     /* KN_BOOT_VERSION */
    uint64_t mem_size;    /* guest RAM is [0, mem_size) */
    uint64_t image_end;   /* first byte after the highest PT_LOAD segment, page aligned */
    uint64_t stack_top;   /* initial rsp; the stack grows down from here */
    uint64_t stack_size;  /* bytes reserved below stack_top for the stack */
    uint64_t cmdline;     /* guest-physical address of the command line */
    uint64_t generation;  /* guest-physical address of struct kn_generation */
    uint64_t tsc_khz;     /* TSC frequency, for rdtsc-based clocks (0 if unknown) */
    uint64_t guest_cid;   /* vsock context id of this VM */
    uint32_t num_devices;
    uint32_t reserved;
    struct kn_device devices[KN_MAX_DEVICES];
};

/* The generation page (the VMGenID idea).  The VMM writes a fresh id and fresh
 * entropy before the vCPUs resume from a snapshot restore; a guest that sees the
 * id change must reseed every random number generator it has. */
struct kn_generation {
    uint64_t id_lo;
    uint64_t id_hi;
    uint8_t entropy[32];
};

#endif

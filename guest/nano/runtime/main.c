/* Runtime start-up and the serve loop: options, heap, clock, CSPRNG, the vsock
 * device, KN_PORT_READY stage 1, the function's nano_init, then KN_PORT_READY
 * stage 0 (serving) and requests until EXIT. */
#include "vsock.h"

struct nano_stats nano_stats;

/* The OUTs where the vCPU blocks (and where a snapshot usually finds it). */
static void blocking_out(uint16_t port, uint32_t value) {
    if (nano_blocking_out) nano_blocking_out(port, value);
    else outl(port, value);
}

void nano_wait(uint32_t timeout_us) {
    nano_stats.waits++;
    blocking_out(KN_PORT_WAIT, timeout_us);
}

/* Stages reported so far: KN_READY_RUNTIME, then the function's, then serving. */
static uint32_t last_stage;
static int serving;

static void report_stage(uint32_t stage) {
    /* Console output still buffered would be in a snapshot taken here and come out
     * again from every clone restored from it. */
    nano_flush();
    if (stage == KN_READY_SERVING) serving = 1;
    else last_stage = stage;
    blocking_out(KN_PORT_READY, stage);
}

void nano_ready_stage(uint32_t stage) {
    if (serving || stage <= last_stage || stage <= KN_READY_RUNTIME) {
        nano_printf("nano: nano_ready_stage(%u) %s: stages go up from %u during nano_init\n", stage,
                    serving ? "while serving" : "out of order", KN_READY_RUNTIME + 1);
        nano_exit(70);
    }
    report_stage(stage);
}

void nano_exit(int status) {
    nano_flush();
    for (;;) outl(KN_PORT_EXIT, (uint32_t)status & 0xff);
}

/* The largest RAM range the image and the stack leave free. */
static void setup_heap(void) {
    uint64_t lo = kn_boot->image_end, hi = kn_boot->mem_size;
    uint64_t stack_lo = kn_boot->stack_top - kn_boot->stack_size;
    if (kn_boot->stack_top > lo && stack_lo < hi) {
        if (stack_lo >= lo && stack_lo - lo >= hi - kn_boot->stack_top) hi = stack_lo;
        else lo = kn_boot->stack_top;
    }
    heap_init(lo, hi);
}

/* invoke=TEXT on the command line: answer one request on the console and exit
 * (0 for OK, 1 for an error) -- a function can be tried without any vsock. */
static void invoke_once(const char* text) {
    struct nano_response r = {0};
    nano_stats.invokes++;
    int rc = handler((const uint8_t*)text, strlen(text), &r);
    int ok = rc == 0 && r.failed == 0;
    if (r.failed == -1) nano_printf("error: out of memory building the response\n");
    else if (!ok && !r.failed) nano_printf("error: function failed (status %d)\n", rc);
    else nano_printf("%s%.*s\n", ok ? "" : "error: ", (int)r.len, (const char*)r.data);
    nano_exit(ok ? 0 : 1);
}

void nano_runtime_main(void) {
    const char* cmdline = 0;
    if (kn_boot->cmdline && kn_boot->cmdline < kn_boot->mem_size) cmdline = (const char*)(uintptr_t)kn_boot->cmdline;
    cmdline_init(cmdline);
    console_init();
    clock_init();
    setup_heap();
    random_init();
    invoke_init();
    int quiet = nano_option("quiet") != 0;

    uint64_t port = option_u64("port", 9000);
    uint64_t buf = option_u64("buf", 1u << 20);
    if (buf < 4096) buf = 4096;
    if (buf > (64u << 20)) buf = 64u << 20;
    int have_vsock = vsock_init((uint32_t)port, (uint32_t)buf) == 0;

    report_stage(KN_READY_RUNTIME);
    if (nano_init) {
        int rc = nano_init();
        if (rc != 0) {
            nano_printf("nano: function init failed (status %d)\n", rc);
            nano_exit(rc > 0 && rc < 256 ? rc : 1);
        }
    }
    const char* once = nano_option("invoke");
    if (once) invoke_once(once);
    if (!have_vsock) {
        nano_printf("nano: no usable virtio-vsock device, nothing to serve (give fc-launch --vsock PATH)\n");
        nano_exit(69);
    }
    if (!quiet)
        nano_printf("nano: ready on vsock port %u (cid %llu, %llu MiB RAM, %zu KiB heap free)\n", (unsigned)port,
                    (unsigned long long)kn_boot->guest_cid, (unsigned long long)(kn_boot->mem_size >> 20),
                    heap_free_bytes() >> 10);
    nano_stats.ready_ns = nano_now_ns();
    report_stage(KN_READY_SERVING);
    for (;;) {
        while (vsock_poll()) {
        }
        uint32_t timeout = vsock_prepare_wait();
        nano_flush();
        nano_wait(timeout);
    }
}

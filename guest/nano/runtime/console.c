/* Console output: buffered, written to the VMM with one KN_PORT_WRITE exit per line
 * (default) or per batch (console=batch: when the buffer fills and before the guest
 * blocks or exits). */
#include "internal.h"

static char cbuf[4096];
static size_t clen;
static int batch;

void console_init(void) {
    const char* mode = nano_option("console");
    batch = mode && strcmp(mode, "batch") == 0;
}

void nano_flush(void) {
    if (clen == 0) return;
    static struct kn_iovec iov;
    iov.addr = (uint64_t)(uintptr_t)cbuf;
    iov.len = clen;
    /* The image lies below 4 GiB (it is loaded at 1 MiB), so the iovec's address
     * fits in the 32-bit port value. */
    outl(KN_PORT_WRITE, (uint32_t)(uintptr_t)&iov);
    nano_stats.console_writes++;
    clen = 0;
}

void console_write(const char* p, size_t n) {
    while (n > 0) {
        size_t k = MIN(n, sizeof cbuf - clen);
        memcpy(cbuf + clen, p, k);
        clen += k;
        p += k;
        n -= k;
        if (clen == sizeof cbuf) nano_flush();
    }
}

static void console_sink(void* ctx, const char* p, size_t n) {
    (void)ctx;
    console_write(p, n);
}

int nano_vprintf(const char* fmt, va_list ap) {
    int n = format(console_sink, 0, fmt, ap);
    if (!batch && clen > 0 && cbuf[clen - 1] == '\n') nano_flush();
    return n;
}

int nano_printf(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = nano_vprintf(fmt, ap);
    va_end(ap);
    return n;
}

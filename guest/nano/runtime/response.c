/* Building a response (kindling/nano.h).  Shared by the nano runtime and the native
 * build, so a function behaves the same in both. */
#include "kindling/nano.h"

#ifdef NANO_NATIVE
#include <stdio.h>
#define nano_vsnprintf vsnprintf
#endif

int nano_reserve(struct nano_response* out, size_t extra) {
    if (out->failed == -1) return -1;
    if (extra > SIZE_MAX / 2 - out->len) goto oom;
    size_t need = out->len + extra;
    if (out->data == out->buf && need <= out->cap) return 0;
    size_t cap = out->cap * 2;
    if (cap < need) cap = need;
    if (cap < 256) cap = 256;
    uint8_t* p;
    if (out->data == out->buf) {
        p = nano_realloc(out->buf, cap);
        if (!p) goto oom;
    } else {
        /* The handler pointed data elsewhere and now appends: move it into ours. */
        p = nano_malloc(cap);
        if (!p) goto oom;
        memcpy(p, out->data, out->len);
        nano_free(out->buf);
    }
    out->buf = out->data = p;
    out->cap = cap;
    return 0;
oom:
    out->failed = -1;
    return -1;
}

int nano_append(struct nano_response* out, const void* p, size_t n) {
    if (nano_reserve(out, n) != 0) return -1;
    memcpy(out->data + out->len, p, n);
    out->len += n;
    return 0;
}

int nano_append_str(struct nano_response* out, const char* s) { return nano_append(out, s, strlen(s)); }

static int vappendf(struct nano_response* out, const char* fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = nano_vsnprintf(0, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || nano_reserve(out, (size_t)n + 1) != 0) return -1;
    nano_vsnprintf((char*)out->data + out->len, (size_t)n + 1, fmt, ap);
    out->len += (size_t)n;
    return 0;
}

int nano_appendf(struct nano_response* out, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vappendf(out, fmt, ap);
    va_end(ap);
    return r;
}

int nano_fail(struct nano_response* out, const char* fmt, ...) {
    if (out->failed == -1) return -1;
    out->data = out->buf;
    out->len = 0;
    va_list ap;
    va_start(ap, fmt);
    int r = vappendf(out, fmt, ap);
    va_end(ap);
    if (r == 0) out->failed = 1;
    return -1;
}

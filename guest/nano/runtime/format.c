/* A small printf engine: %d %i %u %x %X %o %c %s %p %%, with flags '-' '0' ' ' '+',
 * width and precision (also '*'), and length modifiers hh h l ll z t j. */
#include "internal.h"

struct out {
    format_sink sink;
    void* ctx;
    int total;
};

static void emit(struct out* o, const char* p, size_t n) {
    if (n == 0) return;
    o->sink(o->ctx, p, n);
    o->total += (int)n;
}

static void pad(struct out* o, char c, int n) {
    char b[32];
    memset(b, c, sizeof b);
    while (n > 0) {
        int k = n > (int)sizeof b ? (int)sizeof b : n;
        emit(o, b, (size_t)k);
        n -= k;
    }
}

/* Emit one converted field: prefix (sign or 0x), zero padding to prec, body. */
static void field(struct out* o, const char* prefix, const char* body, int len, int width, int prec, int left,
                  int zero) {
    int plen = (int)strlen(prefix);
    int zeros = prec > len ? prec - len : 0;
    int n = plen + zeros + len;
    if (zero && !left && prec < 0 && width > n) {
        zeros += width - n;
        n = width;
    }
    if (!left) pad(o, ' ', width - n);
    emit(o, prefix, (size_t)plen);
    pad(o, '0', zeros);
    emit(o, body, (size_t)len);
    if (left) pad(o, ' ', width - n);
}

int format(format_sink sink, void* ctx, const char* fmt, va_list ap) {
    struct out o = {sink, ctx, 0};
    const char* p = fmt;
    while (*p) {
        const char* lit = p;
        while (*p && *p != '%') ++p;
        emit(&o, lit, (size_t)(p - lit));
        if (!*p) break;
        ++p; /* '%' */
        int left = 0, zero = 0, plus = 0, space = 0, alt = 0;
        for (;; ++p) {
            if (*p == '-') left = 1;
            else if (*p == '0') zero = 1;
            else if (*p == '+') plus = 1;
            else if (*p == ' ') space = 1;
            else if (*p == '#') alt = 1;
            else break;
        }
        int width = 0, prec = -1;
        if (*p == '*') {
            width = va_arg(ap, int);
            if (width < 0) left = 1, width = -width;
            ++p;
        } else {
            while (*p >= '0' && *p <= '9') width = width * 10 + (*p++ - '0');
        }
        if (*p == '.') {
            ++p;
            prec = 0;
            if (*p == '*') {
                prec = va_arg(ap, int);
                ++p;
            } else {
                while (*p >= '0' && *p <= '9') prec = prec * 10 + (*p++ - '0');
            }
        }
        int size = 0; /* 0 int, 1 long, 2 long long, -1 short, -2 char */
        for (;; ++p) {
            if (*p == 'l') size = size >= 1 ? 2 : 1;
            else if (*p == 'z' || *p == 't' || *p == 'j') size = 2;
            else if (*p == 'h') size = size <= -1 ? -2 : -1;
            else break;
        }
        char conv = *p ? *p++ : 0;
        char buf[32];
        switch (conv) {
        case 'd':
        case 'i': {
            long long v = size == 2 ? va_arg(ap, long long) : size == 1 ? va_arg(ap, long) : va_arg(ap, int);
            if (size == -1) v = (short)v;
            if (size == -2) v = (signed char)v;
            unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
            int n = 0;
            do buf[sizeof buf - 1 - n++] = (char)('0' + u % 10);
            while (u /= 10);
            if (prec == 0 && v == 0) n = 0;
            field(&o, v < 0 ? "-" : plus ? "+" : space ? " " : "", buf + sizeof buf - n, n, width, prec, left, zero);
            break;
        }
        case 'u':
        case 'x':
        case 'X':
        case 'o':
        case 'p': {
            unsigned long long u;
            if (conv == 'p') u = (uintptr_t)va_arg(ap, void*);
            else if (size == 2) u = va_arg(ap, unsigned long long);
            else if (size == 1) u = va_arg(ap, unsigned long);
            else u = va_arg(ap, unsigned int);
            if (size == -1) u = (unsigned short)u;
            if (size == -2) u = (unsigned char)u;
            unsigned base = conv == 'u' ? 10 : conv == 'o' ? 8 : 16;
            const char* digits = conv == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
            int n = 0;
            unsigned long long t = u;
            do buf[sizeof buf - 1 - n++] = digits[t % base];
            while (t /= base);
            if (prec == 0 && u == 0) n = 0;
            const char* prefix = (conv == 'p' || (alt && u != 0 && base == 16)) ? (conv == 'X' ? "0X" : "0x") : "";
            field(&o, prefix, buf + sizeof buf - n, n, width, prec, left, zero);
            break;
        }
        case 'c':
            buf[0] = (char)va_arg(ap, int);
            field(&o, "", buf, 1, width, -1, left, 0);
            break;
        case 's': {
            const char* s = va_arg(ap, const char*);
            if (!s) s = "(null)";
            int n = 0;
            while ((prec < 0 || n < prec) && s[n]) ++n;
            field(&o, "", s, n, width, -1, left, 0);
            break;
        }
        case '%':
            emit(&o, "%", 1);
            break;
        default: /* unknown conversion: print it as written */
            emit(&o, "%", 1);
            if (conv) emit(&o, &conv, 1);
            break;
        }
    }
    return o.total;
}

struct strbuf {
    char* buf;
    size_t size, pos;
};

static void str_sink(void* ctx, const char* p, size_t n) {
    struct strbuf* s = ctx;
    if (s->pos + 1 < s->size) {
        size_t room = s->size - 1 - s->pos;
        memcpy(s->buf + s->pos, p, n < room ? n : room);
    }
    s->pos += n;
}

int nano_vsnprintf(char* buf, size_t size, const char* fmt, va_list ap) {
    struct strbuf s = {buf, size, 0};
    int n = format(str_sink, &s, fmt, ap);
    if (size > 0) buf[s.pos < size ? s.pos : size - 1] = 0;
    return n;
}

int nano_snprintf(char* buf, size_t size, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = nano_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

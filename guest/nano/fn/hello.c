/* hello: answers {"greeting":"hello from kindling nano","request":<the request as a
 * JSON string>}.  Bytes that are not valid UTF-8 become U+FFFD, so the answer is
 * always valid JSON whatever the request holds. */
#include <kindling/nano.h>

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), or 0 if there is none. */
static size_t utf8_seq(const uint8_t* p, size_t n) {
    uint8_t b = p[0];
    size_t len;
    uint32_t min, cp;
    if (b < 0x80) return 1;
    if ((b & 0xe0) == 0xc0) len = 2, min = 0x80, cp = b & 0x1f;
    else if ((b & 0xf0) == 0xe0) len = 3, min = 0x800, cp = b & 0x0f;
    else if ((b & 0xf8) == 0xf0) len = 4, min = 0x10000, cp = b & 0x07;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; ++i) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

static int append_json_string(struct nano_response* out, const uint8_t* p, size_t n) {
    static const char hex[] = "0123456789abcdef";
    /* Worst case is 6 output bytes per input byte (\u00XX); reserve once. */
    if (n > SIZE_MAX / 6 - 2 || nano_reserve(out, 6 * n + 2) != 0) return -1;
    uint8_t* o = out->data + out->len;
    *o++ = '"';
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = c;
            ++i;
        } else if (c < 0x20 || c == 0x7f) {
            *o++ = '\\';
            switch (c) {
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            default:
                *o++ = 'u', *o++ = '0', *o++ = '0';
                *o++ = (uint8_t)hex[c >> 4], *o++ = (uint8_t)hex[c & 15];
            }
            ++i;
        } else if (c < 0x80) {
            *o++ = c;
            ++i;
        } else {
            size_t k = utf8_seq(p + i, n - i);
            if (k) {
                memcpy(o, p + i, k);
                o += k;
                i += k;
            } else {
                memcpy(o, "\\ufffd", 6);
                o += 6;
                ++i;
            }
        }
    }
    *o++ = '"';
    out->len = (size_t)(o - out->data);
    return 0;
}

int handler(const uint8_t* req, size_t len, struct nano_response* out) {
    if (nano_append_str(out, "{\"greeting\":\"hello from kindling nano\",\"request\":") != 0 ||
        append_json_string(out, req, len) != 0 || nano_append_str(out, "}") != 0)
        return -1;
    return 0;
}

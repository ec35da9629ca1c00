/* uuid: answers random version-4 UUIDs (RFC 4122 §4.4) from the runtime's CSPRNG,
 * lowercase, one per line.  The request is empty for one UUID, or a decimal count
 * (1..1000).  Clones restored from one snapshot must answer different UUIDs: the
 * runtime reseeds from the generation page when the VMM writes a new one, and its
 * generator never repeats within one VM (fast key erasure). */
#include <kindling/nano.h>

#define MAX_COUNT 1000
#define UUID_LEN 36

static void format_uuid(char out[UUID_LEN], const uint8_t b[16]) {
    static const char hex[] = "0123456789abcdef";
    char* o = out;
    for (int i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
}

/* The whole request as a decimal count; 1 for an empty request, 0 if it is not one. */
static unsigned parse_count(const uint8_t* req, size_t len) {
    if (len > 0 && req[len - 1] == '\n') --len;
    if (len == 0) return 1;
    unsigned n = 0;
    for (size_t i = 0; i < len; ++i) {
        if (req[i] < '0' || req[i] > '9' || n > MAX_COUNT) return 0;
        n = n * 10 + (unsigned)(req[i] - '0');
    }
    return n <= MAX_COUNT ? n : 0;
}

int handler(const uint8_t* req, size_t len, struct nano_response* out) {
    unsigned n = parse_count(req, len);
    if (n == 0) return nano_fail(out, "request must be empty or a count from 1 to %u", MAX_COUNT);
    if (nano_reserve(out, (size_t)n * (UUID_LEN + 1)) != 0) return -1;
    for (unsigned k = 0; k < n; ++k) {
        uint8_t b[16];
        nano_random(b, sizeof b);
        b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4: random */
        b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* variant 10x: RFC 4122 */
        if (k) out->data[out->len++] = '\n';
        format_uuid((char*)out->data + out->len, b);
        out->len += UUID_LEN;
    }
    return 0;
}

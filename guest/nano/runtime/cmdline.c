/* Runtime options from the command line (boot args): space-separated `key=value` or
 * bare `key` words; a value may be double-quoted to hold spaces. */
#include "internal.h"

#define MAX_OPTIONS 64

static char line[KN_CMDLINE_MAX];
static struct {
    const char* key;
    const char* value;
} opts[MAX_OPTIONS];
static size_t nopts;

void cmdline_init(const char* src) {
    size_t n = 0;
    if (src)
        while (n < sizeof line - 1 && src[n]) line[n] = src[n], ++n;
    line[n] = 0;
    char* p = line;
    while (*p && nopts < MAX_OPTIONS) {
        while (*p == ' ' || *p == '\t' || *p == '\n') ++p;
        if (!*p) break;
        char* key = p;
        while (*p && *p != '=' && *p != ' ' && *p != '\t' && *p != '\n') ++p;
        char* value = "";
        if (*p == '=') {
            *p++ = 0;
            if (*p == '"') {
                value = ++p;
                while (*p && *p != '"') ++p;
            } else {
                value = p;
                while (*p && *p != ' ' && *p != '\t' && *p != '\n') ++p;
            }
        }
        if (*p) *p++ = 0;
        opts[nopts].key = key;
        opts[nopts].value = value;
        ++nopts;
    }
}

const char* nano_option(const char* key) {
    /* The last occurrence wins, so appended arguments override earlier ones. */
    for (size_t i = nopts; i-- > 0;)
        if (strcmp(opts[i].key, key) == 0) return opts[i].value;
    return 0;
}

uint64_t option_u64(const char* key, uint64_t dflt) {
    const char* v = nano_option(key);
    uint64_t x;
    if (!v || !*v) return dflt;
    size_t n = parse_u64(v, strlen(v), &x);
    if (n == 0) return dflt;
    /* Size suffixes: k, m, g (binary). */
    switch (v[n]) {
    case 'k': case 'K': x <<= 10; break;
    case 'm': case 'M': x <<= 20; break;
    case 'g': case 'G': x <<= 30; break;
    default: break;
    }
    return x;
}

int nano_parse_u64(const char* s, size_t n, uint64_t* out) {
    uint64_t v;
    if (n == 0 || parse_u64(s, n, &v) != n) return 0;
    *out = v;
    return 1;
}

int nano_option_num(const char* who, const char* key, uint64_t dflt, uint64_t min, uint64_t max, uint64_t* out) {
    const char* v = nano_option(key);
    *out = dflt;
    if (v && (!nano_parse_u64(v, strlen(v), out) || *out < min || *out > max)) {
        nano_printf("%s: bad option %s=%s (want a number from %llu to %llu)\n", who, key, v, (unsigned long long)min,
                    (unsigned long long)max);
        return -1;
    }
    return 0;
}

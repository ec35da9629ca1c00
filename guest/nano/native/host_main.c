/* The nano runtime API as an ordinary Linux process, for comparing a function's
 * fork+exec cost with a VM cold start: read the request from stdin, call the same
 * handler, write the response to stdout (exit 0) or the error text to stderr (exit 1).
 * Arguments are runtime options (key=value), as on the nano command line. */
#include <errno.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <kindling/nano.h>

static int g_argc;
static char** g_argv;

void* nano_malloc(size_t n) { return malloc(n); }
void* nano_calloc(size_t count, size_t n) { return calloc(count, n); }
void* nano_realloc(void* p, size_t n) { return realloc(p, n); }
void nano_free(void* p) { free(p); }

int nano_vprintf(const char* fmt, va_list ap) { return vfprintf(stderr, fmt, ap); }
int nano_printf(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(stderr, fmt, ap);
    va_end(ap);
    return n;
}
void nano_flush(void) { fflush(stderr); }
int nano_vsnprintf(char* buf, size_t size, const char* fmt, va_list ap) { return vsnprintf(buf, size, fmt, ap); }
int nano_snprintf(char* buf, size_t size, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

uint64_t nano_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void nano_random(void* buf, size_t n) {
    uint8_t* p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) abort();
        p += r;
        n -= (size_t)r;
    }
}

const char* nano_option(const char* key) {
    size_t k = strlen(key);
    for (int i = g_argc - 1; i >= 1; --i) {
        const char* a = g_argv[i];
        if (strncmp(a, key, k) == 0 && (a[k] == '=' || a[k] == 0)) return a[k] ? a + k + 1 : "";
    }
    return NULL;
}

void nano_exit(int status) {
    fflush(stdout);
    exit(status);
}

static int write_all(int fd, const uint8_t* p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char** argv) {
    g_argc = argc;
    g_argv = argv;
    size_t cap = 1 << 16, len = 0;
    uint8_t* req = malloc(cap);
    for (;;) {
        if (!req) {
            fprintf(stderr, "%s: out of memory reading the request\n", argv[0]);
            return 70;
        }
        ssize_t r = read(0, req + len, cap - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            fprintf(stderr, "%s: error: stdin: %s\n", argv[0], strerror(errno));
            return 74;
        }
        if (r == 0) break;
        len += (size_t)r;
        if (len == cap) req = realloc(req, cap *= 2);
    }
    if (nano_init) {
        int rc = nano_init();
        if (rc != 0) {
            fprintf(stderr, "%s: function init failed (status %d)\n", argv[0], rc);
            return rc > 0 && rc < 256 ? rc : 1;
        }
    }
    struct nano_response out = {0};
    int rc = handler(req, len, &out);
    if (out.failed == -1) {
        fprintf(stderr, "%s: error: out of memory building the response\n", argv[0]);
        return 1;
    }
    if (rc != 0 || out.failed) {
        if (out.failed) fprintf(stderr, "%s: error: %.*s\n", argv[0], (int)out.len, (const char*)out.data);
        else fprintf(stderr, "%s: error: function failed (status %d)\n", argv[0], rc);
        return 1;
    }
    if (write_all(1, out.data, out.len) != 0) {
        fprintf(stderr, "%s: error: stdout: %s\n", argv[0], strerror(errno));
        return 74;
    }
    return 0;
}

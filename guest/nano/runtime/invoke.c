/* The invoke protocol on the runtime's vsock port (kindling-nano(7)): line-framed so
 * a person with socat can drive it.
 *
 *   INVOKE <n>\n <n bytes>   ->  OK <m>\n <m bytes>    or  ERR <m>\n <error text>
 *   STATS\n                  ->  OK <m>\n <JSON counters>
 *   EXIT <status>\n          ->  OK 0\n, then the guest exits with <status>
 *   anything else            ->  ERR <m>\n <message>, and the connection is closed
 *
 * Blank lines between requests are ignored.  Requests on one connection are answered
 * in order; several connections are served side by side. */
#include "vsock.h"

#define LINE_MAX 128
#define KEEP_BUF_MAX (1u << 20) /* buffers above this are freed after each invoke */

enum { RD_LINE, RD_BODY, WRITING, CLOSED };

struct invoke_conn {
    uint8_t state;
    uint8_t close_after; /* bad request: close once the error is out */
    uint8_t exit_after;
    uint8_t exit_status;
    uint32_t line_len;
    char line[LINE_MAX];
    uint8_t* req;
    size_t req_len, req_got, req_cap;
    struct nano_response resp;
    char head[32];
    const uint8_t* out[2];
    size_t out_len[2];
    int out_i;
    size_t out_off;
};

static struct invoke_conn inv[VSOCK_MAX_CONNS];
static uint64_t max_request;

void invoke_init(void) { max_request = option_u64("max-request", 6u << 20); }

void app_accepted(struct vsock_conn* c) {
    struct invoke_conn* s = &inv[vsock_conn_index(c)];
    memset(s, 0, sizeof *s);
    s->state = RD_LINE;
}

void app_closed(struct vsock_conn* c) {
    struct invoke_conn* s = &inv[vsock_conn_index(c)];
    nano_free(s->req);
    nano_free(s->resp.buf);
    memset(s, 0, sizeof *s);
    s->state = CLOSED;
}

static void start_reply(struct invoke_conn* s, int ok, const uint8_t* body, size_t len) {
    int n = nano_snprintf(s->head, sizeof s->head, "%s %zu\n", ok ? "OK" : "ERR", len);
    s->out[0] = (const uint8_t*)s->head;
    s->out_len[0] = (size_t)n;
    s->out[1] = body;
    s->out_len[1] = len;
    s->out_i = 0;
    s->out_off = 0;
    s->state = WRITING;
    if (!ok) nano_stats.errors++;
}

/* Reply with an error text and close the connection afterwards. */
static void bad_request(struct invoke_conn* s, const char* fmt, ...) NANO_PRINTF(2, 3);
static void bad_request(struct invoke_conn* s, const char* fmt, ...) {
    static const char oom[] = "out of memory";
    struct nano_response* r = &s->resp;
    r->data = r->buf;
    r->len = 0;
    r->failed = 0;
    va_list ap;
    va_start(ap, fmt);
    int n = nano_vsnprintf(0, 0, fmt, ap);
    va_end(ap);
    if (n >= 0 && nano_reserve(r, (size_t)n + 1) == 0) {
        va_start(ap, fmt);
        nano_vsnprintf((char*)r->data, (size_t)n + 1, fmt, ap);
        va_end(ap);
        r->len = (size_t)n;
        start_reply(s, 0, r->data, r->len);
    } else {
        start_reply(s, 0, (const uint8_t*)oom, sizeof oom - 1);
    }
    s->close_after = 1;
}

static void run_handler(struct invoke_conn* s) {
    static const char oom[] = "out of memory building the response";
    nano_stats.invokes++;
    random_check_generation(); /* a restored clone must not repeat its parent's randomness */
    struct nano_response* r = &s->resp;
    r->data = r->buf;
    r->len = 0;
    r->failed = 0;
    int rc = handler(s->req, s->req_len, r);
    if (r->failed == -1) {
        start_reply(s, 0, (const uint8_t*)oom, sizeof oom - 1);
    } else if (r->failed) {
        start_reply(s, 0, r->data, r->len);
    } else if (rc != 0) {
        r->data = r->buf;
        r->len = 0;
        if (nano_appendf(r, "function failed (status %d)", rc) == 0) start_reply(s, 0, r->data, r->len);
        else start_reply(s, 0, (const uint8_t*)oom, sizeof oom - 1);
    } else {
        start_reply(s, 1, r->data, r->len);
    }
}

static void write_stats(struct invoke_conn* s) {
    struct nano_response* r = &s->resp;
    r->data = r->buf;
    r->len = 0;
    r->failed = 0;
    const struct nano_stats* t = &nano_stats;
    if (nano_appendf(r,
                     "{\"invokes\":%llu,\"errors\":%llu,\"connections\":%llu,\"waits\":%llu,"
                     "\"console_writes\":%llu,\"mmio_reads\":%llu,\"mmio_writes\":%llu,\"mmio_batches\":%llu,"
                     "\"reseeds\":%llu,\"transport_resets\":%llu,"
                     "\"ready_ns\":%llu,\"uptime_ns\":%llu,\"heap_free\":%zu}",
                     (unsigned long long)t->invokes, (unsigned long long)t->errors,
                     (unsigned long long)t->connections, (unsigned long long)t->waits,
                     (unsigned long long)t->console_writes, (unsigned long long)t->mmio_reads,
                     (unsigned long long)t->mmio_writes, (unsigned long long)t->mmio_batches,
                     (unsigned long long)t->reseeds, (unsigned long long)t->transport_resets,
                     (unsigned long long)t->ready_ns,
                     (unsigned long long)nano_now_ns(), heap_free_bytes()) != 0) {
        bad_request(s, "out of memory");
        return;
    }
    start_reply(s, 1, r->data, r->len);
}

/* "VERB <decimal>" with exactly one space and nothing after the number. */
static int parse_verb_num(const char* line, size_t len, const char* verb, uint64_t* n) {
    size_t v = strlen(verb);
    if (len < v + 2 || memcmp(line, verb, v) != 0 || line[v] != ' ') return 0;
    size_t digits = parse_u64(line + v + 1, len - v - 1, n);
    return digits > 0 && digits <= 20 && v + 1 + digits == len;
}

static void handle_line(struct invoke_conn* s) {
    char* line = s->line;
    size_t len = s->line_len;
    if (len > 0 && line[len - 1] == '\r') --len;
    line[len] = 0;
    if (len == 0) return; /* blank line: a person pressed enter once too often */
    uint64_t n;
    if (parse_verb_num(line, len, "INVOKE", &n)) {
        if (n > max_request) {
            bad_request(s, "request of %llu bytes is larger than the limit of %llu bytes", (unsigned long long)n,
                        (unsigned long long)max_request);
            return;
        }
        if (n > s->req_cap || !s->req) {
            nano_free(s->req);
            s->req_cap = 0;
            s->req = nano_malloc(n ? n : 1);
            if (!s->req) {
                bad_request(s, "out of memory for a request of %llu bytes", (unsigned long long)n);
                return;
            }
            s->req_cap = n;
        }
        s->req_len = n;
        s->req_got = 0;
        if (n == 0) run_handler(s);
        else s->state = RD_BODY;
    } else if (parse_verb_num(line, len, "EXIT", &n) && n <= 255) {
        s->exit_after = 1;
        s->exit_status = (uint8_t)n;
        start_reply(s, 1, 0, 0);
    } else if (len == 5 && memcmp(line, "STATS", 5) == 0) {
        write_stats(s);
    } else {
        /* Show the client what we got, but only printable ASCII and not too much. */
        for (size_t i = 0; i < len; ++i)
            if (line[i] < 0x20 || line[i] > 0x7e) line[i] = '?';
        bad_request(s, "bad request line '%.60s%s' (expected INVOKE <bytes>, EXIT <status> or STATS)", line,
                    len > 60 ? "..." : "");
    }
}

size_t app_received(struct vsock_conn* c, const uint8_t* p, size_t n) {
    struct invoke_conn* s = &inv[vsock_conn_index(c)];
    size_t used = 0;
    while (used < n && (s->state == RD_LINE || s->state == RD_BODY)) {
        if (s->state == RD_LINE) {
            size_t k = 0;
            while (used + k < n && p[used + k] != '\n') ++k;
            int complete = used + k < n;
            if (s->line_len + k > LINE_MAX - 1) {
                s->line_len = 0;
                bad_request(s, "request line longer than %u bytes", LINE_MAX - 2);
                return used;
            }
            memcpy(s->line + s->line_len, p + used, k);
            s->line_len += (uint32_t)k;
            used += k;
            if (complete) {
                ++used; /* the '\n' */
                handle_line(s);
                s->line_len = 0;
            }
        } else {
            size_t k = MIN(n - used, s->req_len - s->req_got);
            memcpy(s->req + s->req_got, p + used, k);
            s->req_got += k;
            used += k;
            if (s->req_got == s->req_len) run_handler(s);
        }
    }
    return used;
}

int app_waits_for_tx(const struct vsock_conn* c) {
    const struct invoke_conn* s = &inv[vsock_conn_index(c)];
    return s->state == WRITING && s->out_i == 2 && (c->ring_len > 0 || s->close_after || s->exit_after);
}

void app_pump(struct vsock_conn* c) {
    struct invoke_conn* s = &inv[vsock_conn_index(c)];
    for (int round = 0; round < 64 && c->state == VS_CONNECTED; ++round) {
        if (s->state == WRITING) {
            while (s->out_i < 2) {
                size_t left = s->out_len[s->out_i] - s->out_off;
                if (left) s->out_off += vsock_send(c, s->out[s->out_i] + s->out_off, left);
                if (s->out_off < s->out_len[s->out_i]) return; /* no credit or no slots yet */
                s->out_i++;
                s->out_off = 0;
            }
            /* Everything is queued; the buffers are ours again once the device used them. */
            if (!vsock_tx_idle(c)) return;
            if (s->exit_after) nano_exit(s->exit_status);
            if (s->close_after) {
                vsock_close(c);
                s->state = CLOSED;
                return;
            }
            if (s->req_cap > KEEP_BUF_MAX) {
                nano_free(s->req);
                s->req = 0;
                s->req_cap = 0;
            }
            if (s->resp.cap > KEEP_BUF_MAX) {
                nano_free(s->resp.buf);
                s->resp.buf = s->resp.data = 0;
                s->resp.cap = 0;
            }
            s->state = RD_LINE;
            vsock_rx_resume(c);
            continue; /* the staged input may hold the next request */
        }
        /* The peer stopped sending: once nothing is left to answer, close. */
        if ((c->peer_shutdown & 2 /* SEND */) && c->ring_len == 0 && (s->state == RD_LINE || s->state == RD_BODY)) {
            vsock_close(c);
            s->state = CLOSED;
        }
        return;
    }
}

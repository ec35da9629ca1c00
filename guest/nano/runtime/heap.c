/* The heap: a first-fit, address-ordered free list with coalescing over the RAM the
 * image and the stack leave free.  Small and predictable; pages are only touched
 * where block headers and user data land, so a large heap costs nothing until used
 * (each first touch of a page is a shadow-paging fault on PVM, ~13 us). */
#include "internal.h"

#define ALIGN 16u
#define HDR 16u                 /* block header: size, then next when free */
#define MIN_BLOCK (2u * HDR)

struct block {
    size_t size; /* bytes including the header; multiple of ALIGN */
    struct block* next;
};

static struct block* free_list; /* sorted by address */
static uint64_t heap_lo, heap_hi;

static size_t round_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }

void heap_init(uint64_t start, uint64_t end) {
    start = round_up(start, ALIGN);
    end &= ~(uint64_t)(ALIGN - 1);
    heap_lo = start;
    heap_hi = end;
    free_list = 0;
    if (end > start && end - start >= MIN_BLOCK) {
        free_list = (struct block*)(uintptr_t)start;
        free_list->size = end - start;
        free_list->next = 0;
    }
}

size_t heap_free_bytes(void) {
    size_t n = 0;
    for (struct block* b = free_list; b; b = b->next) n += b->size;
    return n;
}

void* heap_alloc_permanent(size_t n, size_t align) {
    /* Carve from the end of the highest free block, if it reaches the heap top. */
    struct block *b = free_list, *last = 0;
    for (; b; b = b->next) last = b;
    if (!last || (uint64_t)(uintptr_t)last + last->size != heap_hi) return 0;
    uint64_t lo = (uint64_t)(uintptr_t)last;
    if (heap_hi - lo < n + MIN_BLOCK) return 0;
    uint64_t p = (heap_hi - n) & ~(uint64_t)(align - 1);
    p &= ~(uint64_t)(ALIGN - 1);
    if (p < lo + MIN_BLOCK) return 0;
    last->size = p - lo;
    heap_hi = p;
    return (void*)(uintptr_t)p;
}

/* Blocks of 2 MiB or more start on a 2 MiB boundary, as Linux places large anonymous
 * mappings (THP alignment): a big table then lines up with huge pages and with the
 * 512 KiB chunks snapshots are stored in, so a working set made of runs of the table
 * is fetched in whole chunks rather than the halves of two. */
#define BIG_ALIGN (2u << 20)

void* nano_malloc(size_t n) {
    if (n > heap_hi - heap_lo) return 0;
    size_t need = round_up(n + HDR, ALIGN);
    if (need < MIN_BLOCK) need = MIN_BLOCK;
    size_t align = n >= BIG_ALIGN ? BIG_ALIGN : ALIGN;
    for (struct block **pp = &free_list, *b; (b = *pp); pp = &b->next) {
        /* The user pointer at the first aligned address that leaves either no gap
         * before the block or a gap big enough to stay a free block. */
        uint64_t at = (uint64_t)(uintptr_t)b;
        uint64_t user = round_up(at + HDR, align);
        while (user - HDR != at && user - HDR - at < MIN_BLOCK) user += align;
        size_t gap = user - HDR - at;
        if (b->size < gap || b->size - gap < need) continue;
        struct block* got = (struct block*)(uintptr_t)(user - HDR);
        size_t after = b->size - gap - need;
        struct block* next = b->next;
        if (after >= MIN_BLOCK) {
            struct block* rest = (struct block*)((char*)got + need);
            rest->size = after;
            rest->next = next;
            next = rest;
        } else {
            need += after;
        }
        if (gap) {
            b->size = gap; /* the front stays free, in place */
            b->next = next;
        } else {
            *pp = next;
        }
        got->size = need;
        return (char*)got + HDR;
    }
    return 0;
}

void nano_free(void* p) {
    if (!p) return;
    struct block* b = (struct block*)((char*)p - HDR);
    struct block *prev = 0, *cur = free_list;
    while (cur && cur < b) prev = cur, cur = cur->next;
    /* Merge with the following block. */
    if (cur && (char*)b + b->size == (char*)cur) {
        b->size += cur->size;
        b->next = cur->next;
    } else {
        b->next = cur;
    }
    /* Merge with the preceding block. */
    if (prev && (char*)prev + prev->size == (char*)b) {
        prev->size += b->size;
        prev->next = b->next;
    } else if (prev) {
        prev->next = b;
    } else {
        free_list = b;
    }
}

void* nano_calloc(size_t count, size_t n) {
    if (n && count > SIZE_MAX / n) return 0;
    void* p = nano_malloc(count * n);
    if (p) memset(p, 0, count * n);
    return p;
}

void* nano_realloc(void* p, size_t n) {
    if (!p) return nano_malloc(n);
    if (n == 0) {
        nano_free(p);
        return 0;
    }
    if (n > heap_hi - heap_lo) return 0;
    struct block* b = (struct block*)((char*)p - HDR);
    size_t need = round_up(n + HDR, ALIGN);
    if (need < MIN_BLOCK) need = MIN_BLOCK;
    if (b->size >= need) return p;
    /* Grow in place into a free block right behind this one. */
    for (struct block **pp = &free_list, *f; (f = *pp); pp = &f->next) {
        if ((char*)f > (char*)b + b->size) break;
        if ((char*)f != (char*)b + b->size) continue;
        if (b->size + f->size < need) break;
        size_t total = b->size + f->size;
        if (total - need >= MIN_BLOCK) {
            struct block* rest = (struct block*)((char*)b + need);
            rest->size = total - need;
            rest->next = f->next;
            *pp = rest;
            b->size = need;
        } else {
            *pp = f->next;
            b->size = total;
        }
        return p;
    }
    void* q = nano_malloc(n);
    if (!q) return 0;
    memcpy(q, p, b->size - HDR);
    nano_free(p);
    return q;
}

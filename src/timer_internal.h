/* Timers (timer.c): the loop's timer heap.
 * Internal: nothing here is part of the public API. */
#ifndef CIO_TIMER_INTERNAL_H
#define CIO_TIMER_INTERNAL_H

#include "base_internal.h"

/* ---- timers (timer.c): intrusive pairing heap keyed by (when, seq) ------ */
typedef struct cio__timer_heap {
    cio__timer *root;        /* the earliest timer, or NULL */
    size_t len;              /* timers armed */
    uint64_t next_seq;
} cio__timer_heap;

void cio__timer_init(cio__timer *t, void (*fn)(cio__timer *));
static inline bool cio__timer_armed(const cio__timer *t) { return t->armed; }
/* Arm (or re-arm) t at `when`. Never allocates, never fails: the heap's
 * links live in t. */
void cio__timer_start(cio__timer_heap *h, cio__timer *t, int64_t when);
void cio__timer_stop(cio__timer_heap *h, cio__timer *t);
static inline cio__timer *cio__timer_min(const cio__timer_heap *h)
{
    return h->root;
}
/* Disarm every timer (loop close). */
void cio__timer_heap_free(cio__timer_heap *h);

#endif

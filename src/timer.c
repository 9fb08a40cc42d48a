/* Timers: a binary min-heap ordered by (deadline, arming sequence), so that
 * equal deadlines fire in the order they were armed. Each timer knows its
 * heap index, which makes stop O(log n). The keys are copied into the heap
 * array (struct cio__timer_slot), so that sifting compares without
 * dereferencing the timers, which live on as many different task stacks. */
#include "cio_internal.h"

#include <stdint.h>

typedef struct cio__timer_slot slot;

static inline bool slot_less(const slot *a, const slot *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static inline void heap_set(cio__timer_heap *h, size_t i, slot s)
{
    h->items[i] = s;
    s.t->heap_index = i;
}

static void sift_up(cio__timer_heap *h, size_t i)
{
    slot s = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!slot_less(&s, &h->items[parent]))
            break;
        heap_set(h, i, h->items[parent]);
        i = parent;
    }
    heap_set(h, i, s);
}

static void sift_down(cio__timer_heap *h, size_t i)
{
    slot s = h->items[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->len)
            break;
        if (child + 1 < h->len && slot_less(&h->items[child + 1], &h->items[child]))
            child++;
        if (!slot_less(&h->items[child], &s))
            break;
        heap_set(h, i, h->items[child]);
        i = child;
    }
    heap_set(h, i, s);
}

void cio__timer_init(cio__timer *t, void (*fn)(cio__timer *))
{
    t->when = 0;
    t->seq = 0;
    t->heap_index = SIZE_MAX;
    t->fn = fn;
}

int cio__timer_start(cio__timer_heap *h, cio__timer *t, int64_t when)
{
    if (cio__timer_armed(t))
        cio__timer_stop(h, t);
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        slot *items = realloc(h->items, cap * sizeof *items);
        if (!items)
            return -ENOMEM;
        h->items = items;
        h->cap = cap;
    }
    t->when = when;
    t->seq = h->next_seq++;
    h->items[h->len] = (slot){when, t->seq, t};
    t->heap_index = h->len++;
    sift_up(h, t->heap_index);
    return 0;
}

void cio__timer_stop(cio__timer_heap *h, cio__timer *t)
{
    size_t i = t->heap_index;
    if (i == SIZE_MAX)
        return;
    t->heap_index = SIZE_MAX;
    slot last = h->items[--h->len];
    if (i == h->len)
        return;
    heap_set(h, i, last);
    if (i > 0 && slot_less(&last, &h->items[(i - 1) / 2]))
        sift_up(h, i);
    else
        sift_down(h, i);
}

void cio__timer_heap_free(cio__timer_heap *h)
{
    for (size_t i = 0; i < h->len; i++)
        h->items[i].t->heap_index = SIZE_MAX;
    free(h->items);
    h->items = NULL;
    h->len = h->cap = 0;
}

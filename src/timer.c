/* Timers: an intrusive pairing heap ordered by (deadline, arming sequence),
 * so that equal deadlines fire in the order they were armed. The links live
 * in the timer itself (in a scope, a sleep's frame, a handle), so arming
 * never allocates and never fails: a deadline can always be set, whatever
 * the memory situation.
 *
 * Each node keeps its first child, its next sibling and `prev`: the
 * previous sibling, or the parent for a first child (NULL for the root).
 * Insert is one comparison with the root; removing the minimum melds the
 * root's children in two passes (left to right by pairs, then right to
 * left), O(log n) amortized; removing another node cuts it out of its
 * sibling list and melds its children back under the root. */
#include "timer_internal.h"

static inline bool timer_less(const cio__timer *a, const cio__timer *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

/* Two roots become one: the greater becomes the first child of the lesser,
 * which is returned (its own next/prev are the caller's business). */
static inline cio__timer *meld(cio__timer *a, cio__timer *b)
{
    if (timer_less(b, a)) {
        cio__timer *t = a;
        a = b;
        b = t;
    }
    b->prev = a;
    b->next = a->child;
    if (a->child)
        a->child->prev = b;
    a->child = b;
    return a;
}

/* Meld a sibling list (the children of a removed node) into one tree and
 * return its root. Iterative: the first pass melds pairs from the left and
 * stacks the results (through `next`, so the last pair is on top); the
 * second melds the stack into one tree from the right. */
static cio__timer *merge_siblings(cio__timer *first)
{
    cio__timer *stack = NULL;
    while (first) {
        cio__timer *a = first, *b = a->next;
        if (!b) {
            a->next = stack;
            stack = a;
            break;
        }
        first = b->next;
        cio__timer *m = meld(a, b);
        m->next = stack;
        stack = m;
    }
    cio__timer *root = stack;
    stack = stack->next;
    while (stack) {
        cio__timer *n = stack;
        stack = n->next;
        root = meld(root, n);
    }
    root->next = root->prev = NULL;
    return root;
}

void cio__timer_init(cio__timer *t, void (*fn)(cio__timer *))
{
    t->when = 0;
    t->seq = 0;
    t->child = t->next = t->prev = NULL;
    t->armed = false;
    t->fn = fn;
}

void cio__timer_start(cio__timer_heap *h, cio__timer *t, int64_t when)
{
    if (t->armed)
        cio__timer_stop(h, t);
    t->when = when;
    t->seq = h->next_seq++;
    t->child = t->next = t->prev = NULL;
    t->armed = true;
    h->root = h->root ? meld(h->root, t) : t;
    h->root->prev = NULL; /* t, if it became the root; else unchanged */
    h->len++;
}

void cio__timer_stop(cio__timer_heap *h, cio__timer *t)
{
    if (!t->armed)
        return;
    t->armed = false;
    h->len--;
    if (t == h->root) {
        h->root = t->child ? merge_siblings(t->child) : NULL;
        return;
    }
    /* Cut t (with its subtree) out of its sibling list. */
    if (t->prev->child == t)
        t->prev->child = t->next; /* first child: prev is the parent */
    else
        t->prev->next = t->next;
    if (t->next)
        t->next->prev = t->prev;
    /* Its children are all >= the root: they go back under it. */
    if (t->child)
        h->root = meld(h->root, merge_siblings(t->child));
}

void cio__timer_heap_free(cio__timer_heap *h)
{
    while (h->root)
        cio__timer_stop(h, h->root);
}

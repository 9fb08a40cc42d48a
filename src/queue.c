/* Queues: FIFO (ring buffer), LIFO (stack) and priority (binary heap, FIFO
 * among equal items), bounded or unbounded, with task_done/join and
 * Python 3.13's shutdown.
 *
 * Invariants (between calls):
 *   - a live getter waits only while the buffer is empty: put hands its item
 *     straight to the longest-waiting live getter;
 *   - a live putter waits only while a bounded queue is full: every get
 *     refills the slot it freed from the longest-waiting live putter.
 * Items move only together with a successful cio__task_wake, so an item is
 * always in exactly one place: the buffer, a getter that was woken with it,
 * or the putter that still holds it. */
#include "cio_internal.h"
#include "cio/sync.h"

#include <string.h>

#define QUEUE_MAGIC 0x9e9e9e9eu
#define INITIAL_CAP 16

typedef struct pq_entry {
    void *item;
    uint64_t seq;
} pq_entry;

static size_t elem_size(const cio_queue *q)
{
    return q->kind == CIO_QUEUE_PRIORITY ? sizeof(pq_entry) : sizeof(void *);
}

int cio_queue_init(cio_queue *q, const cio_queue_options *opts)
{
    static const cio_queue_options defaults;
    memset(q, 0, sizeof *q);
    if (!opts)
        opts = &defaults;
    if (opts->kind != CIO_QUEUE_FIFO && opts->kind != CIO_QUEUE_LIFO &&
        opts->kind != CIO_QUEUE_PRIORITY)
        return -EINVAL;
    if (opts->kind == CIO_QUEUE_PRIORITY && !opts->cmp)
        return -EINVAL;
    q->kind = opts->kind;
    q->maxsize = opts->maxsize;
    q->cmp = opts->cmp;
    q->item_free = opts->item_free;
    q->ctx = opts->ctx;
    q->cap = q->maxsize ? q->maxsize : INITIAL_CAP;
    if (q->cap > SIZE_MAX / elem_size(q))
        return -ENOMEM;
    q->buf = malloc(q->cap * elem_size(q));
    if (!q->buf)
        return -ENOMEM;
    cio__list_init(&q->getters);
    cio__list_init(&q->putters);
    cio__list_init(&q->joiners);
    q->magic = QUEUE_MAGIC;
    return 0;
}

/* ---- the buffer ------------------------------------------------------------- */

static bool pq_before(const cio_queue *q, const pq_entry *a, const pq_entry *b)
{
    int c = q->cmp(a->item, b->item, q->ctx);
    return c < 0 || (c == 0 && a->seq < b->seq);
}

/* Requires len < cap. */
static void buf_push(cio_queue *q, void *item)
{
    if (q->kind == CIO_QUEUE_FIFO) {
        void **items = q->buf;
        size_t i = q->head + q->len;
        if (i >= q->cap)
            i -= q->cap;
        items[i] = item;
    } else if (q->kind == CIO_QUEUE_LIFO) {
        void **items = q->buf;
        items[q->len] = item;
    } else {
        pq_entry *h = q->buf;
        pq_entry e = {item, q->seq++};
        size_t i = q->len;
        while (i > 0) {
            size_t parent = (i - 1) / 2;
            if (!pq_before(q, &e, &h[parent]))
                break;
            h[i] = h[parent];
            i = parent;
        }
        h[i] = e;
    }
    q->len++;
}

/* Requires len > 0. */
static void *buf_pop(cio_queue *q)
{
    void *item;
    if (q->kind == CIO_QUEUE_FIFO) {
        void **items = q->buf;
        item = items[q->head];
        if (++q->head == q->cap)
            q->head = 0;
        q->len--;
    } else if (q->kind == CIO_QUEUE_LIFO) {
        void **items = q->buf;
        item = items[--q->len];
    } else {
        pq_entry *h = q->buf;
        item = h[0].item;
        pq_entry last = h[--q->len];
        size_t n = q->len, i = 0;
        for (;;) {
            size_t c = 2 * i + 1;
            if (c >= n)
                break;
            if (c + 1 < n && pq_before(q, &h[c + 1], &h[c]))
                c++;
            if (!pq_before(q, &h[c], &last))
                break;
            h[i] = h[c];
            i = c;
        }
        if (n)
            h[i] = last;
    }
    return item;
}

/* Unbounded queues only: double the buffer. */
static int buf_grow(cio_queue *q)
{
    size_t es = elem_size(q);
    if (q->cap > SIZE_MAX / 2 / es)
        return -ENOMEM;
    size_t ncap = q->cap * 2;
    void *nb = realloc(q->buf, ncap * es);
    if (!nb)
        return -ENOMEM;
    if (q->kind == CIO_QUEUE_FIFO && q->head + q->len > q->cap) {
        /* Unwrap: the part that wrapped around to the start goes right
         * after the old end (it is shorter than the old capacity). */
        void **items = nb;
        size_t wrapped = q->head + q->len - q->cap;
        memcpy(items + q->cap, items, wrapped * sizeof *items);
    }
    q->buf = nb;
    q->cap = ncap;
    return 0;
}

/* Hand every item in the buffer to item_free (if any) and empty it. Returns
 * how many there were. */
static size_t buf_drop_all(cio_queue *q)
{
    size_t n = q->len;
    for (size_t k = 0; k < n; k++) {
        void *item;
        if (q->kind == CIO_QUEUE_FIFO) {
            size_t i = q->head + k;
            if (i >= q->cap)
                i -= q->cap;
            item = ((void **)q->buf)[i];
        } else if (q->kind == CIO_QUEUE_LIFO) {
            item = ((void **)q->buf)[k];
        } else {
            item = ((pq_entry *)q->buf)[k].item;
        }
        if (q->item_free)
            q->item_free(item, q->ctx);
    }
    q->len = 0;
    q->head = 0;
    return n;
}

/* ---- moving items ----------------------------------------------------------- */

/* Place an item without waiting: to a waiting getter, else into the
 * buffer. Returns 0, -EAGAIN (full) or -ENOMEM. */
static int offer(cio_queue *q, void *item)
{
    cio__waiter *g = cio__waiters_wake_one(&q->getters, 0);
    if (g) {
        g->item = item;
        q->unfinished++;
        return 0;
    }
    if (q->maxsize && q->len >= q->maxsize)
        return -EAGAIN;
    if (q->len == q->cap) {
        int rc = buf_grow(q);
        if (rc)
            return rc;
    }
    buf_push(q, item);
    q->unfinished++;
    return 0;
}

/* Take an item without waiting, refilling the freed slot from a waiting
 * putter. Returns 0 or -EAGAIN (empty). */
static int take(cio_queue *q, void **item)
{
    if (q->len == 0)
        return -EAGAIN;
    *item = buf_pop(q);
    cio__waiter *p = cio__waiters_wake_one(&q->putters, 0);
    if (p) {
        buf_push(q, p->item); /* the slot just freed */
        q->unfinished++;
    }
    return 0;
}

static bool valid(const cio_queue *q) { return q && q->magic == QUEUE_MAGIC; }

int cio_queue_put_site(cio_queue *q, void *item, const char *file, int line,
                       const char *func)
{
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (CIO__UNLIKELY(rc))
        return rc;
    if (CIO__UNLIKELY(!valid(q)))
        return -EINVAL;
    if (q->shutdown)
        return -ESHUTDOWN;
    rc = offer(q, item);
    if (rc != -EAGAIN)
        return rc;
    cio__waiter w;
    w.item = item;
    /* 0: a getter moved our item into the queue; < 0 (cancelled, shut
     * down): the item is still ours. */
    return cio__waiter_park(&q->putters, &w, self);
}

int cio_queue_get_site(cio_queue *q, void **item, const char *file, int line,
                       const char *func)
{
    cio_task *self;
    if (item)
        *item = NULL;
    int rc = cio__suspend_check(&self, file, line, func);
    if (CIO__UNLIKELY(rc))
        return rc;
    if (CIO__UNLIKELY(!valid(q) || !item))
        return -EINVAL;
    if (take(q, item) == 0)
        return 0;
    if (q->shutdown)
        return -ESHUTDOWN;
    cio__waiter w;
    w.item = NULL;
    rc = cio__waiter_park(&q->getters, &w, self);
    if (rc == 0)
        *item = w.item; /* handed over by a put */
    return rc;
}

int cio_queue_put_nowait(cio_queue *q, void *item)
{
    if (!valid(q))
        return -EINVAL;
    if (q->shutdown)
        return -ESHUTDOWN;
    return offer(q, item);
}

int cio_queue_get_nowait(cio_queue *q, void **item)
{
    if (item)
        *item = NULL;
    if (!valid(q) || !item)
        return -EINVAL;
    if (take(q, item) == 0)
        return 0;
    return q->shutdown ? -ESHUTDOWN : -EAGAIN;
}

/* ---- task_done / join ------------------------------------------------------- */

int cio_queue_task_done(cio_queue *q)
{
    if (!valid(q))
        return -EINVAL;
    if (q->unfinished == 0)
        return -EOVERFLOW;
    if (--q->unfinished == 0)
        cio__waiters_wake_all(&q->joiners, 0);
    return 0;
}

int cio_queue_join_site(cio_queue *q, const char *file, int line, const char *func)
{
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc)
        return rc;
    if (!valid(q))
        return -EINVAL;
    if (q->unfinished == 0)
        return 0;
    cio__waiter w;
    return cio__waiter_park(&q->joiners, &w, self);
}

/* ---- shutdown, destroy, queries -------------------------------------------------- */

void cio_queue_shutdown(cio_queue *q, bool immediate)
{
    if (!valid(q))
        return;
    q->shutdown = true;
    if (immediate && q->len) {
        size_t dropped = buf_drop_all(q);
        q->unfinished = dropped < q->unfinished ? q->unfinished - dropped : 0;
        if (q->unfinished == 0)
            cio__waiters_wake_all(&q->joiners, 0);
    }
    /* A live getter waits only on an empty queue: nothing left for it. */
    cio__waiters_wake_all(&q->getters, -ESHUTDOWN);
    cio__waiters_wake_all(&q->putters, -ESHUTDOWN);
}

int cio_queue_destroy(cio_queue *q)
{
    if (!valid(q))
        return -EINVAL;
    if (cio__waiters_purge(&q->getters) + cio__waiters_purge(&q->putters) +
        cio__waiters_purge(&q->joiners))
        return -EBUSY;
    buf_drop_all(q);
    free(q->buf);
    q->buf = NULL;
    q->magic = 0;
    cio__object_forget(q);
    return 0;
}

size_t cio_queue_size(const cio_queue *q) { return q->len; }
size_t cio_queue_maxsize(const cio_queue *q) { return q->maxsize; }
bool cio_queue_empty(const cio_queue *q) { return q->len == 0; }
bool cio_queue_full(const cio_queue *q) { return q->maxsize && q->len >= q->maxsize; }
bool cio_queue_is_shutdown(const cio_queue *q) { return q->shutdown; }
size_t cio_queue_unfinished(const cio_queue *q) { return q->unfinished; }

/* ---- statistics ----------------------------------------------------------- */

size_t cio_queue_n_waiting_get(const cio_queue *q) { return cio__waiters_count(&q->getters); }

size_t cio_queue_n_waiting_put(const cio_queue *q) { return cio__waiters_count(&q->putters); }

size_t cio_queue_n_waiting_join(const cio_queue *q) { return cio__waiters_count(&q->joiners); }

/* Entering a loop from other threads: call_soon_threadsafe and the
 * external-work count. A foreign thread appends to a mutex-protected queue
 * and writes the loop's eventfd; the loop drains the queue from its own
 * thread, in FIFO order, when the eventfd fires.
 *
 * Loop close drains the queue until a drain finds it empty, and seals it
 * under the same lock the callers queue under (cio__threadsafe_seal): a call
 * is either queued before the seal, and then run, or refused after it.
 * Nothing accepted is dropped.
 *
 * A call's node is allocated by cio_call_soon_threadsafe, or provided by
 * the library inside the object it concerns (the executor's completions:
 * cio__call_soon_threadsafe_node), so that posting it cannot fail for want
 * of memory. */
#include "cio_internal.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef cio__ts_call ts_call;

struct cio__threadsafe {
    pthread_mutex_t lock;
    ts_call *head, *tail;     /* under lock */
    atomic_bool pending;      /* something was queued since the last drain */
    bool closed;              /* under lock: refuse new calls */
    cio__io_watch watch;      /* the eventfd, persistent */
    cio_loop *loop;
};

/* Run what is queued; returns true if anything was. */
static bool drain_queue(cio__threadsafe *ts)
{
    uint64_t count;
    while (read(ts->watch.fd, &count, sizeof count) > 0)
        ;
    atomic_store_explicit(&ts->pending, false, memory_order_relaxed);
    pthread_mutex_lock(&ts->lock);
    ts_call *c = ts->head;
    ts->head = ts->tail = NULL;
    pthread_mutex_unlock(&ts->lock);
    bool ran = c != NULL;
    while (c) {
        ts_call *next = c->next;
        bool owned = c->owned; /* a provided node may be freed by fn */
        c->fn(c->arg);
        if (owned)
            free(c);
        c = next;
    }
    return ran;
}

static void drain(cio__io_watch *w)
{
    drain_queue(CIO__CONTAINER(w, cio__threadsafe, watch));
}

int cio__threadsafe_open(cio_loop *loop)
{
    cio__threadsafe *ts = calloc(1, sizeof *ts);
    if (!ts)
        return -ENOMEM;
    pthread_mutex_init(&ts->lock, NULL);
    ts->loop = loop;
    ts->watch.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ts->watch.fd < 0) {
        int rc = -errno;
        pthread_mutex_destroy(&ts->lock);
        free(ts);
        return rc;
    }
    ts->watch.events = CIO_READABLE;
    ts->watch.fn = drain;
    ts->watch.persistent = true;
    int rc = cio__backend_watch(loop->backend, &ts->watch);
    if (rc) {
        close(ts->watch.fd);
        pthread_mutex_destroy(&ts->lock);
        free(ts);
        return rc;
    }
    loop->threadsafe = ts;
    loop->threadsafe_pending = &ts->pending;
    return 0;
}

void cio__threadsafe_close(cio_loop *loop)
{
    cio__threadsafe *ts = loop->threadsafe;
    if (!ts)
        return;
    pthread_mutex_lock(&ts->lock);
    ts->closed = true;
    ts_call *c = ts->head;
    ts->head = ts->tail = NULL;
    pthread_mutex_unlock(&ts->lock);
    while (c) { /* none: close seals the queue only once it is empty */
        ts_call *next = c->next;
        if (c->owned)
            free(c);
        c = next;
    }
    int fd = ts->watch.fd;
    cio__backend_unwatch(loop->backend, &ts->watch);
    close(fd);
    pthread_mutex_destroy(&ts->lock);
    free(ts);
    loop->threadsafe = NULL;
    loop->threadsafe_pending = NULL;
}

bool cio__threadsafe_drain(cio_loop *loop)
{
    return loop->threadsafe && drain_queue(loop->threadsafe);
}

void cio__threadsafe_wait(cio_loop *loop)
{
    cio__threadsafe *ts = loop->threadsafe;
    if (!ts)
        return;
    struct pollfd pfd = {.fd = ts->watch.fd, .events = POLLIN};
    while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
        ;
    drain_queue(ts);
}

void cio__threadsafe_wake(cio_loop *loop)
{
    uint64_t one = 1;
    ssize_t n = write(loop->threadsafe->watch.fd, &one, sizeof one);
    (void)n; /* EAGAIN: the counter is saturated, the loop wakes anyway */
}

bool cio__threadsafe_seal(cio_loop *loop)
{
    cio__threadsafe *ts = loop->threadsafe;
    if (!ts)
        return true;
    pthread_mutex_lock(&ts->lock);
    bool empty = ts->head == NULL;
    if (empty)
        ts->closed = true;
    pthread_mutex_unlock(&ts->lock);
    return empty;
}

/* Queue c (filled in) and wake the loop. Returns 0 or -ESHUTDOWN. */
static int post(cio__threadsafe *ts, ts_call *c)
{
    pthread_mutex_lock(&ts->lock);
    if (ts->closed) {
        pthread_mutex_unlock(&ts->lock);
        return -ESHUTDOWN;
    }
    if (ts->tail)
        ts->tail->next = c;
    else
        ts->head = c;
    ts->tail = c;
    atomic_store_explicit(&ts->pending, true, memory_order_relaxed);
    /* Written under the lock so that close cannot free the eventfd between
     * the queueing and the wake-up. */
    uint64_t one = 1;
    ssize_t n = write(ts->watch.fd, &one, sizeof one);
    (void)n; /* EAGAIN: the counter is saturated, the loop wakes anyway */
    pthread_mutex_unlock(&ts->lock);
    return 0;
}

int cio_call_soon_threadsafe(cio_loop *loop, cio_callback_fn fn, void *arg)
{
    if (!loop || !fn)
        return -EINVAL;
    cio__threadsafe *ts = loop->threadsafe;
    if (!ts)
        return -ESHUTDOWN; /* the loop has finished closing */
    ts_call *c = malloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    *c = (ts_call){.fn = fn, .arg = arg, .owned = true};
    int rc = post(ts, c);
    if (rc)
        free(c);
    return rc;
}

int cio__call_soon_threadsafe_node(cio_loop *loop, cio__ts_call *c,
                                   cio_callback_fn fn, void *arg)
{
    cio__threadsafe *ts = loop->threadsafe;
    if (!ts)
        return -ESHUTDOWN;
    *c = (ts_call){.fn = fn, .arg = arg, .owned = false};
    return post(ts, c);
}

void cio_loop_external_ref(cio_loop *loop)
{
    loop->n_external++;
    cio__sched_work(loop);
}

void cio_loop_external_unref(cio_loop *loop)
{
    if (loop->n_external > 0)
        loop->n_external--;
}

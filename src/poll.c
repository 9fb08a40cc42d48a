/* Callback fd watches (include/cio/poll.h): a persistent, level-triggered
 * backend watch per cio_poll, its events handed to the user's callback.
 *
 * Stopping inside a callback: the backend dispatches a whole batch of
 * events after one wait, and a later event of the batch may name a watch
 * that an earlier callback stopped. So cio_poll_stop only unregisters and
 * marks the watch; the memory goes on the loop's list of stopped watches,
 * freed right after the batch (cio__poll_reap, from the loop's poll step)
 * or at loop close, and an event for a stopped watch is dropped.
 *
 * The fd layer (fd.c) and a cio_poll cannot share a descriptor: the
 * backend holds one registration per descriptor, edge-triggered with a
 * tag for the fd layer, level-triggered with a pointer here. fd.c keeps
 * a `polled` mark per slot and each side refuses the other with -EBUSY
 * (cio__fd_poll_claim). */
#include "cio_internal.h"

#include "cio/poll.h"

#include <fcntl.h>

_Static_assert(CIO_POLL_ERROR == CIO__FD_ERROR && CIO_POLL_HANGUP == CIO__FD_HUP,
               "the public poll bits are the backend's");

struct cio_poll {
    cio__io_watch watch; /* watch.fd is -1 while nothing is registered */
    cio_loop *loop;
    int fd;
    unsigned events;
    bool stopped;
    bool weak;         /* counted in n_weak_watches, not n_io_watches */
    cio_poll_fn fn;
    void *arg;
    cio_poll *prev, *next; /* loop->polls (started) or loop->poll_zombies */
};

static void dispatch(cio__io_watch *w)
{
    cio_poll *p = CIO__CONTAINER(w, cio_poll, watch);
    if (p->stopped)
        return;
    unsigned ready = w->revents & (p->events | CIO_POLL_ERROR | CIO_POLL_HANGUP);
    if (ready & (CIO_POLL_ERROR | CIO_POLL_HANGUP))
        ready |= p->events; /* a read / write now returns the error or the end */
    if (ready)
        p->fn(p, ready, p->arg);
}

static void list_add(cio_poll **head, cio_poll *p)
{
    p->prev = NULL;
    p->next = *head;
    if (*head)
        (*head)->prev = p;
    *head = p;
}

static void list_del(cio_poll **head, cio_poll *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        *head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

/* Register p's events with the backend (none: leave it unregistered). */
static int arm(cio_poll *p)
{
    p->watch.fd = -1;
    if (!p->events)
        return 0;
    p->watch.fd = p->fd;
    p->watch.events = p->events;
    int rc = cio__backend_watch(p->loop->backend, &p->watch);
    if (rc)
        p->watch.fd = -1;
    return rc;
}

static void poll_close_all(cio_loop *loop);

int cio_poll_start(cio_poll **out, int fd, unsigned events, cio_poll_fn fn, void *arg)
{
    if (out)
        *out = NULL;
    if (!out || fd < 0 || !fn || (events & ~(CIO_READABLE | CIO_WRITABLE)))
        return -EINVAL;
    cio_loop *loop = cio__tls_loop;
    if (!loop || loop->closed)
        return -EPERM;
    if (fcntl(fd, F_GETFD) < 0)
        return -EBADF;
    cio_poll *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    int rc = cio__fd_poll_claim(loop, fd, true);
    if (rc) {
        free(p);
        return rc;
    }
    p->loop = loop;
    p->fd = fd;
    p->events = events;
    p->fn = fn;
    p->arg = arg;
    p->watch.fn = dispatch;
    p->watch.persistent = true;
    rc = arm(p);
    if (rc) {
        cio__fd_poll_claim(loop, fd, false);
        free(p);
        return rc == -EEXIST ? -EBUSY : rc;
    }
    /* Registered after the fd table's (the claim above made it), so the
     * watches are stopped before the table is freed (last first). */
    cio__loop_on_close(loop, poll_close_all);
    list_add(&loop->polls, p);
    loop->n_io_watches++; /* its callback can wake the loop */
    cio__sched_work(loop);
    *out = p;
    return 0;
}

int cio_poll_change(cio_poll *p, unsigned events)
{
    if (!p || p->stopped || (events & ~(CIO_READABLE | CIO_WRITABLE)))
        return -EINVAL;
    if (events == p->events)
        return 0;
    p->events = events;
    int rc;
    if (events && p->watch.fd >= 0) {
        p->watch.events = events; /* (libcurl changes events often: one call) */
        rc = cio__backend_rewatch(p->loop->backend, &p->watch);
    } else {
        cio__backend_unwatch(p->loop->backend, &p->watch);
        rc = arm(p);
    }
    if (rc)
        p->events = 0;
    return rc;
}

int cio_poll_fd(const cio_poll *p)
{
    return p ? p->fd : -EINVAL;
}

unsigned cio_poll_events(const cio_poll *p)
{
    return p ? p->events : 0;
}

static void stop(cio_loop *loop, cio_poll *p)
{
    cio__backend_unwatch(loop->backend, &p->watch);
    cio__fd_poll_claim(loop, p->fd, false);
    p->stopped = true;
    list_del(&loop->polls, p);
    if (p->weak)
        loop->n_weak_watches--;
    else
        loop->n_io_watches--;
}

void cio__poll_weaken(cio_poll *p)
{
    if (p->stopped || p->weak)
        return;
    p->weak = true;
    p->loop->n_io_watches--;
    p->loop->n_weak_watches++;
}

void cio_poll_stop(cio_poll *p)
{
    if (!p || p->stopped)
        return;
    cio_loop *loop = p->loop;
    stop(loop, p);
    list_add(&loop->poll_zombies, p);
}

void cio__poll_reap(cio_loop *loop)
{
    cio_poll *p;
    while ((p = loop->poll_zombies)) {
        list_del(&loop->poll_zombies, p);
        free(p);
    }
}

/* Loop close: stop and free every watch. */
static void poll_close_all(cio_loop *loop)
{
    cio_poll *p;
    while ((p = loop->polls)) {
        stop(loop, p);
        free(p);
    }
    cio__poll_reap(loop);
}

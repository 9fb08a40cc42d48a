/* The epoll backend. The loop sees the backend through the cio__backend_*
 * calls in cio_internal.h and nothing else: the backend owns its state
 * (struct cio__backend), knows nothing of the loop, the fd layer or tasks,
 * and hands every event back through a function it was given (the fd
 * layer's at open, a watch's own). Another backend (io_uring, poll)
 * replaces this file, not the loop; CMakeLists.txt links exactly one.
 *
 * Two kinds of registration share the epoll set:
 *  - watches (cio__io_watch): the loop's own descriptors (the eventfd, the
 *    signalfd), level-triggered and persistent, or one-shot; the event's
 *    data is the watch pointer (8-aligned: low bit 0);
 *  - descriptors of the fd layer (fd.c): edge-triggered for reading and
 *    writing, registered once; the event's data is (generation << 32) |
 *    (fd << 1) | 1, never a pointer, so that a registration the kernel
 *    keeps for a descriptor closed behind our back cannot reach memory
 *    that was freed or reused. */
#include "backend_internal.h"

#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

struct cio__backend {
    int epfd;
    cio__backend_fd_fn on_fd; /* the fd layer's events go here */
    void *ctx;
};

int cio__backend_open(cio__backend **out, cio__backend_fd_fn on_fd, void *ctx)
{
    *out = NULL;
    cio__backend *b = malloc(sizeof *b);
    if (!b)
        return -ENOMEM;
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (b->epfd < 0) {
        int rc = -errno;
        free(b);
        return rc;
    }
    b->on_fd = on_fd;
    b->ctx = ctx;
    *out = b;
    return 0;
}

void cio__backend_close(cio__backend *b)
{
    if (!b)
        return;
    close(b->epfd);
    free(b);
}

/* The fd layer's readiness bits as epoll event bits, and back. */
static uint32_t to_epoll(unsigned events)
{
    return (events & CIO_READABLE ? EPOLLIN : 0) | (events & CIO_WRITABLE ? EPOLLOUT : 0);
}

static unsigned from_epoll(uint32_t e)
{
    unsigned ready = 0;
    if (e & (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
        ready |= CIO_READABLE;
    if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
        ready |= CIO_WRITABLE;
    if (e & EPOLLPRI)
        ready |= CIO__FD_URGENT;
    if (e & EPOLLRDHUP)
        ready |= CIO__FD_RDHUP;
    if (e & EPOLLERR)
        ready |= CIO__FD_ERROR;
    if (e & (EPOLLHUP | EPOLLRDHUP))
        ready |= CIO__FD_HUP;
    return ready;
}

int cio__backend_watch(cio__backend *b, cio__io_watch *w)
{
    struct epoll_event ev = {
        .events = to_epoll(w->events) | (w->persistent ? 0 : EPOLLONESHOT),
        .data.ptr = w};
    w->revents = 0;
    if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, w->fd, &ev) != 0)
        return -errno;
    return 0;
}

int cio__backend_rewatch(cio__backend *b, cio__io_watch *w)
{
    struct epoll_event ev = {
        .events = to_epoll(w->events) | (w->persistent ? 0 : EPOLLONESHOT),
        .data.ptr = w};
    w->revents = 0;
    if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, w->fd, &ev) != 0) {
        int rc = -errno;
        cio__backend_unwatch(b, w);
        return rc;
    }
    return 0;
}

void cio__backend_unwatch(cio__backend *b, cio__io_watch *w)
{
    if (w->fd < 0)
        return;
    /* EBADF/ENOENT: the fd was closed or already fired; either way the
     * kernel holds no reference to w any more. */
    epoll_ctl(b->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    w->fd = -1;
}

/* ---- fd layer registrations ---------------------------------------------- */

static uint64_t fd_tag(int fd, uint32_t gen)
{
    return (uint64_t)gen << 32 | (uint64_t)(uint32_t)fd << 1 | 1u;
}

static int fd_ctl(cio__backend *b, int op, int fd, uint32_t gen)
{
    /* EPOLLPRI: TCP urgent data, which makes a read stop short with bytes
     * still queued (the fd layer then stops trusting short reads). */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET,
                             .data.u64 = fd_tag(fd, gen)};
    return epoll_ctl(b->epfd, op, fd, &ev) == 0 ? 0 : -errno;
}

int cio__backend_fd_add(cio__backend *b, int fd, uint32_t gen)
{
    return fd_ctl(b, EPOLL_CTL_ADD, fd, gen);
}

int cio__backend_fd_mod(cio__backend *b, int fd, uint32_t gen)
{
    /* Modifying an edge-triggered registration makes the kernel check the
     * descriptor again and report it if it is ready now. */
    return fd_ctl(b, EPOLL_CTL_MOD, fd, gen);
}

void cio__backend_fd_del(cio__backend *b, int fd)
{
    /* ENOENT/EBADF: the kernel holds nothing for this descriptor. */
    epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* ---- waiting -------------------------------------------------------------- */

/* epoll_pwait2 (Linux 5.11+) takes a nanosecond timeout; older kernels
 * answer ENOSYS once and we fall back to epoll_wait's milliseconds, rounded
 * up so that a timer is never reported early. */
static int have_pwait2 = 1;

static int wait_events(cio__backend *b, struct epoll_event *events, int64_t timeout)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
    if (__atomic_load_n(&have_pwait2, __ATOMIC_RELAXED)) {
        struct timespec ts, *tsp = NULL;
        if (timeout >= 0) {
            ts.tv_sec = (time_t)(timeout / CIO_SEC);
            ts.tv_nsec = (long)(timeout % CIO_SEC);
            tsp = &ts;
        }
        int n = epoll_pwait2(b->epfd, events, MAX_EVENTS, tsp, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n;
        __atomic_store_n(&have_pwait2, 0, __ATOMIC_RELAXED); /* (loops on other threads too) */
    }
#endif
    int ms;
    if (timeout < 0)
        ms = -1;
    else if (timeout > (int64_t)INT32_MAX * CIO_MSEC)
        ms = INT32_MAX;
    else
        ms = (int)((timeout + CIO_MSEC - 1) / CIO_MSEC);
    return epoll_wait(b->epfd, events, MAX_EVENTS, ms);
}

int cio__backend_poll(cio__backend *b, int64_t timeout)
{
    struct epoll_event events[MAX_EVENTS];
    int n = wait_events(b, events, timeout);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        uint64_t tag = events[i].data.u64;
        uint32_t e = events[i].events;
        if (tag & 1u) { /* the fd layer's */
            b->on_fd(b->ctx, (int)(uint32_t)(tag >> 1 & 0x7fffffffu), (uint32_t)(tag >> 32),
                     from_epoll(e));
            continue;
        }
        cio__io_watch *w = events[i].data.ptr;
        w->revents = from_epoll(e) &
                     (CIO_READABLE | CIO_WRITABLE | CIO__FD_ERROR | CIO__FD_HUP);
        w->fn(w); /* a one-shot watch is disarmed now, still registered */
    }
    return n;
}

/* The epoll backend. The loop sees the backend through a few calls
 * (cio__backend_* in cio_internal.h); another backend (io_uring, poll)
 * replaces this file, not the loop.
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
#include "cio_internal.h"

#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

int cio__backend_open(cio_loop *loop)
{
    loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    return loop->epoll_fd < 0 ? -errno : 0;
}

void cio__backend_close(cio_loop *loop)
{
    if (loop->epoll_fd >= 0)
        close(loop->epoll_fd);
    loop->epoll_fd = -1;
}

int cio__backend_watch(cio_loop *loop, cio__io_watch *w)
{
    struct epoll_event ev = {
        .events = w->events | (w->persistent ? 0 : EPOLLONESHOT), .data.ptr = w};
    w->revents = 0;
    if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, w->fd, &ev) != 0)
        return -errno;
    return 0;
}

/* ---- fd layer registrations ---------------------------------------------- */

static uint64_t fd_tag(int fd, uint32_t gen)
{
    return (uint64_t)gen << 32 | (uint64_t)(uint32_t)fd << 1 | 1u;
}

static int fd_ctl(cio_loop *loop, int op, int fd, uint32_t gen)
{
    /* EPOLLPRI: TCP urgent data, which makes a read stop short with bytes
     * still queued (the fd layer then stops trusting short reads). */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET,
                             .data.u64 = fd_tag(fd, gen)};
    return epoll_ctl(loop->epoll_fd, op, fd, &ev) == 0 ? 0 : -errno;
}

int cio__backend_fd_add(cio_loop *loop, int fd, uint32_t gen)
{
    return fd_ctl(loop, EPOLL_CTL_ADD, fd, gen);
}

int cio__backend_fd_mod(cio_loop *loop, int fd, uint32_t gen)
{
    /* Modifying an edge-triggered registration makes the kernel check the
     * descriptor again and report it if it is ready now. */
    return fd_ctl(loop, EPOLL_CTL_MOD, fd, gen);
}

void cio__backend_fd_del(cio_loop *loop, int fd)
{
    /* ENOENT/EBADF: the kernel holds nothing for this descriptor. */
    epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
}

void cio__backend_unwatch(cio_loop *loop, cio__io_watch *w)
{
    if (w->fd < 0)
        return;
    /* EBADF/ENOENT: the fd was closed or already fired; either way the
     * kernel holds no reference to w any more. */
    epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, w->fd, NULL);
    w->fd = -1;
}

/* epoll_pwait2 (Linux 5.11+) takes a nanosecond timeout; older kernels
 * answer ENOSYS once and we fall back to epoll_wait's milliseconds, rounded
 * up so that a timer is never reported early. */
static int have_pwait2 = 1;

static int wait_events(cio_loop *loop, struct epoll_event *events, int64_t timeout)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
    if (__atomic_load_n(&have_pwait2, __ATOMIC_RELAXED)) {
        struct timespec ts, *tsp = NULL;
        if (timeout >= 0) {
            ts.tv_sec = (time_t)(timeout / CIO_SEC);
            ts.tv_nsec = (long)(timeout % CIO_SEC);
            tsp = &ts;
        }
        int n = epoll_pwait2(loop->epoll_fd, events, MAX_EVENTS, tsp, NULL);
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
    return epoll_wait(loop->epoll_fd, events, MAX_EVENTS, ms);
}

int cio__backend_poll(cio_loop *loop, int64_t timeout)
{
    struct epoll_event events[MAX_EVENTS];
    int n = wait_events(loop, events, timeout);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    loop->clock_stale = true;
    for (int i = 0; i < n; i++) {
        uint64_t tag = events[i].data.u64;
        uint32_t e = events[i].events;
        if (tag & 1u) { /* the fd layer's */
            unsigned ready = 0;
            if (e & (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
                ready |= CIO_READABLE;
            if (e & EPOLLPRI)
                ready |= CIO__FD_URGENT;
            if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                ready |= CIO_WRITABLE;
            if (e & EPOLLRDHUP)
                ready |= CIO__FD_RDHUP;
            cio__fd_event(loop, (int)(uint32_t)(tag >> 1 & 0x7fffffffu),
                          (uint32_t)(tag >> 32), ready);
            continue;
        }
        cio__io_watch *w = events[i].data.ptr;
        w->revents = e;
        w->fn(w); /* a one-shot watch is disarmed now, still registered */
    }
    return n;
}

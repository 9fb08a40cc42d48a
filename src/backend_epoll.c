/* The epoll backend. The loop sees the backend through a few calls
 * (cio__backend_open/close/watch/rearm/unwatch/poll in cio_internal.h);
 * another backend (io_uring, poll) replaces this file, not the loop.
 *
 * A watch is one-shot (fires once, then stays registered but disarmed until
 * cio__backend_rearm) or persistent (the eventfd, the signalfd). */
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

int cio__backend_rearm(cio_loop *loop, cio__io_watch *w)
{
    struct epoll_event ev = {.events = w->events | EPOLLONESHOT, .data.ptr = w};
    if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, w->fd, &ev) == 0)
        return 0;
    if (errno != ENOENT)
        return -errno;
    /* The fd was closed and its number reused behind our back: the kernel
     * forgot the old registration. Register anew. */
    if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, w->fd, &ev) != 0)
        return -errno;
    return 0;
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
    if (have_pwait2) {
        struct timespec ts, *tsp = NULL;
        if (timeout >= 0) {
            ts.tv_sec = (time_t)(timeout / CIO_SEC);
            ts.tv_nsec = (long)(timeout % CIO_SEC);
            tsp = &ts;
        }
        int n = epoll_pwait2(loop->epoll_fd, events, MAX_EVENTS, tsp, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n;
        have_pwait2 = 0;
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
        cio__io_watch *w = events[i].data.ptr;
        w->revents = events[i].events;
        w->fn(w); /* a one-shot watch is disarmed now, still registered */
    }
    return n;
}

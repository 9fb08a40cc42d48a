/* The epoll backend. The loop sees the backend through four calls
 * (cio__backend_open/close/watch/unwatch/poll in cio_internal.h); another
 * backend (io_uring, poll) replaces this file, not the loop.
 *
 * Interests are one-shot: a watch fires once and is then forgotten, which
 * keeps the loop's bookkeeping trivially correct when a waiting task is
 * cancelled. */
#include "cio_internal.h"

#include <sys/epoll.h>
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
    struct epoll_event ev = {.events = w->events | EPOLLONESHOT, .data.ptr = w};
    w->revents = 0;
    if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, w->fd, &ev) != 0)
        return -errno;
    loop->n_io_watches++;
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
    loop->n_io_watches--;
}

int cio__backend_poll(cio_loop *loop, int64_t timeout)
{
    struct epoll_event events[MAX_EVENTS];
    int ms;
    if (timeout < 0)
        ms = -1;
    else if (timeout == 0)
        ms = 0;
    else if (timeout > (int64_t)INT32_MAX * CIO_MSEC)
        ms = INT32_MAX;
    else
        ms = (int)((timeout + CIO_MSEC - 1) / CIO_MSEC); /* never wake early */
    int n = epoll_wait(loop->epoll_fd, events, MAX_EVENTS, ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    loop->clock_stale = true;
    for (int i = 0; i < n; i++) {
        cio__io_watch *w = events[i].data.ptr;
        w->revents = events[i].events;
        cio__backend_unwatch(loop, w);
        w->fn(w);
    }
    return n;
}

/* The fd layer: per-fd state so that one reader task and one writer task
 * can wait on the same descriptor, and closing a descriptor wakes whoever
 * waits on it.
 *
 * Each fd gets a one-shot epoll registration the first time a task waits
 * on it. When it fires, the waiters whose direction is ready are woken and
 * the registration is re-armed only if a waiter remains; the next wait
 * re-arms it with one EPOLL_CTL_MOD. A registration stays until cio_close
 * (or until the kernel drops it because the fd was closed some other way;
 * re-arming notices and registers again). */
#include "cio_internal.h"

#include <sys/epoll.h>
#include <unistd.h>

typedef struct cio__fd {
    cio__io_watch watch;  /* watch.fd is the fd; watch.events what is armed */
    cio_task *reader;
    cio_task *writer;
    bool registered;
    bool armed;
} cio__fd;

static unsigned wanted_events(const cio__fd *f)
{
    return (f->reader ? EPOLLIN | EPOLLRDHUP : 0) | (f->writer ? EPOLLOUT : 0);
}

static void fd_fired(cio__io_watch *w)
{
    cio__fd *f = CIO__CONTAINER(w, cio__fd, watch);
    cio_loop *loop = cio__tls_loop;
    unsigned re = w->revents;
    bool err = re & (EPOLLERR | EPOLLHUP);
    f->armed = false;
    if (f->reader && (err || (re & (EPOLLIN | EPOLLRDHUP)))) {
        cio_task *t = f->reader;
        f->reader = NULL;
        loop->n_io_watches--;
        cio__task_wake(t, CIO_READABLE);
    }
    if (f->writer && (err || (re & EPOLLOUT))) {
        cio_task *t = f->writer;
        f->writer = NULL;
        loop->n_io_watches--;
        cio__task_wake(t, CIO_WRITABLE);
    }
    unsigned want = wanted_events(f);
    if (want) { /* the other direction still waits */
        f->watch.events = want;
        if (cio__backend_rearm(loop, &f->watch) == 0)
            f->armed = true;
    }
}

static cio__fd *fd_get(cio_loop *loop, int fd)
{
    if ((size_t)fd >= loop->n_fds) {
        size_t n = loop->n_fds ? loop->n_fds : 64;
        while (n <= (size_t)fd)
            n *= 2;
        cio__fd **t = realloc(loop->fds, n * sizeof *t);
        if (!t)
            return NULL;
        for (size_t i = loop->n_fds; i < n; i++)
            t[i] = NULL;
        loop->fds = t;
        loop->n_fds = n;
    }
    cio__fd *f = loop->fds[fd];
    if (!f) {
        f = calloc(1, sizeof *f);
        if (!f)
            return NULL;
        f->watch.fd = fd;
        f->watch.fn = fd_fired;
        loop->fds[fd] = f;
    }
    return f;
}

/* Make the registration match the waiters. */
static int arm(cio_loop *loop, cio__fd *f)
{
    f->watch.events = wanted_events(f);
    int rc;
    if (!f->registered) {
        f->watch.persistent = false;
        rc = cio__backend_watch(loop, &f->watch);
        if (rc == 0)
            f->registered = true;
    } else {
        rc = cio__backend_rearm(loop, &f->watch);
    }
    if (rc == 0)
        f->armed = true;
    return rc;
}

int cio_wait_fd_site(int fd, unsigned events, const char *file, int line,
                     const char *func)
{
    cio_task *self;
    if (fd < 0 || !events || (events & ~(CIO_READABLE | CIO_WRITABLE)))
        return -EINVAL;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc)
        return rc;
    cio_loop *loop = self->loop;
    cio__fd *f = fd_get(loop, fd);
    if (!f)
        return -ENOMEM;
    bool want_r = events & CIO_READABLE, want_w = events & CIO_WRITABLE;
    if ((want_r && f->reader) || (want_w && f->writer))
        return -EEXIST;
    if (want_r)
        f->reader = self;
    if (want_w)
        f->writer = self;
    rc = arm(loop, f);
    if (rc) {
        if (want_r)
            f->reader = NULL;
        if (want_w)
            f->writer = NULL;
        return rc;
    }
    loop->n_io_watches += (size_t)want_r + (size_t)want_w;
    rc = cio__park(self);
    /* Woken by readiness (CIO_READABLE / CIO_WRITABLE: the slot was
     * cleared by fd_fired), by cio_close (-EBADF, cleared too) or by a
     * cancellation (our slots are still set: clear them). A task waiting
     * on both directions is woken by the first ready one. */
    f = (size_t)fd < loop->n_fds ? loop->fds[fd] : NULL;
    unsigned ready = rc > 0 ? (unsigned)rc : 0;
    if (f) {
        if (f->reader == self) {
            f->reader = NULL;
            loop->n_io_watches--;
        }
        if (f->writer == self) {
            f->writer = NULL;
            loop->n_io_watches--;
        }
    }
    if (rc < 0)
        return rc;
    return (int)(ready & events);
}

int cio_close(int fd)
{
    cio_loop *loop = cio__tls_loop;
    if (fd < 0)
        return -EBADF;
    if (loop && (size_t)fd < loop->n_fds && loop->fds[fd]) {
        cio__fd *f = loop->fds[fd];
        loop->fds[fd] = NULL;
        if (f->registered)
            cio__backend_unwatch(loop, &f->watch); /* before close: EPOLL_CTL_DEL */
        if (f->reader) {
            loop->n_io_watches--;
            cio__task_wake(f->reader, -EBADF);
        }
        if (f->writer && f->writer != f->reader) {
            loop->n_io_watches--;
            cio__task_wake(f->writer, -EBADF);
        } else if (f->writer) {
            loop->n_io_watches--;
        }
        free(f);
    }
    /* close(2) frees the descriptor even when it reports an error (EINTR
     * included, on Linux): never retry. */
    return close(fd) == 0 ? 0 : -errno;
}

void cio__fd_table_free(cio_loop *loop)
{
    for (size_t i = 0; i < loop->n_fds; i++)
        free(loop->fds[i]);
    free(loop->fds);
    loop->fds = NULL;
    loop->n_fds = 0;
}

/* The fd layer: per-fd state so that one reader task and one writer task
 * can wait on the same descriptor, and closing a descriptor wakes whoever
 * waits on it.
 *
 * Registration: edge-triggered, once per descriptor. The first wait on an
 * fd registers it for reading and writing with EPOLLET; the registration
 * stays until cio_close. An event wakes the task waiting in each ready
 * direction; a direction with nobody waiting is remembered in `ready` (a
 * hint, consumed by the next wait).
 *
 * Why not one-shot registrations re-armed before each wait (the other
 * choice, and this file's first version)? That is one epoll_ctl(MOD) per
 * wait, about 7% of the server's CPU in the echo benchmark (bench/echo.c);
 * edge triggering needs none once the fd is registered.
 *
 * Correctness rests on one rule: the library's own I/O paths (net.c,
 * stream.c) wait through cio__fd_wait_io only right after the system call
 * returned EAGAIN, with no suspension in between, so any data arriving
 * later makes a new edge. A `ready` hint may be stale (set before that
 * EAGAIN): the wait returns at once, the next attempt sees EAGAIN again
 * and waits for real — one wasted system call, never a lost wake-up.
 *
 * Streams go one step further on SOCK_STREAM sockets: a short read proves
 * the receive queue empty just as EAGAIN would, so they wait without
 * trying (cio__fd_wait_drained). Data that came in between left a hint;
 * and after EPOLLRDHUP (`rdhup`, kept for good) the end of the stream is
 * there to read while no edge will ever come, so that wait returns at
 * once. An EAGAIN-driven wait ignores rdhup: a datagram socket shut for
 * reading reports RDHUP yet answers EAGAIN, and trusting it would spin.
 *
 * The public cio_wait_fd promises more (ready *now*, whatever the caller
 * did before), so it re-arms with one EPOLL_CTL_MOD, which makes the
 * kernel report the current state again.
 *
 * Descriptors closed behind the loop's back with close(2): the kernel
 * drops the registration when the file goes away, and a reused number
 * would find a slot claiming a registration that no longer exists.
 * - Events carry the fd and the slot's generation, never a pointer: a
 *   registration the kernel keeps for a closed descriptor (duplicated into
 *   a child, say) cannot reach freed or reused memory.
 * - cio_socket and cio_accept reset the slot of each new number
 *   (cio__fd_fresh; a task still waiting on the old descriptor gets
 *   -EBADF); a stream adopting an fd checks its registration once
 *   (cio__fd_check); cio_wait_fd's MOD notices ENOENT and registers again.
 * - Left: a number closed with close(2), reused by a descriptor made
 *   outside cio, then waited on by cio_recv & co. before any cio_wait_fd:
 *   that wait expects an edge that never comes. cio_close is the
 *   documented way to close; with CIO_DEBUG=1 every wait re-arms and
 *   reports the mistake on stderr. */
#include "cio_internal.h"

#include <string.h>
#include <unistd.h>

typedef struct cio__fd {
    cio_task *reader;
    cio_task *writer;
    uint32_t gen;      /* bumped whenever the slot is reset */
    unsigned ready;    /* CIO_READABLE / CIO_WRITABLE seen with no waiter */
    bool registered;   /* the backend holds a registration tagged `gen` */
    bool rdhup;        /* EPOLLRDHUP seen: the peer will send nothing more */
} cio__fd;

/* The slot of fd, growing the table if needed (NULL: out of memory). */
static cio__fd *slot(cio_loop *loop, int fd)
{
    if (CIO__UNLIKELY((size_t)fd >= loop->n_fds)) {
        size_t n = loop->n_fds ? loop->n_fds : 64;
        while (n <= (size_t)fd)
            n *= 2;
        cio__fd *t = realloc(loop->fds, n * sizeof *t);
        if (!t)
            return NULL;
        memset(t + loop->n_fds, 0, (n - loop->n_fds) * sizeof *t);
        loop->fds = t;
        loop->n_fds = n;
    }
    return &loop->fds[fd];
}

static cio__fd *slot_if_any(cio_loop *loop, int fd)
{
    return loop && fd >= 0 && (size_t)fd < loop->n_fds ? &loop->fds[fd] : NULL;
}

/* Wake whoever waits on f with rc (-EBADF) and forget the slot's state. */
static void reset_slot(cio_loop *loop, cio__fd *f, int rc)
{
    cio_task *r = f->reader, *w = f->writer;
    f->reader = f->writer = NULL;
    if (r) {
        loop->n_io_watches--;
        cio__task_wake(r, rc);
    }
    if (w) {
        loop->n_io_watches--;
        if (w != r)
            cio__task_wake(w, rc);
    }
    f->registered = false;
    f->ready = 0;
    f->rdhup = false;
    f->gen++;
}

void cio__fd_event(cio_loop *loop, int fd, uint32_t gen, unsigned ready)
{
    cio__fd *f = slot_if_any(loop, fd);
    if (!f || !f->registered || f->gen != gen)
        return; /* a registration left over from a closed descriptor */
    if (ready & CIO__FD_RDHUP)
        f->rdhup = true;
    cio_task *r = (ready & CIO_READABLE) ? f->reader : NULL;
    cio_task *w = (ready & CIO_WRITABLE) ? f->writer : NULL;
    /* A task waiting both ways leaves both slots when either fires. */
    cio_task *both = f->reader && f->reader == f->writer ? f->reader : NULL;
    if (both && (r || w)) {
        f->reader = f->writer = NULL;
        loop->n_io_watches -= 2;
        unsigned got = ready & (CIO_READABLE | CIO_WRITABLE);
        if (!cio__task_wake(both, (int)got))
            f->ready |= got;
        return;
    }
    unsigned unclaimed = ready;
    if (r) {
        f->reader = NULL;
        loop->n_io_watches--;
        if (cio__task_wake(r, CIO_READABLE))
            unclaimed &= ~CIO_READABLE;
    }
    if (w) {
        f->writer = NULL;
        loop->n_io_watches--;
        if (cio__task_wake(w, CIO_WRITABLE))
            unclaimed &= ~CIO_WRITABLE;
    }
    /* Not handed to a task (nobody waited, or the waiter was already
     * woken by a cancellation): remember it for the next wait. */
    f->ready |= unclaimed;
}

void cio__fd_fresh(int fd)
{
    cio_loop *loop = cio__tls_loop;
    cio__fd *f = slot_if_any(loop, fd);
    /* The kernel just handed out this number, so whatever descriptor had
     * it before is closed: the slot is stale. */
    if (f && (f->registered || f->reader || f->writer || f->ready))
        reset_slot(loop, f, -EBADF);
}

void cio__fd_check(int fd)
{
    cio_loop *loop = cio__tls_loop;
    cio__fd *f = slot_if_any(loop, fd);
    if (!f || !f->registered || f->reader || f->writer)
        return; /* nothing to check, or in use right now (so not stale) */
    if (cio__backend_fd_mod(loop, fd, f->gen) == -ENOENT)
        reset_slot(loop, f, -EBADF); /* closed behind our back, reused */
}

/* Register (or re-arm) f for fd. Returns 0 or a negative error. */
static int ensure_registered(cio_loop *loop, cio__fd *f, int fd, bool rearm,
                             bool warn_stale)
{
    if (f->registered && !rearm)
        return 0;
    if (f->registered) {
        int rc = cio__backend_fd_mod(loop, fd, f->gen);
        if (rc != -ENOENT)
            return rc;
        /* The descriptor was closed behind our back and the number
         * reused: register the new one. */
        if (warn_stale)
            fprintf(stderr,
                    "cio: fd %d was closed with close(2) while the loop watched it, "
                    "and its number reused; close watched descriptors with cio_close\n",
                    fd);
        f->registered = false;
        f->gen++;
    }
    f->ready = 0;
    int rc = cio__backend_fd_add(loop, fd, f->gen);
    if (rc == -EEXIST) /* registered under an older generation (dup2...) */
        rc = cio__backend_fd_mod(loop, fd, f->gen);
    if (rc == 0)
        f->registered = true;
    return rc;
}

/* What the caller knows when it waits (see the top of this file). */
enum wait_mode {
    WAIT_ASK,     /* nothing: ask the kernel for the current state */
    WAIT_EAGAIN,  /* the system call just returned EAGAIN */
    WAIT_DRAINED, /* a stream socket's read just came back short */
};

static int wait_fd(int fd, unsigned events, enum wait_mode mode, const char *file,
                   int line, const char *func)
{
    cio_task *self;
    if (fd < 0 || !events || (events & ~(CIO_READABLE | CIO_WRITABLE)))
        return -EINVAL;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc)
        return rc;
    cio_loop *loop = self->loop;
    cio__fd *f = slot(loop, fd);
    if (!f)
        return -ENOMEM;
    bool want_r = events & CIO_READABLE, want_w = events & CIO_WRITABLE;
    if ((want_r && f->reader) || (want_w && f->writer))
        return -EEXIST;
    bool rearm = mode == WAIT_ASK || cio__debug_enabled();
    if (!rearm && f->registered && (f->ready & events)) {
        /* An edge came while nobody waited: try the call again. */
        unsigned got = f->ready & events;
        f->ready &= ~got;
        return (int)got;
    }
    if (mode == WAIT_DRAINED && f->rdhup)
        return CIO_READABLE; /* the end is there to read; no edge will come */
    if (rearm)
        f->ready &= ~events; /* the re-arm reports the truth */
    rc = ensure_registered(loop, f, fd, rearm, mode != WAIT_ASK);
    if (rc)
        return rc;
    if (want_r)
        f->reader = self;
    if (want_w)
        f->writer = self;
    loop->n_io_watches += (size_t)want_r + (size_t)want_w;
    rc = cio__park(self);
    /* Woken by readiness (the slot was cleared by cio__fd_event), by
     * cio_close or a stale-number reset (-EBADF, cleared too), or by a
     * cancellation (our slot is still set: clear it). The table may have
     * moved while we slept: look the slot up again. */
    f = slot_if_any(loop, fd);
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
    return (int)((unsigned)rc & events);
}

int cio_wait_fd_site(int fd, unsigned events, const char *file, int line,
                     const char *func)
{
    return wait_fd(fd, events, WAIT_ASK, file, line, func);
}

int cio__fd_wait_io(int fd, unsigned events, const char *file, int line,
                    const char *func)
{
    return wait_fd(fd, events, WAIT_EAGAIN, file, line, func);
}

int cio__fd_wait_drained(int fd, const char *file, int line, const char *func)
{
    return wait_fd(fd, CIO_READABLE, WAIT_DRAINED, file, line, func);
}

int cio_close(int fd)
{
    if (fd < 0)
        return -EBADF;
    cio_loop *loop = cio__tls_loop;
    cio__fd *f = slot_if_any(loop, fd);
    if (f) {
        if (f->registered)
            cio__backend_fd_del(loop, fd); /* while fd still names the file */
        reset_slot(loop, f, -EBADF);
    }
    /* close(2) frees the descriptor even when it reports an error (EINTR
     * included, on Linux): never retry. */
    return close(fd) == 0 ? 0 : -errno;
}

void cio__fd_table_free(cio_loop *loop)
{
    free(loop->fds);
    loop->fds = NULL;
    loop->n_fds = 0;
}

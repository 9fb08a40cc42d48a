/* The fd layer: per-fd state so that tasks can wait on a descriptor (any
 * number of them, in either direction), and closing a descriptor wakes
 * whoever waits on it.
 *
 * Registration: edge-triggered, once per descriptor. The first wait on an
 * fd registers it with the backend for reading and writing, reported on
 * each change to ready (epoll's EPOLLET); the registration stays until
 * cio_close. An event wakes every task waiting in each ready direction
 * (all of them: with edge triggering, a waiter left asleep might never see
 * another edge if the one woken does not drain the descriptor);
 * a direction with nobody waiting is remembered in `ready` (a hint,
 * consumed by the next wait).
 *
 * Waiters are fd_waiter nodes on the waiting task's stack, linked into the
 * slot's per-direction lists (a task waiting both ways is on both). The
 * lists are singly linked from the slot because the slot table moves when
 * it grows: nodes never point back into it.
 *
 * Why not one-shot registrations re-armed before each wait (the other
 * choice, and this file's first version)? That is one backend call (an
 * epoll_ctl MOD) per wait, about 7% of the server's CPU in the echo
 * benchmark (bench/echo.c); edge triggering needs none once the fd is
 * registered.
 *
 * Correctness rests on one rule: the library's own I/O paths (net.c,
 * stream.c) wait through cio__fd_wait_io only right after the system call
 * returned EAGAIN, with no suspension in between, so any data arriving
 * later makes a new edge. A `ready` hint may be stale (set before that
 * EAGAIN): the wait returns at once, the next attempt sees EAGAIN again
 * and waits for real — one wasted system call, never a lost wake-up.
 *
 * cio_recv, cio_read and streams go one step further on TCP sockets: a
 * short read proves the receive queue empty just as EAGAIN would, so the
 * next read waits without trying (cio__fd_note_read, cio__fd_wait_drained;
 * not after urgent data (CIO__FD_URGENT), which stops a read short at its
 * mark, and not on Unix sockets, whose reads stop short at a message
 * carrying descriptors or credentials). Data that came in between left a
 * hint; and after CIO__FD_RDHUP (`rdhup`, kept for good) the end of the
 * stream is there to read while no edge will ever come, so that wait
 * returns at once. An EAGAIN-driven wait ignores rdhup: a datagram socket shut for
 * reading reports RDHUP yet answers EAGAIN, and trusting it would spin.
 *
 * The public cio_wait_fd promises more (ready *now*, whatever the caller
 * did before), so it re-arms (cio__backend_fd_mod), which makes the
 * backend report the current state again.
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
 * - cio_poll (poll.c) holds the backend's one registration for a
 *   descriptor it watches: while `polled`, task waits on it fail with
 *   -EBUSY, and cio_poll_start refuses a descriptor this layer has
 *   registered (cio__fd_poll_claim), unless that registration is stale.
 * - Left: a number closed with close(2), reused by a descriptor made
 *   outside cio, then waited on by cio_recv & co. before any cio_wait_fd:
 *   that wait expects an edge that never comes. cio_close is the
 *   documented way to close; with CIO_DEBUG=1 every wait re-arms and
 *   reports the mistake on stderr. */
#include "cio_internal.h"
#include "testing_internal.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void fd_table_free(cio_loop *loop);

enum { DIR_READ, DIR_WRITE };
#define DIR_BIT(d) ((d) == DIR_READ ? CIO_READABLE : CIO_WRITABLE)

typedef struct fd_waiter {
    cio_task *task;
    struct fd_waiter *next[2]; /* in the slot's list of each direction */
    unsigned events;           /* what it waits for (CIO_READABLE|WRITABLE) */
    unsigned linked;           /* the directions whose list still holds it */
} fd_waiter;

typedef struct cio__fd {
    fd_waiter *waiting[2]; /* [DIR_READ], [DIR_WRITE]: newest first */
    uint32_t gen;      /* bumped whenever the slot is reset */
    unsigned ready;    /* CIO_READABLE / CIO_WRITABLE seen with no waiter */
    bool registered;   /* the backend holds a registration tagged `gen` */
    bool rdhup;        /* CIO__FD_RDHUP seen: the peer will send nothing more */
    bool tcp;          /* a TCP socket (cio_socket, cio_accept, a stream) */
    bool urgent;       /* CIO__FD_URGENT seen: short reads prove nothing now */
    bool drained;      /* tcp: the last read came back short */
    bool not_socket;   /* cio_write found it is no socket (cio__fd_write) */
    bool polled;       /* a cio_poll watches it (poll.c): no task waits */
} cio__fd;

/* The slot of fd, growing the table if needed (NULL: out of memory). */
static cio__fd *slot(cio_loop *loop, int fd)
{
    if (CIO__UNLIKELY((size_t)fd >= loop->fds.n)) {
        size_t n = loop->fds.n ? loop->fds.n : 64;
        while (n <= (size_t)fd)
            n *= 2;
        cio__fd *t = realloc(loop->fds.slots, n * sizeof *t);
        if (!t)
            return NULL;
        memset(t + loop->fds.n, 0, (n - loop->fds.n) * sizeof *t);
        if (!loop->fds.slots)
            cio__loop_on_close(loop, fd_table_free);
        loop->fds.slots = t;
        loop->fds.n = n;
    }
    return &loop->fds.slots[fd];
}

static cio__fd *slot_if_any(cio_loop *loop, int fd)
{
    return loop && fd >= 0 && (size_t)fd < loop->fds.n ? &loop->fds.slots[fd] : NULL;
}

static bool has_waiters(const cio__fd *f)
{
    return f->waiting[DIR_READ] || f->waiting[DIR_WRITE];
}

/* Take w out of the list of direction d (it is linked there). */
static void unlink_dir(cio_loop *loop, cio__fd *f, fd_waiter *w, int d)
{
    for (fd_waiter **pp = &f->waiting[d]; *pp; pp = &(*pp)->next[d]) {
        if (*pp == w) {
            *pp = w->next[d];
            break;
        }
    }
    w->linked &= ~(unsigned)DIR_BIT(d);
    loop->n_io_watches--;
}

static void unlink_all(cio_loop *loop, cio__fd *f, fd_waiter *w)
{
    for (int d = DIR_READ; d <= DIR_WRITE; d++)
        if (w->linked & DIR_BIT(d))
            unlink_dir(loop, f, w, d);
}

/* Unlink every waiter of direction d and wake it with rc (rc > 0: the
 * ready bits, masked with what each asked for). Returns the ready bits
 * that some live waiter was handed. */
static unsigned wake_dir(cio_loop *loop, cio__fd *f, int d, int rc)
{
    unsigned claimed = 0;
    fd_waiter *w;
    while ((w = f->waiting[d])) {
        unlink_all(loop, f, w);
        int wrc = rc > 0 ? (int)((unsigned)rc & w->events) : rc;
        if (cio__task_wake(w->task, wrc) && wrc > 0)
            claimed |= (unsigned)wrc;
    }
    return claimed;
}

/* Wake whoever waits on f with rc (-EBADF) and forget the slot's state. */
static void reset_slot(cio_loop *loop, cio__fd *f, int rc)
{
    wake_dir(loop, f, DIR_READ, rc);
    wake_dir(loop, f, DIR_WRITE, rc);
    f->registered = false;
    f->ready = 0;
    f->rdhup = false;
    f->tcp = f->urgent = f->drained = f->not_socket = false;
    f->gen++;
}

void cio__fd_event(void *ctx, int fd, uint32_t gen, unsigned ready)
{
    cio_loop *loop = ctx;
    cio__fd *f = slot_if_any(loop, fd);
    if (!f || !f->registered || f->gen != gen)
        return; /* a registration left over from a closed descriptor */
    if (ready & CIO__FD_RDHUP)
        f->rdhup = true;
    if (ready & CIO__FD_URGENT)
        f->urgent = true, f->drained = false;
    unsigned dirs = ready & (CIO_READABLE | CIO_WRITABLE), claimed = 0;
    for (int d = DIR_READ; d <= DIR_WRITE; d++)
        if (dirs & DIR_BIT(d))
            claimed |= wake_dir(loop, f, d, (int)dirs);
    /* Not handed to a task (nobody waited, or every waiter was already
     * woken by a cancellation): remember it for the next wait. */
    f->ready |= dirs & ~claimed;
}

void cio__fd_mark_tcp(int fd)
{
    cio_loop *loop = cio__tls_loop;
    cio__fd *f;
    if (loop && fd >= 0 && (f = slot(loop, fd)))
        f->tcp = true; /* (out of memory: no short-read shortcut, that is all) */
}

void cio__fd_fresh(int fd, bool tcp)
{
    cio_loop *loop = cio__tls_loop;
    cio__fd *f = slot_if_any(loop, fd);
    /* The kernel just handed out this number, so whatever descriptor had
     * it before is closed: the slot is stale. */
    if (f && (f->registered || has_waiters(f) || f->ready || f->tcp || f->not_socket))
        reset_slot(loop, f, -EBADF);
    if (tcp)
        cio__fd_mark_tcp(fd);
}

bool cio__fd_is_tcp(int fd)
{
    cio__fd *f = slot_if_any(cio__tls_loop, fd);
    return f && f->tcp;
}

void cio__fd_note_read(int fd, size_t asked, ssize_t got)
{
    cio__fd *f = slot_if_any(cio__tls_loop, fd);
    if (f)
        f->drained = f->tcp && !f->urgent && got > 0 && (size_t)got < asked;
}

bool cio__fd_take_drained(int fd)
{
    cio__fd *f = slot_if_any(cio__tls_loop, fd);
    if (!f || !f->drained)
        return false;
    f->drained = false;
    return true;
}

void cio__fd_check(int fd)
{
    cio_loop *loop = cio__tls_loop;
    cio__fd *f = slot_if_any(loop, fd);
    if (!f || !f->registered || has_waiters(f))
        return; /* nothing to check, or in use right now (so not stale) */
    if (cio__backend_fd_mod(loop->backend, fd, f->gen) == -ENOENT)
        reset_slot(loop, f, -EBADF); /* closed behind our back, reused */
}

/* Register (or re-arm) f for fd. Returns 0 or a negative error. */
static int ensure_registered(cio_loop *loop, cio__fd *f, int fd, bool rearm,
                             bool warn_stale)
{
    if (f->registered && !rearm)
        return 0;
    if (f->registered) {
        int rc = cio__backend_fd_mod(loop->backend, fd, f->gen);
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
    int rc = cio__backend_fd_add(loop->backend, fd, f->gen);
    if (rc == -EEXIST) /* registered under an older generation (dup2...) */
        rc = cio__backend_fd_mod(loop->backend, fd, f->gen);
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
    if (CIO__UNLIKELY(f->polled))
        return -EBUSY; /* the backend's one registration is the cio_poll's */
    if (events & CIO_READABLE)
        f->drained = false; /* whatever the wait says, the next read tries */
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
    fd_waiter w = {.task = self, .events = events};
    for (int d = DIR_READ; d <= DIR_WRITE; d++) {
        if (events & DIR_BIT(d)) {
            w.next[d] = f->waiting[d];
            f->waiting[d] = &w;
            w.linked |= DIR_BIT(d);
            loop->n_io_watches++;
            cio__sched_work(loop);
        }
    }
    uint32_t gen = f->gen;
    self->wait_kind = CIO_WAIT_FD;
    self->wait_on.fd = fd;
    self->wait_on.events = events;
    rc = cio__park(self);
    /* Woken by readiness or by cio_close / a stale-number reset (-EBADF):
     * the waker unlinked us. Woken by a cancellation: still linked. The
     * table may have moved while we slept: look the slot up again. */
    f = slot_if_any(loop, fd);
    if (w.linked)
        unlink_all(loop, f, &w);
    if (rc < 0)
        return rc;
    /* Woken for readiness, then the fd was closed (and its number maybe
     * reused) before we ran: the readiness was the old descriptor's. */
    if (f->gen != gen)
        return -EBADF;
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

/* ---- writes that never raise SIGPIPE ------------------------------------------
 * A write to a pipe (or socket) whose reader is gone raises SIGPIPE, which
 * kills a process that did not ignore it. Sockets have MSG_NOSIGNAL; pipes
 * have nothing like it, so SIGPIPE is blocked in the calling thread's mask
 * (and only there: no process-wide state changes) around the write, and a
 * SIGPIPE the write caused is taken off the pending set before it is
 * unblocked. The write's SIGPIPE is directed at this thread, and a pending
 * one is taken from the thread's own set before the process's, so a
 * SIGPIPE someone else sent meanwhile stays pending and is delivered as
 * usual. If SIGPIPE was blocked already (a cio_signal_add handler reads it
 * from a signalfd, say), one that was pending before the write is left
 * alone. cio__sigpipe_block / _restore are the two halves, for writes
 * made by someone else (stdio in cio_dump_tasks). */
void cio__sigpipe_block(cio__sigpipe_hold *h)
{
    sigset_t pipe_only, old, pending;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    h->was_blocked = sigismember(&old, SIGPIPE);
    /* Unblocked until now, so nothing could be pending for this thread. */
    h->was_pending = h->was_blocked && sigpending(&pending) == 0 &&
                     sigismember(&pending, SIGPIPE);
}

void cio__sigpipe_restore(cio__sigpipe_hold *h, bool raised)
{
    int saved = errno;
    sigset_t pipe_only, pending;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    if (raised && !h->was_pending && sigpending(&pending) == 0 &&
        sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_only, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    if (!h->was_blocked)
        pthread_sigmask(SIG_UNBLOCK, &pipe_only, NULL);
    errno = saved;
}

ssize_t cio__write_nosigpipe(int fd, const void *buf, size_t n)
{
    cio__sigpipe_hold h;
    cio__sigpipe_block(&h);
    ssize_t w = write(fd, buf, n);
    cio__sigpipe_restore(&h, w < 0 && errno == EPIPE);
    return w;
}

ssize_t cio__fd_write(int fd, const void *buf, size_t n)
{
    cio_loop *loop = cio__tls_loop;
    cio__fd *f = loop && fd >= 0 ? slot(loop, fd) : NULL;
    if (!f || !f->not_socket) {
        ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
        if (w >= 0 || errno != ENOTSOCK)
            return w;
        if (f)
            f->not_socket = true; /* until the number is reset (cio_close) */
    }
    return cio__write_nosigpipe(fd, buf, n);
}

int cio__fd_poll_claim(cio_loop *loop, int fd, bool on)
{
    cio__fd *f = on ? slot(loop, fd) : slot_if_any(loop, fd);
    if (!on) {
        if (f)
            f->polled = false;
        return 0;
    }
    if (!f)
        return -ENOMEM;
    if (f->polled || has_waiters(f))
        return -EBUSY;
    if (f->registered) {
        /* Registered by an earlier wait: still open under that number
         * (busy), or closed with close(2) and the number reused (stale:
         * the kernel dropped it; forget it and go ahead). */
        if (cio__backend_fd_mod(loop->backend, fd, f->gen) != -ENOENT)
            return -EBUSY;
        reset_slot(loop, f, -EBADF);
    }
    f->polled = true;
    return 0;
}

int cio_close(int fd)
{
    if (fd < 0)
        return -EBADF;
    cio_loop *loop = cio__tls_loop;
    cio__fd *f = slot_if_any(loop, fd);
    if (f) {
        if (f->registered)
            cio__backend_fd_del(loop->backend, fd); /* while fd still names the file */
        reset_slot(loop, f, -EBADF);
    }
    /* close(2) frees the descriptor even when it reports an error (EINTR
     * included, on Linux): never retry. */
    return close(fd) == 0 ? 0 : -errno;
}

/* Free the fd table (a close hook: no task waits any more). */
static void fd_table_free(cio_loop *loop)
{
    free(loop->fds.slots);
    loop->fds.slots = NULL;
    loop->fds.n = 0;
}

/* For libcio_testing's leak checks (testing_internal.h). */
size_t cio__fd_registered_list(cio_loop *loop, int *out, size_t cap)
{
    size_t n = 0;
    for (size_t fd = 0; loop && fd < loop->fds.n; fd++) {
        if (!loop->fds.slots[fd].registered)
            continue;
        if (n < cap)
            out[n] = (int)fd;
        n++;
    }
    return n;
}

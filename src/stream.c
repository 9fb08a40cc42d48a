/* Streams: a read buffer filled from the fd on demand, and a write queue
 * sent by a background task (spawned when bytes are left after a direct
 * attempt, gone when the queue is empty) so that queued bytes always go
 * out, drained or not, as with asyncio's transports.
 *
 * Lifetime: the user's reference plus one held by the sending task while it
 * runs; the memory goes with the last. */
#include "cio_internal.h"
#include "cio/stream.h"

#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_LIMIT (64 * 1024)
#define DEFAULT_HIGH (64 * 1024)
#define FIRST_READ_BUF (16 * 1024)

/* A stream's magic: open (the user holds the handle), closed (the user's
 * close or abort returned, while a sender or a call still inside keeps the
 * memory), freed (poisoned before free: checked memory may be reused). */
#define STREAM_OPEN 0x57e4a3c1u
#define STREAM_CLOSED 0x57e4c105u
#define STREAM_FREED 0xdead57e4u

struct cio_stream {
    int fd;
    int refs;
    size_t limit, high, low;
    unsigned magic;        /* past the bytes free() reuses for its lists */
    /* read side: bytes [rstart, rend) of rbuf are buffered */
    char *rbuf;
    size_t rcap, rstart, rend;
    bool eof;
    int rerr;
    /* write side: bytes [wstart, wend) of wbuf are queued */
    char *wbuf;
    size_t wcap, wstart, wend;
    int werr;
    bool write_closed, closing, is_socket;
    cio_task *sender;      /* the background sender while it runs */
    const cio_stream_transport *tp; /* NULL: the fd itself */
    void *tp_ctx;
    cio_event below_low;   /* set while queued <= low (or broken) */
    cio_event sent_all;    /* set while nothing is queued (or broken) */
};

static size_t queued(const cio_stream *s) { return s->wend - s->wstart; }

/* In debug mode (CIO_DEBUG=1, cio_loop_set_debug) a freed stream's memory is kept, poisoned, for the next
 * QUARANTINE frees of the thread, so that a stale handle meets the
 * poison (a clear panic) and never a newer stream at the same address. */
#define QUARANTINE 64
static __thread cio_stream *quarantine[QUARANTINE];
static __thread unsigned quarantine_next;

static void stream_unref(cio_stream *s)
{
    if (--s->refs > 0)
        return;
    cio_event_destroy(&s->below_low);
    cio_event_destroy(&s->sent_all);
    if (s->tp && s->tp->free)
        s->tp->free(s->tp_ctx);
    free(s->rbuf);
    free(s->wbuf);
    if (cio__debug_here()) {
        memset(s, 0xdb, sizeof *s);
        s->magic = STREAM_FREED;
        free(quarantine[quarantine_next]);
        quarantine[quarantine_next] = s;
        quarantine_next = (quarantine_next + 1) % QUARANTINE;
        return;
    }
    /* (volatile: a store right before free() is otherwise dropped) */
    *(volatile unsigned *)&s->magic = STREAM_FREED;
    free(s);
}

_Noreturn static void stream_misuse(const cio_stream *s, const char *what)
{
    if (!s)
        cio__panic("%s: NULL stream", what);
    if (s->magic == STREAM_CLOSED || s->magic == STREAM_FREED)
        cio__panic("%s: stream %p used after cio_stream_close or "
                   "cio_stream_abort (a closed stream's handle is invalid "
                   "once the close returns; close each stream once)",
                   what, (const void *)s);
    cio__panic("%s: %p is not an open stream (freed memory, or never "
               "opened)",
               what, (const void *)s);
}

/* Every public call starts here. A handle used after its stream was closed
 * is caught while the memory is still the stream's (its sender or a call
 * inside keeps it; under CIO_DEBUG, the quarantine), and most often after
 * that too (the poison); ASan catches the rest. */
static inline void check(const cio_stream *s, const char *what)
{
    if (CIO__UNLIKELY(!s || s->magic != STREAM_OPEN))
        stream_misuse(s, what);
}

/* The start of every call that may suspend: a valid handle, and a task to
 * suspend (-EPERM, nothing done, otherwise). */
static inline int enter(const cio_stream *s, const char *what)
{
    check(s, what);
    return cio__running() ? 0 : -EPERM;
}

/* cio_stream_open_fd, with where it was called (a site, or the return
 * address pc) for debug mode's leak report. */
static int stream_open(cio_stream **out, int fd, const cio_stream_options *opts,
                       const char *file, int line, const char *func, const void *pc)
{
    *out = NULL;
    if (fd < 0)
        return -EINVAL;
    cio_stream *s = calloc(1, sizeof *s);
    if (!s) {
        cio_close(fd);
        return -ENOMEM;
    }
    s->fd = fd;
    s->refs = 1;
    s->magic = STREAM_OPEN;
    s->limit = opts && opts->limit ? opts->limit : DEFAULT_LIMIT;
    s->high = opts && opts->high_water ? opts->high_water : DEFAULT_HIGH;
    s->low = opts && opts->low_water ? opts->low_water : s->high / 4;
    if (s->low > s->high)
        s->low = s->high;
    int type;
    socklen_t len = sizeof type;
    s->is_socket = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
    cio__fd_check(fd); /* a number closed with close(2) and reused? */
    /* A TCP socket read through the plain fd: a short read there proves
     * the receive queue empty, so the next read waits first instead of
     * paying for a read that would say EAGAIN (cio__fd_note_read). */
    int proto, domain;
    socklen_t plen = sizeof proto, dlen = sizeof domain;
    if (s->is_socket && type == SOCK_STREAM && !cio__fd_is_tcp(fd) &&
        getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &plen) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) == 0 &&
        proto == IPPROTO_TCP && (domain == AF_INET || domain == AF_INET6))
        cio__fd_mark_tcp(fd);
    /* A blocking fd would stall the whole loop: make it non-blocking (as
     * asyncio's transports do). Sockets from cio_socket / cio_accept are
     * already. */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)) {
        int rc = -errno;
        free(s);
        cio_close(fd);
        return rc;
    }
    cio_event_init(&s->below_low);
    cio_event_init(&s->sent_all);
    cio_event_set(&s->below_low);
    cio_event_set(&s->sent_all);
    cio__debug_track(s, CIO__RES_STREAM, fd, file, line, func, pc);
    *out = s;
    return 0;
}

int cio_stream_open_fd(cio_stream **out, int fd, const cio_stream_options *opts)
{
    return stream_open(out, fd, opts, NULL, 0, NULL, __builtin_return_address(0));
}

int cio_stream_fd(const cio_stream *s)
{
    check(s, "cio_stream_fd");
    return s->fd;
}

int cio_stream_peername(const cio_stream *s, struct sockaddr_storage *addr, socklen_t *len)
{
    check(s, "cio_stream_peername");
    *len = sizeof *addr;
    return getpeername(s->fd, (struct sockaddr *)addr, len) == 0 ? 0 : -errno;
}

int cio_stream_sockname(const cio_stream *s, struct sockaddr_storage *addr, socklen_t *len)
{
    check(s, "cio_stream_sockname");
    *len = sizeof *addr;
    return getsockname(s->fd, (struct sockaddr *)addr, len) == 0 ? 0 : -errno;
}

int cio_open_connection_site(cio_stream **out, const char *host, const char *port,
                             const cio_stream_options *opts, const char *file,
                             int line, const char *func)
{
    *out = NULL;
    int fd = cio_tcp_connect_site(host, port, 0, file, line, func);
    if (fd < 0)
        return fd;
    /* Small writes go out at once (asyncio and Go do the same). */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return stream_open(out, fd, opts, file, line, func, NULL);
}

int cio_open_unix_connection_site(cio_stream **out, const char *path,
                                  const cio_stream_options *opts, const char *file,
                                  int line, const char *func)
{
    *out = NULL;
    if (!cio__running())
        return cio__no_task(file, line, func); /* -EPERM */
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t plen = path ? strlen(path) : 0;
    if (plen == 0 || plen >= sizeof sun.sun_path)
        return -EINVAL;
    memcpy(sun.sun_path, path, plen);
    if (path[0] == '@')
        sun.sun_path[0] = 0; /* abstract namespace */
    int fd = cio_socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    int rc = cio_connect_site(fd, (struct sockaddr *)&sun,
                              (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen),
                              file, line, func);
    if (rc) {
        cio_close(fd);
        return rc;
    }
    return stream_open(out, fd, opts, file, line, func, NULL);
}

/* ---- writing ------------------------------------------------------------- */

/* One non-blocking write: bytes written, or -EAGAIN with *want, or an
 * error. */
static ssize_t send_some(cio_stream *s, const void *buf, size_t n, unsigned *want)
{
    *want = CIO_WRITABLE;
    if (s->tp)
        return s->tp->write(s->tp_ctx, buf, n, want);
    ssize_t w = s->is_socket ? send(s->fd, buf, n, MSG_NOSIGNAL)
                             : cio__write_nosigpipe(s->fd, buf, n); /* a pipe */
    return w >= 0 ? w : -errno;
}

/* One non-blocking read, likewise. */
static ssize_t recv_some(cio_stream *s, void *buf, size_t n, unsigned *want)
{
    *want = CIO_READABLE;
    if (s->tp)
        return s->tp->read(s->tp_ctx, buf, n, want);
    ssize_t r = read(s->fd, buf, n);
    return r >= 0 ? r : -errno;
}

/* Wait for what a transport call asked for. On the plain fd the call just
 * returned EAGAIN, which is what the fd layer's fast wait needs (fd.c); a
 * transport's want may come from another cause (a TLS read that needs the
 * fd writable, say, possibly while the sender waits for that too), so it
 * gets the full cio_wait_fd. */
static int wait_want(cio_stream *s, unsigned want, const char *file, int line,
                     const char *func)
{
    int rc = s->tp ? cio_wait_fd_site(s->fd, want, file, line, func)
                   : cio__fd_wait_io(s->fd, want, file, line, func);
    return rc < 0 ? rc : 0;
}

/* Read at least one byte (or the end, or an error) through the transport,
 * waiting as needed. */
static ssize_t read_wait(cio_stream *s, void *buf, size_t n, const char *file,
                         int line, const char *func)
{
    for (;;) {
        cio_task *self;
        int rc = cio__suspend_check(&self, file, line, func);
        if (rc)
            return rc;
        /* Closed by another task while we waited: s->fd is -1 by now, but
         * a transport (TLS) still holds the old number, which may name
         * another descriptor already. */
        if (s->closing)
            return -EBADF;
        if (!s->tp && cio__fd_take_drained(s->fd)) {
            /* The last read was short: the socket was empty then, so wait
             * first (what an EAGAIN would tell, without the system call;
             * data that came since left a readiness hint, and then this
             * returns at once). */
            if ((rc = cio__fd_wait_drained(s->fd, file, line, func)) < 0)
                return rc;
        }
        unsigned want;
        ssize_t r = recv_some(s, buf, n, &want);
        if (!s->tp)
            cio__fd_note_read(s->fd, n, r);
        if (r >= 0 || (r != -EAGAIN && r != -EINTR))
            return r;
        if (r == -EAGAIN && (rc = wait_want(s, want, file, line, func)) < 0)
            return rc;
    }
}

/* The background sender: sends the queue, wakes drainers, then ends. */
static int sender_main(void *arg)
{
    cio_stream *s = arg;
    while (queued(s) && !s->werr && !s->closing) {
        unsigned want;
        ssize_t w = send_some(s, s->wbuf + s->wstart, queued(s), &want);
        if (w > 0) {
            s->wstart += (size_t)w;
            if (queued(s) <= s->low)
                cio_event_set(&s->below_low);
            continue;
        }
        if (w == -EINTR)
            continue;
        if (w != -EAGAIN) {
            s->werr = (int)w;
            break;
        }
        int rc = wait_want(s, want, CIO__HERE);
        if (rc < 0) {
            /* Cancelled (the loop closing, a deadlock being broken) or the
             * fd failed: the queue will not be sent, so the write side is
             * broken. Leaving werr at 0 with bytes queued and no sender
             * would make drain and flush wait for nothing, forever. */
            if (!s->closing)
                s->werr = rc;
            break;
        }
    }
    if (!queued(s))
        s->wstart = s->wend = 0;
    cio_event_set(&s->below_low); /* done or broken: nobody waits in vain */
    cio_event_set(&s->sent_all);
    cio_task *me = s->sender;
    s->sender = NULL;
    cio_task_release(me);
    stream_unref(s);
    return 0;
}

int cio_stream_write(cio_stream *s, const void *buf, size_t n)
{
    check(s, "cio_stream_write");
    /* No buffer is that large (write(2) leaves it undefined), and the
     * queue's size must not wrap. */
    if (n > (size_t)SSIZE_MAX || n > SIZE_MAX - queued(s))
        return -EINVAL;
    if (s->werr)
        return s->werr;
    if (s->write_closed || s->closing)
        return -EPIPE;
    if (n == 0)
        return 0;
    const char *p = buf;
    if (!s->sender && !queued(s) && !s->tp) {
        /* Nothing queued: try to send directly, queue only the rest. (Not
         * through a transport: a TLS write that wants to be retried must
         * be retried with the same bytes, which the queue guarantees.) */
        unsigned want;
        ssize_t w = send_some(s, p, n, &want);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w != -EAGAIN && w != -EINTR) {
            s->werr = (int)w;
            return s->werr;
        }
        if (n == 0)
            return 0;
    }
    if (s->wend + n > s->wcap) {
        if (s->wstart) { /* compact first */
            memmove(s->wbuf, s->wbuf + s->wstart, queued(s));
            s->wend -= s->wstart;
            s->wstart = 0;
        }
        if (s->wend + n > s->wcap) {
            size_t need = s->wend + n; /* (no wrap: checked above) */
            size_t cap = s->wcap ? s->wcap : 4096;
            while (cap < need)
                cap = cap <= SIZE_MAX / 2 ? cap * 2 : need;
            char *nb = realloc(s->wbuf, cap);
            if (!nb)
                return -ENOMEM;
            s->wbuf = nb;
            s->wcap = cap;
        }
    }
    memcpy(s->wbuf + s->wend, p, n);
    s->wend += n;
    if (queued(s) > s->high)
        cio_event_clear(&s->below_low);
    cio_event_clear(&s->sent_all);
    if (!s->sender) {
        int rc = cio_spawn(&s->sender, sender_main, s, "stream-sender fd %d", s->fd);
        if (rc) {
            s->werr = rc;
            cio_event_set(&s->below_low);
            cio_event_set(&s->sent_all);
            return rc;
        }
        s->refs++;
    }
    return 0;
}

size_t cio_stream_write_buffered(const cio_stream *s)
{
    check(s, "cio_stream_write_buffered");
    return queued(s);
}

/* Calls that suspend hold a reference while they run, so that another
 * task closing the stream meanwhile (which wakes them: -EBADF) cannot free
 * it under them. */
static void hold(cio_stream *s) { s->refs++; }
/* Every suspending call is a checkpoint (cio.h): a cancelled caller gets
 * its cancellation even when nothing needs waiting for (data buffered,
 * nothing queued). -EPERM outside a task. */
/* enter(), and a checkpoint: a pending cancellation is reported first,
 * even when the call would not have to wait (data buffered, nothing
 * queued). */
static int checkpoint(const cio_stream *s, const char *what, const char *file,
                      int line, const char *func)
{
    check(s, what);
    cio_task *self;
    return cio__suspend_check(&self, file, line, func);
}
static ssize_t release(cio_stream *s, ssize_t rc)
{
    stream_unref(s);
    return rc;
}

int cio_stream_drain_site(cio_stream *s, const char *file, int line, const char *func)
{
    int rc = checkpoint(s, "cio_stream_drain", file, line, func);
    if (rc)
        return rc;
    hold(s);
    while (!s->werr && queued(s) > s->high) {
        int rc = cio_event_wait_site(&s->below_low, file, line, func);
        if (rc < 0)
            return (int)release(s, rc);
        if (queued(s) <= s->low)
            break;
    }
    return (int)release(s, s->werr);
}

static int wait_sent(cio_stream *s, const char *file, int line, const char *func)
{
    while (!s->werr && queued(s)) {
        int rc = cio_event_wait_site(&s->sent_all, file, line, func);
        if (rc < 0)
            return rc;
    }
    return s->werr;
}

/* Send the transport's clean-close message (TLS close_notify). */
static int transport_shutdown(cio_stream *s, const char *file, int line,
                              const char *func)
{
    if (!s->tp || !s->tp->shutdown)
        return 0;
    for (;;) {
        unsigned want = 0;
        int rc = s->tp->shutdown(s->tp_ctx, &want);
        if (rc != -EAGAIN)
            return rc;
        if ((rc = wait_want(s, want, file, line, func)) < 0)
            return rc;
    }
}

int cio_stream_flush_site(cio_stream *s, const char *file, int line, const char *func)
{
    int rc = checkpoint(s, "cio_stream_flush", file, line, func);
    if (rc)
        return rc;
    hold(s);
    return (int)release(s, wait_sent(s, file, line, func));
}

size_t cio_stream_read_buffered(const cio_stream *s)
{
    check(s, "cio_stream_read_buffered");
    return s->rend - s->rstart;
}

void *cio_stream_transport_ctx(const cio_stream *s, const cio_stream_transport *t)
{
    check(s, "cio_stream_transport_ctx");
    return s->tp == t ? s->tp_ctx : NULL;
}

int cio_stream_set_transport(cio_stream *s, const cio_stream_transport *t, void *ctx)
{
    check(s, "cio_stream_set_transport");
    if (!t || !t->read || !t->write)
        return -EINVAL;
    if (queued(s) || s->sender || s->rend != s->rstart)
        return -EBUSY;
    if (s->tp && s->tp->free)
        s->tp->free(s->tp_ctx);
    s->tp = t;
    s->tp_ctx = ctx;
    return 0;
}

static int write_eof(cio_stream *s, const char *file, int line, const char *func)
{
    if (s->write_closed && s->fd < 0)
        return 0; /* a pipe's write end, closed by the first call */
    int rc = wait_sent(s, file, line, func);
    if (rc)
        return rc;
    rc = transport_shutdown(s, file, line, func);
    if (rc)
        return rc;
    s->write_closed = true;
    if (s->is_socket)
        return shutdown(s->fd, SHUT_WR) == 0 ? 0 : -errno;
    /* A pipe has no half-close: its reader sees the end when the write
     * end closes. That is only ours to do when the fd cannot read
     * (a read-write FIFO or tty would lose its read side). */
    int fl = fcntl(s->fd, F_GETFL);
    if (fl < 0 || (fl & O_ACCMODE) != O_WRONLY)
        return -EOPNOTSUPP;
    rc = cio_close(s->fd);
    s->fd = -1;
    return rc;
}

int cio_stream_write_eof_site(cio_stream *s, const char *file, int line, const char *func)
{
    int rc = checkpoint(s, "cio_stream_write_eof", file, line, func);
    if (rc)
        return rc; /* nothing sent, nothing shut down */
    hold(s);
    return (int)release(s, write_eof(s, file, line, func));
}

/* Close the fd and drop the user's reference. Tasks still inside a call
 * on the stream are woken and see -EBADF (closed while waiting). */
static void stop(cio_stream *s)
{
    cio__debug_untrack(s);
    s->magic = STREAM_CLOSED;
    s->closing = true;
    if (!s->rerr)
        s->rerr = -EBADF;
    if (!s->werr)
        s->werr = -EBADF;
    if (s->sender)
        cio_task_cancel(s->sender);
    cio_close(s->fd); /* wakes a reader or the sender waiting on the fd */
    s->fd = -1;
    cio_event_set(&s->below_low); /* and drainers, flushers */
    cio_event_set(&s->sent_all);
    stream_unref(s);
}

void cio_stream_abort(cio_stream *s)
{
    if (!s)
        return;
    check(s, "cio_stream_abort");
    stop(s);
}

int cio_stream_close_site(cio_stream *s, const char *file, int line, const char *func)
{
    /* Cancelled: nothing more is sent, but the stream is closed all the
     * same and the cancellation reported, as by any suspending call.
     * Outside a task nothing is done (cio_stream_abort closes there). */
    int rc = enter(s, "cio_stream_close");
    if (rc)
        return cio__no_task(file, line, func); /* -EPERM */
    cio_task *self;
    rc = cio__suspend_check(&self, file, line, func);
    if (rc) {
        stop(s);
        return rc;
    }
    hold(s);
    rc = wait_sent(s, file, line, func);
    if (rc == 0 && !s->write_closed && !s->closing)
        rc = transport_shutdown(s, file, line, func);
    if (!s->closing) /* not closed by another task meanwhile */
        stop(s);
    return (int)release(s, rc);
}

/* ---- reading ------------------------------------------------------------- */

static size_t buffered(const cio_stream *s) { return s->rend - s->rstart; }

/* Read more from the fd into the buffer, keeping at most `max` bytes
 * buffered. Returns > 0 bytes added, 0 at the end, or an error. */
static ssize_t fill(cio_stream *s, size_t max, const char *file, int line,
                    const char *func)
{
    if (s->rerr)
        return s->rerr;
    if (s->eof)
        return 0;
    if (s->rstart && s->rend == s->rcap) {
        memmove(s->rbuf, s->rbuf + s->rstart, buffered(s));
        s->rend -= s->rstart;
        s->rstart = 0;
    }
    if (s->rend == s->rcap) {
        /* Double, up to max + 1 bytes (one past the limit tells that it
         * was exceeded); limits near SIZE_MAX must not wrap. */
        size_t cap = !s->rcap ? FIRST_READ_BUF
                     : s->rcap <= SIZE_MAX / 2 ? s->rcap * 2 : SIZE_MAX;
        if (max < SIZE_MAX && cap > max + 1)
            cap = max + 1;
        if (cap <= s->rcap)
            return -EMSGSIZE;
        char *nb = realloc(s->rbuf, cap);
        if (!nb)
            return -ENOMEM;
        s->rbuf = nb;
        s->rcap = cap;
    }
    ssize_t n = read_wait(s, s->rbuf + s->rend, s->rcap - s->rend, file, line, func);
    if (n == 0)
        s->eof = true;
    else if (n > 0)
        s->rend += (size_t)n;
    else if (n != -ECANCELED && n != -ETIMEDOUT)
        s->rerr = (int)n;
    return n;
}

bool cio_stream_at_eof(const cio_stream *s)
{
    check(s, "cio_stream_at_eof");
    return s->eof && !buffered(s);
}

static ssize_t read_some(cio_stream *s, void *buf, size_t n, const char *file, int line,
                         const char *func)
{
    if (n == 0)
        return 0;
    if (!buffered(s)) {
        if (s->rerr)
            return s->rerr;
        if (s->eof)
            return 0;
        if (n >= FIRST_READ_BUF) { /* big read, empty buffer: straight in */
            ssize_t r = read_wait(s, buf, n, file, line, func);
            if (r == 0)
                s->eof = true;
            else if (r < 0 && r != -ECANCELED && r != -ETIMEDOUT)
                s->rerr = (int)r;
            return r;
        }
        ssize_t r = fill(s, s->limit, file, line, func);
        if (r <= 0)
            return r;
    }
    size_t take = buffered(s) < n ? buffered(s) : n;
    memcpy(buf, s->rbuf + s->rstart, take);
    s->rstart += take;
    if (s->rstart == s->rend)
        s->rstart = s->rend = 0;
    return (ssize_t)take;
}

ssize_t cio_stream_read_site(cio_stream *s, void *buf, size_t n, const char *file,
                             int line, const char *func)
{
    int rc = checkpoint(s, "cio_stream_read", file, line, func);
    if (rc)
        return rc;
    hold(s);
    return release(s, read_some(s, buf, n, file, line, func));
}

ssize_t cio_stream_readexactly_site(cio_stream *s, void *buf, size_t n,
                                    const char *file, int line, const char *func)
{
    int rc = checkpoint(s, "cio_stream_readexactly", file, line, func);
    if (rc)
        return rc;
    if (n > (size_t)SSIZE_MAX)
        return -EINVAL; /* the count could not be returned */
    hold(s);
    size_t got = 0;
    while (got < n) {
        ssize_t r = read_some(s, (char *)buf + got, n - got, file, line, func);
        if (r < 0)
            return release(s, r);
        if (r == 0)
            return release(s, -ENODATA);
        got += (size_t)r;
    }
    return release(s, (ssize_t)n);
}

static ssize_t take_record(cio_stream *s, size_t len, char *buf, size_t cap)
{
    memcpy(buf, s->rbuf + s->rstart, len);
    if (len < cap)
        buf[len] = 0;
    s->rstart += len;
    if (s->rstart == s->rend)
        s->rstart = s->rend = 0;
    return (ssize_t)len;
}

static ssize_t read_record(cio_stream *s, const char *sep, size_t seplen, bool line_mode,
                           char *buf, size_t cap, const char *file, int line,
                           const char *func)
{
    if (!sep || seplen == 0 || !buf || cap == 0)
        return -EINVAL;
    size_t max = cap - 1 < s->limit ? cap - 1 : s->limit;
    size_t scanned = 0; /* bytes of the buffer already searched */
    for (;;) {
        size_t avail = buffered(s);
        const char *base = s->rbuf ? s->rbuf + s->rstart : NULL;
        size_t from = scanned >= seplen ? scanned - seplen + 1 : 0;
        for (size_t i = from; base && i + seplen <= avail; i++) {
            if (memcmp(base + i, sep, seplen) == 0) {
                size_t len = i + seplen;
                if (len > max)
                    return -EMSGSIZE;
                return take_record(s, len, buf, cap);
            }
        }
        scanned = avail;
        if (avail > max)
            return -EMSGSIZE;
        /* A broken connection (reset...): the complete records buffered
         * before it were handed out above; an incomplete one is not
         * passed off as a record (it stays buffered for read()). */
        if (s->rerr)
            return s->rerr;
        if (s->eof) {
            if (!avail)
                return 0;
            if (line_mode)
                return take_record(s, avail, buf, cap);
            s->rstart = s->rend = 0; /* the partial record is consumed */
            return -ENODATA;
        }
        ssize_t r = fill(s, max <= SIZE_MAX - seplen ? max + seplen : SIZE_MAX,
                         file, line, func);
        if (r < 0 && !s->rerr)
            return r; /* cancelled, timed out, or over the limit */
        /* r < 0 with s->rerr set (reset...): the loop above hands out the
         * complete records buffered first, then the error. */
    }
}

ssize_t cio_stream_readuntil_site(cio_stream *s, const void *sep, size_t seplen,
                                  char *buf, size_t cap, const char *file, int line,
                                  const char *func)
{
    int rc = checkpoint(s, "cio_stream_readuntil", file, line, func);
    if (rc)
        return rc;
    hold(s);
    return release(s, read_record(s, sep, seplen, false, buf, cap, file, line, func));
}

ssize_t cio_stream_readline_site(cio_stream *s, char *buf, size_t cap, const char *file,
                                 int line, const char *func)
{
    int rc = checkpoint(s, "cio_stream_readline", file, line, func);
    if (rc)
        return rc;
    hold(s);
    return release(s, read_record(s, "\n", 1, true, buf, cap, file, line, func));
}

/* Gather everything up to the end in the read buffer (so that nothing is
 * lost to a cancellation), then hand the buffer itself over. */
static ssize_t read_all(cio_stream *s, size_t max, char **out, const char *file,
                        int line, const char *func)
{
    if (max > (size_t)SSIZE_MAX - 1)
        max = (size_t)SSIZE_MAX - 1; /* the length must fit the return */
    for (;;) {
        if (buffered(s) > max)
            return -EMSGSIZE;
        if (s->eof)
            break;
        ssize_t r = fill(s, max, file, line, func);
        if (r < 0)
            return r;
    }
    size_t len = buffered(s);
    if (s->rstart) {
        memmove(s->rbuf, s->rbuf + s->rstart, len);
        s->rstart = 0;
        s->rend = len;
    }
    if (len + 1 > s->rcap) {
        char *nb = realloc(s->rbuf, len + 1);
        if (!nb)
            return -ENOMEM;
        s->rbuf = nb;
        s->rcap = len + 1;
    }
    s->rbuf[len] = 0;
    *out = s->rbuf;
    s->rbuf = NULL;
    s->rcap = s->rstart = s->rend = 0;
    return (ssize_t)len;
}

ssize_t cio_stream_read_all_site(cio_stream *s, size_t max, char **out,
                                 const char *file, int line, const char *func)
{
    if (out)
        *out = NULL;
    int rc = checkpoint(s, "cio_stream_read_all", file, line, func);
    if (rc)
        return rc;
    if (!out)
        return -EINVAL;
    hold(s);
    return release(s, read_all(s, max, out, file, line, func));
}

/* The scripted peer (cio/testing.h, "The scripted peer"): the far end of a
 * real connected socket pair, driven step by step by a task of its own on
 * the loop, with cio's own fd calls, so the code under test meets real
 * kernel behaviour: short reads, full buffers, EOF, RST. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cio/testing.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum step_kind {
    STEP_SEND,
    STEP_EXPECT,
    STEP_READ,
    STEP_EXPECT_EOF,
    STEP_DELAY,
    STEP_STALL,
    STEP_EOF,
    STEP_RESET,
    STEP_CLOSE,
    STEP_CALL,
};

typedef struct step {
    enum step_kind kind;
    unsigned char *data; /* SEND, EXPECT: owned copy */
    size_t n;            /* bytes (SEND, EXPECT, READ) */
    size_t chunk;        /* SEND, READ: at most this much per call; 0 = all */
    int64_t interval;    /* SEND, READ with chunk: pause before each later
                          * chunk; DELAY: the delay */
    int (*fn)(void *);   /* CALL */
    void *arg;
} step;

struct cio_test_peer {
    int fd;               /* the far end; -1 once closed */
    bool tcp;
    bool broken;          /* a step could not be added */
    step *steps;
    size_t n_steps, cap_steps, done;
    cio_task *task;
    int result;
    bool finished;
    uint64_t sent, received;
    char message[256];
};

static const char *step_name(enum step_kind k)
{
    static const char *const names[] = {"send", "expect", "read", "expect_eof",
                                        "delay", "stall", "eof", "reset",
                                        "close", "call"};
    return names[k];
}

static void say(cio_test_peer *p, const char *fmt, ...) CIO__PRINTF(2, 3);
static void say(cio_test_peer *p, const char *fmt, ...)
{
    int n = snprintf(p->message, sizeof p->message, "step %zu (%s): ", p->done + 1,
                     p->done < p->n_steps ? step_name(p->steps[p->done].kind) : "end");
    if (n < 0 || (size_t)n >= sizeof p->message)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->message + n, sizeof p->message - (size_t)n, fmt, ap);
    va_end(ap);
}

/* ---- the pair -------------------------------------------------------------- */

static int set_buffers(int fd, int size)
{
    if (size <= 0)
        return 0;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) != 0)
        return -errno;
    return 0;
}

/* A TCP pair over 127.0.0.1: listen on port 0, connect (loopback completes
 * in the kernel at once), accept the connection whose source port is ours
 * (another process may connect to the port meanwhile: those are closed). */
static int tcp_pair(int fds[2], int buffer)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        return -errno;
    int cfd = -1, rc;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 8) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &len) != 0)
        goto fail;
    cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (cfd < 0)
        goto fail;
    /* (before connecting: the window is agreed in the handshake) */
    if ((rc = set_buffers(cfd, buffer)) != 0 || (rc = set_buffers(lfd, buffer)) != 0) {
        errno = -rc;
        goto fail;
    }
    if (connect(cfd, (struct sockaddr *)&a, sizeof a) != 0)
        goto fail;
    struct sockaddr_in mine;
    len = sizeof mine;
    if (getsockname(cfd, (struct sockaddr *)&mine, &len) != 0)
        goto fail;
    for (int tries = 0; tries < 64; tries++) {
        struct sockaddr_in from;
        len = sizeof from;
        int afd = accept4(lfd, (struct sockaddr *)&from, &len, SOCK_CLOEXEC);
        if (afd < 0)
            goto fail;
        if (from.sin_port == mine.sin_port &&
            from.sin_addr.s_addr == mine.sin_addr.s_addr) {
            close(lfd);
            int one = 1;
            setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            setsockopt(afd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            fds[0] = cfd;
            fds[1] = afd;
            return 0;
        }
        close(afd); /* someone else's */
    }
    errno = EADDRINUSE;
fail:
    rc = -errno;
    if (cfd >= 0)
        close(cfd);
    close(lfd);
    return rc;
}

int cio_test_peer_open(cio_test_peer **out, int *local_fd, const cio_test_peer_options *opts)
{
    *out = NULL;
    *local_fd = -1;
    cio_test_peer *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    int fds[2], rc = 0;
    p->tcp = opts && opts->tcp;
    int buffer = opts ? opts->buffer : 0;
    if (p->tcp) {
        rc = tcp_pair(fds, buffer);
    } else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        rc = -errno;
    } else if ((rc = set_buffers(fds[0], buffer)) == 0) {
        rc = set_buffers(fds[1], buffer);
        if (rc) {
            close(fds[0]);
            close(fds[1]);
        }
    } else {
        close(fds[0]);
        close(fds[1]);
    }
    if (rc) {
        free(p);
        return rc;
    }
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        fcntl(fds[i], F_SETFL, fl | O_NONBLOCK);
    }
    p->fd = fds[1];
    snprintf(p->message, sizeof p->message, "not started");
    *out = p;
    *local_fd = fds[0];
    return 0;
}

/* ---- building the script ----------------------------------------------------- */

static step *add(cio_test_peer *p, enum step_kind kind)
{
    if (!p)
        return NULL;
    if (p->n_steps == p->cap_steps) {
        size_t cap = p->cap_steps ? 2 * p->cap_steps : 8;
        step *s = realloc(p->steps, cap * sizeof *s);
        if (!s) {
            p->broken = true;
            return NULL;
        }
        p->steps = s;
        p->cap_steps = cap;
    }
    step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    return s;
}

static int add_data(cio_test_peer *p, enum step_kind kind, const void *data, size_t n,
                    size_t chunk, int64_t interval)
{
    if (!p || (n && !data) || interval < 0) {
        if (p)
            p->broken = true;
        return -EINVAL;
    }
    unsigned char *copy = malloc(n ? n : 1);
    if (!copy) {
        p->broken = true;
        return -ENOMEM;
    }
    memcpy(copy, data, n);
    step *s = add(p, kind);
    if (!s) {
        free(copy);
        return -ENOMEM;
    }
    s->data = copy;
    s->n = n;
    s->chunk = chunk;
    s->interval = interval;
    return 0;
}

int cio_test_peer_send(cio_test_peer *p, const void *data, size_t n)
{
    return add_data(p, STEP_SEND, data, n, 0, 0);
}

int cio_test_peer_send_str(cio_test_peer *p, const char *s)
{
    return add_data(p, STEP_SEND, s, s ? strlen(s) : 0, 0, 0);
}

int cio_test_peer_trickle(cio_test_peer *p, const void *data, size_t n, size_t chunk,
                          int64_t interval)
{
    if (!chunk) {
        if (p)
            p->broken = true;
        return -EINVAL;
    }
    return add_data(p, STEP_SEND, data, n, chunk, interval);
}

int cio_test_peer_expect(cio_test_peer *p, const void *data, size_t n)
{
    return add_data(p, STEP_EXPECT, data, n, 0, 0);
}

int cio_test_peer_expect_str(cio_test_peer *p, const char *s)
{
    return add_data(p, STEP_EXPECT, s, s ? strlen(s) : 0, 0, 0);
}

static int add_simple(cio_test_peer *p, enum step_kind kind, size_t n, size_t chunk,
                      int64_t interval)
{
    if (!p)
        return -EINVAL;
    if (interval < 0) {
        p->broken = true;
        return -EINVAL;
    }
    step *s = add(p, kind);
    if (!s)
        return -ENOMEM;
    s->n = n;
    s->chunk = chunk;
    s->interval = interval;
    return 0;
}

int cio_test_peer_read(cio_test_peer *p, size_t n) { return add_simple(p, STEP_READ, n, 0, 0); }

int cio_test_peer_read_slowly(cio_test_peer *p, size_t n, size_t chunk, int64_t interval)
{
    if (p && !chunk) {
        p->broken = true;
        return -EINVAL;
    }
    return add_simple(p, STEP_READ, n, chunk, interval);
}

int cio_test_peer_expect_eof(cio_test_peer *p) { return add_simple(p, STEP_EXPECT_EOF, 0, 0, 0); }
int cio_test_peer_delay(cio_test_peer *p, int64_t ns) { return add_simple(p, STEP_DELAY, 0, 0, ns); }
int cio_test_peer_stall(cio_test_peer *p) { return add_simple(p, STEP_STALL, 0, 0, 0); }
int cio_test_peer_eof(cio_test_peer *p) { return add_simple(p, STEP_EOF, 0, 0, 0); }
int cio_test_peer_close(cio_test_peer *p) { return add_simple(p, STEP_CLOSE, 0, 0, 0); }

int cio_test_peer_reset(cio_test_peer *p)
{
    if (p && !p->tcp) {
        p->broken = true;
        return -ENOTSUP;
    }
    return add_simple(p, STEP_RESET, 0, 0, 0);
}

int cio_test_peer_call(cio_test_peer *p, int (*fn)(void *), void *arg)
{
    if (!fn) {
        if (p)
            p->broken = true;
        return -EINVAL;
    }
    int rc = add_simple(p, STEP_CALL, 0, 0, 0);
    if (rc == 0) {
        p->steps[p->n_steps - 1].fn = fn;
        p->steps[p->n_steps - 1].arg = arg;
    }
    return rc;
}

/* ---- running it ---------------------------------------------------------------- */

static void close_far(cio_test_peer *p, bool reset)
{
    if (p->fd < 0)
        return;
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    cio_close(p->fd);
    p->fd = -1;
}

static int do_send(cio_test_peer *p, const step *s)
{
    size_t off = 0;
    while (off < s->n) {
        size_t n = s->n - off;
        if (s->chunk && n > s->chunk)
            n = s->chunk;
        if (off && s->interval) {
            int rc = cio_sleep(s->interval);
            if (rc) {
                say(p, "cancelled after %zu of %zu bytes", off, s->n);
                return rc;
            }
        }
        ssize_t w = cio_send(p->fd, s->data + off, n, 0);
        if (w < 0) {
            say(p, "send failed after %zu of %zu bytes: %s", off, s->n, cio_strerror((int)w));
            return (int)w;
        }
        off += (size_t)w;
        p->sent += (uint64_t)w;
    }
    return 0;
}

static void printable(char *out, size_t cap, unsigned char c)
{
    if (c >= 0x20 && c < 0x7f && c != '\'')
        snprintf(out, cap, "'%c'", c);
    else
        snprintf(out, cap, "0x%02x", c);
}

/* EXPECT (s->data set) or READ: n bytes, chunk at a time. */
static int do_read(cio_test_peer *p, const step *s)
{
    unsigned char buf[4096];
    size_t off = 0;
    bool to_eof = s->kind == STEP_READ && s->n == CIO_TEST_PEER_ALL;
    while (to_eof || off < s->n) {
        size_t n = sizeof buf;
        if (!to_eof && s->n - off < n)
            n = s->n - off;
        if (s->chunk && n > s->chunk)
            n = s->chunk;
        if (off && s->chunk && s->interval) {
            int rc = cio_sleep(s->interval);
            if (rc) {
                say(p, "cancelled after %zu bytes", off);
                return rc;
            }
        }
        ssize_t r = cio_recv(p->fd, buf, n, 0);
        if (r < 0) {
            say(p, "receive failed after %zu bytes: %s", off, cio_strerror((int)r));
            return (int)r;
        }
        if (r == 0) {
            if (to_eof)
                return 0;
            say(p, "end of stream after %zu of %zu bytes", off, s->n);
            return -EPROTO;
        }
        p->received += (uint64_t)r;
        if (s->data) {
            for (size_t i = 0; i < (size_t)r; i++)
                if (buf[i] != s->data[off + i]) {
                    char got[8], want[8];
                    printable(got, sizeof got, buf[i]);
                    printable(want, sizeof want, s->data[off + i]);
                    say(p, "byte %zu is %s, expected %s", off + i, got, want);
                    return -EPROTO;
                }
        }
        off += (size_t)r;
    }
    return 0;
}

static int run_step(cio_test_peer *p, const step *s)
{
    if (p->fd < 0 && s->kind != STEP_DELAY && s->kind != STEP_CALL) {
        say(p, "the far end is closed already");
        return -EBADF;
    }
    switch (s->kind) {
    case STEP_SEND:
        return do_send(p, s);
    case STEP_EXPECT:
    case STEP_READ:
        return do_read(p, s);
    case STEP_EXPECT_EOF: {
        unsigned char c;
        ssize_t r = cio_recv(p->fd, &c, 1, 0);
        if (r == 0)
            return 0;
        if (r > 0) {
            p->received++;
            say(p, "a byte came instead of the end of the stream");
            return -EPROTO;
        }
        say(p, "%s", cio_strerror((int)r));
        return (int)r;
    }
    case STEP_DELAY: {
        int rc = cio_sleep(s->interval);
        if (rc)
            say(p, "cancelled");
        return rc;
    }
    case STEP_STALL: {
        int rc = cio_sleep_forever();
        say(p, "stalled until cancelled");
        return rc;
    }
    case STEP_EOF: {
        int rc = cio_shutdown(p->fd, SHUT_WR);
        if (rc)
            say(p, "shutdown: %s", cio_strerror(rc));
        return rc;
    }
    case STEP_RESET:
        close_far(p, true);
        return 0;
    case STEP_CLOSE:
        close_far(p, false);
        return 0;
    case STEP_CALL: {
        int rc = s->fn(s->arg);
        if (rc < 0) {
            say(p, "the call returned %d (%s)", rc, cio_strerror(rc));
            return rc;
        }
        return 0;
    }
    }
    return -EINVAL;
}

static int script_task(void *arg)
{
    cio_test_peer *p = arg;
    int rc = 0;
    for (; p->done < p->n_steps; p->done++) {
        rc = run_step(p, &p->steps[p->done]);
        if (rc)
            break;
    }
    if (!rc)
        snprintf(p->message, sizeof p->message, "all %zu steps done", p->n_steps);
    p->result = rc;
    p->finished = true;
    return rc;
}

int cio_test_peer_start(cio_test_peer *p)
{
    if (!p)
        return -EINVAL;
    if (!cio_loop_current())
        return -EPERM;
    if (p->task || p->finished)
        return -EBUSY;
    if (p->broken)
        return -EINVAL;
    snprintf(p->message, sizeof p->message, "running");
    return cio_spawn(&p->task, script_task, p, "test-peer");
}

int cio_test_peer_wait_site(cio_test_peer *p, const char *file, int line, const char *func)
{
    (void)file;
    (void)line;
    (void)func;
    if (!p || !p->task)
        return -EINVAL;
    int status = 0;
    int rc = cio_join(p->task, &status);
    if (rc)
        return rc; /* the waiter was cancelled: the script goes on */
    return status;
}

const char *cio_test_peer_message(const cio_test_peer *p) { return p ? p->message : "(null)"; }
size_t cio_test_peer_steps_done(const cio_test_peer *p) { return p ? p->done : 0; }
uint64_t cio_test_peer_bytes_sent(const cio_test_peer *p) { return p ? p->sent : 0; }
uint64_t cio_test_peer_bytes_received(const cio_test_peer *p) { return p ? p->received : 0; }

int cio_test_peer_free_site(cio_test_peer *p, const char *file, int line, const char *func)
{
    (void)file;
    (void)line;
    (void)func;
    if (!p)
        return 0;
    int rc = p->result;
    if (p->task) {
        if (!cio_task_done(p->task) && !cio_loop_current())
            return -EBUSY; /* (cannot wait for it: p stays, the task uses it) */
        if (!cio_task_done(p->task)) {
            cio_task_cancel(p->task);
            /* Shielded: a cancelled caller still waits for the task,
             * which uses p until it ends. */
            cio_scope sh;
            cio_shield_enter(&sh, CIO_FOREVER);
            cio_join(p->task, NULL);
            cio_scope_exit(&sh);
        }
        rc = p->result;
        cio_task_release(p->task);
    }
    close_far(p, false);
    for (size_t i = 0; i < p->n_steps; i++)
        free(p->steps[i].data);
    free(p->steps);
    free(p);
    return rc;
}

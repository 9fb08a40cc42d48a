/* The fd layer under the socket calls: edge-triggered registrations kept
 * between waits, a reader and a writer on one socket through cio_recv /
 * cio_send, cio_close waking both, numbers closed behind the loop's back,
 * the fd table growing while tasks wait, and the loop's count of I/O
 * waits (deadlock detection) staying right. */
#include "cio.h"
#include "cio_internal.h" /* loop->n_io_watches, to check the count */
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static size_t io_watches(void) { return cio_loop_current()->n_io_watches; }

/* ---- full duplex through cio_recv / cio_send on one socket --------------- */

#define DUPLEX_BYTES (4u << 20)

static int sv[2];

/* The far end: echoes everything back, byte for byte. */
static int far_echo(void *arg)
{
    (void)arg;
    static char buf[32768];
    size_t total = 0;
    while (total < DUPLEX_BYTES) {
        ssize_t n = cio_recv(sv[1], buf, sizeof buf, 0);
        if (n <= 0)
            return n < 0 ? (int)n : -EPIPE;
        if (cio_send(sv[1], buf, (size_t)n, 0) != n)
            return -EIO;
        total += (size_t)n;
    }
    return 0;
}

/* Near end, writer: sends a counting pattern while the reader reads the
 * echo on the same fd at the same time. */
static int near_writer(void *arg)
{
    (void)arg;
    static unsigned char buf[65536];
    uint32_t k = 0;
    for (size_t sent = 0; sent < DUPLEX_BYTES; sent += sizeof buf) {
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (unsigned char)(k++ * 7);
        ssize_t n = cio_send(sv[0], buf, sizeof buf, 0);
        if (n != (ssize_t)sizeof buf)
            return n < 0 ? (int)n : -EIO;
    }
    return 0;
}

static int near_reader(void *arg)
{
    (void)arg;
    static unsigned char buf[20000]; /* not a divisor: reads straddle writes */
    uint32_t k = 0;
    size_t total = 0;
    while (total < DUPLEX_BYTES) {
        ssize_t n = cio_recv(sv[0], buf, sizeof buf, 0);
        if (n <= 0)
            return n < 0 ? (int)n : -EPIPE;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != (unsigned char)(k++ * 7))
                return -EILSEQ;
        total += (size_t)n;
    }
    return 0;
}

TASK_TEST(fd_io_full_duplex_reader_and_writer_on_one_socket)
{
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    int small = 8192; /* small buffers: many waits in both directions */
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    cio_task *t[3];
    ASSERT_EQ(cio_spawn(&t[0], far_echo, NULL, "far"), 0);
    ASSERT_EQ(cio_spawn(&t[1], near_writer, NULL, "writer"), 0);
    ASSERT_EQ(cio_spawn(&t[2], near_reader, NULL, "reader"), 0);
    int st[3];
    ASSERT_EQ(cio_gather(t, 3, st, CIO_GATHER_ALL), 0);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(st[i], 0);
        cio_task_release(t[i]);
    }
    ASSERT_EQ(io_watches(), 0);
    cio_close(sv[0]);
    cio_close(sv[1]);
}

/* ---- bursts with pauses: edges that come while nobody waits -------------- */

static int burster(void *arg)
{
    (void)arg;
    char chunk[1000];
    memset(chunk, 'b', sizeof chunk);
    for (int i = 0; i < 200; i++) {
        /* Sometimes while the reader waits, sometimes while it sleeps. */
        if (cio_sleep((i % 3) * CIO_MSEC) != 0)
            return -ECANCELED;
        if (cio_send(sv[1], chunk, (size_t)(i % 7 + 1) * 100, 0) < 0)
            return -EIO;
    }
    cio_shutdown(sv[1], SHUT_WR);
    return 0;
}

TASK_TEST_VIRTUAL(fd_io_bursts_and_pauses_lose_no_wakeup)
{
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    size_t expect = 0;
    for (int i = 0; i < 200; i++)
        expect += (size_t)(i % 7 + 1) * 100;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, burster, NULL, "burster"), 0);
    char buf[333];
    size_t total = 0;
    int reads = 0;
    ssize_t n;
    while ((n = cio_recv(sv[0], buf, sizeof buf, 0)) > 0) {
        total += (size_t)n;
        /* Let edges pile up while we do not wait. */
        if (++reads % 5 == 0)
            ASSERT_EQ(cio_sleep(2 * CIO_MSEC), 0);
    }
    ASSERT_EQ(n, 0);
    ASSERT_EQ(total, expect);
    ASSERT_EQ(cio_join(t, NULL), 0);
    cio_task_release(t);
    cio_close(sv[0]);
    cio_close(sv[1]);
}

/* ---- cio_close wakes a reader and a writer -------------------------------- */

static int blocked_recv(void *arg)
{
    char b[8];
    return (int)cio_recv(*(int *)arg, b, sizeof b, 0);
}

static int blocked_send(void *arg)
{
    static char big[1 << 16];
    for (int i = 0; i < 1000; i++) {
        ssize_t n = cio_send(*(int *)arg, big, sizeof big, 0);
        if (n < 0)
            return (int)n;
    }
    return -EIO; /* never filled the socket: the test is broken */
}

TASK_TEST(fd_io_close_wakes_reader_and_writer_with_ebadf)
{
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    cio_task *r, *w;
    ASSERT_EQ(cio_spawn(&r, blocked_recv, &sv[0], "reader"), 0);
    ASSERT_EQ(cio_spawn(&w, blocked_send, &sv[0], "writer"), 0);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(io_watches(), 2);
    ASSERT_EQ(cio_close(sv[0]), 0);
    ASSERT_EQ(io_watches(), 0);
    int st;
    ASSERT_EQ(cio_join(r, &st), 0);
    ASSERT_EQ(st, -EBADF);
    ASSERT_EQ(cio_join(w, &st), 0);
    ASSERT_EQ(st, -EBADF);
    cio_task_release(r);
    cio_task_release(w);
    cio_close(sv[1]);
}

/* ---- numbers closed with close(2) and reused ----------------------------- */

TASK_TEST(fd_io_numbers_closed_behind_the_loops_back)
{
    /* A task waits in cio_recv; the fd is closed behind the loop's back
     * (close(2), not cio_close), and cio_socket gets the same number: the
     * waiter learns its descriptor is gone (-EBADF) instead of hanging or
     * reading someone else's socket. */
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    int num = sv[0];
    cio_task *r;
    ASSERT_EQ(cio_spawn(&r, blocked_recv, &num, "orphan"), 0);
    ASSERT_EQ(cio_yield(), 0);
    close(sv[0]);
    int fresh = cio_socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_EQ(fresh, num);
    int st;
    ASSERT_EQ(cio_join(r, &st), 0);
    ASSERT_EQ(st, -EBADF);
    cio_task_release(r);
    ASSERT_EQ(io_watches(), 0);
    /* The new socket behind that number works normally. */
    int pair2[2];
    cio_close(fresh);
    cio_close(sv[1]);
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair2), 0);
    char b[4];
    ASSERT_EQ(cio_send(pair2[1], "abc", 3, 0), 3);
    ASSERT_EQ(cio_recv(pair2[0], b, sizeof b, 0), 3);
    /* Registered, closed with close(2), the number reused outside cio:
     * cio_wait_fd notices (its re-arm finds no registration) and the
     * socket calls work after it. */
    int n0 = pair2[0];
    close(pair2[0]);
    int pair3[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair3), 0);
    ASSERT_EQ(pair3[0], n0);
    ASSERT_EQ(write(pair3[1], "x", 1), 1);
    ASSERT_EQ(cio_wait_fd(pair3[0], CIO_READABLE), CIO_READABLE);
    ASSERT_EQ(cio_recv(pair3[0], b, sizeof b, 0), 1);
    cio_task *r2;
    ASSERT_EQ(cio_spawn(&r2, blocked_recv, &pair3[0], "reader"), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(write(pair3[1], "yz", 2), 2);
    ASSERT_EQ(cio_join(r2, &st), 0);
    ASSERT_EQ(st, 2);
    cio_task_release(r2);
    cio_close(pair2[1]);
    cio_close(pair3[0]);
    cio_close(pair3[1]);
}

/* ---- the table grows while tasks wait ------------------------------------ */

TASK_TEST(fd_io_table_grows_under_waiting_tasks)
{
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    cio_task *low;
    ASSERT_EQ(cio_spawn(&low, blocked_recv, &sv[0], "low"), 0);
    ASSERT_EQ(cio_yield(), 0);
    /* A high number: the table is reallocated under the parked task. */
    int high[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, high), 0);
    int h = fcntl(high[0], F_DUPFD_CLOEXEC, 900);
    ASSERT_GE(h, 900);
    close(high[0]);
    cio_task *hi;
    ASSERT_EQ(cio_spawn(&hi, blocked_recv, &h, "high"), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(io_watches(), 2);
    ASSERT_EQ(write(sv[1], "low", 3), 3);
    ASSERT_EQ(write(high[1], "high", 4), 4);
    int st;
    ASSERT_EQ(cio_join(low, &st), 0);
    ASSERT_EQ(st, 3);
    ASSERT_EQ(cio_join(hi, &st), 0);
    ASSERT_EQ(st, 4);
    cio_task_release(low);
    cio_task_release(hi);
    cio_close(sv[0]);
    cio_close(sv[1]);
    cio_close(h);
    cio_close(high[1]);
}

/* ---- the I/O count keeps deadlock detection honest ------------------------ */

TASK_TEST_VIRTUAL(fd_io_wait_count_stays_right)
{
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    /* Waits that end by cancellation, by deadline and by data leave the
     * count at zero... */
    for (int i = 0; i < 3; i++) {
        cio_task *t;
        ASSERT_EQ(cio_spawn(&t, blocked_recv, &sv[0], "r%d", i), 0);
        ASSERT_EQ(cio_yield(), 0);
        ASSERT_EQ(io_watches(), 1);
        if (i == 0)
            cio_task_cancel(t);
        else if (i == 1)
            ASSERT_EQ(write(sv[1], "d", 1), 1);
        int st;
        if (i == 2) {
            cio_scope s;
            cio_timeout_enter(&s, 10 * CIO_MSEC);
            ASSERT_EQ(cio_join(t, &st), -ETIMEDOUT);
            cio_scope_exit(&s);
            cio_task_cancel(t);
        }
        ASSERT_EQ(cio_join(t, &st), 0);
        ASSERT_EQ(st, i == 1 ? 1 : -ECANCELED);
        cio_task_release(t);
        ASSERT_EQ(io_watches(), 0);
    }
    cio_close(sv[0]);
    cio_close(sv[1]);
}

/* ...so that a task waiting on a socket nobody will ever write to, with
 * nothing else alive, is a deadlock only if no I/O is registered: here the
 * peer is still open, so the loop must wait, and a deadline ends it. */
TASK_TEST_VIRTUAL(fd_io_virtual_clock_jumps_over_idle_sockets)
{
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    cio_scope s;
    cio_timeout_enter(&s, 3 * CIO_SEC);
    char b[4];
    ASSERT_EQ(cio_recv(sv[0], b, sizeof b, 0), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 3 * CIO_SEC); /* the virtual clock jumped */
    cio_close(sv[0]);
    cio_close(sv[1]);
}

/* With CIO_DEBUG=1 every wait re-arms: a number closed with close(2) and
 * reused outside cio is caught (and reported on stderr) instead of making
 * cio_recv wait for an edge that never comes. */
static int debug_reuse_main(void *arg)
{
    (void)arg;
    int a[2], b[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, a), 0);
    char c;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, blocked_recv, &a[0], "first"), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(write(a[1], "1", 1), 1);
    int st;
    ASSERT_EQ(cio_join(t, &st), 0);
    ASSERT_EQ(st, 1);
    cio_task_release(t);
    int num = a[0];
    close(a[0]); /* the mistake */
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, b), 0);
    ASSERT_EQ(b[0], num);
    ASSERT_EQ(cio_spawn(&t, blocked_recv, &b[0], "second"), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(write(b[1], "22", 2), 2);
    cio_scope s;
    cio_timeout_enter(&s, 5 * CIO_SEC);
    ASSERT_EQ(cio_join(t, &st), 0);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    ASSERT_EQ(st, 2);
    cio_task_release(t);
    (void)c;
    cio_close(a[1]);
    cio_close(b[0]);
    cio_close(b[1]);
    return 0;
}

TEST(fd_io_debug_mode_catches_close_and_reuse)
{
    setenv("CIO_DEBUG", "1", 1);
    ASSERT_EQ(cio_run(debug_reuse_main, NULL), 0);
}

/* ---- woken for readiness, then closed before it ran ----------------------- */

/* The reader is woken by readiness but has not run yet when another task
 * closes the fd and a new socket takes its number: the reader's call must
 * return -EBADF, not read the new socket's bytes. */
static int reuse_sp[2];
static ssize_t reuse_got = -999;
static char reuse_buf[64];

static int reuse_reader(void *arg)
{
    (void)arg;
    reuse_got = cio_recv(reuse_sp[0], reuse_buf, sizeof reuse_buf, 0);
    return 0;
}

/* (FIFO scheduling: the reader, woken after this task yielded, runs after it;
 * seeded, it may run first and read "old", and the race is not set up.) */
TASK_TEST_FIFO(fd_io_woken_then_closed_and_reused_gets_ebadf)
{
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, reuse_sp), 0);
    cio_task *r;
    ASSERT_EQ(cio_spawn(&r, reuse_reader, NULL, "reader"), 0);
    ASSERT_EQ(cio_yield(), 0); /* the reader parks in cio_recv */
    ASSERT_EQ(write(reuse_sp[1], "old", 3), 3);
    ASSERT_EQ(cio_yield(), 0); /* this turn's poll wakes it, queued after us */
    int old = reuse_sp[0];
    ASSERT_EQ(cio_close(reuse_sp[0]), 0);
    close(reuse_sp[1]);
    int n[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, n), 0);
    cio_test_note("old fd %d, new fds %d %d", old, n[0], n[1]);
    ASSERT_EQ(write(n[1], "SOMEONE ELSE'S DATA", 19), 19);
    ASSERT_EQ(cio_join(r, NULL), 0);
    cio_task_release(r);
    ASSERT_EQ(reuse_got, -EBADF);
    close(n[0]);
    close(n[1]);
}

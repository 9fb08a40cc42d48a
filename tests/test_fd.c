/* cio_wait_fd over the epoll backend: readiness, cancellation, deadlines,
 * hang-ups and bad input. */
#include "cio.h"
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <stdint.h>
#include <unistd.h>

static int fds[2];

static int writer(void *arg)
{
    (void)arg;
    int rc = cio_sleep(5 * CIO_MSEC);
    if (rc)
        return rc;
    return (int)write(fds[1], "x", 1);
}

static int readable_main(void *arg)
{
    (void)arg;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, writer, NULL, "writer"), 0);
    int64_t t0 = cio_now();
    ASSERT_EQ(cio_wait_fd(fds[0], CIO_READABLE), CIO_READABLE);
    ASSERT_GE(cio_now() - t0, 5 * CIO_MSEC);
    char c;
    ASSERT_EQ(read(fds[0], &c, 1), 1);
    ASSERT_EQ(cio_join(t, NULL), 0);
    cio_task_release(t);
    /* A pipe's write end is writable at once. */
    ASSERT_EQ(cio_wait_fd(fds[1], CIO_WRITABLE | CIO_READABLE), CIO_WRITABLE);
    /* Deadline while waiting: -ETIMEDOUT and the fd can be waited on again. */
    cio_scope s;
    cio_timeout_enter(&s, 2 * CIO_MSEC);
    ASSERT_EQ(cio_wait_fd(fds[0], CIO_READABLE), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_EQ(write(fds[1], "y", 1), 1);
    ASSERT_EQ(cio_wait_fd(fds[0], CIO_READABLE), CIO_READABLE);
    ASSERT_EQ(read(fds[0], &c, 1), 1);
    /* Hang-up: the write end closes; the reader wakes, read sees EOF. */
    close(fds[1]);
    ASSERT_EQ(cio_wait_fd(fds[0], CIO_READABLE), CIO_READABLE);
    ASSERT_EQ(read(fds[0], &c, 1), 0);
    close(fds[0]);
    /* Bad input. */
    ASSERT_EQ(cio_wait_fd(-1, CIO_READABLE), -EINVAL);
    ASSERT_EQ(cio_wait_fd(0, 0), -EINVAL);
    ASSERT_EQ(cio_wait_fd(0, 8), -EINVAL);
    ASSERT_EQ(cio_wait_fd(fds[0], CIO_READABLE), -EBADF); /* closed */
    return 0;
}

TEST(fd_wait_readable_writable_hangup_deadline)
{
    ASSERT_EQ(pipe2(fds, O_NONBLOCK), 0);
    ASSERT_EQ(cio_run(readable_main, NULL), 0);
}

static int fd_waiter(void *arg)
{
    (void)arg;
    return cio_wait_fd(fds[0], CIO_READABLE);
}

static int cancel_main(void *arg)
{
    (void)arg;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, fd_waiter, NULL, "fd-waiter"), 0);
    ASSERT_EQ(cio_yield(), 0);
    cio_task_cancel(t);
    int status;
    ASSERT_EQ(cio_join(t, &status), 0);
    ASSERT_EQ(status, -ECANCELED);
    cio_task_release(t);
    /* The cancelled wait left no registration behind: a new one works. */
    ASSERT_EQ(write(fds[1], "z", 1), 1);
    ASSERT_EQ(cio_wait_fd(fds[0], CIO_READABLE), CIO_READABLE);
    return 0;
}

TEST(fd_wait_cancelled_unregisters)
{
    ASSERT_EQ(pipe2(fds, O_NONBLOCK), 0);
    ASSERT_EQ(cio_run(cancel_main, NULL), 0);
    close(fds[0]);
    close(fds[1]);
}

/* Several waiters in one direction: readiness wakes them all (edge
 * triggering would strand a waiter left asleep), a cancelled one leaves
 * the others waiting, and cio_close wakes whoever is left with -EBADF. */
static int woken_rc[4];
static int indexed_waiter(void *arg)
{
    int i = (int)(intptr_t)arg;
    woken_rc[i] = cio_wait_fd(fds[0], CIO_READABLE);
    return 0;
}

static int two_waiters_main(void *arg)
{
    (void)arg;
    cio_task *t[4];
    for (intptr_t i = 0; i < 4; i++) {
        woken_rc[i] = 1;
        ASSERT_EQ(cio_spawn(&t[i], indexed_waiter, (void *)i, "waiter-%d", (int)i), 0);
    }
    ASSERT_EQ(cio_yield(), 0); /* all four wait */
    cio_task_cancel(t[1]);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(woken_rc[1], -ECANCELED);
    ASSERT_EQ(woken_rc[0], 1); /* the others still wait */
    ASSERT_EQ(write(fds[1], "x", 1), 1);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(woken_rc[0], CIO_READABLE);
    ASSERT_EQ(woken_rc[2], CIO_READABLE);
    ASSERT_EQ(woken_rc[3], CIO_READABLE);
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(cio_join(t[i], NULL), 0);
        cio_task_release(t[i]);
    }
    char c;
    ASSERT_EQ(read(fds[0], &c, 1), 1);
    /* Two wait again; closing the fd wakes both with -EBADF. */
    for (intptr_t i = 0; i < 2; i++) {
        woken_rc[i] = 1;
        ASSERT_EQ(cio_spawn(&t[i], indexed_waiter, (void *)i, "waiter-%d", (int)i), 0);
    }
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(cio_close(fds[0]), 0);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(cio_join(t[i], NULL), 0);
        cio_task_release(t[i]);
        ASSERT_EQ(woken_rc[i], -EBADF);
    }
    return 0;
}

TEST(fd_wait_several_waiters_all_woken)
{
    ASSERT_EQ(pipe2(fds, O_NONBLOCK), 0);
    ASSERT_EQ(cio_run(two_waiters_main, NULL), 0);
    close(fds[1]);
}

/* One reader and one writer task on the same socket at the same time. */
static int sv[2];

static int sock_reader(void *arg)
{
    (void)arg;
    int rc = cio_wait_fd(sv[0], CIO_READABLE);
    if (rc != CIO_READABLE)
        return rc < 0 ? rc : -1000;
    char buf[8];
    return (int)read(sv[0], buf, sizeof buf);
}

static int sock_writer(void *arg)
{
    (void)arg;
    /* Fill the send buffer so that the writer really has to wait. */
    static char chunk[65536];
    ssize_t total = 0;
    for (;;) {
        ssize_t n = write(sv[0], chunk, sizeof chunk);
        if (n > 0) {
            total += n;
            continue;
        }
        if (errno != EAGAIN)
            return -errno;
        int rc = cio_wait_fd(sv[0], CIO_WRITABLE);
        if (rc < 0)
            return rc;
        return rc == CIO_WRITABLE && total > 0 ? 1 : -2000;
    }
}

static int drain_peer(void *arg)
{
    (void)arg;
    static char buf[65536];
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(write(sv[1], "ping", 4), 4); /* wakes the reader */
    /* Read everything the writer queued: that makes room for it. The
     * writer stops after one wait, so EAGAIN means we are done. */
    ssize_t total = 0;
    for (int i = 0; i < 100000; i++) {
        ssize_t n = read(sv[1], buf, sizeof buf);
        if (n > 0) {
            total += n;
            continue;
        }
        break;
    }
    return total > 0 ? 0 : -1;
}

static int both_main(void *arg)
{
    (void)arg;
    cio_task *r, *w, *p;
    ASSERT_EQ(cio_spawn(&r, sock_reader, NULL, "reader"), 0);
    ASSERT_EQ(cio_spawn(&w, sock_writer, NULL, "writer"), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(cio_spawn(&p, drain_peer, NULL, "peer"), 0);
    int st[3];
    cio_task *all[3] = {r, w, p};
    ASSERT_EQ(cio_gather(all, 3, st, CIO_GATHER_ALL), 0);
    ASSERT_EQ(st[0], 4);
    ASSERT_EQ(st[1], 1);
    ASSERT_EQ(st[2], 0);
    for (int i = 0; i < 3; i++)
        cio_task_release(all[i]);
    return 0;
}

TEST(fd_reader_and_writer_on_one_socket)
{
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ASSERT_EQ(cio_run(both_main, NULL), 0);
    close(sv[0]);
    close(sv[1]);
}

/* cio_close wakes the task waiting on the fd with -EBADF. */
static int close_main(void *arg)
{
    (void)arg;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, fd_waiter, NULL, "victim"), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(cio_close(fds[0]), 0);
    int status;
    ASSERT_EQ(cio_join(t, &status), 0);
    ASSERT_EQ(status, -EBADF);
    cio_task_release(t);
    ASSERT_EQ(cio_close(fds[0]), -EBADF); /* closed already */
    ASSERT_EQ(cio_close(-1), -EBADF);
    /* The number is reused by a new pipe: waiting on it works (the stale
     * registration is replaced). */
    int again[2];
    ASSERT_EQ(pipe2(again, O_NONBLOCK), 0);
    ASSERT_EQ(write(again[1], "q", 1), 1);
    ASSERT_EQ(cio_wait_fd(again[0], CIO_READABLE), CIO_READABLE);
    /* Closed behind the loop's back with close(2), then reused. */
    int num = again[0];
    close(again[0]);
    int third[2];
    ASSERT_EQ(pipe2(third, O_NONBLOCK), 0);
    ASSERT_EQ(third[0], num);
    ASSERT_EQ(write(third[1], "r", 1), 1);
    ASSERT_EQ(cio_wait_fd(third[0], CIO_READABLE), CIO_READABLE);
    cio_close(again[1]);
    cio_close(third[0]);
    cio_close(third[1]);
    cio_close(fds[1]);
    return 0;
}

TEST(fd_close_wakes_waiter_and_numbers_are_reused_safely)
{
    ASSERT_EQ(pipe2(fds, O_NONBLOCK), 0);
    ASSERT_EQ(cio_run(close_main, NULL), 0);
}

/* cio_wait_fd over the epoll backend: readiness, cancellation, deadlines,
 * hang-ups and bad input. */
#include "cio.h"
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
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

/* One waiter per fd for now: a second one is refused, not queued. */
static int two_waiters_main(void *arg)
{
    (void)arg;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, fd_waiter, NULL, "first"), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(cio_wait_fd(fds[0], CIO_READABLE), -EEXIST);
    cio_task_cancel(t);
    ASSERT_EQ(cio_join(t, NULL), 0);
    cio_task_release(t);
    return 0;
}

TEST(fd_wait_second_waiter_is_eexist)
{
    ASSERT_EQ(pipe2(fds, O_NONBLOCK), 0);
    ASSERT_EQ(cio_run(two_waiters_main, NULL), 0);
    close(fds[0]);
    close(fds[1]);
}

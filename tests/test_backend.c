/* The I/O backend on its own (no loop): the contract in cio_internal.h,
 * stated in the fd layer's vocabulary, checked against whichever
 * backend_*.c is linked; and what the loop does when the wait fails. */
#include "cio_internal.h"
#include "harness.h"
#include "util.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct seen {
    int n;
    int fd;
    uint32_t gen;
    unsigned ready;
    void *ctx;
} seen;

static void on_fd(void *ctx, int fd, uint32_t gen, unsigned ready)
{
    seen *s = ctx;
    s->n++;
    s->fd = fd;
    s->gen = gen;
    s->ready = ready;
    s->ctx = ctx;
}

/* fd registrations report each change to ready, tagged with the generation
 * given; a re-arm reports the current state again under the new tag. */
TEST(backend_fd_registration_reports_edges_and_rearms)
{
    seen s = {0};
    cio__backend *b;
    ASSERT_EQ(cio__backend_open(&b, on_fd, &s), 0);
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ASSERT_EQ(cio__backend_fd_add(b, sv[0], 7), 0);
    ASSERT_EQ(cio__backend_fd_add(b, sv[0], 7), -EEXIST);
    /* Writable at once, not readable. */
    ASSERT_EQ(cio__backend_poll(b, 0), 1);
    ASSERT_EQ(s.n, 1);
    ASSERT_PTR_EQ(s.ctx, &s);
    ASSERT_EQ(s.fd, sv[0]);
    ASSERT_EQ(s.gen, 7u);
    ASSERT_EQ(s.ready & (CIO_READABLE | CIO_WRITABLE), (unsigned)CIO_WRITABLE);
    /* Still writable, but no new edge: nothing reported. */
    ASSERT_EQ(cio__backend_poll(b, 0), 0);
    ASSERT_EQ(write(sv[1], "x", 1), 1);
    ASSERT_EQ(cio__backend_poll(b, 0), 1);
    ASSERT_TRUE(s.ready & CIO_READABLE);
    ASSERT_EQ(cio__backend_poll(b, 0), 0);
    /* A re-arm reports the current state under the new generation. */
    ASSERT_EQ(cio__backend_fd_mod(b, sv[0], 8), 0);
    ASSERT_EQ(cio__backend_poll(b, 0), 1);
    ASSERT_EQ(s.gen, 8u);
    ASSERT_EQ(s.ready & (CIO_READABLE | CIO_WRITABLE), (unsigned)(CIO_READABLE | CIO_WRITABLE));
    /* The peer goes away: readable with the end-of-stream bit. */
    close(sv[1]);
    ASSERT_EQ(cio__backend_poll(b, 0), 1);
    ASSERT_TRUE(s.ready & CIO_READABLE);
    ASSERT_TRUE(s.ready & CIO__FD_RDHUP);
    /* Forgotten: a re-arm says there is no registration. */
    cio__backend_fd_del(b, sv[0]);
    ASSERT_EQ(cio__backend_fd_mod(b, sv[0], 9), -ENOENT);
    close(sv[0]);
    cio__backend_close(b);
}

static int watch_fired;
static void watch_fn(cio__io_watch *w)
{
    watch_fired++;
    ASSERT_EQ(w->revents, (unsigned)CIO_READABLE);
}

/* Persistent watches are level-triggered; one-shot ones fire once. */
TEST(backend_watches_persistent_and_one_shot)
{
    seen s = {0};
    cio__backend *b;
    ASSERT_EQ(cio__backend_open(&b, on_fd, &s), 0);
    int p[2], q[2];
    ASSERT_EQ(pipe2(p, O_NONBLOCK), 0);
    ASSERT_EQ(pipe2(q, O_NONBLOCK), 0);
    cio__io_watch keep = {.fd = p[0], .events = CIO_READABLE, .fn = watch_fn,
                          .persistent = true};
    cio__io_watch once = {.fd = q[0], .events = CIO_READABLE, .fn = watch_fn};
    ASSERT_EQ(cio__backend_watch(b, &keep), 0);
    ASSERT_EQ(cio__backend_watch(b, &once), 0);
    ASSERT_EQ(cio__backend_poll(b, 0), 0);
    ASSERT_EQ(write(p[1], "x", 1), 1);
    ASSERT_EQ(write(q[1], "x", 1), 1);
    ASSERT_EQ(cio__backend_poll(b, 0), 2);
    ASSERT_EQ(watch_fired, 2);
    /* Both still readable: only the persistent one is reported again. */
    ASSERT_EQ(cio__backend_poll(b, 0), 1);
    ASSERT_EQ(watch_fired, 3);
    cio__backend_unwatch(b, &keep);
    ASSERT_EQ(keep.fd, -1);
    cio__backend_unwatch(b, &once);
    ASSERT_EQ(cio__backend_poll(b, 0), 0);
    ASSERT_EQ(watch_fired, 3);
    ASSERT_EQ(s.n, 0); /* watches never reach the fd handler */
    close(p[0]), close(p[1]), close(q[0]), close(q[1]);
    cio__backend_close(b);
}

/* Close every epoll descriptor of the process (the loop's), behind the
 * loop's back. */
static int close_epoll_fds(void)
{
    int closed = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], target[64];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = 0;
        if (strcmp(target, "anon_inode:[eventpoll]") == 0) {
            close(atoi(e->d_name));
            closed++;
        }
    }
    closedir(d);
    return closed;
}

static int lose_the_poll(void *arg)
{
    (void)arg;
    if (close_epoll_fds() != 1)
        _exit(3);
    /* The loop waits (longer than the scan above took, even under a
     * sanitizer, or the timer would be due and nothing would wait): the
     * wait fails. */
    cio_sleep(100 * CIO_MSEC);
    _exit(4);            /* must not get here */
}

/* The loop's wait failing is reported and fatal, not ignored (it would
 * spin, or sleep for ever with tasks that nothing can wake). */
TEST(loop_poll_failure_is_reported_not_ignored)
{
    int err[2];
    ASSERT_EQ(pipe(err), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        dup2(err[1], 2);
        close(err[0]);
        cio_run(lose_the_poll, NULL);
        _exit(5);
    }
    close(err[1]);
    char buf[4096] = {0};
    size_t len = 0;
    ssize_t n;
    while ((n = read(err[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    close(err[0]);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status))
        fprintf(stderr, "child: status %d, stderr:\n%s\n", status, buf);
    ASSERT_TRUE(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGABRT);
    ASSERT_TRUE(strstr(buf, "cio: the event loop's I/O wait failed: Bad file descriptor") != NULL);
}

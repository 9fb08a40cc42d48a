/* cio_poll (include/cio/poll.h): callback fd watches. */
#include "cio.h"
#include "cio/net.h"
#include "cio/poll.h"
#include "cio/sync.h"
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct rec {
    int calls;
    unsigned last;
    cio_event ev;
    bool stop_inside;
    bool drain;
    int fd;
    cio_poll *other; /* stopped by this callback */
} rec;

static void on_ready(cio_poll *p, unsigned events, void *arg)
{
    rec *r = arg;
    r->calls++;
    r->last = events;
    if (r->drain) {
        char buf[64];
        while (read(cio_poll_fd(p), buf, sizeof buf) > 0)
            ;
    }
    if (r->other) {
        cio_poll_stop(r->other);
        r->other = NULL;
    }
    if (r->stop_inside)
        cio_poll_stop(p);
    cio_event_set(&r->ev);
}

static int readiness_main(void *arg)
{
    (void)arg;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    rec r = {0};
    cio_event_init(&r.ev);
    cio_poll *p;
    ASSERT_EQ(cio_poll_start(&p, sv[0], CIO_READABLE, on_ready, &r), 0);
    ASSERT_EQ(cio_poll_fd(p), sv[0]);
    ASSERT_EQ(cio_poll_events(p), CIO_READABLE);
    /* Nothing to read: no call. */
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(r.calls, 0);
    /* Readable: called; level-triggered: called again while not drained. */
    ASSERT_EQ(write(sv[1], "ab", 2), 2);
    ASSERT_EQ(cio_event_wait(&r.ev), 0);
    ASSERT_EQ(r.last, CIO_READABLE);
    cio_event_clear(&r.ev);
    ASSERT_EQ(cio_event_wait(&r.ev), 0);
    ASSERT_GE(r.calls, 2);
    /* Drained: calls stop. */
    r.drain = true;
    cio_event_clear(&r.ev);
    ASSERT_EQ(cio_event_wait(&r.ev), 0);
    int n = r.calls;
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(r.calls, n);
    /* Change to writable: called with CIO_WRITABLE only. */
    ASSERT_EQ(cio_poll_change(p, CIO_WRITABLE), 0);
    ASSERT_EQ(cio_poll_events(p), CIO_WRITABLE);
    cio_event_clear(&r.ev);
    ASSERT_EQ(cio_event_wait(&r.ev), 0);
    ASSERT_EQ(r.last, CIO_WRITABLE);
    /* Change to 0: no more calls, the watch stays started. */
    ASSERT_EQ(cio_poll_change(p, 0), 0);
    n = r.calls;
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(r.calls, n);
    ASSERT_EQ(cio_poll_change(p, 4), -EINVAL);
    /* Back from 0 to readable (registered again), then both. */
    ASSERT_EQ(write(sv[1], "z", 1), 1);
    ASSERT_EQ(cio_poll_change(p, CIO_READABLE), 0);
    cio_event_clear(&r.ev);
    ASSERT_EQ(cio_event_wait(&r.ev), 0);
    ASSERT_EQ(r.last, CIO_READABLE); /* (drained by the callback) */
    ASSERT_EQ(cio_poll_change(p, CIO_READABLE | CIO_WRITABLE), 0);
    cio_event_clear(&r.ev);
    ASSERT_EQ(cio_event_wait(&r.ev), 0);
    ASSERT_EQ(r.last, CIO_WRITABLE);
    ASSERT_EQ(cio_poll_change(p, 0), 0);
    n = r.calls;
    cio_poll_stop(p);
    /* Stopped: nothing more, the fd is free for a new watch. */
    ASSERT_EQ(write(sv[1], "c", 1), 1);
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(r.calls, n);
    ASSERT_EQ(cio_poll_start(&p, sv[0], CIO_READABLE, on_ready, &r), 0);
    cio_event_clear(&r.ev);
    ASSERT_EQ(cio_event_wait(&r.ev), 0);
    cio_poll_stop(p);
    cio_poll_stop(NULL);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

TEST(poll_reports_readiness_level_triggered_and_follows_changes)
{
    ASSERT_EQ(cio_run(readiness_main, NULL), 0);
}

static int stop_inside_main(void *arg)
{
    (void)arg;
    int a[2], b[2];
    ASSERT_EQ(pipe2(a, O_NONBLOCK), 0);
    ASSERT_EQ(pipe2(b, O_NONBLOCK), 0);
    rec ra = {0}, rb = {0};
    cio_event_init(&ra.ev);
    cio_event_init(&rb.ev);
    cio_poll *pa, *pb;
    ASSERT_EQ(cio_poll_start(&pa, a[0], CIO_READABLE, on_ready, &ra), 0);
    ASSERT_EQ(cio_poll_start(&pb, b[0], CIO_READABLE, on_ready, &rb), 0);
    /* Both ready in the same batch; whichever runs first stops itself and
     * the other: the other's callback must not run (nor touch freed
     * memory: ASan). */
    ra.stop_inside = rb.stop_inside = true;
    ra.other = pb;
    rb.other = pa;
    ASSERT_EQ(write(a[1], "x", 1), 1);
    ASSERT_EQ(write(b[1], "x", 1), 1);
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(ra.calls + rb.calls, 1);
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(ra.calls + rb.calls, 1);
    for (int i = 0; i < 2; i++)
        close(a[i]), close(b[i]);
    return 0;
}

TEST(poll_stop_inside_a_callback_stops_it_and_others_in_the_same_batch)
{
    ASSERT_EQ(cio_run(stop_inside_main, NULL), 0);
}

static int hangup_main(void *arg)
{
    (void)arg;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    rec r = {0};
    cio_event_init(&r.ev);
    r.stop_inside = true;
    cio_poll *p;
    /* Watching for writing only: the hang-up still comes, with the
     * watched direction. */
    int pp[2];
    ASSERT_EQ(pipe2(pp, O_NONBLOCK), 0);
    ASSERT_EQ(cio_poll_start(&p, pp[0], CIO_READABLE, on_ready, &r), 0);
    close(pp[1]);
    ASSERT_EQ(cio_event_wait(&r.ev), 0);
    ASSERT_EQ(r.calls, 1);
    ASSERT_TRUE(r.last & CIO_POLL_HANGUP);
    ASSERT_TRUE(r.last & CIO_READABLE);
    close(pp[0]);
    /* A socket whose peer closed: hang-up reported. */
    rec r2 = {0};
    cio_event_init(&r2.ev);
    r2.stop_inside = true;
    ASSERT_EQ(cio_poll_start(&p, sv[0], CIO_READABLE, on_ready, &r2), 0);
    close(sv[1]);
    ASSERT_EQ(cio_event_wait(&r2.ev), 0);
    ASSERT_TRUE(r2.last & CIO_POLL_HANGUP);
    close(sv[0]);
    /* An error: a TCP connect to a closed loopback port. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ASSERT_GE(s, 0);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t len = sizeof sa;
    ASSERT_EQ(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    ASSERT_EQ(getsockname(l, (struct sockaddr *)&sa, &len), 0);
    close(l); /* the port is closed now: refused */
    int rc = connect(s, (struct sockaddr *)&sa, sizeof sa);
    ASSERT_TRUE(rc == 0 || errno == EINPROGRESS || errno == ECONNREFUSED);
    if (rc != 0 && errno == EINPROGRESS) {
        rec r3 = {0};
        cio_event_init(&r3.ev);
        r3.stop_inside = true;
        ASSERT_EQ(cio_poll_start(&p, s, CIO_WRITABLE, on_ready, &r3), 0);
        ASSERT_EQ(cio_event_wait(&r3.ev), 0);
        ASSERT_TRUE(r3.last & CIO_POLL_ERROR);
        ASSERT_TRUE(r3.last & CIO_WRITABLE);
    }
    close(s);
    return 0;
}

TEST(poll_reports_hangup_and_error_with_the_watched_direction)
{
    ASSERT_EQ(cio_run(hangup_main, NULL), 0);
}

static int closed_main(void *arg)
{
    (void)arg;
    int pp[2];
    ASSERT_EQ(pipe2(pp, O_NONBLOCK), 0);
    rec r = {0};
    cio_event_init(&r.ev);
    cio_poll *p;
    ASSERT_EQ(cio_poll_start(&p, pp[0], CIO_READABLE, on_ready, &r), 0);
    /* Closed behind the watch's back (as libcurl may), number reused by a
     * new descriptor watched by a new cio_poll: the old one's stop must not
     * disturb the new one. */
    int fd = pp[0];
    close(pp[0]);
    int q[2];
    ASSERT_EQ(pipe2(q, O_NONBLOCK), 0);
    ASSERT_EQ(q[0], fd); /* lowest free number */
    rec r2 = {0};
    cio_event_init(&r2.ev);
    cio_poll *p2;
    /* The old watch still claims the number in the loop: refused, until
     * stopped. */
    ASSERT_EQ(cio_poll_start(&p2, q[0], CIO_READABLE, on_ready, &r2), -EBUSY);
    cio_poll_stop(p);
    ASSERT_EQ(cio_poll_start(&p2, q[0], CIO_READABLE, on_ready, &r2), 0);
    ASSERT_EQ(write(q[1], "x", 1), 1);
    ASSERT_EQ(cio_event_wait(&r2.ev), 0);
    ASSERT_EQ(r.calls, 0);
    cio_poll_stop(p2);
    close(q[0]);
    close(q[1]);
    close(pp[1]);
    return 0;
}

TEST(poll_fd_closed_while_watched_then_number_reused)
{
    ASSERT_EQ(cio_run(closed_main, NULL), 0);
}

static int busy_main(void *arg)
{
    (void)arg;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    rec r = {0};
    cio_event_init(&r.ev);
    cio_poll *p, *p2;
    ASSERT_EQ(cio_poll_start(&p, sv[0], CIO_READABLE, on_ready, &r), 0);
    /* One watch per fd; task waits refused while watched. */
    ASSERT_EQ(cio_poll_start(&p2, sv[0], CIO_WRITABLE, on_ready, &r), -EBUSY);
    ASSERT_EQ(cio_wait_fd(sv[0], CIO_WRITABLE), -EBUSY);
    char c;
    ASSERT_EQ(cio_recv(sv[0], &c, 1, 0), -EBUSY);
    cio_poll_stop(p);
    /* The fd layer now owns it (registered until cio_close): refused. */
    ASSERT_EQ(cio_wait_fd(sv[0], CIO_WRITABLE), CIO_WRITABLE);
    ASSERT_EQ(cio_poll_start(&p2, sv[0], CIO_READABLE, on_ready, &r), -EBUSY);
    ASSERT_EQ(cio_close(sv[0]), 0);
    /* Bad input. */
    ASSERT_EQ(cio_poll_start(&p2, -1, CIO_READABLE, on_ready, &r), -EINVAL);
    ASSERT_EQ(cio_poll_start(&p2, sv[1], 8, on_ready, &r), -EINVAL);
    ASSERT_EQ(cio_poll_start(&p2, sv[1], CIO_READABLE, NULL, &r), -EINVAL);
    ASSERT_EQ(cio_poll_start(&p2, 1000, CIO_READABLE, on_ready, &r), -EBADF);
    close(sv[1]);
    return 0;
}

TEST(poll_and_task_waits_refuse_each_other_on_one_fd)
{
    ASSERT_EQ(cio_run(busy_main, NULL), 0);
    cio_poll *p;
    ASSERT_EQ(cio_poll_start(&p, 0, CIO_READABLE, on_ready, NULL), -EPERM);
}

static int left_main(void *arg)
{
    (void)arg;
    int pp[2];
    ASSERT_EQ(pipe2(pp, O_NONBLOCK), 0);
    cio_poll *p;
    ASSERT_EQ(cio_poll_start(&p, pp[0], CIO_READABLE, on_ready, NULL), 0);
    return 0; /* left started: the loop's close frees it (ASan: no leak) */
}

TEST(poll_left_started_is_freed_by_loop_close)
{
    ASSERT_EQ(cio_run(left_main, NULL), 0);
}

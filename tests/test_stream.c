/* Streams over loopback TCP, Unix sockets and socketpairs: echo by lines,
 * limits, readexactly at EOF, readuntil, a trickling peer, backpressure,
 * close flushing, reset. */
#include "cio.h"
#include "harness.h"
#include "peer.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static int pair(cio_stream **a, cio_stream **b, const cio_stream_options *o)
{
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    ASSERT_EQ(cio_stream_open_fd(a, sv[0], o), 0);
    ASSERT_EQ(cio_stream_open_fd(b, sv[1], o), 0);
    return 0;
}

TASK_TEST(stream_readline_readuntil_and_eof)
{
    cio_stream *a, *b;
    pair(&a, &b, NULL);
    ASSERT_EQ(cio_stream_write(a, "one\ntwo\nthr", 11), 0);
    ASSERT_EQ(cio_stream_write(a, "ee\r\nfour", 8), 0);
    ASSERT_EQ(cio_stream_write_eof(a), 0);
    char buf[64];
    ASSERT_EQ(cio_stream_readline(b, buf, sizeof buf), 4);
    ASSERT_STREQ(buf, "one\n");
    ASSERT_EQ(cio_stream_readline(b, buf, sizeof buf), 4);
    ASSERT_STREQ(buf, "two\n");
    ASSERT_EQ(cio_stream_readuntil(b, "\r\n", 2, buf, sizeof buf), 7);
    ASSERT_STREQ(buf, "three\r\n");
    ASSERT_FALSE(cio_stream_at_eof(b));
    ASSERT_EQ(cio_stream_readline(b, buf, sizeof buf), 4); /* no newline: the rest */
    ASSERT_STREQ(buf, "four");
    ASSERT_EQ(cio_stream_readline(b, buf, sizeof buf), 0);
    ASSERT_TRUE(cio_stream_at_eof(b));
    ASSERT_EQ(cio_stream_write(a, "x", 1), -EPIPE); /* write side shut */
    ASSERT_EQ(cio_stream_close(a), 0);
    ASSERT_EQ(cio_stream_close(b), 0);
}

TASK_TEST(stream_limits_and_short_reads)
{
    cio_stream_options o = {.limit = 16};
    cio_stream *a, *b;
    pair(&a, &b, &o);
    ASSERT_EQ(cio_stream_write(a, "this line is far too long for the limit\nok\n", 43), 0);
    char buf[64];
    ASSERT_EQ(cio_stream_readline(b, buf, sizeof buf), -EMSGSIZE);
    /* Nothing consumed: read() can take the over-long part. */
    ASSERT_EQ(cio_stream_readexactly(b, buf, 40), 40);
    ASSERT_EQ(cio_stream_readline(b, buf, sizeof buf), 3);
    ASSERT_STREQ(buf, "ok\n");
    /* The caller's buffer is a limit too. */
    ASSERT_EQ(cio_stream_write(a, "abcdefgh\n", 9), 0);
    ASSERT_EQ(cio_stream_readline(b, buf, 5), -EMSGSIZE);
    ASSERT_EQ(cio_stream_readline(b, buf, 10), 9);
    /* readexactly across EOF. */
    ASSERT_EQ(cio_stream_write(a, "12345", 5), 0);
    ASSERT_EQ(cio_stream_close(a), 0);
    ASSERT_EQ(cio_stream_readexactly(b, buf, 8), -ENODATA);
    ASSERT_EQ(cio_stream_readuntil(b, "\n", 1, buf, sizeof buf), 0);
    ASSERT_EQ(cio_stream_readuntil(b, "", 0, buf, sizeof buf), -EINVAL);
    cio_stream_abort(b);
}

/* A peer that trickles one byte per millisecond (virtual clock). */
static int trickler(void *arg)
{
    cio_stream *s = arg;
    const char *msg = "slow line\n";
    for (const char *p = msg; *p; p++) {
        int rc = cio_sleep(CIO_MSEC);
        if (rc)
            return rc;
        cio_stream_write(s, p, 1);
    }
    return 0;
}

TASK_TEST_VIRTUAL(stream_trickling_and_stalled_peer)
{
    cio_stream *a, *b;
    pair(&a, &b, NULL);
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, trickler, a, "trickler"), 0);
    char buf[32];
    ASSERT_EQ(cio_stream_readline(b, buf, sizeof buf), 10);
    ASSERT_STREQ(buf, "slow line\n");
    ASSERT_EQ(cio_now(), 10 * CIO_MSEC);
    /* A stalled peer: the deadline fires, the stream stays usable. */
    cio_scope s;
    cio_timeout_enter(&s, 50 * CIO_MSEC);
    ASSERT_EQ(cio_stream_readline(b, buf, sizeof buf), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_EQ(cio_stream_write(a, "late\n", 5), 0);
    ASSERT_EQ(cio_stream_readline(b, buf, sizeof buf), 5);
    ASSERT_EQ(cio_join(t, NULL), 0);
    cio_task_release(t);
    cio_stream_close(a);
    cio_stream_close(b);
}

/* Backpressure: drain waits while the peer does not read. */
static int slow_reader(void *arg)
{
    cio_stream *s = arg;
    static char buf[65536];
    size_t total = 0;
    ASSERT_EQ(cio_sleep(100 * CIO_MSEC), 0);
    ssize_t n;
    while ((n = cio_stream_read(s, buf, sizeof buf)) > 0)
        total += (size_t)n;
    return n < 0 ? (int)n : (int)(total / 1024);
}

TASK_TEST_VIRTUAL(stream_backpressure_and_close_flushes)
{
    cio_stream_options o = {.high_water = 64 * 1024, .low_water = 16 * 1024};
    cio_stream *a, *b;
    pair(&a, &b, &o);
    cio_task *r;
    ASSERT_EQ(cio_spawn(&r, slow_reader, b, "slow-reader"), 0);
    static char chunk[16384];
    memset(chunk, 'z', sizeof chunk);
    int64_t waited = -1;
    for (int i = 0; i < 128; i++) { /* 2 MiB */
        ASSERT_EQ(cio_stream_write(a, chunk, sizeof chunk), 0);
        ASSERT_LE(cio_stream_write_buffered(a), 64 * 1024 + sizeof chunk);
        int64_t t0 = cio_now();
        ASSERT_EQ(cio_stream_drain(a), 0);
        if (cio_now() > t0 && waited < 0)
            waited = cio_now();
    }
    ASSERT_EQ(waited, 100 * CIO_MSEC); /* blocked until the reader woke */
    ASSERT_EQ(cio_stream_close(a), 0); /* flushes the rest, then EOF */
    int status;
    ASSERT_EQ(cio_join(r, &status), 0);
    ASSERT_EQ(status, 2048);
    cio_task_release(r);
    cio_stream_close(b);
}

/* TCP: open_connection against a line echo server; peer reset. */
static int line_echo(void *arg)
{
    int lfd = *(int *)arg;
    int fd = cio_accept_ours(lfd);
    if (fd < 0)
        return fd;
    cio_stream *s;
    ASSERT_EQ(cio_stream_open_fd(&s, fd, NULL), 0);
    char buf[128];
    ssize_t n;
    while ((n = cio_stream_readline(s, buf, sizeof buf)) > 0) {
        cio_stream_write(s, buf, (size_t)n);
        if ((n = cio_stream_drain(s)) < 0)
            break;
    }
    cio_stream_close(s);
    return n < 0 ? (int)n : 0;
}

TASK_TEST(stream_tcp_open_connection_line_echo)
{
    int lfd = cio_tcp_listen("127.0.0.1", "0", 8, false);
    ASSERT_GE(lfd, 0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(lfd, (struct sockaddr *)&ss, &len);
    char port[16];
    snprintf(port, sizeof port, "%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    cio_task *srv;
    ASSERT_EQ(cio_spawn(&srv, line_echo, &lfd, "line-echo"), 0);
    cio_stream *c;
    ASSERT_EQ(cio_open_connection(&c, "127.0.0.1", port, NULL), 0);
    ASSERT_EQ(cio_stream_peername(c, &ss, &len), 0);
    ASSERT_EQ(ss.ss_family, AF_INET);
    ASSERT_EQ((int)ntohs(((struct sockaddr_in *)&ss)->sin_port), atoi(port));
    struct sockaddr_storage me;
    ASSERT_EQ(cio_stream_sockname(c, &me, &len), 0);
    ASSERT_EQ(me.ss_family, AF_INET);
    ASSERT_EQ(ntohl(((struct sockaddr_in *)&me)->sin_addr.s_addr), 0x7f000001u);
    ASSERT_NE((int)ntohs(((struct sockaddr_in *)&me)->sin_port), atoi(port));
    char buf[128];
    for (int i = 0; i < 50; i++) {
        char line[32];
        int l = snprintf(line, sizeof line, "line %d\n", i);
        ASSERT_EQ(cio_stream_write(c, line, (size_t)l), 0);
        ASSERT_EQ(cio_stream_readline(c, buf, sizeof buf), l);
        ASSERT_STREQ(buf, line);
    }
    ASSERT_EQ(cio_stream_close(c), 0);
    int status;
    ASSERT_EQ(cio_join(srv, &status), 0);
    ASSERT_EQ(status, 0);
    cio_task_release(srv);
    ASSERT_EQ(cio_open_unix_connection(&c, "@cio-test-nobody-listens", NULL), -ECONNREFUSED);
    cio_close(lfd);
}

/* ---- servers ----------------------------------------------------------- */

/* Connections from other processes reach the servers' loopback listeners
 * too (peer.h): handlers drop them at once and count only ours. */
static int our_conns;

static bool foreign(cio_stream *s)
{
    if (!peer_is_ours(cio_stream_fd(s)))
        return true;
    our_conns++;
    return false;
}

static int echo_handler(cio_stream *s, void *arg)
{
    (void)arg;
    if (foreign(s))
        return 0;
    char buf[256];
    ssize_t n;
    while ((n = cio_stream_readline(s, buf, sizeof buf)) > 0) {
        if (!strcmp(buf, "fail\n"))
            return -EPROTO;
        cio_stream_write(s, buf, (size_t)n);
        int rc = cio_stream_drain(s);
        if (rc)
            return rc;
    }
    return (int)n;
}

static int server_port(cio_server *srv, char *port, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len;
    ASSERT_EQ(cio_server_sockname(srv, &ss, &len), 0);
    return snprintf(port, cap, "%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
}

static int client_roundtrip(void *arg)
{
    const char *port = arg;
    cio_stream *c;
    int rc = cio_open_connection(&c, "127.0.0.1", port, NULL);
    if (rc)
        return rc;
    char buf[64];
    for (int i = 0; i < 10 && rc == 0; i++) {
        cio_stream_write(c, "ping\n", 5);
        if (cio_stream_readline(c, buf, sizeof buf) != 5 || strcmp(buf, "ping\n"))
            rc = -EIO;
    }
    cio_stream_close(c);
    return rc;
}

TASK_TEST(stream_server_serves_counts_failures_and_closes)
{
    cio_server *srv;
    ASSERT_EQ(cio_start_server(&srv, "127.0.0.1", "0", echo_handler, NULL, NULL), 0);
    char port[16];
    server_port(srv, port, sizeof port);
    /* Twenty clients at once. */
    cio_task *t[20];
    for (int i = 0; i < 20; i++)
        ASSERT_EQ(cio_spawn(&t[i], client_roundtrip, port, "client%d", i), 0);
    int st[20];
    ASSERT_EQ(cio_gather(t, 20, st, CIO_GATHER_ALL), 0);
    for (int i = 0; i < 20; i++) {
        ASSERT_EQ(st[i], 0);
        cio_task_release(t[i]);
    }
    /* A failing handler is counted and harms nobody else. */
    cio_stream *bad, *idle;
    ASSERT_EQ(cio_open_connection(&bad, "127.0.0.1", port, NULL), 0);
    ASSERT_EQ(cio_open_connection(&idle, "127.0.0.1", port, NULL), 0);
    cio_stream_write(bad, "fail\n", 5);
    char buf[16];
    ASSERT_EQ(cio_stream_read(bad, buf, sizeof buf), 0); /* server closed it */
    ASSERT_EQ(cio_server_failed(srv), 1);
    /* The idle connection's handler has started once it echoes a line:
     * its accept may come in a later turn than bad's (seeded scheduling
     * found this test counting before it had). */
    cio_stream_write(idle, "hi\n", 3);
    ASSERT_EQ(cio_stream_readline(idle, buf, sizeof buf), 3);
    ASSERT_EQ(our_conns, 22);
    ASSERT_GE(cio_server_accepted(srv), 22); /* (and any foreign ones) */
    /* Close: the idle connection's handler (blocked in readline) is
     * cancelled and its stream closed. */
    ASSERT_EQ(cio_server_close(srv), 0);
    ASSERT_EQ(cio_stream_read(idle, buf, sizeof buf), 0);
    cio_stream_close(bad);
    cio_stream_close(idle);
    /* The port is free again: nobody accepts any more. */
    cio_stream *late;
    ASSERT_EQ(cio_open_connection(&late, "127.0.0.1", port, NULL), -ECONNREFUSED);
}

TASK_TEST(stream_unix_server_and_connection)
{
    cio_server *srv;
    char path[64];
    snprintf(path, sizeof path, "@cio-test-%d", (int)getpid());
    ASSERT_EQ(cio_start_unix_server(&srv, path, echo_handler, NULL, NULL), 0);
    cio_stream *c;
    ASSERT_EQ(cio_open_unix_connection(&c, path, NULL), 0);
    cio_stream_write(c, "over unix\n", 10);
    char buf[32];
    ASSERT_EQ(cio_stream_readline(c, buf, sizeof buf), 10);
    ASSERT_STREQ(buf, "over unix\n");
    cio_stream_close(c);
    ASSERT_EQ(cio_server_close(srv), 0);
}

/* ---- a peer that resets mid-read ----------------------------------------- */

static int reset_after_lines(void *arg)
{
    int lfd = *(int *)arg;
    int fd = cio_accept_ours(lfd);
    if (fd < 0)
        return fd;
    /* Two whole lines and half of a third, then an abortive close. */
    ASSERT_EQ(cio_send(fd, "one\ntwo\nthr", 11, 0), 11);
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    cio_close(fd);
    return 0;
}

TASK_TEST(stream_peer_resets_mid_read)
{
    int lfd = cio_tcp_listen("127.0.0.1", "0", 4, false);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(lfd, (struct sockaddr *)&ss, &len);
    char port[16];
    snprintf(port, sizeof port, "%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, reset_after_lines, &lfd, "resetter"), 0);
    cio_stream *s;
    ASSERT_EQ(cio_open_connection(&s, "127.0.0.1", port, NULL), 0);
    ASSERT_EQ(cio_join(t, NULL), 0); /* the reset has happened */
    cio_task_release(t);
    char buf[32];
    ASSERT_EQ(cio_stream_readline(s, buf, sizeof buf), 4);
    ASSERT_STREQ(buf, "one\n");
    ASSERT_EQ(cio_stream_readline(s, buf, sizeof buf), 4);
    ASSERT_STREQ(buf, "two\n");
    /* The incomplete third line is not passed off as a line. */
    ASSERT_EQ(cio_stream_readline(s, buf, sizeof buf), -ECONNRESET);
    ASSERT_EQ(cio_stream_readline(s, buf, sizeof buf), -ECONNRESET);
    ASSERT_EQ(cio_stream_write(s, "x", 1) == 0 || cio_stream_write(s, "x", 1) < 0, 1);
    cio_stream_abort(s);
    cio_close(lfd);
}

/* ---- streams over pipes (subprocess pipes use this) ----------------------- */

TASK_TEST(stream_over_a_pipe)
{
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0); /* blocking: the stream fixes that */
    cio_stream *r, *w;
    ASSERT_EQ(cio_stream_open_fd(&r, p[0], NULL), 0);
    ASSERT_EQ(cio_stream_open_fd(&w, p[1], NULL), 0);
    ASSERT_TRUE(fcntl(p[0], F_GETFL) & O_NONBLOCK);
    /* More than a pipe holds, so the writer's queue and the reader
     * interleave. */
    static char chunk[4096];
    memset(chunk, 'p', sizeof chunk - 1);
    chunk[sizeof chunk - 1] = '\n';
    for (int i = 0; i < 64; i++)
        ASSERT_EQ(cio_stream_write(w, chunk, sizeof chunk), 0);
    ASSERT_GT(cio_stream_write_buffered(w), 0);
    char line[sizeof chunk + 1];
    for (int i = 0; i < 64; i++)
        ASSERT_EQ(cio_stream_readline(r, line, sizeof line), (ssize_t)sizeof chunk);
    /* A pipe has no shutdown: write_eof closes the write end, so the
     * reader sees the end while the stream w is still open. */
    ASSERT_EQ(cio_stream_write(w, "tail", 4), 0);
    ASSERT_EQ(cio_stream_write_eof(w), 0);
    ASSERT_EQ(cio_stream_write(w, "x", 1), -EPIPE);
    ASSERT_EQ(cio_stream_write_eof(w), 0); /* again: nothing more to do */
    ASSERT_EQ(cio_stream_readexactly(r, line, 4), 4);
    ASSERT_EQ(cio_stream_read(r, line, sizeof line), 0);
    ASSERT_TRUE(cio_stream_at_eof(r));
    ASSERT_EQ(cio_stream_close(w), 0);
    ASSERT_EQ(cio_stream_close(r), 0);
    struct sockaddr_storage ss;
    socklen_t len;
    ASSERT_EQ(cio_stream_open_fd(&r, -1, NULL), -EINVAL);
    (void)ss;
    (void)len;
}

/* ---- cancellation at every await of open + write + drain + readline ------- */

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

struct seq {
    const char *port;
    int steps;
};

static int stream_sequence(void *arg)
{
    struct seq *q = arg;
    cio_stream *s;
    int rc = cio_open_connection(&s, "127.0.0.1", q->port, NULL);
    if (rc)
        return rc;
    q->steps = 1;
    char buf[64];
    for (int i = 0; i < 3 && rc == 0; i++) {
        rc = cio_stream_write(s, "round trip\n", 11);
        if (rc == 0)
            rc = cio_stream_drain(s);
        ssize_t n = rc ? rc : cio_stream_readline(s, buf, sizeof buf);
        rc = n == 11 ? 0 : n < 0 ? (int)n : -EIO;
        if (rc == 0)
            q->steps++;
    }
    /* Close within the caller's scopes: cancelled, it still frees all. */
    int crc = cio_stream_close(s);
    return rc ? rc : crc;
}

/* After a run: until the echo server has seen the connection close (at
 * most 20 ms of loop time). */
static int stream_settle(void *arg)
{
    int base = *(int *)arg;
    for (int y = 0; y < 20 && count_fds() != base; y++)
        cio_sleep(CIO_MSEC);
    return 0;
}

TASK_TEST_VIRTUAL(stream_cancel_at_every_await_leaves_no_fd)
{
    cio_server *srv;
    ASSERT_EQ(cio_start_server(&srv, "127.0.0.1", "0", echo_handler, NULL, NULL), 0);
    char port[16];
    server_port(srv, port, sizeof port);
    int base = count_fds();
    struct seq q = {.port = port};
    /* Cancelled (and timed out) at each suspension point in turn: no fd,
     * registration or task left (the server's handler included, once it
     * has seen the close), the server task undisturbed. */
    cio_cancel_sweep_options o = {.settle = stream_settle, .settle_arg = &base};
    cio_cancel_sweep_result r;
    ASSERT_EQ(cio_test_cancel_every_await(&o, stream_sequence, &q, &r), 0);
    ASSERT_EQ(r.baseline_status, 0);
    /* The connect and each readline wait at least (a drain only when the
     * socket's buffer is full). */
    ASSERT_GE(r.points, 4u);
    cio_test_note("%zu cancellation points", r.points);
    ASSERT_EQ(cio_server_close(srv), 0);
}

/* ---- servers: SO_REUSEPORT, close while a handler is stuck in drain ------- */

static int flood_handler(cio_stream *s, void *arg)
{
    int *stuck = arg;
    if (foreign(s))
        return 0;
    static char chunk[65536];
    for (;;) { /* the peer never reads: drain blocks for good */
        int rc = cio_stream_write(s, chunk, sizeof chunk);
        if (rc == 0) {
            (*stuck)++;
            rc = cio_stream_drain(s);
            (*stuck)--;
        }
        if (rc)
            return rc;
    }
}

TASK_TEST_VIRTUAL(stream_server_reuse_port_and_close_with_stuck_handler)
{
    int stuck = 0;
    cio_server_options o = {.reuse_port = true};
    cio_server *a, *b;
    ASSERT_EQ(cio_start_server(&a, "127.0.0.1", "0", flood_handler, &stuck, &o), 0);
    char port[16];
    server_port(a, port, sizeof port);
    /* A second server on the same port (a loop per core would do this). */
    ASSERT_EQ(cio_start_server(&b, "127.0.0.1", port, flood_handler, &stuck, &o), 0);
    cio_stream *c;
    ASSERT_EQ(cio_open_connection(&c, "127.0.0.1", port, NULL), 0);
    for (int i = 0; i < 100 && stuck == 0; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(stuck, 1);
    /* Close both: the stuck handler is cancelled; its stream's close gets
     * a bounded flush (5 s on the virtual clock) and the server is gone. */
    int64_t t0 = cio_now();
    ASSERT_EQ(cio_server_close(a), 0);
    ASSERT_EQ(cio_server_close(b), 0);
    ASSERT_EQ(stuck, 0);
    ASSERT_LE(cio_now() - t0, 5 * CIO_SEC);
    cio_stream_abort(c);
}

/* After a short read a stream waits without trying the read again; data
 * that arrived in between (while the reader did something else) must be
 * taken at once, not waited for until the next bytes come. */
static int late_sender(void *arg)
{
    cio_stream *s = arg;
    /* Writes at 1, 3, 5... ms: never at the same time as the reader wakes,
     * so the loop takes in the edge while nobody waits for it. */
    for (int i = 0; i < 50; i++) {
        if (cio_sleep((i ? 2 : 1) * CIO_MSEC))
            return -ECANCELED;
        cio_stream_write(s, "ab", 2);
    }
    return 0;
}

/* Waits on a socket that stays silent: with a task waiting on I/O, the
 * loop polls epoll on every turn, so edges are taken in even while the
 * reader sleeps (as in any server with other connections). */
static int bystander(void *arg)
{
    char c;
    return (int)cio_recv(*(int *)arg, &c, 1, 0);
}

TASK_TEST_VIRTUAL(stream_data_arriving_after_a_short_read_is_not_missed)
{
    cio_stream *a, *b;
    pair(&a, &b, NULL);
    int quiet[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, quiet), 0);
    cio_task *by;
    ASSERT_EQ(cio_spawn(&by, bystander, &quiet[0], "bystander"), 0);
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, late_sender, a, "sender"), 0);
    char buf[64];
    size_t total = 0;
    int pending_seen = 0;
    for (int i = 0; total < 100 && i < 1000; i++) {
        char c;
        bool pending = recv(cio_stream_fd(b), &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
        int64_t t0 = cio_now();
        ssize_t n = cio_stream_read(b, buf, sizeof buf); /* short: 2 of 64 */
        ASSERT_GT(n, 0);
        if (pending) { /* the bytes were there: no waiting for the next ones */
            ASSERT_EQ(cio_now(), t0);
            pending_seen++;
        }
        total += (size_t)n;
        /* Busy elsewhere (to an even ms) while the next bytes arrive, or
         * not. */
        ASSERT_EQ(cio_sleep_until((cio_now() / (2 * CIO_MSEC) + 1 + i % 2) * 2 * CIO_MSEC), 0);
    }
    ASSERT_EQ(total, 100);
    ASSERT_GT(pending_seen, 5);
    ASSERT_EQ(cio_join(t, NULL), 0);
    cio_task_release(t);
    cio_task_cancel(by);
    cio_join(by, NULL);
    cio_task_release(by);
    cio_close(quiet[0]);
    cio_close(quiet[1]);
    cio_stream_close(a);
    cio_stream_close(b);
}

/* ---- closing a stream that other tasks are inside ------------------------ */

static int stuck_reader(void *arg)
{
    char buf[32];
    return (int)cio_stream_readline(arg, buf, sizeof buf);
}

static int stuck_drainer(void *arg)
{
    static char chunk[65536];
    for (int i = 0; i < 1000; i++) {
        int rc = cio_stream_write(arg, chunk, sizeof chunk);
        if (rc == 0)
            rc = cio_stream_drain(arg);
        if (rc)
            return rc;
    }
    return -EIO; /* the peer never reads: must not get here */
}

static int close_under_main(void *arg)
{
    int how = (int)(intptr_t)arg;
    cio_stream *a, *b;
    pair(&a, &b, NULL);
    cio_task *r, *w = NULL;
    ASSERT_EQ(cio_spawn(&r, stuck_reader, a, "reader"), 0);
    if (how != 2) /* 2: the reader alone holds the stream */
        ASSERT_EQ(cio_spawn(&w, stuck_drainer, a, "drainer"), 0);
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(cio_yield(), 0);
    ASSERT_FALSE(cio_task_done(r));
    ASSERT_FALSE(w && cio_task_done(w));
    if (how != 1)
        cio_stream_abort(a);
    else /* close: the queue cannot be flushed (nobody reads): a deadline */
    {
        cio_scope s;
        cio_timeout_enter(&s, 100 * CIO_MSEC);
        ASSERT_EQ(cio_stream_close(a), -ETIMEDOUT);
        cio_scope_exit(&s);
    }
    int st;
    ASSERT_EQ(cio_join(r, &st), 0);
    ASSERT_EQ(st, -EBADF);
    if (w) {
        ASSERT_EQ(cio_join(w, &st), 0);
        ASSERT_EQ(st, -EBADF);
        cio_task_release(w);
    }
    cio_task_release(r);
    cio_stream_abort(b);
    return 0;
}

TEST(stream_closed_under_a_reader_and_a_drainer)
{
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, close_under_main, (void *)(intptr_t)0), 0);
    ASSERT_EQ(cio_run_opts(&o, close_under_main, (void *)(intptr_t)1), 0);
    ASSERT_EQ(cio_run_opts(&o, close_under_main, (void *)(intptr_t)2), 0);
}

/* ---- a cancelled background sender with bytes still queued ---------------- */

/* The sender is cancelled (a monitor's cancel, the loop's close) while the
 * peer reads nothing: the queue can no longer be sent, so drain and close
 * must return at once with the sender's -ECANCELED, not spin or wait for
 * a flush that nobody performs. Each wait runs under a deadline on the
 * virtual clock that a wrong wait would reach. */
TASK_TEST_VIRTUAL(stream_cancelled_sender_breaks_drain_and_close)
{
    cio_stream *a, *b;
    pair(&a, &b, NULL);
    static char big[1 << 20];
    ASSERT_EQ(cio_stream_write(a, big, sizeof big), 0);
    ASSERT_EQ(cio_yield(), 0); /* the sender fills the socket, then waits */
    cio_task *all[16];
    size_t n = cio_all_tasks(all, 16), cancelled = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(cio_task_name(all[i]), "stream-sender", 13) == 0)
            cancelled += cio_task_cancel(all[i]);
    ASSERT_EQ(cancelled, 1);
    ASSERT_EQ(cio_yield(), 0);
    cio_scope deadline;
    cio_timeout_enter(&deadline, CIO_SEC);
    ASSERT_EQ(cio_stream_drain(a), -ECANCELED);
    ASSERT_EQ(cio_stream_write(a, "x", 1), -ECANCELED);
    ASSERT_EQ(cio_stream_close(a), -ECANCELED);
    ASSERT_EQ(cio_scope_exit(&deadline), 0);
    cio_stream_abort(b);
}

/* The same through the loop's close, as a server's connection task meets
 * it: main returns while a task has 8 MiB queued to a peer that never
 * reads. The close cancels every task, the sender among them; the task's
 * shielded close (what server.c does, deadline 5 s) must then end at once
 * with -ECANCELED instead of spinning (the harness's hang limit). */
static int stuck_close_rc = 1;
static int queue_then_close(void *arg)
{
    (void)arg;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    cio_stream *a, *b;
    ASSERT_EQ(cio_stream_open_fd(&a, sv[0], NULL), 0);
    ASSERT_EQ(cio_stream_open_fd(&b, sv[1], NULL), 0);
    static char big[8 << 20];
    ASSERT_EQ(cio_stream_write(a, big, sizeof big), 0);
    cio_sleep(CIO_HOUR); /* until the loop's close cancels us */
    cio_scope sh;
    cio_shield_enter(&sh, cio_now() + 5 * CIO_SEC);
    int64_t t0 = cio_now();
    stuck_close_rc = cio_stream_close(a);
    ASSERT_LT(cio_now() - t0, 5 * CIO_SEC); /* not the deadline: at once */
    cio_scope_exit(&sh);
    cio_stream_abort(b);
    return 0;
}

static int leave_stuck_writer_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_spawn(NULL, queue_then_close, NULL, "stuck-writer"), 0);
    ASSERT_EQ(cio_sleep(100 * CIO_MSEC), 0);
    return 0; /* the writer is left to cio_loop_close */
}

TEST(stream_loop_close_with_a_stuck_sender_ends)
{
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, leave_stuck_writer_main, NULL), 0);
    ASSERT_EQ(stuck_close_rc, -ECANCELED);
}

/* ---- cio_server_close closes the listener first ---------------------------- */

/* While close waits for a handler's bounded flush, a new client must be
 * refused, not accepted into the backlog and reset seconds later. */
static char late_port[16];
static int late_connect_rc = 1;
static int late_client(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_sleep(300 * CIO_MSEC), 0);
    int fd = cio_tcp_connect("127.0.0.1", late_port, 0);
    late_connect_rc = fd < 0 ? fd : 0;
    if (fd >= 0)
        cio_close(fd);
    return 0;
}

TASK_TEST_VIRTUAL(stream_server_close_refuses_new_clients_at_once)
{
    int stuck = 0;
    cio_server *srv;
    ASSERT_EQ(cio_start_server(&srv, "127.0.0.1", "0", flood_handler, &stuck, NULL), 0);
    server_port(srv, late_port, sizeof late_port);
    int c = cio_tcp_connect("127.0.0.1", late_port, 0); /* never reads */
    ASSERT_GE(c, 0);
    for (int i = 0; i < 100 && stuck == 0; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(stuck, 1);
    cio_task *lc;
    ASSERT_EQ(cio_spawn(&lc, late_client, NULL, "late-client"), 0);
    int64_t t0 = cio_now();
    ASSERT_EQ(cio_server_close(srv), 0);
    ASSERT_GE(cio_now() - t0, 300 * CIO_MSEC); /* the flush outlasted the late client */
    ASSERT_EQ(cio_join(lc, NULL), 0);
    cio_task_release(lc);
    ASSERT_EQ(late_connect_rc, -ECONNREFUSED);
    cio_close(c);
}

/* A stream over a pipe whose reader has gone: the write fails with -EPIPE,
 * with SIGPIPE at its default action (the harness ignores it), so a write
 * that raised it would kill the test. Both the direct attempt of
 * cio_stream_write and the background sender write the pipe. */
static int pipe_reader_gone_main(void *arg)
{
    (void)arg;
    int p[2];
    ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    cio_stream *w;
    ASSERT_EQ(cio_stream_open_fd(&w, p[1], NULL), 0);
    close(p[0]);
    ASSERT_EQ(cio_stream_write(w, "x", 1), -EPIPE);
    ASSERT_EQ(cio_stream_drain(w), -EPIPE);
    cio_stream_abort(w);

    /* The reader leaves while the sender has bytes queued. */
    ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    ASSERT_EQ(cio_stream_open_fd(&w, p[1], NULL), 0);
    static char big[1 << 20];
    ASSERT_EQ(cio_stream_write(w, big, sizeof big), 0); /* fills the pipe */
    ASSERT_GT(cio_stream_write_buffered(w), 0);
    cio_yield(); /* the sender runs, finds the pipe full and waits */
    close(p[0]);
    ASSERT_EQ(cio_stream_drain(w), -EPIPE);
    cio_stream_abort(w);
    sigset_t pending;
    ASSERT_EQ(sigpending(&pending), 0);
    ASSERT_FALSE(sigismember(&pending, SIGPIPE));
    return 0;
}

TEST(stream_over_a_pipe_whose_reader_left_is_epipe_not_sigpipe)
{
    signal(SIGPIPE, SIG_DFL);
    ASSERT_EQ(cio_run(pipe_reader_gone_main, NULL), 0);
}

/* ---- sizes that would wrap ------------------------------------------------- */

static int huge_write_main(void *arg)
{
    (void)arg;
    cio_stream *a, *b;
    pair(&a, &b, NULL);
    static const char small[16];
    /* Nothing queued: refused before any system call (it used to send
     * whatever lay past the buffer, then spin doubling a capacity that
     * wrapped to 0). */
    ASSERT_EQ(cio_stream_write(a, small, SIZE_MAX), -EINVAL);
    ASSERT_EQ(cio_stream_write(a, small, (size_t)SSIZE_MAX + 1), -EINVAL);
    ASSERT_EQ(cio_stream_write_buffered(a), 0);
    /* Bytes queued (the peer does not read): still refused, nothing added. */
    static char chunk[64 * 1024];
    while (cio_stream_write_buffered(a) == 0)
        ASSERT_EQ(cio_stream_write(a, chunk, sizeof chunk), 0);
    size_t q = cio_stream_write_buffered(a);
    ASSERT_EQ(cio_stream_write(a, small, SIZE_MAX), -EINVAL);
    ASSERT_EQ(cio_stream_write(a, small, SIZE_MAX - q + 1), -EINVAL);
    ASSERT_EQ(cio_stream_write_buffered(a), q);
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#endif
#ifndef TEST_ASAN /* (ASan aborts on an allocation that large) */
    /* A size that fits but whose doubled capacity would wrap: the growth
     * stops at what is needed and that allocation fails. (Not under
     * valgrind, which counts a malloc that large as an error.) */
    if (!cio_test_slow()) {
        ASSERT_EQ(cio_stream_write(a, small, (size_t)SSIZE_MAX - 1), -ENOMEM);
        ASSERT_EQ(cio_stream_write_buffered(a), q);
    }
#endif
    cio_stream_abort(a);
    cio_stream_abort(b);
    return 0;
}

TEST(stream_write_of_a_size_that_wraps_is_refused_not_a_spin)
{
    ASSERT_EQ(cio_run(huge_write_main, NULL), 0);
}

TASK_TEST(stream_limit_of_size_max_does_not_wrap)
{
    /* limit SIZE_MAX ("no limit") and a separator: max + seplen and
     * max + 1 must not wrap into "over the limit". */
    cio_stream_options o = {.limit = SIZE_MAX};
    cio_stream *a, *b;
    pair(&a, &b, &o);
    ASSERT_EQ(cio_stream_write(a, "one\r\ntwo\n", 9), 0);
    char buf[16];
    ASSERT_EQ(cio_stream_readuntil(b, "\r\n", 2, buf, SIZE_MAX), 5);
    ASSERT_STREQ(buf, "one\r\n");
    ASSERT_EQ(cio_stream_readline(b, buf, sizeof buf), 4);
    ASSERT_EQ(cio_stream_close(a), 0);
    char *all;
    ASSERT_EQ(cio_stream_read_all(b, SIZE_MAX, &all), 0);
    free(all);
    ASSERT_EQ(cio_stream_close(b), 0);
}

/* ---- handles used after close ---------------------------------------------- */

static int abort_twice_main(void *arg)
{
    (void)arg;
    cio_stream *a, *b;
    pair(&a, &b, NULL);
    /* Bytes queued: the sender keeps the memory after the abort, so the
     * second call finds the stream closed, not freed. */
    static char chunk[64 * 1024];
    while (cio_stream_write_buffered(a) == 0)
        ASSERT_EQ(cio_stream_write(a, chunk, sizeof chunk), 0);
    cio_stream_abort(a);
    cio_stream_abort(a);
    return 0;
}

TEST(stream_aborted_twice_is_named)
{
    expect_panic(abort_twice_main, NULL, false,
                 "cio_stream_abort: stream");
    expect_panic(abort_twice_main, NULL, false, "used after cio_stream_close");
}

static int close_twice_main(void *arg)
{
    (void)arg;
    cio_stream *a, *b;
    pair(&a, &b, NULL);
    ASSERT_EQ(cio_stream_close(a), 0); /* freed */
    cio_stream *c, *d;
    pair(&c, &d, NULL); /* (no reuse of a's memory under CIO_DEBUG) */
    cio_stream_close(a);
    return 0;
}

TEST(stream_closed_twice_is_named_under_debug_not_a_use_after_free)
{
    expect_panic(close_twice_main, NULL, true,
                 "cio_stream_close: stream");
}

static int write_after_close_main(void *arg)
{
    (void)arg;
    cio_stream *a, *b;
    pair(&a, &b, NULL);
    ASSERT_EQ(cio_stream_close(a), 0);
    cio_stream_write(a, "x", 1);
    return 0;
}

TEST(stream_write_after_close_is_named_under_debug)
{
    expect_panic(write_after_close_main, NULL, true,
                 "cio_stream_write: stream");
}

/* ---- read_all ------------------------------------------------------------- */

typedef struct trickle_text {
    cio_stream *s;
    const char *text;
} trickle_text;

static int read_all_trickler(void *arg)
{
    trickle_text *t = arg;
    for (const char *p = t->text; *p; p++) {
        ASSERT_EQ(cio_stream_write(t->s, p, 1), 0);
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    }
    return cio_stream_close(t->s);
}

TASK_TEST_VIRTUAL(stream_read_all_reads_to_the_end)
{
    cio_stream *a, *b;
    pair(&a, &b, NULL);
    /* Bytes trickling in, some already buffered by a readline. */
    ASSERT_EQ(cio_stream_write(a, "head\n", 5), 0);
    char line[16];
    ASSERT_EQ(cio_stream_readline(b, line, sizeof line), 5);
    trickle_text t = {a, "the body, one byte at a time"};
    cio_task *w = spawn(read_all_trickler, &t, "trickle");
    char *all = NULL;
    ASSERT_EQ(cio_stream_read_all(b, 100, &all), (ssize_t)strlen(t.text));
    ASSERT_STREQ(all, t.text);
    free(all);
    ASSERT_EQ(join_release(w), 0);
    ASSERT_TRUE(cio_stream_at_eof(b));
    /* At the end: "" again, never NULL on success. */
    ASSERT_EQ(cio_stream_read_all(b, 100, &all), 0);
    ASSERT_STREQ(all, "");
    free(all);
    ASSERT_EQ(cio_stream_close(b), 0);
}

TASK_TEST(stream_read_all_over_the_cap_is_emsgsize_and_consumes_nothing)
{
    cio_stream *a, *b;
    pair(&a, &b, NULL);
    static char big[100000];
    memset(big, 'x', sizeof big);
    ASSERT_EQ(cio_stream_write(a, big, sizeof big), 0);
    ASSERT_EQ(cio_stream_close(a), 0);
    char *all = (char *)1;
    ASSERT_EQ(cio_stream_read_all(b, sizeof big - 1, &all), -EMSGSIZE);
    ASSERT_PTR_EQ(all, NULL);
    /* Nothing consumed: exactly at the cap it all comes. */
    ASSERT_EQ(cio_stream_read_all(b, sizeof big, &all), (ssize_t)sizeof big);
    ASSERT_EQ(memcmp(all, big, sizeof big), 0);
    ASSERT_EQ(all[sizeof big], 0);
    free(all);
    ASSERT_EQ(cio_stream_read_all(b, 10, NULL), -EINVAL);
    ASSERT_EQ(cio_stream_close(b), 0);
}

TASK_TEST_VIRTUAL(stream_read_all_cancelled_loses_nothing)
{
    cio_stream *a, *b;
    pair(&a, &b, NULL);
    ASSERT_EQ(cio_stream_write(a, "first half, ", 12), 0);
    char *all = (char *)1;
    cio_scope sc;
    cio_timeout_enter(&sc, 10 * CIO_MSEC);
    ASSERT_EQ(cio_stream_read_all(b, 100, &all), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&sc), -ETIMEDOUT);
    ASSERT_PTR_EQ(all, NULL);
    /* Cancelled: what came is still buffered; the next call goes on. */
    ASSERT_EQ(cio_stream_read_buffered(b), 12);
    ASSERT_EQ(cio_stream_write(a, "second half", 11), 0);
    ASSERT_EQ(cio_stream_close(a), 0);
    ASSERT_EQ(cio_stream_read_all(b, 100, &all), 23);
    ASSERT_STREQ(all, "first half, second half");
    free(all);
    ASSERT_EQ(cio_stream_close(b), 0);
}

TASK_TEST(stream_read_all_until_the_peer_closes)
{
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    cio_stream *b;
    ASSERT_EQ(cio_stream_open_fd(&b, sv[1], NULL), 0);
    ASSERT_EQ(write(sv[0], "partial", 7), 7);
    close(sv[0]); /* the peer's close is the end */
    char *all;
    ASSERT_EQ(cio_stream_read_all(b, 100, &all), 7);
    ASSERT_STREQ(all, "partial");
    free(all);
    ASSERT_EQ(cio_stream_close(b), 0);
}

TASK_TEST(stream_readexactly_of_a_count_over_ssize_max_is_einval)
{
    cio_stream *a, *b;
    pair(&a, &b, NULL);
    char buf[4];
    /* The count returned would be negative: an error code's look-alike. */
    ASSERT_EQ(cio_stream_readexactly(b, buf, (size_t)SSIZE_MAX + 1), -EINVAL);
    ASSERT_EQ(cio_stream_close(a), 0);
    ASSERT_EQ(cio_stream_close(b), 0);
}

static int conn_nop(cio_stream *s, void *arg)
{
    (void)s;
    (void)arg;
    return 0;
}

static int server_twice_main(void *arg)
{
    (void)arg;
    cio_server *srv;
    ASSERT_EQ(cio_start_server(&srv, "127.0.0.1", "0", conn_nop, NULL, NULL), 0);
    ASSERT_EQ(cio_server_close(srv), 0);
    cio_server_close(srv);
    return 0;
}

TEST(stream_server_closed_twice_is_named)
{
#if defined(TEST_ASAN)
    cio_test_skip("ASan reports the use after free itself");
#endif
    expect_panic(server_twice_main, NULL, false,
                 "cio_server_close: 0x");
    expect_panic(server_twice_main, NULL, false, "used after cio_server_close");
}

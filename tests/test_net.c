/* Sockets over loopback: echo, refused, reset, close while waiting, UDP,
 * happy eyeballs (stagger on the virtual clock, fast failover), and
 * cancellation at every await of connect + send + recv with no descriptor
 * left open. */
#include "cio.h"
#include "harness.h"
#include "util.h"
#include "peer.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* Open descriptors other than regular files: a resolver thread reading
 * /etc/hosts for a lookup whose caller was cancelled (the worker finishes
 * it late) holds a file open for a moment; that is not a leak. */
static int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat st;
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
            continue;
        if (fstat(atoi(e->d_name), &st) == 0 && S_ISREG(st.st_mode))
            continue;
        n++;
    }
    closedir(d);
    return n;
}

static int local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    return ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                   : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Echo server: accepts `count` connections (ours: see peer.h), echoes
 * each until EOF. */
struct echo_srv {
    int lfd;
    int count;
};

static int echo_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[256];
    ssize_t n;
    int rc = 0;
    while ((n = cio_recv(fd, buf, sizeof buf, 0)) > 0) {
        if ((rc = cio_sleep(0)) != 0)
            break;
        if ((rc = (int)cio_send(fd, buf, (size_t)n, 0)) < 0)
            break;
        rc = 0;
    }
    if (n < 0)
        rc = (int)n;
    cio_close(fd);
    return rc == -ECANCELED ? rc : 0;
}

static int echo_server(void *arg)
{
    struct echo_srv *s = arg;
    cio_group g;
    cio_group_enter(&g);
    int rc = 0;
    for (int i = 0; i < s->count; i++) {
        int fd = cio_accept_ours(s->lfd);
        if (fd < 0) {
            rc = fd;
            break;
        }
        cio_group_spawn(&g, NULL, echo_conn, (void *)(intptr_t)fd, "echo-conn-%d", i);
    }
    int grc = cio_group_exit(&g);
    cio_group_destroy(&g);
    return rc ? rc : grc;
}

TASK_TEST(net_tcp_echo_over_loopback)
{
    int fds_before = count_open_fds();
    int lfd = cio_tcp_listen("127.0.0.1", "0", 16, false);
    ASSERT_GE(lfd, 0);
    char port[16];
    snprintf(port, sizeof port, "%d", local_port(lfd));
    struct echo_srv srv = {.lfd = lfd, .count = 3};
    cio_task *st;
    ASSERT_EQ(cio_spawn(&st, echo_server, &srv, "echo-server"), 0);
    for (int c = 0; c < 3; c++) {
        int fd = cio_tcp_connect("127.0.0.1", port, 0);
        ASSERT_GE(fd, 0);
        char msg[64], got[64] = {0};
        int len = snprintf(msg, sizeof msg, "hello %d", c);
        ASSERT_EQ(cio_send(fd, msg, (size_t)len, 0), len);
        ASSERT_EQ(cio_recv(fd, got, sizeof got, 0), len);
        ASSERT_STREQ(got, msg);
        ASSERT_EQ(cio_close(fd), 0);
    }
    int status;
    ASSERT_EQ(cio_join(st, &status), 0);
    ASSERT_EQ(status, 0);
    cio_task_release(st);
    ASSERT_EQ(cio_close(lfd), 0);
    ASSERT_EQ(count_open_fds(), fds_before);
    /* "localhost" goes through the resolver and the race. */
    lfd = cio_tcp_listen("localhost", "0", 4, true);
    ASSERT_GE(lfd, 0);
    snprintf(port, sizeof port, "%d", local_port(lfd));
    int fd = cio_tcp_connect("localhost", port, 0);
    ASSERT_GE(fd, 0);
    cio_close(fd);
    cio_close(lfd);
}

TASK_TEST(net_connect_refused_and_unknown_host)
{
    /* A port nobody listens on: bind one, note it, close it. */
    int lfd = cio_tcp_listen("127.0.0.1", "0", 1, false);
    char port[16];
    snprintf(port, sizeof port, "%d", local_port(lfd));
    cio_close(lfd);
    ASSERT_EQ(cio_tcp_connect("127.0.0.1", port, 0), -ECONNREFUSED);
    ASSERT_TRUE(cio_tcp_connect("cio-test.invalid", "80", 0) < CIO_EAI_BASE);
}

/* Reset mid-read: the peer sends a little, then aborts (SO_LINGER 0). */
static int resetter(void *arg)
{
    int lfd = *(int *)arg;
    int fd = cio_accept_ours(lfd);
    if (fd < 0)
        return fd;
    ASSERT_EQ(cio_send(fd, "part", 4, 0), 4);
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    cio_close(fd);
    return 0;
}

TASK_TEST(net_peer_reset_mid_read)
{
    int lfd = cio_tcp_listen("127.0.0.1", "0", 4, false);
    char port[16];
    snprintf(port, sizeof port, "%d", local_port(lfd));
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, resetter, &lfd, "resetter"), 0);
    int fd = cio_tcp_connect("127.0.0.1", port, 0);
    ASSERT_GE(fd, 0);
    char buf[16];
    ASSERT_EQ(cio_recv(fd, buf, sizeof buf, 0), 4);
    ASSERT_EQ(cio_recv(fd, buf, sizeof buf, 0), -ECONNRESET);
    ASSERT_EQ(cio_join(t, NULL), 0);
    cio_task_release(t);
    cio_close(fd);
    cio_close(lfd);
}

/* A stalled peer: the deadline fires (virtual clock). */
TASK_TEST_VIRTUAL(net_stalled_peer_deadline)
{
    int lfd = cio_tcp_listen("127.0.0.1", "0", 4, false);
    char port[16];
    snprintf(port, sizeof port, "%d", local_port(lfd));
    int fd = cio_tcp_connect("127.0.0.1", port, 0); /* in the backlog */
    ASSERT_GE(fd, 0);
    char buf[16];
    cio_scope s;
    cio_timeout_enter(&s, 5 * CIO_SEC);
    ASSERT_EQ(cio_recv(fd, buf, sizeof buf, 0), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 5 * CIO_SEC);
    cio_close(fd);
    cio_close(lfd);
}

/* Closing a socket another task waits on wakes it with -EBADF. */
static int blocked_reader(void *arg)
{
    char buf[8];
    return (int)cio_recv(*(int *)arg, buf, sizeof buf, 0);
}

TASK_TEST(net_close_wakes_a_blocked_reader)
{
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, blocked_reader, &sv[0], "reader"), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(cio_close(sv[0]), 0);
    int status;
    ASSERT_EQ(cio_join(t, &status), 0);
    ASSERT_EQ(status, -EBADF);
    cio_task_release(t);
    cio_close(sv[1]);
}

TASK_TEST(net_udp_over_ipv6_loopback)
{
    int a = cio_socket(AF_INET6, SOCK_DGRAM, 0), b = cio_socket(AF_INET6, SOCK_DGRAM, 0);
    ASSERT_GE(a, 0);
    ASSERT_GE(b, 0);
    struct sockaddr_in6 addr = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    ASSERT_EQ(bind(a, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    getsockname(a, (struct sockaddr *)&addr, &len);
    ASSERT_EQ(cio_sendto(b, "dgram", 5, 0, (struct sockaddr *)&addr, len), 5);
    char buf[16] = {0};
    struct sockaddr_in6 from;
    socklen_t flen = sizeof from;
    ASSERT_EQ(cio_recvfrom(a, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen), 5);
    ASSERT_STREQ(buf, "dgram");
    ASSERT_EQ(cio_sendto(a, "back", 4, 0, (struct sockaddr *)&from, flen), 4);
    memset(buf, 0, sizeof buf);
    ASSERT_EQ(cio_recvfrom(b, buf, sizeof buf, 0, NULL, NULL), 4);
    ASSERT_STREQ(buf, "back");
    cio_close(a);
    cio_close(b);
}

/* ---- happy eyeballs ------------------------------------------------------ */

/* A listener whose accept queue is full: further SYNs are dropped, so a
 * connection attempt to it hangs (a black hole on loopback). */
struct blackhole {
    int lfd, filler;
    struct sockaddr_in addr;
};

static void blackhole_open(struct blackhole *b)
{
    b->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    b->addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(bind(b->lfd, (struct sockaddr *)&b->addr, sizeof b->addr), 0);
    ASSERT_EQ(listen(b->lfd, 0), 0);
    socklen_t len = sizeof b->addr;
    getsockname(b->lfd, (struct sockaddr *)&b->addr, &len);
    b->filler = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    connect(b->filler, (struct sockaddr *)&b->addr, sizeof b->addr);
}

static void blackhole_close(struct blackhole *b)
{
    close(b->filler);
    close(b->lfd);
}

static struct addrinfo make_ai(struct sockaddr_in *sa, struct addrinfo *next)
{
    return (struct addrinfo){.ai_family = AF_INET, .ai_socktype = SOCK_STREAM,
                             .ai_addrlen = sizeof *sa, .ai_addr = (struct sockaddr *)sa,
                             .ai_next = next};
}

TASK_TEST_VIRTUAL(net_happy_eyeballs_stagger_and_failover)
{
    int fds_before = count_open_fds();
    struct blackhole bh;
    blackhole_open(&bh);
    int good = cio_tcp_listen("127.0.0.1", "0", 4, false);
    struct sockaddr_in gaddr = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)local_port(good)),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct addrinfo second = make_ai(&gaddr, NULL);
    struct addrinfo first = make_ai(&bh.addr, &second);
    /* The first attempt hangs: the second starts after the stagger and
     * wins; the hanging one is cancelled and closed. */
    int64_t t0 = cio_now();
    int fd = cio_connect_race(&first, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(cio_now() - t0, CIO_HAPPY_EYEBALLS_DELAY);
    ASSERT_EQ(local_port(fd) != 0, 1);
    cio_close(fd);
    t0 = cio_now();
    fd = cio_connect_race(&first, 100 * CIO_MSEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(cio_now() - t0, 100 * CIO_MSEC);
    cio_close(fd);
    /* A refused first address fails over at once, with no stagger. */
    int closed = cio_tcp_listen("127.0.0.1", "0", 1, false);
    struct sockaddr_in caddr = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)local_port(closed)),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cio_close(closed);
    struct addrinfo refused = make_ai(&caddr, &second);
    t0 = cio_now();
    fd = cio_connect_race(&refused, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(cio_now() - t0, 0);
    cio_close(fd);
    /* Only black holes: a deadline ends it and nothing is left open. */
    struct addrinfo only_bh = make_ai(&bh.addr, NULL);
    cio_scope s;
    cio_timeout_enter(&s, 2 * CIO_SEC);
    ASSERT_EQ(cio_connect_race(&only_bh, 0), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    /* Every refused: the last error. */
    struct addrinfo r2 = make_ai(&caddr, NULL);
    struct addrinfo r1 = make_ai(&caddr, &r2);
    ASSERT_EQ(cio_connect_race(&r1, 0), -ECONNREFUSED);
    ASSERT_EQ(cio_connect_race(NULL, 0), -EINVAL);
    /* Accept and close what the good listener got. */
    int c;
    while ((c = accept4(good, NULL, NULL, SOCK_CLOEXEC)) >= 0)
        close(c);
    cio_close(good);
    blackhole_close(&bh);
    ASSERT_EQ(count_open_fds(), fds_before);
}

/* ---- cancellation at every await ---------------------------------------- */

struct client_case {
    const char *host;
    const char *port;
    int cancel_before; /* cancel ourselves right before step k (0..3) */
    int steps_done;
};

static int client_sequence(void *arg)
{
    struct client_case *c = arg;
    int fd = -1, rc = 0;
    char buf[16];
    for (int step = 0; step < 3; step++) {
        if (step == c->cancel_before)
            cio_task_cancel(cio_current());
        if (step == 0)
            rc = fd = cio_tcp_connect(c->host, c->port, 0);
        else if (step == 1)
            rc = (int)cio_send(fd, "abc", 3, 0);
        else
            rc = (int)cio_recv(fd, buf, sizeof buf, 0);
        if (rc < 0)
            break;
        c->steps_done++;
    }
    if (fd >= 0)
        cio_close(fd);
    return rc < 0 ? rc : 0;
}

/* arg: the host to connect to: "127.0.0.1", or "localhost", which goes
 * through the resolver on the thread pool and (where it lists ::1 first)
 * a refused IPv6 attempt before the IPv4 one. */
static int pool_nop(void *arg)
{
    (void)arg;
    return 0;
}

static int cancel_every_main(void *arg)
{
    const char *host = arg;
    bool by_name = strcmp(host, "127.0.0.1") != 0;
    if (by_name)
        ASSERT_EQ(cio_executor_set_threads(1), 0); /* lookups in FIFO order */
    int fds_before = count_open_fds();
    int lfd = cio_tcp_listen("127.0.0.1", "0", 16, false);
    char port[16];
    snprintf(port, sizeof port, "%d", local_port(lfd));
    /* Pre-cancelled at each step. */
    for (int k = 0; k < 4; k++) {
        struct echo_srv srv = {.lfd = lfd, .count = 1};
        cio_task *st, *ct;
        ASSERT_EQ(cio_spawn(&st, echo_server, &srv, "srv"), 0);
        struct client_case c = {.host = host, .port = port, .cancel_before = k};
        ASSERT_EQ(cio_spawn(&ct, client_sequence, &c, "client-%d", k), 0);
        int status;
        ASSERT_EQ(cio_join(ct, &status), 0);
        ASSERT_EQ(c.steps_done, k < 3 ? k : 3);
        ASSERT_EQ(status, k < 3 ? -ECANCELED : 0);
        /* No client came (k = 0), or it may have closed before the server
         * accepted it: such a connection is no longer ours to the server
         * (peer.h), which would wait on. */
        cio_task_cancel(st);
        cio_join(st, NULL);
        cio_task_release(st);
        cio_task_release(ct);
    }
    /* Cancelled from outside after k turns of the loop, for k = 0, 1, 2...
     * until the sequence completes before the cancel lands: every await of
     * it (the resolver, the race and its attempt, connect, send, recv) is
     * hit in turn, and after each one no descriptor is left open. */
    int fds_listening = count_open_fds();
    int cancelled = 0, k;
    int steps_seen[4] = {0};
    /* (A lookup on the pool takes many turns: a bigger bound by name.) */
    int max_k = by_name ? 100000 : 500;
    for (k = 0; k < max_k; k++) {
        struct echo_srv srv = {.lfd = lfd, .count = 1};
        cio_task *st, *ct;
        ASSERT_EQ(cio_spawn(&st, echo_server, &srv, "srv"), 0);
        struct client_case c = {.host = host, .port = port, .cancel_before = 99};
        ASSERT_EQ(cio_spawn(&ct, client_sequence, &c, "client-late-%d", k), 0);
        for (int y = 0; y < k && !cio_task_done(ct); y++)
            ASSERT_EQ(cio_yield(), 0);
        bool done_first = cio_task_done(ct);
        cio_task_cancel(ct);
        int status;
        ASSERT_EQ(cio_join(ct, &status), 0);
        /* Cancelled while waiting: -ECANCELED. (Cancelled after its last
         * recv was woken but before it ran, it completes: the cancel would
         * only show at a later await, and there is none.) */
        ASSERT_TRUE(status == -ECANCELED || (status == 0 && c.steps_done == 3));
        if (status == 0)
            done_first = true;
        steps_seen[c.steps_done]++;
        cio_task_cancel(st);
        cio_join(st, NULL);
        cio_task_release(st);
        cio_task_release(ct);
        /* By name, a cancelled caller's lookup may still run on the pool's
         * one thread, which holds descriptors of its own meanwhile (glibc
         * asks nscd over a Unix socket, reads /etc/hosts): a job queued
         * behind it returns once it is over. */
        if (by_name)
            ASSERT_EQ(cio_to_thread(pool_nop, NULL), 0);
        if (count_open_fds() != fds_listening)
            cio_test_note("cancelled after %d turns, %d steps done", k, c.steps_done);
        ASSERT_EQ(count_open_fds(), fds_listening);
        if (done_first)
            break;
        cancelled++;
    }
    ASSERT_LT(k, max_k);
    /* The cancellation landed in connect (by name: in the lookup on the
     * pool or in the race), in send and in recv. By name the lookup's
     * length varies from run to run, so which later awaits a given k hits
     * is not fixed: there only "before connecting" is certain. */
    ASSERT_GT(steps_seen[0], 0);
    if (!by_name)
        ASSERT_GT(steps_seen[2], 0);
    ASSERT_EQ(steps_seen[3], 1);
    cio_test_note("%d cancellation points: %d before connecting, %d in send, %d in recv",
                  cancelled, steps_seen[0], steps_seen[1], steps_seen[2]);
    cio_close(lfd);
    ASSERT_EQ(count_open_fds(), fds_before);
    return 0;
}

TEST(net_cancel_at_every_await_leaves_no_fd)
{
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, cancel_every_main, "127.0.0.1"), 0);
}

TEST(net_cancel_at_every_await_by_name_leaves_no_fd)
{
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, cancel_every_main, "localhost"), 0);
}

/* The same sequence (connect, send, recv, close) through
 * cio_test_cancel_every_await: cancelled, and timed out, at each of its
 * suspension points in turn, it returns the cancellation and leaves no
 * descriptor, registration or task (the server's connection task, once it
 * has seen the close), and the server is undisturbed. */
static int client_sequence_to(void *arg)
{
    struct client_case c = {.host = "127.0.0.1", .port = arg, .cancel_before = 99};
    return client_sequence(&c);
}

static int net_settle(void *arg)
{
    int base = *(int *)arg;
    for (int y = 0; y < 20 && count_open_fds() != base; y++)
        cio_sleep(CIO_MSEC);
    return 0;
}

TASK_TEST_VIRTUAL(net_cancel_at_every_await_by_the_sweep_leaves_no_fd)
{
    int lfd = cio_tcp_listen("127.0.0.1", "0", 16, false);
    ASSERT_GE(lfd, 0);
    char port[16];
    snprintf(port, sizeof port, "%d", local_port(lfd));
    struct echo_srv srv = {.lfd = lfd, .count = 1000};
    cio_task *st;
    ASSERT_EQ(cio_spawn(&st, echo_server, &srv, "echo-server"), 0);
    ASSERT_EQ(cio_yield(), 0); /* accepting */
    int base = count_open_fds();
    cio_cancel_sweep_options o = {.settle = net_settle, .settle_arg = &base};
    cio_cancel_sweep_result r;
    ASSERT_EQ(cio_test_cancel_every_await(&o, client_sequence_to, port, &r), 0);
    ASSERT_GE(r.points, 2u); /* connect and recv at least */
    cio_test_note("%zu suspension points", r.points);
    cio_task_cancel(st);
    cio_join(st, NULL);
    cio_task_release(st);
    cio_close(lfd);
}

/* ---- IPv6, Unix sockets, SO_REUSEPORT, shutdown, UDP echo ---------------- */

TASK_TEST(net_tcp_over_ipv6_loopback_and_half_close)
{
    int lfd = cio_tcp_listen("::1", "0", 4, false);
    ASSERT_GE(lfd, 0);
    char port[16];
    snprintf(port, sizeof port, "%d", local_port(lfd));
    struct echo_srv srv = {.lfd = lfd, .count = 1};
    cio_task *st;
    ASSERT_EQ(cio_spawn(&st, echo_server, &srv, "echo6"), 0);
    int fd = cio_tcp_connect("::1", port, 0);
    ASSERT_GE(fd, 0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ASSERT_EQ(getpeername(fd, (struct sockaddr *)&ss, &len), 0);
    ASSERT_EQ(ss.ss_family, AF_INET6);
    char got[16] = {0};
    ASSERT_EQ(cio_send(fd, "over v6", 7, 0), 7);
    ASSERT_EQ(cio_recv(fd, got, sizeof got, 0), 7);
    ASSERT_STREQ(got, "over v6");
    /* Half-close: the server sees EOF and ends; we still read its FIN. */
    ASSERT_EQ(cio_shutdown(fd, SHUT_WR), 0);
    ASSERT_EQ(cio_recv(fd, got, sizeof got, 0), 0);
    ASSERT_EQ(cio_join(st, NULL), 0);
    cio_task_release(st);
    cio_close(fd);
    cio_close(lfd);
    ASSERT_EQ(cio_shutdown(lfd, SHUT_RDWR), -EBADF);
}

/* accept4 without waiting, closing connections from other processes:
 * ours, or -1 when none is queued. */
static int accept_ours_nowait(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0 || peer_is_ours(fd))
            return fd;
        close(fd);
    }
}

TASK_TEST(net_reuse_port_shares_a_port)
{
    int a = cio_tcp_listen("127.0.0.1", "0", 4, true);
    ASSERT_GE(a, 0);
    char port[16];
    snprintf(port, sizeof port, "%d", local_port(a));
    /* A second listener on the same port: with SO_REUSEPORT on both (a
     * loop per core), and refused without it. */
    int b = cio_tcp_listen("127.0.0.1", port, 4, true);
    ASSERT_GE(b, 0);
    ASSERT_EQ(local_port(b), local_port(a));
    ASSERT_EQ(cio_tcp_listen("127.0.0.1", port, 4, false), -EADDRINUSE);
    /* The kernel spreads connections over both. */
    int seen_a = 0, seen_b = 0;
    for (int i = 0; i < 64 && !(seen_a && seen_b); i++) {
        int c = cio_tcp_connect("127.0.0.1", port, 0);
        ASSERT_GE(c, 0);
        int x = accept_ours_nowait(a), y = -1;
        if (x >= 0)
            seen_a++, close(x);
        else
            y = accept_ours_nowait(b);
        if (y >= 0)
            seen_b++, close(y);
        cio_close(c);
    }
    ASSERT_TRUE(seen_a > 0 && seen_b > 0);
    cio_close(a);
    cio_close(b);
}

/* Unix stream sockets on a path in /tmp, and Unix datagrams. */
TASK_TEST(net_unix_stream_and_datagram_sockets)
{
    int fds_before = count_open_fds();
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "/tmp/cio-test-%d.sock", (int)getpid());
    unlink(sun.sun_path);
    int lfd = cio_socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(lfd, 0);
    ASSERT_EQ(bind(lfd, (struct sockaddr *)&sun, sizeof sun), 0);
    ASSERT_EQ(listen(lfd, 4), 0);
    struct echo_srv srv = {.lfd = lfd, .count = 1};
    cio_task *st;
    ASSERT_EQ(cio_spawn(&st, echo_server, &srv, "unix-echo"), 0);
    int fd = cio_socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_EQ(cio_connect(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    char got[16] = {0};
    ASSERT_EQ(cio_send(fd, "unix", 4, 0), 4);
    ASSERT_EQ(cio_recv(fd, got, sizeof got, 0), 4);
    ASSERT_STREQ(got, "unix");
    cio_close(fd);
    ASSERT_EQ(cio_join(st, NULL), 0);
    cio_task_release(st);
    cio_close(lfd);
    unlink(sun.sun_path);
    /* Datagrams between two abstract addresses. */
    struct sockaddr_un da = {.sun_family = AF_UNIX}, db = {.sun_family = AF_UNIX};
    int la = snprintf(da.sun_path + 1, sizeof da.sun_path - 1, "cio-dgram-a-%d", (int)getpid());
    int lb = snprintf(db.sun_path + 1, sizeof db.sun_path - 1, "cio-dgram-b-%d", (int)getpid());
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)la);
    socklen_t blen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)lb);
    int a = cio_socket(AF_UNIX, SOCK_DGRAM, 0), b = cio_socket(AF_UNIX, SOCK_DGRAM, 0);
    ASSERT_EQ(bind(a, (struct sockaddr *)&da, alen), 0);
    ASSERT_EQ(bind(b, (struct sockaddr *)&db, blen), 0);
    ASSERT_EQ(cio_sendto(a, "one", 3, 0, (struct sockaddr *)&db, blen), 3);
    ASSERT_EQ(cio_sendto(a, "two!", 4, 0, (struct sockaddr *)&db, blen), 4);
    struct sockaddr_un from;
    socklen_t flen = sizeof from;
    memset(got, 0, sizeof got);
    ASSERT_EQ(cio_recvfrom(b, got, sizeof got, 0, (struct sockaddr *)&from, &flen), 3);
    ASSERT_EQ(flen, alen); /* each datagram on its own, with its sender */
    ASSERT_EQ(cio_recvfrom(b, got, sizeof got, 0, NULL, NULL), 4);
    cio_close(a);
    cio_close(b);
    ASSERT_EQ(count_open_fds(), fds_before);
}

/* UDP echo server task, many datagrams, IPv4. */
static int udp_echo(void *arg)
{
    int fd = *(int *)arg;
    char buf[2048];
    for (;;) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n = cio_recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
        if (n < 0)
            return n == -ECANCELED ? 0 : (int)n;
        if (n == 4 && !memcmp(buf, "quit", 4))
            return 0;
        if (cio_sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, flen) != n)
            return -EIO;
    }
}

TASK_TEST(net_udp_echo_ipv4)
{
    int s = cio_socket(AF_INET, SOCK_DGRAM, 0), c = cio_socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(bind(s, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    getsockname(s, (struct sockaddr *)&addr, &len);
    ASSERT_EQ(connect(c, (struct sockaddr *)&addr, len), 0);
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, udp_echo, &s, "udp-echo"), 0);
    for (int i = 0; i < 200; i++) {
        char msg[64], got[64];
        int l = snprintf(msg, sizeof msg, "datagram %d", i);
        ASSERT_EQ(cio_send(c, msg, (size_t)l, 0), l);
        ASSERT_EQ(cio_recv(c, got, sizeof got, 0), l);
        ASSERT_EQ(memcmp(got, msg, (size_t)l), 0);
    }
    ASSERT_EQ(cio_send(c, "quit", 4, 0), 4);
    int st;
    ASSERT_EQ(cio_join(t, &st), 0);
    ASSERT_EQ(st, 0);
    cio_task_release(t);
    cio_close(s);
    cio_close(c);
}

/* ---- happy eyeballs across families ------------------------------------ */

/* An IPv6 black hole first (a ::1 listener with a full accept queue), the
 * IPv4 address second: the IPv4 attempt starts 250 ms later (virtual
 * clock) and wins; the IPv6 one is cancelled and closed. A refused IPv6
 * address fails over to IPv4 at once. */
TASK_TEST_VIRTUAL(net_happy_eyeballs_ipv6_black_hole_then_ipv4)
{
    int fds_before = count_open_fds();
    int bh = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 bha = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    ASSERT_EQ(bind(bh, (struct sockaddr *)&bha, sizeof bha), 0);
    ASSERT_EQ(listen(bh, 0), 0);
    socklen_t len = sizeof bha;
    getsockname(bh, (struct sockaddr *)&bha, &len);
    int filler = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    connect(filler, (struct sockaddr *)&bha, sizeof bha);
    int good = cio_tcp_listen("127.0.0.1", "0", 4, false);
    struct sockaddr_in ga = {.sin_family = AF_INET, .sin_port = htons((uint16_t)local_port(good)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct addrinfo v4 = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM,
                          .ai_addrlen = sizeof ga, .ai_addr = (struct sockaddr *)&ga};
    struct addrinfo v6 = {.ai_family = AF_INET6, .ai_socktype = SOCK_STREAM,
                          .ai_addrlen = sizeof bha, .ai_addr = (struct sockaddr *)&bha,
                          .ai_next = &v4};
    int64_t t0 = cio_now();
    int fd = cio_connect_race(&v6, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(cio_now() - t0, CIO_HAPPY_EYEBALLS_DELAY);
    struct sockaddr_storage ss;
    len = sizeof ss;
    getpeername(fd, (struct sockaddr *)&ss, &len);
    ASSERT_EQ(ss.ss_family, AF_INET);
    cio_close(fd);
    /* Refused on IPv6 (nobody listens on that port any more). */
    close(filler);
    close(bh);
    t0 = cio_now();
    fd = cio_connect_race(&v6, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(cio_now() - t0, 0);
    cio_close(fd);
    int c;
    while ((c = accept4(good, NULL, NULL, SOCK_CLOEXEC)) >= 0)
        close(c);
    cio_close(good);
    ASSERT_EQ(count_open_fds(), fds_before);
}

/* By name: "localhost" goes through cio_getaddrinfo, the family
 * interleaving and the race (with both families only where the system's
 * resolver gives both). */
TASK_TEST(net_happy_eyeballs_by_name)
{
    int lfd = cio_tcp_listen("127.0.0.1", "0", 4, false);
    char port[16];
    snprintf(port, sizeof port, "%d", local_port(lfd));
    int64_t t0 = cio_now();
    int fd = cio_tcp_connect("localhost", port, 0);
    ASSERT_GE(fd, 0);
    ASSERT_LT(cio_now() - t0, CIO_HAPPY_EYEBALLS_DELAY); /* refused v6 fails over at once */
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getpeername(fd, (struct sockaddr *)&ss, &len);
    ASSERT_EQ(ss.ss_family, AF_INET);
    cio_close(fd);
    cio_close(lfd);
}

/* Several acceptor tasks on one listening socket (a common server shape):
 * each connection goes to exactly one of them, none is stranded. */
static int acceptor_lfd, accepted_by[3];
static int acceptor(void *arg)
{
    int i = (int)(intptr_t)arg;
    int fd = cio_accept_ours(acceptor_lfd);
    if (fd < 0)
        return fd;
    accepted_by[i]++;
    cio_close(fd);
    return 0;
}

TASK_TEST(net_several_acceptors_share_a_listener)
{
    acceptor_lfd = cio_tcp_listen("127.0.0.1", "0", 16, false);
    ASSERT_GE(acceptor_lfd, 0);
    char port[16];
    snprintf(port, sizeof port, "%d", local_port(acceptor_lfd));
    cio_scope deadline;
    cio_timeout_enter(&deadline, 5 * CIO_SEC);
    cio_group g;
    cio_group_enter(&g);
    for (intptr_t i = 0; i < 3; i++)
        ASSERT_EQ(cio_group_spawn(&g, NULL, acceptor, (void *)i, "acceptor-%d", (int)i), 0);
    ASSERT_EQ(cio_yield(), 0); /* all three wait in accept */
    int c[3];
    for (int i = 0; i < 3; i++)
        ASSERT_GE(c[i] = cio_tcp_connect("127.0.0.1", port, 0), 0);
    ASSERT_EQ(cio_group_exit(&g), 0);
    cio_group_destroy(&g);
    ASSERT_EQ(cio_scope_exit(&deadline), 0);
    ASSERT_EQ(accepted_by[0] + accepted_by[1] + accepted_by[2], 3);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(accepted_by[i], 1);
        cio_close(c[i]);
    }
    cio_close(acceptor_lfd);
}

/* The short-read shortcut of cio_recv on stream sockets (a short read
 * means the queue was empty, so the next cio_recv waits before trying):
 * it must never wait while bytes are there — after data came in between,
 * after a cio_wait_fd that consumed the readiness, after MSG_PEEK, and
 * after the peer closed. Each step runs under a deadline that a wrong wait
 * would hit. */
TASK_TEST(net_short_read_shortcut_never_waits_with_bytes_queued)
{
    int lfd = cio_tcp_listen("127.0.0.1", "0", 4, false);
    ASSERT_GE(lfd, 0);
    char port[16];
    snprintf(port, sizeof port, "%d", local_port(lfd));
    int c = cio_tcp_connect("127.0.0.1", port, 0);
    ASSERT_GE(c, 0);
    int s = cio_accept_ours(lfd);
    ASSERT_GE(s, 0);
    char buf[64];
    cio_scope deadline;
    cio_timeout_enter(&deadline, 2 * CIO_SEC);
    /* 1. Short read, then more data before the next call. */
    ASSERT_EQ(send(c, "abc", 3, 0), 3);
    ASSERT_EQ(cio_recv(s, buf, sizeof buf, 0), 3);
    ASSERT_EQ(send(c, "de", 2, 0), 2);
    ASSERT_EQ(cio_recv(s, buf, sizeof buf, 0), 2);
    ASSERT_EQ(memcmp(buf, "de", 2), 0);
    /* 2. Short read; data comes; cio_wait_fd takes the readiness; the next
     *    cio_recv must read, not wait for an edge that has been used. */
    ASSERT_EQ(send(c, "f", 1, 0), 1);
    ASSERT_EQ(cio_wait_fd(s, CIO_READABLE), CIO_READABLE);
    ASSERT_EQ(cio_recv(s, buf, sizeof buf, 0), 1);
    ASSERT_EQ(send(c, "gh", 2, 0), 2);
    ASSERT_EQ(cio_wait_fd(s, CIO_READABLE), CIO_READABLE);
    ASSERT_EQ(cio_recv(s, buf, sizeof buf, 0), 2);
    /* 3. A peek proves nothing: the bytes are still there. */
    ASSERT_EQ(send(c, "ij", 2, 0), 2);
    ASSERT_EQ(cio_wait_fd(s, CIO_READABLE), CIO_READABLE);
    ASSERT_EQ(cio_recv(s, buf, sizeof buf, MSG_PEEK), 2);
    ASSERT_EQ(cio_recv(s, buf, sizeof buf, MSG_PEEK), 2);
    ASSERT_EQ(cio_recv(s, buf, sizeof buf, 0), 2);
    ASSERT_EQ(memcmp(buf, "ij", 2), 0);
    /* 4. cio_read takes the same path; then the peer closes: end of stream. */
    ASSERT_EQ(send(c, "k", 1, 0), 1);
    ASSERT_EQ(cio_read(s, buf, sizeof buf), 1);
    ASSERT_EQ(cio_close(c), 0);
    ASSERT_EQ(cio_recv(s, buf, sizeof buf, 0), 0);
    ASSERT_EQ(cio_scope_exit(&deadline), 0);
    cio_close(s);
    cio_close(lfd);
}

/* The wildcard listener takes both families: one dual-stack socket. */
TASK_TEST(net_wildcard_listener_takes_ipv4_and_ipv6)
{
    int lfd = cio_tcp_listen(NULL, "0", 4, false);
    ASSERT_GE(lfd, 0);
    char port[16];
    snprintf(port, sizeof port, "%d", local_port(lfd));
    const char *hosts[] = {"127.0.0.1", "::1"};
    for (int i = 0; i < 2; i++) {
        int probe = socket(i ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
        if (probe < 0) {
            cio_test_note("no %s here: not tried", hosts[i]);
            continue;
        }
        close(probe);
        int c = cio_tcp_connect(hosts[i], port, 0);
        ASSERT_GE(c, 0);
        int s = cio_accept_ours(lfd);
        ASSERT_GE(s, 0);
        ASSERT_EQ(cio_send(c, "hi", 2, 0), 2);
        char buf[4];
        ASSERT_EQ(cio_recv(s, buf, sizeof buf, 0), 2);
        cio_close(s);
        cio_close(c);
    }
    cio_close(lfd);
}

/* Reads that stop short with bytes still queued, where the short-read
 * shortcut must not apply: TCP urgent data (a read stops at the mark) and
 * a Unix stream socket whose read stops at a message carrying descriptors.
 * The reader parks first, so the one edge that brings all the bytes is
 * used to wake it; a shortcut taken wrongly would then wait for an edge
 * that never comes (the deadline). */
static int short_fd;
static ssize_t short_first, short_second;
/* arg: NULL to read short_fd with cio_recv, or a cio_stream over it. */
static int short_reader(void *arg)
{
    cio_stream *st = arg;
    char buf[100];
    short_first = st ? cio_stream_read(st, buf, sizeof buf)
                     : cio_recv(short_fd, buf, sizeof buf, 0);
    cio_scope deadline;
    cio_timeout_enter(&deadline, 2 * CIO_SEC);
    short_second = st ? cio_stream_read(st, buf, sizeof buf)
                      : cio_recv(short_fd, buf, sizeof buf, 0);
    cio_scope_exit(&deadline);
    return 0;
}

TASK_TEST(net_short_read_at_tcp_urgent_mark_does_not_wait)
{
    int lfd = cio_tcp_listen("127.0.0.1", "0", 4, false);
    ASSERT_GE(lfd, 0);
    char port[16];
    snprintf(port, sizeof port, "%d", local_port(lfd));
    int peer = cio_tcp_connect("127.0.0.1", port, 0);
    ASSERT_GE(peer, 0);
    ASSERT_GE(short_fd = cio_accept_ours(lfd), 0);
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, short_reader, NULL, "reader"), 0);
    ASSERT_EQ(cio_sleep(10 * CIO_MSEC), 0); /* the reader waits in cio_recv */
    ASSERT_EQ(send(peer, "abc", 3, 0), 3);
    ASSERT_EQ(send(peer, "X", 1, MSG_OOB), 1);
    ASSERT_EQ(send(peer, "defgh", 5, 0), 5);
    ASSERT_EQ(cio_join(t, NULL), 0);
    cio_task_release(t);
    ASSERT_EQ(short_first, 3); /* stopped at the urgent mark */
    ASSERT_EQ(short_second, 5);
    cio_close(short_fd);
    cio_close(peer);
    cio_close(lfd);
}

/* arg non-NULL: read through a stream (which used to take the shortcut
 * on every SOCK_STREAM socket), else with cio_recv. */
static int scm_main(void *arg)
{
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    short_fd = sv[0];
    cio_stream *st = NULL;
    if (arg)
        ASSERT_EQ(cio_stream_open_fd(&st, sv[0], NULL), 0);
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, short_reader, st, "reader"), 0);
    ASSERT_EQ(cio_sleep(10 * CIO_MSEC), 0);
    /* "A" with a descriptor attached, then "BCD": one read stops after "A". */
    int passed = sv[1];
    char cbuf[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {.iov_base = "A", .iov_len = 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                       .msg_controllen = sizeof cbuf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &passed, sizeof passed);
    ASSERT_EQ(sendmsg(sv[1], &m, 0), 1);
    ASSERT_EQ(send(sv[1], "BCD", 3, 0), 3);
    ASSERT_EQ(cio_join(t, NULL), 0);
    cio_task_release(t);
    ASSERT_EQ(short_first, 1);
    ASSERT_EQ(short_second, 3);
    if (st)
        cio_stream_abort(st); /* closes sv[0] */
    else
        cio_close(sv[0]);
    cio_close(sv[1]);
    return 0;
}

TEST(net_short_read_at_unix_scm_rights_does_not_wait)
{
    ASSERT_EQ(cio_run(scm_main, NULL), 0);
    ASSERT_EQ(cio_run(scm_main, "stream"), 0);
}

/* ---- no SIGPIPE from a write to a reader that has gone ------------------- */

/* These run with SIGPIPE at its default action (the harness ignores it):
 * a write that raised it would kill the test. */

static bool sigpipe_pending(void)
{
    sigset_t pending;
    ASSERT_EQ(sigpending(&pending), 0);
    return sigismember(&pending, SIGPIPE);
}

static bool sigpipe_blocked(void)
{
    sigset_t mask;
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, NULL, &mask), 0);
    return sigismember(&mask, SIGPIPE);
}

static int write_closed_socket_main(void *arg)
{
    (void)arg;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    close(sv[1]);
    ASSERT_EQ(cio_write(sv[0], "x", 1), -EPIPE);
    ASSERT_EQ(cio_send(sv[0], "x", 1, 0), -EPIPE);
    ASSERT_FALSE(sigpipe_pending());
    cio_close(sv[0]);
    return 0;
}

TEST(net_cio_write_to_closed_socket_is_epipe_not_sigpipe)
{
    signal(SIGPIPE, SIG_DFL);
    ASSERT_EQ(cio_run(write_closed_socket_main, NULL), 0);
}

static int write_closed_pipe_main(void *arg)
{
    (void)arg;
    int p[2];
    ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    close(p[0]);
    for (int i = 0; i < 2; i++) /* the second time, knowing it is no socket */
        ASSERT_EQ(cio_write(p[1], "x", 1), -EPIPE);
    /* Nothing left behind in the thread: not blocked, not pending. */
    ASSERT_FALSE(sigpipe_blocked());
    ASSERT_FALSE(sigpipe_pending());

    /* SIGPIPE already blocked by the program: it stays blocked; ours is
     * consumed, and one that was pending before is left pending. */
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &pipe_only, NULL), 0);
    ASSERT_EQ(cio_write(p[1], "x", 1), -EPIPE);
    ASSERT_TRUE(sigpipe_blocked());
    ASSERT_FALSE(sigpipe_pending());
    ASSERT_EQ(pthread_kill(pthread_self(), SIGPIPE), 0);
    ASSERT_TRUE(sigpipe_pending());
    ASSERT_EQ(cio_write(p[1], "x", 1), -EPIPE);
    ASSERT_TRUE(sigpipe_pending()); /* the program's own, kept */
    struct timespec zero = {0, 0};
    ASSERT_EQ(sigtimedwait(&pipe_only, NULL, &zero), SIGPIPE);
    ASSERT_EQ(pthread_sigmask(SIG_UNBLOCK, &pipe_only, NULL), 0);
    cio_close(p[1]);

    /* A pipe that works is written as before. */
    ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    ASSERT_EQ(cio_write(p[1], "hello", 5), 5);
    char buf[8];
    ASSERT_EQ(cio_read(p[0], buf, sizeof buf), 5);
    ASSERT_EQ(memcmp(buf, "hello", 5), 0);
    cio_close(p[0]);
    cio_close(p[1]);
    return 0;
}

TEST(net_cio_write_to_closed_pipe_is_epipe_not_sigpipe)
{
    signal(SIGPIPE, SIG_DFL);
    ASSERT_EQ(cio_run(write_closed_pipe_main, NULL), 0);
}

/* ---- a single address: no race, no helper task ---------------------------- */

static int noop_task(void *arg)
{
    (void)arg;
    return 0;
}

/* Task ids count spawns (1, 2, 3... per loop): the number of tasks spawned
 * between two markers. */
static uint64_t spawned_since(uint64_t *mark)
{
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, noop_task, NULL, "marker"), 0);
    uint64_t id = cio_task_id(t);
    ASSERT_EQ(cio_join(t, NULL), 0);
    cio_task_release(t);
    uint64_t n = id - *mark - 1;
    *mark = id;
    return n;
}

TASK_TEST_VIRTUAL(net_tcp_connect_to_a_single_address_spawns_no_task)
{
    int lfd = cio_tcp_listen("127.0.0.1", "0", 8, false);
    ASSERT_GE(lfd, 0);
    char port[16];
    snprintf(port, sizeof port, "%d", local_port(lfd));
    uint64_t mark = 0;
    spawned_since(&mark);
    int fd = cio_tcp_connect("127.0.0.1", port, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(spawned_since(&mark), 0);
    cio_close(fd);
    /* A single address that fails: its error, and no spawn either. */
    int closed = cio_tcp_listen("127.0.0.1", "0", 1, false);
    char closed_port[16];
    snprintf(closed_port, sizeof closed_port, "%d", local_port(closed));
    cio_close(closed);
    ASSERT_EQ(cio_tcp_connect("127.0.0.1", closed_port, 0), -ECONNREFUSED);
    ASSERT_EQ(spawned_since(&mark), 0);
    /* Cancelled while it hangs: nothing left open. */
    int fds_before = count_open_fds();
    struct blackhole bh;
    blackhole_open(&bh);
    struct addrinfo only_bh = make_ai(&bh.addr, NULL);
    cio_scope s;
    cio_timeout_enter(&s, 2 * CIO_SEC);
    ASSERT_EQ(cio_connect_race(&only_bh, 0), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_EQ(spawned_since(&mark), 0);
    blackhole_close(&bh);
    ASSERT_EQ(count_open_fds(), fds_before);
    /* Two addresses still race, one task per attempt started. */
    struct sockaddr_in gaddr = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)local_port(lfd)),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct addrinfo second = make_ai(&gaddr, NULL);
    struct addrinfo first = make_ai(&gaddr, &second);
    fd = cio_connect_race(&first, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(spawned_since(&mark), 1); /* the first attempt won at once */
    cio_close(fd);
    cio_close(lfd);
}

/* ---- the tests' own guard against foreign connections (peer.h) ----------- */

struct foreign_case {
    int lfd;
};

static int foreign_main(void *arg)
{
    struct foreign_case *f = arg;
    char port[16];
    snprintf(port, sizeof port, "%d", local_port(f->lfd));
    int c = cio_tcp_connect("127.0.0.1", port, 0);
    ASSERT_GE(c, 0);
    /* The other process's connection is first in the queue: skipped. */
    int s = cio_accept_ours(f->lfd);
    ASSERT_GE(s, 0);
    struct sockaddr_in peer, mine;
    socklen_t len = sizeof peer;
    ASSERT_EQ(getpeername(s, (struct sockaddr *)&peer, &len), 0);
    len = sizeof mine;
    ASSERT_EQ(getsockname(c, (struct sockaddr *)&mine, &len), 0);
    ASSERT_EQ(peer.sin_port, mine.sin_port);
    cio_close(s);
    cio_close(c);
    return 0;
}

TEST(net_tests_skip_connections_from_other_processes)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(lfd, 8), 0);
    socklen_t len = sizeof a;
    ASSERT_EQ(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    int ready[2], done[2];
    ASSERT_EQ(pipe(ready), 0);
    ASSERT_EQ(pipe(done), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) { /* another process: connect, hold it until told */
        close(done[1]);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        char b = 0;
        if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 || write(ready[1], &b, 1) != 1)
            _exit(1);
        (void)!read(done[0], &b, 1);
        _exit(0);
    }
    char b;
    ASSERT_EQ(read(ready[0], &b, 1), 1);
    struct foreign_case f = {.lfd = lfd};
    ASSERT_EQ(cio_run(foreign_main, &f), 0);
    close(done[1]);
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(lfd);
}

/* cio_dump_tasks writes with stdio: to a pipe whose reader left, no
 * SIGPIPE either (default action here, as above). */
static int dump_closed_pipe_main(void *arg)
{
    (void)arg;
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    close(p[0]);
    cio_dump_tasks(p[1]);
    ASSERT_FALSE(sigpipe_blocked());
    ASSERT_FALSE(sigpipe_pending());
    close(p[1]);
    return 0;
}

TEST(net_dump_tasks_to_closed_pipe_is_no_sigpipe)
{
    signal(SIGPIPE, SIG_DFL);
    ASSERT_EQ(cio_run(dump_closed_pipe_main, NULL), 0);
    int p[2]; /* and outside a loop */
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    close(p[0]);
    cio_dump_tasks(p[1]);
    ASSERT_FALSE(sigpipe_pending());
    close(p[1]);
}

/* ---- the race itself: staggered starts, fail-over, cancellation ----------- */

/* Two black holes, a deadline in the middle of the race: both attempts were
 * started (the second after the stagger), the deadline is returned, and
 * both half-open sockets are closed before the call returns. Then a refused
 * address, a black hole and a listener: the refusal starts the black hole at
 * once, the stagger starts the listener, which wins; the black hole's
 * socket is closed too. */
TASK_TEST_VIRTUAL(net_race_starts_on_stagger_or_failure_and_closes_every_loser)
{
    int fds_before = count_open_fds();
    struct blackhole bh;
    blackhole_open(&bh);
    uint64_t mark = 0;
    spawned_since(&mark);
    struct addrinfo bh2 = make_ai(&bh.addr, NULL);
    struct addrinfo bh1 = make_ai(&bh.addr, &bh2);
    cio_scope s;
    cio_timeout_enter(&s, 2 * CIO_SEC);
    ASSERT_EQ(cio_connect_race(&bh1, 100 * CIO_MSEC), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 2 * CIO_SEC);
    ASSERT_EQ(spawned_since(&mark), 2);
    ASSERT_EQ(count_open_fds(), fds_before + 2); /* bh's own two */

    int good = cio_tcp_listen("127.0.0.1", "0", 4, false);
    struct sockaddr_in gaddr = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)local_port(good)),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int closed = cio_tcp_listen("127.0.0.1", "0", 1, false);
    struct sockaddr_in caddr = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)local_port(closed)),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cio_close(closed);
    struct addrinfo g = make_ai(&gaddr, NULL);
    struct addrinfo hole = make_ai(&bh.addr, &g);
    struct addrinfo refused = make_ai(&caddr, &hole);
    int64_t t0 = cio_now();
    spawned_since(&mark);
    int fd = cio_connect_race(&refused, 100 * CIO_MSEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(cio_now() - t0, 100 * CIO_MSEC); /* one stagger: after the hole */
    ASSERT_EQ(spawned_since(&mark), 3);
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    ASSERT_EQ(getpeername(fd, (struct sockaddr *)&peer, &len), 0);
    ASSERT_EQ(peer.sin_port, gaddr.sin_port);
    cio_close(fd);
    int c;
    while ((c = accept4(good, NULL, NULL, SOCK_CLOEXEC)) >= 0)
        close(c);
    cio_close(good);
    blackhole_close(&bh);
    ASSERT_EQ(count_open_fds(), fds_before);
}

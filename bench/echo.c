/* bench_echo: the TCP echo servers that bench/run_echo.sh measures with
 * its neutral load generator (bench/loadgen.c) side by side with the other
 * runtimes' servers.
 *
 *   bench_echo --serve HOST:PORT [--mode stream|sock|floor] [--max-seconds N]
 *
 * It listens on HOST:PORT (port 0: any free port), prints "port N" as its
 * first line on stdout, and echoes every byte on every connection until
 * SIGINT or SIGTERM (or --max-seconds, default 600). The modes:
 *
 *   stream  cio_start_server; each handler loops cio_stream_read ->
 *           cio_stream_write -> cio_stream_drain (the asyncio-style API)
 *   sock    cio_tcp_listen + cio_accept, a task per connection looping
 *           cio_recv -> cio_send (the low-level sock_* API)
 *   floor   no cio: a level-triggered epoll loop doing one read and one
 *           send per event, the least an epoll server can do; the
 *           reference the others are compared with
 *
 * Run without arguments (as `make bench` does for every bench_* binary) it
 * prints where to start and exits 0. Exit status: 0 after a clean
 * shutdown, 1 when it could not listen, 2 for bad usage. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cio.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the servers (run in the forked child) ------------------------------ */

static int stream_handler(cio_stream *s, void *arg)
{
    (void)arg;
    char buf[16384];
    ssize_t n;
    while ((n = cio_stream_read(s, buf, sizeof buf)) > 0) {
        int rc = cio_stream_write(s, buf, (size_t)n);
        if (rc == 0)
            rc = cio_stream_drain(s);
        if (rc)
            return rc;
    }
    return (int)n;
}

static int sock_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[16384];
    ssize_t n;
    while ((n = cio_recv(fd, buf, sizeof buf, 0)) > 0)
        if ((n = cio_send(fd, buf, (size_t)n, 0)) < 0)
            break;
    cio_close(fd);
    return n < 0 && n != -ECANCELED && n != -ECONNRESET ? (int)n : 0;
}

static int sock_acceptor(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    cio_group g;
    cio_group_enter(&g);
    int fd;
    while ((fd = cio_accept(lfd, NULL, NULL)) >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (cio_group_spawn(&g, NULL, sock_conn, (void *)(intptr_t)fd, "echo fd %d", fd))
            cio_close(fd);
    }
    cio_group_cancel(&g);
    cio_group_exit(&g);
    cio_group_destroy(&g);
    return fd == -ECANCELED ? 0 : fd;
}

struct serve_cfg {
    const char *host, *port;
    bool sock_mode;
    long max_seconds;
};

static int serve_main(void *arg)
{
    struct serve_cfg *c = arg;
    cio_shutdown_on_signals();
    cio_server *srv = NULL;
    cio_task *acceptor = NULL;
    int lfd = -1, rc;
    if (c->sock_mode) {
        lfd = cio_tcp_listen(c->host, c->port, 1024, false);
        rc = lfd < 0 ? lfd : cio_spawn(&acceptor, sock_acceptor, (void *)(intptr_t)lfd,
                                       "acceptor");
    } else {
        cio_server_options o = {.backlog = 1024};
        rc = cio_start_server(&srv, c->host, c->port, stream_handler, NULL, &o);
    }
    if (rc < 0) {
        fprintf(stderr, "bench_echo: cannot listen on %s:%s: %s\n", c->host, c->port,
                cio_strerror(rc));
        return rc;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (srv)
        cio_server_sockname(srv, &ss, &len);
    else
        getsockname(lfd, (struct sockaddr *)&ss, &len);
    int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    printf("port %d\n", port);
    fflush(stdout);
    cio_sleep(c->max_seconds * CIO_SEC); /* or SIGINT/SIGTERM cancels us */
    /* Shut down whatever happened (shielded: we may be cancelled). */
    cio_scope sh;
    cio_shield_enter(&sh, cio_now() + 10 * CIO_SEC);
    if (srv)
        cio_server_close(srv);
    if (acceptor) {
        cio_task_cancel(acceptor);
        cio_join(acceptor, NULL);
        cio_task_release(acceptor);
        cio_close(lfd);
    }
    cio_scope_exit(&sh);
    return 0;
}

/* ---- the floor: the same echo with plain epoll, no runtime --------------- */

static volatile sig_atomic_t floor_stop;

static void floor_on_signal(int sig)
{
    (void)sig;
    floor_stop = 1;
}

/* Level-triggered epoll, one read and one send per event: the least work an
 * epoll server can do per request. Measured in the same run, it says how
 * much of cio's time is the kernel's (on a VM with costly system calls the
 * floor alone can be above DESIGN.md's absolute target). */
static int floor_server(const char *host, const char *port, long max_seconds)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) {
        fprintf(stderr, "bench_echo: %s:%s: %s\n", host, port, gai_strerror(rc));
        return 1;
    }
    int lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (lfd >= 0)
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(lfd, 1024) != 0) {
        fprintf(stderr, "bench_echo: cannot listen on %s:%s: %s\n", host, port,
                strerror(errno));
        freeaddrinfo(ai);
        return 1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(lfd, (struct sockaddr *)&ss, &len);
    printf("port %d\n", ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                                 : ntohs(((struct sockaddr_in *)&ss)->sin_port));
    fflush(stdout);

    struct sigaction sa = {.sa_handler = floor_on_signal}; /* no SA_RESTART */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    alarm((unsigned)max_seconds);
    sigaction(SIGALRM, &sa, NULL);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    static char buf[16384];
    struct epoll_event evs[256];
    while (!floor_stop) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno != EINTR)
            return 1;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event e = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
                }
            } else {
                ssize_t r = read(fd, buf, sizeof buf);
                if (r > 0)
                    send(fd, buf, (size_t)r, MSG_NOSIGNAL);
                else if (r == 0 || errno != EAGAIN)
                    close(fd);
            }
        }
    }
    return 0;
}

/* ---- main ------------------------------------------------------------------- */

static int usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "bench_echo: %s\n", msg);
    fprintf(stderr, "usage: bench_echo --serve HOST:PORT [--mode stream|sock|floor] "
                    "[--max-seconds N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *serve = NULL, *mode = "stream";
    long max_seconds = 600;
    if (argc == 1) {
        printf("bench_echo is one of the echo servers bench/run_echo.sh measures: run "
               "bench/run_echo.sh (or bench_echo --serve 127.0.0.1:0)\n");
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--serve") && i + 1 < argc)
            serve = argv[++i];
        else if (!strcmp(a, "--mode") && i + 1 < argc)
            mode = argv[++i];
        else if (!strcmp(a, "--max-seconds") && i + 1 < argc) {
            char *end;
            max_seconds = strtol(argv[++i], &end, 10);
            if (*end || max_seconds < 1 || max_seconds > 86400)
                return usage("--max-seconds wants 1..86400");
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return usage(NULL);
        else {
            fprintf(stderr, "bench_echo: unknown option or missing value: '%s'\n", a);
            return usage(NULL);
        }
    }
    bool sock = !strcmp(mode, "sock"), floor = !strcmp(mode, "floor");
    if (!sock && !floor && strcmp(mode, "stream") != 0) {
        fprintf(stderr, "bench_echo: --mode is stream, sock or floor, not '%s'\n", mode);
        return 2;
    }
    const char *colon = serve ? strrchr(serve, ':') : NULL;
    if (!colon)
        return usage(serve ? "--serve wants HOST:PORT" : "--serve HOST:PORT is required");
    static char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(colon - serve), serve);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [::1]:0 */
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    signal(SIGPIPE, SIG_IGN);
    if (floor)
        return floor_server(host, colon + 1, max_seconds);
    struct serve_cfg c = {.host = host, .port = colon + 1, .sock_mode = sock,
                          .max_seconds = max_seconds};
    return cio_run(serve_main, &c) < 0 ? 1 : 0;
}

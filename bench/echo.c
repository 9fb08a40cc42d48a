/* bench_echo: TCP echo on loopback, cio as the server, bench_echo_load as
 * the client: requests/s, p50/p99 latency and the server's CPU time per
 * request (DESIGN.md: <= 0.8x the best of libuv, Go, Tokio, uvloop; ~5.2 us
 * for the best on the reference machine, so <= 4.2 us).
 *
 *   bench_echo [--quick] [--mode stream|sock|floor|all] [-c CONNS] [-s BYTES]
 *              [-d SECONDS] [--no-pin] [--load PATH]
 *   bench_echo --serve HOST:PORT [--mode stream|sock] [--max-seconds N]
 *
 * The first form runs the whole measurement: for each server flavour it
 * forks a cio echo server pinned to one CPU, runs the load generator
 * (bench_echo_load, found next to this binary unless --load says where)
 * pinned to another, 100 connections x 64-byte messages by default, 1 s of
 * warm-up and 5 s measured (--quick: 0.5 s + 1 s), and reads the server's
 * getrusage(RUSAGE_SELF) user+system time through a control pipe at the
 * start and the end of the measured window. The flavours:
 *
 *   stream  cio_start_server; each handler loops cio_stream_read ->
 *           cio_stream_write -> cio_stream_drain (the asyncio-style API)
 *   sock    cio_tcp_listen + cio_accept, a task per connection looping
 *           cio_recv -> cio_send (the low-level sock_* API)
 *   floor   no cio: a level-triggered epoll loop doing one read and one
 *           send per event, the least an epoll server can do; run first,
 *           as the reference the two others are divided by
 *
 * The second form only serves (to drive it with another load generator),
 * until SIGINT/SIGTERM or --max-seconds (default 600).
 *
 * Numbers only: the exit status is 0 whether or not the target is met
 * (MISS is printed), 1 if the run itself failed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define TARGET_CPU_US (0.8 * 5.2)

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
    int ctl_in, ctl_out;   /* control pipe (bench mode), -1 otherwise */
    int port_out;          /* where to write the port number, -1: stdout */
    long max_seconds;
};

static long cpu_us_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
           ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

/* Answer each byte on the control pipe with our CPU time in us; EOF stops
 * the server (its task returns, which ends the waiting main task). */
static int control(void *arg)
{
    struct serve_cfg *c = arg;
    char b;
    ssize_t n;
    while ((n = cio_read(c->ctl_in, &b, 1)) == 1) {
        char line[32];
        int len = snprintf(line, sizeof line, "%ld\n", cpu_us_self());
        if (cio_write(c->ctl_out, line, (size_t)len) < 0)
            break;
    }
    return 0;
}

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
    char line[32];
    int l = snprintf(line, sizeof line, "%d\n", port);
    if (write(c->port_out >= 0 ? c->port_out : 1, line, (size_t)l) != l)
        return -EIO;
    if (c->ctl_in >= 0) {
        cio_task *ctl;
        if ((rc = cio_spawn(&ctl, control, c, "control")) == 0) {
            cio_join(ctl, NULL); /* until the pipe closes, or a signal */
            cio_task_release(ctl);
        }
    } else {
        rc = cio_sleep(c->max_seconds * CIO_SEC); /* or SIGINT/SIGTERM */
        if (rc == -ECANCELED)
            rc = 0;
    }
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

/* Level-triggered epoll, one read and one send per event: the least work an
 * epoll server can do per request. Measured in the same run, it says how
 * much of cio's time is the kernel's (on a VM with costly system calls the
 * floor alone can be above DESIGN.md's absolute target). */
static int floor_server(int lfd, int ctl_in, int ctl_out)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.fd = ctl_in;
    epoll_ctl(ep, EPOLL_CTL_ADD, ctl_in, &ev);
    static char buf[16384];
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, 600 * 1000);
        if (n <= 0 && errno != EINTR)
            return n == 0 ? 0 : 1; /* bounded: 10 idle minutes */
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    int one = 1;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event e = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
                }
            } else if (fd == ctl_in) {
                char b;
                if (read(ctl_in, &b, 1) <= 0)
                    return 0; /* EOF: done */
                char line[32];
                int len = snprintf(line, sizeof line, "%ld\n", cpu_us_self());
                if (write(ctl_out, line, (size_t)len) != len)
                    return 1;
            } else {
                ssize_t r = read(fd, buf, sizeof buf);
                if (r > 0)
                    send(fd, buf, (size_t)r, MSG_NOSIGNAL);
                else if (r == 0 || errno != EAGAIN)
                    close(fd);
            }
        }
    }
}

/* ---- the harness ----------------------------------------------------------- */

static int allowed_cpus(int *cpus, int cap)
{
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;
    for (int i = CPU_SETSIZE - 1; i >= 0 && n < cap; i--)
        if (CPU_ISSET(i, &set))
            cpus[n++] = i;
    return n; /* highest first */
}

static void pin_to(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

/* A line from fd (blocking), without the newline; false at EOF. */
static bool read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        if (ch == '\n')
            break;
        buf[n++] = ch;
    }
    buf[n] = 0;
    return true;
}

static long query_cpu(int to_srv, int from_srv)
{
    char line[64];
    if (write(to_srv, "q", 1) != 1 || !read_line(from_srv, line, sizeof line))
        return -1;
    return atol(line);
}

struct result {
    bool ok;
    double rps, p50, p99, cpu_us;
    long requests, errors;
};

static double field(const char *line, const char *key)
{
    const char *p = strstr(line, key);
    return p ? atof(p + strlen(key)) : 0;
}

enum flavour { F_STREAM, F_SOCK, F_FLOOR };

static struct result run_one(enum flavour fl, const char *load_path, long conns, long size,
                             long warm_ms, long secs, int srv_cpu, int load_cpu)
{
    struct result res = {0};
    int ctl[2], rep[2], portp[2], out[2];
    if (pipe2(ctl, O_CLOEXEC) || pipe2(rep, O_CLOEXEC) || pipe2(portp, O_CLOEXEC) ||
        pipe2(out, O_CLOEXEC)) {
        perror("bench_echo: pipe");
        return res;
    }
    fflush(NULL);
    pid_t srv = fork();
    if (srv == 0) {
        pin_to(srv_cpu);
        close(ctl[1]);
        close(rep[0]);
        close(portp[0]);
        close(out[0]);
        close(out[1]);
        if (fl == F_FLOOR) {
            int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            struct sockaddr_in a = {.sin_family = AF_INET,
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            socklen_t alen = sizeof a;
            if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
                listen(lfd, 1024) != 0 || getsockname(lfd, (struct sockaddr *)&a, &alen) != 0)
                _exit(1);
            char pl[16];
            int l = snprintf(pl, sizeof pl, "%d\n", ntohs(a.sin_port));
            if (write(portp[1], pl, (size_t)l) != l)
                _exit(1);
            _exit(floor_server(lfd, ctl[0], rep[1]));
        }
        fcntl(ctl[0], F_SETFL, O_NONBLOCK);
        fcntl(rep[1], F_SETFL, O_NONBLOCK);
        struct serve_cfg c = {.host = "127.0.0.1", .port = "0", .sock_mode = fl == F_SOCK,
                              .ctl_in = ctl[0], .ctl_out = rep[1], .port_out = portp[1]};
        _exit(cio_run(serve_main, &c) < 0 ? 1 : 0);
    }
    close(ctl[0]);
    close(rep[1]);
    close(portp[1]);
    char line[512];
    if (srv < 0 || !read_line(portp[0], line, sizeof line)) {
        fprintf(stderr, "bench_echo: the server did not start\n");
        close(ctl[1]);
        if (srv > 0)
            waitpid(srv, NULL, 0);
        return res;
    }
    close(portp[0]);
    char target[600], c_arg[16], s_arg[16], d_arg[16], w_arg[16], cpu_arg[16];
    snprintf(target, sizeof target, "127.0.0.1:%s", line);
    snprintf(c_arg, sizeof c_arg, "%ld", conns);
    snprintf(s_arg, sizeof s_arg, "%ld", size);
    snprintf(d_arg, sizeof d_arg, "%ld", secs);
    snprintf(w_arg, sizeof w_arg, "%ld", (warm_ms + 999) / 1000);
    snprintf(cpu_arg, sizeof cpu_arg, "%d", load_cpu);
    pid_t load = fork();
    if (load == 0) {
        dup2(out[1], 1);
        char *argv[] = {(char *)load_path, target, "-c", c_arg, "-s", s_arg, "-d", d_arg,
                        "-w", w_arg, load_cpu >= 0 ? "--cpu" : NULL, cpu_arg, NULL};
        execv(load_path, argv);
        fprintf(stderr, "bench_echo: cannot run %s: %s\n", load_path, strerror(errno));
        _exit(127);
    }
    close(out[1]);
    long cpu0 = -1, cpu1 = -1;
    while (read_line(out[0], line, sizeof line)) {
        if (!strcmp(line, "MEASURING"))
            cpu0 = query_cpu(ctl[1], rep[0]);
        else if (!strncmp(line, "RESULT ", 7)) {
            cpu1 = query_cpu(ctl[1], rep[0]);
            res.requests = (long)field(line, "requests=");
            res.rps = field(line, "rps=");
            res.p50 = field(line, "p50_us=");
            res.p99 = field(line, "p99_us=");
            res.errors = (long)field(line, "errors=");
        }
    }
    close(out[0]);
    int st;
    waitpid(load, &st, 0);
    close(ctl[1]); /* EOF: the server shuts down */
    close(rep[0]);
    int sst;
    waitpid(srv, &sst, 0);
    if (cpu0 >= 0 && cpu1 >= cpu0 && res.requests > 0) {
        res.cpu_us = (double)(cpu1 - cpu0) / (double)res.requests;
        res.ok = true;
    }
    return res;
}

int main(int argc, char **argv)
{
    bool quick = false, pin = true, do_stream = true, do_sock = true, do_floor = true;
    const char *serve = NULL, *load_path = NULL;
    long conns = 100, size = 64, secs = 5, max_seconds = 600;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick"))
            quick = true;
        else if (!strcmp(a, "--no-pin"))
            pin = false;
        else if (!strcmp(a, "--mode") && i + 1 < argc) {
            const char *m = argv[++i];
            bool all = !strcmp(m, "all");
            do_stream = all || !strcmp(m, "stream");
            do_sock = all || !strcmp(m, "sock");
            do_floor = all || !strcmp(m, "floor");
            if (!do_stream && !do_sock && !do_floor) {
                fprintf(stderr, "bench_echo: --mode is stream, sock, floor or all, not '%s'\n",
                        m);
                return 2;
            }
        } else if (!strcmp(a, "-c") && i + 1 < argc)
            conns = atol(argv[++i]);
        else if (!strcmp(a, "-s") && i + 1 < argc)
            size = atol(argv[++i]);
        else if (!strcmp(a, "-d") && i + 1 < argc)
            secs = atol(argv[++i]);
        else if (!strcmp(a, "--serve") && i + 1 < argc)
            serve = argv[++i];
        else if (!strcmp(a, "--max-seconds") && i + 1 < argc)
            max_seconds = atol(argv[++i]);
        else if (!strcmp(a, "--load") && i + 1 < argc)
            load_path = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s [--quick] [--mode stream|sock|floor|all] [-c CONNS] [-s BYTES] "
                    "[-d SECONDS] [--no-pin] [--load PATH]\n"
                    "       %s --serve HOST:PORT [--mode stream|sock] [--max-seconds N]\n",
                    argv[0], argv[0]);
            return 2;
        }
    }
    if (conns < 1 || conns > 10000 || size < 1 || size > (1 << 20) || secs < 1 ||
        secs > 3600 || max_seconds < 1 || max_seconds > 86400) {
        fprintf(stderr, "bench_echo: out of range: -c 1..10000, -s 1..1048576, "
                        "-d 1..3600, --max-seconds 1..86400\n");
        return 2;
    }
    if (serve) {
        static char host[256];
        const char *colon = strrchr(serve, ':');
        if (!colon) {
            fprintf(stderr, "bench_echo: --serve wants HOST:PORT, got '%s'\n", serve);
            return 2;
        }
        snprintf(host, sizeof host, "%.*s", (int)(colon - serve), serve);
        struct serve_cfg c = {.host = host, .port = colon + 1, .sock_mode = do_sock && !do_stream,
                              .ctl_in = -1, .ctl_out = -1, .port_out = -1,
                              .max_seconds = max_seconds};
        return cio_run(serve_main, &c) < 0;
    }
    static char self_dir_load[PATH_MAX];
    if (!load_path) {
        ssize_t n = readlink("/proc/self/exe", self_dir_load, sizeof self_dir_load - 32);
        if (n <= 0) {
            fprintf(stderr, "bench_echo: cannot find myself; give --load PATH\n");
            return 1;
        }
        self_dir_load[n] = 0;
        char *slash = strrchr(self_dir_load, '/');
        strcpy(slash ? slash + 1 : self_dir_load, "bench_echo_load");
        load_path = self_dir_load;
    }
    if (access(load_path, X_OK) != 0) {
        fprintf(stderr, "bench_echo: %s not found (build bench/echo_load.c, or --load PATH)\n",
                load_path);
        return 1;
    }
    long warm_ms = quick ? 500 : 1000;
    if (quick)
        secs = 1;
    int cpus[2] = {-1, -1};
    int ncpu = pin ? allowed_cpus(cpus, 2) : 0;
    int srv_cpu = ncpu >= 1 ? cpus[0] : -1, load_cpu = ncpu >= 2 ? cpus[1] : -1;
    if (ncpu == 1)
        srv_cpu = -1; /* one CPU: pinning both to it would measure the scheduler */
    signal(SIGPIPE, SIG_IGN);
    printf("bench_echo: TCP echo on 127.0.0.1, %ld connections, %ld-byte messages, "
           "%ld s measured after %ld ms warm-up\n", conns, size, secs, warm_ms);
    printf("server on CPU %d, load generator (%s) on CPU %d%s\n", srv_cpu, load_path,
           load_cpu, srv_cpu < 0 ? " (not pinned: needs 2 CPUs)" : "");
    printf("%-34s %10s %9s %9s %11s  %s\n", "server", "req/s", "p50 us", "p99 us",
           "CPU us/req", "target");
    int failures = 0;
    double floor_us = 0;
    static const char *const names[] = {"cio streams (start_server)",
                                        "cio sock_* (cio_recv/cio_send)",
                                        "floor: plain epoll, no runtime"};
    static const enum flavour order[] = {F_FLOOR, F_STREAM, F_SOCK};
    for (int m = 0; m < 3; m++) {
        enum flavour fl = order[m];
        if ((fl == F_STREAM && !do_stream) || (fl == F_SOCK && !do_sock) ||
            (fl == F_FLOOR && !do_floor))
            continue;
        struct result r = run_one(fl, load_path, conns, size, warm_ms, secs, srv_cpu,
                                  load_cpu);
        if (!r.ok) {
            printf("%-34s FAILED (see stderr)\n", names[fl]);
            failures++;
            continue;
        }
        printf("%-34s %10.0f %9.1f %9.1f %11.2f  ", names[fl], r.rps, r.p50, r.p99, r.cpu_us);
        if (fl == F_FLOOR) {
            floor_us = r.cpu_us;
            printf("(reference)");
        } else {
            printf("<= %.1f us %s", TARGET_CPU_US, r.cpu_us <= TARGET_CPU_US ? "PASS" : "MISS");
            if (floor_us > 0)
                printf(", %.2fx floor", r.cpu_us / floor_us);
        }
        printf("%s\n", r.errors ? " (errors!)" : "");
        fflush(stdout);
    }
    return failures ? 1 : 0;
}

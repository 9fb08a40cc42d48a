/* bench_echo_load: a neutral load generator for TCP echo servers.
 *
 *   bench_echo_load HOST:PORT [-c CONNS] [-s BYTES] [-d SECONDS]
 *                   [-w SECONDS] [--cpu N]
 *
 * Opens CONNS connections (default 100) to HOST:PORT (IPv6 as [::1]:PORT),
 * and on each runs a closed loop: send one BYTES-byte message (default 64),
 * wait until all BYTES have come back (and match), send the next. After a
 * warm-up of -w seconds (default 1) it measures for -d seconds (default 5):
 * requests completed, requests per second and the latency of each request
 * (send to last byte back) in a log-linear histogram (64 sub-buckets per power of two:
 * under 1.6% error). Nothing of cio is used: one thread, plain non-blocking
 * sockets and a level-triggered epoll, TCP_NODELAY on every connection, so
 * it drives any echo server the same way (cio, libuv, Go, Tokio, uvloop).
 *
 * Output: a human-readable summary on stderr and one machine-readable line
 * on stdout, printed once measuring starts and once it ends:
 *
 *   MEASURING
 *   RESULT requests=N seconds=S rps=R p50_us=A p90_us=B p99_us=C
 *          p999_us=D max_us=E errors=K conns=C size=S
 *
 * (on one line), so that a harness can sample the server's CPU time at
 * both points. Bounded: at most 10,000 connections, 1 MiB messages, one
 * hour; the run ends at its deadline whatever the server does (a stalled
 * server gives requests=0 and exit status 1). Exit status: 0 if every
 * connection worked, 1 on errors (counted, reported), 2 on bad usage. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 10000
#define MAX_SIZE (1 << 20)
#define MAX_SECONDS 3600

/* ---- latency histogram: 64 linear sub-buckets per power of two ---------- */
#define SUB_BITS 6
#define SUB (1u << SUB_BITS)
#define N_BUCKETS (64 * SUB)

static uint64_t hist[N_BUCKETS];

static unsigned bucket_of(uint64_t ns)
{
    if (ns < SUB)
        return (unsigned)ns;
    unsigned top = 63u - (unsigned)__builtin_clzll(ns); /* >= SUB_BITS */
    unsigned shift = top - SUB_BITS;
    return (shift + 1) * SUB + (unsigned)((ns >> shift) & (SUB - 1));
}

/* The upper edge of a bucket (what a percentile in it reports). */
static uint64_t bucket_high(unsigned b)
{
    if (b < SUB)
        return b;
    unsigned shift = b / SUB - 1;
    uint64_t base = (uint64_t)(SUB + b % SUB) << shift;
    return base + ((uint64_t)1 << shift) - 1;
}

static uint64_t percentile(uint64_t total, double p)
{
    if (!total)
        return 0;
    uint64_t want = (uint64_t)(p * (double)total);
    if (want >= total)
        want = total - 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < N_BUCKETS; b++) {
        seen += hist[b];
        if (seen > want)
            return bucket_high(b);
    }
    return bucket_high(N_BUCKETS - 1);
}

/* ---- connections ------------------------------------------------------- */
typedef struct conn {
    int fd;
    uint64_t seq;      /* messages sent on this connection */
    size_t got;        /* bytes of the current echo received */
    int64_t sent_at;
    bool dead;
} conn;

static size_t msg_size = 64;
static char *expect_buf, *recv_buf;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The message for (connection i, sequence seq): a recognisable pattern so a
 * server that mixes up connections or bytes is caught. */
static void fill_msg(char *buf, size_t i, uint64_t seq)
{
    for (size_t k = 0; k < msg_size; k++)
        buf[k] = (char)('a' + (i * 7 + seq * 13 + k) % 26);
}

static int send_msg(conn *c, size_t i)
{
    fill_msg(expect_buf, i, c->seq);
    size_t off = 0;
    int spins = 0;
    while (off < msg_size) {
        ssize_t w = send(c->fd, expect_buf + off, msg_size - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        /* A message bigger than the socket buffer: wait a little for room
         * (bounded; a closed loop never has more than one message out). */
        if (w < 0 && errno == EAGAIN && spins++ < 100000) {
            struct timespec ts = {0, 10000};
            nanosleep(&ts, NULL);
            continue;
        }
        return -1;
    }
    c->got = 0;
    c->sent_at = now_ns();
    return 0;
}

static int parse_target(const char *arg, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon;
    if (arg[0] == '[') {
        const char *end = strchr(arg, ']');
        if (!end || end[1] != ':')
            return -1;
        snprintf(host, hcap, "%.*s", (int)(end - arg - 1), arg + 1);
        colon = end + 1;
    } else {
        colon = strrchr(arg, ':');
        if (!colon)
            return -1;
        snprintf(host, hcap, "%.*s", (int)(colon - arg), arg);
    }
    snprintf(port, pcap, "%s", colon + 1);
    return host[0] && port[0] ? 0 : -1;
}

static long parse_num(const char *s, const char *what, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end || v < lo || v > hi) {
        fprintf(stderr, "bench_echo_load: %s must be a number in [%ld, %ld], got '%s'\n",
                what, lo, hi, s);
        exit(2);
    }
    return v;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s HOST:PORT [-c CONNS] [-s BYTES] [-d SECONDS] [-w SECONDS] [--cpu N]\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *target = NULL;
    long n_conns = 100, seconds = 5, warmup = 1, cpu = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-c") && i + 1 < argc)
            n_conns = parse_num(argv[++i], "-c (connections)", 1, MAX_CONNS);
        else if (!strcmp(a, "-s") && i + 1 < argc)
            msg_size = (size_t)parse_num(argv[++i], "-s (message bytes)", 1, MAX_SIZE);
        else if (!strcmp(a, "-d") && i + 1 < argc)
            seconds = parse_num(argv[++i], "-d (seconds)", 1, MAX_SECONDS);
        else if (!strcmp(a, "-w") && i + 1 < argc)
            warmup = parse_num(argv[++i], "-w (seconds)", 0, MAX_SECONDS);
        else if (!strcmp(a, "--cpu") && i + 1 < argc)
            cpu = parse_num(argv[++i], "--cpu", 0, CPU_SETSIZE - 1);
        else if (!strcmp(a, "--quick") || !strcmp(a, "--json"))
            ; /* make bench's flags: see below */
        else if (a[0] != '-' && !target)
            target = a;
        else
            usage(argv[0]);
    }
    if (!target) {
        /* `make bench` runs every bench_* with at most --quick: nothing to
         * drive then (bench_echo runs this program with a target). */
        bool only_flags = true;
        for (int i = 1; i < argc; i++)
            only_flags &= !strcmp(argv[i], "--quick") || !strcmp(argv[i], "--json");
        if (!only_flags)
            usage(argv[0]);
        fprintf(stderr, "bench_echo_load: a load generator; give it HOST:PORT "
                        "(bench_echo runs it against cio)\n");
        return 0;
    }
    char host[256], port[32];
    if (parse_target(target, host, sizeof host, port, sizeof port)) {
        fprintf(stderr, "bench_echo_load: target must be HOST:PORT or [V6]:PORT, got '%s'\n",
                target);
        return 2;
    }
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((int)cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            fprintf(stderr, "bench_echo_load: cannot pin to CPU %ld: %s\n", cpu,
                    strerror(errno));
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        fprintf(stderr, "bench_echo_load: %s: %s\n", target, gai_strerror(gai));
        return 2;
    }
    expect_buf = malloc(msg_size);
    recv_buf = malloc(msg_size > 65536 ? msg_size : 65536);
    conn *conns = calloc((size_t)n_conns, sizeof *conns);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!expect_buf || !recv_buf || !conns || ep < 0) {
        fprintf(stderr, "bench_echo_load: out of memory or epoll_create1 failed\n");
        return 1;
    }
    /* Connect every connection (blocking connect: this is setup, not the
     * measured part), then make them non-blocking. */
    for (long i = 0; i < n_conns; i++) {
        int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct timeval limit = {.tv_sec = 10}; /* bounds a blocking connect */
        if (fd >= 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
        if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
            fprintf(stderr, "bench_echo_load: connection %ld to %s: %s\n", i + 1, target,
                    strerror(errno));
            return 1;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            fprintf(stderr, "bench_echo_load: epoll_ctl: %s\n", strerror(errno));
            return 1;
        }
    }
    freeaddrinfo(res);

    long errors = 0, alive = n_conns;
    for (long i = 0; i < n_conns; i++)
        if (send_msg(&conns[i], (size_t)i) != 0) {
            conns[i].dead = true;
            errors++, alive--;
        }
    int64_t start = now_ns();
    int64_t measure_from = start + (int64_t)warmup * 1000000000;
    int64_t measure_to = measure_from + (int64_t)seconds * 1000000000;
    bool measuring = warmup == 0;
    if (measuring) {
        printf("MEASURING\n");
        fflush(stdout);
    }
    uint64_t requests = 0, max_ns = 0;
    struct epoll_event evs[256];
    int64_t now = start;
    while (now < measure_to && alive > 0) {
        int64_t until = measuring ? measure_to : measure_from;
        int timeout_ms = (int)((until - now) / 1000000) + 1;
        int n = epoll_wait(ep, evs, 256, timeout_ms);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "bench_echo_load: epoll_wait: %s\n", strerror(errno));
            return 1;
        }
        now = now_ns();
        if (!measuring && now >= measure_from) {
            measuring = true;
            printf("MEASURING\n");
            fflush(stdout);
        }
        for (int k = 0; k < n; k++) {
            size_t i = (size_t)evs[k].data.u64;
            conn *c = &conns[i];
            if (c->dead)
                continue;
            ssize_t r = recv(c->fd, recv_buf, msg_size - c->got, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                fprintf(stderr, "bench_echo_load: connection %zu: %s\n", i + 1,
                        r == 0 ? "closed by the server" : strerror(errno));
                c->dead = true;
                errors++, alive--;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            fill_msg(expect_buf, i, c->seq);
            if (memcmp(recv_buf, expect_buf + c->got, (size_t)r) != 0) {
                fprintf(stderr, "bench_echo_load: connection %zu: echo does not match\n",
                        i + 1);
                c->dead = true;
                errors++, alive--;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            c->got += (size_t)r;
            if (c->got < msg_size)
                continue;
            int64_t t = now_ns();
            if (measuring && t <= measure_to) {
                uint64_t lat = (uint64_t)(t - c->sent_at);
                hist[bucket_of(lat)]++;
                if (lat > max_ns)
                    max_ns = lat;
                requests++;
            }
            c->seq++;
            if (send_msg(c, i) != 0) {
                fprintf(stderr, "bench_echo_load: connection %zu: send: %s\n", i + 1,
                        strerror(errno));
                c->dead = true;
                errors++, alive--;
            }
        }
    }
    double secs = (double)seconds;
    if (now < measure_to) /* every connection died early */
        secs = now > measure_from ? (double)(now - measure_from) / 1e9 : 0;
    if (!measuring) {
        printf("MEASURING\n");
        fflush(stdout);
    }
    double rps = secs > 0 ? (double)requests / secs : 0;
    double p50 = (double)percentile(requests, 0.50) / 1e3;
    double p90 = (double)percentile(requests, 0.90) / 1e3;
    double p99 = (double)percentile(requests, 0.99) / 1e3;
    double p999 = (double)percentile(requests, 0.999) / 1e3;
    fprintf(stderr,
            "bench_echo_load: %s, %ld connections, %zu-byte messages, %.1f s: "
            "%" PRIu64 " requests, %.0f req/s, latency p50 %.1f us, p99 %.1f us, "
            "max %.1f us, %ld errors\n",
            target, n_conns, msg_size, secs, requests, rps, p50, p99,
            (double)max_ns / 1e3, errors);
    printf("RESULT requests=%" PRIu64 " seconds=%.3f rps=%.0f p50_us=%.1f p90_us=%.1f "
           "p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%ld conns=%ld size=%zu\n",
           requests, secs, rps, p50, p90, p99, p999, (double)max_ns / 1e3, errors,
           n_conns, msg_size);
    fflush(stdout);
    for (long i = 0; i < n_conns; i++)
        close(conns[i].fd);
    close(ep);
    free(conns);
    free(expect_buf);
    free(recv_buf);
    return errors || requests == 0 ? 1 : 0;
}

/* bench_loadgen: a neutral closed-loop load generator for TCP echo servers.
 *
 *   bench_loadgen --host 127.0.0.1 --port N [--connections 100] [--size 64]
 *                 [--duration 5] [--warmup 1] [--max-requests N] [--rate N]
 *                 [--server-pid PID] [--json] [--allow-remote]
 *
 * It does not use cio (nor anything but libc): one thread, non-blocking
 * sockets, one level-triggered epoll set, so that it drives cio, libuv, Go,
 * Tokio and uvloop servers exactly the same way and stays unchanged when
 * those comparisons are added.
 *
 * What it does: opens --connections TCP connections (TCP_NODELAY) to
 * host:port and runs a closed loop on each: send one --size-byte message,
 * wait until every byte has come back (checked byte for byte against what
 * was sent), record the round trip (CLOCK_MONOTONIC, from just before the
 * send to the read that completed the echo), send the next. Requests that
 * complete during the first --warmup seconds are not counted; then it
 * measures for --duration seconds. Latencies go into a log-linear
 * histogram (128 sub-buckets per power of two: percentiles within 0.4%;
 * the maximum is exact).
 *
 * --rate N: at most N requests per second over all connections, paced by
 * a timer (request k of the run goes at start + k/N, on the next idle
 * connection). Without it each connection sends as soon as its echo is
 * back, so the slower of the two processes sets the pace; with it every
 * server gets the same offered load, which matters because the CPU a
 * server spends per request depends on its load (a busier event loop
 * handles more ready sockets per wake-up). Latency is still measured from
 * the actual send.
 *
 * --server-pid PID: read the server's CPU time (user + system, every
 * thread) from /proc at the moment the measured window opens and when it
 * closes, and report it per request: the figure that compares servers
 * when requests/s is capped by the load generator or by the kernel's
 * loopback TCP work, which both sides pay (bench/README.md). Source:
 * the sum of /proc/PID/task/<tid>/schedstat (nanoseconds) when readable,
 * else utime + stime of /proc/PID/stat (clock ticks); both are printed.
 *
 * It also reports, over the same window, how much CPU everything else on
 * the machine used (others_cpu_pct, % of one CPU, from /proc/stat) and
 * the hypervisor's steal (steal_pct), and how often the server and the
 * generator were preempted: high values mean a disturbed run.
 *
 * Output: one line of key=value fields on stdout (or one JSON object with
 * --json); messages on stderr. Exit status 0 when every connection worked
 * and requests were measured, 1 otherwise (the figures are printed all the
 * same), 2 for bad usage or a refused address.
 *
 * Bounds: at most 10,000 connections, 1 MiB messages, 3,600 s of warm-up
 * and of measurement, --max-requests completed requests in all (default
 * 100,000,000; reaching it ends the run early, said in the output); the
 * connect phase has 10 s. It sends to the address --host resolves to and
 * nowhere else, and refuses any address but loopback (127.0.0.0/8, ::1)
 * unless --allow-remote. SIGINT / SIGTERM end the run early and the
 * figures so far are printed ("interrupted").
 *
 * Run without arguments (as `make bench` does) it prints a note and exits
 * 0: it needs a server (bench/run_echo.sh provides one). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define PROG "bench_loadgen"
#define MAX_CONNS 10000
#define MAX_SIZE (1 << 20)
#define MAX_SECONDS 3600
#define CONNECT_TIMEOUT_NS (10 * NS_PER_S)
#define DEFAULT_MAX_REQUESTS 100000000LL
#define PATTERN_SPAN 251 /* message k of connection i starts at (i*7+k) % 251 */
#define MAX_EVENTS 512

#define NS_PER_S 1000000000LL

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* ---- latency histogram ------------------------------------------------------
 * Values below SUB are exact; above, each power of two [2^m, 2^(m+1)) is cut
 * into SUB equal buckets, so a bucket is at most 1/SUB of its values wide
 * and its midpoint is within 1/(2*SUB) of any value in it. */
#define SUB_BITS 7
#define SUB (1u << SUB_BITS)
#define N_BUCKETS ((64 - SUB_BITS + 1) * SUB)

static uint64_t hist[N_BUCKETS];

static unsigned bucket_of(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
    unsigned shift = msb - SUB_BITS;
    return SUB + shift * SUB + (unsigned)((v >> shift) - SUB);
}

/* The midpoint of bucket b (what a percentile falling in it reports). */
static double bucket_mid(unsigned b)
{
    if (b < SUB)
        return (double)b;
    unsigned shift = (b - SUB) / SUB;
    uint64_t lo = (uint64_t)(SUB + (b - SUB) % SUB) << shift;
    return (double)lo + ((double)((uint64_t)1 << shift) - 1) / 2.0;
}

/* The value at quantile q (0 < q <= 1) of `count` recorded values: the
 * smallest recorded value that at least ceil(q * count) values do not
 * exceed, to within its bucket. */
static double quantile(uint64_t count, double q)
{
    if (count == 0)
        return 0;
    double want = q * (double)count;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++; /* ceil, without libm */
    if (rank < 1)
        rank = 1;
    if (rank > count)
        rank = count;
    uint64_t seen = 0;
    for (unsigned b = 0; b < N_BUCKETS; b++) {
        seen += hist[b];
        if (seen >= rank)
            return bucket_mid(b);
    }
    return bucket_mid(N_BUCKETS - 1);
}

/* ---- CPU time --------------------------------------------------------------- */

static int64_t self_cpu_ns(int64_t *preempted)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    *preempted = ru.ru_nivcsw;
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * NS_PER_S +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

/* Read a small file into buf (NUL-terminated). Returns the length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return n;
}

/* utime + stime of every thread, dead ones included, from /proc/PID/stat
 * (fields 14 and 15, in clock ticks), in ns; -1 if unreadable. */
static int64_t proc_stat_cpu_ns(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    if (read_small(path, buf, sizeof buf) <= 0)
        return -1;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return -1;
    p++;
    /* p is now before field 3 (state); utime is field 14. */
    for (int field = 3; field < 14; field++) {
        p = strchr(p + 1, ' ');
        if (!p)
            return -1;
    }
    char *end;
    unsigned long long ut = strtoull(p + 1, &end, 10);
    unsigned long long st = strtoull(end, NULL, 10);
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    return (int64_t)((ut + st) * (unsigned long long)(NS_PER_S / hz));
}

/* Run time of the live threads, from /proc/PID/task/TID/schedstat (its
 * first field, ns); -1 if unreadable. *preempted: how many times they
 * were switched out while runnable (nonvoluntary_ctxt_switches), i.e.
 * another process took their CPU: a sign of a disturbed measurement. */
static int64_t proc_sched_cpu_ns(pid_t pid, int64_t *preempted)
{
    char path[96], buf[256];
    snprintf(path, sizeof path, "/proc/%ld/task", (long)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int64_t total = 0;
    int threads = 0;
    *preempted = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%ld/task/%.20s/schedstat", (long)pid,
                 de->d_name);
        if (read_small(path, buf, sizeof buf) <= 0)
            continue; /* the thread just went away */
        total += (int64_t)strtoll(buf, NULL, 10);
        threads++;
        snprintf(path, sizeof path, "/proc/%ld/task/%.20s/status", (long)pid, de->d_name);
        char st[4096];
        const char *nv;
        if (read_small(path, st, sizeof st) > 0 &&
            (nv = strstr(st, "nonvoluntary_ctxt_switches:")))
            *preempted += strtoll(nv + strlen("nonvoluntary_ctxt_switches:"), NULL, 10);
    }
    closedir(d);
    return threads ? total : -1;
}

/* The whole machine from /proc/stat's "cpu" line, in ns: time busy
 * (user, nice, system, irq, softirq) and stolen by the hypervisor; -1 if
 * unreadable. */
static void machine_cpu_ns(int64_t *busy, int64_t *steal)
{
    char buf[512];
    unsigned long long v[8] = {0};
    *busy = *steal = -1;
    if (read_small("/proc/stat", buf, sizeof buf) <= 0 ||
        sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
               &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
        return;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    int64_t tick = NS_PER_S / hz;
    *busy = (int64_t)(v[0] + v[1] + v[2] + v[5] + v[6]) * tick;
    *steal = (int64_t)v[7] * tick;
}

typedef struct cpu_sample {
    int64_t self;  /* this process, getrusage */
    int64_t sched; /* the server, schedstat (-1: not available) */
    int64_t stat;  /* the server, /proc/PID/stat (-1: not available) */
    int64_t self_preempted, server_preempted;
    int64_t machine_busy, machine_steal; /* every CPU, /proc/stat */
} cpu_sample;

static void sample_cpu(pid_t server, cpu_sample *s)
{
    machine_cpu_ns(&s->machine_busy, &s->machine_steal);
    s->self = self_cpu_ns(&s->self_preempted);
    s->server_preempted = 0;
    s->sched = server > 0 ? proc_sched_cpu_ns(server, &s->server_preempted) : -1;
    s->stat = server > 0 ? proc_stat_cpu_ns(server) : -1;
}

/* ---- options ------------------------------------------------------------------ */

typedef struct options {
    const char *host, *port;
    long connections, size, duration, warmup;
    long long max_requests;
    long long rate; /* requests/s over all connections; 0: as fast as it goes */
    long server_pid;
    bool json, allow_remote;
} options;

static void usage(FILE *to)
{
    fprintf(to,
            "usage: " PROG " --host HOST --port PORT [--connections N] [--size BYTES]\n"
            "                     [--duration S] [--warmup S] [--max-requests N]\n"
            "                     [--rate N] [--server-pid PID] [--json] [--allow-remote]\n"
            "defaults: 100 connections, 64-byte messages, 1 s warm-up, 5 s measured;\n"
            "HOST must be a loopback address unless --allow-remote\n");
}

static long long parse_num(const char *opt, const char *s, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, PROG ": %s wants a whole number in [%lld, %lld], not '%s'\n", opt,
                lo, hi, s);
        exit(2);
    }
    return v;
}

static void parse_args(int argc, char **argv, options *o)
{
    *o = (options){.connections = 100, .size = 64, .duration = 5, .warmup = 1,
                   .max_requests = DEFAULT_MAX_REQUESTS};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            o->json = true;
            continue;
        }
        if (!strcmp(a, "--allow-remote")) {
            o->allow_remote = true;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc || strncmp(a, "--", 2) != 0) {
            fprintf(stderr, PROG ": unknown or incomplete option '%s'\n", a);
            usage(stderr);
            exit(2);
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--host"))
            o->host = v;
        else if (!strcmp(a, "--port"))
            o->port = v;
        else if (!strcmp(a, "--connections"))
            o->connections = (long)parse_num(a, v, 1, MAX_CONNS);
        else if (!strcmp(a, "--size"))
            o->size = (long)parse_num(a, v, 1, MAX_SIZE);
        else if (!strcmp(a, "--duration"))
            o->duration = (long)parse_num(a, v, 1, MAX_SECONDS);
        else if (!strcmp(a, "--warmup"))
            o->warmup = (long)parse_num(a, v, 0, MAX_SECONDS);
        else if (!strcmp(a, "--max-requests"))
            o->max_requests = parse_num(a, v, 1, (long long)1 << 50);
        else if (!strcmp(a, "--rate"))
            o->rate = parse_num(a, v, 0, 100000000);
        else if (!strcmp(a, "--server-pid"))
            o->server_pid = (long)parse_num(a, v, 1, 1L << 30);
        else {
            fprintf(stderr, PROG ": unknown option '%s'\n", a);
            usage(stderr);
            exit(2);
        }
    }
}

/* ---- the target ----------------------------------------------------------------- */

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        return (a >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

/* Resolve host:port to exactly one address: the first getaddrinfo gives.
 * Exits 2 when it does not resolve or is not allowed. */
static void resolve(const options *o, struct sockaddr_storage *ss, socklen_t *len,
                    char *shown, size_t shown_cap)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV}, *res;
    int rc = getaddrinfo(o->host, o->port, &hints, &res);
    if (rc) {
        fprintf(stderr, PROG ": cannot resolve --host %s --port %s: %s\n", o->host, o->port,
                rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        exit(2);
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    char ip[INET6_ADDRSTRLEN] = "?";
    const void *a = ss->ss_family == AF_INET6
                        ? (const void *)&((struct sockaddr_in6 *)ss)->sin6_addr
                        : (const void *)&((struct sockaddr_in *)ss)->sin_addr;
    inet_ntop(ss->ss_family, a, ip, sizeof ip);
    snprintf(shown, shown_cap, ss->ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", ip, o->port);
    if (!o->allow_remote && !is_loopback((struct sockaddr *)ss)) {
        fprintf(stderr,
                PROG ": refusing to send to %s (--host %s): not a loopback address; "
                     "pass --allow-remote to load a server on another machine\n",
                shown, o->host);
        exit(2);
    }
}

/* Make room for n descriptors (RLIMIT_NOFILE), or exit saying which limit. */
static void ensure_fd_limit(long n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = (rlim_t)n + 16;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
            fprintf(stderr,
                    PROG ": %ld connections need %lu descriptors but RLIMIT_NOFILE's hard "
                         "limit is %lu (raise it: ulimit -Hn, or limits.conf)\n",
                    n, (unsigned long)want, (unsigned long)rl.rlim_max);
            exit(1);
        }
        rl.rlim_cur = want;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ---- connections ------------------------------------------------------------------ */

typedef struct conn {
    int fd;
    bool dead;
    bool want_out;    /* EPOLLOUT armed: part of the message is still unsent */
    size_t sent, got; /* bytes of the current message sent / echoed */
    uint64_t seq;     /* messages started on this connection */
    int64_t t_send;   /* when the current message's first send began */
} conn;

static char *pattern; /* PATTERN_SPAN + size bytes: every message is a slice */
static size_t msg_size;
static char *rxbuf;

static const char *msg_of(const conn *c, size_t idx)
{
    return pattern + (idx * 7 + c->seq) % PATTERN_SPAN;
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct run {
    conn *conns;
    size_t n;
    int ep;
    long errors, alive;
    uint64_t measured;   /* requests completed inside the window */
    uint64_t completed;  /* requests completed in all (warm-up included) */
    uint64_t max_ns;
    double sum_ns;
    bool measuring;
    int64_t window_end;
    long long max_requests;
    bool capped;
    /* --rate: connections whose echo is back wait in `idle` (a FIFO)
     * until the schedule lets their next request go: request k of the run
     * at rate_t0 + k / rate. */
    double rate;
    int64_t rate_t0;
    uint64_t released;
    size_t *idle, idle_head, n_idle;
    int tfd;
    bool timer_armed;
} run;

#define TIMER_TAG UINT64_MAX

static void conn_fail(run *r, size_t idx, const char *what, int err)
{
    conn *c = &r->conns[idx];
    if (c->dead)
        return;
    if (r->errors < 10)
        fprintf(stderr, PROG ": connection %zu: %s%s%s\n", idx + 1, what, err ? ": " : "",
                err ? strerror(err) : "");
    else if (r->errors == 10)
        fprintf(stderr, PROG ": further connection errors are counted, not shown\n");
    c->dead = true;
    r->errors++;
    r->alive--;
    epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
}

static void set_want_out(run *r, size_t idx, bool on)
{
    conn *c = &r->conns[idx];
    if (c->want_out == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u64 = idx};
    if (epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->want_out = on;
    else
        conn_fail(r, idx, "epoll_ctl", errno);
}

/* Send what is left of the current message (all of it, normally, in one
 * call). */
static void send_rest(run *r, size_t idx)
{
    conn *c = &r->conns[idx];
    const char *m = msg_of(c, idx);
    while (c->sent < msg_size) {
        ssize_t w = send(c->fd, m + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
        if (w > 0) {
            c->sent += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            set_want_out(r, idx, true);
            return;
        }
        conn_fail(r, idx, "send", w < 0 ? errno : EPIPE);
        return;
    }
    if (c->want_out)
        set_want_out(r, idx, false);
}

static void start_message(run *r, size_t idx, int64_t t)
{
    conn *c = &r->conns[idx];
    c->sent = c->got = 0;
    c->t_send = t;
    send_rest(r, idx);
}

/* Connection idx may send its next request: now, or when --rate allows. */
static void next_request(run *r, size_t idx, int64_t t)
{
    if (r->rate <= 0) {
        start_message(r, idx, t);
        return;
    }
    r->idle[(r->idle_head + r->n_idle) % r->n] = idx;
    r->n_idle++;
}

/* --rate: send every request whose time has come, then set the timer for
 * the next one. A schedule more than 10 ms behind (every connection was
 * busy) is moved up rather than caught up with a burst; the rate achieved
 * is what the output reports. */
static void release_due(run *r, int64_t now)
{
    while (r->n_idle > 0) {
        int64_t slot = r->rate_t0 + (int64_t)((double)r->released * 1e9 / r->rate);
        if (slot > now) {
            if (!r->timer_armed) {
                struct itimerspec its = {.it_value = {.tv_sec = slot / NS_PER_S,
                                                      .tv_nsec = slot % NS_PER_S}};
                if (timerfd_settime(r->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
                    r->timer_armed = true;
            }
            return;
        }
        if (now - slot > 10000000) {
            r->rate_t0 = now;
            r->released = 0;
        }
        size_t idx = r->idle[r->idle_head];
        r->idle_head = (r->idle_head + 1) % r->n;
        r->n_idle--;
        r->released++;
        if (!r->conns[idx].dead)
            start_message(r, idx, now);
    }
}

/* Bytes came (or the end, or an error) on connection idx. */
static void on_readable(run *r, size_t idx)
{
    conn *c = &r->conns[idx];
    /* Never ask for more than the echo still owed: a byte beyond it would
     * be the server's invention, caught as a mismatch next time. */
    ssize_t n = recv(c->fd, rxbuf, msg_size - c->got, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_fail(r, idx, "recv", errno);
        return;
    }
    if (n == 0) {
        conn_fail(r, idx, "closed by the server", 0);
        return;
    }
    if ((size_t)n > c->sent - c->got || memcmp(rxbuf, msg_of(c, idx) + c->got, (size_t)n)) {
        conn_fail(r, idx, "the echo differs from what was sent", 0);
        return;
    }
    c->got += (size_t)n;
    if (c->got < msg_size)
        return;
    int64_t t = now_ns();
    r->completed++;
    if (r->measuring && t < r->window_end) {
        uint64_t lat = (uint64_t)(t - c->t_send);
        hist[bucket_of(lat)]++;
        if (lat > r->max_ns)
            r->max_ns = lat;
        r->sum_ns += (double)lat;
        r->measured++;
    }
    if ((long long)r->completed >= r->max_requests) {
        r->capped = true;
        return;
    }
    c->seq++;
    next_request(r, idx, t);
}

/* Open every connection (non-blocking connects, all at once), within
 * CONNECT_TIMEOUT_NS. Exits 1 if any fails: a run with fewer connections
 * than asked would not be the benchmark asked for. */
static void connect_all(run *r, const struct sockaddr_storage *ss, socklen_t len,
                        const char *shown)
{
    size_t pending = 0;
    for (size_t i = 0; i < r->n; i++) {
        conn *c = &r->conns[i];
        c->fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            fprintf(stderr, PROG ": socket: %s\n", strerror(errno));
            exit(1);
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int rc = connect(c->fd, (const struct sockaddr *)ss, len);
        if (rc != 0 && errno != EINPROGRESS) {
            fprintf(stderr, PROG ": connecting to %s: %s\n", shown, strerror(errno));
            exit(1);
        }
        struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = i};
        if (epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
            fprintf(stderr, PROG ": epoll_ctl: %s\n", strerror(errno));
            exit(1);
        }
        c->want_out = true;
        pending++;
    }
    int64_t deadline = now_ns() + CONNECT_TIMEOUT_NS;
    struct epoll_event evs[MAX_EVENTS];
    while (pending > 0 && !interrupted) {
        int64_t left = deadline - now_ns();
        if (left <= 0) {
            fprintf(stderr, PROG ": %zu of %zu connections to %s not established after %lld s\n",
                    pending, r->n, shown, (long long)(CONNECT_TIMEOUT_NS / NS_PER_S));
            exit(1);
        }
        int k = epoll_wait(r->ep, evs, MAX_EVENTS, (int)(left / 1000000) + 1);
        if (k < 0 && errno != EINTR) {
            fprintf(stderr, PROG ": epoll_wait: %s\n", strerror(errno));
            exit(1);
        }
        for (int j = 0; j < k; j++) {
            size_t i = (size_t)evs[j].data.u64;
            conn *c = &r->conns[i];
            if (!c->want_out)
                continue;
            int err = 0;
            socklen_t el = sizeof err;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
                err = errno;
            if (err) {
                fprintf(stderr, PROG ": connecting to %s: %s\n", shown, strerror(err));
                exit(1);
            }
            struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
            epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev);
            c->want_out = false;
            pending--;
        }
    }
    if (pending)
        exit(1); /* interrupted while connecting */
}

/* ---- output ------------------------------------------------------------------------- */

typedef struct report {
    const options *o;
    const char *target;
    double seconds;
    const run *r;
    cpu_sample c0, c1;
    const char *end_reason;
} report;

static void print_report(const report *p)
{
    const run *r = p->r;
    const options *o = p->o;
    double secs = p->seconds > 0 ? p->seconds : 0;
    double rps = secs > 0 ? (double)r->measured / secs : 0;
    double p50 = quantile(r->measured, 0.50) / 1e3, p90 = quantile(r->measured, 0.90) / 1e3,
           p99 = quantile(r->measured, 0.99) / 1e3, p999 = quantile(r->measured, 0.999) / 1e3;
    double mean = r->measured ? r->sum_ns / (double)r->measured / 1e3 : 0;
    double max = (double)r->max_ns / 1e3;
    double req = r->measured ? (double)r->measured : 0;
    double self_us = (double)(p->c1.self - p->c0.self) / 1e3;
    bool have_sched = p->c0.sched >= 0 && p->c1.sched >= p->c0.sched;
    bool have_stat = p->c0.stat >= 0 && p->c1.stat >= p->c0.stat;
    double sched_us = have_sched ? (double)(p->c1.sched - p->c0.sched) / 1e3 : -1;
    double stat_us = have_stat ? (double)(p->c1.stat - p->c0.stat) / 1e3 : -1;
    double srv_us = have_sched ? sched_us : stat_us;
    const char *srv_src = have_sched ? "schedstat" : have_stat ? "stat" : "none";
    double srv_per = srv_us >= 0 && req > 0 ? srv_us / req : -1;
    double self_per = req > 0 ? self_us / req : -1;
    long long srv_pre = p->c1.server_preempted - p->c0.server_preempted;
    long long self_pre = p->c1.self_preempted - p->c0.self_preempted;
    /* What else ran meanwhile, in % of one CPU: the machine's busy time
     * minus ours and the server's (tick-sampled: +-2% or so), and the
     * time the hypervisor gave to other guests. High values: rerun. */
    double others_pct = -1, steal_pct = -1;
    if (secs > 0 && p->c0.machine_busy >= 0 && p->c1.machine_busy >= p->c0.machine_busy) {
        double busy_us = (double)(p->c1.machine_busy - p->c0.machine_busy) / 1e3;
        double others = busy_us - self_us - (srv_us > 0 ? srv_us : 0);
        others_pct = (others > 0 ? others : 0) / (secs * 1e6) * 100;
        steal_pct = (double)(p->c1.machine_steal - p->c0.machine_steal) / 1e3 / (secs * 1e6) * 100;
    }
    if (o->json) {
        printf("{\"target\": \"%s\", \"rate\": %lld, \"connections\": %ld, \"size\": %ld, "
               "\"warmup_s\": %ld, \"seconds\": %.3f, \"requests\": %" PRIu64 ", "
               "\"rps\": %.0f, \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, "
               "\"p999_us\": %.1f, \"max_us\": %.1f, \"mean_us\": %.1f, \"errors\": %ld, "
               "\"end\": \"%s\", \"server_pid\": %ld, \"server_cpu_us\": %.0f, "
               "\"server_cpu_us_per_req\": %.3f, \"server_cpu_source\": \"%s\", "
               "\"server_cpu_stat_us\": %.0f, \"loadgen_cpu_us_per_req\": %.3f, "
               "\"server_preempted\": %lld, \"loadgen_preempted\": %lld, "
               "\"others_cpu_pct\": %.1f, \"steal_pct\": %.1f}\n",
               p->target, o->rate, o->connections, o->size, o->warmup, secs, r->measured,
               rps, p50, p90, p99, p999, max, mean, r->errors, p->end_reason, o->server_pid,
               srv_us, srv_per, srv_src, stat_us, self_per, srv_pre, self_pre, others_pct,
               steal_pct);
    } else {
        printf("target=%s rate=%lld connections=%ld size=%ld warmup_s=%ld seconds=%.3f "
               "requests=%" PRIu64 " rps=%.0f p50_us=%.1f p90_us=%.1f p99_us=%.1f "
               "p999_us=%.1f max_us=%.1f mean_us=%.1f errors=%ld end=%s server_pid=%ld "
               "server_cpu_us=%.0f server_cpu_us_per_req=%.3f server_cpu_source=%s "
               "server_cpu_stat_us=%.0f loadgen_cpu_us_per_req=%.3f "
               "server_preempted=%lld loadgen_preempted=%lld others_cpu_pct=%.1f "
               "steal_pct=%.1f\n",
               p->target, o->rate, o->connections, o->size, o->warmup, secs, r->measured,
               rps, p50, p90, p99, p999, max, mean, r->errors, p->end_reason, o->server_pid,
               srv_us, srv_per, srv_src, stat_us, self_per, srv_pre, self_pre, others_pct,
               steal_pct);
    }
    fflush(stdout);
}

/* ---- main ---------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    /* `make bench` runs every bench_* with no arguments (or --quick): a
     * load generator has nothing to drive then. */
    bool only_bench_flags = true;
    for (int i = 1; i < argc; i++)
        only_bench_flags &= !strcmp(argv[i], "--quick") || !strcmp(argv[i], "--json");
    if (only_bench_flags) {
        fprintf(stderr, PROG ": a load generator for echo servers; give it --host and "
                        "--port (bench/run_echo.sh runs it against each server)\n");
        return 0;
    }
    options o;
    parse_args(argc, argv, &o);
    if (!o.host || !o.port) {
        fprintf(stderr, PROG ": --host and --port are required\n");
        usage(stderr);
        return 2;
    }
    struct sockaddr_storage ss;
    socklen_t slen;
    char shown[INET6_ADDRSTRLEN + 16];
    resolve(&o, &ss, &slen, shown, sizeof shown);
    if (o.server_pid > 0 && proc_stat_cpu_ns((pid_t)o.server_pid) < 0)
        fprintf(stderr, PROG ": --server-pid %ld: cannot read /proc/%ld/stat; "
                        "server CPU is not reported\n", o.server_pid, o.server_pid);
    ensure_fd_limit(o.connections);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: epoll_wait returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    msg_size = (size_t)o.size;
    pattern = malloc(PATTERN_SPAN + msg_size);
    rxbuf = malloc(msg_size);
    run r = {.n = (size_t)o.connections, .alive = o.connections,
             .max_requests = o.max_requests};
    r.conns = calloc(r.n, sizeof *r.conns);
    r.idle = calloc(r.n, sizeof *r.idle);
    r.ep = epoll_create1(EPOLL_CLOEXEC);
    r.tfd = -1;
    r.rate = (double)o.rate;
    if (r.rate > 0 && r.ep >= 0) {
        r.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TIMER_TAG};
        if (r.tfd < 0 || epoll_ctl(r.ep, EPOLL_CTL_ADD, r.tfd, &ev) != 0) {
            fprintf(stderr, PROG ": timerfd: %s\n", strerror(errno));
            return 1;
        }
    }
    if (!pattern || !rxbuf || !r.conns || !r.idle || r.ep < 0) {
        fprintf(stderr, PROG ": out of memory or no epoll: %s\n", strerror(errno));
        return 1;
    }
    /* A fixed pseudo-random pattern (xorshift), the same every run. */
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < PATTERN_SPAN + msg_size; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pattern[i] = (char)(x >> 24);
    }

    connect_all(&r, &ss, slen, shown);

    int64_t start = now_ns();
    int64_t window_start = start + (int64_t)o.warmup * NS_PER_S;
    r.window_end = window_start + (int64_t)o.duration * NS_PER_S;
    report rep = {.o = &o, .target = shown, .r = &r, .end_reason = "duration"};
    if (o.warmup == 0) {
        sample_cpu((pid_t)o.server_pid, &rep.c0);
        r.measuring = true;
        window_start = now_ns();
        r.window_end = window_start + (int64_t)o.duration * NS_PER_S;
    }
    r.rate_t0 = now_ns();
    for (size_t i = 0; i < r.n; i++)
        next_request(&r, i, now_ns());
    if (r.rate > 0)
        release_due(&r, now_ns());

    struct epoll_event evs[MAX_EVENTS];
    int64_t now = start;
    for (;;) {
        if (interrupted) {
            rep.end_reason = "interrupted";
            break;
        }
        if (r.capped) {
            rep.end_reason = "max-requests";
            break;
        }
        if (r.alive == 0) {
            rep.end_reason = "no-connections-left";
            break;
        }
        int64_t until = r.measuring ? r.window_end : window_start;
        int timeout = until > now ? (int)((until - now + 999999) / 1000000) : 0;
        int k = epoll_wait(r.ep, evs, MAX_EVENTS, timeout);
        if (k < 0 && errno != EINTR) {
            fprintf(stderr, PROG ": epoll_wait: %s\n", strerror(errno));
            return 1;
        }
        now = now_ns();
        if (!r.measuring && now >= window_start) {
            sample_cpu((pid_t)o.server_pid, &rep.c0);
            window_start = now;
            r.window_end = window_start + (int64_t)o.duration * NS_PER_S;
            r.measuring = true;
        }
        if (r.measuring && now >= r.window_end)
            break;
        for (int j = 0; j < k; j++) {
            if (evs[j].data.u64 == TIMER_TAG) {
                uint64_t expirations;
                if (read(r.tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
                    fprintf(stderr, PROG ": timerfd read: %s\n", strerror(errno));
                r.timer_armed = false;
                continue;
            }
            size_t i = (size_t)evs[j].data.u64;
            conn *c = &r.conns[i];
            if (c->dead)
                continue;
            if ((evs[j].events & EPOLLOUT) && c->sent < msg_size)
                send_rest(&r, i);
            if (!c->dead && (evs[j].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                on_readable(&r, i);
        }
        if (r.rate > 0)
            release_due(&r, now_ns());
    }
    int64_t end = now_ns();
    if (!r.measuring) { /* ended during the warm-up */
        sample_cpu((pid_t)o.server_pid, &rep.c0);
        window_start = end;
    }
    sample_cpu((pid_t)o.server_pid, &rep.c1);
    if (end > r.window_end)
        end = r.window_end; /* nothing completing after it was counted */
    rep.seconds = (double)(end - window_start) / 1e9;
    print_report(&rep);

    for (size_t i = 0; i < r.n; i++)
        close(r.conns[i].fd);
    close(r.ep);
    if (r.tfd >= 0)
        close(r.tfd);
    free(r.idle);
    free(r.conns);
    free(pattern);
    free(rxbuf);
    return r.errors || r.measured == 0 ? 1 : 0;
}

/* tcpcheck: a concurrent TCP prober on cio's public API (issue 12).
 *
 *   tcpcheck [options] TARGET...        (tcpcheck --help, man tcpcheck)
 *
 * Shape: the main task parses the command line, resolves each distinct
 * host name once (cio_getaddrinfo, in a group of at most 16 lookups),
 * expands every target into a flat array of probes (target order), then
 * spawns one task per probe into a group whose limit is the concurrency
 * cap (cio_group_set_limit: the spawn waits for a free slot), pacing the
 * spawns with a token bucket on cio's clock when --rate is given. Each
 * probe connects under a per-attempt timeout scope, retries on timeout
 * only, optionally reads a banner, records its result and prints it
 * (streamed) at once. Ctrl-C / SIGTERM cancel the main task
 * (cio_shutdown_on_signals): the spawn loop stops, the group cancels the
 * probes in flight (they record nothing), and what was done is printed
 * with the summary; exit 130. A second signal ends the process at once.
 */
#define _GNU_SOURCE
#include <cio.h>

#include "targets.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TCPCHECK_VERSION "1.0"

enum state { ST_PENDING, ST_OPEN, ST_CLOSED, ST_TIMEOUT, ST_UNREACH, ST_ERROR,
             ST_CANCELLED, ST_N };
static const char *const state_name[ST_N] = {
    "pending", "open", "closed", "timeout", "unreachable", "error", "cancelled"};
static const char *const state_colour[ST_N] = {
    "", "\033[32m", "\033[31m", "\033[33m", "\033[35m", "\033[1;31m", ""};

typedef union addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} addr;

#define NO_ADDR UINT32_MAX

/* One probe: 32 bytes, so that 2^20 of them stay small. */
typedef struct probe {
    uint32_t target;   /* index in opt.targets */
    uint32_t addr;     /* index in addrs[], NO_ADDR when resolution failed */
    uint16_t port;
    uint8_t state;
    uint8_t attempts;
    int32_t err;       /* negative code for ST_ERROR / ST_UNREACH */
    int64_t rtt;       /* ns, of the last attempt */
    char *banner;      /* escaped, malloc; NULL if none */
} probe;

enum mode { OUT_TABLE, OUT_JSON, OUT_CSV };

static struct {
    tc_list targets;
    const char *ports;
    long concurrency;
    int64_t timeout;
    long retries;
    double rate;
    int family;           /* AF_UNSPEC, AF_INET, AF_INET6 */
    long banner;          /* bytes, 0: no banner */
    bool open_only, sort, first_address, demo, timeout_given;
    enum mode mode;
    uint64_t max_probes;
    long jobs;            /* -j: loops (threads), each with its share */
} opt = {.jobs = 1, .concurrency = 1024, .timeout = CIO_SEC, .max_probes = 1u << 20};

/* Run state (one loop, one thread: plain globals). */
static addr *addrs;
static size_t n_addrs, cap_addrs;
static probe *probes;
static size_t n_probes;
static size_t n_done, counts[ST_N];
static int width;            /* table: target column */
static bool colour, progress_tty, progress_shown;
static int64_t t_start;      /* monotonic ns */

/* per target: its resolved addresses [first, first + n) in addrs[], or err */
typedef struct resolved {
    uint32_t first, n;
    int err;
} resolved;
static resolved *res_of;     /* per target */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * CIO_SEC + ts.tv_nsec;
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tcpcheck: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static int add_addr(const addr *a)
{
    if (n_addrs == cap_addrs) {
        size_t cap = cap_addrs ? 2 * cap_addrs : 64;
        addr *v = realloc(addrs, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        addrs = v;
        cap_addrs = cap;
    }
    addrs[n_addrs++] = *a;
    return 0;
}

static void make_addr(addr *a, int v6, const unsigned char *bytes)
{
    memset(a, 0, sizeof *a);
    if (v6) {
        a->in6.sin6_family = AF_INET6;
        memcpy(&a->in6.sin6_addr, bytes, 16);
    } else {
        a->in.sin_family = AF_INET;
        memcpy(&a->in.sin_addr, bytes, 4);
    }
}

static void addr_text(const addr *a, char *buf, size_t cap)
{
    if (a->sa.sa_family == AF_INET6)
        inet_ntop(AF_INET6, &a->in6.sin6_addr, buf, (socklen_t)cap);
    else
        inet_ntop(AF_INET, &a->in.sin_addr, buf, (socklen_t)cap);
}

/* ---- output ---------------------------------------------------------------- */

/* "host:port" for a probe: the name or the address (IPv6 in brackets). */
static void probe_target(const probe *p, char *buf, size_t cap, char *host,
                         size_t hcap, char *atext, size_t acap)
{
    const tc_target *t = &opt.targets.v[p->target];
    atext[0] = 0;
    if (p->addr != NO_ADDR)
        addr_text(&addrs[p->addr], atext, acap);
    if (t->kind == TC_NAME)
        snprintf(host, hcap, "%s", t->host);
    else
        snprintf(host, hcap, "%s", atext[0] ? atext : t->host);
    bool v6 = strchr(host, ':') != NULL;
    snprintf(buf, cap, "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "",
             (unsigned)p->port);
}

static void json_string(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void csv_field(FILE *f, const char *s)
{
    if (!s)
        return;
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void erase_progress(void)
{
    if (progress_shown) {
        fputs("\r\033[K", stderr);
        progress_shown = false;
    }
}

static void print_header(void)
{
    if (opt.mode == OUT_CSV)
        puts("target,host,addr,port,state,rtt_ms,attempts,error,banner");
    else if (opt.mode == OUT_TABLE)
        printf("%-*s  %-11s  %9s%s\n", width, "TARGET", "STATE", "TIME",
               opt.banner ? "  BANNER" : "");
}

static void print_probe(const probe *p)
{
    if (opt.open_only && p->state != ST_OPEN)
        return;
    erase_progress();
    char target[TC_MAX_HOST + 64], host[TC_MAX_HOST + 1], at[INET6_ADDRSTRLEN];
    probe_target(p, target, sizeof target, host, sizeof host, at, sizeof at);
    const char *err = (p->state == ST_ERROR || p->state == ST_UNREACH) && p->err
                          ? cio_strerror(p->err) : NULL;
    bool answered = p->state == ST_OPEN || p->state == ST_CLOSED;
    double ms = (double)p->rtt / 1e6;
    FILE *o = stdout;
    if (opt.mode == OUT_JSON) {
        fputs("{\"target\":", o);
        json_string(o, target);
        fputs(",\"host\":", o);
        json_string(o, host);
        fputs(",\"addr\":", o);
        json_string(o, at[0] ? at : NULL);
        fprintf(o, ",\"port\":%u,\"state\":\"%s\",\"rtt_ms\":", (unsigned)p->port,
                state_name[p->state]);
        if (answered)
            fprintf(o, "%.3f", ms);
        else
            fputs("null", o);
        fprintf(o, ",\"attempts\":%u,\"error\":", (unsigned)p->attempts);
        json_string(o, err);
        fputs(",\"banner\":", o);
        json_string(o, p->banner);
        fputs("}\n", o);
    } else if (opt.mode == OUT_CSV) {
        csv_field(o, target);
        fputc(',', o);
        csv_field(o, host);
        fputc(',', o);
        csv_field(o, at);
        fprintf(o, ",%u,%s,", (unsigned)p->port, state_name[p->state]);
        if (answered)
            fprintf(o, "%.3f", ms);
        fprintf(o, ",%u,", (unsigned)p->attempts);
        csv_field(o, err);
        fputc(',', o);
        csv_field(o, p->banner);
        fputc('\n', o);
    } else {
        char shown[TC_MAX_HOST + 128];
        if (opt.targets.v[p->target].kind == TC_NAME && at[0])
            snprintf(shown, sizeof shown, "%s (%s)", target, at);
        else
            snprintf(shown, sizeof shown, "%s", target);
        char time[32] = "-";
        if (answered)
            snprintf(time, sizeof time, "%.2f ms", ms);
        char st[32];
        if (p->attempts > 1)
            snprintf(st, sizeof st, "%s/%u", state_name[p->state], (unsigned)p->attempts);
        else
            snprintf(st, sizeof st, "%s", state_name[p->state]);
        const char *extra = err ? err : p->banner ? p->banner : "";
        fprintf(o, "%-*s  %s%-11s%s  %9s%s%s\n", width, shown,
                colour ? state_colour[p->state] : "", st, colour ? "\033[0m" : "",
                time, *extra ? "  " : "", extra);
    }
}

/* A result is final: count it and (streaming) print it. */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void record(probe *p)
{
    if (opt.jobs > 1) /* -j: loops on several threads share the output */
        pthread_mutex_lock(&out_lock);
    n_done++;
    counts[p->state]++;
    if (!opt.sort)
        print_probe(p);
    if (opt.jobs > 1)
        pthread_mutex_unlock(&out_lock);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void summary(bool interrupted)
{
    erase_progress();
    double secs = (double)(mono_ns() - t_start) / 1e9;
    size_t n = 0;
    int64_t *rtts = malloc((counts[ST_OPEN] + counts[ST_CLOSED] + 1) * sizeof *rtts);
    for (size_t i = 0; rtts && i < n_probes; i++)
        if (probes[i].state == ST_OPEN || probes[i].state == ST_CLOSED)
            rtts[n++] = probes[i].rtt;
    if (interrupted)
        fprintf(stderr, "tcpcheck: interrupted: %zu of %zu probes done\n", n_done, n_probes);
    fprintf(stderr, "tcpcheck: %zu probes in %.3f s (%.0f/s): %zu open, %zu closed, "
            "%zu timeout, %zu unreachable, %zu error\n",
            n_done, secs, secs > 0 ? (double)n_done / secs : 0.0, counts[ST_OPEN],
            counts[ST_CLOSED], counts[ST_TIMEOUT], counts[ST_UNREACH], counts[ST_ERROR]);
    if (n) {
        qsort(rtts, n, sizeof *rtts, cmp_i64);
        size_t i50 = (n - 1) / 2, i99 = (size_t)ceil(0.99 * (double)n) - 1;
        fprintf(stderr, "tcpcheck: connect time p50 %.3f ms, p99 %.3f ms\n",
                (double)rtts[i50] / 1e6, (double)rtts[i99] / 1e6);
    }
    free(rtts);
}

/* ---- probing ----------------------------------------------------------------- */

/* Escape a banner: printable ASCII as is, \r \n \t \\ and \xNN. */
static char *escape(const unsigned char *b, size_t n)
{
    char *out = malloc(4 * n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = b[i];
        if (c == '\\') { *o++ = '\\'; *o++ = '\\'; }
        else if (c == '\r') { *o++ = '\\'; *o++ = 'r'; }
        else if (c == '\n') { *o++ = '\\'; *o++ = 'n'; }
        else if (c == '\t') { *o++ = '\\'; *o++ = 't'; }
        else if (c >= 0x20 && c < 0x7f) *o++ = (char)c;
        else o += sprintf(o, "\\x%02x", c);
    }
    *o = 0;
    return out;
}

/* Close a probe's socket with a reset (SO_LINGER 0): no TIME_WAIT left on
 * our side, and the service sees the probe end at once. */
static void close_reset(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    cio_close(fd);
}

static void read_banner(probe *p, int fd)
{
    unsigned char buf[4096]; /* --banner's maximum */
    size_t cap = (size_t)opt.banner < sizeof buf ? (size_t)opt.banner : sizeof buf;
    cio_scope s;
    cio_timeout_enter(&s, opt.timeout);
    ssize_t n = cio_recv(fd, buf, cap, 0);
    cio_scope_exit(&s);
    if (n > 0)
        p->banner = escape(buf, (size_t)n);
}

/* cio_connect's job, with shortcuts for what the kernel answers within
 * the connect call itself (loopback, and the local network's refusals):
 * a non-blocking connect(2), and at once a second connect(2) to ask for
 * the outcome before waiting: ECONNREFUSED (the refusal, and Linux puts
 * the socket back to unconnected, so that it can be used again),
 * EISCONN (connected) or EALREADY (in progress: only then wait for
 * writability with cio_wait_fd, a checkpoint where cancellation and the
 * caller's timeout scope apply, and ask again). Returns 0 or a negative
 * errno. */
static int connect_fast(int fd, const struct sockaddr *sa, socklen_t len)
{
    if (connect(fd, sa, len) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return -errno;
    for (;;) {
        if (connect(fd, sa, len) == 0 || errno == EISCONN)
            return 0;
        if (errno != EALREADY && errno != EINPROGRESS)
            return -errno;
        int rc = cio_wait_fd(fd, CIO_WRITABLE);
        if (rc < 0)
            return rc;
    }
}

/* Sockets whose connect was refused are unconnected again (see
 * connect_fast) and are kept for the next probe of their family: a
 * refused port then costs two system calls (two connects) instead of
 * four (socket, connect, getsockopt, close). One pool per loop (thread). */
#define SOCK_POOL 64
static _Thread_local int pool_fd[2][SOCK_POOL], pool_n[2];

static int socket_get(int family)
{
    int v6 = family == AF_INET6;
    if (pool_n[v6])
        return pool_fd[v6][--pool_n[v6]];
    return cio_socket(family, SOCK_STREAM, 0);
}

static void socket_put(int family, int fd)
{
    int v6 = family == AF_INET6;
    if (pool_n[v6] < SOCK_POOL)
        pool_fd[v6][pool_n[v6]++] = fd;
    else
        cio_close(fd);
}

static void socket_pool_drain(void)
{
    for (int v6 = 0; v6 < 2; v6++)
        while (pool_n[v6])
            cio_close(pool_fd[v6][--pool_n[v6]]);
}

static int probe_task(void *arg)
{
    probe *p = arg;
    const addr *a = &addrs[p->addr];
    socklen_t len = a->sa.sa_family == AF_INET6 ? sizeof a->in6 : sizeof a->in;
    addr to = *a;
    if (to.sa.sa_family == AF_INET6)
        to.in6.sin6_port = htons(p->port);
    else
        to.in.sin_port = htons(p->port);
    for (;;) {
        p->attempts++;
        int fd = socket_get(to.sa.sa_family);
        if (fd < 0) {
            p->state = ST_ERROR;
            p->err = fd;
            break;
        }
        int64_t t0 = mono_ns();
        cio_scope s;
        cio_timeout_enter(&s, opt.timeout);
        int rc = connect_fast(fd, &to.sa, len);
        int scope_rc = cio_scope_exit(&s);
        p->rtt = mono_ns() - t0;
        if (cio_cancel_pending()) { /* Ctrl-C: no result */
            close_reset(fd);
            p->state = ST_CANCELLED;
            return 0;
        }
        if (rc == 0) {
            p->state = ST_OPEN;
            if (opt.banner)
                read_banner(p, fd);
            close_reset(fd);
            if (cio_cancel_pending()) {
                p->state = ST_CANCELLED;
                return 0;
            }
            break;
        }
        if (rc == -ECONNREFUSED)
            socket_put(to.sa.sa_family, fd);
        else
            cio_close(fd);
        if (rc == -ETIMEDOUT || scope_rc == -ETIMEDOUT) {
            p->state = ST_TIMEOUT;
            if (p->attempts <= opt.retries)
                continue;
        } else if (rc == -ECONNREFUSED) {
            p->state = ST_CLOSED;
        } else if (rc == -ENETUNREACH || rc == -EHOSTUNREACH || rc == -ENETDOWN ||
                   rc == -EHOSTDOWN) {
            p->state = ST_UNREACH;
            p->err = rc;
        } else {
            p->state = ST_ERROR;
            p->err = rc;
        }
        break;
    }
    record(p);
    return 0;
}

/* Flushes stdout every 100 ms (results stream without a write per line)
 * and draws the progress line on a terminal once the run is over 1 s. */
static int ticker_task(void *arg)
{
    (void)arg;
    while (cio_sleep(100 * CIO_MSEC) == 0) {
        pthread_mutex_lock(&out_lock);
        fflush(stdout);
        double el = (double)(mono_ns() - t_start) / 1e9;
        if (!progress_tty || el < 1.0) {
            pthread_mutex_unlock(&out_lock);
            continue;
        }
        double rate = (double)n_done / el;
        char eta[32] = "-"; /* nothing done yet: no estimate */
        if (rate > 0)
            snprintf(eta, sizeof eta, "%.0f s", (double)(n_probes - n_done) / rate);
        fprintf(stderr, "\r\033[K%zu/%zu done, %zu open, %.0f/s, ETA %s", n_done,
                n_probes, counts[ST_OPEN], rate, eta);
        progress_shown = true;
        pthread_mutex_unlock(&out_lock);
    }
    return 0;
}

/* ---- resolution ---------------------------------------------------------------- */

typedef struct lookup {
    const char *name;
    struct addrinfo *ai;
    int err;
    uint32_t first, n; /* its addresses in addrs[] */
} lookup;

static int lookup_task(void *arg)
{
    lookup *l = arg;
    struct addrinfo hints = {.ai_family = opt.family, .ai_socktype = SOCK_STREAM};
    l->err = cio_getaddrinfo(l->name, NULL, &hints, &l->ai);
    return 0;
}

static int cmp_lookup(const void *a, const void *b)
{
    return strcmp(((const lookup *)a)->name, ((const lookup *)b)->name);
}

/* Resolve each distinct name once and fill res_of[] for every target. */
static int resolve_all(void)
{
    tc_list *tl = &opt.targets;
    res_of = calloc(tl->n ? tl->n : 1, sizeof *res_of);
    lookup *ls = calloc(tl->n ? tl->n : 1, sizeof *ls);
    if (!res_of || !ls)
        return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < tl->n; i++)
        if (tl->v[i].kind == TC_NAME)
            ls[n++].name = tl->v[i].host;
    qsort(ls, n, sizeof *ls, cmp_lookup);
    size_t u = 0; /* dedupe: the cache */
    for (size_t i = 0; i < n; i++)
        if (u == 0 || strcmp(ls[u - 1].name, ls[i].name))
            ls[u++] = ls[i];
    cio_group g;
    cio_group_enter(&g);
    cio_group_set_limit(&g, 16);
    for (size_t i = 0; i < u; i++) {
        int src = cio_group_spawn(&g, NULL, lookup_task, &ls[i], "lookup %s", ls[i].name);
        if (src < 0) { /* (a cancellation, or out of memory): say so per name */
            for (size_t j = i; j < u; j++)
                ls[j].err = src;
            break;
        }
    }
    int rc = cio_group_exit(&g);
    cio_group_destroy(&g);
    if (rc < 0) {
        for (size_t i = 0; i < u; i++)
            freeaddrinfo(ls[i].ai);
        free(ls);
        return rc;
    }
    /* each name's addresses, once, in the resolver's order, deduplicated */
    for (size_t i = 0; i < u; i++) {
        lookup *l = &ls[i];
        uint32_t first = (uint32_t)n_addrs, cnt = 0;
        for (struct addrinfo *ai = l->ai; ai; ai = ai->ai_next) {
            if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
                continue;
            addr a;
            memset(&a, 0, sizeof a);
            memcpy(&a, ai->ai_addr, ai->ai_addrlen <= sizeof a ? ai->ai_addrlen : sizeof a);
            a.in.sin_port = 0;
            bool dup = false;
            for (uint32_t k = first; k < first + cnt; k++)
                if (!memcmp(&addrs[k], &a, sizeof a))
                    dup = true;
            if (dup)
                continue;
            if (add_addr(&a) < 0)
                return -ENOMEM;
            cnt++;
            if (opt.first_address)
                break;
        }
        freeaddrinfo(l->ai);
        l->ai = NULL;
        l->err = cnt ? 0 : l->err ? l->err : CIO_EAI_NONAME;
        l->first = first;
        l->n = cnt;
    }
    for (size_t t = 0; t < tl->n; t++) {
        if (tl->v[t].kind != TC_NAME)
            continue;
        lookup key = {.name = tl->v[t].host};
        const lookup *l = bsearch(&key, ls, u, sizeof *ls, cmp_lookup);
        res_of[t] = (resolved){l->first, l->n, l->err};
    }
    free(ls);
    return 0;
}

/* ---- building the probe list ------------------------------------------------ */

static uint64_t target_probes(size_t ti)
{
    const tc_target *t = &opt.targets.v[ti];
    uint64_t na = t->kind == TC_NAME ? (res_of[ti].n ? res_of[ti].n : 1) : tc_target_addrs(t);
    if (na && t->n_ports > UINT64_MAX / na)
        return UINT64_MAX;
    return na * t->n_ports;
}

static int family_ok(int v6)
{
    return opt.family == AF_UNSPEC || opt.family == (v6 ? AF_INET6 : AF_INET);
}

static int build_probes(void)
{
    tc_list *tl = &opt.targets;
    uint64_t total = 0;
    for (size_t i = 0; i < tl->n; i++) {
        uint64_t k = target_probes(i);
        if (k > opt.max_probes) {
            fprintf(stderr, "tcpcheck: target '%s' is %s%" PRIu64 " probes, over the "
                    "limit of %" PRIu64 " (raise it with --max-probes N)\n",
                    tl->v[i].text, k == UINT64_MAX ? "over " : "", k, opt.max_probes);
            return -1;
        }
        total += k;
        if (total > opt.max_probes) {
            fprintf(stderr, "tcpcheck: %" PRIu64 "+ probes in all, over the limit of "
                    "%" PRIu64 " (raise it with --max-probes N)\n", total, opt.max_probes);
            return -1;
        }
    }
    probes = calloc(total ? total : 1, sizeof *probes);
    if (!probes)
        return -ENOMEM;
    for (size_t ti = 0; ti < tl->n; ti++) {
        tc_target *t = &tl->v[ti];
        uint32_t first, na;
        int err = 0;
        if (t->kind == TC_NAME) {
            first = res_of[ti].first;
            na = res_of[ti].n;
            err = res_of[ti].err;
        } else {
            int v6 = t->kind == TC_ADDR6 || t->kind == TC_CIDR6;
            first = (uint32_t)n_addrs;
            na = (uint32_t)tc_target_addrs(t);
            if (!family_ok(v6)) {
                na = 0;
                err = -EAFNOSUPPORT;
            }
            for (uint32_t k = 0; k < na; k++) {
                unsigned char b[16];
                addr a;
                tc_target_addr_at(t, k, b);
                make_addr(&a, v6, b);
                if (add_addr(&a) < 0)
                    return -ENOMEM;
            }
        }
        uint32_t reps = na ? na : 1;
        for (uint32_t k = 0; k < reps; k++)
            for (size_t r = 0; r < t->n_ranges; r++)
                for (uint32_t port = t->ports[r].lo; port <= t->ports[r].hi; port++) {
                    probe *p = &probes[n_probes++];
                    p->target = (uint32_t)ti;
                    p->port = (uint16_t)port;
                    if (na) {
                        p->addr = first + k;
                    } else {
                        p->addr = NO_ADDR;
                        p->state = ST_ERROR;
                        p->err = err;
                    }
                }
    }
    /* the table's target column */
    width = 6;
    for (size_t ti = 0; ti < tl->n; ti++) {
        const tc_target *t = &tl->v[ti];
        int w = (int)strlen(t->host) + 8;
        if (t->kind == TC_NAME)
            w += 3 + (res_of[ti].n ? INET6_ADDRSTRLEN / 2 : 0);
        else if (t->kind == TC_CIDR4)
            w = 21;
        else if (t->kind == TC_CIDR6)
            w = 48;
        if (w > width)
            width = w;
    }
    if (width > 60)
        width = 60;
    return 0;
}

/* ---- --demo --------------------------------------------------------------------- */

static int port_of(int fd)
{
    addr a;
    socklen_t len = sizeof a;
    if (getsockname(fd, &a.sa, &len) < 0)
        return -errno;
    return ntohs(a.in.sin_port);
}

static int demo_acceptor(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    bool banner = lfd < 0;
    if (banner)
        lfd = -lfd;
    for (;;) {
        int fd = cio_accept(lfd, NULL, NULL);
        if (fd < 0)
            return fd == -ECANCELED ? 0 : fd;
        if (banner) {
            static const char hello[] = "SSH-2.0-tcpcheck_demo\r\n";
            cio_send(fd, hello, sizeof hello - 1, 0);
        }
        cio_close(fd);
    }
}

/* Opens the demo's services in g, and returns the target text for them.
 * fds[] collects what to close afterwards. */
static int demo_open(cio_group *g, char *text, size_t cap, int *fds, int *n_fds)
{
    int ports[8], np = 0;
    for (int i = 0; i < 3; i++) { /* two accepting, one with a banner */
        int fd = cio_tcp_listen("127.0.0.1", "0", 128, false);
        if (fd < 0)
            return fd;
        fds[(*n_fds)++] = fd;
        ports[np++] = port_of(fd);
        cio_group_spawn(g, NULL, demo_acceptor, (void *)(intptr_t)(i == 2 ? -fd : fd),
                        "demo service %d", ports[np - 1]);
    }
    for (int i = 0; i < 2; i++) { /* closed: bound, not listening */
        int fd = cio_socket(AF_INET, SOCK_STREAM, 0);
        addr a;
        unsigned char lo[4] = {127, 0, 0, 1};
        make_addr(&a, 0, lo);
        if (fd < 0 || bind(fd, &a.sa, sizeof a.in) < 0)
            return fd < 0 ? fd : -errno;
        fds[(*n_fds)++] = fd;
        ports[np++] = port_of(fd);
    }
    /* a full backlog: listen(0) and never accept; fill the queue until a
     * connect no longer completes, then SYNs to it are dropped */
    int lfd = cio_socket(AF_INET, SOCK_STREAM, 0);
    addr a;
    unsigned char lo[4] = {127, 0, 0, 1};
    make_addr(&a, 0, lo);
    if (lfd < 0 || bind(lfd, &a.sa, sizeof a.in) < 0 || listen(lfd, 0) < 0)
        return lfd < 0 ? lfd : -errno;
    fds[(*n_fds)++] = lfd;
    ports[np++] = port_of(lfd);
    a.in.sin_port = htons((uint16_t)ports[np - 1]);
    for (int i = 0; i < 4; i++) {
        int fd = cio_socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return fd;
        fds[(*n_fds)++] = fd;
        cio_scope s;
        cio_timeout_enter(&s, 100 * CIO_MSEC);
        int rc = cio_connect(fd, &a.sa, sizeof a.in);
        cio_scope_exit(&s);
        if (rc < 0)
            break;
    }
    int off = snprintf(text, cap, "127.0.0.1:");
    for (int i = 0; i < np; i++)
        off += snprintf(text + off, cap - (size_t)off, "%s%d", i ? "," : "", ports[i]);
    fprintf(stderr, "tcpcheck: demo: ports %d,%d accept, %d says hello, %d,%d are closed, "
            "%d has a full backlog\n", ports[0], ports[1], ports[2], ports[3], ports[4],
            ports[5]);
    return 0;
}

/* ---- main task -------------------------------------------------------------------- */

/* Spawn share k of jobs (probes k, k + jobs, ...) into a group limited to
 * this loop's part of the cap, paced by this loop's part of --rate. */
static void launch(size_t k, size_t jobs)
{
    cio_group g;
    cio_group_enter(&g);
    size_t cap = (size_t)opt.concurrency / jobs;
    cio_group_set_limit(&g, cap ? cap : 1);
    double rate = opt.rate / (double)jobs;
    int64_t interval = rate > 0 ? (int64_t)(1e9 / rate) : 0;
    int64_t next = cio_now();
    for (size_t i = k; i < n_probes; i += jobs) {
        if (probes[i].state != ST_PENDING)
            continue;
        if (interval) {
            /* a token bucket of depth 1: one start per interval, never a
             * burst to catch up after waiting for a slot */
            int64_t now = cio_now();
            if (next < now)
                next = now;
            if (next > now && cio_sleep_until(next) < 0)
                break;
            next += interval;
        }
        if (cio_group_spawn(&g, NULL, probe_task, &probes[i], NULL) < 0)
            break;
    }
    cio_group_exit(&g);
    cio_group_destroy(&g);
    socket_pool_drain();
}

typedef struct share {
    size_t k;
    pthread_t th;
    bool started; /* its thread runs (set before it starts) */
    int rc;       /* its loop's status (written by its thread) */
} share;

static int share_main(void *arg)
{
    share *sh = arg;
    int rc = cio_shutdown_on_signals(); /* every loop stops on Ctrl-C */
    if (rc < 0)
        return rc;
    launch(sh->k, (size_t)opt.jobs);
    return 0;
}

static void *share_thread(void *arg)
{
    share *sh = arg;
    cio_loop_options lo = {.stack_size = 64 * 1024};
    sh->rc = cio_run_opts(&lo, share_main, sh);
    return NULL;
}

static int join_shares(void *arg)
{
    share *sh = arg;
    for (long j = 1; j < opt.jobs; j++)
        if (sh[j].started)
            pthread_join(sh[j].th, NULL);
    return 0;
}

static int run_probes(void)
{
    cio_group aux;
    cio_group_enter(&aux);
    cio_group_spawn(&aux, NULL, ticker_task, NULL, "ticker");
    print_header();
    /* rows known before probing (resolution failures) */
    for (size_t i = 0; i < n_probes; i++)
        if (probes[i].state != ST_PENDING)
            record(&probes[i]);
    share *sh = NULL;
    if (opt.jobs > 1) {
        /* -j N: N - 1 more loops on threads of their own (the signals are
         * blocked in them until their loop arms the shutdown) */
        sh = calloc((size_t)opt.jobs, sizeof *sh);
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        for (long j = 1; sh && j < opt.jobs; j++) {
            sh[j].k = (size_t)j;
            sh[j].started = true;
            if (pthread_create(&sh[j].th, NULL, share_thread, &sh[j]) != 0)
                sh[j].started = false;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!sh)
            opt.jobs = 1; /* no thread started yet: nobody reads it */
    }
    launch(0, (size_t)opt.jobs);
    /* a share whose thread could not start runs here, after ours */
    for (long j = 1; sh && j < opt.jobs; j++)
        if (!sh[j].started)
            launch((size_t)j, (size_t)opt.jobs);
    if (sh) {
        /* wait for the other loops on a pool thread, so that this loop
         * keeps drawing the progress; shielded: Ctrl-C stops those loops
         * by itself, and their results must be in before the summary */
        cio_scope shield;
        cio_shield_enter(&shield, CIO_FOREVER);
        cio_to_thread(join_shares, sh);
        cio_scope_exit(&shield);
        free(sh);
    }
    cio_group_cancel(&aux);
    cio_group_exit(&aux);
    cio_group_destroy(&aux);
    return 0;
}

static int main_task(void *arg)
{
    (void)arg;
    int rc = cio_shutdown_on_signals();
    if (rc < 0) {
        fprintf(stderr, "tcpcheck: cannot catch signals: %s\n", cio_strerror(rc));
        return 2;
    }
    cio_group demo;
    int demo_fds[16], n_demo = 0;
    if (opt.demo) {
        cio_group_enter(&demo);
        char text[128], why[TC_ERR_LEN];
        rc = demo_open(&demo, text, sizeof text, demo_fds, &n_demo);
        tc_target t;
        if (rc < 0 || tc_parse_target(text, NULL, &t, why) < 0 ||
            tc_list_add(&opt.targets, &t, why) < 0) {
            fprintf(stderr, "tcpcheck: demo: %s\n", cio_strerror(rc));
            cio_group_cancel(&demo);
            cio_group_exit(&demo);
            return 2;
        }
    }
    t_start = mono_ns();
    rc = resolve_all();
    if (rc == 0 && build_probes() < 0)
        rc = 2;
    if (rc == 0)
        run_probes();
    if (opt.demo) {
        cio_group_cancel(&demo);
        cio_group_exit(&demo);
        cio_group_destroy(&demo);
        for (int i = 0; i < n_demo; i++)
            cio_close(demo_fds[i]);
    }
    if (rc == 2)
        return 2;
    if (rc < 0 && !cio_shutdown_signal()) {
        fprintf(stderr, "tcpcheck: %s\n", cio_strerror(rc));
        return 2;
    }
    if (opt.sort)
        for (size_t i = 0; i < n_probes; i++)
            if (probes[i].state != ST_PENDING && probes[i].state != ST_CANCELLED)
                print_probe(&probes[i]);
    fflush(stdout);
    summary(cio_shutdown_signal() != 0);
    return counts[ST_OPEN] == n_probes && n_probes ? 0 : 1;
}

/* ---- command line -------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs(
"Usage: tcpcheck [OPTION]... TARGET...\n"
"Probe TCP ports concurrently: open, closed, timeout, unreachable or error.\n"
"\n"
"Targets:\n"
"  host:PORTS            a name or IPv4 address; PORTS is p1,p2,p5-p9\n"
"  [v6addr]:PORTS        an IPv6 address\n"
"  a.b.c.d/nn:PORTS      a network (CIDR); [v6addr/nn]:PORTS for IPv6\n"
"  host                  with -p PORTS\n"
"\n"
"Options:\n"
"  -p, --ports=PORTS       ports for targets written without them\n"
"  -f, --file=FILE         read targets from FILE (- for stdin): one per line,\n"
"                          # comments, blank lines skipped\n"
"  -c, --concurrency=N     probes in flight at most (default 1024)\n"
"  -t, --timeout=DURATION  per attempt: 500ms, 2s, ... (default 1s)\n"
"  -r, --retries=N         retry a timed-out probe N times (default 0)\n"
"      --rate=N            start at most N connections per second\n"
"  -4, -6                  IPv4 / IPv6 addresses only\n"
"      --first-address     probe only a name's first address\n"
"      --banner[=BYTES]    read what the service says first (default 128 bytes)\n"
"      --open-only         print open ports only\n"
"      --sort              print in target order at the end (default: as they come)\n"
"      --json              one JSON object per line\n"
"      --csv               CSV with a header row\n"
"      --max-probes=N      allow more than 1048576 probes\n"
"      --demo              probe listeners of its own on 127.0.0.1 (every state,\n"
"                          with --banner and -t 300ms unless given)\n"
"  -j, --jobs=N            N event loops on N threads, each with its share of\n"
"                          the probes, the cap and the rate (default 1)\n"
"  -h, --help              this help\n"
"  -V, --version           version\n"
"\n"
"A summary goes to stderr. Exit status: 0 all open, 1 some not open,\n"
"2 usage or input error, 130 interrupted. NO_COLOR disables colour.\n", f);
}

static long parse_long(const char *s, const char *what, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die_usage("%s wants a number from %ld to %ld, not '%s'", what, lo, hi, s);
    return v;
}

static void add_target(const char *s)
{
    tc_target t;
    char why[TC_ERR_LEN];
    if (tc_parse_target(s, opt.ports, &t, why) < 0 || tc_list_add(&opt.targets, &t, why) < 0)
        die_usage("bad target '%s': %s", s, why);
}

static void read_file(const char *path)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f)
        die_usage("%s: %s", path, strerror(errno));
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap)
            buf = realloc(buf, cap *= 2);
    }
    if (!buf)
        die_usage("%s: out of memory", path);
    if (ferror(f))
        die_usage("%s: %s", path, strerror(errno));
    if (f != stdin)
        fclose(f);
    int line;
    char why[TC_ERR_LEN];
    if (tc_parse_file(buf, len, opt.ports, &opt.targets, &line, why) < 0)
        die_usage("%s:%d: %s", strcmp(path, "-") ? path : "(stdin)", line, why);
    free(buf);
}

/* Make room for the cap: raise RLIMIT_NOFILE's soft limit up to the hard
 * one; if that is still short, lower the cap (one warning). */
static void fit_fd_limit(void)
{
    const long reserve = 32; /* stdio, the loop's own fds, the resolver's */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t need = (rlim_t)opt.concurrency + (rlim_t)reserve;
    if (rl.rlim_cur >= need)
        return;
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
    struct rlimit nl = {.rlim_cur = want, .rlim_max = rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
        rl.rlim_cur = want;
    if (rl.rlim_cur >= need)
        return;
    long cap = (long)rl.rlim_cur - reserve;
    if (cap < 1)
        cap = 1;
    fprintf(stderr, "tcpcheck: warning: the open file limit is %ld (hard limit %ld): "
            "concurrency capped at %ld instead of %ld\n", (long)rl.rlim_cur,
            rl.rlim_max == RLIM_INFINITY ? -1L : (long)rl.rlim_max, cap, opt.concurrency);
    opt.concurrency = cap;
}

int main(int argc, char **argv)
{
    enum { O_RATE = 256, O_BANNER, O_OPEN_ONLY, O_SORT, O_JSON, O_CSV, O_FIRST,
           O_MAXP, O_DEMO };
    static const struct option longs[] = {
        {"ports", required_argument, NULL, 'p'},
        {"file", required_argument, NULL, 'f'},
        {"concurrency", required_argument, NULL, 'c'},
        {"timeout", required_argument, NULL, 't'},
        {"retries", required_argument, NULL, 'r'},
        {"rate", required_argument, NULL, O_RATE},
        {"banner", optional_argument, NULL, O_BANNER},
        {"open-only", no_argument, NULL, O_OPEN_ONLY},
        {"sort", no_argument, NULL, O_SORT},
        {"json", no_argument, NULL, O_JSON},
        {"csv", no_argument, NULL, O_CSV},
        {"first-address", no_argument, NULL, O_FIRST},
        {"max-probes", required_argument, NULL, O_MAXP},
        {"demo", no_argument, NULL, O_DEMO},
        {"jobs", required_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0, 0, 0, 0}};
    const char *files[64];
    int n_files = 0, c;
    while ((c = getopt_long(argc, argv, "p:f:c:t:r:j:46hV", longs, NULL)) != -1) {
        switch (c) {
        case 'p': {
            tc_range *r;
            size_t n;
            uint32_t cnt;
            char why[TC_ERR_LEN];
            if (tc_parse_ports(optarg, &r, &n, &cnt, why) < 0)
                die_usage("bad -p '%s': %s", optarg, why);
            free(r);
            opt.ports = optarg;
            break;
        }
        case 'f':
            if (n_files == 64)
                die_usage("too many -f files (64 at most)");
            files[n_files++] = optarg;
            break;
        case 'c': opt.concurrency = parse_long(optarg, "-c", 1, 1000000); break;
        case 't':
            if (tc_parse_duration(optarg, &opt.timeout) < 0)
                die_usage("-t wants a duration like 500ms or 2s (up to 1h), not '%s'", optarg);
            opt.timeout_given = true;
            break;
        case 'j': opt.jobs = parse_long(optarg, "-j", 1, 64); break;
        case 'r': opt.retries = parse_long(optarg, "-r", 0, 100); break;
        case O_RATE: opt.rate = (double)parse_long(optarg, "--rate", 1, 100000000); break;
        case '4': opt.family = AF_INET; break;
        case '6': opt.family = AF_INET6; break;
        case O_BANNER:
            opt.banner = optarg ? parse_long(optarg, "--banner", 1, 4096) : 128;
            break;
        case O_OPEN_ONLY: opt.open_only = true; break;
        case O_SORT: opt.sort = true; break;
        case O_JSON: opt.mode = OUT_JSON; break;
        case O_CSV: opt.mode = OUT_CSV; break;
        case O_FIRST: opt.first_address = true; break;
        case O_MAXP:
            opt.max_probes = (uint64_t)parse_long(optarg, "--max-probes", 1, 1L << 30);
            break;
        case O_DEMO: opt.demo = true; break;
        case 'h': usage(stdout); return 0;
        case 'V':
            printf("tcpcheck %s (cio %s)\n", TCPCHECK_VERSION, cio_version_string());
            return 0;
        default:
            fputs("Try 'tcpcheck --help' for more information.\n", stderr);
            return 2;
        }
    }
    /* targets after all options, so that -p applies wherever it was given */
    for (int i = optind; i < argc; i++)
        add_target(argv[i]);
    for (int i = 0; i < n_files; i++)
        read_file(files[i]);
    if (opt.demo && !opt.timeout_given)
        opt.timeout = 300 * CIO_MSEC;
    if (opt.demo && !opt.banner) /* the demo shows every state: its banner too */
        opt.banner = 128;
    if (!opt.targets.n && !opt.demo)
        die_usage("no target (tcpcheck --help for the syntax)");
    fit_fd_limit();
    const char *nc = getenv("NO_COLOR");
    colour = opt.mode == OUT_TABLE && isatty(1) && !(nc && *nc);
    progress_tty = isatty(2);
    /* probe tasks need little stack: 64 KiB keeps -c 10000 small */
    cio_loop_options lo = {.stack_size = 64 * 1024};
    int rc = cio_run_opts(&lo, main_task, NULL);
    int sig = cio_shutdown_signal();
    if (sig)
        return 128 + sig;
    if (rc < 0) {
        fprintf(stderr, "tcpcheck: %s\n", cio_strerror(rc));
        return 2;
    }
    return rc;
}

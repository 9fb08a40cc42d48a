/* news (tools/news, issue 14): the tool's behaviour from outside. The real
 * binary (NEWS_BIN) runs against the HTTP test server (tests/http_server.h)
 * on 127.0.0.1, served by a cio loop on a thread of the test, with routes
 * of this file for feed bodies (an HTML page with autodiscovery, ETag and
 * Last-Modified checked exactly, gzip, a gzip bomb, 429 with Retry-After,
 * 503 then 200, a per-host counter, a slow feed); plus unit tests of the
 * state file (state.c) and the output escaping (output.c). */
#ifdef NEWS_BIN /* (the tool is built: see CMakeLists.txt) */
#include "harness.h"
#include "http_server.h"
#include "output.h"
#include "schedule.h"
#include "state.h"

#include <cio.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the server ------------------------------------------------------------ */

#define MAX_HOSTS 4
#define MAX_TIMES 16

typedef struct srv {
    http_server hs;
    pthread_t th;
    int ready[2], stop[2];
    char base[64];       /* http://127.0.0.1:PORT */
    char base_lh[64];    /* http://localhost:PORT: another host for the client */
    /* what the routes saw (read by the test after srv_stop) */
    struct {
        char name[128];
        int active, max, requests;
    } hosts[MAX_HOSTS];
    int max_active_all, active_all;
    int conditional_ok, conditional_seen, full_etag;
    char last_inm[128], last_ims[128];
    int gzip_asked;
    int limited_n, flaky_n;
    int64_t limited_at[MAX_TIMES], other_at[MAX_TIMES]; /* loop clock (real) */
    int other_n;
} srv;

static const char *header_value(const char *headers, const char *name, char *buf, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = headers; *p;) {
        const char *e = strstr(p, "\r\n");
        if (!e)
            break;
        if ((size_t)(e - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(buf, cap, "%.*s", (int)(e - v), v);
            return buf;
        }
        p = e + 2;
    }
    return NULL;
}

/* An RSS 2.0 feed of three items dated 1, 2 and 3 December 2026 (oldest
 * first in the document), titles "<name> item N", guids "<name>-N". */
static void rss(char *out, size_t cap, const char *name, const char *extra_item)
{
    snprintf(out, cap,
             "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
             "<rss version=\"2.0\"><channel><title>Feed %s</title>"
             "<link>http://example.com/</link>"
             "<item><title>%s item 1</title><link>http://example.com/%s/1</link>"
             "<guid>%s-1</guid><pubDate>Tue, 01 Dec 2026 10:00:00 GMT</pubDate></item>"
             "<item><title>%s item 2</title><link>http://example.com/%s/2</link>"
             "<guid>%s-2</guid><pubDate>Wed, 02 Dec 2026 10:00:00 GMT</pubDate></item>"
             "<item><title>%s item 3</title><link>http://example.com/%s/3</link>"
             "<guid>%s-3</guid><pubDate>Thu, 03 Dec 2026 10:00:00 GMT</pubDate></item>"
             "%s</channel></rss>\n",
             name, name, name, name, name, name, name, name, name, name, extra_item);
}

static int reply(cio_stream *s, int status, const char *extra, const char *body)
{
    return hs_send(s, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n", status, strlen(body),
                   extra ? extra : "") ?:
           cio_stream_write(s, body, strlen(body)) ?: cio_stream_drain(s) ?: 1;
}

static int reply_feed(cio_stream *s, const char *name, const char *extra)
{
    char body[4096];
    rss(body, sizeof body, name, "");
    return reply(s, 200, extra ? extra : "Content-Type: application/rss+xml\r\n", body);
}

/* A deflate stream (fixed Huffman codes) of `n` x 258 + 1 bytes 'a': a
 * literal, then <length 258, distance 1> n times; in a gzip wrapper whose
 * CRC is wrong (the reader must stop long before the end). */
static size_t gzip_bomb(unsigned char *out, size_t n)
{
    static const unsigned char hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    memcpy(out, hdr, 10);
    size_t pos = 10;
    unsigned acc = 0, bits = 0;
#define PUT_LSB(v, k) do { acc |= (unsigned)(v) << bits; bits += (k); \
        while (bits >= 8) { out[pos++] = (unsigned char)acc; acc >>= 8; bits -= 8; } } while (0)
#define PUT_CODE(code, k) do { for (int b_ = (k) - 1; b_ >= 0; b_--) PUT_LSB(((code) >> b_) & 1, 1); } while (0)
    PUT_LSB(1, 1);                 /* BFINAL */
    PUT_LSB(1, 2);                 /* BTYPE 01: fixed codes */
    PUT_CODE(0x30 + 'a', 8);       /* literal 'a' */
    for (size_t i = 0; i < n; i++) {
        PUT_CODE(0xc0 + (285 - 280), 8); /* length 258 */
        PUT_CODE(0, 5);                  /* distance 1 */
    }
    PUT_CODE(0, 7);                /* end of block */
    if (bits)
        out[pos++] = (unsigned char)acc;
#undef PUT_LSB
#undef PUT_CODE
    memset(out + pos, 0, 8); /* CRC, size: never reached */
    return pos + 8;
}

static int note_host(srv *v, const char *headers, int delta)
{
    char h[128];
    if (!header_value(headers, "Host", h, sizeof h))
        return -1;
    char *colon = strrchr(h, ':');
    if (colon)
        *colon = 0;
    for (int i = 0; i < MAX_HOSTS; i++) {
        if (!v->hosts[i].name[0])
            snprintf(v->hosts[i].name, sizeof v->hosts[i].name, "%s", h);
        if (strcmp(v->hosts[i].name, h) == 0) {
            v->hosts[i].active += delta;
            if (delta > 0)
                v->hosts[i].requests++;
            if (v->hosts[i].active > v->hosts[i].max)
                v->hosts[i].max = v->hosts[i].active;
            return i;
        }
    }
    return -1;
}

/* An item with every sfeed column, a TAB in the title, a newline, a TAB
 * and a backslash in the content; and one with HTML content and no date. */
static const char escapes_feed[] =
    "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>E</title>"
    "<item><title>tab\there</title><link>http://example.com/e</link>"
    "<guid>e-1</guid><author>me@example.com (Me)</author>"
    "<category>a</category><category>b</category>"
    "<enclosure url=\"http://example.com/e.mp3\" length=\"1\" type=\"audio/mpeg\"/>"
    "<description>line1\nline2\tx\\y \"q\"</description>"
    "<pubDate>Tue, 01 Dec 2026 10:00:00 GMT</pubDate></item>"
    "<item><title>second</title><link>http://example.com/2</link>"
    "<description>&lt;p&gt;html &amp;amp; more&lt;/p&gt;</description></item>"
    "</channel></rss>";

static int routes(http_server *hs, cio_stream *s, const char *path, const char *headers,
                  void *ctx)
{
    (void)hs;
    srv *v = ctx;
    char name[64], body[8192], buf[256];
    if (sscanf(path, "/rss/%63[^/?]", name) == 1)
        return reply_feed(s, name, NULL);
    if (sscanf(path, "/hold/%63[^/?]", name) == 1) { /* counted per host, held 150 ms */
        note_host(v, headers, 1);
        if (++v->active_all > v->max_active_all)
            v->max_active_all = v->active_all;
        int rc = cio_sleep(150 * CIO_MSEC);
        note_host(v, headers, -1);
        v->active_all--;
        return rc ?: reply_feed(s, name, NULL);
    }
    if (strcmp(path, "/validators") == 0) {
        /* 304 only when both validators come back exactly as sent */
        const char *inm = header_value(headers, "If-None-Match", buf, sizeof buf);
        snprintf(v->last_inm, sizeof v->last_inm, "%s", inm ? inm : "");
        const char *ims = header_value(headers, "If-Modified-Since", buf, sizeof buf);
        snprintf(v->last_ims, sizeof v->last_ims, "%s", ims ? ims : "");
        if (inm || ims)
            v->conditional_seen++;
        if (!strcmp(v->last_inm, "W/\"x \\\"42\\\"\"") &&
            !strcmp(v->last_ims, "Mon, 30 Nov 2026 08:00:00 GMT")) {
            v->conditional_ok++;
            return hs_send(s, "HTTP/1.1 304 Not Modified\r\nETag: W/\"x \\\"42\\\"\"\r\n\r\n") ?: 1;
        }
        v->full_etag++;
        return reply_feed(s, "tagged", "ETag: W/\"x \\\"42\\\"\"\r\n"
                                       "Last-Modified: Mon, 30 Nov 2026 08:00:00 GMT\r\n");
    }
    if (strcmp(path, "/gzfeed") == 0) {
        char *ae = (char *)header_value(headers, "Accept-Encoding", buf, sizeof buf);
        if (!ae || !strstr(ae, "gzip"))
            return reply(s, 406, NULL, "gzip only");
        v->gzip_asked++;
        rss(body, sizeof body, "zipped", "");
        unsigned char z[9000];
        size_t zn = hs_gzip(body, strlen(body), z);
        return hs_send(s, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %zu"
                          "\r\n\r\n", zn) ?: cio_stream_write(s, z, zn) ?:
               cio_stream_drain(s) ?: 1;
    }
    if (strcmp(path, "/bomb") == 0) { /* 64 MiB of 'a' from 400 KiB */
        size_t n = (64u << 20) / 258;
        unsigned char *z = malloc(n * 13 / 8 + 64);
        size_t zn = gzip_bomb(z, n);
        int rc = hs_send(s, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                            "Content-Length: %zu\r\n\r\n", zn);
        rc = rc ?: cio_stream_write(s, z, zn);
        rc = rc ?: cio_stream_drain(s);
        free(z);
        return rc ?: 1;
    }
    if (strcmp(path, "/page") == 0)
        return reply(s, 200, "Content-Type: text/html\r\n",
                     "<!DOCTYPE html><html><head><title>A page</title>"
                     "<link rel=\"alternate\" type=\"application/rss+xml\" title=\"its feed\" "
                     "href=\"/rss/discovered\"></head><body><p>hi</p></body></html>");
    if (strcmp(path, "/plainpage") == 0)
        return reply(s, 200, "Content-Type: text/html\r\n",
                     "<!DOCTYPE html><html><head><title>Just a page</title></head>"
                     "<body><p>no feed here</p></body></html>");
    if (strcmp(path, "/limited") == 0) { /* 429 Retry-After: 1 first, then the feed */
        if (v->limited_n < MAX_TIMES)
            v->limited_at[v->limited_n] = cio_now();
        if (v->limited_n++ == 0)
            return reply(s, 429, "Retry-After: 1\r\n", "slow down");
        return reply_feed(s, "limited", NULL);
    }
    if (strcmp(path, "/other") == 0) { /* the same host as /limited */
        if (v->other_n < MAX_TIMES)
            v->other_at[v->other_n++] = cio_now();
        return reply_feed(s, "other", NULL);
    }
    if (strcmp(path, "/flaky") == 0) /* 503 twice, then the feed */
        return v->flaky_n++ < 2 ? reply(s, 503, NULL, "busy") : reply_feed(s, "flaky", NULL);
    if (strcmp(path, "/redirected") == 0)
        return hs_send(s, "HTTP/1.1 301 Moved\r\nLocation: /rss/moved\r\nContent-Length: 0\r\n"
                          "\r\n") ?: 1;
    if (strcmp(path, "/forever") == 0) { /* answers after 30 s */
        int rc = cio_sleep(30 * CIO_SEC);
        return rc ?: reply_feed(s, "forever", NULL);
    }
    if (strcmp(path, "/notxml") == 0)
        return reply(s, 200, "Content-Type: application/octet-stream\r\n",
                     "\x01\x02 this is not a feed at all \x03");
    if (strcmp(path, "/escapes") == 0)
        return reply(s, 200, "Content-Type: application/rss+xml\r\n", escapes_feed);
    int ms;
    if (sscanf(path, "/wait/%d", &ms) == 1) { /* the feed after MS ms */
        int rc = cio_sleep(ms * CIO_MSEC);
        return rc ?: reply_feed(s, "waited", NULL);
    }
    if (strcmp(path, "/tagpage") == 0) { /* a page with validators, and its feed */
        if (header_value(headers, "If-None-Match", buf, sizeof buf) &&
            !strcmp(buf, "\"p1\""))
            return hs_send(s, "HTTP/1.1 304 Not Modified\r\nETag: \"p1\"\r\n\r\n") ?: 1;
        return reply(s, 200, "Content-Type: text/html\r\nETag: \"p1\"\r\n",
                     "<html><head><title>Tagged page</title>"
                     "<link rel=\"alternate\" type=\"application/atom+xml\" "
                     "href=\"/rss/behind\"></head><body></body></html>");
    }
    if (strcmp(path, "/selfpage") == 0) /* its feed link is itself */
        return reply(s, 200, "Content-Type: text/html\r\n",
                     "<html><head><title>Round and round</title>"
                     "<link rel=\"alternate\" type=\"application/rss+xml\" "
                     "href=\"/selfpage\"></head><body></body></html>");
    if (strcmp(path, "/evil.json") == 0) /* escape sequences, legal in JSON */
        return reply(s, 200, "Content-Type: application/feed+json\r\n",
                     "{\"version\":\"https://jsonfeed.org/version/1.1\",\"title\":"
                     "\"E\\u001b[2J\",\"items\":[{\"id\":\"1\",\"title\":\"clear"
                     "\\u001b[2Jscreen\",\"url\":\"http://example.com/\\u001b]0;x\\u0007\"}]}");
    return HS_NEXT;
}

static int srv_main(void *arg)
{
    srv *v = arg;
    v->hs.route = routes;
    v->hs.route_ctx = v;
    int rc = http_server_start(&v->hs);
    if (rc < 0)
        return rc;
    snprintf(v->base, sizeof v->base, "%s", v->hs.base);
    snprintf(v->base_lh, sizeof v->base_lh, "http://localhost:%s", strrchr(v->hs.base, ':') + 1);
    if (write(v->ready[1], "r", 1) != 1)
        return -EIO;
    cio_wait_fd(v->stop[0], CIO_READABLE);
    http_server_stop(&v->hs);
    return 0;
}

static void *srv_thread(void *arg)
{
    srv *v = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    cio_run(srv_main, v);
    return NULL;
}

static srv *srv_start(void)
{
    /* (static: a test reads a server's counters after srv_stop; each test
     * runs in a process of its own and starts a few at most) */
    static srv pool[8];
    static size_t n_started;
    ASSERT_TRUE(n_started < sizeof pool / sizeof pool[0]);
    srv *v = &pool[n_started++];
    memset(v, 0, sizeof *v);
    ASSERT_EQ(pipe(v->ready), 0);
    ASSERT_EQ(pipe(v->stop), 0);
    ASSERT_EQ(pthread_create(&v->th, NULL, srv_thread, v), 0);
    char c;
    ASSERT_EQ(read(v->ready[0], &c, 1), 1);
    return v;
}

static void srv_stop(srv *v)
{
    ASSERT_EQ(write(v->stop[1], "s", 1), 1);
    pthread_join(v->th, NULL);
}

/* ---- running the tool ------------------------------------------------------------ */

typedef struct run {
    char out[1 << 17], err[1 << 15];
    size_t n_out, n_err;
    int status; /* exit code, or 128 + signal */
    pid_t pid;
    int fd_out, fd_err;
} run;

static char tmpdir[64]; /* XDG_STATE_HOME and XDG_CONFIG_HOME of the runs */
static const char *stdin_text;
/* Run the tool with CIO_SEED removed from its environment: for the few
 * tests whose premise is the order in which the tool dispatches sources
 * (the seeds stage shuffles the tool's own tasks too, through CIO_SEED). */
static bool tool_fifo;
static int nofile_limit; /* for the child, 0: unchanged */

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/news-test-XXXXXX");
    ASSERT_TRUE(mkdtemp(tmpdir) != NULL);
}

static void start(run *r, const char *const *argv)
{
    int po[2], pe[2];
    ASSERT_EQ(pipe(po), 0);
    ASSERT_EQ(pipe(pe), 0);
    r->n_out = r->n_err = 0;
    r->out[0] = r->err[0] = 0;
    r->pid = fork();
    ASSERT_TRUE(r->pid >= 0);
    if (r->pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        if (stdin_text) {
            int pi[2];
            if (pipe(pi) < 0 || write(pi[1], stdin_text, strlen(stdin_text)) < 0)
                _exit(126);
            close(pi[1]);
            dup2(pi[0], 0);
        } else {
            int null = open("/dev/null", O_RDONLY);
            dup2(null, 0);
        }
        if (nofile_limit) {
            struct rlimit rl = {(rlim_t)nofile_limit, (rlim_t)nofile_limit};
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (tmpdir[0]) {
            setenv("XDG_STATE_HOME", tmpdir, 1);
            setenv("XDG_CONFIG_HOME", tmpdir, 1);
        }
        unsetenv("http_proxy");
        unsetenv("HTTP_PROXY");
        unsetenv("all_proxy");
        unsetenv("ALL_PROXY");
        if (tool_fifo)
            unsetenv("CIO_SEED");
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(NEWS_BIN, (char *const *)argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    r->fd_out = po[0];
    r->fd_err = pe[0];
}

static int count_lines(const char *s, size_t n)
{
    int lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += s[i] == '\n';
    return lines;
}

/* Read until both pipes end, or (until_lines > 0) stdout has that many lines. */
static void pump(run *r, int until_lines)
{
    for (;;) {
        if (until_lines && count_lines(r->out, r->n_out) >= until_lines)
            return;
        struct pollfd pf[2] = {{r->fd_out, POLLIN, 0}, {r->fd_err, POLLIN, 0}};
        if (r->fd_out < 0 && r->fd_err < 0)
            return;
        ASSERT_TRUE(poll(pf, 2, -1) > 0);
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || !pf[i].revents)
                continue;
            char *buf = i ? r->err : r->out;
            size_t *len = i ? &r->n_err : &r->n_out;
            size_t cap = (i ? sizeof r->err : sizeof r->out) - 1;
            ssize_t k = read(pf[i].fd, buf + *len, cap - *len);
            if (k <= 0) {
                close(pf[i].fd);
                if (i)
                    r->fd_err = -1;
                else
                    r->fd_out = -1;
            } else {
                *len += (size_t)k;
            }
            buf[*len] = 0;
        }
    }
}

static void finish(run *r)
{
    pump(r, 0);
    int st;
    ASSERT_EQ(waitpid(r->pid, &st, 0), r->pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    cio_test_note("exit %d\nstdout:\n%s\nstderr:\n%s", r->status, r->out, r->err);
}

static run *tool(const char *const *argv)
{
    static run r;
    start(&r, argv);
    finish(&r);
    return &r;
}

static void require_tool(void)
{
    /* Each run of the tool under valgrind takes seconds and valgrind's own
     * lines reach the tool's stderr: its runs are checked by the ASan stage
     * instead (the tool is built with ASan there). */
    if (cio_test_slow())
        cio_test_skip("the tool's runs are checked under ASan, not valgrind or qemu");
    const char *argv[] = {"news", "--version", NULL};
    run *r = tool(argv);
    if (r->status == 127 && r->n_out == 0)
        cio_test_skip("cannot run %s here", NEWS_BIN);
}

static char *url(const srv *v, const char *path)
{
    static char bufs[16][256];
    static int k;
    char *b = bufs[k++ % 16];
    snprintf(b, 256, "%s%s", v->base, path);
    return b;
}

/* The value of "field" in a JSON line (\" and \\ unescaped) into buf. */
static int json_field(const char *line, const char *field, char *buf, size_t cap)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", field);
    const char *p = strstr(line, key);
    if (!p)
        return 0;
    p += strlen(key);
    size_t n = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"' && n + 1 < cap; p++) {
            if (*p == '\\')
                p++;
            buf[n++] = *p;
        }
    } else {
        while (*p && *p != ',' && *p != '}' && n + 1 < cap)
            buf[n++] = *p++;
    }
    buf[n] = 0;
    return 1;
}

static int line_with(const char *out, const char *needle, char *buf, size_t cap)
{
    const char *p = strstr(out, needle);
    if (!p)
        return 0;
    const char *s = p;
    while (s > out && s[-1] != '\n')
        s--;
    const char *e = strchr(p, '\n');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, s, n);
    buf[n] = 0;
    return 1;
}

static void expect_field_(const char *line, const char *field, const char *want, int at)
{
    char got[1024];
    if (!json_field(line, field, got, sizeof got))
        cio_test_fail(__FILE__, at, "no field %s in %s", field, line);
    if (strcmp(got, want))
        cio_test_fail(__FILE__, at, "field %s: want '%s', got '%s' in %s", field, want, got,
                      line);
}
#define expect_field(l, f, w) expect_field_((l), (f), (w), __LINE__)

/* The error of the failed source with this URL in --json output. */
static void expect_error_(const run *r, const char *u, const char *want, int at)
{
    char key[300], line[2048];
    snprintf(key, sizeof key, "\"source_url\":\"%s\",\"status\":\"error\"", u);
    if (!line_with(r->out, key, line, sizeof line))
        cio_test_fail(__FILE__, at, "no error line for %s", u);
    expect_field_(line, "error", want, at);
}
#define expect_error(r, u, w) expect_error_((r), (u), (w), __LINE__)

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *slurp_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ASSERT_TRUE(f != NULL);
    fputs(text, f);
    fclose(f);
}

static const char *state_file(void)
{
    static char p[128];
    snprintf(p, sizeof p, "%s/news/state", tmpdir);
    return p;
}

/* ---- unit tests: state file and escaping --------------------------------------- */

TEST(news_state_round_trips_and_merges_under_the_lock)
{
    make_tmpdir();
    char path[128], err[256], aside[256];
    snprintf(path, sizeof path, "%s/sub/state", tmpdir);
    news_state a = {0};
    news_state_source *s = news_state_get(&a, "http://a/feed");
    uint64_t keys[] = {news_item_key("id1", NULL, "t"), news_item_key(NULL, "http://l", "t")};
    ASSERT_EQ(news_state_mark(s, keys, 2), 0);
    ASSERT_EQ(news_state_set_validators(s, "\"e 1\"", "Mon, 30 Nov 2026 08:00:00 GMT"), 0);
    ASSERT_EQ(news_state_save(&a, path, aside, sizeof aside, err, sizeof err), 0);
    ASSERT_STREQ(aside, "");
    /* another run saves another source: both are kept */
    news_state b = {0};
    news_state_source *t = news_state_get(&b, "http://b/feed");
    ASSERT_EQ(news_state_mark(t, keys, 1), 0);
    ASSERT_EQ(news_state_save(&b, path, aside, sizeof aside, err, sizeof err), 0);
    news_state c = {0};
    ASSERT_EQ(news_state_load(&c, path, err, sizeof err), 0);
    ASSERT_EQ(c.n, 2);
    news_state_source *ca = news_state_find(&c, "http://a/feed");
    ASSERT_TRUE(ca != NULL);
    ASSERT_STREQ(ca->etag, "\"e 1\"");
    ASSERT_STREQ(ca->last_modified, "Mon, 30 Nov 2026 08:00:00 GMT");
    ASSERT_TRUE(news_state_seen(ca, keys[0]) && news_state_seen(ca, keys[1]));
    ASSERT_FALSE(news_state_seen(ca, news_item_key("id2", NULL, NULL)));
    /* an id is not a link with the same text */
    ASSERT_NE(news_item_key("x", NULL, NULL), news_item_key(NULL, "x", NULL));
    news_state_clear(&a);
    news_state_clear(&b);
    news_state_clear(&c);
    /* no temporary file is left behind */
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    ASSERT_EQ(access(tmp, F_OK), -1);
}

TEST(news_state_reports_damage_with_the_line)
{
    make_tmpdir();
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/state", tmpdir);
    const struct {
        const char *text, *why;
    } bad[] = {
        {"garbage\n", "line 1: not a news state file (no 'news-state 1')"},
        {"news-state 1\nsource http://a\nseen 12\nend\n", "line 3: bad item key"},
        {"news-state 1\netag x\nend\n", "line 2: 'etag' before any 'source'"},
        {"news-state 1\nsource http://a\n", "no 'end' line (a partial file)"},
        {"news-state 1\nsource http://a\nse", "line 3: no end of line (a partial file)"},
        {"news-state 1\nsource http://a\nwhat is this\nend\n",
         "line 3: unknown line 'what'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put_file(path, bad[i].text);
        news_state st = {0};
        ASSERT_EQ(news_state_load(&st, path, err, sizeof err), -EBADMSG);
        ASSERT_STREQ(err, bad[i].why);
        ASSERT_EQ(st.n, 0);
    }
    char aside[256];
    ASSERT_EQ(news_state_set_aside(path, aside, sizeof aside), 0);
    ASSERT_EQ(access(aside, F_OK), 0);
    ASSERT_EQ(access(path, F_OK), -1);
    news_state st = {0}; /* missing: empty, fine */
    ASSERT_EQ(news_state_load(&st, path, err, sizeof err), 0);
}

TEST(news_tsv_and_json_escape_as_sfeed_and_json_want)
{
    char *buf;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    news_tsv_field(f, "a\tb\nc\\d\re", true);
    fputc('|', f);
    news_tsv_field(f, "  a\tb\nc  ", false);
    fputc('|', f);
    news_json_string(f, "q\"b\\s\n\x01");
    fputc('|', f);
    news_json_string(f, NULL);
    fclose(f);
    ASSERT_STREQ(buf, "a\\tb\\nc\\\\de|a b c|\"q\\\"b\\\\s\\n\\u0001\"|null");
    free(buf);
}

/* ---- unit tests: the scheduler, on the virtual clock ----------------------------- */

typedef struct sched_case {
    news_sched *s;
    news_host *h[2];
    int active[2], max[2], active_all, max_all;
    int64_t hold;               /* how long each request holds its slots */
    int64_t started[2][16];     /* acquire times per host, in order */
    int n_started[2];
} sched_case;

typedef struct sched_job {
    sched_case *c;
    int host;
} sched_job;

static int sched_holder(void *arg)
{
    sched_job *j = arg;
    sched_case *c = j->c;
    int rc = news_sched_acquire(c->s, c->h[j->host]);
    if (rc < 0)
        return rc;
    if (c->n_started[j->host] < 16)
        c->started[j->host][c->n_started[j->host]++] = cio_now();
    if (++c->active[j->host] > c->max[j->host])
        c->max[j->host] = c->active[j->host];
    if (++c->active_all > c->max_all)
        c->max_all = c->active_all;
    rc = cio_sleep(c->hold);
    c->active[j->host]--;
    c->active_all--;
    news_sched_release(c->s, c->h[j->host]);
    return rc;
}

/* Run n jobs per host (hosts a and b) to the end. */
static void sched_run(sched_case *c, int n_a, int n_b)
{
    static sched_job jobs[64];
    cio_group g;
    cio_group_enter(&g);
    int k = 0;
    for (int i = 0; i < n_a + n_b; i++) {
        jobs[k] = (sched_job){c, i < n_a ? 0 : 1};
        ASSERT_EQ(cio_group_spawn(&g, NULL, sched_holder, &jobs[k], "job %d", k), 0);
        k++;
    }
    ASSERT_EQ(cio_group_exit(&g), 0);
    cio_group_destroy(&g);
}

static int sched_caps_main(void *arg)
{
    (void)arg;
    sched_case c = {.hold = 100 * CIO_MSEC};
    ASSERT_EQ(news_sched_new(&c.s, 3, 2, 0), 0);
    c.h[0] = news_sched_host(c.s, "http://A.example:80/x");
    c.h[1] = news_sched_host(c.s, "https://user@b.example/y?z");
    ASSERT_TRUE(news_sched_host(c.s, "http://a.example:80/other") == c.h[0]);
    ASSERT_STREQ(news_host_name(c.h[0]), "http://a.example:80");
    ASSERT_STREQ(news_host_name(c.h[1]), "https://b.example");
    ASSERT_EQ(news_sched_n_hosts(c.s), 2);
    sched_run(&c, 8, 8);
    ASSERT_EQ(c.max[0], 2); /* per host */
    ASSERT_EQ(c.max[1], 2);
    ASSERT_EQ(c.max_all, 3); /* in all */
    news_sched_free(c.s);
    /* requests waiting for a busy host hold no run slot: with 2 run slots
     * and 1 per host, b's request starts at once behind three of a's */
    sched_case d = {.hold = 100 * CIO_MSEC};
    ASSERT_EQ(news_sched_new(&d.s, 2, 1, 0), 0);
    d.h[0] = news_sched_host(d.s, "http://a/");
    d.h[1] = news_sched_host(d.s, "http://b/");
    int64_t t0 = cio_now();
    sched_run(&d, 3, 1);
    ASSERT_EQ(d.started[1][0] - t0, 0);
    ASSERT_EQ(d.started[0][2] - t0, 2 * d.hold);
    news_sched_free(d.s);
    return 0;
}

TEST(news_sched_caps_per_host_and_in_all)
{
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, sched_caps_main, NULL), 0);
}

static int sched_interval_main(void *arg)
{
    (void)arg;
    /* interval 1 s, slots for all: a's requests start 1 s apart, b's are
     * not held back by a's */
    sched_case c = {.hold = 10 * CIO_MSEC};
    ASSERT_EQ(news_sched_new(&c.s, 16, 4, CIO_SEC), 0);
    c.h[0] = news_sched_host(c.s, "http://a/");
    c.h[1] = news_sched_host(c.s, "http://b/");
    int64_t t0 = cio_now();
    sched_run(&c, 4, 1);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(c.started[0][i] - t0, i * CIO_SEC);
    ASSERT_EQ(c.started[1][0] - t0, 0);
    /* news_sched_sent moves it on from when the request went out */
    int64_t now = cio_now();
    news_sched_sent(c.s, c.h[1], now + 300 * CIO_MSEC);
    ASSERT_EQ(news_host_not_before(c.h[1]), now + 1300 * CIO_MSEC);
    news_sched_free(c.s);
    return 0;
}

TEST(news_sched_interval_spaces_one_hosts_requests_only)
{
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, sched_interval_main, NULL), 0);
}

static int sched_hold_main(void *arg)
{
    (void)arg;
    /* a Retry-After of 5 s on a holds every request to a, not b's */
    sched_case c = {.hold = 10 * CIO_MSEC};
    ASSERT_EQ(news_sched_new(&c.s, 16, 2, 0), 0);
    c.h[0] = news_sched_host(c.s, "http://a/");
    c.h[1] = news_sched_host(c.s, "http://b/");
    int64_t t0 = cio_now();
    news_sched_hold(c.h[0], t0 + 5 * CIO_SEC);
    news_sched_hold(c.h[0], t0 + 1 * CIO_SEC); /* never shortens it */
    sched_run(&c, 3, 1);
    ASSERT_EQ(c.started[0][0] - t0, 5 * CIO_SEC);
    ASSERT_EQ(c.started[0][1] - t0, 5 * CIO_SEC);
    ASSERT_EQ(c.started[0][2] - t0, 5 * CIO_SEC + c.hold); /* (two slots per host) */
    ASSERT_EQ(c.started[1][0] - t0, 0);
    /* cancelled while held back: an error, and the host's slot given back */
    news_sched_hold(c.h[0], cio_now() + 60 * CIO_SEC);
    cio_scope sc;
    cio_timeout_enter(&sc, CIO_SEC);
    ASSERT_EQ(news_sched_acquire(c.s, c.h[0]), -ETIMEDOUT);
    cio_scope_exit(&sc);
    /* once the hold is over, both of a's slots can be taken (a slot kept
     * by the failed call would make the second wait for ever) */
    cio_timeout_enter(&sc, 120 * CIO_SEC);
    ASSERT_EQ(news_sched_acquire(c.s, c.h[0]), 0);
    ASSERT_EQ(news_sched_acquire(c.s, c.h[0]), 0);
    ASSERT_EQ(cio_scope_exit(&sc), 0);
    news_sched_release(c.s, c.h[0]);
    news_sched_release(c.s, c.h[0]);
    news_sched_free(c.s);
    return 0;
}

TEST(news_sched_retry_after_holds_the_whole_host)
{
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, sched_hold_main, NULL), 0);
}

TEST(news_backoff_is_full_jitter_doubling_to_a_cap)
{
    const int64_t base = 100 * CIO_MSEC;
    for (int k = 1; k <= 6; k++) {
        int64_t ceiling = base << (k - 1);
        ASSERT_EQ(news_backoff(k, base, 0), 0);
        ASSERT_EQ(news_backoff(k, base, (uint64_t)ceiling - 1), ceiling - 1);
        ASSERT_EQ(news_backoff(k, base, (uint64_t)ceiling), 0); /* [0, ceiling) */
        ASSERT_LT(news_backoff(k, base, UINT64_MAX), ceiling);
    }
    ASSERT_EQ(news_backoff(40, base, (uint64_t)60 * CIO_SEC - 1), 60 * CIO_SEC - 1);
    ASSERT_LT(news_backoff(40, base, UINT64_MAX), 60 * CIO_SEC);
    ASSERT_EQ(news_backoff(3, 0, 12345), 0);
}

/* ---- the binary: formats and basics --------------------------------------------- */

TEST_TIMEOUT(news_json_items_newest_first_with_trace_ids, 30)
{
    require_tool();
    srv *v = srv_start();
    const char *argv[] = {"news", "--json", "-n", "2", url(v, "/rss/one"), NULL};
    run *r = tool(argv);
    srv_stop(v);
    ASSERT_EQ(r->status, 0);
    ASSERT_EQ(count_lines(r->out, r->n_out), 2); /* -n 2 of 3 */
    ASSERT_TRUE(strstr(r->out, "one item 3") < strstr(r->out, "one item 2")); /* newest first */
    ASSERT_TRUE(strstr(r->out, "one item 1") == NULL);
    char line[2048], host[64], trace[64];
    ASSERT_TRUE(line_with(r->out, "one item 3", line, sizeof line));
    snprintf(host, sizeof host, "%s", v->base + 7); /* 127.0.0.1:PORT */
    expect_field(line, "source", host);
    expect_field(line, "source_url", url(v, "/rss/one"));
    expect_field(line, "title", "one item 3");
    expect_field(line, "link", "http://example.com/one/3");
    expect_field(line, "published", "2026-12-03T10:00:00Z");
    expect_field(line, "status", "ok");
    ASSERT_TRUE(json_field(line, "fetched_ms", trace, sizeof trace));
    ASSERT_TRUE(json_field(line, "trace_id", trace, sizeof trace));
    ASSERT_EQ(strlen(trace), 16);
    ASSERT_EQ(strspn(trace, "0123456789abcdef"), 16);
    /* the same trace id on both items of the source */
    ASSERT_EQ(count(r->out, trace), 2);
    ASSERT_EQ(r->n_err, 0); /* no progress, no summary with --json */
}

TEST_TIMEOUT(news_tsv_is_byte_for_byte_what_sfeed_writes, 30)
{
    require_tool();
    srv *v = srv_start();
    const char *argv[] = {"news", "--tsv", url(v, "/escapes"), url(v, "/status/404"), NULL};
    run *r = tool(argv);
    srv_stop(v);
    ASSERT_EQ(r->status, 1);
    ASSERT_EQ(count_lines(r->out, r->n_out), 2);
    /* timestamp title link content content-type id author enclosure category */
    const char *want_prefix = "1796119200\ttab here\thttp://example.com/e\t";
    ASSERT_TRUE(strncmp(r->out, want_prefix, strlen(want_prefix)) == 0);
    ASSERT_EQ(count(r->out, "\t"), 16);
    ASSERT_TRUE(strstr(r->out, "line1\\nline2\\tx\\\\y \"q\"\t") != NULL);
    ASSERT_TRUE(strstr(r->out, "\te-1\t") != NULL);
    ASSERT_TRUE(strstr(r->out, "\thttp://example.com/e.mp3\t") != NULL);
    /* the failure goes to stderr: stdout stays sfeed's format */
    char want[300];
    snprintf(want, sizeof want, "news: %s: HTTP 404\n", url(v, "/status/404"));
    ASSERT_TRUE(strstr(r->err, want) != NULL);
    /* byte for byte what sfeed itself makes of the same feed */
    char path[128], cmd[256];
    make_tmpdir();
    snprintf(path, sizeof path, "%s/feed.xml", tmpdir);
    put_file(path, escapes_feed);
    snprintf(cmd, sizeof cmd, "sfeed < %s 2>/dev/null", path);
    FILE *p = access("/usr/bin/sfeed", X_OK) == 0 ? popen(cmd, "r") : NULL;
    if (!p)
        return; /* (sfeed is not installed: the columns above are checked) */
    static char theirs[8192];
    size_t n = fread(theirs, 1, sizeof theirs - 1, p);
    theirs[n] = 0;
    ASSERT_EQ(pclose(p), 0);
    cio_test_note("sfeed:\n%s", theirs);
    ASSERT_STREQ(r->out, theirs);
}

TEST_TIMEOUT(news_text_groups_by_source_and_lists_failures_last, 30)
{
    require_tool();
    srv *v = srv_start();
    const char *argv[] = {"news", url(v, "/status/404"), url(v, "/rss/alpha"),
                          url(v, "/rss/beta"), NULL};
    run *r = tool(argv);
    srv_stop(v);
    ASSERT_EQ(r->status, 1);
    const char *a = strstr(r->out, "Feed alpha"), *b = strstr(r->out, "Feed beta"),
               *f = strstr(r->out, "failed:");
    ASSERT_TRUE(a && b && f);
    ASSERT_TRUE(a < b && b < f); /* input order, failures last */
    ASSERT_TRUE(strstr(r->out, "2026-12-03 10:00  alpha item 3") != NULL);
    ASSERT_TRUE(strstr(f, "HTTP 404") != NULL);
    ASSERT_TRUE(strchr(r->out, '\033') == NULL); /* not a terminal: no colour */
    ASSERT_TRUE(strstr(r->err, "news: 3 sources in ") != NULL);
    ASSERT_TRUE(strstr(r->err, ": 2 ok, 1 failed, 6 items\n") != NULL);
}

TEST_TIMEOUT(news_exit_codes_and_bad_input_messages, 30)
{
    require_tool();
    make_tmpdir();
    const char *a1[] = {"news", "-c", "0", "http://x/", NULL};
    run *r = tool(a1);
    ASSERT_EQ(r->status, 2);
    ASSERT_STREQ(r->err, "news: -c wants a number from 1 to 100000, not '0'\n");
    const char *a2[] = {"news", "-t", "soon", "http://x/", NULL};
    r = tool(a2);
    ASSERT_EQ(r->status, 2);
    ASSERT_STREQ(r->err, "news: -t wants a duration like 500ms, 2s or 1m (up to 24h), "
                         "not 'soon'\n");
    const char *a3[] = {"news", "-f", "/nonexistent/urls", NULL};
    r = tool(a3);
    ASSERT_EQ(r->status, 2);
    ASSERT_STREQ(r->err, "news: /nonexistent/urls: No such file or directory\n");
    const char *a4[] = {"news", "--bogus", NULL};
    r = tool(a4);
    ASSERT_EQ(r->status, 2);
    /* a bad line in a list: named with its line */
    char path[128];
    snprintf(path, sizeof path, "%s/list", tmpdir);
    put_file(path, "# feeds\nhttp://127.0.0.1:1/a  A\n\nftp://example.com/x\n");
    const char *a5[] = {"news", "-f", path, NULL};
    r = tool(a5);
    ASSERT_EQ(r->status, 2);
    char want[256];
    snprintf(want, sizeof want, "news: %s:4: ", path);
    ASSERT_TRUE(strncmp(r->err, want, strlen(want)) == 0);
    ASSERT_TRUE(strstr(r->err, "ftp://example.com/x") != NULL);
    ASSERT_EQ(count_lines(r->err, r->n_err), 1);
    /* the same on stdin */
    stdin_text = "http://127.0.0.1:1/\nnot a url\n";
    const char *a6[] = {"news", "-f", "-", NULL};
    r = tool(a6);
    stdin_text = NULL;
    ASSERT_EQ(r->status, 2);
    ASSERT_TRUE(strncmp(r->err, "news: (stdin):2: ", 17) == 0);
    /* a URL argument that is not http(s) */
    const char *a7[] = {"news", "gopher://x/", NULL};
    r = tool(a7);
    ASSERT_EQ(r->status, 2);
    ASSERT_TRUE(strstr(r->err, "gopher://x/") != NULL);
    /* no source at all, no default list */
    const char *a8[] = {"news", NULL};
    r = tool(a8);
    ASSERT_EQ(r->status, 2);
    ASSERT_TRUE(strstr(r->err, "news: no sources: give URLs or -f FILE, or list them in ") ==
                r->err);
    const char *a9[] = {"news", "--help", NULL};
    r = tool(a9);
    ASSERT_EQ(r->status, 0);
    ASSERT_TRUE(strstr(r->out, "Usage: news") != NULL);
}

TEST_TIMEOUT(news_reads_the_default_list_and_opml, 30)
{
    require_tool();
    make_tmpdir();
    srv *v = srv_start();
    char dir[128], path[160], text[1024];
    snprintf(dir, sizeof dir, "%s/news", tmpdir);
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/urls", dir);
    snprintf(text, sizeof text, "# mine\n%s  Listed One\n", url(v, "/rss/listed"));
    put_file(path, text);
    const char *a1[] = {"news", "--json", NULL};
    run *r = tool(a1);
    ASSERT_EQ(r->status, 0);
    ASSERT_EQ(count(r->out, "\"source\":\"Listed One\""), 3);
    snprintf(path, sizeof path, "%s/subs.opml", tmpdir);
    snprintf(text, sizeof text,
             "<?xml version=\"1.0\"?>\n<opml version=\"2.0\"><head><title>subs</title></head>"
             "<body><outline text=\"group\"><outline type=\"rss\" text=\"From OPML\" "
             "xmlUrl=\"%s\"/></outline></body></opml>\n", url(v, "/rss/opml"));
    put_file(path, text);
    const char *a2[] = {"news", "--json", "-f", path, NULL};
    r = tool(a2);
    srv_stop(v);
    ASSERT_EQ(r->status, 0);
    ASSERT_EQ(count(r->out, "\"title\":\"opml item"), 3);
    ASSERT_EQ(count(r->out, "\"source\":\"From OPML\""), 3);
}

/* ---- HTTP behaviour -------------------------------------------------------------- */

TEST_TIMEOUT(news_follows_redirects_and_autodiscovery_and_reports_loops, 30)
{
    require_tool();
    srv *v = srv_start();
    const char *argv[] = {"news", "--json", "-n", "1", url(v, "/redirected"), url(v, "/page"),
                          url(v, "/plainpage"), url(v, "/loop"), url(v, "/notxml"),
                          url(v, "/selfpage"), NULL};
    run *r = tool(argv);
    srv_stop(v);
    ASSERT_EQ(r->status, 1);
    ASSERT_TRUE(strstr(r->out, "\"title\":\"moved item 3\"") != NULL);
    ASSERT_TRUE(strstr(r->out, "\"title\":\"discovered item 3\"") != NULL);
    expect_error(r, url(v, "/plainpage"), "not a feed (an HTML page: 'Just a page')");
    /* autodiscovery is followed once: a page pointing at itself ends */
    expect_error(r, url(v, "/selfpage"), "not a feed (an HTML page: 'Round and round')");
    expect_error(r, url(v, "/loop"), "too many redirects");
    expect_error(r, url(v, "/notxml"), "not a feed");
}

TEST_TIMEOUT(news_gzip_is_asked_for_and_decoded, 30)
{
    require_tool();
    srv *v = srv_start();
    const char *argv[] = {"news", "--json", url(v, "/gzfeed"), NULL};
    run *r = tool(argv);
    srv_stop(v);
    ASSERT_EQ(r->status, 0);
    ASSERT_EQ(v->gzip_asked, 1);
    ASSERT_EQ(count(r->out, "\"title\":\"zipped item"), 3);
}

TEST_TIMEOUT(news_reports_each_transfer_failure_without_hanging, 30)
{
    require_tool();
    srv *v = srv_start();
    /* stall: 10 of 100 bytes then nothing; trickle: a byte per 100 ms;
     * reset and truncated mid-body; a body and a gzip bomb over the size */
    double t = now_s();
    const char *argv[] = {"news", "--json", "-t", "400ms", "-r", "0", url(v, "/stall"),
                          url(v, "/trickle/100"), url(v, "/reset"), url(v, "/truncated"),
                          "http://127.0.0.1:1/refused", NULL};
    run *r = tool(argv);
    t = now_s() - t;
    cio_test_note("took %.3f s", t);
    ASSERT_EQ(r->status, 1);
    expect_error(r, url(v, "/stall"), "timeout");
    expect_error(r, url(v, "/trickle/100"), "timeout");
    expect_error(r, url(v, "/truncated"), "truncated");
    expect_error(r, "http://127.0.0.1:1/refused", "refused");
    char line[1024], why[128];
    ASSERT_TRUE(line_with(r->out, "/reset\"", line, sizeof line));
    ASSERT_TRUE(json_field(line, "error", why, sizeof why));
    ASSERT_TRUE(!strcmp(why, "connection reset") || !strcmp(why, "truncated"));
    /* (no bound on t: the stall never ends by itself, so "timeout" above is
     * the proof that -t cut it; the test's own limit catches a hang) */
    /* over --max-size: a body, and a gzip bomb counted after decoding
     * (a long timeout: under ASan the 400 KiB bomb takes a while) */
    const char *a2[] = {"news", "--json", "-t", "20s", "-r", "0", "--max-size", "256K",
                        url(v, "/big/3000000"), url(v, "/bomb"), NULL};
    r = tool(a2);
    srv_stop(v);
    ASSERT_EQ(r->status, 1);
    expect_error(r, url(v, "/big/3000000"), "too large");
    expect_error(r, url(v, "/bomb"), "too large");
}

TEST_TIMEOUT(news_retries_5xx_and_timeouts_with_backoff, 30)
{
    require_tool();
    srv *v = srv_start();
    const char *argv[] = {"news", "--json", "-t", "200ms", "-r", "2", "--backoff", "20ms",
                          url(v, "/flaky"), url(v, "/stall"), url(v, "/status/500"), NULL};
    run *r = tool(argv);
    srv_stop(v);
    ASSERT_EQ(r->status, 1);
    ASSERT_EQ(v->flaky_n, 3); /* 503, 503, 200 */
    ASSERT_EQ(count(r->out, "\"title\":\"flaky item"), 3);
    expect_error(r, url(v, "/stall"), "timeout after 3 attempts");
    expect_error(r, url(v, "/status/500"), "HTTP 500 after 3 attempts");
    char line[1024];
    ASSERT_TRUE(line_with(r->out, "/status/500", line, sizeof line));
    expect_field(line, "attempts", "3");
    /* -r 0: one attempt */
    srv *w = srv_start();
    const char *a2[] = {"news", "--json", "-r", "0", url(w, "/flaky"), NULL};
    r = tool(a2);
    srv_stop(w);
    ASSERT_EQ(w->flaky_n, 1);
    expect_error(r, url(w, "/flaky"), "HTTP 503");
}

TEST_TIMEOUT(news_retry_after_is_obeyed_for_the_whole_host, 30)
{
    require_tool();
    srv *v = srv_start();
    /* /limited answers 429 Retry-After: 1 once; /other is on the same host
     * and must wait too; the same path on another host name need not */
    char lh[256];
    snprintf(lh, sizeof lh, "%s/rss/elsewhere", v->base_lh);
    double t = now_s();
    const char *argv[] = {"news", "--json", "--per-host", "1", "--backoff", "10ms",
                          url(v, "/limited"), url(v, "/other"), lh, NULL};
    tool_fifo = true; /* /limited must be the host's first request */
    run *r = tool(argv);
    t = now_s() - t;
    srv_stop(v);
    ASSERT_EQ(r->status, 0);
    ASSERT_EQ(v->limited_n, 2);
    ASSERT_EQ(v->other_n, 1);
    double gap = (double)(v->limited_at[1] - v->limited_at[0]) / 1e9;
    double other = (double)(v->other_at[0] - v->limited_at[0]) / 1e9;
    cio_test_note("retried after %.3f s, /other after %.3f s, run %.3f s", gap, other, t);
    ASSERT_TRUE(gap >= 1.0);
    ASSERT_TRUE(other >= 1.0);
    ASSERT_EQ(count(r->out, "elsewhere item"), 3);
}

TEST_TIMEOUT(news_per_host_cap_is_observed_at_the_server, 30)
{
    require_tool();
    srv *v = srv_start();
    const char *argv[40] = {"news", "--json", "--per-host", "2", "-c", "16"};
    int k = 6;
    static char lh[8][256];
    for (int i = 0; i < 8; i++) {
        char p[32];
        snprintf(p, sizeof p, "/hold/a%d", i);
        argv[k++] = strdup(url(v, p));
        snprintf(lh[i], sizeof lh[i], "%s/hold/b%d", v->base_lh, i);
        argv[k++] = lh[i];
    }
    run *r = tool(argv);
    srv_stop(v);
    ASSERT_EQ(r->status, 0);
    for (int i = 0; i < 2; i++) {
        cio_test_note("host %s: %d requests, %d at most at once", v->hosts[i].name,
                      v->hosts[i].requests, v->hosts[i].max);
        ASSERT_EQ(v->hosts[i].requests, 8);
        ASSERT_EQ(v->hosts[i].max, 2);
    }
    ASSERT_GE(v->max_active_all, 3); /* both hosts at once */
    /* -c 1: one request at a time in all */
    srv *w = srv_start();
    argv[5] = "1";
    for (int i = 0; i < 8; i++) {
        char p[32];
        snprintf(p, sizeof p, "/hold/a%d", i);
        argv[6 + 2 * i] = strdup(url(w, p));
        snprintf(lh[i], sizeof lh[i], "%s/hold/b%d", w->base_lh, i);
    }
    r = tool(argv);
    srv_stop(w);
    ASSERT_EQ(r->status, 0);
    ASSERT_EQ(w->max_active_all, 1);
}

TEST_TIMEOUT(news_deadline_ends_the_run_and_names_what_was_cut, 30)
{
    require_tool();
    srv *v = srv_start();
    double t = now_s();
    const char *argv[] = {"news", "--json", "--deadline", "800ms", url(v, "/rss/quick"),
                          url(v, "/forever"), NULL};
    run *r = tool(argv);
    t = now_s() - t;
    srv_stop(v);
    ASSERT_EQ(r->status, 1);
    ASSERT_TRUE(t < 5);
    ASSERT_EQ(count(r->out, "quick item"), 3);
    expect_error(r, url(v, "/forever"), "deadline reached");
}

TEST_TIMEOUT(news_verbose_logs_each_event_with_the_trace_id, 30)
{
    require_tool();
    srv *v = srv_start();
    const char *argv[] = {"news", "--json", "-v", url(v, "/rss/traced"), NULL};
    run *r = tool(argv);
    srv_stop(v);
    ASSERT_EQ(r->status, 0);
    char line[2048], trace[64], key[128];
    ASSERT_TRUE(line_with(r->out, "traced item 3", line, sizeof line));
    ASSERT_TRUE(json_field(line, "trace_id", trace, sizeof trace));
    snprintf(key, sizeof key, "] trace=%s: ", trace);
    const char *events[] = {"queued", "dispatched", "connected", "first byte", "parsed 3 items",
                            "done"};
    const char *prev = r->err;
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
        char want[160];
        snprintf(want, sizeof want, "%s%s", key, events[i]);
        const char *p = strstr(prev, want);
        if (!p)
            cio_test_fail(__FILE__, __LINE__, "no '%s' after the previous event", want);
        prev = p;
    }
    /* "+S.mmm [task#id] trace=...": time since the start, the task */
    ASSERT_TRUE(line_with(r->err, "dispatched", line, sizeof line));
    ASSERT_TRUE(line[0] == '+' && strstr(line, " [fetch 127.0.0.1:") != NULL);
    /* retries are events too, under the same trace id */
    srv *w = srv_start();
    const char *a2[] = {"news", "--json", "-v", "--backoff", "10ms", url(w, "/flaky"), NULL};
    r = tool(a2);
    srv_stop(w);
    ASSERT_EQ(r->status, 0);
    ASSERT_TRUE(line_with(r->out, "flaky item 3", line, sizeof line));
    ASSERT_TRUE(json_field(line, "trace_id", trace, sizeof trace));
    snprintf(key, sizeof key, "] trace=%s: retry 1 of 2 in ", trace);
    ASSERT_TRUE(strstr(r->err, key) != NULL);
    snprintf(key, sizeof key, "] trace=%s: retry 2 of 2 in ", trace);
    ASSERT_TRUE(strstr(r->err, key) != NULL);
    ASSERT_EQ(count(r->err, ": dispatched: GET "), 3);
}

/* ---- --new and the state file ------------------------------------------------------ */

TEST_TIMEOUT(news_new_shows_unseen_items_and_echoes_validators, 30)
{
    require_tool();
    make_tmpdir();
    srv *v = srv_start();
    const char *argv[] = {"news", "--new", "--json", url(v, "/rss/fresh"),
                          url(v, "/validators"), NULL};
    run *r = tool(argv);
    ASSERT_EQ(r->status, 0);
    ASSERT_EQ(count(r->out, "fresh item"), 3);
    ASSERT_EQ(count(r->out, "tagged item"), 3);
    ASSERT_EQ(v->conditional_seen, 0);
    const char *st = slurp_file(state_file());
    ASSERT_TRUE(st != NULL);
    ASSERT_TRUE(strstr(st, "etag W/\"x \\\"42\\\"\"\n") != NULL);
    ASSERT_TRUE(strstr(st, "modified Mon, 30 Nov 2026 08:00:00 GMT\n") != NULL);
    /* the second run: nothing new; the validators come back exactly: 304 */
    r = tool(argv);
    ASSERT_EQ(r->status, 0);
    ASSERT_EQ(r->n_out, 0);
    ASSERT_EQ(v->conditional_ok, 1);
    ASSERT_EQ(v->full_etag, 1);
    ASSERT_STREQ(v->last_inm, "W/\"x \\\"42\\\"\"");
    /* after a 304 the validators are still there for the next run */
    r = tool(argv);
    srv_stop(v);
    ASSERT_EQ(v->conditional_ok, 2);
    /* without --new: everything, and no conditional request */
}

TEST_TIMEOUT(news_damaged_state_is_reported_and_set_aside, 30)
{
    require_tool();
    make_tmpdir();
    srv *v = srv_start();
    char dir[128];
    snprintf(dir, sizeof dir, "%s/news", tmpdir);
    mkdir(dir, 0700);
    put_file(state_file(), "news-state 1\nsource http://x/\nseen zz\n");
    const char *argv[] = {"news", "--new", "--json", url(v, "/rss/after"), NULL};
    run *r = tool(argv);
    srv_stop(v);
    ASSERT_EQ(r->status, 0);
    ASSERT_EQ(count(r->out, "after item"), 3);
    char want[600];
    snprintf(want, sizeof want, "news: the state file %s is damaged (line 3: bad item key): "
             "moved to %s.bad, starting afresh\n", state_file(), state_file());
    ASSERT_STREQ(r->err, want);
    char bad[200];
    snprintf(bad, sizeof bad, "%s.bad", state_file());
    ASSERT_TRUE(strstr(slurp_file(bad), "seen zz") != NULL);
    const char *st = slurp_file(state_file());
    ASSERT_TRUE(strncmp(st, "news-state 1\n", 13) == 0);
    ASSERT_TRUE(strstr(st, "\nend\n") != NULL);
}

/* A reader that checks every version of the file it sees is whole. */
typedef struct watcher {
    volatile int stop;
    int reads, partial;
} watcher;

static void *watch_main(void *arg)
{
    watcher *w = arg;
    char buf[1 << 16];
    while (!w->stop) {
        int fd = open(state_file(), O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) {
            if (n == 0)
                w->partial++; /* an empty file is a partial one */
            continue;
        }
        buf[n] = 0;
        w->reads++;
        if (strncmp(buf, "news-state 1\n", 13) || n < 4 || strcmp(buf + n - 4, "end\n"))
            w->partial++;
    }
    return NULL;
}

TEST_TIMEOUT(news_concurrent_runs_keep_the_state_whole_and_merged, 60)
{
    require_tool();
    make_tmpdir();
    srv *v = srv_start();
    watcher w = {0};
    pthread_t th;
    pthread_create(&th, NULL, watch_main, &w);
    enum { N = 4 };
    static run rs[N];
    char *urls[N];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            char p[32];
            snprintf(p, sizeof p, "/rss/c%d", i);
            urls[i] = strdup(url(v, p));
            const char *argv[] = {"news", "--new", "--json", urls[i], NULL};
            start(&rs[i], argv);
        }
        for (int i = 0; i < N; i++) {
            finish(&rs[i]);
            ASSERT_EQ(rs[i].status, 0);
            /* the first round sees everything, the second nothing */
            ASSERT_EQ(count_lines(rs[i].out, rs[i].n_out), round ? 0 : 3);
        }
    }
    w.stop = 1;
    pthread_join(th, NULL);
    cio_test_note("%d reads of the state file during the runs, %d partial", w.reads, w.partial);
    ASSERT_EQ(w.partial, 0);
    /* every run's source is in the file (no run's save lost another's) */
    const char *st = slurp_file(state_file());
    for (int i = 0; i < N; i++) {
        char want[300];
        snprintf(want, sizeof want, "source %s\n", urls[i]);
        ASSERT_TRUE(strstr(st, want) != NULL);
    }
    srv_stop(v);
}

TEST_TIMEOUT(news_sigint_prints_partial_results_saves_state_exits_130, 30)
{
    require_tool();
    make_tmpdir();
    srv *v = srv_start();
    const char *argv[] = {"news", "--new", "--json", "--stream", url(v, "/rss/early"),
                          url(v, "/forever"), url(v, "/rss/soon"), NULL};
    run *r = malloc(sizeof *r);
    start(r, argv);
    pump(r, 6); /* two sources streamed, the third hangs */
    ASSERT_EQ(kill(r->pid, SIGINT), 0);
    finish(r);
    srv_stop(v);
    ASSERT_EQ(r->status, 130);
    ASSERT_EQ(count(r->out, "early item"), 3);
    ASSERT_EQ(count(r->out, "soon item"), 3);
    ASSERT_TRUE(strstr(r->out, "forever") == NULL); /* cancelled: not a failure */
    ASSERT_TRUE(strstr(r->err, "news: interrupted: 2 of 3 sources done\n") != NULL);
    const char *st = slurp_file(state_file());
    ASSERT_TRUE(st != NULL);
    char want[300];
    snprintf(want, sizeof want, "source %s\nseen ", url(v, "/rss/early"));
    ASSERT_TRUE(strstr(st, want) != NULL);
    ASSERT_TRUE(strstr(st, "/forever") == NULL);
    free(r);
}

TEST_TIMEOUT(news_interval_spaces_requests_to_one_host, 30)
{
    require_tool();
    srv *v = srv_start();
    /* four fetches of one host, --interval 150ms: the server sees them
     * 150 ms apart, even with slots for all of them. The first one opens
     * the connection (the server's accept adds its own delay to when it
     * sees that request); the three timed ones reuse it. (Less 10% for
     * the server's own delays in noting them on a loaded machine.) */
    const char *argv[] = {"news", "--json", "--per-host", "4", "--interval", "150ms",
                          url(v, "/rss/first"), url(v, "/other"), url(v, "/other"),
                          url(v, "/other"), NULL};
    run *r = tool(argv);
    srv_stop(v);
    ASSERT_EQ(r->status, 0);
    ASSERT_EQ(v->other_n, 3);
    for (int i = 1; i < 3; i++) {
        double gap = (double)(v->other_at[i] - v->other_at[i - 1]) / 1e9;
        cio_test_note("gap %d: %.3f s", i, gap);
        /* the server notes each request on a loaded machine's real clock:
         * a late note shortens the next gap, so only half the interval is
         * asserted (without --interval the gaps are ~0: all four at once) */
        ASSERT_TRUE(gap >= 0.075);
    }
}

TEST_TIMEOUT(news_demo_fetches_six_sources_concurrently, 30)
{
    require_tool();
    const char *argv[] = {"news", "--demo", "--demo-delay", "100ms", "--json", "-n", "1", NULL};
    run *r = tool(argv);
    ASSERT_EQ(r->status, 0);
    ASSERT_EQ(count_lines(r->out, r->n_out), 6); /* one item of each */
    ASSERT_TRUE(strstr(r->err, "fetched 6 sources in ") != NULL);
    /* One at a time is the sum of the fetches' own times: at least the six
     * delays, the slow source's trickle on top. */
    const char *one = strstr(r->err, " s (one at a time: ");
    ASSERT_TRUE(one != NULL);
    double sum = strtod(one + strlen(" s (one at a time: "), NULL);
    cio_test_note("one at a time: %.1f s", sum);
    ASSERT_TRUE(sum >= 0.6);
}

/* Run the tool with fd (1 or 2) on a pseudo-terminal, the other to
 * /dev/null, NO_COLOR set to no_color (NULL: unset). */
static void run_on_pty(const char *const *argv, const char *no_color, char *out, size_t cap,
                       int fd)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0)
        cio_test_skip("no pseudo-terminals here");
    char *name = ptsname(m);
    ASSERT_TRUE(name != NULL);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        int s = open(name, O_RDWR);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 1);
        dup2(null, 2);
        dup2(s, fd);
        dup2(null, 0);
        if (no_color)
            setenv("NO_COLOR", no_color, 1);
        else
            unsetenv("NO_COLOR");
        execv(NEWS_BIN, (char *const *)argv);
        _exit(127);
    }
    size_t n = 0;
    for (;;) {
        ssize_t k = read(m, out + n, cap - 1 - n);
        if (k <= 0)
            break; /* EIO once the child has closed the terminal */
        n += (size_t)k;
    }
    out[n] = 0;
    close(m);
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    cio_test_note("on the terminal:\n%s", out);
}

TEST_TIMEOUT(news_colour_and_progress_only_on_a_terminal, 30)
{
    require_tool();
    srv *v = srv_start();
    const char *argv[] = {"news", "-n", "1", url(v, "/rss/tty"), NULL};
    static char out[16384];
    run_on_pty(argv, NULL, out, sizeof out, 1);
    ASSERT_TRUE(strstr(out, "\033[1mFeed tty\033[0m") != NULL);
    run_on_pty(argv, "1", out, sizeof out, 1);
    ASSERT_TRUE(strstr(out, "Feed tty") != NULL);
    ASSERT_TRUE(strchr(out, '\033') == NULL);
    /* stderr on a terminal, a run over 200 ms: progress, erased before
     * the summary */
    const char *pargv[] = {"news", "--deadline", "1s", url(v, "/rss/tty"),
                           url(v, "/forever"), NULL};
    run_on_pty(pargv, NULL, out, sizeof out, 2);
    const char *prog = strstr(out, "\r\033[Knews: 1/2 sources, 3 items, 0 failed");
    ASSERT_TRUE(prog != NULL);
    const char *sum = strstr(out, "news: 2 sources in ");
    ASSERT_TRUE(sum != NULL && sum > prog);
    ASSERT_TRUE(strncmp(sum - 4, "\r\033[K", 4) == 0);
    /* never with --json */
    const char *jargv[] = {"news", "--json", "--deadline", "400ms", url(v, "/forever"), NULL};
    run_on_pty(jargv, NULL, out, sizeof out, 2);
    ASSERT_TRUE(strstr(out, "sources,") == NULL);
    srv_stop(v);
}

TEST_TIMEOUT(news_text_output_never_passes_control_bytes_to_the_terminal, 30)
{
    require_tool();
    srv *v = srv_start();
    const char *argv[] = {"news", url(v, "/evil.json"), NULL};
    run *r = tool(argv);
    srv_stop(v);
    ASSERT_EQ(r->status, 0);
    ASSERT_TRUE(strstr(r->out, "screen") != NULL);
    ASSERT_TRUE(strchr(r->out, '\033') == NULL);
    ASSERT_TRUE(strchr(r->out, '\a') == NULL);
}

TEST_TIMEOUT(news_timeout_does_not_count_the_wait_for_a_host_slot, 30)
{
    require_tool();
    srv *v = srv_start();
    /* one at a time to the host, each answer 200 ms late, -t 500ms: the
     * third waits 400 ms for its slot and still has its 500 ms */
    const char *argv[] = {"news", "--json", "--per-host", "1", "-t", "500ms", "-r", "0",
                          url(v, "/wait/200"), url(v, "/wait/201"), url(v, "/wait/202"),
                          NULL};
    run *r = tool(argv);
    ASSERT_EQ(r->status, 0);
    ASSERT_EQ(count(r->out, "waited item"), 9);
    /* and it does count once sent */
    const char *a2[] = {"news", "--json", "-t", "100ms", "-r", "0", url(v, "/wait/300"), NULL};
    r = tool(a2);
    srv_stop(v);
    ASSERT_EQ(r->status, 1);
    expect_error(r, url(v, "/wait/300"), "timeout");
}

TEST_TIMEOUT(news_low_fd_limit_lowers_the_cap_with_one_warning, 30)
{
    require_tool();
    if (cio_test_slow()) /* valgrind takes descriptors of the child's */
        cio_test_skip("the tool under valgrind or qemu: its own descriptors count");
    srv *v = srv_start();
    const char *argv[] = {"news", "--json", "-c", "1000", url(v, "/rss/few"), NULL};
    nofile_limit = 128;
    run *r = tool(argv);
    nofile_limit = 0;
    srv_stop(v);
    ASSERT_EQ(r->status, 0);
    ASSERT_STREQ(r->err, "news: warning: the open file limit is 128: -c lowered from 1000 "
                         "to 64\n");
    ASSERT_EQ(count(r->out, "few item"), 3);
}

TEST_TIMEOUT(news_second_sigint_exits_at_once, 30)
{
    require_tool();
    make_tmpdir();
    srv *v = srv_start();
    /* the test holds the state's lock: after the first SIGINT the tool
     * prints, then waits for the lock to save; the second ends it there */
    char dir[128], lockp[200];
    snprintf(dir, sizeof dir, "%s/news", tmpdir);
    mkdir(dir, 0700);
    snprintf(lockp, sizeof lockp, "%s.lock", state_file());
    int lfd = open(lockp, O_RDWR | O_CREAT, 0600);
    ASSERT_TRUE(lfd >= 0);
    ASSERT_EQ(flock(lfd, LOCK_EX), 0);
    const char *argv[] = {"news", "--new", "--json", "--stream", url(v, "/rss/once"),
                          url(v, "/forever"), NULL};
    run *r = malloc(sizeof *r);
    start(r, argv);
    pump(r, 3);
    ASSERT_EQ(kill(r->pid, SIGINT), 0);
    usleep(200 * 1000);
    ASSERT_EQ(waitpid(r->pid, NULL, WNOHANG), 0); /* still there: waiting for the lock */
    ASSERT_EQ(kill(r->pid, SIGINT), 0);
    finish(r);
    srv_stop(v);
    ASSERT_EQ(r->status, 130);
    ASSERT_EQ(count(r->out, "once item"), 3);
    ASSERT_EQ(access(state_file(), F_OK), -1); /* nothing half-saved */
    close(lfd);
    free(r);
}

TEST_TIMEOUT(news_new_keeps_no_validators_of_a_page_it_followed, 30)
{
    require_tool();
    make_tmpdir();
    srv *v = srv_start();
    /* the page has an ETag; its feed is what --new must keep reading:
     * a 304 for the page would hide the feed's new items */
    const char *argv[] = {"news", "--new", "--json", url(v, "/tagpage"), NULL};
    run *r = tool(argv);
    ASSERT_EQ(r->status, 0);
    ASSERT_EQ(count(r->out, "behind item"), 3);
    const char *st = slurp_file(state_file());
    ASSERT_TRUE(st != NULL);
    ASSERT_TRUE(strstr(st, "etag") == NULL);
    r = tool(argv); /* fetched again, parsed, nothing new */
    srv_stop(v);
    ASSERT_EQ(r->status, 0);
    ASSERT_EQ(r->n_out, 0);
}

#endif /* NEWS_BIN */

/* news's demo / bench HTTP server (tools/news/demo.c), over loopback: each
 * source's content type and body after the delay (on the virtual clock),
 * keep-alive and pipelining, 400 and friends on garbage, 404, a client
 * that resets mid-request or during the delay, stopping while answers wait,
 * and the generated bench feeds; every body parses with news's parser
 * (feed.h) as what it is meant to be. */
#ifdef CIO_HAVE_NEWS_CORE /* (tools/news is built: libxml2 and jansson found) */
#include "cio.h"
#include "demo.h"
#include "feed.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define DELAY (2 * CIO_SEC)

/* ---- a small HTTP/1.1 client for the tests -------------------------------- */

typedef struct resp {
    int status;
    char ctype[128];
    char etag[64];
    bool has_length;
    size_t length;
    bool close;    /* Connection: close */
    char *body;    /* malloc'd, NUL-terminated; NULL for HEAD / no body */
    int64_t first; /* loop time of the status line */
    int64_t done;  /* ... and of the body's last byte */
} resp;

static void resp_clear(resp *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

static cio_stream *connect_to(const news_demo *d)
{
    char port[16];
    snprintf(port, sizeof port, "%d", news_demo_port(d));
    cio_stream *s;
    ASSERT_EQ(cio_open_connection(&s, "127.0.0.1", port, NULL), 0);
    return s;
}

static void send_str(cio_stream *s, const char *text)
{
    ASSERT_EQ(cio_stream_write(s, text, strlen(text)), 0);
    ASSERT_EQ(cio_stream_drain(s), 0);
}

/* Read one answer (status line, headers, Content-Length body unless
 * head_only). Returns 0, or the stream's error / 0 at its end as -ENODATA. */
static int read_resp(cio_stream *s, resp *r, bool head_only)
{
    memset(r, 0, sizeof *r);
    char line[1024];
    ssize_t n = cio_stream_readline(s, line, sizeof line);
    if (n <= 0)
        return n == 0 ? -ENODATA : (int)n;
    r->first = cio_now();
    ASSERT_EQ(strncmp(line, "HTTP/1.1 ", 9), 0);
    r->status = atoi(line + 9);
    for (;;) {
        n = cio_stream_readline(s, line, sizeof line);
        ASSERT_GT(n, 1);
        ASSERT_EQ(line[n - 1], '\n');
        ASSERT_EQ(line[n - 2], '\r');
        line[n - 2] = '\0';
        if (!line[0])
            break;
        char *colon = strchr(line, ':');
        ASSERT_TRUE(colon != NULL);
        *colon = '\0';
        const char *v = colon + 1 + strspn(colon + 1, " ");
        if (strcasecmp(line, "Content-Type") == 0)
            snprintf(r->ctype, sizeof r->ctype, "%s", v);
        else if (strcasecmp(line, "ETag") == 0)
            snprintf(r->etag, sizeof r->etag, "%s", v);
        else if (strcasecmp(line, "Connection") == 0)
            r->close = strcasecmp(v, "close") == 0;
        else if (strcasecmp(line, "Content-Length") == 0) {
            ASSERT_FALSE(r->has_length); /* exactly one */
            r->has_length = true;
            r->length = strtoul(v, NULL, 10);
        }
    }
    if (!head_only && r->status != 304) {
        ASSERT_TRUE(r->has_length); /* every answer is counted */
        r->body = malloc(r->length + 1);
        ASSERT_TRUE(r->body != NULL);
        if (r->length)
            ASSERT_EQ(cio_stream_readexactly(s, r->body, r->length), (ssize_t)r->length);
        r->body[r->length] = '\0';
    }
    r->done = cio_now();
    return 0;
}

/* GET path on a new connection; the answer in *r; the connection closed. */
static void get(const news_demo *d, const char *path, resp *r)
{
    cio_stream *s = connect_to(d);
    char req[512];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n",
             path);
    send_str(s, req);
    ASSERT_EQ(read_resp(s, r, false), 0);
    cio_stream_close(s);
}

/* Send text as a request and expect status, then the connection's end. */
static void expect_refused(const news_demo *d, const char *text, int status)
{
    cio_stream *s = connect_to(d);
    send_str(s, text);
    resp r;
    ASSERT_EQ(read_resp(s, &r, false), 0);
    if (r.status != status)
        cio_test_fail(__FILE__, __LINE__, "request \"%.40s...\": status %d, wanted %d", text,
                      r.status, status);
    ASSERT_TRUE(r.close);
    char c;
    ASSERT_EQ(cio_stream_read(s, &c, 1), 0); /* and the server closed */
    resp_clear(&r);
    cio_stream_close(s);
}

static news_demo *start(int64_t delay, size_t n_feeds)
{
    news_demo_options o = {.delay = delay, .n_feeds = n_feeds};
    news_demo *d = NULL;
    ASSERT_EQ(news_demo_start(&d, &o), 0);
    ASSERT_TRUE(d != NULL);
    return d;
}

/* ---- the tests ------------------------------------------------------------ */

TASK_TEST_VIRTUAL(news_demo_serves_each_source_with_its_type_after_the_delay)
{
    news_demo *d = start(DELAY, 0);
    static const struct {
        const char *name, *ctype, *start, *has;
    } want[] = {
        {"rss", "application/rss+xml", "<?xml", "<rss version=\"2.0\""},
        {"atom", "application/atom+xml", "<?xml", "<feed xmlns=\"http://www.w3.org/2005/Atom\""},
        {"json", "application/feed+json", "{", "\"https://jsonfeed.org/version/1.1\""},
        {"html", "text/html", "<!DOCTYPE html>", "<link rel=\"alternate\" type=\"application/atom+xml\""},
        {"broken", "application/rss+xml", "<?xml", "&nbsp;"},
        {"slow", "application/rss+xml", "<?xml", "<content:encoded>"},
    };
    ASSERT_EQ(news_demo_count(d), 6);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "http://127.0.0.1:%d/", news_demo_port(d));
    for (size_t i = 0; i < 6; i++) {
        ASSERT_STREQ(news_demo_name(d, i), want[i].name);
        const char *url = news_demo_url(d, i);
        ASSERT_EQ(strncmp(url, prefix, strlen(prefix)), 0);
        resp r;
        int64_t t0 = cio_now();
        get(d, url + strlen(prefix) - 1, &r);
        ASSERT_EQ(r.status, 200);
        ASSERT_EQ(strncmp(r.ctype, want[i].ctype, strlen(want[i].ctype)), 0);
        ASSERT_TRUE(strstr(r.ctype, "charset=utf-8") != NULL);
        ASSERT_EQ(strncmp(r.body, want[i].start, strlen(want[i].start)), 0);
        ASSERT_TRUE(strstr(r.body, want[i].has) != NULL);
        ASSERT_EQ(strlen(r.body), r.length); /* no NUL inside, length exact */
        ASSERT_TRUE(r.etag[0] == '"');
        /* the answer starts exactly one delay after the request */
        ASSERT_EQ(r.first - t0, DELAY);
        if (strcmp(want[i].name, "slow") == 0) /* ... and the slow one trickles */
            ASSERT_EQ(r.done - t0, DELAY + 4 * (DELAY / 16));
        else
            ASSERT_EQ(r.done - t0, DELAY);
        resp_clear(&r);
    }
    ASSERT_TRUE(news_demo_url(d, 6) == NULL);
    ASSERT_TRUE(news_demo_name(d, 6) == NULL);
    news_demo_stop(d);
}

TASK_TEST_VIRTUAL(news_demo_html_page_names_a_feed_served_at_once)
{
    news_demo *d = start(DELAY, 0);
    resp r;
    get(d, "/radio/", &r);
    /* a relative href: against /radio/ it is /radio/feed.atom */
    ASSERT_TRUE(strstr(r.body, "rel=\"alternate\"") != NULL);
    ASSERT_TRUE(strstr(r.body, "href=\"feed.atom\"") != NULL);
    resp_clear(&r);
    int64_t t0 = cio_now();
    get(d, "/radio/feed.atom", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(cio_now() - t0, 0); /* part of the page's source: no second delay */
    ASSERT_EQ(strncmp(r.ctype, "application/atom+xml", 20), 0);
    ASSERT_TRUE(strstr(r.body, "<entry>") != NULL);
    resp_clear(&r);
    news_demo_stop(d);
}

TASK_TEST_VIRTUAL(news_demo_keeps_the_connection_alive_and_answers_pipelined_requests_in_order)
{
    news_demo *d = start(DELAY, 0);
    cio_stream *s = connect_to(d);
    int64_t t0 = cio_now();
    /* one after the other on the same connection */
    for (int k = 0; k < 3; k++) {
        send_str(s, "GET /atom.xml HTTP/1.1\r\nHost: x\r\n\r\n");
        resp r;
        ASSERT_EQ(read_resp(s, &r, false), 0);
        ASSERT_EQ(r.status, 200);
        ASSERT_FALSE(r.close);
        ASSERT_EQ(r.done - t0, (k + 1) * DELAY);
        resp_clear(&r);
    }
    /* three at once, in one write: answered in order, each after its delay;
     * a HEAD has the GET's length and no body */
    t0 = cio_now();
    send_str(s, "GET /rss.xml HTTP/1.1\r\nHost: x\r\n\r\n"
                "HEAD /feed.json HTTP/1.1\r\nHost: x\r\n\r\n"
                "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                "GET /feed.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    resp a, b, c, e;
    ASSERT_EQ(read_resp(s, &a, false), 0);
    ASSERT_EQ(read_resp(s, &b, true), 0);
    ASSERT_EQ(read_resp(s, &c, false), 0);
    ASSERT_EQ(read_resp(s, &e, false), 0);
    ASSERT_EQ(a.status, 200);
    ASSERT_TRUE(strstr(a.body, "<rss") != NULL);
    ASSERT_EQ(b.status, 200);
    ASSERT_EQ(b.length, e.length);
    ASSERT_EQ(c.status, 404);
    ASSERT_EQ(c.done - t0, 2 * DELAY); /* an error waits no delay of its own */
    ASSERT_EQ(e.status, 200);
    ASSERT_TRUE(e.close);
    ASSERT_EQ(e.body[0], '{');
    ASSERT_EQ(e.done - t0, 3 * DELAY);
    char ch;
    ASSERT_EQ(cio_stream_read(s, &ch, 1), 0); /* closed as asked */
    resp_clear(&a);
    resp_clear(&b);
    resp_clear(&c);
    resp_clear(&e);
    cio_stream_close(s);
    /* HTTP/1.0 closes unless asked, and keeps alive when asked */
    s = connect_to(d);
    send_str(s, "GET /rss.xml HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    ASSERT_EQ(read_resp(s, &a, false), 0);
    ASSERT_FALSE(a.close);
    send_str(s, "GET /rss.xml HTTP/1.0\r\n\r\n");
    ASSERT_EQ(read_resp(s, &b, false), 0);
    ASSERT_TRUE(b.close);
    ASSERT_EQ(cio_stream_read(s, &ch, 1), 0);
    resp_clear(&a);
    resp_clear(&b);
    cio_stream_close(s);
    news_demo_stop(d);
}

TASK_TEST_VIRTUAL(news_demo_answers_garbage_with_400_and_closes)
{
    news_demo *d = start(DELAY, 0);
    expect_refused(d, "hello there\r\n\r\n", 400);
    expect_refused(d, "\x16\x03\x01\x02\x01\x01\x01\x01\xfc\x03\x03\n", 400); /* TLS */
    expect_refused(d, "GET /rss.xml\r\n\r\n", 400);                            /* HTTP/0.9 */
    expect_refused(d, "GET  /rss.xml HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    expect_refused(d, "GET rss.xml HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    expect_refused(d, "GET /rss.xml HTTP/1.1\r\n\r\n", 400); /* no Host */
    expect_refused(d, "GET /rss.xml HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    expect_refused(d, "GET /rss.xml HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", 400);
    expect_refused(d, "GET /rss.xml HTTP/1.1\r\nHost : x\r\n\r\n", 400);
    expect_refused(d, "GET /rss.xml HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400);
    expect_refused(d, "GET /rss.xml HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", 400);
    expect_refused(d, "GET /rss.xml HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", 400);
    expect_refused(d, "GET /rss.xml HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                      "Content-Length: 2\r\n\r\nab", 400);
    expect_refused(d, "GET /rss.xml HTTP/2.0\r\nHost: x\r\n\r\n", 505);
    expect_refused(d, "POST /rss.xml HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "0\r\n\r\n", 501);
    expect_refused(d, "POST /rss.xml HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n", 413);
    /* a head over 8 KiB: 431; a request line over it: 414; a line of junk
     * with no end: 400 */
    size_t big = 10000;
    char *text = malloc(big + 64);
    ASSERT_TRUE(text != NULL);
    int n = snprintf(text, 64, "GET /rss.xml HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    memset(text + n, 'a', big);
    strcpy(text + n + big, "\r\n\r\n");
    expect_refused(d, text, 431);
    n = snprintf(text, 64, "GET /");
    memset(text + n, 'a', big);
    strcpy(text + n + big, " HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_refused(d, text, 414);
    memset(text, '~', big);
    text[big] = '\0';
    expect_refused(d, text, 400);
    free(text);
    /* the server is still there */
    resp r;
    get(d, "/rss.xml", &r);
    ASSERT_EQ(r.status, 200);
    resp_clear(&r);
    news_demo_stop(d);
}

TASK_TEST_VIRTUAL(news_demo_404s_unknown_paths_and_405s_other_methods)
{
    news_demo *d = start(DELAY, 0);
    static const char *const paths[] = {"/", "/rss", "/rss.xml/", "/feed/0", "/radio",
                                        "/../rss.xml", "/RSS.XML"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        resp r;
        int64_t t0 = cio_now();
        get(d, paths[i], &r);
        ASSERT_EQ(r.status, 404);
        ASSERT_EQ(cio_now() - t0, 0);
        ASSERT_EQ(strncmp(r.ctype, "text/plain", 10), 0);
        resp_clear(&r);
    }
    /* a query string does not change the resource; the absolute form works */
    resp r;
    get(d, "/rss.xml?utm_source=test", &r);
    ASSERT_EQ(r.status, 200);
    resp_clear(&r);
    get(d, "http://127.0.0.1/atom.xml", &r);
    ASSERT_EQ(r.status, 200);
    resp_clear(&r);
    /* bare LFs for line ends are tolerated (RFC 9112 2.2) */
    cio_stream *lf = connect_to(d);
    send_str(lf, "GET /json HTTP/1.1\nHost: x\n\nGET /feed.json HTTP/1.1\nHost: x\n\n");
    ASSERT_EQ(read_resp(lf, &r, false), 0);
    ASSERT_EQ(r.status, 404);
    resp_clear(&r);
    ASSERT_EQ(read_resp(lf, &r, false), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(r.body[0], '{');
    resp_clear(&r);
    cio_stream_close(lf);
    /* a body of a method we do not serve is read, the connection goes on */
    cio_stream *s = connect_to(d);
    send_str(s, "POST /rss.xml HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                "GET /rss.xml HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_EQ(read_resp(s, &r, false), 0);
    ASSERT_EQ(r.status, 405);
    resp_clear(&r);
    ASSERT_EQ(read_resp(s, &r, false), 0);
    ASSERT_EQ(r.status, 200);
    resp_clear(&r);
    cio_stream_close(s);
    news_demo_stop(d);
}

TASK_TEST_VIRTUAL(news_demo_answers_304_to_its_own_etag)
{
    news_demo *d = start(DELAY, 0);
    resp r;
    get(d, "/atom.xml", &r);
    char etag[64];
    snprintf(etag, sizeof etag, "%s", r.etag);
    resp_clear(&r);
    cio_stream *s = connect_to(d);
    char req[256];
    snprintf(req, sizeof req, "GET /atom.xml HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n",
             etag);
    send_str(s, req);
    ASSERT_EQ(read_resp(s, &r, false), 0);
    ASSERT_EQ(r.status, 304);
    ASSERT_STREQ(r.etag, etag);
    ASSERT_FALSE(r.has_length);
    resp_clear(&r);
    send_str(s, "GET /atom.xml HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"other\"\r\n\r\n");
    ASSERT_EQ(read_resp(s, &r, false), 0);
    ASSERT_EQ(r.status, 200);
    resp_clear(&r);
    cio_stream_close(s);
    news_demo_stop(d);
}

/* Close with SO_LINGER 0: the peer gets a reset, not a FIN. */
static void reset(cio_stream *s)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    ASSERT_EQ(setsockopt(cio_stream_fd(s), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    cio_stream_abort(s);
}

TASK_TEST_VIRTUAL(news_demo_survives_clients_that_reset_mid_request_and_mid_delay)
{
    news_demo *d = start(DELAY, 0);
    /* half a request line, half a header, a whole request then a reset
     * while the server waits out the delay, and one during the slow
     * source's trickle */
    static const char *const parts[] = {
        "GET /rss.xm",
        "GET /rss.xml HTTP/1.1\r\nHo",
        "GET /rss.xml HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /slow.xml HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    for (size_t i = 0; i < 4; i++) {
        cio_stream *s = connect_to(d);
        send_str(s, parts[i]);
        if (i == 3) {
            char line[64];
            ASSERT_GT(cio_stream_readline(s, line, sizeof line), 0); /* headers came */
        } else {
            cio_sleep(DELAY / 2);
        }
        reset(s);
        cio_sleep(DELAY); /* the server meets the reset */
    }
    /* and serves the next client as before */
    resp r;
    int64_t t0 = cio_now();
    get(d, "/json", &r); /* (not a path: 404 at once) */
    ASSERT_EQ(r.status, 404);
    resp_clear(&r);
    get(d, "/feed.json", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(cio_now() - t0, DELAY);
    resp_clear(&r);
    news_demo_stop(d);
}

TASK_TEST_VIRTUAL(news_demo_stop_ends_answers_waiting_out_the_delay)
{
    news_demo *d = start(CIO_MINUTE, 0);
    cio_stream *s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = connect_to(d);
        send_str(s[i], "GET /rss.xml HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    cio_sleep(CIO_SEC);
    int64_t t0 = cio_now();
    news_demo_stop(d); /* cancels the handlers asleep in their delay */
    ASSERT_LT(cio_now() - t0, CIO_SEC);
    for (int i = 0; i < 3; i++) {
        char c;
        ASSERT_LE(cio_stream_read(s[i], &c, 1), 0); /* closed, no answer */
        cio_stream_close(s[i]);
    }
}

TEST(news_demo_start_outside_a_task_is_eperm)
{
    news_demo *d = (news_demo *)1;
    news_demo_options o = {0};
    ASSERT_EQ(news_demo_start(&d, &o), -EPERM);
    ASSERT_TRUE(d == NULL);
    ASSERT_EQ(news_demo_start(NULL, &o), -EINVAL);
    news_demo_stop(NULL);
}

TASK_TEST_VIRTUAL(news_demo_generates_n_realistic_rss_feeds)
{
    enum { N = 5 };
    news_demo *d = start(50 * CIO_MSEC, N);
    ASSERT_EQ(news_demo_count(d), N);
    char want[64];
    for (size_t i = 0; i < N; i++) {
        snprintf(want, sizeof want, "http://127.0.0.1:%d/feed/%zu", news_demo_port(d), i);
        ASSERT_STREQ(news_demo_url(d, i), want);
        snprintf(want, sizeof want, "feed-%zu", i);
        ASSERT_STREQ(news_demo_name(d, i), want);
    }
    /* all at once: each after one delay, not one after the other */
    cio_stream *s[N];
    int64_t t0 = cio_now();
    for (size_t i = 0; i < N; i++) {
        s[i] = connect_to(d);
        char req[128];
        snprintf(req, sizeof req, "GET /feed/%zu HTTP/1.1\r\nHost: x\r\n\r\n", i);
        send_str(s[i], req);
    }
    char *first = NULL;
    for (size_t i = 0; i < N; i++) {
        resp r;
        ASSERT_EQ(read_resp(s[i], &r, false), 0);
        ASSERT_EQ(r.status, 200);
        ASSERT_EQ(r.done - t0, 50 * CIO_MSEC);
        ASSERT_EQ(strncmp(r.ctype, "application/rss+xml", 19), 0);
        ASSERT_GE(r.length, 10 * 1024);
        ASSERT_LE(r.length, 20 * 1024);
        size_t items = 0;
        for (const char *p = r.body; (p = strstr(p, "<item>")) != NULL; p++)
            items++;
        ASSERT_EQ(items, 20);
        ASSERT_TRUE(strstr(r.body, "</channel>\n</rss>\n") != NULL);
        ASSERT_TRUE(strstr(r.body, "<pubDate>") != NULL);
        if (i == 0) {
            first = r.body; /* the same feed again is the same bytes */
            r.body = NULL;
        }
        resp_clear(&r);
        cio_stream_close(s[i]);
    }
    resp r;
    get(d, "/feed/0", &r);
    ASSERT_STREQ(r.body, first);
    resp_clear(&r);
    free(first);
    static const char *const bad[] = {"/feed/5", "/feed/01", "/feed/", "/feed/-1",
                                      "/feed/1x", "/rss.xml", "/feed/99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        get(d, bad[i], &r);
        ASSERT_EQ(r.status, 404);
        resp_clear(&r);
    }
    ASSERT_GE(news_demo_requests(d), N + 1 + 7);
    news_demo_stop(d);
}

TASK_TEST_VIRTUAL(news_demo_closes_a_connection_idle_or_stalled_in_its_head)
{
    news_demo *d = start(DELAY, 0);
    cio_stream *idle = connect_to(d), *stalled = connect_to(d);
    send_str(stalled, "GET /rss.xml HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    int64_t t0 = cio_now();
    char c;
    ASSERT_EQ(cio_stream_read(idle, &c, 1), 0);
    ASSERT_EQ(cio_stream_read(stalled, &c, 1), 0);
    ASSERT_EQ(cio_now() - t0, 30 * CIO_SEC);
    cio_stream_close(idle);
    cio_stream_close(stalled);
    news_demo_stop(d);
}

/* Everything a connection can go through, then the loop ends: nothing of
 * the server (connections, buffers, URLs) is left allocated (under ASan;
 * valgrind's leak check elsewhere). */
static int leak_scenario(void *arg)
{
    (void)arg;
    news_demo *d = start(DELAY, 0);
    resp r;
    get(d, "/slow.xml", &r);
    resp_clear(&r);
    get(d, "/nope", &r);
    resp_clear(&r);
    expect_refused(d, "garbage\r\n\r\n", 400);
    cio_stream *s = connect_to(d);
    send_str(s, "GET /rss.xml HTTP/1.1\r\nHost: x\r\n\r\n");
    cio_sleep(DELAY / 2);
    reset(s);
    cio_stream *idle = connect_to(d), *waiting = connect_to(d);
    send_str(waiting, "GET /atom.xml HTTP/1.1\r\nHost: x\r\n\r\n");
    cio_sleep(DELAY / 2);
    news_demo_stop(d); /* with a connection idle and one in its delay */
    cio_stream_close(idle);
    cio_stream_close(waiting);
    d = start(DELAY, 3);
    get(d, "/feed/2", &r);
    resp_clear(&r);
    news_demo_stop(d);
    return 0;
}

TEST(news_demo_leaves_nothing_allocated)
{
    ASSERT_EQ(run_virtual(leak_scenario, NULL), 0);
    LEAK_CHECK_NOW();
}

/* Each demo source and generated feed, parsed by news's own parser: the
 * kind, the item count, dates, the discovered feed, the broken feed
 * recovered and flagged. */
TASK_TEST_VIRTUAL(news_demo_sources_parse_as_what_they_are)
{
    news_demo *d = start(0, 0);
    static const struct {
        const char *path;
        news_kind kind;
        size_t items;
        bool ill_formed;
        const char *title; /* of the feed */
        const char *first; /* the first item's title */
    } want[] = {
        {"/rss.xml", NEWS_KIND_RSS, 6, false, "The Tinkerer\u2019s Almanac",
         "Reviving a 1962 valve radio: the capacitors first"},
        {"/atom.xml", NEWS_KIND_ATOM, 4, false, "Night Shift Notes",
         "Geminids warm-up: 41 meteors before the clouds"},
        {"/feed.json", NEWS_KIND_JSON, 4, false, "Quiet Kitchen", "Winter dal with burnt garlic & lime"},
        {"/radio/", NEWS_KIND_HTML, 0, false, NULL, NULL},
        {"/radio/feed.atom", NEWS_KIND_ATOM, 3, false, "Lighthouse Radio: new shows",
         "Tide Tables #212: songs of the herring fleet"},
        {"/broken.xml", NEWS_KIND_RSS, 3, true, NULL, NULL},
        {"/slow.xml", NEWS_KIND_RSS, 4, false, "Deep Archive Weekly",
         "Reel 311: the flood of 1953, in the paper's own words"},
    };
    char url[128];
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        resp r;
        get(d, want[i].path, &r);
        ASSERT_EQ(r.status, 200);
        snprintf(url, sizeof url, "http://127.0.0.1:%d%s", news_demo_port(d), want[i].path);
        news_feed f;
        memset(&f, 0, sizeof f);
        int rc = news_parse_buffer(url, r.ctype, r.body, r.length, &f);
        if (rc < 0)
            cio_test_fail(__FILE__, __LINE__, "%s: %s", want[i].path, news_strerror(rc));
        cio_test_note("%s: kind %d, %zu items, ill-formed %d, title '%s'", want[i].path,
                      (int)f.kind, f.n_items, (int)f.ill_formed, f.title ? f.title : "(null)");
        ASSERT_EQ(f.kind, want[i].kind);
        ASSERT_EQ(f.n_items, want[i].items);
        ASSERT_EQ(f.ill_formed, want[i].ill_formed);
        if (want[i].title)
            ASSERT_STREQ(f.title, want[i].title);
        if (want[i].first)
            ASSERT_STREQ(f.items[0].title, want[i].first);
        for (size_t k = 0; k < f.n_items; k++) {
            ASSERT_TRUE(f.items[k].title != NULL);
            ASSERT_TRUE(f.items[k].link != NULL);
        }
        resp_clear(&r);
        if (want[i].kind == NEWS_KIND_HTML) {
            /* the relative href, resolved against the page */
            snprintf(url, sizeof url, "http://127.0.0.1:%d/radio/feed.atom", news_demo_port(d));
            ASSERT_STREQ(f.alternate, url);
            ASSERT_TRUE(strstr(f.title, "Lighthouse Radio") != NULL);
        }
        if (want[i].ill_formed) {
            /* recovered: the items, their permalinks, the undeclared &nbsp; */
            ASSERT_TRUE(strstr(f.items[0].title, "late on Friday") != NULL);
            ASSERT_STREQ(f.items[0].link, "https://cornercafe.example/notices/open-late");
        }
        if (want[i].kind == NEWS_KIND_ATOM && strcmp(want[i].path, "/atom.xml") == 0) {
            /* relative links against xml:base; the last entry has no date */
            ASSERT_STREQ(f.items[0].link, "https://nightshift.example/log/2026/12/geminids-warmup");
            ASSERT_EQ(f.items[3].published, NEWS_NO_DATE);
        }
        news_feed_clear(&f);
    }
    news_demo_stop(d);

    /* the bench's feeds: 20 dated, linked items each */
    d = start(0, 3);
    for (size_t i = 0; i < 3; i++) {
        resp r;
        snprintf(url, sizeof url, "/feed/%zu", i);
        get(d, url, &r);
        news_feed f;
        memset(&f, 0, sizeof f);
        ASSERT_EQ(news_parse_buffer(news_demo_url(d, i), r.ctype, r.body, r.length, &f), 0);
        ASSERT_EQ(f.kind, NEWS_KIND_RSS);
        ASSERT_FALSE(f.ill_formed);
        ASSERT_EQ(f.n_items, 20);
        for (size_t k = 0; k < f.n_items; k++) {
            ASSERT_NE(f.items[k].published, NEWS_NO_DATE);
            ASSERT_TRUE(f.items[k].link != NULL);
            ASSERT_TRUE(f.items[k].content != NULL);
            if (k > 0)
                ASSERT_LT(f.items[k].published, f.items[k - 1].published);
        }
        news_feed_clear(&f);
        resp_clear(&r);
    }
    news_demo_stop(d);
}

#endif /* CIO_HAVE_NEWS_CORE */

/* libcio_http (include/cio/http.h) against the local test server
 * (tests/http_server.h), loopback only. */
#include "cio.h"
#include "cio/http.h"
#include "cio_internal.h"
#include "harness.h"
#include "cio/testing.h"
#include "http_server.h"
#include "util.h"

#include <dirent.h>
#include <malloc.h>
#include <netdb.h>
#include <time.h>
#include <sys/resource.h>
#include <errno.h>

static http_server hs;
static cio_http_client *cl;

static void url(char *out, size_t n, const char *path)
{
    snprintf(out, n, "%s%s", hs.base, path);
}

/* GET path; returns send's code and *out. */
static int get(const char *path, cio_http_response **out)
{
    char u[256];
    url(u, sizeof u, path);
    cio_http_request req = {.url = u};
    return cio_http_send(cl, &req, out);
}

static void setup(const cio_http_client_options *o)
{
    ASSERT_EQ(http_server_start(&hs), 0);
    ASSERT_EQ(cio_http_client_new(&cl, o), 0);
}

static void teardown(void)
{
    ASSERT_EQ(cio_http_client_active(cl), 0);
    ASSERT_EQ(cio_http_client_free(cl), 0);
    /* every socket libcurl had is unwatched: no cio_poll left behind */
    ASSERT_TRUE(cio_loop_current()->polls == NULL);
    ASSERT_EQ(http_server_stop(&hs), 0);
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int basics_main(void *arg)
{
    (void)arg;
    setup(NULL);
    cio_http_response *r;
    /* Content-Length */
    ASSERT_EQ(get("/ok", &r), 0);
    ASSERT_EQ(cio_http_status(r), 200);
    ASSERT_EQ(cio_http_version(r), 11);
    ASSERT_STREQ(cio_http_header(r, "content-type", 0), "text/plain");
    ASSERT_STREQ(cio_http_header(r, "CONTENT-LENGTH", 0), "5");
    char *body;
    ASSERT_EQ(cio_http_read_all(r, 0, &body), 5);
    ASSERT_STREQ(body, "hello");
    free(body);
    char c;
    ASSERT_EQ(cio_http_read(r, &c, 1), 0); /* the end, again */
    cio_http_timings t;
    ASSERT_EQ(cio_http_timings_get(r, &t), 0);
    ASSERT_GT(t.total, 0);
    ASSERT_LE(t.first_byte, t.total);
    cio_http_response_free(r);
    /* chunked */
    ASSERT_EQ(get("/chunked", &r), 0);
    ASSERT_EQ(cio_http_read_all(r, 0, &body), 11);
    ASSERT_STREQ(body, "hello world");
    free(body);
    cio_http_response_free(r);
    /* repeated headers, in order */
    ASSERT_EQ(get("/headers", &r), 0);
    ASSERT_STREQ(cio_http_header(r, "set-cookie", 0), "a=1");
    ASSERT_STREQ(cio_http_header(r, "Set-Cookie", 1), "b=2");
    ASSERT_TRUE(cio_http_header(r, "set-cookie", 2) == NULL);
    ASSERT_STREQ(cio_http_header(r, "x-mixed-case", 0), "yes");
    const char *name, *value;
    ASSERT_EQ(cio_http_header_at(r, 0, &name, &value), 0);
    ASSERT_STREQ(name, "Content-Length");
    ASSERT_EQ(cio_http_header_at(r, cio_http_header_count(r), &name, &value), -ERANGE);
    cio_http_response_free(r); /* body unread: the transfer is dropped */
    /* 404 and 500 are responses */
    ASSERT_EQ(get("/status/404", &r), 0);
    ASSERT_EQ(cio_http_status(r), 404);
    ASSERT_EQ(cio_http_read_all(r, 0, &body), 10);
    ASSERT_STREQ(body, "status 404");
    free(body);
    cio_http_response_free(r);
    ASSERT_EQ(get("/status/500", &r), 0);
    ASSERT_EQ(cio_http_status(r), 500);
    cio_http_response_free(r);
    /* keep-alive: all of that on few connections */
    ASSERT_LE(hs.connections, 3);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_get_content_length_chunked_headers_and_error_statuses, 20)
{
    ASSERT_EQ(cio_run(basics_main, NULL), 0);
}

static int gzip_main(void *arg)
{
    (void)arg;
    setup(NULL);
    char u[256];
    url(u, sizeof u, "/gzip");
    cio_http_request req = {.url = u, .accept_encoding = ""};
    cio_http_response *r;
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    ASSERT_STREQ(cio_http_header(r, "content-encoding", 0), "gzip");
    char *body;
    ASSERT_EQ(cio_http_read_all(r, 0, &body), 10);
    ASSERT_STREQ(body, "hello gzip");
    free(body);
    cio_http_response_free(r);
    /* The decoded size is capped (max_body counts decoded bytes). */
    req.max_body = 5;
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    ASSERT_EQ(cio_http_read_all(r, 0, &body), CIO_EHTTP_BODY_TOO_LARGE);
    ASSERT_TRUE(body == NULL);
    cio_http_response_free(r);
    /* read_all's own limit */
    req.max_body = 0;
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    ASSERT_EQ(cio_http_read_all(r, 4, &body), CIO_EHTTP_BODY_TOO_LARGE);
    cio_http_response_free(r);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_gzip_is_decoded_and_the_decoded_size_capped, 20)
{
    ASSERT_EQ(cio_run(gzip_main, NULL), 0);
}

static int redirect_main(void *arg)
{
    (void)arg;
    cio_http_client_options o = {.max_redirects = 5};
    setup(&o);
    cio_http_response *r;
    ASSERT_EQ(get("/redirect/3", &r), 0);
    ASSERT_EQ(cio_http_status(r), 200);
    char want[256];
    url(want, sizeof want, "/ok");
    ASSERT_STREQ(cio_http_effective_url(r), want);
    ASSERT_STREQ(cio_http_header(r, "content-length", 0), "5"); /* the final one's */
    ASSERT_TRUE(cio_http_header(r, "location", 0) == NULL);
    cio_http_timings t;
    cio_http_timings_get(r, &t);
    ASSERT_EQ(t.redirects, 4);
    char *body;
    ASSERT_EQ(cio_http_read_all(r, 0, &body), 5);
    free(body);
    cio_http_response_free(r);
    /* a loop */
    ASSERT_EQ(get("/loop", &r), CIO_EHTTP_REDIRECTS);
    ASSERT_TRUE(r == NULL);
    ASSERT_TRUE(strlen(cio_http_client_error(cl)) > 0);
    cio_test_note("loop: %s", cio_http_client_error(cl));
    ASSERT_STREQ(cio_strerror(CIO_EHTTP_REDIRECTS), "HTTP: too many redirects");
    /* not followed */
    url(want, sizeof want, "/redirect/1");
    cio_http_request req = {.url = want, .no_redirects = true};
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    ASSERT_EQ(cio_http_status(r), 302);
    ASSERT_STREQ(cio_http_header(r, "location", 0), "/redirect/0");
    cio_http_response_free(r);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_redirects_followed_capped_and_not_followed_on_request, 20)
{
    ASSERT_EQ(cio_run(redirect_main, NULL), 0);
}

static int errors_main(void *arg)
{
    (void)arg;
    setup(NULL);
    cio_http_response *r;
    /* truncated: Content-Length 100, 10 bytes, clean close */
    ASSERT_EQ(get("/truncated", &r), 0);
    ASSERT_EQ(cio_http_status(r), 200);
    char *body;
    ASSERT_EQ(cio_http_read_all(r, 0, &body), CIO_EHTTP_TRUNCATED);
    cio_test_note("truncated: %s", cio_http_response_error(r));
    cio_http_response_free(r);
    /* reset mid-body */
    ASSERT_EQ(get("/reset", &r), 0);
    ssize_t n = cio_http_read_all(r, 0, &body);
    ASSERT_TRUE(n == CIO_EHTTP_CONNECTION || n == CIO_EHTTP_TRUNCATED);
    cio_http_response_free(r);
    /* not HTTP */
    ASSERT_EQ(get("/garbage", &r), CIO_EHTTP_PROTOCOL);
    cio_test_note("garbage: %s", cio_http_client_error(cl));
    /* connection refused: a loopback port nobody listens on */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t len = sizeof sa;
    ASSERT_EQ(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    ASSERT_EQ(getsockname(l, (struct sockaddr *)&sa, &len), 0);
    close(l);
    char u[128];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", ntohs(sa.sin_port));
    cio_http_request req = {.url = u};
    ASSERT_EQ(cio_http_send(cl, &req, &r), CIO_EHTTP_CONNECT);
    /* bad URL */
    req.url = "gopher://127.0.0.1/";
    ASSERT_EQ(cio_http_send(cl, &req, &r), CIO_EHTTP_URL);
    req.url = NULL;
    ASSERT_EQ(cio_http_send(cl, &req, &r), -EINVAL);
    /* the pool still works */
    ASSERT_EQ(get("/ok", &r), 0);
    ASSERT_EQ(cio_http_read_all(r, 0, &body), 5);
    free(body);
    cio_http_response_free(r);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_truncated_reset_garbage_refused_and_bad_url_are_errors, 20)
{
    ASSERT_EQ(cio_run(errors_main, NULL), 0);
}

static int deadline_main(void *arg)
{
    (void)arg;
    setup(NULL);
    int fds0 = count_fds();
    cio_http_response *r;
    /* slow first byte: the scope's deadline ends send, the transfer goes */
    cio_scope s;
    cio_timeout_enter(&s, 1 * CIO_SEC);
    ASSERT_EQ(get("/slow", &r), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_EQ(cio_http_client_active(cl), 0);
    /* stall mid-body: the deadline ends the read */
    ASSERT_EQ(get("/stall", &r), 0);
    char buf[64];
    ASSERT_EQ(cio_http_read(r, buf, sizeof buf), 10);
    cio_timeout_enter(&s, 1 * CIO_SEC);
    ASSERT_EQ(cio_http_read(r, buf, sizeof buf), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_EQ(cio_http_read(r, buf, sizeof buf), -ETIMEDOUT); /* stays */
    ASSERT_EQ(cio_http_client_active(cl), 0);
    cio_http_response_free(r);
    /* the pool is usable */
    ASSERT_EQ(get("/ok", &r), 0);
    char *body;
    ASSERT_EQ(cio_http_read_all(r, 0, &body), 5);
    free(body);
    cio_http_response_free(r);
    teardown();
    /* (the server's sockets are gone too) */
    ASSERT_LE(count_fds(), fds0);
    return 0;
}

TEST_TIMEOUT(http_deadline_on_slow_first_byte_and_on_a_stalled_body, 20)
{
    ASSERT_EQ(run_virtual(deadline_main, NULL), 0);
}

static int big_main(void *arg)
{
    (void)arg;
    setup(NULL);
    char u[256];
    const size_t total = 8u << 20;
    snprintf(u, sizeof u, "%s/big/%zu", hs.base, total);
    cio_http_request req = {.url = u, .buffer_size = 32 * 1024};
    cio_http_response *r;
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    size_t got = 0, peak = 0;
    char buf[4096];
    ssize_t n;
    while ((n = cio_http_read(r, buf, sizeof buf)) > 0) {
        if (cio_http_buffer_capacity(r) > peak)
            peak = cio_http_buffer_capacity(r);
        ASSERT_LE(cio_http_buffered(r), 32 * 1024);
        for (ssize_t i = 0; i < n; i++)
            ASSERT_EQ(buf[i], (char)('a' + (got + (size_t)i) % 26));
        got += (size_t)n;
        if (got % (256 * 1024) < sizeof buf)
            ASSERT_EQ(cio_sleep(CIO_MSEC), 0); /* a slow reader */
    }
    ASSERT_EQ(n, 0);
    ASSERT_EQ(got, total);
    cio_test_note("8 MiB read through a buffer of at most %zu bytes", peak);
    ASSERT_EQ(peak, 32 * 1024); /* bounded: the transfer was paused */
    cio_http_response_free(r);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_large_body_read_slowly_in_a_bounded_buffer, 60)
{
    ASSERT_EQ(cio_run(big_main, NULL), 0);
}

typedef struct one {
    int status;
} one;

static int one_get(void *arg)
{
    one *o = arg;
    cio_http_response *r;
    int rc = get("/hold", &r);
    if (rc)
        return rc;
    char *body;
    ssize_t n = cio_http_read_all(r, 0, &body);
    o->status = cio_http_status(r);
    cio_http_response_free(r);
    if (n < 0)
        return (int)n;
    free(body);
    return 0;
}

static int concurrent_main(void *arg)
{
    (void)arg;
    /* a Unix socket: the server's counts are ours alone */
    char path[64];
    snprintf(path, sizeof path, "/tmp/cio-http-test-%d.sock", (int)getpid());
    unlink(path);
    cio_http_client_options o = {.max_per_host = 4, .unix_socket = path};
    ASSERT_EQ(http_server_start_unix(&hs, path), 0);
    ASSERT_EQ(cio_http_client_new(&cl, &o), 0);
    enum { N = 1000 };
    static one res[N];
    cio_task *t[N];
    for (int i = 0; i < N; i++)
        t[i] = spawn(one_get, &res[i], "get");
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(join_release(t[i]), 0);
        ASSERT_EQ(res[i].status, 200);
    }
    cio_test_note("max concurrent at the server: %d, connections %d", hs.max_active,
                  hs.connections);
    ASSERT_LE(hs.max_active, 4);
    ASSERT_GE(hs.max_active, 2);
    ASSERT_LE(hs.connections, 4);
    teardown();
    unlink(path);
    return 0;
}

TEST_TIMEOUT(http_many_concurrent_requests_respect_the_per_host_cap, 30)
{
    ASSERT_EQ(cio_run(concurrent_main, NULL), 0);
}

/* Cancel at each await of send + read, by a deadline at 0..K yields. */
static int cancel_main(void *arg)
{
    (void)arg;
    setup(NULL);
    /* one request first so that fds of the pool, the server and the
     * client's resolver are all opened */
    cio_http_response *r;
    char *body;
    ASSERT_EQ(get("/ok", &r), 0);
    ASSERT_EQ(cio_http_read_all(r, 0, &body), 5);
    free(body);
    cio_http_response_free(r);
    int cancelled = 0;
    for (int k = 0; k < 40; k++) {
        cio_scope s;
        cio_scope_enter(&s);
        cio_task *self = NULL;
        (void)self;
        /* cancel after k yields of a helper */
        int rc = 0;
        char u[256];
        snprintf(u, sizeof u, "%s/big/200000", hs.base);
        cio_http_request req = {.url = u, .buffer_size = 16384};
        rc = cio_http_send(cl, &req, &r);
        int steps = 0;
        if (rc == 0) {
            char buf[1000];
            ssize_t n;
            while ((n = cio_http_read(r, buf, sizeof buf)) > 0)
                if (++steps == k) {
                    cio_scope_cancel(&s);
                }
            rc = (int)n;
            cio_http_response_free(r);
        }
        cio_scope_exit(&s);
        if (rc == -ECANCELED)
            cancelled++;
        else
            ASSERT_EQ(rc, 0);
        ASSERT_EQ(cio_http_client_active(cl), 0);
    }
    ASSERT_GT(cancelled, 30);
    /* the pool is usable */
    ASSERT_EQ(get("/ok", &r), 0);
    ASSERT_EQ(cio_http_read_all(r, 0, &body), 5);
    free(body);
    cio_http_response_free(r);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_cancel_mid_body_removes_the_transfer_and_keeps_the_pool, 30)
{
    ASSERT_EQ(cio_run(cancel_main, NULL), 0);
}

typedef struct canceller {
    cio_scope *scope;
    int yields;
} canceller;

static int cancel_after(void *arg)
{
    canceller *c = arg;
    for (int i = 0; i < c->yields; i++)
        if (cio_yield() < 0)
            return 0;
    cio_scope_cancel(c->scope);
    return 0;
}

/* One request (send + read to the end) cancelled from another task after
 * `yields` of its turns: returns send's / read's code. */
static int cancelled_get(int yields, const char *path)
{
    cio_scope s;
    cio_scope_enter(&s);
    canceller c = {.scope = &s, .yields = yields};
    cio_task *t = spawn(cancel_after, &c, "canceller");
    cio_http_response *r;
    char u[256];
    url(u, sizeof u, path);
    cio_http_request req = {.url = u, .buffer_size = 16384};
    int rc = cio_http_send(cl, &req, &r);
    if (rc == 0) {
        char buf[512];
        ssize_t n;
        while ((n = cio_http_read(r, buf, sizeof buf)) > 0)
            ;
        rc = (int)n;
        cio_http_response_free(r);
    }
    cio_scope_exit(&s);
    cio_task_cancel(t);
    join_release(t);
    return rc;
}

/* Heap bytes in use (glibc), or -1 where the allocator is not glibc's
 * own (ASan, valgrind): there the sanitizer's leak check stands in. */
static long heap_in_use(void)
{
#if defined(CIO_TEST__ASAN) || !defined(__GLIBC__) || !__GLIBC_PREREQ(2, 33)
    return -1;
#else
    if (cio_test_slow())
        return -1; /* valgrind replaces malloc (mallinfo2 says nothing) */
    struct mallinfo2 mi = mallinfo2();
    return (long)mi.uordblks;
#endif
}

/* Requests cancelled after 0, 1, 2, ... turns until 3 of them get to the
 * end: returns how many were cancelled. */
static int cancel_sweep(void)
{
    int cancelled = 0, done = 0;
    for (int k = 0; k < 2000 && done < 3; k++) {
        int rc = cancelled_get(k, "/big/1000000");
        if (rc == 0)
            done++;
        else {
            ASSERT_EQ(rc, -ECANCELED);
            cancelled++;
        }
        ASSERT_EQ(cio_http_client_active(cl), 0);
    }
    ASSERT_EQ(done, 3);
    return cancelled;
}

static int every_await_main(void *arg)
{
    (void)arg;
    setup(NULL);
    /* Warm-up: a whole sweep, so that libcurl's pool and caches, the test
     * server's and the loop's own tables reach their steady size (they
     * grow over the first sweep as each await is met for the first time,
     * then stay: measured). */
    cancel_sweep();
    cancel_sweep();
    int base = count_fds();
    long heap0 = heap_in_use();
    bool counting = cio_alloc_inject_available(NULL);
    int64_t blocks0 = cio_alloc_live();
    int cancelled = 0;
    for (int i = 0; i < 4; i++) {
        int n = cancel_sweep();
        ASSERT_GT(n, 10);
        cancelled += n;
    }
    cio_test_note("%d cancelled at successive awaits (4 sweeps, each ending with 3 done)",
                  cancelled);
    /* fds back to baseline: cancelled transfers' sockets were closed */
    ASSERT_LE(count_fds(), base);
    /* and memory: what each cancelled transfer had (easy handle, 16 KiB
     * buffer, headers, its connection: kilobytes) was freed. Where
     * libcio_testing counts allocations, exactly: as many blocks live as
     * after the warm-up. The heap's bytes still creep up, in steps that
     * level off, as buffers that are kept grow (caches: measured over 25
     * sweeps, with the block count constant all along): about 2 KiB over
     * these sweeps in FIFO order, up to 5 KiB under seeded scheduling
     * (CIO_SEED=1 levels off at +4.8 KiB after 8 sweeps), so the bound is
     * 8 KiB over ~140 requests: below one transfer's 16 KiB buffer. */
    long heap1 = heap_in_use();
    if (counting) {
        cio_test_note("live blocks: %lld after the warm-up, %lld after",
                      (long long)blocks0, (long long)cio_alloc_live());
        ASSERT_EQ(cio_alloc_live(), blocks0);
    }
    if (heap0 >= 0) {
        cio_test_note("heap in use: %ld bytes after the warm-up, %ld after %d more requests",
                      heap0, heap1, cancelled + 12);
        ASSERT_LE(heap1, heap0 + 8192);
    } else
        cio_test_note("heap not measured: the allocator is replaced (ASan/valgrind)");
    teardown();
    LEAK_CHECK_NOW();
    return 0;
}

TEST_TIMEOUT(http_cancel_at_every_await_of_send_and_read_leaves_no_transfer_or_fd, 60)
{
    ASSERT_EQ(cio_run(every_await_main, NULL), 0);
}

static int conditional_main(void *arg)
{
    (void)arg;
    setup(NULL);
    cio_http_response *r;
    char u[256];
    url(u, sizeof u, "/etag");
    ASSERT_EQ(get("/etag", &r), 0);
    ASSERT_EQ(cio_http_status(r), 200);
    char *etag = strdup(cio_http_header(r, "etag", 0));
    char *lm = strdup(cio_http_header(r, "last-modified", 0));
    ASSERT_STREQ(etag, "\"v1\"");
    cio_http_response_free(r);
    /* echoed back exactly: 304, no body */
    cio_http_request req = {.url = u, .etag = etag};
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    ASSERT_EQ(cio_http_status(r), 304);
    char *body;
    ASSERT_EQ(cio_http_read_all(r, 0, &body), 0);
    free(body);
    cio_http_response_free(r);
    req = (cio_http_request){.url = u, .last_modified = lm};
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    ASSERT_EQ(cio_http_status(r), 304);
    cio_http_response_free(r);
    free(etag);
    free(lm);
    /* 429 with Retry-After in seconds, and as a date */
    ASSERT_EQ(get("/retry/120", &r), 0);
    ASSERT_EQ(cio_http_status(r), 429);
    int64_t d;
    ASSERT_EQ(cio_http_retry_after(r, &d), 0);
    ASSERT_EQ(d, 120 * CIO_SEC);
    cio_http_response_free(r);
    ASSERT_EQ(get("/retry/Wed,%2021%20Oct%202015%2007:28:00%20GMT", &r), 0);
    ASSERT_EQ(cio_http_retry_after(r, &d), 0);
    ASSERT_EQ(d, 0); /* in the past */
    cio_http_response_free(r);
    ASSERT_EQ(get("/ok", &r), 0);
    ASSERT_EQ(cio_http_retry_after(r, &d), -ENOENT);
    cio_http_response_free(r);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_conditional_get_echoes_validators_and_retry_after_is_parsed, 20)
{
    ASSERT_EQ(cio_run(conditional_main, NULL), 0);
}

TEST(http_parse_retry_after_seconds_dates_and_garbage)
{
    int64_t d;
    ASSERT_EQ(cio_http_parse_retry_after("0", 0, &d), 0);
    ASSERT_EQ(d, 0);
    ASSERT_EQ(cio_http_parse_retry_after(" 30 ", 0, &d), 0);
    ASSERT_EQ(d, 30 * CIO_SEC);
    /* 1445412480 is Wed, 21 Oct 2015 07:28:00 GMT */
    ASSERT_EQ(cio_http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 - 90, &d), 0);
    ASSERT_EQ(d, 90 * CIO_SEC);
    ASSERT_EQ(cio_http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 + 5, &d), 0);
    ASSERT_EQ(d, 0);
    ASSERT_EQ(cio_http_parse_retry_after("soon", 0, &d), -EINVAL);
    ASSERT_EQ(cio_http_parse_retry_after("12abc", 0, &d), -EINVAL);
    ASSERT_EQ(cio_http_parse_retry_after("", 0, &d), -EINVAL);
}

/* Request timeout on the loop's (virtual) clock: counted from the request
 * sent, not while queued for the one connection the host cap allows. */
static cio_http_request queued_req;
static int queued_result;

static int queued_get(void *arg)
{
    (void)arg;
    cio_http_response *r;
    int rc = cio_http_send(cl, &queued_req, &r);
    if (rc) {
        queued_result = rc;
        return 0;
    }
    char *body;
    ssize_t n = cio_http_read_all(r, 0, &body);
    queued_result = n < 0 ? (int)n : cio_http_status(r);
    if (n >= 0)
        free(body);
    cio_http_response_free(r);
    return 0;
}

static int timeout_main(void *arg)
{
    (void)arg;
    cio_http_client_options o = {.max_per_host = 1};
    setup(&o);
    char u[256];
    url(u, sizeof u, "/stall");
    cio_http_request req = {.url = u, .timeout = 2 * CIO_SEC};
    cio_http_response *r;
    int64_t t0 = cio_now();
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    char buf[64];
    ASSERT_EQ(cio_http_read(r, buf, sizeof buf), 10);
    ASSERT_EQ(cio_http_read(r, buf, sizeof buf), CIO_EHTTP_TIMEOUT);
    ASSERT_GE(cio_now() - t0, 2 * CIO_SEC);
    ASSERT_LT(cio_now() - t0, 3 * CIO_SEC);
    cio_test_note("%s", cio_http_response_error(r));
    ASSERT_EQ(cio_http_client_active(cl), 0);
    cio_http_response_free(r);
    /* The only connection is held by a stalled transfer for 5 s; a request
     * with a 1 s timeout queued behind it still succeeds. */
    cio_http_response *held;
    ASSERT_EQ(get("/stall", &held), 0);
    char u2[256];
    url(u2, sizeof u2, "/ok");
    queued_req = (cio_http_request){.url = u2, .timeout = 1 * CIO_SEC};
    cio_task *t = spawn(queued_get, NULL, "queued");
    ASSERT_EQ(cio_sleep(5 * CIO_SEC), 0);
    ASSERT_EQ(queued_result, 0); /* still waiting for the connection */
    ASSERT_EQ(cio_http_client_active(cl), 2);
    cio_http_response_free(held);
    ASSERT_EQ(join_release(t), 0);
    ASSERT_EQ(queued_result, 200);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_request_timeout_counts_from_sending_not_while_queued_for_a_slot, 30)
{
    ASSERT_EQ(run_virtual(timeout_main, NULL), 0);
}

/* The idle timeout on the loop's (virtual) clock: a body trickling one
 * byte per 100 ms outlives an idle timeout of 1 s but not a total timeout
 * of 2 s; a stall mid-body fails the idle timeout exactly 1 s after the
 * last byte, a slow first byte 1 s after sending. */
static int idle_main(void *arg)
{
    (void)arg;
    setup(NULL);
    char u[256];
    url(u, sizeof u, "/trickle/30");
    cio_http_request req = {.url = u, .idle_timeout = 1 * CIO_SEC};
    cio_http_response *r;
    int64_t t0 = cio_now();
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    char *body;
    ASSERT_EQ(cio_http_read_all(r, 0, &body), 30);
    ASSERT_EQ(memcmp(body, "abcdefghijklmnopqrstuvwxyzabcd", 30), 0);
    free(body);
    ASSERT_GE(cio_now() - t0, 3 * CIO_SEC);
    cio_http_response_free(r);
    /* the same trickle, a total timeout of 2 s: fails, and says which */
    req = (cio_http_request){.url = u, .idle_timeout = 1 * CIO_SEC, .timeout = 2 * CIO_SEC};
    t0 = cio_now();
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    ASSERT_EQ(cio_http_read_all(r, 0, &body), CIO_EHTTP_TIMEOUT);
    ASSERT_EQ(cio_now() - t0, 2 * CIO_SEC);
    ASSERT_TRUE(strstr(cio_http_response_error(r), "within 2000 ms") != NULL);
    cio_http_response_free(r);
    /* a stall mid-body: 10 bytes at once, then nothing */
    url(u, sizeof u, "/stall");
    req = (cio_http_request){.url = u, .idle_timeout = 1 * CIO_SEC, .timeout = 5 * CIO_SEC};
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    char buf[64];
    ASSERT_EQ(cio_http_read(r, buf, sizeof buf), 10);
    t0 = cio_now();
    ASSERT_EQ(cio_http_read(r, buf, sizeof buf), CIO_EHTTP_TIMEOUT);
    ASSERT_EQ(cio_now() - t0, 1 * CIO_SEC); /* the bytes came at t0 (virtual) */
    cio_test_note("%s", cio_http_response_error(r));
    ASSERT_TRUE(strstr(cio_http_response_error(r), "idle timeout") != NULL);
    ASSERT_EQ(cio_http_read(r, buf, sizeof buf), CIO_EHTTP_TIMEOUT); /* stays */
    ASSERT_EQ(cio_http_client_active(cl), 0);
    cio_http_response_free(r);
    /* a slow first byte (10 s): send fails 1 s after the request went */
    url(u, sizeof u, "/slow");
    req = (cio_http_request){.url = u, .idle_timeout = 1 * CIO_SEC};
    t0 = cio_now();
    ASSERT_EQ(cio_http_send(cl, &req, &r), CIO_EHTTP_TIMEOUT);
    ASSERT_EQ(cio_now() - t0, 1 * CIO_SEC);
    ASSERT_TRUE(strstr(cio_http_client_error(cl), "idle timeout") != NULL);
    /* the client's default applies; a request's < 0 turns it off */
    teardown();
    cio_http_client_options o = {.idle_timeout = 500 * CIO_MSEC};
    setup(&o);
    url(u, sizeof u, "/slow");
    req = (cio_http_request){.url = u};
    ASSERT_EQ(cio_http_send(cl, &req, &r), CIO_EHTTP_TIMEOUT);
    req = (cio_http_request){.url = u, .idle_timeout = -1};
    t0 = cio_now();
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    ASSERT_EQ(cio_now() - t0, 10 * CIO_SEC);
    ASSERT_EQ(cio_http_read_all(r, 0, &body), 5);
    free(body);
    cio_http_response_free(r);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_idle_timeout_survives_a_trickle_and_fails_a_stall_on_the_loop_clock, 30)
{
    ASSERT_EQ(run_virtual(idle_main, NULL), 0);
}

/* A reader slower than the idle timeout is not the server's fault: the
 * time the transfer is paused for the reader does not count. */
static int idle_paused_main(void *arg)
{
    (void)arg;
    setup(NULL);
    char u[256];
    url(u, sizeof u, "/big/1000000");
    cio_http_request req = {.url = u, .idle_timeout = 1 * CIO_SEC, .buffer_size = 16384};
    cio_http_response *r;
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    char buf[16384];
    size_t total = 0;
    ssize_t n;
    for (int i = 0; (n = cio_http_read(r, buf, sizeof buf)) > 0; i++) {
        total += (size_t)n;
        if (i < 3)
            ASSERT_EQ(cio_sleep(3 * CIO_SEC), 0); /* the reader dawdles */
    }
    ASSERT_EQ(n, 0);
    ASSERT_EQ(total, 1000000);
    cio_http_response_free(r);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_idle_timeout_does_not_count_while_paused_for_the_reader, 30)
{
    ASSERT_EQ(run_virtual(idle_paused_main, NULL), 0);
}

/* A name under .invalid (RFC 6761: never resolves) fails with the DNS
 * code and libcurl's text, without a packet on the network beyond the
 * local resolver's answer. */
static int dns_main(void *arg)
{
    (void)arg;
    setup(NULL);
    cio_http_request req = {.url = "http://nosuch.invalid/"};
    cio_http_response *r;
    int64_t t0 = cio_now();
    ASSERT_EQ(cio_http_send(cl, &req, &r), CIO_EHTTP_DNS);
    ASSERT_TRUE(r == NULL);
    cio_test_note("%s (%lld ms)", cio_http_client_error(cl),
                  (long long)((cio_now() - t0) / CIO_MSEC));
    ASSERT_TRUE(strstr(cio_http_client_error(cl), "nosuch.invalid") != NULL);
    ASSERT_STREQ(cio_strerror(CIO_EHTTP_DNS), "HTTP: host name not resolved");
    ASSERT_EQ(cio_http_client_active(cl), 0);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_dns_failure_for_a_name_under_invalid_is_the_dns_code, 20)
{
    /* The resolver must answer "no such name" quickly here (a resolver
     * that has to time out would make this a test of the network). */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = getaddrinfo("nosuch.invalid", "80", &hints, &ai);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (ai)
        freeaddrinfo(ai);
    long ms = (long)(b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    if (rc == 0)
        cio_test_skip("the resolver here answers for nosuch.invalid");
    if (rc != EAI_NONAME || ms > 2000)
        cio_test_skip("the resolver here does not answer quickly (%s after %ld ms)",
                      gai_strerror(rc), ms);
    ASSERT_EQ(cio_run(dns_main, NULL), 0);
}

static int big_headers_main(void *arg)
{
    (void)arg;
    setup(NULL);
    cio_http_response *r;
    /* 60 KiB of headers: fine */
    ASSERT_EQ(get("/headers/60", &r), 0);
    ASSERT_EQ(cio_http_header_count(r), 61);
    ASSERT_EQ(strlen(cio_http_header(r, "x-filler-59", 0)), 1000);
    char *body;
    ASSERT_EQ(cio_http_read_all(r, 0, &body), 2);
    free(body);
    cio_http_response_free(r);
    /* 150 KiB of them: still fine (libcurl limits each line) */
    ASSERT_EQ(get("/headers/150", &r), 0);
    ASSERT_EQ(cio_http_header_count(r), 151);
    cio_http_response_free(r);
    /* one header line of 120 KiB: over libcurl's limit (100 KiB) */
    int rc = get("/longheader/120", &r);
    cio_test_note("a 120 KiB header: %s (%s)", cio_strerror(rc), cio_http_client_error(cl));
    ASSERT_EQ(rc, CIO_EHTTP_PROTOCOL);
    ASSERT_EQ(cio_http_client_active(cl), 0);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_headers_over_100_kib_are_refused_under_that_kept, 20)
{
    ASSERT_EQ(cio_run(big_headers_main, NULL), 0);
}

static long max_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* 1 GiB read by a reader that falls behind (a pause every 4 MiB): memory
 * stays about the buffer, whatever the body's size. */
static int gib_main(void *arg)
{
    (void)arg;
    setup(NULL);
    size_t total = cio_test_slow() ? (size_t)64 << 20 : (size_t)1 << 30;
    char u[256];
    snprintf(u, sizeof u, "%s/big/%zu", hs.base, total);
    cio_http_request req = {.url = u}; /* default buffer: 64 KiB */
    cio_http_response *r;
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    long rss0 = max_rss_kib();
    static char buf[65536];
    size_t got = 0;
    ssize_t n;
    while ((n = cio_http_read(r, buf, sizeof buf)) > 0) {
        size_t before = got;
        got += (size_t)n;
        if (before >> 22 != got >> 22)
            ASSERT_EQ(cio_sleep(10 * CIO_MSEC), 0); /* fall behind */
    }
    ASSERT_EQ(n, 0);
    ASSERT_EQ(got, total);
    long grew = max_rss_kib() - rss0;
    cio_test_note("%zu MiB read; peak RSS grew by %ld KiB; buffer %zu bytes", total >> 20,
                  grew, cio_http_buffer_capacity(r));
#ifndef CIO_ASAN
    /* (ASan's quarantine keeps every freed block a while: the server's
     * write queue churns through 1 GiB of them; valgrind's allocator and
     * its own bookkeeping grow RSS too: the buffer's capacity is checked
     * below everywhere) */
    if (!cio_test_slow())
        ASSERT_LT(grew, 16 * 1024);
#endif
    ASSERT_LE(cio_http_buffer_capacity(r), 64 * 1024);
    cio_http_response_free(r);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_one_gib_body_read_slowly_keeps_memory_bounded, 300)
{
    ASSERT_EQ(run_virtual(gib_main, NULL), 0);
}

/* Upload by callback: 100,000 bytes in pieces, with a wait in the middle
 * that a task ends later; with a known length and chunked. */
typedef struct up {
    size_t total, sent;
    bool waited;
    cio_http_upload *paused;
    unsigned long long sum;
} up;

static ssize_t body_fn(cio_http_upload *u, void *buf, size_t n, void *arg)
{
    up *p = arg;
    if (p->sent >= p->total)
        return 0;
    if (p->sent >= p->total / 2 && !p->waited) {
        p->waited = true;
        p->paused = u; /* a task resumes it */
        return CIO_HTTP_BODY_WAIT;
    }
    size_t k = p->total - p->sent < n ? p->total - p->sent : n;
    if (k > 1000)
        k = 1000;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)((p->sent + i) * 7);
        ((unsigned char *)buf)[i] = c;
        p->sum += c;
    }
    p->sent += k;
    return (ssize_t)k;
}

static int resumer(void *arg)
{
    up *p = arg;
    while (!p->paused) {
        int rc = cio_sleep(CIO_MSEC);
        if (rc)
            return rc;
    }
    cio_http_upload_resume(p->paused);
    return 0;
}

static ssize_t failing_body(cio_http_upload *u, void *buf, size_t n, void *arg)
{
    (void)u, (void)buf, (void)n, (void)arg;
    return -EIO;
}

static int slow_resumer(void *arg)
{
    up *p = arg;
    while (!p->paused) {
        int rc = cio_sleep(CIO_MSEC);
        if (rc)
            return rc;
    }
    int rc = cio_sleep(3 * CIO_SEC); /* longer than the idle timeout */
    if (rc)
        return rc;
    cio_http_upload_resume(p->paused);
    return 0;
}

/* An upload waiting for its callback's data is not the server's fault
 * either: the idle timeout does not count that wait. */
static int idle_upload_main(void *arg)
{
    (void)arg;
    setup(NULL);
    char u[256];
    url(u, sizeof u, "/echo");
    up p = {.total = 100000};
    cio_http_request req = {.url = u, .body_fn = body_fn, .body_fn_arg = &p,
                            .body_fn_len = 100000, .idle_timeout = 1 * CIO_SEC};
    cio_task *t = spawn(slow_resumer, &p, "resumer");
    cio_http_response *r;
    int64_t t0 = cio_now();
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    ASSERT_EQ(join_release(t), 0);
    ASSERT_GE(cio_now() - t0, 3 * CIO_SEC);
    char *body;
    ASSERT_GT(cio_http_read_all(r, 0, &body), 0);
    char want[64];
    snprintf(want, sizeof want, "len=100000 sum=%llu", p.sum);
    ASSERT_STREQ(body, want);
    free(body);
    cio_http_response_free(r);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_idle_timeout_does_not_count_while_the_upload_waits_for_its_callback, 20)
{
    ASSERT_EQ(run_virtual(idle_upload_main, NULL), 0);
}

static int upload_main(void *arg)
{
    (void)arg;
    setup(NULL);
    char u[256];
    url(u, sizeof u, "/echo");
    for (int chunked = 0; chunked < 2; chunked++) {
        up p = {.total = 100000};
        cio_http_request req = {.url = u, .body_fn = body_fn, .body_fn_arg = &p,
                                .body_fn_len = chunked ? -1 : 100000};
        cio_task *t = spawn(resumer, &p, "resumer");
        cio_http_response *r;
        ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
        ASSERT_EQ(join_release(t), 0);
        ASSERT_TRUE(p.waited);
        char *body;
        ASSERT_GT(cio_http_read_all(r, 0, &body), 0);
        char want[64];
        snprintf(want, sizeof want, "len=100000 sum=%llu%s", p.sum, chunked ? " chunked" : "");
        ASSERT_STREQ(body, want);
        free(body);
        cio_http_response_free(r);
    }
    /* a buffer body with a PUT */
    cio_http_request req = {.url = u, .method = "PUT", .body = "abc", .body_len = 3};
    cio_http_response *r;
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    char *body;
    ASSERT_GT(cio_http_read_all(r, 0, &body), 0);
    ASSERT_STREQ(body, "len=3 sum=294");
    free(body);
    cio_http_response_free(r);
    /* the callback's error aborts the transfer and is what send returns */
    req = (cio_http_request){.url = u, .body_fn = failing_body, .body_fn_len = 10};
    ASSERT_EQ(cio_http_send(cl, &req, &r), -EIO);
    req = (cio_http_request){.url = u, .body = "x", .body_len = 1, .body_fn = failing_body};
    ASSERT_EQ(cio_http_send(cl, &req, &r), -EINVAL);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_upload_by_callback_with_a_wait_known_length_and_chunked, 20)
{
    ASSERT_EQ(cio_run(upload_main, NULL), 0);
}

static int from_callback_rc = 1;

static void send_from_callback(void *arg)
{
    (void)arg;
    cio_http_response *r;
    from_callback_rc = get("/ok", &r);
}

static int misuse_main(void *arg)
{
    (void)arg;
    setup(NULL);
    cio_http_response *r;
    ASSERT_EQ(get("/ok", &r), 0);
    /* a response still there: the client stays */
    ASSERT_EQ(cio_http_client_free(cl), -EBUSY);
    cio_http_response_free(r);
    /* send suspends: outside a task it is refused, nothing left behind */
    ASSERT_EQ(cio_call_soon(send_from_callback, NULL, NULL), 0);
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(from_callback_rc, -EPERM);
    ASSERT_EQ(cio_http_client_active(cl), 0);
    /* bad arguments */
    cio_http_request req = {0};
    ASSERT_EQ(cio_http_send(cl, &req, &r), -EINVAL);
    ASSERT_TRUE(r == NULL);
    ASSERT_EQ(cio_http_send(NULL, &req, &r), -EINVAL);
    cio_http_client_options bad = {.max_per_host = -1};
    cio_http_client *c2;
    ASSERT_EQ(cio_http_client_new(&c2, &bad), -EINVAL);
    ASSERT_EQ(cio_http_client_free(NULL), 0);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_misuse_outside_a_task_busy_client_and_bad_arguments, 20)
{
    ASSERT_EQ(cio_run(misuse_main, NULL), 0);
    cio_http_client *c;
    ASSERT_EQ(cio_http_client_new(&c, NULL), -EPERM); /* no loop */
}

static int proxy_version_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(http_server_start(&hs), 0);
    /* The test server as the proxy: the target host is never resolved nor
     * connected to; the proxy sees the whole URL. */
    cio_http_client_options o = {.proxy = hs.base, .http_version = 10};
    ASSERT_EQ(cio_http_client_new(&cl, &o), 0);
    cio_http_request req = {.url = "http://cio-test.invalid/ok"};
    cio_http_response *r;
    ASSERT_EQ(cio_http_send(cl, &req, &r), 0);
    ASSERT_EQ(cio_http_status(r), 200);
    ASSERT_STREQ(hs.last_target, "http://cio-test.invalid/ok");
    ASSERT_STREQ(hs.last_version, "HTTP/1.0");
    cio_http_response_free(r);
    ASSERT_EQ(cio_http_client_free(cl), 0);
    /* no proxy: "" (whatever the environment says) */
    o = (cio_http_client_options){.proxy = "", .http_version = 11};
    ASSERT_EQ(cio_http_client_new(&cl, &o), 0);
    ASSERT_EQ(get("/ok", &r), 0);
    ASSERT_STREQ(hs.last_target, "/ok");
    ASSERT_STREQ(hs.last_version, "HTTP/1.1");
    cio_http_response_free(r);
    o.http_version = 12;
    cio_http_client *c2;
    ASSERT_EQ(cio_http_client_new(&c2, &o), -EINVAL);
    teardown();
    return 0;
}

TEST_TIMEOUT(http_proxy_and_http_version_options_reach_the_wire, 20)
{
    ASSERT_EQ(cio_run(proxy_version_main, NULL), 0);
}

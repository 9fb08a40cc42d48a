/* Testing a retrying client with cio/testing.h (docs/testing.md).
 *
 * The code under test, fetch_with_retry, asks a server for a line and, when
 * the connection fails or closes early, waits and tries again with
 * exponential backoff: 1 s, 2 s, 4 s, ... up to 15 minutes between tries.
 * The tests run it against a flaky server in the same loop, scripted to
 * hang up on the first N connections, on the virtual clock: the hour of
 * backoff the first test sits through takes milliseconds.
 *
 *   1. it succeeds after 13 failures, at exactly 1 h 2 min 3 s of loop time;
 *   2. it gives up after its last try, with the last error;
 *   3. cancelled at any of its awaits (and with a deadline firing there),
 *      it returns the cancellation and leaves no task, descriptor or
 *      registration behind (cio_test_cancel_every_await).
 *
 * Each test goes through cio_test_run: a fresh loop, time limits, leak
 * checks, and a failure unless the test's task ran to its end. Prints
 * "PASS name" / "FAIL name" per test and "N passed, N failed"; exits 1 when
 * any failed. */
#include <cio.h>
#include <cio/stream.h>
#include <cio/testing.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- the code under test ------------------------------------------------- */

#define BACKOFF_FIRST CIO_SEC
#define BACKOFF_MAX (15 * CIO_MINUTE)

/* Connect to the Unix socket at path, read one line into buf. */
static int fetch_once(const char *path, char *buf, size_t cap)
{
    cio_stream *s;
    int rc = cio_open_unix_connection(&s, path, NULL);
    if (rc < 0)
        return rc;
    ssize_t n = cio_stream_readline(s, buf, cap);
    int crc = cio_stream_close(s);
    if (n < 0)
        return (int)n;
    if (n == 0 || buf[n - 1] != '\n')
        return -ECONNRESET; /* hung up before a whole line */
    return crc;
}

/* Up to `tries` tries, with backoff between them. Returns 0 with the line
 * in buf, the last try's error, or the cancellation. */
static int fetch_with_retry(const char *path, char *buf, size_t cap, int tries)
{
    int64_t backoff = BACKOFF_FIRST;
    int rc = -EINVAL;
    for (int i = 0; i < tries; i++) {
        rc = fetch_once(path, buf, cap);
        if (rc == 0 || rc == -ECANCELED || rc == -ETIMEDOUT)
            return rc;
        if (i + 1 == tries)
            break;
        int src = cio_sleep(backoff);
        if (src < 0)
            return src; /* cancelled while backing off */
        backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
    }
    return rc;
}

/* ---- the scripted flaky server --------------------------------------------- */

typedef struct flaky {
    int fail_first;   /* hang up on this many connections, */
    int served;       /* then answer "hello\n"; connections so far */
} flaky;

static int flaky_handler(cio_stream *s, void *arg)
{
    flaky *f = arg;
    if (f->served++ < f->fail_first)
        return 0; /* the server closes the connection: a hang-up */
    return cio_stream_write(s, "hello\n", 6);
}

/* A server in the test's loop, on an abstract Unix socket of its own. */
typedef struct fixture {
    flaky script;
    cio_server *srv;
    char path[64];
} fixture;

static int fixture_start(fixture *fx, int fail_first)
{
    fx->script = (flaky){.fail_first = fail_first};
    snprintf(fx->path, sizeof fx->path, "@cio-testing-retry-%d", (int)getpid());
    return cio_start_unix_server(&fx->srv, fx->path, flaky_handler, &fx->script, NULL);
}

/* ---- the tests ---------------------------------------------------------------- */

static int test_succeeds_after_an_hour_of_backoff(void *arg)
{
    (void)arg;
    fixture fx;
    int rc = fixture_start(&fx, 13);
    if (rc < 0)
        return rc;
    char line[64] = "";
    rc = fetch_with_retry(fx.path, line, sizeof line, 20);
    cio_server_close(fx.srv);
    if (rc < 0)
        return cio_test_failure(__FILE__, __LINE__, "fetch failed: %s", cio_strerror(rc));
    /* 1 + 2 + 4 + ... + 512 s, then 900 s three times: 3723 s, to the ns. */
    if (strcmp(line, "hello\n") != 0 || fx.script.served != 14 ||
        cio_now() != 3723 * CIO_SEC)
        return cio_test_failure(__FILE__, __LINE__,
                                "got \"%s\" after %d connections at %.3f s", line,
                                fx.script.served, (double)cio_now() / CIO_SEC);
    printf("  succeeded on try 14 at loop time %lld s\n",
           (long long)(cio_now() / CIO_SEC));
    return 0;
}

static int test_gives_up_with_the_last_error(void *arg)
{
    (void)arg;
    fixture fx;
    int rc = fixture_start(&fx, 1000);
    if (rc < 0)
        return rc;
    char line[64];
    rc = fetch_with_retry(fx.path, line, sizeof line, 5);
    cio_server_close(fx.srv);
    if (rc != -ECONNRESET || fx.script.served != 5 || cio_now() != 15 * CIO_SEC)
        return cio_test_failure(__FILE__, __LINE__, "got %d after %d tries at %.3f s", rc,
                                fx.script.served, (double)cio_now() / CIO_SEC);
    return 0;
}

/* One fetch with 3 hang-ups first, from a fresh script each time (the
 * sweep runs it many times and needs the same run each time). */
static int fetch_three_failures_first(void *arg)
{
    fixture *fx = arg;
    fx->script.served = 0;
    char line[64];
    return fetch_with_retry(fx->path, line, sizeof line, 10);
}

/* After each run: the handler of a connection the run closed ends at its
 * next step. */
static int settle(void *arg)
{
    (void)arg;
    return cio_sleep(CIO_MSEC);
}

static int test_no_leak_when_cancelled_at_any_await(void *arg)
{
    (void)arg;
    fixture fx;
    int rc = fixture_start(&fx, 3);
    if (rc < 0)
        return rc;
    cio_cancel_sweep_options o = {.settle = settle};
    cio_cancel_sweep_result r;
    rc = cio_test_cancel_every_await(&o, fetch_three_failures_first, &fx, &r);
    cio_server_close(fx.srv);
    printf("  %zu suspension points, %zu runs\n", r.points, r.runs);
    return rc;
}

int main(void)
{
    static const struct {
        const char *name;
        cio_task_fn fn;
    } tests[] = {
        {"succeeds_after_an_hour_of_backoff", test_succeeds_after_an_hour_of_backoff},
        {"gives_up_with_the_last_error", test_gives_up_with_the_last_error},
        {"no_leak_when_cancelled_at_any_await", test_no_leak_when_cancelled_at_any_await},
    };
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        cio_test_options o = {.name = tests[i].name};
        cio_test_result r;
        if (cio_test_run(&o, tests[i].fn, NULL, &r) == 0) {
            printf("PASS %s (%.3f s of loop time in %.3f s)\n", tests[i].name,
                   (double)r.loop_time / CIO_SEC, (double)r.real_time / CIO_SEC);
            passed++;
        } else {
            printf("FAIL %s\n", tests[i].name); /* (the report is on stderr) */
            failed++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

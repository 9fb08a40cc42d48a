/* testing_flaky_peer: two tests written with cio/testing.h, in a plain
 * main with assert-style checks (docs/testing.md walks through them).
 *
 * 1. A retrying client against a scripted flaky server, on the virtual
 *    clock: the server resets the first connection in the middle of the
 *    answer, hangs on the second, closes the third without a word and
 *    trickles a good answer on the fourth. The client backs off 10, 20
 *    and 40 minutes between attempts: seventy minutes of backoff that take
 *    milliseconds.
 * 2. An ordering bug that FIFO scheduling hides, found with seeds: the
 *    workers read a configuration that the loader, spawned first, always
 *    happens to have set when the tasks run in spawn order. cio_test_repeat
 *    finds a seed that runs a worker first and says how to replay it; the
 *    fixed version (the workers wait for the loader's event) passes every
 *    seed.
 *
 * Run: example_testing_flaky_peer (exit status 0 when both tests pass).
 */
#define _POSIX_C_SOURCE 200809L
#include "cio.h"
#include "cio/testing.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

/* assert() that stays in every build (NDEBUG removes assert's calls). */
#define CHECK(x)                                                               \
    do {                                                                       \
        if (!(x)) {                                                            \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

/* ===========================================================================
 * 1. The code under test: a client that asks "GET\n" and reads one line,
 *    with a 10 s limit per attempt and exponential backoff between them.
 *    It gets its connections from `connect` (a real TCP connect in the
 *    program; a scripted peer in the test).
 */
typedef int (*connect_fn)(void *ctx, int *fd);

static int fetch_line(connect_fn connect, void *ctx, char *out, size_t cap)
{
    int64_t backoff = 10 * CIO_MINUTE;
    for (int attempt = 1; attempt <= 6; attempt++) {
        int fd, rc = connect(ctx, &fd);
        cio_stream *s = NULL;
        if (rc == 0)
            rc = cio_stream_open_fd(&s, fd, NULL);
        if (rc == 0) {
            cio_scope limit;
            cio_timeout_enter(&limit, 10 * CIO_SEC);
            rc = cio_stream_write(s, "GET\n", 4);
            if (rc == 0) {
                ssize_t n = cio_stream_readline(s, out, cap);
                rc = n < 0 ? (int)n : n > 0 && out[n - 1] == '\n' ? 0 : -EPROTO;
            }
            if (cio_scope_exit(&limit) == -ETIMEDOUT)
                rc = -ETIMEDOUT;
            cio_stream_close(s);
        }
        if (rc == 0)
            return attempt;
        printf("  attempt %d at %4lld s: %s; next in %lld min\n", attempt,
               (long long)(cio_now() / CIO_SEC), cio_strerror(rc),
               (long long)(backoff / CIO_MINUTE));
        if ((rc = cio_sleep(backoff)) != 0)
            return rc;
        backoff *= 2;
    }
    return -ETIMEDOUT;
}

/* The test's connections: a scripted peer for each attempt. */
struct flaky_server {
    cio_test_peer *peers[8];
    int n;
};

static int connect_scripted(void *ctx, int *fd)
{
    struct flaky_server *srv = ctx;
    cio_test_peer *p;
    cio_test_peer_options o = {.tcp = true}; /* TCP: a reset is a real RST */
    int rc = cio_test_peer_open(&p, fd, &o);
    if (rc)
        return rc;
    srv->peers[srv->n] = p;
    cio_test_peer_expect_str(p, "GET\n");
    switch (srv->n++) {
    case 0: /* a reset in the middle of the answer (at byte 5) */
        cio_test_peer_send_str(p, "200 O");
        cio_test_peer_delay(p, 100 * CIO_MSEC);
        cio_test_peer_reset(p);
        break;
    case 1: /* a server that hangs */
        cio_test_peer_stall(p);
        break;
    case 2: /* closes without a word */
        cio_test_peer_close(p);
        break;
    default: /* slow but right: 2 bytes every 100 ms */
        cio_test_peer_delay(p, CIO_SEC);
        cio_test_peer_trickle(p, "200 OK\n", 7, 2, 100 * CIO_MSEC);
        break;
    }
    return cio_test_peer_start(p);
}

static int flaky_test(void *arg)
{
    (void)arg;
    struct flaky_server srv = {.n = 0};
    char line[64];
    int attempts = fetch_line(connect_scripted, &srv, line, sizeof line);
    CHECK(attempts == 4);
    CHECK(strcmp(line, "200 OK\n") == 0);
    /* 10 + 20 + 40 min of backoff, 10 s for the hung attempt, 1.3 s for
     * the slow one and 0.1 s before the reset: all on the loop's clock. */
    CHECK(cio_now() == 70 * CIO_MINUTE + 10 * CIO_SEC + 1300 * CIO_MSEC + 100 * CIO_MSEC);
    /* Each script ran as far as it should: the good one to its end. */
    CHECK(cio_test_peer_wait(srv.peers[3]) == 0);
    CHECK(cio_test_peer_wait(srv.peers[0]) == 0);
    for (int i = 0; i < srv.n; i++)
        cio_test_peer_free(srv.peers[i]); /* cancels the hung one */
    printf("flaky peer: ok after %d attempts, %lld s of virtual time\n", attempts,
           (long long)(cio_now() / CIO_SEC));
    return 0;
}

/* ===========================================================================
 * 2. An ordering bug. The loader is spawned before the workers, so in
 *    FIFO order it always runs first, and the racy workers always find
 *    the configuration set. Nothing promises that order: the tasks become
 *    ready in the same turn.
 */
static const char *config;
static cio_event loaded;

static int loader(void *arg)
{
    (void)arg;
    config = "mode=fast";
    cio_event_set(&loaded);
    return 0;
}

static int worker_racy(void *arg)
{
    (void)arg;
    return config ? 0 : -ENODATA; /* assumes the loader ran */
}

static int worker_fixed(void *arg)
{
    (void)arg;
    int rc = cio_event_wait(&loaded); /* says what it needs */
    if (rc)
        return rc;
    return config ? 0 : -ENODATA;
}

static int app(void *arg)
{
    cio_task_fn worker = arg;
    config = NULL;
    cio_event_init(&loaded);
    cio_task *t[4];
    int rc = cio_spawn(&t[0], loader, NULL, "loader");
    for (int i = 1; i < 4 && rc == 0; i++)
        rc = cio_spawn(&t[i], worker, NULL, "worker%d", i);
    CHECK(rc == 0);
    int statuses[4];
    cio_gather(t, 4, statuses, CIO_GATHER_ALL);
    for (int i = 0; i < 4; i++) {
        cio_task_release(t[i]);
        if (statuses[i] && !rc)
            rc = statuses[i];
    }
    return rc;
}

int main(void)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cio_loop_options vo = {.virtual_clock = true};
    int rc = cio_run_opts(&vo, flaky_test, NULL);
    CHECK(rc == 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("flaky peer: %.0f ms of real time\n",
           (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);

    /* FIFO: the bug hides. */
    cio_loop_options fifo = {.virtual_clock = true, .sched_seed = CIO_SCHED_FIFO};
    CHECK(cio_run_opts(&fifo, app, (void *)worker_racy) == 0);
    /* Seeds: found, named, and replayed. */
    cio_test_repeat_options ro = {.runs = 100, .quiet = true};
    uint64_t seed = 0;
    rc = cio_test_repeat(&ro, app, (void *)worker_racy, &seed);
    CHECK(rc == -ENODATA && seed != 0);
    printf("seeds: the racy version fails under seed %llu (%s): replay with CIO_SEED=%llu\n",
           (unsigned long long)seed, cio_strerror(rc), (unsigned long long)seed);
    cio_loop_options replay = {.virtual_clock = true, .sched_seed = seed};
    CHECK(cio_run_opts(&replay, app, (void *)worker_racy) == -ENODATA);
    rc = cio_test_repeat(&ro, app, (void *)worker_fixed, &seed);
    CHECK(rc == 0);
    printf("seeds: the fixed version passes %u seeds\n", ro.runs);
    return 0;
}
